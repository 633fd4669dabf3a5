"""Static pages of a run: widgets as their last state, an index, and the executed notebooks kept clean and small."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys

import nbformat
import pytest
from PIL import Image

from knee_tf.core import startup
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import REPO_ROOT
from knee_tf.study.html import (
    WIDGET_STATE,
    WIDGET_VIEW,
    notebook_summary,
    render_run,
    snapshot_widgets,
)
from knee_tf.study.pipeline import STEPS

#: What "a size a browser opens comfortably" means here: every executed notebook of a run stays below it.
MAX_NOTEBOOK_BYTES = 1_500_000


def _png(width=30, height=20) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _widget_notebook():
    png = _png()
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_dd", "IPY_MODEL_img", "IPY_MODEL_txt",
                                                                   "IPY_MODEL_sl", "IPY_MODEL_btn"]}},
        "dd": {"model_name": "DropdownModel", "state": {"description": "layer", "_options_labels": ["pool1", "pool4"],
                                                         "index": 1}},
        "img": {"model_name": "ImageModel", "state": {"format": "png"},
                "buffers": [{"path": ["value"], "encoding": "base64", "data": png}]},
        "txt": {"model_name": "HTMLModel", "state": {"value": "Model A: p(relevant) = 0.700 → relevant"}},
        "sl": {"model_name": "FloatSliderModel", "state": {"description": "weight w", "value": 0.25}},
        "btn": {"model_name": "ButtonModel", "state": {"description": "smallest w"}},
    }
    view = {"output_type": "display_data", "metadata": {},
            "data": {WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0}, "text/plain": "VBox()"}}
    lost = {"output_type": "display_data", "metadata": {},
            "data": {WIDGET_VIEW: {"model_id": "gone", "version_major": 2, "version_minor": 0},
                     "text/plain": "HBox(children=())"}}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 04 · Title\n\nWhat it does.\nMore.\n\nNext."),
                                         nbformat.v4.new_code_cell("explorer", outputs=[view, lost])])
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    return nb, png


def test_snapshot_draws_widgets_from_their_stored_state():
    nb, png = _widget_notebook()
    snap = snapshot_widgets(nb)
    shown, lost = snap.cells[1].outputs
    html = shown["data"]["text/html"]
    assert set(shown["data"]) == {"text/html"} and f"data:image/png;base64,{png}" in html
    assert "Model A: p(relevant) = 0.700 → relevant" in html and "<b>pool4</b>" in html and "<b>0.25</b>" in html
    assert "smallest w" in html and 'class="kt-widget-image"' in html
    assert lost["data"] == {"text/plain": "HBox(children=())"}  # no stored state: its text only
    assert "widgets" not in snap.metadata and "widgets" in nb.metadata  # a copy; the widget JS is not needed
    assert notebook_summary(nb) == ("04 · Title", "What it does.\nMore.\n\nNext.")  # the whole opening cell


def test_index_renders_whole_summaries_the_headline_numbers_and_links_back(tmp_path):
    """The index of a run: each notebook's whole opening cell rendered as Markdown (a list after a colon
    included, no raw ``**``), the run's accuracy per cohort and B − A from its tables, a link to README;
    every notebook page links back to the index at its top and bottom."""
    layout = RunLayout(tmp_path / "runs" / "r")
    layout.notebooks.mkdir(parents=True)
    intro = ("# 07 · Controls\n\nCompares B with **controls** at the same budget:\n\n* `A_steps`: more steps;\n"
             "* `B_random`: masks at random.\n\nOutputs: the tables.")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(intro)]),
                   layout.executed_notebook("07_controls"))
    layout.cohorts.parent.mkdir(parents=True, exist_ok=True)
    layout.cohorts.write_text("model,cohort,seed,accuracy,ci_low,ci_high,n,ece\n"
                              "A,normal,0,0.9,0.85,0.95,100,0.02\nA,normal,1,0.8,0.75,0.85,100,0.02\n"
                              "B,normal,0,0.7,0.65,0.75,100,0.02\nB,normal,1,0.6,0.55,0.65,100,0.02\n")
    layout.effects_table.write_text("arm,reference,cohort,corruption,severity,metric,effect,ci_low,ci_high,n_seeds\n"
                                    "B,A,normal,none,0,accuracy,-0.2,-0.25,-0.15,2\n"
                                    "B,A,normal,bias_field,1,accuracy,-0.5,-0.6,-0.4,2\n")
    render_run(layout.root, log=lambda m: None)
    index = layout.html_index.read_text()
    assert "<li><code>A_steps</code>: more steps;</li>" in index and "<strong>controls</strong>" in index
    assert "Outputs: the tables." in index and "**" not in index  # whole, and rendered
    headline = index[index.index('<table class="kt-headline">'):index.index("</table>")]
    assert "85.0%" in headline and "65.0%" in headline and "2 seeds" in headline  # means over the two seeds
    assert "-20.0" in headline and "[-25.0, -15.0]" in headline and "-50.0" not in headline  # plain cohorts only
    readme = re.search(r'<a href="([^"]+)">README</a>', index)[1]
    assert (layout.html / readme).resolve() == (REPO_ROOT / "README.md").resolve()  # the link back resolves
    page = layout.html_page("07_controls").read_text()
    assert page.count('<a href="index.html">') == 2


# ----------------------------------------------------------------------------- the session's smoke run


@pytest.mark.slow  # the session's smoke study
def test_executed_notebooks_are_clean_and_small(first_run):
    """Every executed notebook of the smoke run: no TensorFlow start-up line in any stderr output,
    one line per epoch (no carriage-return progress), embedded figures at the inline resolution,
    and a file size below MAX_NOTEBOOK_BYTES."""
    out, _ = first_run
    layout = RunLayout(out)
    sizes = {}
    for step in STEPS:
        path = layout.executed_notebook(step.name)
        nb = nbformat.read(path, as_version=4)
        sizes[step.name] = path.stat().st_size
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                text = o.get("text", "")
                if o.get("name") == "stderr":
                    assert not any(startup.is_startup_noise(line) for line in text.splitlines()), (step.name, text)
                assert "\r" not in text and "\x08" not in text, (step.name, text[:200])
                if "image/png" in o.get("data", {}):
                    image = Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"])))
                    dpi = image.info["dpi"][0]  # matplotlib writes the resolution it drew at
                    assert round(dpi) == startup.INLINE_DPI, (step.name, image.info)
        if step.name in ("02_train_model_a", "05_train_model_b"):
            epochs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
            per_epoch = re.findall(r"^\d+/\d+ - \d+m?s - .* - val_loss: [0-9.]+$", epochs, flags=re.M)
            assert per_epoch and "━" not in epochs, (step.name, epochs[-500:])  # lines, no progress bar
    print("executed notebook sizes (bytes):", json.dumps(sizes))
    assert max(sizes.values()) < MAX_NOTEBOOK_BYTES, sizes


@pytest.mark.slow  # the session's smoke study
@pytest.mark.parametrize("stem", ["03_gradcam_layers", "04_augmentations"])
def test_executed_explorers_store_their_last_state(first_run, stem):
    out, _ = first_run
    nb = nbformat.read(RunLayout(out).executed_notebook(stem), as_version=4)
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    images = [m for m in state.values() if m["model_name"] == "ImageModel" and m.get("buffers")]
    assert len(images) == 1 and base64.b64decode(images[0]["buffers"][0]["data"])[:4] == b"\x89PNG"


def test_cli_html_says_in_one_line_when_a_run_has_no_executed_notebook(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "knee_tf", "html", "--run", str(tmp_path)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'notebooks'}: no executed notebooks to render "
                                                "(run `knee-tf study` first)"]
    assert not any(tmp_path.iterdir())  # nothing written into a folder that holds no run

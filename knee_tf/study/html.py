"""A run's executed notebooks as static HTML pages with an index (``knee-tf html``, ``make html``).

Each executed notebook in ``runs/<run>/notebooks/`` becomes ``runs/<run>/html/<name>.html``
(nbconvert, the ``lab`` template); ``runs/<run>/html/index.html`` links them, with each notebook's
title and opening paragraph. Every figure is embedded in the page, so the folder can be copied or
served as it is.

Widgets (the explorers, progress bars) show their **last state**: papermill stores every widget's
state in the executed notebook, and :func:`snapshot_widgets` replaces each widget output by plain
HTML drawn from that state (images, text, the value of each control), so the page needs neither a
kernel nor the widget JavaScript from a CDN.
"""

from __future__ import annotations

import copy
import html
from pathlib import Path

import nbformat

from knee_tf.core.io import atomic_write_text
from knee_tf.data.layout import RunLayout

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
_BOXES = {"VBoxModel": "column", "HBoxModel": "row", "BoxModel": "row", "GridBoxModel": "row"}
_CHOICES = {"DropdownModel", "ToggleButtonsModel", "RadioButtonsModel", "SelectModel", "SelectionSliderModel"}
_VALUES = {"FloatSliderModel", "IntSliderModel", "FloatTextModel", "IntTextModel", "TextModel", "CheckboxModel",
           "FloatLogSliderModel", "BoundedFloatTextModel", "BoundedIntTextModel"}


def _model_id(ref) -> str:
    return str(ref).removeprefix("IPY_MODEL_")


class _WidgetRenderer:
    def __init__(self, state: dict):
        self.state = state

    def render(self, model_id: str, depth: int = 0) -> str:
        entry = self.state.get(_model_id(model_id))
        if entry is None or depth > 20:
            return ""
        name, st = entry.get("model_name", ""), entry.get("state", {})
        desc = html.escape(str(st.get("description", "")))
        label = f'<span class="kt-label">{desc}</span> ' if desc else ""
        if name in _BOXES:
            inner = "".join(self.render(c, depth + 1) for c in st.get("children", []))
            return (f'<div class="kt-box" style="display:flex;flex-direction:{_BOXES[name]};gap:0.4em;'
                    f'flex-wrap:wrap;align-items:flex-start">{inner}</div>')
        if name == "ImageModel":
            data = next((b["data"] for b in entry.get("buffers", []) if b.get("path") == ["value"]), None)
            if data is None and isinstance(st.get("value"), str):
                data = st["value"]
            if not data:
                return ""
            fmt = html.escape(str(st.get("format", "png")))
            return (f'<img class="kt-widget-image" style="max-width:100%;height:auto" '
                    f'src="data:image/{fmt};base64,{data}" alt="explorer view">')
        if name in ("HTMLModel", "HTMLMathModel"):
            return f'<div class="kt-html">{label}{st.get("value", "")}</div>'
        if name == "LabelModel":
            return f'<div class="kt-text">{label}{html.escape(str(st.get("value", "")))}</div>'
        if name in _CHOICES:
            labels, index = st.get("_options_labels", []), st.get("index")
            chosen = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else "—"
            return f'<div class="kt-control">{label}<b>{html.escape(str(chosen))}</b></div>'
        if name in _VALUES:
            return f'<div class="kt-control">{label}<b>{html.escape(str(st.get("value", "")))}</b></div>'
        if name == "ButtonModel":
            return f'<button class="kt-button" disabled>{desc}</button>'
        if name in ("FloatProgressModel", "IntProgressModel"):
            return f'<progress value="{st.get("value", 0)}" max="{st.get("max", 1)}"></progress>'
        if name == "OutputModel":
            return "".join(_static_output(o) for o in st.get("outputs", []))
        return ""


def _static_output(output: dict) -> str:
    data = output.get("data", {})
    if output.get("output_type") == "stream":
        return f"<pre>{html.escape(str(output.get('text', '')))}</pre>"
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            return f'<img src="data:{mime};base64,{data[mime]}" alt="output">'
    if "text/html" in data:
        return str(data["text/html"])
    if "text/plain" in data:
        return f"<pre>{html.escape(str(data['text/plain']))}</pre>"
    return ""


def snapshot_widgets(nb):
    """A copy of ``nb`` whose widget outputs are static HTML drawn from the stored widget state.

    A widget whose state was not stored keeps only its plain-text representation.
    """
    nb = copy.deepcopy(nb)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    renderer = _WidgetRenderer(state)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            rendered = renderer.render(data[WIDGET_VIEW].get("model_id", ""))
            plain = data.get("text/plain", "")
            output["data"] = {"text/html": rendered} if rendered else {"text/plain": plain}
    nb.metadata.pop("widgets", None)
    return nb


def notebook_summary(nb) -> tuple[str, str]:
    """(title, first paragraph) of a notebook's opening markdown cell."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.strip().splitlines()
            title = lines[0].lstrip("# ").strip() if lines else ""
            paragraph = []
            for line in lines[1:]:
                if line.strip():
                    paragraph.append(line.strip())
                elif paragraph:
                    break
            return title, " ".join(paragraph)
    return "", ""


def render_notebook(path: Path, out: Path) -> Path:
    """One executed notebook -> one static HTML page (widgets as their last state)."""
    from nbconvert import HTMLExporter  # lazy: notebook execution (heavy import)

    nb = snapshot_widgets(nbformat.read(path, as_version=4))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    atomic_write_text(out, body)
    return out


def _index_page(run_name: str, entries: list[tuple[str, str, str, int]]) -> str:
    items = "\n".join(
        f'<li><a href="{html.escape(href)}">{html.escape(title)}</a> <small>({size / 1e6:.1f} MB)</small>'
        f"<p>{html.escape(text)}</p></li>"
        for href, title, text, size in entries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>knee-tf · {html.escape(run_name)}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}}li{{margin-bottom:1em}}
p{{margin:0.2em 0;color:#444}}</style></head>
<body><h1>knee-tf study: {html.escape(run_name)}</h1>
<p>The executed notebooks of this run, rendered as static pages. Interactive explorers show the state
they were left in; open the notebooks in JupyterLab to use them.</p>
<ol class="notebooks">
{items}
</ol></body></html>
"""


def render_run(run_root: str | Path, log=print) -> list[Path]:
    """Render every executed notebook of a run (``notebooks/*.ipynb``) and write the index page.

    Returns the written pages, the index last. Raises ValueError when the run has no executed notebook.
    """
    layout = RunLayout(run_root)
    notebooks = sorted(layout.notebooks.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"{layout.notebooks}: no executed notebooks to render (run `knee-tf study` first)")
    layout.html.mkdir(parents=True, exist_ok=True)
    written, entries = [], []
    for path in notebooks:
        page = render_notebook(path, layout.html_page(path.stem))
        title, text = notebook_summary(nbformat.read(path, as_version=4))
        entries.append((page.name, title or path.stem, text, page.stat().st_size))
        written.append(page)
        log(f"rendered {path.name} -> {layout.relative(page)}")
    atomic_write_text(layout.html_index, _index_page(layout.root.name, entries))
    written.append(layout.html_index)
    log(f"index: {layout.html_index}")
    return written

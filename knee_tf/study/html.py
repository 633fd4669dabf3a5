"""A run's executed notebooks as static HTML pages with an index (``knee-tf html``, ``make html``).

Each executed notebook in ``runs/<run>/notebooks/`` becomes ``runs/<run>/html/<name>.html``
(nbconvert, the ``lab`` template), with a link back to the index at its top and bottom;
``runs/<run>/html/index.html`` opens with the run's headline numbers (:func:`headline_html`: accuracy of
A and B per test cohort, and B − A with its interval, read from the run's tables) and links every
notebook with its title and its whole opening cell, rendered as Markdown, and the repository's README.
Every figure is embedded in the page, so the folder can be copied or served as it is.

Widgets (the explorers, progress bars) show their **last state**: papermill stores every widget's
state in the executed notebook, and :func:`snapshot_widgets` replaces each widget output by plain
HTML drawn from that state (images, text, the value of each control), so the page needs neither a
kernel nor the widget JavaScript from a CDN.
"""

from __future__ import annotations

import copy
import html
import os
import re
from pathlib import Path

import nbformat
import pandas as pd

from knee_tf.core.io import atomic_write_text
from knee_tf.core.vocab import MODEL_A, MODEL_B, NO_CORRUPTION, STUDY_MODELS
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import REPO_ROOT
from knee_tf.study.evaluate import summarize_seeds

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
    """(title, the rest of the opening markdown cell, whole, as Markdown) of a notebook."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.strip().splitlines()
            title = lines[0].lstrip("# ").strip() if lines else ""
            return title, "\n".join(lines[1:]).strip()
    return "", ""


def markdown_html(text: str) -> str:
    """Markdown as HTML (nbconvert's renderer, the one the notebook pages use), without heading anchors."""
    from nbconvert.filters.markdown_mistune import (
        markdown2html_mistune,  # lazy: notebook rendering (heavy import)
    )

    return re.sub(r'<a class="anchor-link"[^>]*>[^<]*</a>', "", markdown2html_mistune(text))


def _interval(low: float, high: float, sign: str = "") -> str:
    return f"[{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def headline_html(layout: RunLayout) -> str:
    """The run's headline numbers as an HTML table: per test cohort, the accuracy of Model A and Model B
    (mean over seeds, with the mean of the seeds' 95% intervals; ``layout.cohorts``) and B − A in points with
    its 95% interval (``layout.effects_table``, named columns ``arm``, ``reference``, ``cohort``, ``metric``,
    ``corruption``, ``effect``, ``ci_low``, ``ci_high``, ``n_seeds``), when the run has them. Empty
    when the run has not evaluated its cohorts yet."""
    if not layout.cohorts.exists():
        return ""
    summary = summarize_seeds(pd.read_csv(layout.cohorts)).set_index(["model", "cohort"])
    effects = {}
    if layout.effects_table.exists():
        e = pd.read_csv(layout.effects_table)
        e = e[(e["arm"] == MODEL_B) & (e["reference"] == MODEL_A) & (e["metric"] == "accuracy")
              & (e["corruption"].astype(str) == NO_CORRUPTION)]
        effects = {r["cohort"]: r for _, r in e.iterrows()}
    rows = []
    for cohort in dict.fromkeys(c for _, c in summary.index):
        cells = []
        for model in STUDY_MODELS:
            if (model, cohort) in summary.index:
                r = summary.loc[(model, cohort)]
                cells.append(f"{100 * r['accuracy_mean']:.1f}% <small>{_interval(r['ci_low_mean'], r['ci_high_mean'])}"
                             f"</small>")
            else:
                cells.append("—")
        r = effects.get(cohort)
        cells.append("—" if r is None else f"{100 * r['effect']:+.1f} <small>{_interval(r['ci_low'], r['ci_high'], '+')}, "
                                          f"{_seeds(int(r['n_seeds']))}</small>")
        rows.append(f"<tr><td><code>{html.escape(str(cohort))}</code></td><td>{int(summary.loc[(MODEL_A, cohort), 'n']) if (MODEL_A, cohort) in summary.index else '—'}</td>"
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    n_seeds = sorted({int(n) for n in summary["n_seeds"]})
    seeds = "/".join(str(n) for n in n_seeds) + (" seed" if n_seeds == [1] else " seeds")
    return (f'<table class="kt-headline"><caption>This run\'s test accuracy ({seeds}; mean over seeds '
            f'[mean of the seeds\' 95% bootstrap intervals]) and B − A in points [95% interval]</caption>\n'
            "<tr><th>cohort</th><th>images</th>" + "".join(f"<th>Model {m}</th>" for m in STUDY_MODELS)
            + f"<th>{MODEL_B} − {MODEL_A}</th></tr>\n"
            + "\n".join(rows) + "\n</table>")


def _nav(run_name: str) -> str:
    return (f'<nav class="kt-nav" style="font-family:sans-serif;margin:0.6em 1em">'
            f'<a href="index.html">← all notebooks of run {html.escape(run_name)}</a></nav>')


def render_notebook(path: Path, out: Path, run_name: str = "") -> Path:
    """One executed notebook -> one static HTML page (widgets as their last state), with a link back to
    the run's index (``index.html`` beside it) at its top and bottom."""
    from nbconvert import HTMLExporter  # lazy: notebook execution (heavy import)

    nb = snapshot_widgets(nbformat.read(path, as_version=4))
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    nav = _nav(run_name or path.parent.parent.name)
    body = re.sub(r"(<body[^>]*>)", lambda m: m[1] + "\n" + nav, body, count=1)
    body = body.replace("</body>", nav + "\n</body>", 1)
    atomic_write_text(out, body)
    return out


def _readme_link(html_dir: Path) -> str:
    """A link from the run's html folder to the repository's README (when the run lies under the repository)."""
    readme = REPO_ROOT / "README.md"
    if not readme.exists():
        return ""
    rel = Path(os.path.relpath(readme, html_dir)).as_posix()
    teaching = Path(os.path.relpath(REPO_ROOT / "docs" / "teaching.md", html_dir)).as_posix()
    return (f'<p class="kt-back">Back to the project: <a href="{html.escape(rel)}">README</a> · '
            f'<a href="{html.escape(teaching)}">Teach with it</a> (the tour, the explorers, these pages)</p>')


def _index_page(run_name: str, entries: list[tuple[str, str, str, int]], headline: str = "", back: str = "") -> str:
    items = "\n".join(
        f'<li><a href="{html.escape(href)}">{html.escape(title)}</a> <small>({size / 1e6:.1f} MB)</small>'
        f'<div class="kt-summary">{markdown_html(text)}</div></li>'
        for href, title, text, size in entries)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>knee-tf · {html.escape(run_name)}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}}li{{margin-bottom:1.2em}}
.kt-summary{{color:#333}}.kt-summary p{{margin:0.3em 0}}.kt-summary ul,.kt-summary ol{{margin:0.2em 0}}
code{{background:#f3f3f3;padding:0 0.2em}}table.kt-headline{{border-collapse:collapse;margin:1em 0}}
.kt-headline td,.kt-headline th{{border-bottom:1px solid #ddd;padding:0.25em 0.7em;text-align:left}}
.kt-headline caption{{text-align:left;color:#444;margin-bottom:0.3em}}</style></head>
<body><h1>knee-tf study: {html.escape(run_name)}</h1>
{back}
{headline}
<p>The executed notebooks of this run, rendered as static pages. Interactive explorers show the state
they were left in; open the notebooks in JupyterLab to use them.</p>
<ol class="notebooks">
{items}
</ol>
{back}
</body></html>
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
        page = render_notebook(path, layout.html_page(path.stem), layout.root.name)
        title, text = notebook_summary(nbformat.read(path, as_version=4))
        entries.append((page.name, title or path.stem, text, page.stat().st_size))
        written.append(page)
        log(f"rendered {path.name} -> {layout.relative(page)}")
    atomic_write_text(layout.html_index, _index_page(layout.root.name, entries, headline_html(layout),
                                                     _readme_link(layout.html)))
    written.append(layout.html_index)
    log(f"index: {layout.html_index}")
    return written

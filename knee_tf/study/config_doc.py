"""What every ``StudyConfig`` field means, read from the one place it is written: the field's trailing
comment in ``knee_tf/study/config.py``, under a ``# --- group ---`` line. ``knee-tf config`` prints
the fields and ``docs/config.md`` is generated from them, so neither can drift from the dataclass.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
from typing import NamedTuple

from knee_tf.study.config import PRESETS, StudyConfig

FORMATS = ("text", "markdown")
DOCS_PAGE = "docs/config.md"  # relative to the repository root
_WIDE = 24  # the text listing's widest aligned column (a longer value gets its own line)
_GROUP = re.compile(r"#\s*---\s*(.+?)\s*---\s*$")


class ConfigRow(NamedTuple):
    """One field: its group, name, type (as annotated), value under the preset, default and meaning."""

    group: str
    field: str
    type: str
    value: object
    default: object
    meaning: str

    @property
    def differs(self) -> bool:
        return self.value != self.default


def field_meanings(cls: type = StudyConfig) -> dict[str, tuple[str, str]]:
    """``{field: (group, meaning)}`` in field order, from the class source: the meaning is the comment
    that ends the field's line, the group the last ``# --- group ---`` line above it. Raises
    ValueError naming a field that has no meaning or no group."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}  # row -> the comment on that row
    headers = [(row, m.group(1)) for row, text in sorted(comments.items()) if (m := _GROUP.match(text))]
    found = {}
    for node in next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            # a comment on a field's own lines ends it (no statement starts after a comment)
            own = [comments[row] for row in range(node.lineno, node.end_lineno + 1) if row in comments]
            groups = [title for row, title in headers if row < node.lineno]
            found[node.target.id] = (groups[-1] if groups else "", own[0].lstrip("#").strip() if own else "")
    names = [f.name for f in dataclasses.fields(cls)]
    for name in names:
        group, meaning = found.get(name, ("", ""))
        if not meaning:
            raise ValueError(f"{cls.__name__}.{name}: no meaning (end its line with a # comment)")
        if not group:
            raise ValueError(f"{cls.__name__}.{name}: no group (a '# --- group ---' line above it)")
    return {name: found[name] for name in names}


def config_rows(preset: str | None = None) -> list[ConfigRow]:
    """Every ``StudyConfig`` field, in order; ``value`` is the field under ``preset`` (a name in
    :data:`knee_tf.study.config.PRESETS`; None: the default). Raises ValueError on an unknown preset."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    default = StudyConfig()
    chosen = PRESETS[preset]() if preset is not None else default
    return [ConfigRow(group, f.name, str(f.type), getattr(chosen, f.name), getattr(default, f.name), meaning)
            for f, (group, meaning) in zip(dataclasses.fields(StudyConfig), field_meanings().values(), strict=True)]


def show(value) -> str:
    """A field value as ``--set FIELD=VALUE`` takes it (JSON: lists for tuples, quoted strings)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def config_listing(preset: str | None = None, fmt: str = "text") -> str:
    """The fields grouped, as plain text (``knee-tf config``) or Markdown (``docs/config.md``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    rows = config_rows(preset)
    return _text(rows, preset) if fmt == "text" else _markdown(rows, preset)


def _grouped(rows: list[ConfigRow], cells: list[list[str]]):
    """``(group, [cells of its rows])`` in field order."""
    out: list[tuple[str, list[list[str]]]] = []
    for row, cell in zip(rows, cells, strict=True):
        if not out or out[-1][0] != row.group:
            out.append((row.group, []))
        out[-1][1].append(cell)
    return out


def _text(rows: list[ConfigRow], preset: str | None) -> str:
    if preset is None:
        head = (f"StudyConfig: {len(rows)} fields, their defaults and meanings. Presets: {', '.join(PRESETS)} "
                "(knee-tf config --preset NAME shows one beside the defaults).")
        cells = [[r.field, r.type, show(r.default), r.meaning] for r in rows]
    else:
        head = (f"StudyConfig under preset {preset!r}: field, type, value, meaning; * marks the "
                f"{sum(r.differs for r in rows)} fields that differ from the default, given in (parentheses).")
        cells = [["*" if r.differs else " ", r.field, r.type, show(r.value),
                  f"({show(r.default)})" if r.differs else "", r.meaning] for r in rows]
    # a column is as wide as its cells up to _WIDE; a wider cell continues on a line of its own
    widths = [max((len(c[i]) for c in cells if len(c[i]) <= _WIDE), default=0) for i in range(len(cells[0]) - 1)]
    lines = [head, "Change one for a run with --set FIELD=VALUE (knee-tf study, grid, controls, tour; synth its synth_* fields)."]
    for group, members in _grouped(rows, cells):
        lines += ["", group]
        for cell in members:
            line = " "
            for value, width in zip(cell, widths, strict=False):
                if len(value) > width:  # too wide: it ends this line, the next columns go below
                    lines.append(f"{line} {value}")
                    line = " " * (len(line) + 1 + width)
                else:
                    line += " " + value.ljust(width)
            lines.append(f"{line} {cell[-1]}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _cell(text: str) -> str:
    """A table cell: ``|`` escaped (also inside code spans, as GitHub's tables need)."""
    return text.replace("|", "\\|")


def _prose(text: str) -> str:
    """A meaning as Markdown: ``*``, ``_``, ``<`` and backslashes shown as typed (code spans kept)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside `code`
        for char, escaped in (("\\", "\\\\"), ("*", "\\*"), ("_", "\\_"), ("<", "&lt;")):
            parts[i] = parts[i].replace(char, escaped)
    return "`".join(parts)


def _markdown(rows: list[ConfigRow], preset: str | None) -> str:
    command = "knee-tf config --format markdown" + (f" --preset {preset}" if preset else f" --out {DOCS_PAGE}")
    lines = ["# Study settings (`StudyConfig`)", "",
             f"<!-- generated by `{command}` from the comments in knee_tf/study/config.py; do not edit -->", "",
             "Every setting of the study is a field of `knee_tf.study.config.StudyConfig`, written once with its "
             "meaning in `knee_tf/study/config.py`. Change one for a run with `--set FIELD=VALUE` "
             "(`knee-tf study`, `grid`, `controls`, `tour`; `synth` its `synth_*` fields); values are written as `--set` takes them (JSON).", ""]
    if preset is None:
        others = {name: config_rows(name) for name in PRESETS if name != "default"}
        lines += [f"Presets: {', '.join(f'`{name}`' for name in PRESETS)} (`knee-tf config --preset NAME` "
                  "lists one beside the defaults); the *presets* column gives the value each preset sets "
                  "where it differs from the default.", ""]
        header = "| field | type | default | presets | meaning |"
        cells = []
        for i, r in enumerate(rows):
            changed = "; ".join(f"{name}: `{show(o[i].value)}`" for name, o in others.items() if o[i].differs)
            cells.append([f"`{r.field}`", f"`{r.type}`", f"`{show(r.default)}`", changed, _prose(r.meaning)])
    else:
        lines += [f"Preset `{preset}` beside the defaults; values in bold differ from the default.", ""]
        header = f"| field | type | {preset} | default | meaning |"
        cells = [[f"`{r.field}`", f"`{r.type}`", f"**`{show(r.value)}`**" if r.differs else f"`{show(r.value)}`",
                  f"`{show(r.default)}`", _prose(r.meaning)] for r in rows]
    for group, members in _grouped(rows, cells):
        lines += [f"## {group}", "", header, "|" + "---|" * (header.count(" | ") + 1)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in members]
        lines.append("")
    return "\n".join(lines)

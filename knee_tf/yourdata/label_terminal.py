"""``knee-tf label MANIFEST``: the labelling session in JupyterLab (notebook 08), or in the terminal.

Both drive the same :class:`~knee_tf.yourdata.label.LabelSession` with the same keys (``r`` relevant,
``i`` irrelevant, ``s`` skip, ``backspace`` undo; the terminal adds ``q`` to stop). The terminal loop
(:func:`label_in_terminal`) prints the slice as a small greyscale character picture with its plane,
position, current label and the model's suggestion, and reads one key at a time from a terminal, or
one key name per line from a pipe (so a test, or a script, can feed it ``r\\ni\\nbackspace\\n``). Every
label is saved at once by the session, so stopping at any point loses nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_text
from knee_tf.data.dicom_read import DicomError, preprocess, read_dicom_image
from knee_tf.study.config import StudyConfig
from knee_tf.yourdata.label import KEYS, LabelSession

QUIT = "q"
#: Characters a terminal sends for the backspace key (cbreak mode), and what a line may spell.
BACKSPACE = {"\x7f": "backspace", "\x08": "backspace"}
RAMP = " .:-=+*#%@"  # dark to bright
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "08_label_your_data.ipynb"


def char_picture(path: str | Path, width: int = 48) -> str:
    """A DICOM slice as ``width`` x ``width // 2`` characters of :data:`RAMP` (terminal cells are tall)."""
    try:
        img = read_dicom_image(path)
        arr = preprocess(img.pixels, width, img.pixel_spacing)
    except DicomError as e:
        raise InputError(f"{path}: {e}") from None
    rows = arr[::2] if arr.shape[0] >= 2 else arr
    idx = np.clip(np.round(rows * (len(RAMP) - 1)).astype(int), 0, len(RAMP) - 1)
    return "\n".join("".join(RAMP[k] for k in line) for line in idx)


def read_keys(stream: TextIO) -> Iterator[str]:
    """Key names from ``stream``: one keypress at a time from a terminal (cbreak mode), else one per line."""
    if stream.isatty():
        import termios  # lazy: POSIX terminals only
        import tty  # lazy: POSIX terminals only

        fd = stream.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            while ch := stream.read(1):
                yield BACKSPACE.get(ch, ch)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        return
    for line in stream:
        key = line.strip()
        if key:
            yield BACKSPACE.get(key, key)


def _screen(session: LabelSession, root: Path, picture: bool) -> str:
    row = session.current()
    lines = []
    if picture:
        lines.append(char_picture(root / row["path"]))
    hint = f" · model suggests {session.suggestion()}" if session.suggestion() else ""
    lines.append(f"[{session.position + 1}/{len(session.order)}] {row['plane']} · {row['image_id']} · "
                 f"label now: {row['label'] or '-'}{hint}")
    lines.append("keys: r relevant · i irrelevant · s skip · backspace undo · q stop")
    return "\n".join(lines)


def label_in_terminal(session: LabelSession, root: str | Path, keys: Iterable[str], out=print,
                      picture: bool = True) -> dict[str, int]:
    """Show each slice and apply keys until every slice is visited, ``q``, or the keys run out.

    Returns how many keys did what: per value of :data:`~knee_tf.yourdata.label.KEYS`, and 'ignored'."""
    root = Path(root)
    counts = {what: 0 for what in (*KEYS.values(), "ignored")}
    if not session.done:
        out(_screen(session, root, picture))
    for key in keys:
        if key.strip().lower() == QUIT:
            break
        what = session.press(key)
        counts[what] += 1
        if what == "ignored":
            out(f"key {key!r} ignored ({'all slices visited; backspace undoes' if session.done else 'use r, i, s, backspace or q'})")
        if session.done and what != "undo":
            if what != "ignored":
                out(f"all {len(session.order)} slices visited")
            break
        out(_screen(session, root, picture))
    out(session.progress().to_string())
    out(f"saved: {session.path} ({session.writes} writes)")
    return counts


def lab_available() -> bool:
    """JupyterLab and ipywidgets are installed, and there is a display to open a browser on."""
    has = all(importlib.util.find_spec(m) is not None for m in ("jupyterlab", "ipywidgets"))
    screen = sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return has and screen


def prepare_notebook(manifest: str | Path, root: str | Path, dest: str | Path, source: Path = NOTEBOOK) -> Path:
    """Write notebook 08 to ``dest`` (``.ipynb``) set to label ``manifest`` under ``root``: a StudyConfig
    naming them beside it (``dest`` with ``.json``), and a cell after the parameters cell that sets
    ``config`` to that file (the notebook's one parameter, as papermill would inject it)."""
    dest = Path(dest)
    config = dest.with_suffix(".json")
    StudyConfig(name="label", manifest=str(Path(manifest).resolve()), data_root=str(Path(root).resolve())).save(config)
    nb = json.loads(Path(source).read_text())
    cells = nb["cells"]
    at = next((k for k, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if at is None:
        raise InputError(f"{source}: no cell tagged 'parameters'")
    cells.insert(at + 1, {"cell_type": "code", "execution_count": None, "id": "knee-tf-label-parameters",
                          "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
                          "source": [f"config = {str(config.resolve())!r}\n"]})
    atomic_write_text(dest, json.dumps(nb, indent=1) + "\n")
    return dest


def open_in_lab(notebook: Path) -> int:
    """Start JupyterLab on ``notebook`` in the foreground (Ctrl-C stops it); its exit code."""
    return subprocess.call([sys.executable, "-m", "jupyter", "lab", str(notebook)])

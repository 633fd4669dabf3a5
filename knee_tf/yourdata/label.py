"""Label a scanned manifest one slice at a time: the state machine, and the ipywidgets front end.

:class:`LabelSession` is the whole logic, testable without a browser: it walks the rows (exam,
series, plane and slice order), takes keys (``r`` relevant, ``i`` irrelevant, ``s`` skip,
``backspace`` undo), pre-fills a row's suggestion from a model's prediction when the manifest has
one, writes the manifest atomically after every label or undo (a crash loses nothing), and counts
progress per plane. :func:`label_widget` only draws a session and forwards key presses to it.

Nothing is written until a key changes a label, so executing the notebook headlessly (papermill,
nbmake: nobody presses a key) leaves the manifest as it was.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv
from knee_tf.core.vocab import IRRELEVANT, PLANES, RELEVANT
from knee_tf.data.dicom_read import DicomError, preprocess, read_dicom_image
from knee_tf.data.manifest import read_manifest

KEYS = {"r": RELEVANT, "i": IRRELEVANT, "s": "skip", "backspace": "undo"}
SUGGESTION_COLUMN = "predicted"  # written by `knee-tf scan --model` / `knee-tf predict`


@dataclass(frozen=True)
class Action:
    row: int  # position in the session's order
    before: str  # the label before the action
    after: str  # the label after ('' for skip)


class LabelSession:
    """Labelling state over one manifest file.

    path: a manifest with at least image_id, path, plane (``label`` is added when missing).
    Rows are visited in (exam_id, series_uid, plane, slice_location_mm) order when those columns
    exist, else in file order; the file keeps its own row order. ``position`` starts at the first
    unlabelled row; it is None when every row has been visited.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.df = read_manifest(self.path)
        missing = [c for c in ("image_id", "path", "plane") if c not in self.df.columns]
        if missing:
            raise InputError(f"{self.path.name}: labelling needs column(s) {', '.join(missing)}")
        if "label" not in self.df.columns:
            self.df["label"] = ""
        keys = [c for c in ("exam_id", "series_uid") if c in self.df.columns]
        sort = self.df.assign(_plane=self.df["plane"].map({p: i for i, p in enumerate(PLANES)}),
                              _loc=pd.to_numeric(self.df.get("slice_location_mm", pd.Series(0.0, self.df.index)),
                                                 errors="coerce"))
        self.order = sort.sort_values(keys + ["_plane", "_loc"], kind="stable").index.to_numpy()
        self.history: list[Action] = []
        unlabelled = np.flatnonzero(self.df.loc[self.order, "label"].to_numpy() == "")
        self.position: int | None = int(unlabelled[0]) if len(unlabelled) else None
        self.writes = 0

    # ----- what to show -----
    @property
    def done(self) -> bool:
        return self.position is None

    def current(self) -> pd.Series | None:
        """The manifest row on screen (None when done)."""
        return None if self.done else self.df.loc[self.order[self.position]]

    def suggestion(self) -> str:
        """The model's predicted class for the current row ('' without a prediction or when done)."""
        row = self.current()
        if row is None or SUGGESTION_COLUMN not in row.index:
            return ""
        return str(row[SUGGESTION_COLUMN])

    def neighbours(self) -> tuple[pd.Series | None, pd.Series | None]:
        """The previous and next slice of the same exam, series and plane (None at the ends)."""
        if self.done:
            return None, None
        cur = self.current()
        same = [k for k in self.order if all(self.df.at[k, c] == cur[c] for c in ("exam_id", "series_uid", "plane")
                                               if c in self.df.columns)]
        j = same.index(self.order[self.position])
        prev = self.df.loc[same[j - 1]] if j > 0 else None
        nxt = self.df.loc[same[j + 1]] if j + 1 < len(same) else None
        return prev, nxt

    def progress(self) -> pd.DataFrame:
        """Per plane: labelled, total and share (rows with a non-empty label)."""
        g = self.df.assign(labelled=self.df["label"] != "").groupby("plane")["labelled"]
        out = pd.DataFrame({"labelled": g.sum().astype(int), "total": g.size()})
        out = out.reindex([p for p in PLANES if p in out.index])
        out["share"] = (out["labelled"] / out["total"]).round(3)
        return out

    # ----- what keys do -----
    def press(self, key: str) -> str:
        """Apply one key; returns what happened (a class name, 'skip', 'undo' or 'ignored').

        r / i: set the current row's label, save, move on; s: move on without a label; backspace:
        restore the row of the last r/i/s as it was, save, and go back to it. Keys when done (other
        than undo), and undo with no history, are ignored.
        """
        what = KEYS.get(key.strip().lower())
        if what is None:
            return "ignored"
        if what == "undo":
            if not self.history:
                return "ignored"
            act = self.history.pop()
            if act.after != act.before:
                self._set(act.row, act.before)
            self.position = act.row
            return "undo"
        if self.done:
            return "ignored"
        k = self.position
        before = str(self.df.at[self.order[k], "label"])
        after = before if what == "skip" else what
        self.history.append(Action(k, before, after))
        if after != before:
            self._set(k, after)
        self._advance()
        return what

    def _set(self, k: int, label: str) -> None:
        self.df.at[self.order[k], "label"] = label
        atomic_write_csv(self.path, self.df)
        self.writes += 1

    def _advance(self) -> None:
        nxt = self.position + 1
        self.position = nxt if nxt < len(self.order) else None


def slice_png(path: Path, size: int = 256) -> bytes:
    """A DICOM slice as PNG bytes (percentile-normalised greyscale, padded square, ``size`` pixels)."""
    try:
        img = read_dicom_image(path)
        arr = preprocess(img.pixels, size, img.pixel_spacing)
    except DicomError as e:
        raise InputError(f"{path}: {e}") from None
    buf = io.BytesIO()
    Image.fromarray(np.round(arr * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def label_widget(session: LabelSession, root: str | Path):
    """An ipywidgets box showing ``session``: the slice, its neighbours, plane, suggestion, progress.

    Keys go to the focused text field (r, i, s, backspace); buttons do the same for a mouse.
    """
    import ipywidgets as w  # lazy: notebook front end, optional outside Jupyter

    root = Path(root)
    big, prev_img, next_img = w.Image(format="png", width=384), w.Image(format="png", width=128), \
        w.Image(format="png", width=128)
    info, prog = w.HTML(), w.HTML()
    keys = w.Text(value=".", description="keys:", placeholder="click here, then r / i / s / backspace",
                  continuous_update=True)
    buttons = [w.Button(description=d) for d in ("relevant (r)", "irrelevant (i)", "skip (s)", "undo (⌫)")]
    busy = {"on": False}

    def draw():
        row = session.current()
        prog.value = session.progress().to_html()
        if row is None:
            info.value = f"<b>All {len(session.order)} slices visited.</b> Saved: {session.path}"
            return
        prev, nxt = session.neighbours()
        big.value = slice_png(root / row["path"], 384)
        prev_img.value = slice_png(root / prev["path"], 128) if prev is not None else b""
        next_img.value = slice_png(root / nxt["path"], 128) if nxt is not None else b""
        hint = f" · model suggests <b>{session.suggestion()}</b>" if session.suggestion() else ""
        info.value = (f"<b>{row['plane']}</b> · {row['image_id']} · slice {session.position + 1} of "
                      f"{len(session.order)} · label now: <b>{row['label'] or '—'}</b>{hint}")

    def on_keys(change):
        if busy["on"]:
            return
        new = change["new"]
        key = "backspace" if len(new) < 1 else new[-1]
        busy["on"] = True
        keys.value = "."
        busy["on"] = False
        session.press(key)
        draw()

    keys.observe(on_keys, names="value")
    for b, key in zip(buttons, ("r", "i", "s", "backspace"), strict=True):
        b.on_click(lambda _b, key=key: (session.press(key), draw()))
    draw()
    return w.VBox([info, w.HBox([prev_img, big, next_img]), w.HBox(buttons), keys, prog])

"""The figure of one prescribed exam: each plane's central slice, with the other planes' relevant ranges on it.

Each panel shows the middle slice (index ``n // 2``) of one plane's stack. The first and last relevant slice
of each *other* plane are drawn as lines where their planes cut the shown slice, and the range between
them is shaded; both come from DICOM geometry (:func:`plane_line`), so an oblique localizer is drawn as
it was acquired. A plane without a relevant slice is named in the panel's legend as such.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from knee_tf.core.vocab import PLANES
from knee_tf.data.dicom_read import read_dicom_image
from knee_tf.data.manifest import resolve_image_path
from knee_tf.study.plots import savefig
from knee_tf.yourdata.prescribe import FOUND

#: one colour per plane whose range is drawn
PLANE_COLOURS = dict(zip(PLANES, ("#ff9f1c", "#2ec4f1", "#7ae582"), strict=True))
FONT = 10  # points: every text of the figure is at least this big


def plane_line(view: pd.Series, point, normal) -> np.ndarray | None:
    """Where the plane through ``point`` (LPS mm, (3,)) with unit ``normal`` cuts the image of ``view`` (a
    slice_table row: ipp, row_dir, col_dir, spacing, shape): float (2, 2) [[col, row], [col, row]], the ends
    of the line across the image in pixel coordinates (pixel centres at integers). None when the plane
    is parallel to the image.

    A pixel (row r, column c) lies at ``ipp + c * dc * row_dir + r * dr * col_dir`` (DICOM: the first
    ImageOrientationPatient vector runs along a row, PixelSpacing is (dr, dc)); it is on the plane where
    ``a + c * kc + r * kr = 0``."""
    normal = np.asarray(normal, dtype=float)
    dr, dc = view["spacing"]
    a = float((view["ipp"] - np.asarray(point, dtype=float)) @ normal)
    kc, kr = dc * float(view["row_dir"] @ normal), dr * float(view["col_dir"] @ normal)
    rows, cols = view["shape"]
    if max(abs(kc), abs(kr)) < 1e-6:
        return None
    if abs(kr) >= abs(kc):  # closer to horizontal: row as a function of column
        c = np.array([-0.5, cols - 0.5])
        return np.stack([c, -(a + c * kc) / kr], axis=1)
    r = np.array([-0.5, rows - 0.5])
    return np.stack([-(a + r * kr) / kc, r], axis=1)


def _window(pixels: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(pixels, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _panel(ax, stack: pd.DataFrame, exam_slices: pd.DataFrame, table: pd.DataFrame, root: Path) -> None:
    plane = stack["plane"].iloc[0]
    view = stack.iloc[len(stack) // 2]
    pixels = read_dicom_image(resolve_image_path(view["path"], root)).pixels
    ax.imshow(pixels, cmap="gray", vmin=_window(pixels)[0], vmax=_window(pixels)[1], interpolation="nearest")
    own = table[(table["plane"] == plane) & (table["series_uid"] == view["series_uid"])]
    own_text = "no relevant slice" if own.empty or own["status"].iloc[0] != FOUND else (
        f"relevant {own['first_index'].iloc[0]}-{own['last_index'].iloc[0]}")
    ax.set_title(f"{plane}: slice {view['index']} of 0-{len(stack) - 1}\n{own_text}", fontsize=FONT + 1)
    handles = []
    for _, other in table[table["plane"] != plane].iterrows():
        colour = PLANE_COLOURS.get(other["plane"], "#ff4d6d")
        if other["status"] != FOUND:
            handles.append(ax.plot([], [], color=colour, lw=2, ls=":",
                                   label=f"{other['plane']}: no relevant slice")[0])
            continue
        ends = []
        for which in ("first", "last"):
            sl = exam_slices[(exam_slices["image_id"] == other[f"{which}_image_id"])].iloc[0]
            line = plane_line(view, sl["ipp"], sl["normal"])
            if line is not None:
                ends.append(line)
                ax.plot(line[:, 0], line[:, 1], color=colour, lw=1.8)
        if len(ends) == 2:
            ax.fill(np.r_[ends[0][:, 0], ends[1][::-1, 0]], np.r_[ends[0][:, 1], ends[1][::-1, 1]],
                    color=colour, alpha=0.18, lw=0)
        warn = ", reaches an edge" if other["edge_warning"] else ""
        gaps = f", {other['n_gaps']} gap(s)" if other["n_gaps"] else ""
        handles.append(ax.plot([], [], color=colour, lw=2, label=f"{other['plane']} {other['first_index']}-"
                                                                 f"{other['last_index']}{gaps}{warn}")[0])
    rows, cols = view["shape"]
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=FONT, frameon=False)


def plot_exam(exam_slices: pd.DataFrame, table: pd.DataFrame, root: str | Path, path: str | Path) -> Path:
    """Draw one exam (its rows of the slice table and of the prescription) into ``path`` (PNG, atomic).

    One panel per plane, in vocabulary order; of several series with one plane, the first is shown."""
    path = Path(path)
    shown = table.drop_duplicates("plane")
    planes = [p for p in PLANES if p in set(shown["plane"])]
    fig, axes = plt.subplots(1, max(len(planes), 1), figsize=(4.2 * max(len(planes), 1), 5.2), squeeze=False)
    for ax, plane in zip(axes[0], planes, strict=False):
        series = shown.loc[shown["plane"] == plane, "series_uid"].iloc[0]
        stack = exam_slices[(exam_slices["plane"] == plane) & (exam_slices["series_uid"] == series)]
        _panel(ax, stack.sort_values("index"), exam_slices, shown, Path(root))
    fig.suptitle(f"exam {table['exam_id'].iloc[0]}: predicted relevant range of each plane, drawn on the others",
                 fontsize=FONT + 1)
    fig.tight_layout()
    out = savefig(fig, path.name, path.parent, dpi=110, close=True)
    return out

"""One way to save a figure: a PNG a person can open, written atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

from knee_tf.io import atomic_path  # noqa: E402


def savefig(fig, name: str, out_dir: str | Path, dpi: int = 120, close: bool = False) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` (``.png`` added if missing) and return the path."""
    name = name if name.endswith(".png") else f"{name}.png"
    path = Path(out_dir) / name
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if close:
        plt.close(fig)
    return path


def plot_counts(index):
    """Bar chart of image counts per split x plane x label, one panel per split; returns the Figure."""
    import seaborn as sns

    g = sns.catplot(data=index, x="plane", hue="label", col="split", kind="count", height=2.8, aspect=1.0,
                    order=["axial", "sagittal", "coronal"], hue_order=["irrelevant", "relevant"],
                    col_order=[s for s in ("train", "val", "test") if s in set(index["split"])],
                    palette={"irrelevant": "#9e9e9e", "relevant": "#d1495b"})
    g.set_titles("{col_name}")
    g.figure.suptitle("Images per split, plane and label", y=1.04)
    return g.figure


def montage(images, index, rows: str = "plane", cols: str = "label", per_cell: int = 3, seed: int = 0,
            row_order=None, col_order=None, title: str = ""):
    """A grid of example images: one block of ``per_cell`` random images per (row value, column value).

    images: float32 (N, H, W, 1) in [0, 1]; index: DataFrame aligned with images.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    rv = row_order or sorted(index[rows].unique())
    cv = col_order or sorted(index[cols].unique())
    fig, axes = plt.subplots(len(rv), len(cv) * per_cell, figsize=(1.5 * len(cv) * per_cell, 1.6 * len(rv)),
                             squeeze=False)
    for i, r in enumerate(rv):
        for j, c in enumerate(cv):
            pool = np.flatnonzero((index[rows] == r).to_numpy() & (index[cols] == c).to_numpy())
            pick = rng.choice(pool, size=min(per_cell, len(pool)), replace=False) if len(pool) else []
            for k in range(per_cell):
                ax = axes[i, j * per_cell + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if k < len(pick):
                    ax.imshow(np.asarray(images[pick[k]])[..., 0], cmap="gray", vmin=0, vmax=1)
                if i == 0 and k == 0:
                    ax.set_title(str(c), fontsize=8, loc="left")
                if j == 0 and k == 0:
                    ax.set_ylabel(str(r), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def intensity_histograms(images, index, by: str = "site", bins: int = 50):
    """Per-group histogram of normalised intensities (the foreground, pixels > 0.05), one line per group."""
    import numpy as np
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 3.2))
    groups = sorted(index[by].unique()) if by in index else ["all"]
    palette = sns.color_palette("tab10", len(groups))
    edges = np.linspace(0, 1, bins + 1)
    for g, color in zip(groups, palette, strict=True):
        sel = np.flatnonzero((index[by] == g).to_numpy()) if by in index else np.arange(len(images))
        sel = sel[:: max(1, len(sel) // 300)]  # at most ~300 images per group
        v = np.asarray(images[sel]).ravel()
        hist, _ = np.histogram(v[v > 0.05], bins=edges, density=True)
        ax.plot((edges[:-1] + edges[1:]) / 2, hist, label=str(g), color=color, lw=1.3)
    ax.set_xlabel("normalised intensity (foreground, > 0.05)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.set_title(f"Intensity distribution per {by}")
    fig.tight_layout()
    return fig

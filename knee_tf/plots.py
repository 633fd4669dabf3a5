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

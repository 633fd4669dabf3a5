"""A PNG grid of the same slices in two phantom folders (today's and a candidate), per plane: the
first slices of the realism sample (``bench/realism.py``'s), each shown 1-99 % windowed.

    python bench/realism_grid.py --a data/v2 --b data/v3 --out figures/phantom_v2_v3.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pydicom  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import realism  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", type=Path, required=True)
    p.add_argument("--b", type=Path, required=True)
    p.add_argument("--labels", nargs=2, default=("today (v2)", "candidate (v3)"))
    p.add_argument("--per-plane", type=int, default=3)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    picked = realism.sample(pd.read_csv(a.a / "data_manifest.csv"))
    rows = [(plane, g.iloc[i]) for plane in realism.PLANES
            for g in [picked[picked.plane == plane]] for i in range(a.per_plane)]
    fig, axes = plt.subplots(len(rows), 2, figsize=(6.4, 3.2 * len(rows)))
    for r, (plane, row) in enumerate(rows):
        for c, (root, label) in enumerate(zip((a.a, a.b), a.labels, strict=True)):
            img = pydicom.dcmread(root / row.path).pixel_array.astype(np.float32)
            lo, hi = np.percentile(img, [1, 99])
            ax = axes[r, c]
            ax.imshow(np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1), cmap="gray")
            ax.set_title(f"{label}: {plane} {row.image_id} ({row.site})", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=80)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

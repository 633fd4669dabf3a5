"""Intensity statistics of synthetic localizer slices, measured the way the real GE localizer was
measured (``../shared/REAL_LOCALIZER_FACTS.md``), for ``docs/phantom.md``'s comparison table.

Per slice: foreground = the largest connected component above an Otsu threshold, holes filled;
background = pixels more than 10 pixels from it. Percentiles p5/p50/p95 of the foreground relative
to its 99th percentile; knee area / FOV; background mean / foreground p50; shading = brightest /
darkest third of the foreground along rows and along columns (mean of row/column thirds). Median per
plane over a seeded sample of slices.

    python bench/localizer_stats.py data/synthetic --per-plane 60 [--site S7]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from scipy import ndimage


def otsu(x: np.ndarray) -> float:
    hist, edges = np.histogram(x, bins=256)
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * edges[:-1])
    between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    return float(edges[int(np.argmax(between))])


def slice_stats(img: np.ndarray) -> dict | None:
    img = img.astype(np.float64)
    lab, n = ndimage.label(img > otsu(img))
    if n == 0:
        return None
    sizes = ndimage.sum(np.ones_like(img), lab, range(1, n + 1))
    fg = ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))
    v = img[fg]
    p99 = np.percentile(v, 99)
    bg = ndimage.distance_transform_edt(~fg) > 10
    rows = np.flatnonzero(fg.any(1))
    cols = np.flatnonzero(fg.any(0))

    def shading(axis_idx, axis):
        thirds = np.array_split(axis_idx, 3)
        means = []
        for t in thirds:
            m = np.zeros_like(fg)
            if axis == 0:
                m[t] = True
            else:
                m[:, t] = True
            means.append(img[fg & m].mean() if (fg & m).any() else np.nan)
        return np.nanmax(means) / max(np.nanmin(means), 1e-9)

    return {"area": fg.mean(), "p5": np.percentile(v, 5) / p99, "p50": np.percentile(v, 50) / p99,
            "p95": np.percentile(v, 95) / p99,
            "bg_over_p50": img[bg].mean() / np.percentile(v, 50) if bg.any() else np.nan,
            "shade_rows": shading(rows, 0), "shade_cols": shading(cols, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--per-plane", type=int, default=60)
    p.add_argument("--site", default="")
    a = p.parse_args(argv)
    root = Path(a.root)
    df = pd.read_csv(root / "data_manifest.csv")
    if a.site:
        df = df[df.site == a.site]
    out = []
    for plane, g in df.groupby("plane", sort=False):
        g = g.sample(n=min(a.per_plane, len(g)), random_state=0)
        rows = [slice_stats(pydicom.dcmread(root / r).pixel_array) for r in g.path]
        rows = [r for r in rows if r is not None]
        med = pd.DataFrame(rows).median()
        out.append({"plane": plane, "n": len(rows), **med.round(2).to_dict()})
    print(pd.DataFrame(out).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

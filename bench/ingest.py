"""Benchmark: DICOM decoding throughput with 1 and 2 workers, and a cached re-run.

    python bench/ingest.py [--manifest data/synthetic/data_manifest.csv] [--limit 2000]

Uses the default synthetic dataset (generated first if missing). Goals (docs/performance.md):
>= 1.6x speed-up with 2 workers; cached re-run >= 20x faster than decoding.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from knee_tf.data.ingest import ingest
from knee_tf.study.config import StudyConfig, resolve
from knee_tf.study.pipeline import ensure_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", default="")
    ap.add_argument("--limit", type=int, default=2000, help="rows to decode (0 = all)")
    ap.add_argument("--image-size", type=int, default=StudyConfig().image_size)
    a = ap.parse_args()
    manifest = resolve(a.manifest) if a.manifest else ensure_dataset(StudyConfig())
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    if a.limit:
        df = df.iloc[: a.limit]
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "manifest.csv"
        df.to_csv(sub, index=False)
        times = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            ingest(sub, manifest.parent, cache_dir=Path(tmp) / f"cache{workers}", image_size=a.image_size,
                   workers=workers, progress=False)
            times[workers] = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = ingest(sub, manifest.parent, cache_dir=Path(tmp) / "cache2", image_size=a.image_size, workers=2,
                     progress=False)
        _ = float(res.images[:, ::8, ::8].sum())  # touch the memory-mapped data
        cached = time.perf_counter() - t0
    n = len(df)
    print(f"files: {n}  image size: {a.image_size}")
    print(f"1 worker : {times[1]:7.2f} s  {n / times[1]:8.1f} files/s")
    print(f"2 workers: {times[2]:7.2f} s  {n / times[2]:8.1f} files/s  speed-up {times[1] / times[2]:.2f}x "
          "(goal >= 1.6x)")
    print(f"cached   : {cached:7.2f} s  {n / cached:8.1f} files/s  {times[2] / cached:.0f}x faster than "
          "2-worker decoding (goal >= 20x)")


if __name__ == "__main__":
    main()

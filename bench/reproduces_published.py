"""Check: does a run folder reproduce the published grid? (bench/logs/study.txt)

    python bench/reproduces_published.py runs/<folder> [--top .]

Every finished job of the run folder (a model folder with its ``job.json``) that the published grid
(``results/grid``) also has is compared with it: the predictions, compacted to the published file's
bytes (:func:`knee_tf.grid_publish.compact_predictions`), and the training log. Jobs the published
grid lacks, or publishes with other settings or data (their digests differ), are listed, not compared.
Training is deterministic for a given machine kind and thread count, so a ``make study`` run gives
the published seed-0 jobs exactly where the published grid was trained on the same kind of machine.
Exit status 1 when a compared job differs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--top", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the repository whose results/grid is compared (default: this one)")
    a = ap.parse_args()

    import pandas as pd

    from knee_tf.config import StudyConfig, resolve
    from knee_tf.grid import check_cache
    from knee_tf.grid_publish import compact_predictions
    from knee_tf.ingest import open_cache
    from knee_tf.layout import RunLayout, published_grid

    layout, pub = RunLayout(a.run), published_grid(a.top)
    if not layout.config.is_file():
        sys.exit(f"{a.run}: not a run folder (no {layout.relative(layout.config)})")
    cache_root = resolve(StudyConfig.load(layout.config).cache_dir)
    indexes: dict[str, object] = {}
    differ = 0
    for path in sorted(layout.root.glob("models/*/job.json")):
        rec = json.loads(path.read_text())
        name, seed = rec["job"], rec["seed"]
        key = rec["ingest_key"]
        if key not in indexes:
            indexes[key] = open_cache(check_cache(cache_root / key)).index
        index = indexes[key]
        published = pub.job_record(name, seed)
        if not published.is_file():
            print(f"{name} seed {seed}: not in the published grid")
            continue
        prec = json.loads(published.read_text())
        if (rec["settings_digest"], rec["data_digest"]) != (prec["settings_digest"], prec["data_digest"]):
            print(f"{name} seed {seed}: published with other settings or data, not compared")
            continue
        mine = compact_predictions(pd.read_parquet(layout.grid_predictions(name, seed)), index)
        same_pred = mine == pub.predictions(name, seed).read_bytes()
        same_log = layout.training_log(name, seed).read_bytes() == pub.training_log(name, seed).read_bytes()
        differ += not (same_pred and same_log)
        print(f"{name} seed {seed}: predictions {'identical' if same_pred else 'DIFFER'}, "
              f"training log {'identical' if same_log else 'DIFFERS'} "
              f"(this run {rec.get('host', '?')}, {rec.get('tf_threads', '?')} threads, {rec['seconds']} s; "
              f"published {prec.get('seconds', '?')} s)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

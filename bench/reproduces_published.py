"""Check: does a run folder reproduce the published grid? (bench/logs/study.txt)

    python bench/reproduces_published.py runs/<folder> [--top .]

Every finished job of the run folder (a model folder with its ``job.json``) that the published grid
(``results/grid``) also has is compared with it: the predictions, compacted to the published file's
bytes, as the grid checks a retrained Model A (:func:`knee_tf.controls.publish.check_retrained`, which names
the first differing row), and the training log. Jobs the published grid lacks, or publishes with other
settings or data (:func:`knee_tf.controls.publish.published_status`), are listed, not compared.
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


    from knee_tf.controls.jobs import Job
    from knee_tf.controls.publish import check_retrained, published_status
    from knee_tf.controls.training_job import check_cache
    from knee_tf.data.ingest import open_cache
    from knee_tf.data.layout import RunLayout, published_grid
    from knee_tf.study.config import StudyConfig, resolve

    layout, pub = RunLayout(a.run), published_grid(a.top)
    if not layout.config.is_file():
        sys.exit(f"{a.run}: not a run folder (no {layout.relative(layout.config)})")
    cache_root = resolve(StudyConfig.load(layout.config).cache_dir)
    indexes: dict[str, object] = {}
    differ = 0
    for path in sorted(layout.root.glob("models/*/job.json")):
        rec = json.loads(path.read_text())
        job = Job(rec["arm"], rec["seed"], tuple(rec["overrides"].items()), rec["variant"])
        published, what = published_status(pub, job, rec)
        if not published or what:
            print(f"{job.label}: " + (f"published with other {what}, not compared" if published
                                      else "not in the published grid"))
            continue
        if rec["ingest_key"] not in indexes:
            indexes[rec["ingest_key"]] = open_cache(check_cache(cache_root / rec["ingest_key"])).index
        try:
            check_retrained(pub, layout, job, indexes[rec["ingest_key"]])
            predictions = "identical"
        except RuntimeError as e:
            predictions = f"DIFFER: {e}"
        same_log = layout.training_log(job.name, job.seed).read_bytes() == \
            pub.training_log(job.name, job.seed).read_bytes()
        differ += predictions != "identical" or not same_log
        print(f"{job.label}: training log {'identical' if same_log else 'DIFFERS'} "
              f"(this run {rec.get('host', '?')}, {rec.get('tf_threads', '?')} threads, {rec['seconds']} s), "
              f"predictions {predictions}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

"""Ship the published seed-0 Model A and Model B: their weights from a run folder that reproduces them.

    python bench/ship_models.py runs/<folder> [--top .]

For each shipped (arm, seed) (:data:`knee_tf.yourdata.models.SHIPPED`), the run folder's job must be the
published grid job retrained byte for byte: the same settings and data (``published_status``) and
the same per-image predictions (``check_retrained``, which names the first differing row). Only then
are its weights written to ``results/models/`` (:func:`knee_tf.yourdata.models.export_weights`), and
the model rebuilt from them (:func:`knee_tf.yourdata.models.load_published`) is checked to hold the
same weights in the same dtype policy. Exit status 1 if a job is missing or differs: nothing is
shipped from a model whose predictions are not the published ones.
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
                    help="the repository whose results/grid is compared and whose results/models is written")
    a = ap.parse_args()

    import numpy as np

    from knee_tf.controls.jobs import Job
    from knee_tf.controls.publish import check_retrained, published_status
    from knee_tf.controls.training_job import check_cache
    from knee_tf.core.model import load_model
    from knee_tf.core.precision import model_precision
    from knee_tf.data.ingest import open_cache
    from knee_tf.data.layout import RunLayout, published_grid
    from knee_tf.study.config import StudyConfig, resolve
    from knee_tf.yourdata.models import SHIPPED, export_weights, load_published

    layout, pub = RunLayout(a.run), published_grid(a.top)
    if not layout.config.is_file():
        sys.exit(f"{a.run}: not a run folder (no {layout.relative(layout.config)})")
    cache_root = resolve(StudyConfig.load(layout.config).cache_dir)
    failed = 0
    for arm, seed in SHIPPED:
        record_path = layout.job_record(arm, seed)
        if not record_path.is_file():
            print(f"{arm} seed {seed}: not in {a.run} (run `make study` first)")
            failed += 1
            continue
        rec = json.loads(record_path.read_text())
        job = Job(arm, seed)
        published, what = published_status(pub, job, rec)
        if not published or what:
            print(f"{job.label}: " + (f"published with other {what}" if published else "not in the published grid"))
            failed += 1
            continue
        try:
            check_retrained(pub, layout, job, open_cache(check_cache(cache_root / rec["ingest_key"])).index)
        except RuntimeError as e:
            print(f"{job.label}: predictions DIFFER from the published job: {e}")
            failed += 1
            continue
        model = load_model(layout.model(arm, seed))
        path = export_weights(model, arm, seed, a.top)
        shipped = load_published(arm, seed, a.top)
        same = model_precision(shipped) == model_precision(model) and all(
            np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(model.weights, shipped.weights, strict=True))
        failed += not same
        print(f"{job.label}: predictions identical to the published job; shipped {path.relative_to(a.top)} "
              f"({path.stat().st_size / 1e6:.2f} MB, {model_precision(shipped)}); rebuilt model "
              f"{'holds the same weights' if same else 'DIFFERS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

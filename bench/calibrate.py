"""One difficulty-calibration trial of the phantom, with Model A alone (issue 10).

For one setting of the ``synth_*`` difficulty fields of :class:`knee_tf.config.StudyConfig`:
synthesise the default 513-exam dataset, ingest it, train Model A (seed 0, the default training
settings), and append one row to ``docs/calibration.csv``: UTC time, the settings, Model A's
normal-test accuracy with its bootstrap CI, the share of A's errors that are label-noise errors
(annotator label != geometric rule label), the linear baseline, and (for information) A on the
new_site and metal cohorts. Model B and the augmentation are never trained or evaluated here.

    python bench/calibrate.py --set synth_texture=1.0 --set synth_snr_scale=0.8 --note "first try"

The data and cache go to a scratch folder (``--work``, default /tmp/knee-tf-calibrate); nothing in
``data/`` or ``runs/`` is touched.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "docs" / "calibration.csv"
FIELDS = ("synth_texture", "synth_snr_scale", "synth_hard_share", "synth_annotator_spread",
          "synth_quality_shift_mm", "synth_ghost_probability")
COLUMNS = ("utc", *FIELDS, "label_noise_rate", "a_normal_acc", "a_normal_ci_low",
           "a_normal_ci_high", "noise_share_of_errors", "linear_baseline", "a_new_site_acc",
           "a_metal_acc", "epochs_run", "synth_s", "note")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--work", default="/tmp/knee-tf-calibrate")
    p.add_argument("--note", default="")
    p.add_argument("--workers", type=int, default=0)
    a = p.parse_args(argv)

    from knee_tf.baseline import linear_baseline
    from knee_tf.config import StudyConfig, seed_everything
    from knee_tf.evaluate import accuracy_ci
    from knee_tf.ingest import ingest
    from knee_tf.model import predict_proba, train_classifier
    from knee_tf.phantom import synthesize
    from knee_tf.vocab import (
        LABEL_NOISE_COLUMN,
        METAL,
        MODEL_A,
        NEW_SITE,
        NORMAL,
        TEST,
        TRAIN,
        VAL,
        predicted_class,
    )

    cfg = StudyConfig().with_settings(a.set)
    work = Path(a.work)
    data_dir = work / "data"
    t0 = time.perf_counter()
    synthesize(data_dir, n_exams=cfg.n_exams, seed=cfg.synth_seed, matrix=cfg.synth_matrix,
               metal_fraction=cfg.metal_fraction, workers=a.workers or None,
               difficulty=cfg.synth_difficulty())
    synth_s = time.perf_counter() - t0
    data = ingest(data_dir / "data_manifest.csv", data_dir, work / "cache", cfg.image_size,
                  workers=a.workers or None)
    seed_everything(cfg.seed)
    x_tr, y_tr, _ = data.split(TRAIN, cohort=NORMAL)
    x_va, y_va, _ = data.split(VAL, cohort=NORMAL)
    res = train_classifier(x_tr, y_tr, x_va, y_va, work / f"model_{MODEL_A}.keras", seed=cfg.seed,
                           verbose=2, **cfg.training_settings())
    acc = {}
    noise_share = float("nan")
    for cohort in (NORMAL, NEW_SITE, METAL):
        x, y, idx = data.split(TEST, cohort=cohort)
        if not len(x):
            continue
        pred = predicted_class(predict_proba(res.model, x, cfg.predict_batch_size)[:, 1])
        correct = pred == y
        acc[cohort] = accuracy_ci(correct, n_boot=cfg.n_bootstrap, seed=0)
        if cohort == NORMAL:
            noisy = idx[LABEL_NOISE_COLUMN].astype(str).str.lower() == "true"
            noise_share = float(noisy[~correct].mean()) if (~correct).any() else 0.0
            x_test, y_test = x, y
    base = linear_baseline(x_tr, y_tr, x_test, y_test)
    flips = data.index[LABEL_NOISE_COLUMN].astype(str).str.lower() == "true"
    row = {"utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           **{f: getattr(cfg, f) for f in FIELDS},
           "label_noise_rate": round(float(flips.mean()), 4),
           "a_normal_acc": round(acc[NORMAL][0], 4), "a_normal_ci_low": round(acc[NORMAL][1], 4),
           "a_normal_ci_high": round(acc[NORMAL][2], 4),
           "noise_share_of_errors": round(noise_share, 4),
           "linear_baseline": round(float(base["accuracy"]), 4),
           "a_new_site_acc": round(acc[NEW_SITE][0], 4) if NEW_SITE in acc else "",
           "a_metal_acc": round(acc[METAL][0], 4) if METAL in acc else "",
           "epochs_run": len(res.history), "synth_s": round(synth_s, 1), "note": a.note}
    new = not LOG.exists()
    with LOG.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)
    print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

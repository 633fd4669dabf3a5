"""Does bfloat16 change what the study concludes? Model A's normal-test accuracy, per seed, in each precision.

    python bench/precision.py [--config default] [--seeds 3] [--out results/precision.csv]

Trains Model A (the study's training settings, ``train_classifier``) on the config's data for
``--seeds`` seeds in ``float32`` and in ``mixed_bfloat16``, and scores each on the normal test
split. Writes one row per (precision, seed): accuracy, the epoch early stopping kept, epochs run,
training seconds and images/s (under whatever load the machine had; see ``load_1min``), and
prints mean +- sd per precision. The default precision may become ``auto`` (bfloat16 on this CPU)
only if the two means agree within their seed spread. Re-runnable: the data is generated and
ingested when missing (``knee_tf.study.pipeline.ensure_dataset``, the ingest cache), and the table is
rewritten whole.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from knee_tf.core.io import atomic_write_csv
from knee_tf.core.model import predict_proba, train_classifier
from knee_tf.core.precision import FLOAT32, MIXED_BFLOAT16
from knee_tf.core.vocab import NORMAL, TEST, TRAIN, VAL, predicted_class
from knee_tf.data.ingest import ingest
from knee_tf.study.config import get_config, resolve
from knee_tf.study.evaluate import accuracy_ci
from knee_tf.study.pipeline import ensure_dataset
from knee_tf.study.report import precision_markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="results/precision.csv")
    a = ap.parse_args()

    cfg = get_config(a.config)
    manifest = ensure_dataset(cfg)
    data = ingest(manifest, resolve(cfg.data_root), cache_dir=resolve(cfg.cache_dir), image_size=cfg.image_size,
                  on_error=cfg.on_error, workers=cfg.n_workers)
    x_train, y_train, _ = data.split(TRAIN, cohort=NORMAL)
    x_val, y_val, _ = data.split(VAL, cohort=NORMAL)
    x_test, y_test, _ = data.split(TEST, cohort=NORMAL)
    print(f"config {cfg.name}: {len(x_train)} training, {len(x_val)} validation, {len(x_test)} normal test images")
    rows = []
    for seed in range(cfg.seed, cfg.seed + a.seeds):
        for precision in (FLOAT32, MIXED_BFLOAT16):  # alternating, so load hits both alike
            settings = dict(cfg.training_settings(), precision=precision)
            load = os.getloadavg()[0]
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = train_classifier(x_train, y_train, x_val, y_val, Path(tmp) / "model_a.keras", seed=seed,
                                       verbose=0, **settings)
                seconds = time.perf_counter() - t0
            correct = predicted_class(predict_proba(res.model, x_test, cfg.predict_batch_size)[:, 1]) == y_test
            _, ci_low, ci_high = accuracy_ci(correct, n_boot=cfg.n_bootstrap, seed=seed)
            epochs = len(res.history)
            rows.append({"config": cfg.name, "precision": precision, "seed": seed, "n_test": len(y_test),
                         "accuracy": float(correct.mean()), "ci_low": ci_low, "ci_high": ci_high,
                         "best_epoch": int(res.history["val_loss"].idxmin()) + 1, "epochs_run": epochs,
                         "train_seconds": round(seconds, 1),
                         "train_images_per_s": round(epochs * len(x_train) / seconds, 1),
                         "load_1min": round(load, 2)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    atomic_write_csv(resolve(a.out), table)
    summary = table.groupby("precision")["accuracy"].agg(["mean", "std", "count"]) * [100, 100, 1]
    print(summary.round(2).to_string())
    f32, bf16 = summary.loc[FLOAT32], summary.loc[MIXED_BFLOAT16]
    gap, spread = abs(f32["mean"] - bf16["mean"]), max(f32["std"], bf16["std"])
    verdict = "agree" if gap <= spread else "DIFFER"
    print(f"mean difference {gap:.2f} points vs the larger seed sd {spread:.2f}: the precisions {verdict}")
    print(f"wrote {resolve(a.out)}; docs/performance.md's table (knee-tf controls --publish writes it there):\n{precision_markdown(table)}")


if __name__ == "__main__":
    main()

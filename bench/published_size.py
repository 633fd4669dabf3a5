"""Benchmark: the size of one published grid job (knee_tf.controls.publish) and of a Model A file, default config.

    python bench/published_size.py [--normal 2001] [--metal 1119] [--new-site 0]

Builds a table shaped like one default job's predictions (cohorts normal, metal, new_site and cam,
and every held-out corruption at every severity of the normal test images; image, exam and patient
ids as strings), with probabilities drawn like a trained model's (Beta(0.3, 0.3): mostly near 0 or 1,
float32, nearly incompressible), writes it as a published job's file
(:func:`knee_tf.controls.publish.compact_predictions`'s format) and prints rows, bytes and bytes per row.
Then saves an untrained default LeNet as ``train_classifier`` does (with Adam's state) and prints
its parameter count and file size: why models are not published. Test-split sizes default to those
of the previous default dataset (2,001 normal and 1,119 metal test slices).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import pandas as pd


def predictions_size(n_normal: int, n_metal: int, n_new: int) -> tuple[int, int]:
    from knee_tf.controls.prediction_store import STORE_COLUMNS, write_store
    from knee_tf.study.corrupt import CORRUPTIONS

    rng = np.random.default_rng(0)
    n = n_normal + n_metal + n_new
    exam = np.arange(n) // 21
    meta = pd.DataFrame({"image_id": [f"syn{i:06d}" for i in range(n)], "exam_id": [f"E{e:04d}" for e in exam],
                         "patient_id": [f"P{e:04d}" for e in exam],
                         "plane": rng.choice(["axial", "coronal", "sagittal"], n), "site": rng.choice(list("ABCDEF"), n),
                         "slice_rank": np.arange(n) % 7, "y_true": rng.integers(0, 2, n)})
    normal = np.arange(n_normal)
    parts = [("normal", normal, "none", 0), ("metal", np.arange(n_normal, n_normal + n_metal), "none", 0),
             ("new_site", np.arange(n_normal + n_metal, n), "none", 0), ("cam", normal, "none", 0)]
    parts += [("normal", normal, c, s) for c in CORRUPTIONS for s in range(1, 6)]
    frames = []
    for cohort, rows, corruption, severity in parts:
        if len(rows):
            m = meta.iloc[rows].assign(cohort=cohort, corruption=corruption, severity=severity,
                                       p_relevant=rng.beta(0.3, 0.3, len(rows)).astype(np.float32))
            frames.append(m)
    df = pd.concat(frames, ignore_index=True).assign(arm="B", seed=0)[list(STORE_COLUMNS)]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_store(os.path.join(tmp, "predictions.parquet"), df)  # the published job's format
        return len(df), os.path.getsize(path)


def model_size() -> tuple[int, int]:
    import keras

    from knee_tf.core.model import build_lenet
    from knee_tf.study.config import StudyConfig

    c = StudyConfig()
    m = build_lenet((c.image_size, c.image_size, 1), conv_filters=c.conv_filters, dense_units=c.dense_units)
    m.compile(optimizer=keras.optimizers.Adam(c.learning_rate), loss="sparse_categorical_crossentropy")
    m.fit(np.zeros((2, c.image_size, c.image_size, 1), "float32"), np.zeros(2, "int32"), verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        m.save(path)
        return m.count_params(), os.path.getsize(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--normal", type=int, default=2001)
    ap.add_argument("--metal", type=int, default=1119)
    ap.add_argument("--new-site", type=int, default=0)
    a = ap.parse_args()
    rows, size = predictions_size(a.normal, a.metal, a.new_site)
    print(f"published predictions of one job: {rows} rows, {size} bytes, {size / rows:.2f} bytes/row")
    params, msize = model_size()
    print(f"default Model A model.keras: {params} parameters, {msize} bytes")


if __name__ == "__main__":
    main()

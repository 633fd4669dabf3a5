"""One job of the experiment grid: train one model, score it, and its files in the run folder.

:func:`run_job` trains the model of one :class:`knee_tf.controls.jobs.Job` and writes, into the run
folder (through :class:`knee_tf.data.layout.RunLayout`; :func:`commit_job`), the folder
``models/model_<name>_seed<S>/`` with the model, its training log and TensorBoard events, its
per-image predictions on every test cohort and, last, a ``job.json`` record. The job is one pure
function of (job, settings, ingest cache, Model A's file): it trains and predicts in a private
temporary folder and returns the files' bytes, so that it runs in this process or on a Dask worker
alike (:mod:`knee_tf.controls.grid`); :func:`commit_job` writes them into a temporary folder of the
run and renames it into place, so a job killed at any point leaves no partial model folder, and a
folder with ``job.json`` is complete. The same job gives byte-identical predictions wherever it runs
as long as TensorFlow uses the same number of threads per job (``StudyConfig.job_threads``; 0 keeps
TensorFlow's default, all cores of the machine; set it to 1 for identity across machines with
different core counts) and, in mixed precision, the same CPU instruction set.

Data: a job opens the ingest cache (:mod:`knee_tf.data.ingest`) from the path given. On a cluster
that path must be visible to every worker: a shared filesystem, or a copy staged at the same
path on each worker. A worker that cannot see it fails the job with one line naming the path
(:func:`check_cache`).

Per-image predictions (``predictions.parquet``, one file per (arm, seed); :func:`read_predictions`
concatenates them). One row per (model, seed, cohort, image):

==============  =========  ================================================================
column          dtype      meaning
==============  =========  ================================================================
model           str        the job's name: the arm (``"A"``, ``"B"``), or ``<arm>_<variant>``
seed            int64      training seed
cohort          str        :data:`knee_tf.study.cohorts.COHORTS` a job builds itself: ``normal``,
                           ``metal``, ``new_site`` (if the data has them), ``cam`` (normal test
                           images corrupted with Model A's own Grad-CAM at the job's settings)
image_id        str        manifest image id (the same id in normal and cam: the same slice)
plane           str        :data:`knee_tf.core.vocab.PLANES`
site            str        acquisition site (manifest ``site``; ``<NA>`` when absent)
y_true          int64      label as class index (:data:`knee_tf.core.vocab.CLASSES`, 1 = relevant)
p_relevant      float32    softmax probability of ``relevant``
y_pred          int64      :func:`knee_tf.core.vocab.predicted_class` of p_relevant
arm             str        the arm (:data:`knee_tf.controls.arms.ARMS`)
variant         str        the overrides' name, ``""`` for the arm's plain settings
exam_id         str        manifest exam id
patient_id      str        manifest patient id (resample patients for intervals)
corruption      str        held-out corruption applied to the normal test images
                           (:data:`knee_tf.study.corrupt.CORRUPTIONS`), ``"none"`` on a cohort's own
severity        int64      its severity 1..5 (``cfg.severities``), 0 on a cohort's own images
==============  =========  ================================================================

The first nine columns are :func:`knee_tf.study.evaluate.prediction_frame`'s, so the table of
:func:`read_predictions` (by default the cohort rows only) feeds :mod:`knee_tf.study.evaluate` (grouped
by ``model``) as it is; ``held_out=True`` adds the corruption rows (:mod:`knee_tf.controls.effects` reads them).
"""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from knee_tf.controls.arms import get_arm
from knee_tf.controls.jobs import Job
from knee_tf.core.io import atomic_dir
from knee_tf.core.model import load_model, seed_everything, train_classifier
from knee_tf.core.precision import resolve_precision
from knee_tf.core.vocab import MODEL_A, NO_CORRUPTION, NORMAL, VAL
from knee_tf.data.ingest import open_cache
from knee_tf.data.layout import MODEL_FILES, RunLayout
from knee_tf.study.cohorts import build_test_cohorts
from knee_tf.study.config import StudyConfig
from knee_tf.study.experiment import predict_cohorts, predict_corruptions

#: Columns :func:`run_job` adds to :func:`knee_tf.study.evaluate.prediction_frame`'s (schema: module docstring).
JOB_COLUMNS: tuple[str, ...] = ("arm", "variant", "exam_id", "patient_id")


def _pin_threads(n: int) -> int:
    """Use ``n`` TensorFlow threads (intra- and inter-op) when n > 0 and TF is not initialised yet.
    Returns the intra-op thread count in force (0: TensorFlow's default, all cores)."""
    import tensorflow as tf  # lazy: loads TensorFlow (seconds)

    if n > 0 and tf.config.threading.get_intra_op_parallelism_threads() != n:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:  # TensorFlow already initialised in this process: keep its setting
            pass
    return tf.config.threading.get_intra_op_parallelism_threads()


def check_cache(cache_dir) -> Path:
    """The ingest cache folder, or FileNotFoundError in one line naming the path and the host."""
    path = Path(cache_dir)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"ingest cache not found at {path} on {socket.gethostname()}: every worker reads "
                                "it from this path (a shared filesystem, or a copy staged there)")
    return path


def run_job(job: Job, config: dict, cache_dir: str, model_a=None) -> dict:
    """Train and evaluate one job; return ``{"files": {name: bytes}, "record": dict}``.

    config: the run's StudyConfig as a dict (the job's overrides are applied here); cache_dir: the
    ingest cache folder (:func:`check_cache`); model_a: the result of the job's A job (a dict as
    returned here) or the bytes of its ``model.keras``, for every arm but A. Files are named as in
    :data:`knee_tf.data.layout.MODEL_FILES`, relative to the model folder (TensorBoard files below
    ``tensorboard/``). The same arguments give the same predictions bytes in any process that uses
    the same TensorFlow thread count.
    """
    t0 = time.perf_counter()
    if job.arm != MODEL_A and model_a is None:
        raise ValueError(f"job {job.label} needs the model of {job.model_a().label}")
    cfg = job.settings(StudyConfig.from_dict(config))
    threads = _pin_threads(cfg.job_threads)
    data = open_cache(check_cache(cache_dir))
    arm = get_arm(job.arm)
    with tempfile.TemporaryDirectory(prefix="knee-tf-job-") as tmp:
        local = RunLayout(tmp)
        folder = local.model_dir(job.name, job.seed)
        folder.mkdir(parents=True)
        a_model = None
        if job.arm != MODEL_A:
            blob = model_a["files"][MODEL_FILES["model"]] if isinstance(model_a, dict) else model_a
            a_path = Path(tmp) / "model_a.keras"
            a_path.write_bytes(blob)
            a_model = load_model(a_path)
        seed_everything(job.seed)
        train = arm.training_set(data, a_model if arm.needs_model_a else None, cfg, job.seed)
        x_val, y_val, _ = data.split(VAL, cohort=NORMAL)
        result = train_classifier(train.images, train.labels, x_val, y_val, local.model(job.name, job.seed),
                                  seed=job.seed, log_path=local.training_log(job.name, job.seed),
                                  tensorboard_dir=local.tensorboard(job.name, job.seed), verbose=None,
                                  **cfg.training_settings())
        n_train, n_augmented = len(train.labels), train.n_augmented
        del train
        cohorts = build_test_cohorts(data, result.model if a_model is None else a_model, cfg, progress=False)
        pred = predict_cohorts({job.name: result.model}, cohorts, job.seed, cfg.predict_batch_size)
        ids = pd.concat([idx for _, idx in cohorts.values()], ignore_index=True)
        pred["corruption"], pred["severity"] = NO_CORRUPTION, 0
        x_test, idx_test = cohorts[NORMAL]
        held_out = predict_corruptions({job.name: result.model}, x_test, idx_test, cfg, job.seed, progress=False)
        held_out = held_out[held_out["severity"] > 0].assign(cohort=NORMAL)[list(pred.columns)]
        pred = pd.concat([pred, held_out], ignore_index=True)
        ids = pd.concat([ids] + [idx_test] * (len(held_out) // max(len(idx_test), 1)), ignore_index=True)
        pred["arm"], pred["variant"] = job.arm, job.variant
        pred["exam_id"] = ids["exam_id"].astype(str).to_numpy()
        pred["patient_id"] = ids["patient_id"].astype(str).to_numpy()
        buf = io.BytesIO()
        pred.to_parquet(buf, index=False, engine="pyarrow")
        local.grid_predictions(job.name, job.seed).write_bytes(buf.getvalue())
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    import keras  # lazy: loads TensorFlow (seconds)
    import tensorflow as tf  # lazy: loads TensorFlow (seconds)

    history = result.history
    record = {
        "job": job.name, "arm": job.arm, "variant": job.variant, "seed": job.seed,
        "overrides": job.override_values, "precision": resolve_precision(cfg.precision),
        "tf_threads": threads or os.cpu_count(), "host": socket.gethostname(), "pid": os.getpid(),
        "seconds": round(time.perf_counter() - t0, 1), "epochs_run": len(history),
        "best_epoch": int(history["val_loss"].idxmin()) + 1, "n_train": n_train, "n_augmented": n_augmented,
        "n_predictions": len(pred), "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    return {"files": files, "record": record}


def commit_job(layout: RunLayout, job: Job, result: dict) -> None:
    """Write one job's files into its model folder as one atomic step (:func:`knee_tf.core.io.atomic_dir`):
    a killed job leaves no half-written folder, and an incomplete folder from an older run (no
    job.json) is replaced."""
    with atomic_dir(layout.model_dir(job.name, job.seed)) as tmp:
        for rel, blob in result["files"].items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(blob)
        (tmp / layout.job_record(job.name, job.seed).name).write_text(json.dumps(result["record"], indent=2) + "\n")



def read_predictions(run_dir, jobs: Iterable[Job] | None = None, held_out: bool = False):
    """The per-image predictions of ``jobs`` (default: every finished model folder), one DataFrame (schema: module docstring).

    held_out: also the rows of the held-out corruptions (columns ``corruption``, ``severity``; the
    cohort rows have ``corruption`` = :data:`knee_tf.core.vocab.NO_CORRUPTION`); by default only the
    cohort rows, without those two columns, one row per (model, seed, cohort, image)."""
    layout = RunLayout(run_dir)
    if jobs is None:
        paths = sorted(layout.models.glob(f"*/{layout.grid_predictions('x', 0).name}"))
        paths = [p for p in paths if (p.parent / layout.job_record("x", 0).name).exists()]
    else:
        paths = [layout.grid_predictions(j.name, j.seed) for j in jobs]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"predictions not found: {missing[0]} (run the grid job first)")
    if not paths:
        raise FileNotFoundError(f"{layout.models}: no finished grid job")
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    if "corruption" in df.columns and not held_out:
        df = df[df["corruption"] == NO_CORRUPTION].drop(columns=["corruption", "severity"]).reset_index(drop=True)
    return df

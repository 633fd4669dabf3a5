"""Benchmark: resident memory and seconds of one in-process grid job, by phase (bench/logs/memory.txt,
bench/logs/study.txt).

    python bench/job_memory.py ARM CACHE_DIR MODEL_A [--config full] [--epochs 1] [--jobs 2]

Runs ``knee_tf.controls.training_job.run_job`` for ARM (seed 0) ``--jobs`` times in this fresh process, with the Model A
at MODEL_A (a ``model.keras``; unused for arm A) and the ingest cache CACHE_DIR, and samples this
process's RSS every 0.05 s. Phases are marked by wrapping the functions run_job calls: the training
set (until training starts), training, the test cohorts (the cam cohort's maps), their predictions and
the held-out corruptions. Prints each phase's peak and the seconds spent in it; a second job shows
what the first leaves behind.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402

PHASE = ["imports"]
PEAKS: dict[str, float] = {}
SECONDS: dict[str, float] = {}
_SINCE = [time.perf_counter()]


def _enter(label: str) -> None:
    """Start phase ``label``: the time since the last switch goes to the phase that was running."""
    now = time.perf_counter()
    SECONDS[PHASE[0]] = SECONDS.get(PHASE[0], 0.0) + now - _SINCE[0]
    PHASE[0], _SINCE[0] = label, now


def _sample() -> None:
    proc = psutil.Process()
    while True:
        PEAKS[PHASE[0]] = max(PEAKS.get(PHASE[0], 0.0), proc.memory_info().rss / 1e9)
        time.sleep(0.05)


def _mark(module, name: str, label: str) -> None:
    fn = getattr(module, name)

    def marked(*args, **kwargs):
        _enter(label)
        return fn(*args, **kwargs)

    setattr(module, name, marked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arm")
    ap.add_argument("cache_dir")
    ap.add_argument("model_a")
    ap.add_argument("--config", default="full")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    threading.Thread(target=_sample, daemon=True).start()

    from knee_tf.controls.jobs import Job
    from knee_tf.controls.training_job import run_job
    from knee_tf.core import model
    from knee_tf.study import cohorts, experiment
    from knee_tf.study.config import get_config

    _mark(model, "train_classifier", "training")
    _mark(cohorts, "build_test_cohorts", "test cohorts (cam maps)")
    _mark(experiment, "predict_cohorts", "predict cohorts")
    _mark(experiment, "predict_corruptions", "held-out corruptions")
    cfg = get_config(a.config).replace(epochs=a.epochs)
    blob = None if a.arm == "A" else open(a.model_a, "rb").read()
    time.sleep(0.3)
    print(f"after imports {PEAKS['imports']:.2f} GB", flush=True)
    for k in range(a.jobs):
        t0 = time.perf_counter()
        _enter("training set")
        PEAKS.clear()
        SECONDS.clear()
        run_job(Job(a.arm, 0), cfg.to_dict(), a.cache_dir, blob)
        _enter("after the job")
        time.sleep(1)
        print(f"job {k + 1} ({a.arm}, {time.perf_counter() - t0:.0f} s):", flush=True)
        for phase, gb in PEAKS.items():
            spent = f"{SECONDS[phase]:7.1f} s" if phase in SECONDS else ""
            print(f"  {phase:28s} {gb:.2f} GB {spent}", flush=True)


if __name__ == "__main__":
    main()

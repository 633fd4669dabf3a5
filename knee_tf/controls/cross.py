"""Predictions on the cohorts that need other jobs' models: ``cam_transfer`` and ``cam_b``.

A job scores its own model on every cohort it can make alone (:mod:`knee_tf.controls.training_job`).
Two cohorts need the models of other jobs (:func:`knee_tf.study.cohorts.cross_cohorts`):
``cam_transfer``, the normal test images with the maps of the independently trained Model A
(:data:`knee_tf.controls.jobs.TRANSFER_VARIANT`), and ``cam_b``, with the maps of the plain B of the
job's seed. :func:`cross_cohort_predictions` scores every finished job on them from the run folder,
for notebook 07 (:mod:`knee_tf.controls.summary`) and for publishing (:mod:`knee_tf.controls.grid_publisher`).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from tqdm.auto import tqdm

from knee_tf.controls.jobs import TRANSFER_VARIANT, Job
from knee_tf.controls.training_job import check_cache
from knee_tf.core.model import load_model
from knee_tf.core.vocab import MODEL_A, MODEL_B, NO_CORRUPTION
from knee_tf.data.ingest import open_cache
from knee_tf.data.layout import RunLayout
from knee_tf.study.cohorts import cross_cohort_names, cross_cohorts
from knee_tf.study.config import StudyConfig
from knee_tf.study.experiment import predict_cohorts


def cross_cohort_predictions(run_dir, jobs: Iterable[Job], config: StudyConfig, cache_dir,
                             progress: bool = True):
    """Predictions of every finished job on ``cam_transfer`` and ``cam_b`` (:func:`knee_tf.study.cohorts.cross_cohorts`).

    ``cam_transfer``: the normal test images with the maps of the transfer Model A (one set of images
    for every job; left out when ``config.transfer_seed < 0``); ``cam_b``: with the maps of the plain B of the job's seed (when the grid has it).
    Jobs of a learning-curve variant are scored on both too. Columns as :func:`knee_tf.controls.training_job.read_predictions`.
    """
    layout = RunLayout(run_dir)
    jobs = [j for j in jobs if j.variant != TRANSFER_VARIANT]
    data = open_cache(check_cache(cache_dir))
    transfer = None
    if config.transfer_seed >= 0:
        transfer = load_model(layout.model(Job(MODEL_A, config.transfer_seed, (), TRANSFER_VARIANT).name,
                                           config.transfer_seed))
    frames = []

    for seed in tqdm(sorted({j.seed for j in jobs}), desc=" / ".join(cross_cohort_names()), disable=not progress):
        b = layout.model(MODEL_B, seed)
        cohorts = cross_cohorts(data, transfer, load_model(b) if b.exists() else None, config, progress=False)
        ids = pd.concat([idx for _, idx in cohorts.values()], ignore_index=True)
        for job in (j for j in jobs if j.seed == seed):
            pred = predict_cohorts({job.name: load_model(layout.model(job.name, seed))}, cohorts, seed,
                                   config.predict_batch_size)
            pred["corruption"], pred["severity"] = NO_CORRUPTION, 0
            pred["arm"], pred["variant"] = job.arm, job.variant
            pred["exam_id"] = ids["exam_id"].astype(str).to_numpy()
            pred["patient_id"] = ids["patient_id"].astype(str).to_numpy()
            frames.append(pred)
    return pd.concat(frames, ignore_index=True)

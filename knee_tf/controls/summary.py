"""The controls study's assembly (notebook 07): its prediction store, tables, ablation panels and learning curves.

Notebook 07 trains the jobs of :func:`knee_tf.controls.jobs.controls_plan` and then calls these functions, so
that a run folder and the published grid (:mod:`knee_tf.controls.publish`) give their tables the same way:

* :func:`run_store`: the store of a run folder: every job's own predictions (held-out corruptions
  included) and the cross cohorts ``cam_transfer`` / ``cam_b`` (they need other jobs' models);
* :func:`published_store`: the store of the jobs published so far (:mod:`knee_tf.controls.publish`);
* :func:`study_tables`: the arms, effects and prescription tables of a store; the arms table says
  beside each arm how many seeds the plan asks for (``n_seeds_planned``) and how many the store has
  (``n_seeds``), so that the tables of a partial grid read as partial;
* :func:`ablation_panels`, :func:`learning_curves`: what the ablation and learning-curve figures plot.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from knee_tf.controls.arms import arm_names, figure_panels, get_arm, training_split
from knee_tf.controls.cross import cross_cohort_predictions
from knee_tf.controls.jobs import (
    TRANSFER_VARIANT,
    arm_info,
    controls_comparisons,
    learning_curve_variant,
)
from knee_tf.controls.prediction_store import recompute_tables, store_frame
from knee_tf.controls.publish import (
    check_retrained,
    completeness,
    data_digest,
    provenance,
    published_status,
    read_published,
)
from knee_tf.controls.training_job import read_predictions
from knee_tf.data.layout import RunLayout, published_grid
from knee_tf.study.cohorts import cross_cohort_names
from knee_tf.study.config import StudyConfig


def study_jobs(jobs: Iterable) -> list:
    """The jobs whose models the tables compare: every job but the transfer Model A (it only makes
    ``cam_transfer``)."""
    return [j for j in jobs if j.variant != TRANSFER_VARIANT]


def run_store(run_dir, jobs: Iterable, cfg: StudyConfig, data) -> pd.DataFrame:
    """The prediction store (:func:`knee_tf.controls.prediction_store.store_frame`) of a run folder's finished
    ``jobs`` (:func:`study_jobs` of them are kept): their own predictions and the cross cohorts.
    data: the run's IngestResult (its index and cache folder)."""
    jobs = study_jobs(jobs)
    predictions = pd.concat([read_predictions(run_dir, jobs, held_out=True),
                             cross_cohort_predictions(run_dir, jobs, cfg, data.cache_dir)], ignore_index=True)
    return store_frame(predictions, data.index)


def published_store(pub, jobs: Iterable) -> pd.DataFrame:
    """The prediction store of the :func:`study_jobs` of ``jobs`` that are published in ``pub``
    (:class:`knee_tf.data.layout.PublishedGrid`): their own predictions, and their cross cohorts where those
    are published (:func:`knee_tf.controls.publish.publish_cross`). FileNotFoundError when none is published."""
    done = [j for j in study_jobs(jobs) if pub.job_record(j.name, j.seed).exists()]
    return read_published(pub, done if done else [])


CONTROLS_SOURCES = ("run", "published")


def controls_store(cfg: StudyConfig, run_dir, jobs: Iterable, data, top) -> pd.DataFrame:
    """Notebook 07's prediction store from ``cfg.controls_source``: :func:`run_store` of the run folder
    (``"run"``) or :func:`published_store` of ``top``'s published grid (``"published"``)."""
    if cfg.controls_source not in CONTROLS_SOURCES:
        raise ValueError(f"controls_source {cfg.controls_source!r}: expected one of {CONTROLS_SOURCES}")
    if cfg.controls_source == "run":
        return run_store(run_dir, jobs, cfg, data)
    pub = published_grid(top, cfg.publish_grid_as)
    check_published(pub, jobs, cfg, data.cache_dir)
    return published_store(pub, jobs)


def _expected(jobs: Iterable, cfg: StudyConfig, cache_dir) -> dict:
    """{job: the provenance its published record must carry to be this run's job}."""
    data = data_digest(cache_dir)
    return {j: provenance(j.settings(cfg), data, Path(cache_dir).name, "") for j in jobs}


def check_published(pub, jobs: Iterable, cfg: StudyConfig, cache_dir) -> None:
    """Refuse, in one line, to read published jobs trained with other settings or on other data than
    this run's (a study on your own data, or changed settings): their tables would not be this study's."""
    expected = _expected(study_jobs(jobs), cfg, cache_dir)
    differ = {j: what for j, exp in expected.items() for published, what in [published_status(pub, j, exp)]
              if published and what}
    if differ:
        job, what = next(iter(differ.items()))
        raise ValueError(f"controls_source=published: the published job {job.label} was trained with other "
                         f"{what}{f' (and {len(differ) - 1} more)' if len(differ) > 1 else ''}; train the "
                         "controls in the run instead: make study CONTROLS=train (--set controls_source=run)")


def reproduction_lines(run_dir, jobs: Iterable, cfg: StudyConfig, data, top) -> list[str]:
    """One line per job of the run folder that the published grid also has (this run's own A and B in
    ``make study``): whether its per-image predictions and training log are the published job's, byte
    for byte (:func:`knee_tf.controls.publish.check_retrained`, which names the first differing row)."""
    layout, pub = RunLayout(run_dir), published_grid(top, cfg.publish_grid_as)
    done = [j for j in study_jobs(jobs) if layout.job_record(j.name, j.seed).exists()
            and pub.job_record(j.name, j.seed).exists()]
    lines = []
    for job, exp in _expected(done, cfg, data.cache_dir).items():
        _, what = published_status(pub, job, exp)
        if what:
            lines.append(f"this run's {job.label}: not comparable with the published job (other {what})")
            continue
        try:
            check_retrained(pub, layout, job, data.index)
            same_log = layout.training_log(job.name, job.seed).read_bytes() == \
                pub.training_log(job.name, job.seed).read_bytes()
            lines.append(f"this run's {job.label} reproduces the published job byte for byte: predictions "
                         f"identical, training log {'identical' if same_log else 'DIFFERS'}")
        except RuntimeError as e:
            lines.append(f"this run's {job.label} does NOT reproduce the published job: {e}")
    return lines


def study_tables(store: pd.DataFrame, jobs: Iterable, cfg: StudyConfig) -> dict[str, pd.DataFrame]:
    """The published tables of the controls study from ``store`` (:func:`knee_tf.controls.prediction_store.recompute_tables`
    with the comparisons of :func:`knee_tf.controls.jobs.controls_comparisons` and each arm's description and
    ``n_seeds_planned`` from :func:`knee_tf.controls.jobs.arm_info`). Jobs the store lacks (a partial grid) are
    left out of the comparisons; the arms table's ``n_seeds`` beside ``n_seeds_planned`` shows it."""
    jobs = study_jobs(jobs)
    have = set(store["arm"].astype(str))
    info = arm_info(jobs)
    info = info[info["arm"].isin(have)].reset_index(drop=True)
    comparisons = [(a, r) for a, r in controls_comparisons(jobs) if a in have and r in have]
    return recompute_tables(store, comparisons, family=dict(zip(info["arm"], info["family"], strict=True)),
                            arm_info=info, n_boot=cfg.n_bootstrap, n_boot_effects=cfg.n_bootstrap_effects,
                            ece_bins=cfg.ece_bins)


def plan_order(jobs: Iterable, table: pd.DataFrame) -> list[str]:
    """The arms of ``table`` (its ``arm`` column) in the order the plan lists them (:func:`knee_tf.controls.jobs.arm_info`
    of :func:`study_jobs`): A and its learning curve, B, the controls, the ablations, B's learning curve.
    Arms of the table that the plan lacks come last, in table order."""
    have = list(dict.fromkeys(table["arm"].astype(str)))
    planned = [a for a in arm_info(study_jobs(jobs))["arm"] if a in have]
    return planned + [a for a in have if a not in planned]


def ablation_panels(store: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """The panels of :func:`knee_tf.controls.arms.figure_panels` restricted to the arms the store has; panels
    with fewer than two such arms are left out. {panel: [(arm, label), ...]}."""
    trained = set(store["arm"].astype(str))
    panels = {name: [(a, label) for a, label in panel if a in trained] for name, panel in figure_panels().items()}
    return {name: panel for name, panel in panels.items() if len(panel) > 1}


def learning_curves(data, cfg: StudyConfig, store: pd.DataFrame | None = None) -> dict[str, list[tuple[str, int]]]:
    """The learning curve's points per arm with a ``learning_curve`` (:data:`knee_tf.controls.arms.ARMS`: A and
    B): [(model name, training exams), ...], the ``n<N>`` variants of ``cfg.learning_curve_exams`` and then
    the plain arm on every training exam.
    Empty when the config trains no learning curve. store: keep only the points whose model it
    holds (a partial grid), and only the arms left with at least two points."""
    if not cfg.learning_curve_exams:
        return {}
    n_all = training_split(data, cfg.replace(train_exams=0))[2]["exam_id"].nunique()
    curves = {arm: [(f"{arm}_{learning_curve_variant(n)}", int(n)) for n in cfg.learning_curve_exams] + [(arm, n_all)]
              for arm in arm_names() if get_arm(arm).learning_curve}
    if store is None:
        return curves
    have = set(store["arm"].astype(str))
    curves = {arm: [(m, n) for m, n in points if m in have] for arm, points in curves.items()}
    return {arm: points for arm, points in curves.items() if len(points) > 1}


def grid_status_line(store: pd.DataFrame, jobs: Iterable) -> str:
    """One line: how much of the planned grid the store holds ("complete" or "PARTIAL")."""
    status = completeness(store, study_jobs(jobs))
    short = status[~status["complete"]]
    if short.empty:
        return f"grid complete: {len(status)} models, every one with its planned seeds"
    listed = ", ".join(f"{r.arm} {r.n_seeds}/{r.n_seeds_planned}" for r in short.itertuples())
    return (f"PARTIAL grid: {int(status['n_seeds'].sum())} of {int(status['n_seeds_planned'].sum())} planned "
            f"(model, seed) jobs; seeds present/planned: {listed}")


def cross_status_line(store: pd.DataFrame, jobs: Iterable) -> str:
    """One line: for how many of the planned jobs the store holds the cross cohorts
    (:func:`knee_tf.study.cohorts.cross_cohort_names`: ``cam_transfer``, ``cam_b``), which need other jobs'
    models (published beside a job once those models are at hand)."""
    planned = {(j.name, j.seed) for j in study_jobs(jobs)}
    rows = store[["arm", "seed", "cohort"]].astype({"arm": str, "cohort": str, "seed": int}).drop_duplicates()
    counts = []
    for cohort in cross_cohort_names():
        have = rows[rows["cohort"] == cohort]
        counts.append(f"{cohort} {len(planned & set(zip(have['arm'], have['seed'], strict=True)))}")
    return f"cross cohorts: {', '.join(counts)} of {len(planned)} planned jobs"

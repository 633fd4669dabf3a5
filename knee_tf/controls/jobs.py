"""Jobs of the experiment grid: what one job is, and which jobs a study plans.

A :class:`Job` trains one model of an arm (:mod:`knee_tf.controls.arms`) with one seed and optional
settings overrides (``variant`` names them); :mod:`knee_tf.controls.training_job` runs it and
:mod:`knee_tf.controls.grid` runs many. Its model is named ``<arm>``, or ``<arm>_<variant>`` when the
job overrides settings. Every job of an arm other than A depends on the A job of its seed and
overrides (:meth:`Job.model_a`); :func:`plan_jobs` adds those A jobs.

The controls study (notebook 07) plans its jobs with :func:`controls_plan` (every arm of
``cfg.grid_arms``, the learning curve as variants ``n<N>`` of A and B, and the independently
trained Model A, variant ``transfer``, whose maps make ``cam_transfer``), compares them as
:func:`controls_comparisons` lists, and describes them with :func:`arm_info`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from knee_tf.controls.arms import CONTROL, arm_names, get_arm
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import RunLayout
from knee_tf.study.cohorts import COHORTS, OTHER_MODEL_A, SEEDS_MODEL_B, cross_cohort_names
from knee_tf.study.config import StudyConfig

#: The ``controls_source`` a training job's settings hold, whatever the run reads its controls from.
JOB_CONTROLS_SOURCE = "run"


@dataclass(frozen=True)
class Job:
    """One training: ``arm`` (a registered arm name), ``seed``, settings ``overrides`` (StudyConfig
    field -> value, as sorted pairs) named by ``variant`` (letters, digits, '_'; required with overrides)."""

    arm: str
    seed: int
    overrides: tuple[tuple[str, object], ...] = ()
    variant: str = ""

    def __post_init__(self):
        get_arm(self.arm)
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "overrides", tuple(sorted((str(k), _freeze(v)) for k, v in dict(self.overrides).items())))
        if self.overrides and not self.variant:
            raise ValueError(f"job {self.arm} seed {self.seed}: overrides {dict(self.overrides)} need a variant name")
        RunLayout.model_name(self.name, self.seed)  # a valid file name

    @property
    def name(self) -> str:
        """The model's name: the arm, or ``<arm>_<variant>``."""
        return f"{self.arm}_{self.variant}" if self.variant else self.arm

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"

    @property
    def override_values(self) -> dict:
        """The overrides as {StudyConfig field: value}, as :meth:`settings` applies them."""
        return {k: _thaw(v) for k, v in self.overrides}

    def settings(self, base: StudyConfig) -> StudyConfig:
        """``base`` with this job's overrides applied (ValueError naming the job on an unknown field).

        Where notebook 07 reads its controls from (``controls_source``) is no setting of a training:
        a job's settings always hold :data:`JOB_CONTROLS_SOURCE`, the value every published job
        recorded, so that a job trained by ``make study`` (which reads the published controls) has
        the settings digest of the published job it reproduces."""
        try:
            return base.replace(**self.override_values, controls_source=JOB_CONTROLS_SOURCE)
        except TypeError as e:
            raise ValueError(f"job {self.label}: bad override ({e})") from None

    def model_a(self) -> Job | None:
        """The A job this job depends on (same seed and overrides), None for A itself."""
        return None if self.arm == MODEL_A else Job(MODEL_A, self.seed, self.overrides, self.variant)


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, (list, tuple)) else v


def _thaw(v):
    return tuple(v) if isinstance(v, tuple) else v


def plan_jobs(arms: Iterable[str], seeds: Iterable[int], overrides: Mapping | None = None,
              variant: str = "") -> list[Job]:
    """Every (arm, seed) job, plus the A jobs they depend on; A jobs first, then in ``arms`` order."""
    arms, seeds = list(dict.fromkeys(arms)), [int(s) for s in seeds]
    if not arms or not seeds:
        raise ValueError("a grid needs at least one arm and one seed")
    jobs = [Job(arm, seed, tuple((overrides or {}).items()), variant) for arm in arms for seed in seeds]
    needed = [j.model_a() for j in jobs if j.model_a() is not None]
    return list(dict.fromkeys(needed + jobs))  # A jobs first, no duplicates


def job_done(layout: RunLayout, job: Job) -> bool:
    """True when the job's folder is complete (its ``job.json`` exists; the folder is moved into place whole)."""
    return layout.job_record(job.name, job.seed).exists()


#: The variant name of the independently trained Model A whose maps make ``cam_transfer``.
TRANSFER_VARIANT = "transfer"


def learning_curve_variant(n_exams: int) -> str:
    """The variant name of the learning curve's jobs on ``n_exams`` training exams: ``n<N>``."""
    return f"n{int(n_exams)}"


def controls_plan(cfg: StudyConfig) -> list[Job]:
    """Every job of the controls study (notebook 07) for ``cfg``: each arm of ``cfg.grid_arms`` (empty:
    every arm of :data:`knee_tf.controls.arms.ARMS`) with ``cfg.n_seeds`` seeds (arms with
    ``main_seeds``) or ``cfg.n_seeds_other`` (the others; 0: n_seeds); the arms with a
    ``learning_curve`` on each of ``cfg.learning_curve_exams`` training exams (variants ``n<N>``,
    other seeds' count); the A jobs they depend on; and the Model A of ``cfg.transfer_seed``
    (variant ``transfer``; only when ``cfg.transfer_seed >= 0``) whose maps make ``cam_transfer``.
    A jobs first."""
    main = range(cfg.seed, cfg.seed + max(1, cfg.n_seeds))
    other = range(cfg.seed, cfg.seed + max(1, cfg.n_seeds_other or cfg.n_seeds))
    jobs = [Job(arm, s) for arm in cfg.grid_arms or arm_names()
            for s in (main if get_arm(arm).main_seeds else other)]
    curve = [a for a in arm_names() if get_arm(a).learning_curve]
    for n in cfg.learning_curve_exams:
        jobs += [Job(arm, s, (("train_exams", int(n)),), learning_curve_variant(n)) for arm in curve for s in other]
    if cfg.transfer_seed >= 0:
        jobs.append(Job(MODEL_A, cfg.transfer_seed, (), TRANSFER_VARIANT))
    needed = [j.model_a() for j in jobs if j.model_a() is not None]
    return sorted(dict.fromkeys(needed + jobs), key=lambda j: j.arm != MODEL_A)


def controls_comparisons(jobs: Iterable[Job]) -> list[tuple[str, str]]:
    """The effects the controls study reports, as (model, reference) names: every arm against its
    reference (A); B against each control (what is left of B's gain beyond it); each learning-curve
    model against its reference's of the same size."""
    jobs = list(jobs)
    plain = list(dict.fromkeys(j.name for j in jobs if not j.variant))
    out = [(n, get_arm(n).reference) for n in plain if get_arm(n).reference]
    out += [(MODEL_B, c) for c in arm_names(CONTROL) if c in plain and MODEL_B in plain]
    out += [(j.name, Job(get_arm(j.arm).reference, j.seed, j.overrides, j.variant).name) for j in jobs
            if j.variant and j.variant != TRANSFER_VARIANT and get_arm(j.arm).reference]
    return list(dict.fromkeys(out))


def cross_cohort_makers(cfg: StudyConfig, seed: int) -> dict[str, Job]:
    """{cross cohort: the job whose model's maps make it} for the jobs of ``seed``
    (:func:`knee_tf.study.cohorts.cross_cohort_names`): the seed's plain B, and the transfer Model A
    when ``cfg.transfer_seed >= 0`` (else that cohort is left out)."""
    makers = {SEEDS_MODEL_B: Job(MODEL_B, seed)}
    if cfg.transfer_seed >= 0:
        makers[OTHER_MODEL_A] = Job(MODEL_A, cfg.transfer_seed, (), TRANSFER_VARIANT)
    return {c: makers[COHORTS[c].maps_of] for c in cross_cohort_names() if COHORTS[c].maps_of in makers}


def arm_info(jobs: Iterable[Job]):
    """One row per model name of ``jobs``: arm, variant, family, budget and description (from the arm
    registry), and n_seeds_planned (how many jobs of that name ``jobs`` has), beside each arm in the
    published arms table (whose ``n_seeds`` says how many the predictions have: a partial grid shows)."""
    jobs = list(dict.fromkeys(jobs))
    rows = []
    for j in jobs:
        a = get_arm(j.arm)
        what = a.description + (f"; {dict(j.overrides)}" if j.overrides else "")
        rows.append({"arm": j.name, "registered_arm": j.arm, "variant": j.variant, "family": a.family or j.arm,
                     "budget": a.budget, "description": what,
                     "n_seeds_planned": sum(k.name == j.name for k in jobs)})
    return pd.DataFrame(rows).drop_duplicates("arm").reset_index(drop=True)

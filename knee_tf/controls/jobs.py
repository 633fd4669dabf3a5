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

from knee_tf.controls.arms import get_arm
from knee_tf.core.vocab import CONTROL_ARMS, MAIN_ARMS, MODEL_A, MODEL_B
from knee_tf.data.layout import RunLayout
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
    """Every job of the controls study (notebook 07) for ``cfg``: each arm of ``cfg.grid_arms`` with
    ``cfg.n_seeds`` seeds (arms in :data:`knee_tf.core.vocab.MAIN_ARMS`) or ``cfg.n_seeds_other`` (the
    others; 0: n_seeds); A and B on each of ``cfg.learning_curve_exams`` training exams (variants
    ``n<N>``, other seeds' count); the A jobs they depend on; and the Model A of ``cfg.transfer_seed``
    (variant ``transfer``; only when ``cfg.transfer_seed >= 0``) whose maps make ``cam_transfer``.
    A jobs first."""
    main = range(cfg.seed, cfg.seed + max(1, cfg.n_seeds))
    other = range(cfg.seed, cfg.seed + max(1, cfg.n_seeds_other or cfg.n_seeds))
    jobs = [Job(arm, s) for arm in cfg.grid_arms for s in (main if arm in MAIN_ARMS else other)]
    for n in cfg.learning_curve_exams:
        jobs += [Job(arm, s, (("train_exams", int(n)),), learning_curve_variant(n)) for arm in (MODEL_A, MODEL_B)
                 for s in other]
    if cfg.transfer_seed >= 0:
        jobs.append(Job(MODEL_A, cfg.transfer_seed, (), TRANSFER_VARIANT))
    needed = [j.model_a() for j in jobs if j.model_a() is not None]
    return sorted(dict.fromkeys(needed + jobs), key=lambda j: j.arm != MODEL_A)


def controls_comparisons(jobs: Iterable[Job]) -> list[tuple[str, str]]:
    """The effects the controls study reports, as (model, reference) names: every arm against A; B
    against each control (what is left of B's gain beyond it); the learning curve's B against its A."""
    jobs = list(jobs)
    plain = list(dict.fromkeys(j.name for j in jobs if not j.variant))
    out = [(n, MODEL_A) for n in plain if n != MODEL_A]
    out += [(MODEL_B, c) for c in CONTROL_ARMS if c in plain and MODEL_B in plain]
    out += [(j.name, Job(MODEL_A, j.seed, j.overrides, j.variant).name) for j in jobs
            if j.arm == MODEL_B and j.variant]
    return list(dict.fromkeys(out))


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

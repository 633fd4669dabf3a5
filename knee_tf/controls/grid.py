"""The experiment grid on Dask: jobs of (arm, seed, settings overrides), each training one model.

A :class:`Job` trains one model of an arm (:mod:`knee_tf.controls.arms`) with one seed and optional
settings overrides (``variant`` names them), and writes into the run folder, through
:class:`knee_tf.data.layout.RunLayout`, the folder ``models/model_<name>_seed<S>/`` with the model, its
training log and TensorBoard events, its per-image predictions on every test cohort and, last, a
``job.json`` record. ``<name>`` is the arm, or ``<arm>_<variant>`` when the job overrides settings.

Where jobs run (:func:`run_grid`): ``workers=0`` in this process, one after the other;
``workers=N`` on a ``distributed.LocalCluster`` of N single-threaded worker processes on
loopback (``-1``: one per CPU); ``scheduler="tcp://HOST:PORT"`` on an existing Dask cluster. The
job itself (:func:`run_job`) is one pure function of (job, settings, ingest cache, Model A's file):
it trains and predicts in a private temporary folder on the worker and returns the files' bytes;
the client writes them into a temporary folder of the run and renames it into place, so a job
killed at any point leaves no partial model folder, and a folder with ``job.json`` is complete.
A re-run skips every finished job. The same jobs give byte-identical predictions wherever they
run as long as TensorFlow uses the same number of threads per job (``StudyConfig.job_threads``;
0 keeps TensorFlow's default, all cores of the machine, which is the same for in-process and
LocalCluster runs on one machine; set it to 1 for identity across machines with different core
counts) and, in mixed precision, the same CPU instruction set.

Dependencies: every job of an arm other than A depends on the A job of its seed and overrides
(the ``cam`` cohort is made from Model A's maps, and arms with ``needs_model_a`` train on them);
on Dask the A job's result is passed to the dependent task, so the model travels with the task
graph. A failed job is reported by name with its one-line error; its dependents are reported as
not run; every other job finishes.

Data: workers open the ingest cache (:mod:`knee_tf.data.ingest`) from the path given. On a cluster
that path must be visible to every worker: a shared filesystem, or a copy staged at the same
path on each worker. A worker that cannot see it fails the job with one line naming the path.

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

The controls study (notebook 07) plans its jobs with :func:`controls_plan` (every arm of
``cfg.grid_arms``, the learning curve as variants ``n<N>`` of A and B, and the independently
trained Model A, variant ``transfer``, whose maps make ``cam_transfer``), and scores every model on
the cohorts that need other jobs' models with :func:`cross_cohort_predictions`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from knee_tf.controls import publish as gp
from knee_tf.controls.arms import CONTROL, arm_names, get_arm
from knee_tf.core.io import atomic_dir
from knee_tf.core.model import load_model, seed_everything, train_classifier
from knee_tf.core.precision import resolve_precision
from knee_tf.core.vocab import (
    MODEL_A,
    MODEL_B,
    NO_CORRUPTION,
    NORMAL,
    VAL,
)
from knee_tf.data.ingest import open_cache
from knee_tf.data.layout import MODEL_FILES, PublishedGrid, RunLayout
from knee_tf.study.cohorts import (
    COHORTS,
    OTHER_MODEL_A,
    SEEDS_MODEL_B,
    build_test_cohorts,
    cross_cohort_names,
    cross_cohorts,
)
from knee_tf.study.config import StudyConfig
from knee_tf.study.experiment import predict_cohorts, predict_corruptions

#: Columns :func:`run_job` adds to :func:`knee_tf.study.evaluate.prediction_frame`'s (schema: module docstring).
JOB_COLUMNS: tuple[str, ...] = ("arm", "variant", "exam_id", "patient_id")


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

    def settings(self, base: StudyConfig) -> StudyConfig:
        """``base`` with this job's overrides applied (ValueError naming the job on an unknown field)."""
        try:
            return base.replace(**{k: _thaw(v) for k, v in self.overrides})
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


# --------------------------------------------------------------------------------------------- one job

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
        "overrides": {k: _thaw(v) for k, v in job.overrides}, "precision": resolve_precision(cfg.precision),
        "tf_threads": threads or os.cpu_count(), "host": socket.gethostname(), "pid": os.getpid(),
        "seconds": round(time.perf_counter() - t0, 1), "epochs_run": len(history),
        "best_epoch": int(history["val_loss"].idxmin()) + 1, "n_train": n_train, "n_augmented": n_augmented,
        "n_predictions": len(pred), "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    return {"files": files, "record": record}


# --------------------------------------------------------------------------------------------- the grid

@dataclass
class GridResult:
    """What :func:`run_grid` did: job labels that ran, were skipped (finished earlier in the run folder)
    or failed (label -> error), and what publishing did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dashboard: str | None = None
    # with publishing (knee_tf.controls.publish): jobs skipped because they are published with the same
    # settings and data; jobs published by this run; published Model A jobs trained again for a
    # pending dependent (their predictions checked against the published ones)
    skipped_published: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    retrained: list[str] = field(default_factory=list)
    # published jobs whose cross cohorts (knee_tf.study.cohorts.cross_cohort_names) this run added to their folders
    cross_published: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_failed(self) -> None:
        """RuntimeError listing every failed job (one line each), if any failed."""
        if self.failed:
            raise RuntimeError(f"{len(self.failed)} grid job(s) failed: "
                               + "; ".join(f"{k}: {v}" for k, v in self.failed.items()))


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


def _clean_partial(layout: RunLayout) -> None:
    """Remove what a killed :func:`commit_job` left: :func:`~knee_tf.core.io.atomic_dir`'s temporary
    folders (``.<name>.*.tmp``) and folders it had moved aside (``.<name>.old-*``)."""
    for pattern in (".*.tmp", ".*.old-*"):
        for p in layout.models.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def run_grid(jobs: Iterable[Job], config: StudyConfig, run_dir, cache_dir, scheduler: str = "", workers: int = -1,
             progress: bool = True, log: Callable[[str], None] = print, publish=None,
             republish: bool = False) -> GridResult:
    """Run ``jobs`` (see :func:`plan_jobs`) into ``run_dir``; skip finished ones; return a :class:`GridResult`.

    config: the run's StudyConfig (each job applies its overrides); cache_dir: the ingest cache
    folder every worker reads; scheduler: ``"tcp://HOST:PORT"`` of an existing Dask scheduler, or
    ``""``; workers (without a scheduler): 0 = in this process, N = a LocalCluster of N
    single-threaded workers on loopback, -1 = one per CPU. A failed job does not stop the others.

    publish: a :class:`knee_tf.data.layout.PublishedGrid` (or its folder) to publish every finished job
    into as it finishes (:mod:`knee_tf.controls.publish`); jobs published there with the same settings
    and data are skipped, a published Model A that a pending job needs is trained again (same seed,
    same weights; its predictions must equal the published ones). A job published with other
    settings or data is refused (ValueError, one line) unless ``republish``: then it is trained
    again and replaced. Jobs run grouped by their Model A (A first), so that a grid interrupted
    between sessions leaves few Model A jobs to train again.
    """
    layout = RunLayout(run_dir)
    layout.models.mkdir(parents=True, exist_ok=True)
    _clean_partial(layout)
    jobs = list(dict.fromkeys(jobs))
    for job in jobs:  # dependencies first
        dep = job.model_a()
        if dep is not None and dep not in jobs and not job_done(layout, dep):
            raise ValueError(f"job {job.label} needs {dep.label}: add it to the grid (plan_jobs does)")
    cache_dir = str(Path(cache_dir).resolve())
    config_dict = config.to_dict()
    result = GridResult(skipped=[j.label for j in jobs if job_done(layout, j)])
    if result.skipped:
        log(f"grid: {len(result.skipped)} job(s) finished earlier, skipped: {', '.join(result.skipped)}")
    provenance = _provenance(jobs, config, cache_dir)
    publisher = None if publish is None else _Publisher(publish, jobs, provenance, layout, cache_dir, republish,
                                                        log, config)
    done = {j for j in jobs if job_done(layout, j) or (publisher is not None and j in publisher.ok)}
    if publisher is not None:
        publisher.publish_finished(jobs, result)
        result.skipped_published = [j.label for j in jobs if j in publisher.ok and not job_done(layout, j)]
        if result.skipped_published:
            log(f"grid: {len(result.skipped_published)} job(s) published earlier with these settings and data, "
                f"skipped: {', '.join(result.skipped_published)}")
    todo = [j for j in jobs if j not in done]
    if publisher is not None:
        publisher.publish_cross(jobs, result)
        todo = publisher.model_a_to_retrain(todo) + todo
    group = {}
    for j in jobs:
        group.setdefault(j.model_a() or j, len(group))
    todo = sorted(todo, key=lambda j: (group.get(j.model_a() or j, len(group)), j.arm != MODEL_A))
    if not todo:
        return result

    def commit(job: Job, out: dict) -> None:
        out["record"].update(provenance[job])
        if publisher is None:
            commit_job(layout, job, out)
        else:
            publisher.commit(job, out, result)
            publisher.publish_cross(jobs, result)  # a seed whose models are now all here

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="grid jobs", unit="job", disable=not progress)
    try:
        if not scheduler and workers == 0:
            _run_in_process(todo, layout, config_dict, cache_dir, result, bar, log, commit)
        else:
            _run_on_dask(todo, layout, config_dict, cache_dir, scheduler, workers, result, bar, log, commit)
    finally:
        bar.close()
    for label, error in result.failed.items():
        log(f"grid: FAILED {label}: {error}")
    return result


class _Publisher:
    """run_grid's publishing (knee_tf.controls.publish): which jobs are published, and what to do as each finishes."""

    def __init__(self, publish, jobs, provenance, layout, cache_dir, republish, log, config):
        self.gp, self.layout, self.log, self.config, self.cache_dir = gp, layout, log, config, cache_dir
        self.waiting: dict[int, tuple[str, ...]] = {}  # seed -> labels of the models its cross cohorts wait for
        self.pub = publish if isinstance(publish, PublishedGrid) else PublishedGrid(publish)
        self.index = open_cache(cache_dir).index
        self.provenance = provenance
        self.ok, mismatched = set(), {}
        for j in jobs:
            if not self.provenance[j]:  # invalid settings: never published, fails when it runs
                continue
            published, differs = gp.published_status(self.pub, j, self.provenance[j])
            if published and not differs:
                self.ok.add(j)
            elif published:
                mismatched[j] = differs
        if mismatched and not republish:
            raise ValueError(gp.mismatch_error(self.pub, mismatched))
        for j, what in mismatched.items():
            log(f"grid: {j.label} published with other settings or data ({what}): trained again and replaced")
        self.retrain: set[Job] = set()

    def publish_finished(self, jobs, result) -> None:
        """Publish the run folder's finished jobs that are not published yet (a run stopped between the two)."""
        for j in jobs:
            if j in self.ok or not job_done(self.layout, j):
                continue
            record = json.loads(self.layout.job_record(j.name, j.seed).read_text())
            differs = self.gp.differences(record, self.provenance[j]) if "settings_digest" in record else \
                "its record has no settings digest (written by an older knee_tf)"
            if differs:
                self.log(f"grid: {j.label} of the run folder not published: {differs}")
                continue
            self.gp.publish_job(self.pub, self.layout, j, self.index)
            self.ok.add(j)
            result.published.append(j.label)

    def model_a_to_retrain(self, todo) -> list[Job]:
        """The published Model A jobs that pending jobs need but the run folder lacks."""
        need = [j.model_a() for j in todo if j.model_a() is not None]
        self.retrain = {a for a in need if a in self.ok and not job_done(self.layout, a)}
        if self.retrain:
            self.log(f"grid: {len(self.retrain)} published Model A job(s) trained again for their dependents: "
                     + ", ".join(a.label for a in dict.fromkeys(a for a in need if a in self.retrain)))
        return list(dict.fromkeys(a for a in need if a in self.retrain))

    def commit(self, job: Job, out: dict, result: GridResult) -> None:
        commit_job(self.layout, job, out)
        if job in self.retrain:
            self.gp.check_retrained(self.pub, self.layout, job, self.index)
            result.retrained.append(job.label)
        else:
            self.gp.publish_job(self.pub, self.layout, job, self.index)
            self.ok.add(job)
            result.published.append(job.label)

    def _cross_current(self, job: Job, maps: dict) -> bool:
        """Whether ``job``'s published cross cohorts were made by the maps ``maps`` names."""
        path = self.pub.cross_record(job.name, job.seed)
        if not (path.exists() and self.pub.cross_predictions(job.name, job.seed).exists()):
            return False
        return self.gp.cross_sources(json.loads(path.read_text())) == maps

    def publish_cross(self, jobs, result: GridResult) -> None:
        """Add the cross cohorts (``cam_transfer``, ``cam_b``) to the published jobs of each seed whose
        models are in the run folder, once the models that make those cohorts (the plain B of the seed
        and, when ``config.transfer_seed >= 0``, the transfer Model A) are there too. Every model used
        is checked against its published predictions first (:func:`knee_tf.controls.publish.check_retrained`).
        Only seeds whose B (and transfer Model A) are in ``jobs``; what is still missing is logged."""
        jobs = list(jobs)
        plan, cfg = set(jobs), self.config
        cross = " / ".join(cross_cohort_names())
        for seed in sorted({j.seed for j in jobs if j.variant != TRANSFER_VARIANT}):
            sources = cross_cohort_makers(cfg, seed)
            if not set(sources.values()) <= plan or not all(self.provenance[x] for x in sources.values()):
                continue
            maps = {c: [x.label, self.provenance[x]["settings_digest"], self.provenance[x]["data_digest"]]
                    for c, x in sorted(sources.items())}
            pending = [j for j in jobs if j.seed == seed and j.variant != TRANSFER_VARIANT
                       and j in self.ok and not self._cross_current(j, maps)]
            if not pending:  # every published job of the seed has current cross cohorts
                continue
            here = lambda x: x in self.ok and job_done(self.layout, x)  # noqa: E731
            missing = tuple(x.label for x in dict.fromkeys([*sources.values(), *pending]) if not here(x))
            if missing and self.waiting.get(seed) != missing:
                self.waiting[seed] = missing
                self.log(f"grid: {cross} of seed {seed} wait for {len(missing)} model(s) not in "
                         f"the run folder: {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}")
            ready = [j for j in pending if here(j)]
            if not ready or not all(here(x) for x in sources.values()):
                continue
            for x in dict.fromkeys([*sources.values(), *ready]):  # each model here is the published one
                self.gp.check_retrained(self.pub, self.layout, x, self.index)
            pred = cross_cohort_predictions(self.layout.root, ready, cfg, self.cache_dir, progress=False)
            for j in ready:
                self.gp.publish_cross(self.pub, j, pred[pred["model"] == j.name], self.index, maps)
                result.cross_published.append(j.label)
            self.log(f"grid: {cross} of seed {seed} published for {len(ready)} job(s)")


def _provenance(jobs, config: StudyConfig, cache_dir) -> dict:
    """{job: what its record carries to be compared later} (:func:`knee_tf.controls.publish.provenance`):
    written into every job's ``job.json``, published or not, so a finished run (a study's) can be
    published afterwards (``knee-tf grid --publish --out RUN``) without training anything again."""
    try:
        data = gp.data_digest(cache_dir)
    except FileNotFoundError:  # the cache is only on the workers: records without digests (not publishable)
        return {j: {} for j in jobs}
    commit, out = gp.code_commit(), {}
    for j in jobs:
        try:
            out[j] = gp.provenance(j.settings(config), data, Path(cache_dir).name, commit)
        except ValueError:  # an invalid setting: the job itself fails with that error when it runs
            out[j] = {}
    return out


def _saved_model(layout: RunLayout, job: Job) -> bytes:
    return layout.model(job.name, job.seed).read_bytes()


def _run_in_process(todo, layout, config_dict, cache_dir, result, bar, log, commit) -> None:
    outputs: dict[Job, dict] = {}
    for job in todo:
        dep = job.model_a()
        if dep is not None and dep.label in result.failed:
            result.failed[job.label] = f"not run: {dep.label} failed"
        else:
            model_a = None if dep is None else (outputs[dep] if dep in outputs else _saved_model(layout, dep))
            try:
                out = run_job(job, config_dict, cache_dir, model_a)
            except Exception as e:  # reported by name; the other jobs go on
                result.failed[job.label] = _one_line(e)
            else:
                commit(job, out)
                result.ran.append(job.label)
                if any(j.model_a() == job for j in todo):
                    outputs[job] = out
        bar.update(1)


def _run_on_dask(todo, layout, config_dict, cache_dir, scheduler, workers, result, bar, log, commit) -> None:
    from distributed import (  # lazy: the cluster, loaded only when a grid runs on one
        Client,
        LocalCluster,
        as_completed,
    )

    cluster = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
        log(f"grid: Dask scheduler {scheduler}")
    else:
        n = workers if workers > 0 else (os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
        client = Client(cluster)
        log(f"grid: LocalCluster of {n} worker(s) at {cluster.scheduler_address}")
    try:
        client.wait_for_workers(1, timeout=120)
        if "dashboard" in client.scheduler_info().get("services", {}):
            result.dashboard = client.dashboard_link
            log(f"grid: dashboard {client.dashboard_link}")
        futures, by_key = {}, {}
        tag = uuid.uuid4().hex[:8]
        for job in todo:
            dep = job.model_a()
            model_a = None
            if dep is not None:
                model_a = futures[dep] if dep in futures else client.scatter(_saved_model(layout, dep))
            fut = client.submit(run_job, job, config_dict, cache_dir, model_a, key=f"knee-tf-{job.name}-{job.seed}-{tag}",
                                pure=False, retries=0)
            futures[job], by_key[fut.key] = fut, job
        for fut in as_completed(list(futures.values())):
            job = by_key[fut.key]
            dep = job.model_a()
            if fut.status == "error":
                if dep is not None and dep in futures and futures[dep].status == "error":
                    result.failed[job.label] = f"not run: {dep.label} failed"
                else:
                    result.failed[job.label] = _one_line(fut.exception())
            else:
                commit(job, fut.result())
                result.ran.append(job.label)
            bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def read_predictions(run_dir, jobs: Iterable[Job] | None = None, held_out: bool = False):
    """The per-image predictions of ``jobs`` (default: every finished model folder), one DataFrame (schema above).

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


# --------------------------------------------------------------------------------------------- the controls study

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


def cross_cohort_predictions(run_dir, jobs: Iterable[Job], config: StudyConfig, cache_dir,
                             progress: bool = True):
    """Predictions of every finished job on ``cam_transfer`` and ``cam_b`` (:func:`knee_tf.study.cohorts.cross_cohorts`).

    ``cam_transfer``: the normal test images with the maps of the transfer Model A (one set of images
    for every job; left out when ``config.transfer_seed < 0``); ``cam_b``: with the maps of the plain B of the job's seed (when the grid has it).
    Jobs of a learning-curve variant are scored on both too. Columns as :func:`read_predictions`.
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

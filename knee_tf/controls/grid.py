"""The experiment grid on Dask: run many jobs (:mod:`knee_tf.controls.jobs`), each training one model.

Each job (:func:`knee_tf.controls.training_job.run_job`) trains one model and writes its folder
``models/model_<name>_seed<S>/`` into the run folder whole (schema of its predictions:
:mod:`knee_tf.controls.training_job`).

Where jobs run (:func:`run_grid`): ``workers=0`` in this process, one after the other;
``workers=N`` on a ``distributed.LocalCluster`` of N single-threaded worker processes on
loopback (``-1``: one per CPU); ``scheduler="tcp://HOST:PORT"`` on an existing Dask cluster. A job
trains and predicts in a private temporary folder on the worker and returns the files' bytes; the
client writes them into the run folder (:func:`knee_tf.controls.training_job.commit_job`). A re-run
skips every finished job. The same jobs give byte-identical predictions wherever they run as long
as TensorFlow uses the same number of threads per job (``StudyConfig.job_threads``; 0 keeps
TensorFlow's default, all cores of the machine, which is the same for in-process and LocalCluster
runs on one machine).

Dependencies: every job of an arm other than A depends on the A job of its seed and overrides
(the ``cam`` cohort is made from Model A's maps, and arms with ``needs_model_a`` train on them);
on Dask the A job's result is passed to the dependent task, so the model travels with the task
graph. A failed job is reported by name with its one-line error; its dependents are reported as
not run; every other job finishes.

Publishing as jobs finish (``publish``): :mod:`knee_tf.controls.grid_publisher`.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from knee_tf.controls import publish as gp
from knee_tf.controls.grid_publisher import GridPublisher
from knee_tf.controls.jobs import Job, job_done
from knee_tf.controls.training_job import commit_job, run_job
from knee_tf.core.vocab import MODEL_A
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import StudyConfig


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
    same weights; its predictions must equal the published ones), and so, after the grid's own jobs,
    is a published model whose maps make the cross cohorts of a job in the run folder that lacks them
    (with ``republish``, also of a published job whose cross cohorts a dirty tree made, and that job).
    A job published with other
    settings or data is refused (ValueError, one line) unless ``republish``: then it is trained
    again and replaced. With ``republish``, a job published from a tree with uncommitted changes is
    trained again too: it keeps its published files and gets the clean record where it reproduces
    them byte for byte, and is replaced otherwise. Jobs run grouped by their Model A (A first), so that a grid interrupted
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
    publisher = None if publish is None else GridPublisher(publish, jobs, provenance, layout, cache_dir, republish,
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

    def commit(job: Job, out: dict) -> None:
        out["record"].update(provenance[job])
        if publisher is None:
            commit_job(layout, job, out)
        else:
            publisher.commit(job, out, result)
            publisher.publish_cross(jobs, result)  # a seed whose models are now all here

    def run(batch: list[Job]) -> None:
        if not scheduler and workers == 0:
            _run_in_process(batch, layout, config_dict, cache_dir, result, bar, log, commit)
        else:
            _run_on_dask(batch, layout, config_dict, cache_dir, scheduler, workers, result, bar, log, commit)

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="grid jobs", unit="job", disable=not progress)
    try:
        if todo:
            run(todo)
        # cross cohorts that wait for published models this run folder lacks
        again = [] if publisher is None else publisher.cross_makers_to_retrain(jobs)
        if again:
            bar.total += len(again)
            bar.refresh()
            run(again)
    finally:
        bar.close()
    for label, error in result.failed.items():
        log(f"grid: FAILED {label}: {error}")
    return result


def _provenance(jobs, config: StudyConfig, cache_dir) -> dict:
    """{job: what its record carries to be compared later} (:func:`knee_tf.controls.publish.provenance`):
    written into every job's ``job.json``, published or not, so a finished run (a study's) can be
    published afterwards (``knee-tf grid --publish --run RUN``) without training anything again."""
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

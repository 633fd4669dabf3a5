"""Publishing a running grid's jobs as they finish (:func:`knee_tf.controls.grid.run_grid` with ``publish``).

:class:`GridPublisher` decides, for one grid, which jobs are published already with the same
settings and data (skipped), which were published with others (refused, or trained again and
replaced with ``republish``), which published Model A jobs must be trained again for their
dependents (and which published models that make a seed's cross cohorts, for the jobs of the run
folder that lack them), and, as each job finishes, publishes it (:func:`knee_tf.controls.publish.publish_job`) or
checks a retrained Model A against its published predictions
(:func:`knee_tf.controls.publish.check_retrained`); once a seed's models are together in the run
folder, it adds their cross cohorts (:mod:`knee_tf.controls.cross`). What it did goes into the
grid's :class:`knee_tf.controls.grid.GridResult` (``result`` below). The publishing steps
themselves are :mod:`knee_tf.controls.publish`'s.
"""

from __future__ import annotations

import json

from knee_tf.controls import publish as gp
from knee_tf.controls.cross import cross_cohort_predictions
from knee_tf.controls.jobs import TRANSFER_VARIANT, Job, cross_cohort_makers, job_done
from knee_tf.controls.training_job import commit_job
from knee_tf.core.vocab import MODEL_A
from knee_tf.data.ingest import open_cache
from knee_tf.data.layout import PublishedGrid
from knee_tf.study.cohorts import cross_cohort_names


class GridPublisher:
    """run_grid's publishing (knee_tf.controls.publish): which jobs are published, and what to do as each finishes."""

    def __init__(self, publish, jobs, provenance, layout, cache_dir, republish, log, config):
        self.gp, self.layout, self.log, self.config, self.cache_dir = gp, layout, log, config, cache_dir
        self.waiting: dict[int, tuple[str, ...]] = {}  # seed -> labels of the models its cross cohorts wait for
        self.pub = publish if isinstance(publish, PublishedGrid) else PublishedGrid(publish)
        self.republish = republish
        self.index = open_cache(cache_dir).index
        self.provenance = provenance
        self.ok, mismatched = set(), {}
        # published jobs whose record names a tree with uncommitted changes: with republish, trained
        # again from this (clean) checkout; {job: the published code commit}
        self.dirty: dict[Job, str] = {}
        for j in jobs:
            if not self.provenance[j]:  # invalid settings: never published, fails when it runs
                continue
            published, differs = gp.published_status(self.pub, j, self.provenance[j])
            commit = (gp.published_record(self.pub, j) or {}).get("code_commit") if published else None
            if published and not differs and republish and gp.is_dirty(commit):
                self.dirty[j] = commit
            elif published and not differs:
                self.ok.add(j)
            elif published:
                mismatched[j] = differs
        if mismatched and not republish:
            raise ValueError(gp.mismatch_error(self.pub, mismatched))
        # a job trained from a tree with uncommitted changes is never published: refused before training
        to_publish = [j for j in jobs if self.provenance[j] and j not in self.ok and not job_done(layout, j)]
        dirty = [j for j in to_publish if gp.is_dirty(self.provenance[j].get("code_commit"))]
        if dirty:
            more = f" (and {len(dirty) - 1} more job(s))" if len(dirty) > 1 else ""
            raise ValueError("grid --publish: " + gp.dirty_error(dirty[0], self.provenance[dirty[0]]["code_commit"],
                                                                 planned=True) + more)
        for j, what in mismatched.items():
            log(f"grid: {j.label} published with other settings or data ({what}): trained again and replaced")
        for j, commit in self.dirty.items():
            log(f"grid: {j.label} published from a tree with uncommitted changes ({commit}): trained again; "
                "if it reproduces the published predictions and training log, only its record is replaced")
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
            self._publish(j, result)

    def _publish(self, job: Job, result) -> None:
        """Publish a finished job. A dirty-tree job trained again that gives its published predictions byte
        for byte keeps them and its cross cohorts (the same model's) and gets the clean record, and the
        new training log where that differs (the epochs after the restored best one can); one whose
        predictions differ is replaced whole."""
        if job not in self.dirty:
            self.gp.publish_job(self.pub, self.layout, job, self.index)
        else:
            predictions, training_log = self.gp.reproduction_gap(self.pub, self.layout, job, self.index)
            if not predictions:
                self.gp.replace_record(self.pub, self.layout, job, training_log=bool(training_log))
                self.log(f"grid: {job.label} reproduces its dirty-tree publication byte for byte; record replaced"
                         if not training_log else
                         f"grid: {job.label} reproduces its dirty-tree publication's predictions byte for byte but "
                         "not its training log; record and training log replaced, predictions and cross cohorts kept")
            else:
                self.log(f"grid: {job.label} does not reproduce its dirty-tree publication ({predictions}): "
                         "replaced; its cross cohorts and the jobs trained on its maps need training again")
                self.gp.publish_job(self.pub, self.layout, job, self.index)
        self.ok.add(job)
        result.published.append(job.label)

    def model_a_to_retrain(self, todo) -> list[Job]:
        """The published Model A jobs that pending jobs need but the run folder lacks."""
        need = [j.model_a() for j in todo if j.model_a() is not None]
        self.retrain = {a for a in need if a in self.ok and not job_done(self.layout, a)}
        if self.retrain:
            self.log(f"grid: {len(self.retrain)} published Model A job(s) trained again for their dependents: "
                     + ", ".join(a.label for a in dict.fromkeys(a for a in need if a in self.retrain)))
        return list(dict.fromkeys(a for a in need if a in self.retrain))

    def commit(self, job: Job, out: dict, result) -> None:
        commit_job(self.layout, job, out)
        if job in self.retrain:
            self.gp.check_retrained(self.pub, self.layout, job, self.index)
            result.retrained.append(job.label)
        else:
            self._publish(job, result)

    def _cross_record(self, job: Job) -> dict | None:
        path = self.pub.cross_record(job.name, job.seed)
        if not (path.exists() and self.pub.cross_predictions(job.name, job.seed).exists()):
            return None
        return json.loads(path.read_text())

    def _cross_dirty(self, job: Job) -> bool:
        """Whether ``job``'s published cross cohorts were made from a tree with uncommitted changes."""
        record = self._cross_record(job)
        return record is not None and self.gp.is_dirty(record.get("code_commit"))

    def _cross_current(self, job: Job, maps: dict) -> bool:
        """Whether ``job``'s published cross cohorts include those ``maps`` names, made by those maps
        (and, with ``republish``, from a clean tree). Published cohorts this grid's config does not
        make (``cam_transfer`` of a grid run with a transfer Model A, seen from a config without one)
        are left alone, never made again without them."""
        record = self._cross_record(job)
        if record is None or (self.republish and self.gp.is_dirty(record.get("code_commit"))):
            return False
        published = self.gp.cross_sources(record)
        return {c: published.get(c) for c in maps} == maps

    def _cross_makers(self, jobs):
        """(seed, {cohort: the job whose maps make it}, {cohort: [its label, settings digest, data digest]})
        for each seed of ``jobs`` whose cross-cohort makers are all in ``jobs`` with valid settings."""
        plan = set(jobs)
        for seed in sorted({j.seed for j in jobs if j.variant != TRANSFER_VARIANT}):
            sources = cross_cohort_makers(self.config, seed)
            if not set(sources.values()) <= plan or not all(self.provenance[x] for x in sources.values()):
                continue
            maps = {c: [x.label, self.provenance[x]["settings_digest"], self.provenance[x]["data_digest"]]
                    for c, x in sorted(sources.items())}
            yield seed, sources, maps

    def _cross_pending(self, jobs, seed: int, maps: dict) -> list[Job]:
        """The published jobs of ``seed`` whose cross cohorts are missing or were made by other maps."""
        return [j for j in jobs if j.seed == seed and j.variant != TRANSFER_VARIANT
                and j in self.ok and not self._cross_current(j, maps)]

    def cross_makers_to_retrain(self, jobs) -> list[Job]:
        """The published models that make a seed's cross cohorts (its plain B, the transfer Model A) but
        are not in the run folder, where a published job of that seed that *is* in the run folder lacks
        current cross cohorts (a dirty-tree job replaced whole by ``republish``, say), with the Model A
        such a B needs where that is missing too. With ``republish``, a published job whose cross
        cohorts were made from a tree with uncommitted changes is trained again as well, with them.
        All are trained again like a Model A for a pending dependent (each checked against its
        published predictions) so that those cohorts can be made.
        Called once the grid's own jobs have run; seeds whose makers are not in ``jobs`` keep waiting."""
        jobs, need = list(jobs), []
        here = lambda x: job_done(self.layout, x)  # noqa: E731
        for seed, sources, maps in self._cross_makers(jobs):
            pending = self._cross_pending(jobs, seed, maps)
            # with republish, a published job whose cross cohorts a dirty tree made is trained again too
            redo = [j for j in pending if not here(j) and self.republish and self._cross_dirty(j)]
            if redo or any(here(j) for j in pending):
                need += redo + [x for x in sources.values() if x in self.ok and not here(x)]
        need = list(dict.fromkeys(need))
        deps = [a for a in dict.fromkeys(x.model_a() for x in need)
                if a is not None and a not in need and a in self.ok and not here(a)]
        todo = sorted(deps + need, key=lambda j: j.arm != MODEL_A)  # a Model A before the jobs on its maps
        if todo:
            self.retrain |= set(todo)
            self.log(f"grid: {len(todo)} published model(s) trained again for the cross cohorts "
                     f"({' / '.join(cross_cohort_names())}) of jobs without current ones: "
                     + ", ".join(x.label for x in todo))
        return todo

    def publish_cross(self, jobs, result) -> None:
        """Add the cross cohorts (``cam_transfer``, ``cam_b``) to the published jobs of each seed whose
        models are in the run folder, once the models that make those cohorts (the plain B of the seed
        and, when ``config.transfer_seed >= 0``, the transfer Model A) are there too. Every model used
        is checked against its published predictions first (:func:`knee_tf.controls.publish.check_retrained`).
        Only seeds whose B (and transfer Model A) are in ``jobs``; what is still missing is logged."""
        jobs = list(jobs)
        cfg = self.config
        cross = " / ".join(cross_cohort_names())
        for seed, sources, maps in self._cross_makers(jobs):
            pending = self._cross_pending(jobs, seed, maps)
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

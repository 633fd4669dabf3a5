"""The study pipeline: notebooks 01-07 executed with papermill into a run folder, resumably; publishing.

The run folder's files are named by :class:`knee_tf.data.layout.RunLayout` (its docstring shows the
folder). Each step declares its outputs from that layout; a step counts as done only when its
marker and every one of its outputs exist. A re-run skips every finished step and recomputes the
first unfinished step and everything after it.

``run_study`` writes only into the run folder. :func:`publish` copies a finished run's figures and
tables to the repository's top-level ``figures/`` and ``results/`` (``knee-tf study --publish``,
``make publish``), and refuses a run with fewer seeds than the published one unless forced.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from knee_tf.core.errors import InputError, StepFailed
from knee_tf.core.io import atomic_path, atomic_write_csv, atomic_write_text
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.ingest import open_cache
from knee_tf.data.layout import (
    FIGURES,
    PUBLISHED_RESULTS,
    SYNTH_RECORD,
    RunLayout,
    published_path,
    published_record,
)
from knee_tf.phantom import synthesize
from knee_tf.phantom.synth import synth_record
from knee_tf.study.config import REPO_ROOT, StudyConfig, get_config, resolve
from knee_tf.study.plots import savefig

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
RUNS_DIR = Path(os.environ.get("KNEE_TF_RUNS", REPO_ROOT / "runs"))  # where new run folders go


def _nothing(layout: RunLayout, seeds: list[int]) -> list[Path]:
    return []


@dataclass(frozen=True)
class Step:
    name: str  # notebook file stem
    outputs: Callable[[RunLayout, list[int]], list[Path]]  # (layout, training seeds) -> promised files
    # files the step writes only when its config asks for them (not part of "done"; published when present)
    optional: Callable[[RunLayout, list[int]], list[Path]] = _nothing


def _per_seed(make, seeds) -> list[Path]:
    return [p for s in seeds for p in make(s)]


def _model_files(L: RunLayout, arm: str, seed: int) -> list[Path]:
    """What one grid job (knee_tf.controls.training_job) writes for (arm, seed)."""
    return [L.model(arm, seed), L.training_log(arm, seed), L.grid_predictions(arm, seed), L.job_record(arm, seed)]


STEPS: tuple[Step, ...] = (
    Step("01_data_ingest", lambda L, seeds: [
        L.ingest_record, L.linear_baseline, L.figure_counts, L.figure_montage, L.figure_montage_sites,
        L.figure_intensity_per_site]),
    Step("02_train_model_a", lambda L, seeds: _per_seed(lambda s: _model_files(L, MODEL_A, s), seeds) + [
        L.model_a_test, L.figure_learning_curves_a, L.figure_confusion_a]),
    Step("03_gradcam_layers", lambda L, seeds: [L.figure_gradcam_layers, L.faithfulness, L.figure_faithfulness_curves]),
    Step("04_augmentations", lambda L, seeds: _per_seed(lambda s: [L.aug_pool_images(s), L.aug_pool_provenance(s)],
                                                        seeds) + [
        L.fig2_examples, L.figure_augmentation, L.premise_dose_response, L.figure_premise_dose_response,
        L.figure_premise_deletion, L.aug_dicom]),
    Step("05_train_model_b", lambda L, seeds: _per_seed(lambda s: _model_files(L, MODEL_B, s), seeds) + [
        L.figure_learning_curves_a_vs_b]),
    Step("06_cohort_evaluation", lambda L, seeds: [
        L.predictions, L.cohorts, L.mcnemar, L.severity_table, L.breakdown_plane, L.breakdown_site,
        L.results_table, L.figure_a_wrong_b_right, L.figure_augmentation_a_vs_b, L.figure_severity]),
    Step("07_controls_and_ablations", lambda L, seeds: [
        L.prediction_store, L.arms_table, L.effects_table, L.prescription_table, L.figure_forest,
        L.figure_prescription], optional=lambda L, seeds: [L.figure_ablations, L.figure_learning_curve_exams]),
)
CONTROLS_STEP = STEPS[-1].name  # notebook 07: what `knee-tf controls` rebuilds from the published grid


@dataclass
class Run:
    """A run folder, its layout and its config; what notebooks use to find inputs and place outputs.

    Every path comes from ``run.layout`` (:class:`knee_tf.data.layout.RunLayout`); the write helpers
    take such a path and write atomically.
    """

    root: Path
    config: StudyConfig

    def __post_init__(self):
        self.root = Path(self.root)
        self.layout = RunLayout(self.root).create()

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + k for k in range(max(1, self.config.n_seeds))]

    def savefig(self, fig, path: Path) -> None:
        """Write the figure as PNG at ``path`` (a ``layout.figure_*``); in a notebook it is also shown."""
        savefig(fig, Path(path).stem, Path(path).parent)

    def write_json(self, path: Path, obj) -> None:
        atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")

    def write_csv(self, path: Path, df) -> None:
        atomic_write_csv(path, df)

    def write_text(self, path: Path, text: str) -> None:
        atomic_write_text(path, text)

    def save_arrays(self, path: Path, **arrays) -> None:
        """Write NumPy arrays (numbers or strings, no pickles) to ``path`` (.npz), atomically."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)

    def load_arrays(self, path: Path) -> dict:
        """The arrays :meth:`save_arrays` wrote, as a dict."""
        with np.load(self._existing(path), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def read_json(self, path: Path):
        return json.loads(self._existing(path).read_text())

    def _existing(self, path: Path) -> Path:
        if not Path(path).exists():
            raise InputError(f"{path}: missing; run the step that writes it first (see knee_tf.study.pipeline.STEPS)")
        return Path(path)

    def record_ingest(self, data, manifest: Path, data_root: Path) -> None:
        """Notebook 01: record where the decoded arrays of this run live (the hand-off to 02-06)."""
        self.write_json(self.layout.ingest_record, {
            "cache_dir": str(data.cache_dir), "manifest": str(manifest), "data_root": str(data_root),
            "image_size": self.config.image_size, "on_error": self.config.on_error,
            "n_ingested": len(data.index), "n_skipped": len(data.skipped)})

    def load_ingest(self):
        """The IngestResult notebook 01 recorded, opened from its cache folder: no manifest, no DICOM."""
        return open_cache(self.read_json(self.layout.ingest_record)["cache_dir"])

    def expected_outputs(self, step: Step) -> list[Path]:
        return step.outputs(self.layout, self.seeds)


def newest_run() -> Path | None:
    """The newest run folder under ``runs/`` (one with a saved config), or None when there is none."""
    runs = sorted(p for p in RUNS_DIR.glob("*") if RunLayout(p).config.exists())
    return runs[-1] if runs else None


def open_run(run_dir: str | Path = "", config: str | StudyConfig = "default", create: bool = False) -> Run:
    """The run a notebook works in.

    run_dir given: that folder; the config saved in it (if any) wins over ``config``.
    run_dir empty: with ``create`` a new ``runs/<timestamp>-<name>/``; otherwise the newest run folder
    (so a person can step through notebooks 02-06 after running 01 by hand).
    """
    if run_dir:
        root = resolve(run_dir)
    elif create:
        cfg = get_config(config)
        root = RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    else:
        root = newest_run()
        if root is None:
            raise InputError("no run folder under runs/: run notebook 01 (or `knee-tf study`) first")
    cfg_file = RunLayout(root).config
    if cfg_file.exists():
        cfg = StudyConfig.load(cfg_file)
    else:
        cfg = get_config(config)
        root.mkdir(parents=True, exist_ok=True)
        cfg.save(cfg_file)
    return Run(root, cfg)


def _manifest_paths(manifest: Path) -> set[str]:
    """The ``path`` column of a manifest (relative to its folder)."""
    with open(manifest, newline="") as f:
        return {row["path"] for row in csv.DictReader(f)}


def ensure_dataset(cfg: StudyConfig, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """The manifest of ``cfg``'s data: a user manifest (``cfg.manifest`` set) is only checked to exist;
    the synthetic dataset under ``cfg.data_root`` is generated when its manifest is missing, or again
    when the folder's record (:func:`knee_tf.phantom.synth.synth_record`) says it was made with other
    settings or another version of the phantom (the reason is logged in one line). Generating again
    removes the old data's files that the new manifest does not list (fewer exams), and only those.
    """
    manifest = cfg.manifest_path
    if cfg.manifest:
        if not manifest.exists():
            raise InputError(f"{manifest}: manifest not found")
        return manifest

    root = resolve(cfg.data_root)
    old_files: set[str] = set()
    if manifest.exists():
        want = synth_record(cfg.n_exams, cfg.synth_seed, cfg.synth_matrix, cfg.metal_fraction,
                            cfg.synth_difficulty(), cfg.synth_appearance)
        record_path = root / SYNTH_RECORD
        have = json.loads(record_path.read_text()) if record_path.exists() else None
        if have == want:
            return manifest
        changed = [k.replace("_", " ") for k in want if have is not None and have.get(k) != want[k]]
        why = (f"it has no {SYNTH_RECORD} (made by an older knee-tf)" if have is None else
               "it was made with another " + ", ".join(changed))
        log(f"{root}: {why}; generating the synthetic data again")
        old_files = _manifest_paths(manifest)

    synthesize(root, n_exams=cfg.n_exams, seed=cfg.synth_seed, matrix=cfg.synth_matrix,
               metal_fraction=cfg.metal_fraction, workers=cfg.n_workers, progress=progress,
               difficulty=cfg.synth_difficulty(), appearance=cfg.synth_appearance)
    stale = sorted(old_files - _manifest_paths(manifest))
    for rel in stale:  # the old data's files that the new manifest no longer lists (fewer exams)
        path = root / rel
        path.unlink(missing_ok=True)
        for folder in path.parents:  # and the exam/site folders left empty
            if folder == root or not folder.is_relative_to(root) or any(folder.iterdir()):
                break
            folder.rmdir()
    if stale:
        log(f"{root}: removed {len(stale)} DICOM file(s) of the old data that the new manifest does not list")
    return manifest


def step_done(run: Run, step: Step) -> bool:
    """True when the step's marker and every output it promises exist."""
    return run.layout.step_marker(step.name).exists() and all(p.exists() for p in run.expected_outputs(step))


#: config fields a run may change when it is resumed: its number of training seeds (``--seeds``).
#: Every per-seed output is named by its seed, so a 1-seed run resumed with ``--seeds 3`` keeps seed 0's
#: models and trains seeds 1 and 2; the steps that need the new seeds run again (their outputs are missing).
RESUMABLE_FIELDS = ("n_seeds", "n_seeds_other")


def start_run(root: Path, cfg: StudyConfig) -> Run:
    """The run folder ``root`` for ``cfg``: created, with its config file written (or already there,
    to resume, possibly with another number of seeds: :data:`RESUMABLE_FIELDS`). Raises InputError
    when it holds a run with a different config."""
    layout = RunLayout(root)
    if layout.config.exists():
        saved = StudyConfig.load(layout.config)
        if saved.replace(**{f: getattr(cfg, f) for f in RESUMABLE_FIELDS}) != cfg:
            raise InputError(f"{root}: holds a run with a different config; choose another --run")
    root.mkdir(parents=True, exist_ok=True)
    cfg.save(layout.config)
    return Run(root, cfg)


def _kernel_manager_class(socket_dir: str | None):
    """The kernel manager of a notebook run. With ``socket_dir`` the kernel talks over Unix sockets in
    that folder (a private temporary one: only this user can open them); without, over loopback TCP,
    Jupyter's default, whose ports any local user can reach and of which ipykernel warns at start."""
    from jupyter_client import AsyncKernelManager  # lazy: notebook execution (heavy import)
    from traitlets import default  # lazy: notebook front end, optional outside Jupyter

    if socket_dir is None:
        return AsyncKernelManager

    class UnixSocketKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):  # socket files <socket_dir>/kernel-<n>, not kernel-ipc-<n> in the cwd
            return os.path.join(socket_dir, "kernel")

    return UnixSocketKernelManager


def execute_notebook(notebook: Path, executed: Path, parameters: dict) -> None:
    """Execute ``notebook`` headlessly (papermill, the ``python3`` kernel, cwd the repository) into
    ``executed`` with ``parameters`` injected; what its cells print goes to stdout. On POSIX the
    kernel is reached over Unix sockets in a private temporary folder, removed afterwards (TCP where
    the folder's path is too long for a socket). A failing cell raises :class:`StepFailed` naming the
    notebook's stem, the cell, the error and the executed copy (which holds the traceback)."""
    import papermill as pm  # lazy: notebook execution (heavy import)

    name = Path(notebook).stem
    with tempfile.TemporaryDirectory(prefix="knee-tf-kernel-") as sockets:
        # a socket path must stay under 108 bytes: <folder>/kernel-<n>
        unix = os.name == "posix" and len(os.fsencode(sockets)) <= 90
        try:
            pm.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name="python3",
                                progress_bar=False, log_output=False, cwd=str(REPO_ROOT), stdout_file=sys.stdout,
                                stderr_file=None, kernel_manager_class=_kernel_manager_class(sockets if unix else None))
        except pm.PapermillExecutionError as e:
            raise StepFailed(f"[{name}] failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                             f"(executed notebook: {executed})") from None


def run_study(config: str | StudyConfig | None = None, seeds: int | None = None, out: str | Path | None = None,
              steps: tuple[str, ...] | None = None, settings=(), log=print) -> Run:
    """Execute the notebooks into a run folder; return the Run. Writes nothing outside it.

    config: "default" | "smoke" | a JSON path | a StudyConfig; None: the config saved in ``out`` when
    it holds one, else "default". seeds: n_seeds override; settings: ``["field=value", ...]``
    overrides (:meth:`StudyConfig.with_settings`). out=None: resume the newest unfinished run of
    the same config under runs/, else start a new one.
    """
    if config is None:
        config = StudyConfig.load(RunLayout(resolve(out)).config) if out and RunLayout(resolve(out)).config.exists() \
            else "default"
    cfg = get_config(config)
    if seeds is not None:
        cfg = cfg.replace(n_seeds=seeds)
    cfg = cfg.with_settings(settings)
    if out is None:
        root = _resumable(cfg) or RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    else:
        root = resolve(out)
    run = start_run(root, cfg)
    layout = run.layout
    log(f"run folder: {root}")

    rerun_rest = False
    for step in STEPS:
        if steps is not None and step.name not in steps:
            continue
        marker = layout.step_marker(step.name)
        if not rerun_rest and step_done(run, step):
            log(f"[{step.name}] done earlier, skipped")
            continue
        if step is STEPS[0]:
            ensure_dataset(cfg)  # only notebook 01 reads the DICOM files
        rerun_rest = True
        marker.unlink(missing_ok=True)
        t0 = time.perf_counter()
        log(f"[{step.name}] running ...")
        executed = layout.executed_notebook(step.name)
        execute_notebook(NOTEBOOK_DIR / f"{step.name}.ipynb", executed, {"config": str(layout.config), "run_dir": str(root)})
        missing = [layout.relative(p) for p in run.expected_outputs(step) if not p.exists()]
        if missing:
            raise RuntimeError(f"[{step.name}] finished but did not write: {', '.join(missing)}")
        atomic_write_text(marker, json.dumps({"seconds": round(time.perf_counter() - t0, 1),
                                              "outputs": [layout.relative(p) for p in run.expected_outputs(step)]},
                                             indent=2))
        log(f"[{step.name}] finished in {time.perf_counter() - t0:.0f} s")
    return run


def _resumable(cfg: StudyConfig) -> Path | None:
    for p in sorted(RUNS_DIR.glob(f"*-{cfg.name}"), reverse=True):
        cfg_file = RunLayout(p).config
        if cfg_file.exists() and StudyConfig.load(cfg_file) == cfg:
            if not all(step_done(Run(p, cfg), s) for s in STEPS):
                return p
            return None
    return None


def published_seeds(top: Path = REPO_ROOT, name: str = "") -> int:
    """How many training seeds the published results in ``top``/results (or results/``name``) come from
    (0: none published)."""
    record = published_record(top, name)
    return int(json.loads(record.read_text()).get("n_seeds", 0)) if record.exists() else 0


def publish(run: Run, force: bool = False, top: Path = REPO_ROOT, log=print, steps: tuple[str, ...] | None = None
            ) -> list[Path]:
    """Copy a finished run's figures and tables (the layout's :data:`FIGURES` and :data:`PUBLISHED_RESULTS`)
    to ``top``/figures and ``top``/results, and record the run in ``results/published.json``.

    Refuses (InputError) an unfinished run, a smoke run, or a run with fewer seeds than the
    published one, unless ``force``. Returns the written paths.

    steps: publish only the files these steps write (their outputs and optional outputs; a previously
    published optional file the run lacks is removed). The record keeps the published run of the other
    steps and names this run under ``"steps"``; the seed rule applies to a whole publish only (the
    controls study's seeds are its own: ``knee-tf controls``).
    """
    names = [s.name for s in STEPS]
    unknown = [s for s in steps or () if s not in names]
    if unknown:
        raise InputError(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(names)}")
    chosen = [s for s in STEPS if steps is None or s.name in steps]
    unfinished = [s.name for s in chosen if not step_done(run, s)]
    if unfinished:
        raise InputError(f"{run.root}: not finished ({', '.join(unfinished)}); run `knee-tf study` on it first")
    apart = run.config.publish_grid_as  # e.g. paper_point: results/paper_point/, figures/paper_point/
    n_seeds, have = len(run.seeds), published_seeds(top, apart)
    if not force and run.config.name == "smoke":
        raise InputError(f"{run.root}: a smoke run is never published (use --force to publish it anyway)")
    if not force and steps is None and n_seeds < have:
        raise InputError(f"{run.root}: has {n_seeds} seed(s) but the published results have {have}; "
                         "run with --seeds {have} or use --force".replace("{have}", str(have)))
    publishable = [getattr(run.layout, f"figure_{key}") for key in FIGURES] + [getattr(run.layout, key) for key in PUBLISHED_RESULTS]
    if steps is not None:
        owned = {p for s in chosen for p in s.outputs(run.layout, run.seeds) + s.optional(run.layout, run.seeds)}
        publishable = [p for p in publishable if p in owned]
    written = []
    for src in publishable:
        dst = published_path(top, src.parent.name, src.name, apart)
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            written.append(dst)
        elif steps is not None and dst.exists():  # an optional output of an earlier publish: not this run's
            dst.unlink()
            log(f"removed {dst} (published earlier; this run did not write it)")
    record = published_record(top, apart)
    this = {"run": run.root.name, "config": run.config.name, "n_seeds": n_seeds, "seeds": run.seeds}
    if steps is None:
        content = this
    else:
        content = json.loads(record.read_text()) if record.exists() else {}
        content.setdefault("steps", {}).update({s.name: dict(this, controls_source=run.config.controls_source)
                                               for s in chosen})
    atomic_write_text(record, json.dumps(content, indent=2) + "\n")
    what = f"step(s) {', '.join(s.name for s in chosen)} of " if steps is not None else ""
    where = f"{top}/figures/{apart} and {top}/results/{apart}" if apart else f"{top}/figures and {top}/results"
    log(f"published {len(written)} files of {what}{run.root} ({n_seeds} seed(s)) to {where}")
    return written + [record]


def run_controls(config: str | StudyConfig = "full", out: str | Path | None = None, log=print, settings=()) -> Run:
    """Notebook 07 from the published grid (``results/grid/``, :mod:`knee_tf.controls.publish`), training
    nothing: step 01 (the ingest it needs) and step 07 with ``controls_source="published"`` into a run
    folder (default ``runs/<timestamp>-<config>-controls/``). Its tables say how much of the
    config's planned grid is published (``n_seeds`` beside ``n_seeds_planned``). ``knee-tf controls``.
    settings: ``["field=value", ...]`` overrides (:meth:`StudyConfig.with_settings`)."""
    cfg = get_config(config).with_settings(settings).replace(controls_source="published")
    root = resolve(out) if out else RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}-controls"
    RunLayout(root).step_marker(CONTROLS_STEP).unlink(missing_ok=True)  # the published grid may have grown
    return run_study(cfg, out=root, steps=(STEPS[0].name, CONTROLS_STEP), log=log)


def environment_report() -> dict:
    """Versions that decide whether a result can be reproduced; shown by notebook 01."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("knee-tf", "tensorflow-cpu", "tensorflow", "keras", "tf-keras-vis", "numpy", "pandas", "pydicom",
                "scipy", "statsmodels"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out

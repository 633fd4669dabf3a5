"""The run folder and the study pipeline: notebooks 01-06 executed with papermill, resumably.

A run folder (``runs/<timestamp>-<config>/`` unless ``--out`` names one) holds::

    config.json            the StudyConfig every notebook of this run reads
    notebooks/NN_*.ipynb   executed copies
    figures/  results/     what the paper shows, as PNG and CSV/Markdown
    models/                model_a_seed<S>.keras, model_b_seed<S>.keras and their logs
    artifacts/             intermediate arrays (CAMs, the augmented pool, test cohorts)
    steps/NN_*.done        written when a step finished; lists the outputs it promised

Each notebook reads only what earlier steps wrote here. A re-run skips every finished step whose
outputs are all present and recomputes the first unfinished step and everything after it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from knee_tf.config import REPO_ROOT, StudyConfig, get_config, resolve
from knee_tf.errors import InputError, StepFailed
from knee_tf.io import atomic_write_text

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
RUNS_DIR = Path(os.environ.get("KNEE_TF_RUNS", REPO_ROOT / "runs"))  # where new run folders go


@dataclass(frozen=True)
class Step:
    name: str  # notebook file stem
    outputs: tuple[str, ...]  # run-relative paths; "{seed}" expands to every training seed


STEPS: tuple[Step, ...] = (
    Step("01_data_ingest", ("artifacts/ingest.json", "results/linear_baseline.json", "figures/01_counts.png",
                          "figures/01_montage.png")),
    Step("02_train_model_a", ("models/model_a_seed{seed}.keras", "results/model_a_test.csv")),
    Step("03_gradcam_layers", ("figures/fig1_gradcam_layers.png", "results/faithfulness.csv")),
    Step("04_augmentations", ("artifacts/aug_pool_seed{seed}.npy", "artifacts/aug_pool_seed{seed}.csv",
                              "artifacts/fig2_examples.npz", "figures/fig2_augmentation.png")),
    Step("05_train_model_b", ("models/model_b_seed{seed}.keras",)),
    Step("06_cohort_evaluation", ("results/cohorts.csv", "results/mcnemar.csv", "results/severity.csv",
                                  "results/results_table.md", "figures/fig3_a_wrong_b_right.png",
                                  "figures/fig2_augmentation_a_vs_b.png")),
)


@dataclass
class Run:
    """A run folder and its config; what notebooks use to find their inputs and place outputs."""

    root: Path
    config: StudyConfig

    def __post_init__(self):
        self.root = Path(self.root)
        for sub in ("notebooks", "figures", "results", "models", "artifacts", "steps"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # folders
    figures = property(lambda self: self.root / "figures")
    results = property(lambda self: self.root / "results")
    models = property(lambda self: self.root / "models")
    artifacts = property(lambda self: self.root / "artifacts")

    @property
    def seeds(self) -> list[int]:
        return [self.config.seed + k for k in range(max(1, self.config.n_seeds))]

    def model_path(self, which: str, seed: int) -> Path:
        return self.models / f"model_{which}_seed{seed}.keras"

    def savefig(self, fig, name: str) -> None:
        """Write ``figures/<name>.png``; in a notebook the figure is also shown below the cell."""
        from knee_tf.plots import savefig

        savefig(fig, name, self.figures)

    def write_json(self, rel: str, obj) -> None:
        atomic_write_text(self.root / rel, json.dumps(obj, indent=2, default=str) + "\n")

    def write_csv(self, rel: str, df) -> None:
        from knee_tf.io import atomic_write_csv

        atomic_write_csv(self.root / rel, df)

    def write_text(self, rel: str, text: str) -> None:
        atomic_write_text(self.root / rel, text)

    def save_arrays(self, rel: str, **arrays) -> None:
        """Write NumPy arrays (numbers or strings, no pickles) to ``rel`` (.npz), atomically."""
        import numpy as np

        from knee_tf.io import atomic_path

        with atomic_path(self.root / rel, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)

    def load_arrays(self, rel: str) -> dict:
        """The arrays :meth:`save_arrays` wrote, as a dict."""
        import numpy as np

        path = self.root / rel
        if not path.exists():
            raise InputError(f"{path}: missing; run the step that writes it first (see knee_tf.study.STEPS)")
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def read_json(self, rel: str):
        path = self.root / rel
        if not path.exists():
            raise InputError(f"{path}: missing; run the step that writes it first (see knee_tf.study.STEPS)")
        return json.loads(path.read_text())

    def load_ingest(self):
        """The IngestResult that notebook 01 cached (read back from disk, never recomputed here)."""
        from knee_tf.ingest import ingest

        info = self.read_json("artifacts/ingest.json")
        return ingest(info["manifest"], info["root"], cache_dir=info["cache_dir"], image_size=info["image_size"],
                      on_error=info["on_error"], workers=self.config.n_workers, progress=False)

    def expected_outputs(self, step: Step) -> list[Path]:
        out = []
        for rel in step.outputs:
            out += [self.root / rel.format(seed=s) for s in self.seeds] if "{seed}" in rel else [self.root / rel]
        return out


def open_run(run_dir: str | Path = "", config: str | StudyConfig = "default", create: bool = False) -> Run:
    """The run a notebook works in.

    run_dir given: that folder; its config.json (if any) wins over ``config``.
    run_dir empty: with ``create`` a new ``runs/<timestamp>-<name>/``; otherwise the newest run folder
    (so a person can step through notebooks 02-06 after running 01 by hand).
    """
    if run_dir:
        root = resolve(run_dir)
    elif create:
        cfg = get_config(config)
        root = RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    else:
        runs = sorted(p for p in RUNS_DIR.glob("*") if (p / "config.json").exists())
        if not runs:
            raise InputError("no run folder under runs/: run notebook 01 (or `knee-tf study`) first")
        root = runs[-1]
    cfg_file = root / "config.json"
    if cfg_file.exists():
        cfg = StudyConfig.load(cfg_file)
    else:
        cfg = get_config(config)
        root.mkdir(parents=True, exist_ok=True)
        cfg.save(cfg_file)
    return Run(root, cfg)


def ensure_dataset(cfg: StudyConfig, progress: bool = True) -> Path:
    """Generate the synthetic default dataset under ``cfg.data_root`` if its manifest is missing.

    A user manifest (``cfg.manifest`` set) is never generated, only checked to exist.
    """
    manifest = cfg.manifest_path
    if manifest.exists():
        return manifest
    if cfg.manifest:
        raise InputError(f"{manifest}: manifest not found")
    from knee_tf.phantom import synthesize

    synthesize(resolve(cfg.data_root), n_exams=cfg.n_exams, seed=cfg.synth_seed, image_size=cfg.synth_image_size,
               metal_fraction=cfg.metal_fraction, workers=cfg.n_workers, progress=progress)
    return manifest


def _step_done(run: Run, step: Step) -> bool:
    return (run.root / "steps" / f"{step.name}.done").exists() and all(p.exists() for p in run.expected_outputs(step))


def run_study(config: str | StudyConfig = "default", seeds: int | None = None, out: str | Path | None = None,
              steps: tuple[str, ...] | None = None, log=print) -> Run:
    """Execute the notebooks into a run folder; return the Run.

    out=None: resume the newest unfinished run of the same config under runs/, else start a new one;
    afterwards copy figures/ and results/ to the repository's top level.
    """
    import papermill as pm

    cfg = get_config(config)
    if seeds is not None:
        cfg = cfg.replace(n_seeds=seeds)
    if out is None:
        root = _resumable(cfg) or RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    else:
        root = resolve(out)
    if (root / "config.json").exists() and StudyConfig.load(root / "config.json") != cfg:
        raise InputError(f"{root}: holds a run with a different config; choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    cfg.save(root / "config.json")
    run = Run(root, cfg)
    log(f"run folder: {root}")
    ensure_dataset(cfg)

    rerun_rest = False
    for step in STEPS:
        if steps is not None and step.name not in steps:
            continue
        marker = root / "steps" / f"{step.name}.done"
        if not rerun_rest and _step_done(run, step):
            log(f"[{step.name}] done earlier, skipped")
            continue
        rerun_rest = True
        marker.unlink(missing_ok=True)
        t0 = time.perf_counter()
        log(f"[{step.name}] running ...")
        executed = root / "notebooks" / f"{step.name}.ipynb"
        try:
            pm.execute_notebook(
                str(NOTEBOOK_DIR / f"{step.name}.ipynb"), str(executed),
                parameters={"config": str(root / "config.json"), "run_dir": str(root)},
                kernel_name="python3", progress_bar=False, log_output=False, cwd=str(REPO_ROOT),
                stdout_file=sys.stdout, stderr_file=None,
            )
        except pm.PapermillExecutionError as e:
            raise StepFailed(f"[{step.name}] failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                             f"(executed notebook: {executed})") from None
        missing = [str(p.relative_to(root)) for p in run.expected_outputs(step) if not p.exists()]
        if missing:
            raise RuntimeError(f"[{step.name}] finished but did not write: {', '.join(missing)}")
        atomic_write_text(marker, json.dumps({"seconds": round(time.perf_counter() - t0, 1),
                                              "outputs": [str(p.relative_to(root))
                                                          for p in run.expected_outputs(step)]}, indent=2))
        log(f"[{step.name}] finished in {time.perf_counter() - t0:.0f} s")
    if out is None and cfg.name != "smoke":  # smoke figures never replace the published ones
        publish(run)
    return run


def _resumable(cfg: StudyConfig) -> Path | None:
    for p in sorted(RUNS_DIR.glob(f"*-{cfg.name}"), reverse=True):
        if (p / "config.json").exists() and StudyConfig.load(p / "config.json") == cfg:
            if not all(_step_done(Run(p, cfg), s) for s in STEPS):
                return p
            return None
    return None


def publish(run: Run) -> None:
    """Copy a finished run's figures and results to the top-level figures/ and results/."""
    for sub in ("figures", "results"):
        dst = REPO_ROOT / sub
        dst.mkdir(exist_ok=True)
        for f in sorted((run.root / sub).glob("*")):
            if f.is_file():
                shutil.copy2(f, dst / f.name)


def environment_report() -> dict:
    """Versions that decide whether a result can be reproduced; printed by every notebook's setup cell."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("knee-tf", "tensorflow-cpu", "tensorflow", "keras", "tf-keras-vis", "numpy", "pandas", "pydicom",
                "scipy", "statsmodels"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out

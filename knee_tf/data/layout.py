"""The run folder as one contract: every file a run holds is named here, and only here.

A run folder (``runs/<timestamp>-<config>/`` unless ``--out`` names one)::

    config.json                       the StudyConfig every notebook of this run reads
    notebooks/NN_*.ipynb              executed copies of the notebooks
    steps/NN_*.done                   written when a step finished; lists the outputs it promised
    artifacts/ingest.json             the ingest record: where notebook 01's decoded arrays live
    artifacts/aug_pool_seed<S>.npy    the augmented training pool of seed S (float16 (M, H, W, 1))
    artifacts/aug_pool_seed<S>.csv    its provenance (one row per augmented image)
    artifacts/fig2_examples.npz       Figure 2's images, maps and augmented copies (notebook 04 -> 06)
    artifacts/aug_dicom/              augmented images exported as derived DICOM
    models/model_<arm>_seed<S>/       one folder per (arm, seed), written whole by one grid job (knee_tf.controls.training_job):
        model.keras                     the trained model; arms are strings ("A", "B", "A_steps", ...)
        training_log.csv                its per-epoch log
        tensorboard/                    its TensorBoard event files
        predictions.parquet             its per-image predictions on every test cohort
        job.json                        written last: the job, its settings and where and how it ran
    results/*.csv, *.json, *.md       tables (what the paper reports, and more)
    results/prediction_store.parquet  the prediction store: every (arm, seed, condition)'s per-image predictions
    (in the repository, results/grid/model_<name>_seed<S>/ holds each published grid job: PublishedGrid)
    figures/*.png                     figures
    html/index.html, html/NN_*.html   the executed notebooks rendered as static pages (knee-tf html)

Notebooks, the runner and :mod:`knee_tf.study.experiment` ask a :class:`RunLayout` for a path; none builds
one from a string. A new output is one line here; a new arm (e.g. ``"A_steps"``, ``"B_random"``)
needs no code at all: :meth:`RunLayout.model` takes any arm name.
"""

from __future__ import annotations

from pathlib import Path

#: The sub-folders of every run folder.
FOLDERS: tuple[str, ...] = ("notebooks", "steps", "artifacts", "models", "results", "figures")

#: Figures, by the attribute name of their path: ``layout.figure_<key>``.
FIGURES: dict[str, str] = {
    "counts": "01_counts",
    "montage": "01_montage",
    "montage_sites": "01_montage_sites",
    "intensity_per_site": "01_intensity_per_site",
    "learning_curves_a": "02_learning_curves",
    "confusion_a": "02_confusion_model_a",
    "gradcam_layers": "fig1_gradcam_layers",
    "faithfulness_curves": "03_faithfulness_curves",
    "augmentation": "fig2_augmentation",
    "premise_dose_response": "04_premise_dose_response",
    "premise_deletion": "04_premise_deletion",
    "learning_curves_a_vs_b": "05_learning_curves_a_vs_b",
    "augmentation_a_vs_b": "fig2_augmentation_a_vs_b",
    "a_wrong_b_right": "fig3_a_wrong_b_right",
    "severity": "06_severity",
    "forest": "07_forest",
    "ablations": "07_ablations",
    "learning_curve_exams": "07_learning_curve",
    "prescription": "07_prescription",
}
#: Result tables, by attribute name.
RESULTS: dict[str, str] = {
    "linear_baseline": "linear_baseline.json",
    "model_a_test": "model_a_test.csv",
    "faithfulness": "faithfulness.csv",
    "premise_dose_response": "premise_dose_response.csv",  # notebook 04: Model A fooled by its own masks?
    "predictions": "predictions.csv",
    "cohorts": "cohorts.csv",
    "mcnemar": "mcnemar.csv",
    "severity_table": "severity.csv",
    "breakdown_plane": "breakdown_plane.csv",
    "breakdown_site": "breakdown_site.csv",
    "results_table": "results_table.md",
    # the controls study (issue 11): every (arm, seed, condition)'s per-image predictions, and the
    # tables recomputed from them (knee_tf.controls.prediction_store.recompute_tables)
    "prediction_store": "prediction_store.parquet",
    "arms_table": "arms.csv",
    "effects_table": "effects.csv",
    "prescription_table": "prescription.csv",
}
#: The results a publish copies to the repository's results/: all but the prediction store, which
#: grows with the grid (18 MB for 85 jobs) and is rebuilt from the published jobs in results/grid/
#: (knee_tf.controls.summary.published_store) by `knee-tf controls` and by the test of the tables.
PUBLISHED_RESULTS: tuple[str, ...] = tuple(k for k in RESULTS if k != "prediction_store")
#: The files of one model folder (``models/model_<arm>_seed<S>/``), by the RunLayout method naming each.
MODEL_FILES: dict[str, str] = {
    "model": "model.keras",
    "training_log": "training_log.csv",
    "tensorboard": "tensorboard",
    "predictions": "predictions.parquet",
    "job_record": "job.json",
}
#: A synthetic data folder (``knee-tf synth --out <folder>``, the default ``data/synthetic/``): the
#: manifest, ``dicom/<site>/<exam>/IM<k>.dcm``, and the record of what made them, written last
#: (knee_tf.phantom.synth.synth_record), so a folder made by other settings or another phantom is
#: recognised and generated again instead of being used as if it were the configured data.
DATA_MANIFEST = "data_manifest.csv"
SYNTH_RECORD = "synth.json"
#: Files of the repository's top level that record a published run (see knee_tf.study.pipeline.publish).
PUBLISHED_RECORD = "published.json"
#: The published grid (knee_tf.controls.publish): ``<top>/results/grid/model_<name>_seed<S>/``, one folder per
#: finished grid job, committed to the repository so that a grid advances across sessions.
PUBLISHED_GRID = "grid"
#: The shipped models: the weights of published grid jobs (``<top>/results/models/``), small enough for git.
PUBLISHED_MODELS = "models"
#: The files of one published job, by the PublishedGrid method naming each (no model: too big for git).
PUBLISHED_JOB_FILES: dict[str, str] = {
    "predictions": "predictions.parquet",  # the job's rows in the prediction store's schema (zstd)
    "training_log": "training_log.csv",  # the run folder's training log, as it is
    "job_record": "job.json",  # the run folder's job record with settings, data digest and code commit
}
#: Added to a published job's folder later, once the models that make its cross cohorts (``cam_transfer``,
#: ``cam_b``: other jobs' maps) are at hand in one run folder (knee_tf.controls.publish.publish_cross).
PUBLISHED_CROSS_FILES: dict[str, str] = {
    "cross_predictions": "cross_predictions.parquet",  # the job's rows on cam_transfer and cam_b (store schema)
    "cross_record": "cross.json",  # which published jobs' maps made those cohorts, and the code commit
}


#: The files of a ``knee-tf prescribe`` output folder (knee_tf.yourdata.prescribe), by what each holds.
PRESCRIBE_FILES: dict[str, str] = {
    "ranges": "slice_ranges.csv",  # one row per exam, series and plane: the relevant range
    "slices": "slices.csv",  # every slice in range order, its position along the normal and p_relevant
    "predictions": "slice_predictions.csv",  # as `knee-tf predict` writes them
    "manifest": "manifest.csv",  # from a folder: what scan took (scan_report.csv beside it)
    "figures": "exams",  # <exam_id>.png
}


class RunLayout:
    """Every path of one run folder. Creating a layout touches nothing; :meth:`create` makes the folders.

    Attributes ``figure_<key>`` (see :data:`FIGURES`) and ``<key>`` of :data:`RESULTS` are the
    figure and table paths; the methods name the per-seed and per-(arm, seed) files.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    def __getattr__(self, name: str) -> Path:
        if name.startswith("figure_") and name[len("figure_"):] in FIGURES:
            return self.figures / f"{FIGURES[name[len('figure_'):]]}.png"
        if name in RESULTS:
            return self.results / RESULTS[name]
        raise AttributeError(f"RunLayout has no file {name!r}")

    def create(self) -> RunLayout:
        for sub in FOLDERS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    # ---------------------------------------------------------------- folders
    notebooks = property(lambda self: self.root / "notebooks")
    steps = property(lambda self: self.root / "steps")
    artifacts = property(lambda self: self.root / "artifacts")
    models = property(lambda self: self.root / "models")
    results = property(lambda self: self.root / "results")
    figures = property(lambda self: self.root / "figures")

    # ---------------------------------------------------------------- run-level files
    config = property(lambda self: self.root / "config.json")
    ingest_record = property(lambda self: self.artifacts / "ingest.json")
    fig2_examples = property(lambda self: self.artifacts / "fig2_examples.npz")
    aug_dicom = property(lambda self: self.artifacts / "aug_dicom")

    def executed_notebook(self, step: str) -> Path:
        return self.notebooks / f"{step}.ipynb"

    def step_marker(self, step: str) -> Path:
        return self.steps / f"{step}.done"

    # ---------------------------------------------------------------- rendered pages (knee_tf.study.html)
    html = property(lambda self: self.root / "html")
    html_index = property(lambda self: self.html / "index.html")

    def html_page(self, step: str) -> Path:
        """The static page of one executed notebook."""
        return self.html / f"{step}.html"

    # ---------------------------------------------------------------- per seed, per (arm, seed)
    def aug_pool_images(self, seed: int) -> Path:
        return self.artifacts / f"aug_pool_seed{int(seed)}.npy"

    def aug_pool_provenance(self, seed: int) -> Path:
        return self.artifacts / f"aug_pool_seed{int(seed)}.csv"

    @staticmethod
    def model_name(arm: str, seed: int) -> str:
        """``model_<arm>_seed<S>`` (arm lower-cased): the stem of a model's files and logs."""
        arm = str(arm)
        if not arm or not all(c.isalnum() or c == "_" for c in arm):
            raise ValueError(f"arm must be a non-empty name of letters, digits and '_'; got {arm!r}")
        return f"model_{arm.lower()}_seed{int(seed)}"

    @staticmethod
    def parse_model_name(name: str) -> tuple[str, int] | None:
        """``model_<arm>_seed<S>`` -> (arm as lower-cased in the name, S); None for any other name."""
        if not name.startswith("model_") or "_seed" not in name:
            return None
        arm, seed = name[len("model_"):].rsplit("_seed", 1)
        return (arm, int(seed)) if arm and seed.isdigit() else None

    def model_dir(self, arm: str, seed: int) -> Path:
        """The folder of one (arm, seed): a grid job moves it into place whole (see :data:`MODEL_FILES`)."""
        return self.models / self.model_name(arm, seed)

    def model(self, arm: str, seed: int) -> Path:
        return self.model_dir(arm, seed) / MODEL_FILES["model"]

    def training_log(self, arm: str, seed: int) -> Path:
        """The CSV log :func:`knee_tf.core.model.train_classifier` writes next to the model."""
        return self.model_dir(arm, seed) / MODEL_FILES["training_log"]

    def tensorboard(self, arm: str, seed: int) -> Path:
        """The TensorBoard event folder of one model's training."""
        return self.model_dir(arm, seed) / MODEL_FILES["tensorboard"]

    def grid_predictions(self, arm: str, seed: int) -> Path:
        """Per-image predictions of one model on every test cohort (schema: :mod:`knee_tf.controls.training_job`)."""
        return self.model_dir(arm, seed) / MODEL_FILES["predictions"]

    def job_record(self, arm: str, seed: int) -> Path:
        """Written last by a grid job: its presence marks the (arm, seed) folder complete."""
        return self.model_dir(arm, seed) / MODEL_FILES["job_record"]

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))


class PublishedGrid:
    """Every path of the published grid folder (``<top>/results/grid``, :func:`published_grid`).

    One folder per finished job, named as the run folder's model folder, moved into place whole
    (:func:`knee_tf.core.io.atomic_dir`): a folder that exists is complete. Files: :data:`PUBLISHED_JOB_FILES`,
    and later :data:`PUBLISHED_CROSS_FILES` (the predictions file written last: when it exists, both do).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"PublishedGrid({str(self.root)!r})"

    def job_dir(self, name: str, seed: int) -> Path:
        return self.root / RunLayout.model_name(name, seed)

    def predictions(self, name: str, seed: int) -> Path:
        return self.job_dir(name, seed) / PUBLISHED_JOB_FILES["predictions"]

    def training_log(self, name: str, seed: int) -> Path:
        return self.job_dir(name, seed) / PUBLISHED_JOB_FILES["training_log"]

    def job_record(self, name: str, seed: int) -> Path:
        return self.job_dir(name, seed) / PUBLISHED_JOB_FILES["job_record"]

    def cross_predictions(self, name: str, seed: int) -> Path:
        return self.job_dir(name, seed) / PUBLISHED_CROSS_FILES["cross_predictions"]

    def cross_record(self, name: str, seed: int) -> Path:
        return self.job_dir(name, seed) / PUBLISHED_CROSS_FILES["cross_record"]

    def records(self) -> list[Path]:
        """The job records of every published job, sorted by folder name."""
        return sorted(self.root.glob(f"model_*/{PUBLISHED_JOB_FILES['job_record']}"))


def check_grid_name(name: str) -> str:
    """``name`` if it can name a published grid (:func:`published_grid`): empty, or letters, digits and ``_``."""
    if name and not (name.replace("_", "").isalnum() and name.isascii()):
        raise ValueError(f"a published grid's name is letters, digits and '_' (a folder of results/); got {name!r}")
    return name


def published_grid(top: str | Path, name: str = "") -> PublishedGrid:
    """The published grid of the repository (or a copy of it) at ``top``: ``top``/results/grid, the full-data
    grid; or, for a config that publishes apart (``StudyConfig.publish_grid_as``, e.g. the operating-point
    grid ``paper_point``), ``top``/results/<name>/grid, whose job folders may share the full grid's names."""
    results = Path(top) / "results"
    return PublishedGrid((results / check_grid_name(name) if name else results) / PUBLISHED_GRID)


def published_weights(top: str | Path, job_name: str, seed: int) -> Path:
    """The shipped weights of the published grid job ``job_name`` (an arm) and ``seed``:
    ``top``/results/models/model_<name>_seed<S>.weights.h5 (the job folder's name, plus Keras' suffix)."""
    folder = RunLayout(top).model_name(job_name, seed)
    return Path(top) / "results" / PUBLISHED_MODELS / f"{folder}.weights.h5"


def published_path(top: str | Path, folder: str, file: str, name: str = "") -> Path:
    """Where a published run's ``file`` of its ``folder`` (``figures`` or ``results``) goes: ``top``/folder/file,
    or ``top``/folder/<name>/file for a config that publishes apart (``StudyConfig.publish_grid_as``)."""
    base = Path(top) / folder
    return (base / check_grid_name(name) if name else base) / file


def published_record(top: str | Path, name: str = "") -> Path:
    """The record of the run published to ``top``/figures and ``top``/results (or their ``name`` folders)."""
    return published_path(top, "results", PUBLISHED_RECORD, name)

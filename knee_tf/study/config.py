"""One source of study settings, shared by the CLI and every notebook.

``StudyConfig`` is frozen: change a setting with ``dataclasses.replace(cfg, epochs=5)`` or
``cfg.replace(epochs=5)``; never mutate it. ``StudyConfig.smoke()`` is the tiny variant that the
test suite and CI run end to end in seconds to minutes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from knee_tf.core.io import atomic_write_text
from knee_tf.core.vocab import (
    A_STEPS,
    B_KEEP,
    B_RANDOM,
    B_UNTRAINED,
    ERASING,
    GRADCAM,
    MODEL_A,
    MODEL_B,
    MRI_AUG,
    STUDY_CAM_METHODS,
    check_cam_methods,
)
from knee_tf.data.layout import DATA_MANIFEST, check_grid_name
from knee_tf.phantom.appearance import check as check_appearance
from knee_tf.phantom.difficulty import Difficulty

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_ENV = "KNEE_TF_SMOKE"  # "1": "default" means StudyConfig.smoke() (short CI runs)

@dataclass(frozen=True)
class StudyConfig:
    """Every knob of the study. Paths are relative to the repository root unless absolute."""

    # --- the run ---
    name: str = "default"  # printed in run folders and reports

    # --- synthetic default dataset (knee_tf.phantom) ---
    data_root: str = "data/synthetic"  # manifest paths are relative to it (the synthetic data is written here)
    n_exams: int = 513  # exams of the synthetic dataset (513: the paper's exam count)
    synth_seed: int = 0  # seeds anatomy, acquisition, labels, splits and UIDs (nothing else)
    synth_matrix: int = 256  # scanner acquisition matrix of the synthetic DICOM (GE localizer: 256)
    metal_fraction: float = 0.10  # share of exams with a metal implant (all go to test, cohort 2)
    # difficulty of the phantom (knee_tf.phantom.difficulty.Difficulty; chosen with Model A alone,
    # docs/calibration.md)
    synth_texture: float = 1.5  # strength of the tissue textures (0: piecewise-constant tissues)
    synth_snr_scale: float = 0.55  # multiplies every site's reference SNR
    synth_hard_share: float = 0.6  # share of exams drawn with a hard configuration (knee off-centre, other knee close)
    synth_annotator_spread: float = 0.35  # annotators' boundary offsets: uniform in +- spread x slice spacing
    synth_quality_shift_mm: float = 2.0  # how far a poor-quality series pulls an annotator's boundary inwards (mm)
    synth_ghost_probability: float = 0.3  # share of series planes with motion / pulsation ghosts
    synth_appearance: str = "v2"  # how the phantom looks (knee_tf.phantom.appearance): v2 the published default, v3 the candidate of issue 28; labels never depend on it

    # --- ingest (knee_tf.data.ingest) ---
    manifest: str = ""  # the data manifest CSV; empty: <data_root>/data_manifest.csv
    cache_dir: str = "data/cache"  # where ingest keeps decoded, preprocessed arrays, keyed by content hash
    image_size: int = 128  # model input is image_size x image_size x 1 (every DICOM is resized to it)
    on_error: str = "fail"  # "fail": stop and list every bad row; "skip": ingest the good rows, list the rest
    workers: int = 0  # decoding / synthesis processes; 0 = all cores

    # --- model (knee_tf.core.model) ---
    conv_filters: tuple[int, ...] = (16, 32, 64, 64)  # filters of each conv block, one block per entry (block K ends in poolK)
    dense_units: tuple[int, ...] = (120, 84)  # LeNet's fully connected layers
    epochs: int = 25  # upper bound; early stopping on val loss usually ends sooner
    batch_size: int = 64  # images per training step
    learning_rate: float = 1e-3  # Adam's learning rate
    patience: int = 5  # early-stopping patience (epochs without val-loss improvement)
    seed: int = 0  # training seed of the first run; further seeds are seed+1, seed+2, ...
    # "auto": bfloat16 where the CPU has AMX / AVX-512 BF16 or a GPU supports it, else float32
    # (knee_tf.core.precision). Softmax and loss stay float32; CAMs are always float32.
    # "auto" is the default because Model A's accuracy agrees in both (results/precision.csv, docs/performance.md).
    precision: str = "auto"  # training precision: "float32" | "mixed_bfloat16" | "auto"

    # --- the experiment grid (knee_tf.controls.grid) ---
    scheduler: str = ""  # "tcp://HOST:PORT" of an existing Dask scheduler; "": run on this machine
    # `knee-tf grid` takes --workers N instead (0 = one per CPU core, 1 = in this process: docs/cli.md). 0 by default: the study has one to three jobs
    # per notebook, two workers ran two trainings only 1.12x sooner on 2 cores, and every worker process
    # holds its own TensorFlow and training arrays (the peak memory of `make study`, docs/performance.md). The full
    # grid uses a LocalCluster.
    grid_workers: int = 0  # notebooks 02, 05, 07 without a scheduler: -1 one worker per CPU, N workers, 0 in-process
    # "run" trains them into the run folder and reads them there; "published" reads the jobs published
    # to results/grid/ (`knee-tf grid --publish`), a partial grid reported as partial, with
    # cam_transfer / cam_b rows where they are published beside a job
    # "published" (the default, make study): the published grid's jobs, with this run's own A and B
    # checked against them byte for byte; "run" (make study CONTROLS=train) trains them into the run
    controls_source: str = "published"  # where notebook 07 takes its jobs from: "published" | "run"
    # Results are bit-identical between runs with the same thread count: set 1 for identity across machines.
    job_threads: int = 0  # TensorFlow threads per training job; 0 = TensorFlow's default (all cores)

    # --- activation maps (knee_tf.core.cam) ---
    cam_layers: tuple[str, ...] = ("pool1", "pool2", "pool3", "pool4")  # layers notebook 03 compares
    # registered names (knee_tf.core.vocab.CAM_METHODS); an unknown one is an error naming them
    cam_methods: tuple[str, ...] = STUDY_CAM_METHODS  # map methods: notebook 03 and the augmented pool
    cam_batch_size: int = 256  # images per CAM forward + backward pass
    predict_batch_size: int = 256  # images per inference batch (predictions, faithfulness curves)
    n_faithfulness: int = 300  # test images scored by the deletion/insertion curves (notebook 03)
    faithfulness_steps: int = 10  # points per curve beyond the first (pixel fractions 0, 0.1, ..., 1)
    n_premise: int = 400  # test images of notebook 04's premise dose-response, seeded (bench/premise.py: all)

    # --- augmentation (knee_tf.core.augment) ---
    aug_layer: str = "pool4"  # layer whose maps mask the training images (the paper's; notebook 03 asks if it is best)
    aug_variants: int = 1  # augmented copies per training image
    aug_weight_range: tuple[float, float] = (0.5, 1.0)  # severity w of image * (1 - w * M)
    aug_smooth_sigma: float = 0.0  # optional Gaussian smoothing of the map, in pixels
    aug_threshold: float = 0.0  # optional: zero map values below this before masking
    n_dicom_export: int = 12  # augmented images written as derived DICOM (notebook 04)

    # --- evaluation (knee_tf.study.evaluate, knee_tf.study.corrupt) ---
    cohort3_weight: float = 0.9  # fixed severity of Model A's inverted-Grad-CAM test corruption
    cohort3_method: str = GRADCAM  # map method of that corruption (cohort 3; maps at aug_layer)
    # cam_hard, a second cohort 3 (docs/premise.md; docs/analysis_plan.md, amendment 1): the same maps with the mask
    # smoothed and thresholded before image * (1 - w * M); declared for paper_point. Ignored while the weight is 0.
    cam_hard_weight: float = 0.0  # w of the cam_hard cohort; 0 = no cam_hard cohort
    cam_hard_smooth_sigma: float = 8.0  # Gaussian smoothing of cam_hard's map, in pixels of the model input
    cam_hard_threshold: float = 0.4  # cam_hard's map values below this are zeroed
    n_bootstrap: int = 2000  # bootstrap resamples of each accuracy's confidence interval
    n_bootstrap_effects: int = 10_000  # two-level resamples of each row of the controls' effects and arms tables (docs/analysis_plan.md)
    ece_bins: int = 15  # probability bins of the expected calibration error
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)  # severities of the held-out corruptions of the test images
    corruption_seed: int = 0  # seeds the held-out corruptions of the test images (nothing else)
    n_figure3_per_cohort: int = 2  # Figure 3: images per cohort that A gets wrong and B right
    n_seeds: int = 1  # training seeds per model; committed results use >= 3

    # --- teaching (notebooks/00_tour, knee_tf.teach.exercises) ---
    reveal_answers: bool = False  # exercise checks also print the answer computed from the run

    # --- the controls study (notebook 07, knee_tf.controls.arms, knee_tf.controls.effects) ---
    # names from knee_tf.controls.arms.ARMS, the table of arms
    grid_arms: tuple[str, ...] = (MODEL_A, MODEL_B, A_STEPS, B_RANDOM)  # arms notebook 07 compares; empty: every registered arm
    n_seeds_other: int = 0  # seeds of arms without main_seeds (knee_tf.controls.arms; 0: n_seeds); the issue asks >= 5
    learning_curve_exams: tuple[int, ...] = ()  # A and B also trained on this many training exams (empty: none)
    train_exams: int = 0  # train on this many whole training exams (0: all); set per job by the learning curve
    subset_seed: int = 0  # seeds the order in which the learning curve takes training exams (nothing else)
    # -1 by default: one training fewer, so that `make study` stays short; the full grid has it
    transfer_seed: int = -1  # seed of the independent Model A whose maps make cam_transfer; -1: no cam_transfer
    # "": results/grid (the full-data grid); a name: results/<name>/grid (knee_tf.data.layout.published_grid)
    publish_grid_as: str = ""  # which published grid `knee-tf grid --publish` and notebook 07 use

    def __post_init__(self):
        if isinstance(self.cam_methods, str):
            raise ValueError(f"cam_methods must be a tuple of method names, e.g. ({self.cam_methods!r},)")
        check_cam_methods(self.cam_methods, "cam_methods")
        check_cam_methods(self.cohort3_method, "cohort3_method")
        check_appearance(self.synth_appearance)
        if not 0.0 <= self.cam_hard_weight <= 1.0:
            raise ValueError(f"cam_hard_weight must lie in [0, 1] (0: no cam_hard cohort); got {self.cam_hard_weight}")
        if self.cam_hard_smooth_sigma < 0 or not 0.0 <= self.cam_hard_threshold < 1.0:
            raise ValueError(f"cam_hard_smooth_sigma must be >= 0 and cam_hard_threshold in [0, 1); got "
                             f"{self.cam_hard_smooth_sigma} and {self.cam_hard_threshold}")
        check_grid_name(self.publish_grid_as)

    @classmethod
    def smoke(cls, **overrides) -> StudyConfig:
        """Tiny settings: a few exams, small images, one epoch. For tests and CI, not for results."""
        base = dict(
            name="smoke",
            data_root="data/smoke",
            n_exams=24,
            synth_matrix=128,
            image_size=64,
            conv_filters=(4, 8, 8, 8),
            dense_units=(16, 8),
            epochs=1,
            batch_size=32,
            patience=1,
            cam_batch_size=64,
            predict_batch_size=64,
            n_bootstrap=200,
            n_bootstrap_effects=200,
            precision="float32",  # fast and exact on any CPU
            grid_workers=0,  # in-process (also the default): no cluster start-up in tests and CI
            controls_source="run",  # nothing is published for the smoke settings: notebook 07 trains
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tour(cls, **overrides) -> StudyConfig:
        """The classroom tour (notebooks/00_tour): the whole method in about two minutes on a 2-core
        laptop, data generation included. Small enough to be quick, large enough that Model A
        learns the task, so the maps and the exercises mean something. Not for results."""
        base = dict(
            name="tour",
            data_root="data/tour",
            n_exams=48,
            synth_matrix=128,
            image_size=64,
            conv_filters=(8, 16, 16, 16),
            dense_units=(32, 16),
            epochs=12,
            batch_size=32,
            learning_rate=3e-3,
            patience=3,
            cam_batch_size=128,
            predict_batch_size=128,
            n_faithfulness=100,
            n_bootstrap=200,
            n_bootstrap_effects=200,
            severities=(1, 3, 5),
            controls_source="run",
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def full(cls, **overrides) -> StudyConfig:
        """The full controls grid of issue 11: every registered arm and ablation, 10 seeds of the arms with
        ``main_seeds`` (knee_tf.controls.arms) and 5 of the others, the learning curve on 25/50/100/200 exams and all."""
        base = dict(name="full", n_seeds=10, n_seeds_other=5, grid_arms=(),
                    learning_curve_exams=(25, 50, 100, 200), transfer_seed=1000, grid_workers=-1)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def paper_point(cls, **overrides) -> StudyConfig:
        """The operating-point grid of issue 27 (docs/analysis_plan.md): the default data with 100 whole training
        exams (the same exams for every arm and seed, ``subset_seed`` 0), the eight arms of the plan with 10 seeds
        of the main arms and 5 of the others, cam_transfer and cam_b, and the declared cam_hard cohort
        (w = 1, smoothing 8 px, threshold 0.4). Published apart from the full-data grid: results/paper_point/grid."""
        base = dict(name="paper_point", train_exams=100, subset_seed=0, n_seeds=10, n_seeds_other=5,
                    grid_arms=(MODEL_A, MODEL_B, A_STEPS, B_RANDOM, ERASING, B_UNTRAINED, B_KEEP, MRI_AUG),
                    transfer_seed=1000, cam_hard_weight=1.0, cam_hard_smooth_sigma=8.0, cam_hard_threshold=0.4,
                    grid_workers=-1, publish_grid_as="paper_point")
        base.update(overrides)
        return cls(**base)

    # ----- helpers -----
    def replace(self, **changes) -> StudyConfig:
        return dataclasses.replace(self, **changes)

    def synth_difficulty(self):
        """The ``synth_*`` difficulty fields as a :class:`knee_tf.phantom.difficulty.Difficulty`."""
        return Difficulty(texture=self.synth_texture, snr_scale=self.synth_snr_scale,
                          hard_share=self.synth_hard_share,
                          annotator_spread=self.synth_annotator_spread,
                          quality_shift_mm=self.synth_quality_shift_mm,
                          ghost_probability=self.synth_ghost_probability)

    def training_settings(self) -> dict:
        """The keyword arguments of :func:`knee_tf.core.model.train_classifier` this config sets (all but the seed)."""
        return {"conv_filters": self.conv_filters, "dense_units": self.dense_units, "epochs": self.epochs,
                "batch_size": self.batch_size, "learning_rate": self.learning_rate, "patience": self.patience,
                "precision": self.precision}

    def with_settings(self, assignments) -> StudyConfig:
        """A copy with ``["field=value", ...]`` applied (``knee-tf study --set``), each value parsed as
        JSON where it can be (``epochs=3``, ``severities=[1,3,5]``) and checked against the field's type.
        Raises ValueError naming the assignment that is wrong."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for item in assignments:
            name, sep, text = str(item).partition("=")
            name = name.strip()
            if not sep or name not in fields:
                raise ValueError(f"--set {item!r}: expected field=value with a StudyConfig field "
                                 f"(one of {', '.join(fields)})")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            changes[name] = _coerce(name, value, getattr(self, name), item)
        return self.replace(**changes)

    @property
    def manifest_path(self) -> Path:
        return resolve(self.manifest) if self.manifest else resolve(self.data_root) / DATA_MANIFEST

    @property
    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> StudyConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown StudyConfig field(s): {', '.join(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read config: {e}") from None
        return cls.from_dict(d)


def _coerce(name: str, value, current, item: str):
    """``value`` as the type of the field's current value, or ValueError naming ``item``."""
    if isinstance(current, tuple):
        if not isinstance(value, list):
            raise ValueError(f"--set {item!r}: {name} is a list, e.g. {name}={json.dumps(list(current))}")
        kinds = {type(v) for v in current}
        value = [_coerce(name, v, next(iter(kinds))(), item) for v in value] if kinds else value
        return tuple(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"--set {item!r}: {name} is true or false")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"--set {item!r}: {name} is an integer")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"--set {item!r}: {name} is a number")
        return float(value)
    return str(value)


#: the named configurations, for ``get_config`` and ``knee-tf config --preset``
PRESETS = {"default": StudyConfig, "smoke": StudyConfig.smoke, "tour": StudyConfig.tour, "full": StudyConfig.full,
           "paper_point": StudyConfig.paper_point}


def get_config(spec: str | StudyConfig | None = "default", **overrides) -> StudyConfig:
    """``"default"``, ``"smoke"``, ``"tour"``, ``"full"`` (the controls grid) or a path to a JSON file
    written by :meth:`StudyConfig.save`.

    With the environment variable ``KNEE_TF_SMOKE=1``, ``"default"`` means the smoke config: how
    notebooks run with their default parameters in CI (e.g. under nbmake) stay short.
    """
    if isinstance(spec, StudyConfig):
        cfg = spec
    elif spec in (None, "", "default"):
        cfg = StudyConfig.smoke() if os.environ.get(SMOKE_ENV, "") not in ("", "0") else StudyConfig()
    elif spec in PRESETS:
        cfg = PRESETS[spec]()
    else:
        cfg = StudyConfig.load(spec)
    return cfg.replace(**overrides) if overrides else cfg


def resolve(path: str | Path) -> Path:
    """A config path: absolute as given, relative to the repository root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p

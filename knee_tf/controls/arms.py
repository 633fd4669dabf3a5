"""The arms of the study, in one table: :data:`ARMS`, one :func:`register` entry per arm.

An arm is a way of making the training set of one model; everything else is the same for every
arm (architecture, settings, validation set = the normal validation split, seed protocol, test
cohorts), so arms differ only in what they train on. :data:`ARMS` maps an arm name to an
:class:`Arm`, in the order tables show them, and every list of arms derives from it: the arms of a
role (:func:`arm_names`), the full grid's plan and seeds (:func:`knee_tf.controls.grid.controls_plan`),
the comparisons (:func:`knee_tf.controls.grid.controls_comparisons`), the learning curves, the
ablation figure's panels (:func:`figure_panels`) and the order of every table's rows.

* ``training_set(data, model_a, cfg, seed) -> TrainingSet``: data is the run's
  :class:`knee_tf.data.ingest.IngestResult`; model_a the trained Model A of the same seed (and the same
  settings) when ``needs_model_a``, else None; cfg the job's StudyConfig; seed the training seed.
* ``needs_model_a``: whether the training set is made from Model A. The grid
  (:mod:`knee_tf.controls.grid`) then trains the A job of that seed first and hands its model over.

Registered: the paper's ``A`` (normal training images) and ``B`` (normal + the augmented pool made
from Model A's Grad-CAM and Grad-CAM++ maps at ``cfg.aug_layer``, inverted and weighted;
:func:`knee_tf.study.experiment.augmented_pool`), the controls of B at its budget and the ablations of
B. A further arm is one more entry and the code that makes its training set, e.g.::

    register(Arm("B_blur", blurred_training_set, needs_model_a=True, role=CONTROL, budget=SHARE,
                 description="normal + images blurred where B's masks are"))

It is then planned by the full grid, compared with its reference (and, as a control, with B), and
shown in every table in its place. Arm names that other modules need are constants in
:mod:`knee_tf.core.vocab`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knee_tf.controls.control_masks import MRI_AUG_CORRUPTIONS, control_pool
from knee_tf.core.arrays import PooledImages
from knee_tf.core.vocab import (
    A_STEPS,
    B_KEEP,
    B_RANDOM,
    B_UNTRAINED,
    ERASING,
    GRADCAM,
    GRADCAM_PP,
    METHOD_NAMES,
    MODEL_A,
    MODEL_B,
    MRI_AUG,
    NORMAL,
    TRAIN,
)
from knee_tf.study.experiment import augmented_pool, subsample_pool, training_exam_subset


@dataclass(frozen=True)
class TrainingSet:
    """What a model of one arm trains on: images float32 (N, H, W, 1) in [0, 1] (an array, or a
    :class:`knee_tf.core.arrays.PooledImages`: the normal images followed by a float16 pool), labels int32
    (N,); n_augmented: how many of the N are derived (augmented) images, for the job record."""

    images: np.ndarray | PooledImages
    labels: np.ndarray
    n_augmented: int = 0


#: An arm's role (:attr:`Arm.role`): one of the paper's two arms, a control of B at B's budget, or
#: an ablation of B (one setting changed).
STUDY, CONTROL, ABLATION = "study", "control", "ablation"
ROLES: tuple[str, ...] = (STUDY, CONTROL, ABLATION)


@dataclass(frozen=True)
class PanelPoint:
    """Where an arm is drawn in the ablation figure: in ``panel`` at ``position`` (0: leftmost), its
    setting written ``label`` below it."""

    panel: str
    position: int
    label: str


@dataclass(frozen=True)
class Arm:
    """One arm: its name, how its training set is built, and how the study uses it.

    role: :data:`STUDY`, :data:`CONTROL` or :data:`ABLATION` (tables group arms by it; B is compared
    with each control); reference: the arm it is compared with (effect = arm − reference), ``""``
    for the reference itself (A); budget: what the arm matches B in (``"same augmentation share"``: as
    many extra images per image as B, the same epoch budget; ``"same optimisation steps"``: as many
    steps per epoch as B); family: the arm whose kind of training images it shares (an ablation of B:
    ``"B"``; ``""``: itself), for the in-distribution flags (:func:`knee_tf.controls.effects.in_distribution`);
    mask_values_of: the arm whose mask values its training images reuse (``B_random`` and ``B_keep``
    move B's own masks, so B's masking transform with B's values makes their images): the cohorts in
    distribution for that arm's family are in distribution for this arm too; trains_on: the held-out corruptions (:data:`knee_tf.study.corrupt.CORRUPTIONS`) its training
    generator applies, which are then in distribution for it; main_seeds: planned with
    ``cfg.n_seeds`` seeds (the arms the issue asks at least 10 of), else ``cfg.n_seeds_other`` (at
    least 5); learning_curve: also trained on ``cfg.learning_curve_exams`` training exams (variants
    ``n<N>``, each compared with its reference's); panels: where the ablation figure draws it.
    """

    name: str
    training_set: Callable[..., TrainingSet]  # (data, model_a, cfg, seed) -> TrainingSet
    needs_model_a: bool
    description: str
    role: str
    reference: str = MODEL_A
    budget: str = ""
    family: str = ""
    mask_values_of: str = ""
    trains_on: tuple[str, ...] = ()
    main_seeds: bool = False
    learning_curve: bool = False
    panels: tuple[PanelPoint, ...] = ()


ARMS: dict[str, Arm] = {}


def register(arm: Arm) -> Arm:
    """Add ``arm`` to :data:`ARMS` (ValueError in one line naming the arm and what is wrong)."""
    if not arm.name or not arm.name.replace("_", "").isalnum():
        raise ValueError(f"arm {arm.name!r}: a name is letters, digits and '_'")
    if arm.name in ARMS:
        raise ValueError(f"arm {arm.name!r} is already registered")
    if arm.role not in ROLES:
        raise ValueError(f"arm {arm.name!r}: role {arm.role!r} is not one of {ROLES}")
    if arm.reference and arm.reference not in ARMS:
        raise ValueError(f"arm {arm.name!r}: its reference {arm.reference!r} is not registered (register it first)")
    if arm.family not in ("", arm.name, *ARMS):
        raise ValueError(f"arm {arm.name!r}: its family {arm.family!r} is not registered (register it first)")
    if arm.mask_values_of and arm.mask_values_of not in ARMS:
        raise ValueError(f"arm {arm.name!r}: the arm whose mask values it reuses, {arm.mask_values_of!r}, is not "
                         "registered (register it first)")
    taken = {(p.panel, p.position): name for name, a in ARMS.items() for p in a.panels}
    for p in arm.panels:
        if (p.panel, p.position) in taken:
            raise ValueError(f"arm {arm.name!r}: position {p.position} of panel {p.panel!r} is "
                             f"{taken[p.panel, p.position]!r}'s")
    ARMS[arm.name] = arm
    return arm


def get_arm(name: str) -> Arm:
    """The registered arm called ``name``, or a ValueError listing the known arms."""
    try:
        return ARMS[name]
    except KeyError:
        raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(ARMS)}") from None


def arm_names(*roles: str) -> tuple[str, ...]:
    """The registered arms (of these roles; none given: every one), in the order tables show them."""
    return tuple(name for name, a in ARMS.items() if not roles or a.role in roles)


def figure_panels() -> dict[str, list[tuple[str, str]]]:
    """The ablation figure's panels: {panel title: [(arm, setting label), ...] by position}, panels in the
    order the table first names them."""
    points: dict[str, list[tuple[int, str, str]]] = {}
    for name, a in ARMS.items():
        for p in a.panels:
            points.setdefault(p.panel, []).append((p.position, name, p.label))
    return {panel: [(name, label) for _, name, label in sorted(pts)] for panel, pts in points.items()}


def training_split(data, cfg):
    """The normal training split every arm starts from: (images, labels, index rows); only the first
    ``cfg.train_exams`` whole exams in ``cfg.subset_seed``'s order when that is set (the learning
    curve; :func:`knee_tf.study.experiment.training_exam_subset`)."""
    x, y, index = data.split(TRAIN, cohort=NORMAL)
    if cfg.train_exams:
        keep = training_exam_subset(index, cfg.train_exams, cfg.subset_seed)
        x, y, index = x[keep], y[keep], index[keep].reset_index(drop=True)
    return x, y, index


def normal_training_set(data, model_a, cfg, seed: int) -> TrainingSet:
    """Arm A: the normal training split as it is."""
    x, y, _ = training_split(data, cfg)
    return TrainingSet(x, y)


def augmented_training_set(data, model_a, cfg, seed: int) -> TrainingSet:
    """Arm B: the normal training split plus Model A's augmented pool of the same seed.

    The pool is rounded to float16, as notebook 04 stores it in the run folder
    (:func:`knee_tf.study.experiment.save_pool`), so the grid's B is the study's B.
    """
    x, y, index = training_split(data, cfg)
    pool_x, pool_y, _ = augmented_pool(model_a, x, y, index["image_id"], cfg, seed, progress=False, dtype=np.float16)
    return _with_pool(x, y, pool_x, pool_y)


#: pool images rounded to float16 per chunk in :func:`_with_pool` (bounds its temporary)
_ROUND_CHUNK = 1024


def _with_pool(x, y, pool_x, pool_y) -> TrainingSet:
    """Normal images followed by the pool's (rounded to float16, as the run folder stores pools).

    The images are a :class:`knee_tf.core.arrays.PooledImages`: ``x`` as it is (float32) and the pool kept
    as float16 (a float16 ``pool_x`` as it is, a float32 one rounded chunk by chunk), so that no float32 copy of either exists beside them (the
    rows are those of ``np.concatenate([x, pool_x.astype(float16)], dtype=float32)``).
    """
    x = np.asarray(x, dtype=np.float32)
    if pool_x.dtype == np.float16:  # made rounded (augmented_pool(dtype=np.float16)): kept as it is
        pool = pool_x
    else:
        pool = np.empty((len(pool_x),) + x.shape[1:], dtype=np.float16)
        for start in range(0, len(pool_x), _ROUND_CHUNK):
            pool[start:start + _ROUND_CHUNK] = np.asarray(pool_x[start:start + _ROUND_CHUNK], dtype=np.float16)
    return TrainingSet(PooledImages(x, pool), np.concatenate([y, pool_y]).astype(np.int32),
                       n_augmented=len(pool))


def steps_training_set(data, model_a, cfg, seed: int) -> TrainingSet:
    """Arm A_steps: the normal images twice per epoch, so that an epoch has as many optimisation
    steps as B's (normal + one copy per image) under the same epoch budget and early stopping."""
    x, y, _ = training_split(data, cfg)
    if cfg.aug_variants == 1:  # the images themselves as the "pool" (no float32 copy of them)
        return _with_pool(x, y, x, y)
    return _with_pool(x, y, np.concatenate([x] * cfg.aug_variants), np.concatenate([y] * cfg.aug_variants))


def control_training_set(arm: str):
    """A control arm's training set: the normal images plus :func:`knee_tf.controls.control_masks.control_pool`."""

    def build(data, model_a, cfg, seed: int) -> TrainingSet:
        x, y, index = training_split(data, cfg)
        pool_x, pool_y, _ = control_pool(arm, model_a, x, y, index["image_id"], cfg, seed, progress=False,
                                         dtype=np.float16)
        return _with_pool(x, y, pool_x, pool_y)

    return build


def ablation_training_set(settings: dict, share: float = 1.0, label_maps: bool = False):
    """An ablation of B: B's training set with ``settings`` (StudyConfig fields) changed for the pool
    only, an augmented ``share`` below one copy per image, or maps of the label. The run's other
    settings (the test cohorts among them) stay as they are."""

    def build(data, model_a, cfg, seed: int) -> TrainingSet:
        x, y, index = training_split(data, cfg)
        pool_cfg = cfg.replace(**settings)
        pool = augmented_pool(model_a, x, y, index["image_id"], pool_cfg, seed, progress=False, label_maps=label_maps,
                              dtype=np.float16)
        if share < 1:
            pool = subsample_pool(*pool, share=share, n_source=len(x), seed=seed)
        return _with_pool(x, y, pool[0], pool[1])

    return build


SHARE, STEPS = "same augmentation share", "same optimisation steps"
#: The ablation figure's panels: the setting of B that each changes.
LAYER, METHOD, WEIGHT_RANGE, AUGMENTED_SHARE, MAPS_OF = "layer", "method", "weight range", "augmented share", "maps of"

register(Arm(MODEL_A, normal_training_set, needs_model_a=False, role=STUDY, reference="",
             description="Model A: normal training images", budget="the reference", family=MODEL_A,
             main_seeds=True, learning_curve=True))
register(Arm(MODEL_B, augmented_training_set, needs_model_a=True, role=STUDY,
             description="Model B: normal + Grad-CAM/Grad-CAM++ (pool4) inverted and weighted copies",
             budget="the paper's arm", family=MODEL_B, main_seeds=True, learning_curve=True,
             panels=(PanelPoint(LAYER, 3, "pool4"), PanelPoint(METHOD, 2, "both"),
                     PanelPoint(WEIGHT_RANGE, 3, "0.5-1"), PanelPoint(AUGMENTED_SHARE, 2, "1"),
                     PanelPoint(MAPS_OF, 1, "prediction"))))
register(Arm(A_STEPS, steps_training_set, needs_model_a=False, role=CONTROL, budget=STEPS, family=A_STEPS,
             main_seeds=True, description="normal images, each twice per epoch: B's steps per epoch"))
for _name, _needs_a, _main, _masks_of, _trains_on, _what in (
        (B_RANDOM, True, True, MODEL_B, (),
         "B's masks rotated/flipped and shifted to a random position (same area, no saliency)"),
        (B_UNTRAINED, False, False, "", (), "masks from the Grad-CAM of the untrained LeNet (Model A's initial weights)"),
        (ERASING, True, True, "", (), "one rectangle per image with the pixel count of B's mask's mass"),
        (B_KEEP, True, False, MODEL_B, (),
         "B's masks placed off the salient region (top 20% of the map), which is never touched"),
        (MRI_AUG, False, False, "", MRI_AUG_CORRUPTIONS,
         "bias field, coil dropout or Rician noise (no longer held out for this arm)")):
    register(Arm(_name, control_training_set(_name), needs_model_a=_needs_a, role=CONTROL, budget=SHARE,
                 family=_name, mask_values_of=_masks_of, trains_on=_trains_on, main_seeds=_main, description=_what))
for _name, _settings, _share, _labels, _panel, _what in (
        ("B_pool1", {"aug_layer": "pool1"}, 1.0, False, PanelPoint(LAYER, 0, "pool1"), "maps at pool1"),
        ("B_pool2", {"aug_layer": "pool2"}, 1.0, False, PanelPoint(LAYER, 1, "pool2"), "maps at pool2"),
        ("B_pool3", {"aug_layer": "pool3"}, 1.0, False, PanelPoint(LAYER, 2, "pool3"), "maps at pool3"),
        ("B_gradcam", {"cam_methods": (GRADCAM,)}, 1.0, False, PanelPoint(METHOD, 0, METHOD_NAMES[GRADCAM]),
         f"{METHOD_NAMES[GRADCAM]} maps only"),
        ("B_gradcampp", {"cam_methods": (GRADCAM_PP,)}, 1.0, False, PanelPoint(METHOD, 1, METHOD_NAMES[GRADCAM_PP]),
         f"{METHOD_NAMES[GRADCAM_PP]} maps only"),
        ("B_w25_50", {"aug_weight_range": (0.25, 0.5)}, 1.0, False, PanelPoint(WEIGHT_RANGE, 0, "0.25-0.5"),
         "weights w in [0.25, 0.5]"),
        ("B_w50_75", {"aug_weight_range": (0.5, 0.75)}, 1.0, False, PanelPoint(WEIGHT_RANGE, 1, "0.5-0.75"),
         "weights w in [0.5, 0.75]"),
        ("B_w75_100", {"aug_weight_range": (0.75, 1.0)}, 1.0, False, PanelPoint(WEIGHT_RANGE, 2, "0.75-1"),
         "weights w in [0.75, 1.0]"),
        ("B_share0p25", {}, 0.25, False, PanelPoint(AUGMENTED_SHARE, 0, "0.25"), "one copy for a quarter of the images"),
        ("B_share0p5", {}, 0.5, False, PanelPoint(AUGMENTED_SHARE, 1, "0.5"), "one copy for half of the images"),
        ("B_share2", {"aug_variants": 2}, 1.0, False, PanelPoint(AUGMENTED_SHARE, 3, "2"), "two copies per image"),
        ("B_label_maps", {}, 1.0, True, PanelPoint(MAPS_OF, 0, "label"),
         "maps of the label instead of Model A's predicted class")):
    register(Arm(_name, ablation_training_set(_settings, _share, _labels), needs_model_a=True, role=ABLATION,
                 family=MODEL_B, budget="B with one setting changed", panels=(_panel,),
                 description=f"ablation of B: {_what}"))

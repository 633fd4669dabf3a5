"""The arms of the study: how each one builds its training set. One registry entry per arm.

An arm is a way of making the training set of one model; everything else is the same for every
arm (architecture, settings, validation set = the normal validation split, seed protocol, test
cohorts), so arms differ only in what they train on. :data:`ARMS` maps an arm name
(:mod:`knee_tf.core.vocab`) to an :class:`Arm`:

* ``training_set(data, model_a, cfg, seed) -> TrainingSet``: data is the run's
  :class:`knee_tf.data.ingest.IngestResult`; model_a the trained Model A of the same seed (and the same
  settings) when ``needs_model_a``, else None; cfg the job's StudyConfig; seed the training seed.
* ``needs_model_a``: whether the training set is made from Model A. The grid
  (:mod:`knee_tf.controls.grid`) then trains the A job of that seed first and hands its model over.

Registered: ``A`` (normal training images) and ``B`` (normal + the augmented pool made from
Model A's Grad-CAM and Grad-CAM++ maps at ``cfg.aug_layer``, inverted and weighted;
:func:`knee_tf.study.experiment.augmented_pool`). A control is one more entry, e.g.::

    register(Arm("B_random", needs_model_a=False, training_set=random_mask_training_set,
                 description="normal + images masked with random maps of the same area"))

with its name added to :data:`knee_tf.core.vocab.ARM_NAMES` and its mask function next to the others
(:mod:`knee_tf.core.augment`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knee_tf.controls.control_masks import control_pool
from knee_tf.core.arrays import PooledImages
from knee_tf.core.vocab import (
    A_STEPS,
    ARM_NAMES,
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


@dataclass(frozen=True)
class Arm:
    """One arm: its name, how its training set is built, and whether that needs Model A.

    budget: what the arm matches B in (``"same augmentation share"``: as many extra images per
    image as B, the same epoch budget; ``"same optimisation steps"``: as many steps per epoch as B);
    family: the arm whose kind of training images it shares (an ablation of B: ``"B"``), for the
    in-distribution flags (:func:`knee_tf.controls.effects.in_distribution`).
    """

    name: str
    training_set: Callable[..., TrainingSet]  # (data, model_a, cfg, seed) -> TrainingSet
    needs_model_a: bool
    description: str
    budget: str = ""
    family: str = ""


ARMS: dict[str, Arm] = {}


def register(arm: Arm) -> Arm:
    """Add ``arm`` to :data:`ARMS` (a name is registered once, and must be in :data:`knee_tf.core.vocab.ARM_NAMES`)."""
    if arm.name not in ARM_NAMES:
        raise ValueError(f"arm {arm.name!r} is not in knee_tf.core.vocab.ARM_NAMES; add its name there first")
    if arm.name in ARMS:
        raise ValueError(f"arm {arm.name!r} is already registered")
    ARMS[arm.name] = arm
    return arm


def get_arm(name: str) -> Arm:
    """The registered arm called ``name``, or a ValueError listing the known arms."""
    try:
        return ARMS[name]
    except KeyError:
        raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(ARMS)}") from None


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

register(Arm(MODEL_A, normal_training_set, needs_model_a=False,
             description="Model A: normal training images", budget="the reference", family=MODEL_A))
register(Arm(MODEL_B, augmented_training_set, needs_model_a=True,
             description="Model B: normal + Grad-CAM/Grad-CAM++ (pool4) inverted and weighted copies",
             budget="the paper's arm", family=MODEL_B))
register(Arm(A_STEPS, steps_training_set, needs_model_a=False, budget=STEPS, family=A_STEPS,
             description="normal images, each twice per epoch: B's steps per epoch"))
for _name, _needs_a, _what in (
        (B_RANDOM, True, "B's masks rotated/flipped and shifted to a random position (same area, no saliency)"),
        (B_UNTRAINED, False, "masks from the Grad-CAM of the untrained LeNet (Model A's initial weights)"),
        (ERASING, True, "one rectangle per image with the pixel count of B's mask's mass"),
        (B_KEEP, True, "B's masks placed off the salient region (top 20% of the map), which is never touched"),
        (MRI_AUG, False, "bias field, coil dropout or Rician noise (no longer held out for this arm)")):
    register(Arm(_name, control_training_set(_name), needs_model_a=_needs_a, budget=SHARE, family=_name,
                 description=_what))
for _name, _settings, _share, _labels, _what in (
        ("B_pool1", {"aug_layer": "pool1"}, 1.0, False, "maps at pool1"),
        ("B_pool2", {"aug_layer": "pool2"}, 1.0, False, "maps at pool2"),
        ("B_pool3", {"aug_layer": "pool3"}, 1.0, False, "maps at pool3"),
        ("B_gradcam", {"cam_methods": (GRADCAM,)}, 1.0, False, f"{METHOD_NAMES[GRADCAM]} maps only"),
        ("B_gradcampp", {"cam_methods": (GRADCAM_PP,)}, 1.0, False, f"{METHOD_NAMES[GRADCAM_PP]} maps only"),
        ("B_w25_50", {"aug_weight_range": (0.25, 0.5)}, 1.0, False, "weights w in [0.25, 0.5]"),
        ("B_w50_75", {"aug_weight_range": (0.5, 0.75)}, 1.0, False, "weights w in [0.5, 0.75]"),
        ("B_w75_100", {"aug_weight_range": (0.75, 1.0)}, 1.0, False, "weights w in [0.75, 1.0]"),
        ("B_share0p25", {}, 0.25, False, "one copy for a quarter of the images"),
        ("B_share0p5", {}, 0.5, False, "one copy for half of the images"),
        ("B_share2", {"aug_variants": 2}, 1.0, False, "two copies per image"),
        ("B_label_maps", {}, 1.0, True, "maps of the label instead of Model A's predicted class")):
    register(Arm(_name, ablation_training_set(_settings, _share, _labels), needs_model_a=True, family=MODEL_B,
                 budget="B with one setting changed", description=f"ablation of B: {_what}"))


#: notebook 07's ablation panels: {panel title: [(arm, setting label), ...]}, B's own setting among them.
ABLATION_PANELS: dict[str, list[tuple[str, str]]] = {
    "layer": [("B_pool1", "pool1"), ("B_pool2", "pool2"), ("B_pool3", "pool3"), (MODEL_B, "pool4")],
    "method": [("B_gradcam", METHOD_NAMES[GRADCAM]), ("B_gradcampp", METHOD_NAMES[GRADCAM_PP]), (MODEL_B, "both")],
    "weight range": [("B_w25_50", "0.25-0.5"), ("B_w50_75", "0.5-0.75"), ("B_w75_100", "0.75-1"),
                     (MODEL_B, "0.5-1")],
    "augmented share": [("B_share0p25", "0.25"), ("B_share0p5", "0.5"), (MODEL_B, "1"), ("B_share2", "2")],
    "maps of": [("B_label_maps", "label"), (MODEL_B, "prediction")],
}

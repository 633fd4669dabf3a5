"""The arms of the study: how each one builds its training set. One registry entry per arm.

An arm is a way of making the training set of one model; everything else is the same for every
arm (architecture, settings, validation set = the normal validation split, seed protocol, test
cohorts), so arms differ only in what they train on. :data:`ARMS` maps an arm name
(:mod:`knee_tf.vocab`) to an :class:`Arm`:

* ``training_set(data, model_a, cfg, seed) -> TrainingSet``: data is the run's
  :class:`knee_tf.ingest.IngestResult`; model_a the trained Model A of the same seed (and the same
  settings) when ``needs_model_a``, else None; cfg the job's StudyConfig; seed the training seed.
* ``needs_model_a``: whether the training set is made from Model A. The grid
  (:mod:`knee_tf.grid`) then trains the A job of that seed first and hands its model over.

Registered: ``A`` (normal training images) and ``B`` (normal + the augmented pool made from
Model A's Grad-CAM and Grad-CAM++ maps at ``cfg.aug_layer``, inverted and weighted;
:func:`knee_tf.cohorts.augmented_pool`). A control is one more entry, e.g.::

    register(Arm("B_random", needs_model_a=False, training_set=random_mask_training_set,
                 description="normal + images masked with random maps of the same area"))

with its name added to :data:`knee_tf.vocab.ARM_NAMES` and its mask function next to the others
(:mod:`knee_tf.augment`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knee_tf.vocab import ARM_NAMES, MODEL_A, MODEL_B, NORMAL, TRAIN


@dataclass(frozen=True)
class TrainingSet:
    """What a model of one arm trains on: images float32 (N, H, W, 1) in [0, 1], labels int32 (N,);
    n_augmented: how many of the N are derived (augmented) images, for the job record."""

    images: np.ndarray
    labels: np.ndarray
    n_augmented: int = 0


@dataclass(frozen=True)
class Arm:
    """One arm: its name, how its training set is built, and whether that needs Model A."""

    name: str
    training_set: Callable[..., TrainingSet]  # (data, model_a, cfg, seed) -> TrainingSet
    needs_model_a: bool
    description: str


ARMS: dict[str, Arm] = {}


def register(arm: Arm) -> Arm:
    """Add ``arm`` to :data:`ARMS` (a name is registered once, and must be in :data:`knee_tf.vocab.ARM_NAMES`)."""
    if arm.name not in ARM_NAMES:
        raise ValueError(f"arm {arm.name!r} is not in knee_tf.vocab.ARM_NAMES; add its name there first")
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


def normal_training_set(data, model_a, cfg, seed: int) -> TrainingSet:
    """Arm A: the normal training split as it is."""
    x, y, _ = data.split(TRAIN, cohort=NORMAL)
    return TrainingSet(x, y)


def augmented_training_set(data, model_a, cfg, seed: int) -> TrainingSet:
    """Arm B: the normal training split plus Model A's augmented pool of the same seed.

    The pool is rounded to float16, as notebook 04 stores it in the run folder
    (:func:`knee_tf.cohorts.save_pool`), so the grid's B is the study's B.
    """
    from knee_tf.cohorts import augmented_pool

    x, y, index = data.split(TRAIN, cohort=NORMAL)
    pool_x, pool_y, _ = augmented_pool(model_a, x, y, index["image_id"], cfg, seed, progress=False)
    pool_x = np.asarray(pool_x, dtype=np.float16)
    return TrainingSet(np.concatenate([x, pool_x], dtype=np.float32), np.concatenate([y, pool_y]).astype(np.int32),
                       n_augmented=len(pool_x))


register(Arm(MODEL_A, normal_training_set, needs_model_a=False,
             description="Model A: normal training images"))
register(Arm(MODEL_B, augmented_training_set, needs_model_a=True,
             description="Model B: normal + Grad-CAM/Grad-CAM++ (pool4) inverted and weighted copies"))

"""The test cohorts: one table, :data:`COHORTS`, says what each cohort is and how its images are made.

:data:`COHORTS` maps a cohort name to a :class:`Cohort`, in the order a job builds and scores them
(the rows of its predictions follow it). Tables show them in :func:`cohort_order`: the paper's
cohorts by their number, then the others in registration order.

============  =====  ====================================================================
cohort        paper  images
============  =====  ====================================================================
normal        1      the normal test split
metal         2      every test exam with a metal implant (absent from training)
new_site      --     the normal exams of a site (scanner and coil) that never appears in
                     train or val (a site-shift check, not in the paper)
cam           3      the normal test images corrupted with the job's own Model A's maps
cam_transfer  --     ... with the maps of an independently trained Model A (another seed):
                     does B's gain on ``cam`` need its own Model A's maps?
cam_b         --     ... with the maps of the seed's Model B: can B be attacked as A was?
cam_hard      --     cam with the mask smoothed and thresholded (a hard-edged patch), made
                     only where the config sets ``cam_hard_weight`` (paper_point)
============  =====  ====================================================================

``normal``, ``metal`` and ``new_site`` are read from the manifest's ``cohort`` column (the values the
data contract allows, :data:`knee_tf.core.vocab.MANIFEST_COHORTS`); the others are made by the study
from a model's maps (:attr:`Cohort.maps_of`), ``image * (1 - w * M)`` at the fixed weight
``cfg.cohort3_weight`` with ``cfg.cohort3_method`` at ``cfg.aug_layer`` (:func:`cam_cohort_images`):
fresh maps of the test images, never a training pool. Each training seed has its own Model A and
therefore its own cohort 3. Maps explain the model's *predicted* class, never the true label.

A job builds the cohorts of the manifest and of its own Model A (:func:`build_test_cohorts`); the
cohorts that need other jobs' models (:func:`cross_cohort_names`) are built once those exist
(:func:`cross_cohorts`, :func:`knee_tf.controls.grid.cross_cohort_predictions`). A further cohort
is one more :func:`register_cohort` entry and its builder (a function like :func:`maps_cohort`): it
then appears in every job's predictions, in the tables' order and in the in-distribution flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from knee_tf.core.vocab import MANIFEST_COHORTS, METAL, MODEL_B, NEW_SITE, NORMAL, TEST
from knee_tf.study.config import StudyConfig
from knee_tf.study.corrupt import cam_corruption

#: Whose maps make a cohort's images (:attr:`Cohort.maps_of`): none (read from the manifest), the
#: job's own Model A, an independently trained Model A (the grid's ``transfer`` job), the seed's Model B.
FROM_MANIFEST, OWN_MODEL_A, OTHER_MODEL_A, SEEDS_MODEL_B = (
    "manifest", "own Model A", "independent Model A", "Model B of the seed")
#: The models a job has itself: cohorts made from them are built with the job.
OWN_SOURCES: tuple[str, ...] = (FROM_MANIFEST, OWN_MODEL_A)


@dataclass(frozen=True)
class Cohort:
    """One test cohort.

    build: ``(data, normal, model, cfg, progress) -> (images float32 (n, H, W, 1) in [0, 1], rows) or
    None`` (the data has none of it); data: the run's :class:`knee_tf.data.ingest.IngestResult`;
    normal: ``(images, rows)`` of the normal test split (read once for every cohort); model: the
    model whose maps make the images (None for a manifest cohort). maps_of: which model that is
    (:data:`FROM_MANIFEST`, :data:`OWN_MODEL_A`, :data:`OTHER_MODEL_A`, :data:`SEEDS_MODEL_B`).
    paper_number: the cohort's number in the paper (1-3), 0 when the paper has none;
    paper_accuracy: the paper's reported (Model A, Model B) accuracies on it (ISMRM 2021, abstract
    0811), quoted beside ours and never used in a computation. in_distribution_for: the arms (arm
    families, :attr:`knee_tf.controls.arms.Arm.family`) whose training generator makes such images,
    so that a gain there is expected by construction (:func:`knee_tf.controls.effects.in_distribution`).
    optional: made only where the config asks for it (its builder returns None otherwise), so tables list
    it only where it was made (:func:`listed_cohorts`), never as "not run".
    """

    name: str
    build: Callable[..., tuple | None]
    maps_of: str
    description: str
    paper_number: int = 0
    paper_accuracy: tuple[float, float] | None = None
    in_distribution_for: tuple[str, ...] = ()
    optional: bool = False


COHORTS: dict[str, Cohort] = {}

_SOURCES = (FROM_MANIFEST, OWN_MODEL_A, OTHER_MODEL_A, SEEDS_MODEL_B)


def register_cohort(cohort: Cohort) -> Cohort:
    """Add ``cohort`` to :data:`COHORTS` (ValueError in one line naming the cohort and what is wrong)."""
    if cohort.name in COHORTS:
        raise ValueError(f"cohort {cohort.name!r} is already registered")
    if cohort.maps_of not in _SOURCES:
        raise ValueError(f"cohort {cohort.name!r}: maps_of {cohort.maps_of!r} is not one of {_SOURCES}")
    if (cohort.maps_of == FROM_MANIFEST) != (cohort.name in MANIFEST_COHORTS):
        raise ValueError(f"cohort {cohort.name!r}: only the manifest's cohorts {MANIFEST_COHORTS} are read from "
                         "it (knee_tf.core.vocab.MANIFEST_COHORTS), and those are not made from maps")
    taken = {c.paper_number: c.name for c in COHORTS.values() if c.paper_number}
    if cohort.paper_number in taken:
        raise ValueError(f"cohort {cohort.name!r}: paper cohort {cohort.paper_number} is {taken[cohort.paper_number]!r}")
    COHORTS[cohort.name] = cohort
    return cohort


def get_cohort(name: str) -> Cohort:
    """The registered cohort called ``name``, or a ValueError listing the known cohorts."""
    try:
        return COHORTS[name]
    except KeyError:
        raise ValueError(f"unknown cohort {name!r}; known cohorts: {', '.join(COHORTS)}") from None


def cohort_order(own_only: bool = False) -> tuple[str, ...]:
    """Cohort names in the order tables show them: the paper's by number, then the others in
    registration order. own_only: only the cohorts a job builds itself (:func:`build_test_cohorts`),
    those of the paper study (notebook 06)."""
    names = [n for n, c in COHORTS.items() if not own_only or c.maps_of in OWN_SOURCES]
    return tuple(sorted(names, key=lambda n: COHORTS[n].paper_number or len(COHORTS) + 1))  # stable: the rest in order


def listed_cohorts(present) -> list[str]:
    """The cohorts a table of the paper study lists: each of :func:`cohort_order` (own_only) that is not
    :attr:`Cohort.optional`, run or not, then every other cohort of ``present`` in the order it comes."""
    own = [c for c in cohort_order(own_only=True) if not COHORTS[c].optional]
    return own + [str(c) for c in dict.fromkeys(present) if str(c) not in own]


def own_maps_cohort_names() -> tuple[str, ...]:
    """The cohorts made from the job's own Model A's maps (``cam``, ``cam_hard``), in :func:`cohort_order`."""
    return tuple(n for n in cohort_order() if COHORTS[n].maps_of == OWN_MODEL_A)


def cross_cohort_names() -> tuple[str, ...]:
    """The cohorts made from other jobs' models (``cam_transfer``, ``cam_b``), in registration order."""
    return tuple(n for n, c in COHORTS.items() if c.maps_of not in OWN_SOURCES)


def build_cohorts(data, cfg: StudyConfig, models: Mapping[str, object], progress: bool = True) -> dict[str, tuple]:
    """{cohort: (images float32 (n, H, W, 1), rows DataFrame)} of every registered cohort whose
    ``maps_of`` is a key of ``models`` ({maps_of: model}); a cohort whose model is None, or whose
    images the data lacks, is left out. In registration order."""
    x, _, idx = data.split(TEST, cohort=NORMAL)
    out = {}
    for cohort in COHORTS.values():
        if cohort.maps_of not in models or (cohort.maps_of != FROM_MANIFEST and models[cohort.maps_of] is None):
            continue
        made = cohort.build(data, (x, idx), models[cohort.maps_of], cfg, progress)
        if made is not None:
            out[cohort.name] = made
    return out


def build_test_cohorts(data, model_a, cfg: StudyConfig, progress: bool = True) -> dict[str, tuple]:
    """{cohort: (images float32 (n, H, W, 1), rows DataFrame)} of the cohorts a job builds itself: the
    manifest's (each if the data has it) and those of its own Model A's maps (cam)."""
    if model_a is None:
        raise ValueError("build_test_cohorts needs the job's Model A: its maps make the cam cohort")
    return build_cohorts(data, cfg, {FROM_MANIFEST: None, OWN_MODEL_A: model_a}, progress)


def cross_cohorts(data, transfer_model, model_b, cfg: StudyConfig, progress: bool = True) -> dict[str, tuple]:
    """The cohorts made from another model's maps: {cohort: (images float32 (n, H, W, 1), rows)}.

    ``cam_transfer``: the normal test images corrupted with the maps of ``transfer_model``, a Model A
    trained independently (another seed), the same images for every arm and seed; ``cam_b``: with the
    maps of ``model_b``, the Model B of the seed being evaluated. Either model may be None (cohort
    left out). Every arm of a seed is scored on the same images, so effects stay paired.
    """
    return build_cohorts(data, cfg, {OTHER_MODEL_A: transfer_model, SEEDS_MODEL_B: model_b}, progress)


def cam_cohort_images(model, images: np.ndarray, cfg: StudyConfig, progress: bool = True,
                      mask: tuple[float, float, float] | None = None) -> np.ndarray:
    """Cohort 3's corruption with any model's maps: ``images * (1 - w * M)``, M the model's
    ``cfg.cohort3_method`` map at ``cfg.aug_layer``, w = ``cfg.cohort3_weight``, the map smoothed and
    thresholded as the augmentation's (``cfg.aug_smooth_sigma``, ``cfg.aug_threshold``); or with
    ``mask`` = (w, smoothing sigma, threshold) instead (cam_hard: :func:`cam_hard_cohort`).

    Model A's own maps give ``cam``; an independently trained Model A's give ``cam_transfer``; Model
    B's give ``cam_b``. images: float32 (N, H, W, 1) in [0, 1]. Returns float32 (N, H, W, 1) in
    [0, 1]. Made one CAM batch at a time (the maps of a batch, then its images:
    :class:`knee_tf.core.cam.BatchedMaps`), each image exactly as on all N at once.
    """
    from knee_tf.core.cam import BatchedMaps  # lazy: TensorFlow; report reads the table without it

    weight, sigma, threshold = mask or (cfg.cohort3_weight, cfg.aug_smooth_sigma, cfg.aug_threshold)
    images = np.asarray(images, dtype=np.float32)
    maps = BatchedMaps(model, images, cfg.aug_layer, (cfg.cohort3_method,), None, cfg.cam_batch_size)
    maps = maps[cfg.cohort3_method]
    out = np.empty_like(images)
    step = cfg.cam_batch_size
    for a in tqdm(range(0, len(images), step), desc="cam cohort", unit="batch", disable=not progress):
        out[a:a + step] = cam_corruption(images[a:a + step], maps[a:a + step], weight, sigma, threshold)
    return out


def normal_cohort(data, normal, model, cfg, progress):
    """The normal test split as it is."""
    return normal


def manifest_cohort(name: str):
    """The builder of a manifest cohort: the test rows whose ``cohort`` column is ``name``, or None
    when the manifest has no such rows (or no ``cohort`` column)."""

    def build(data, normal, model, cfg, progress):
        if "cohort" not in data.index:
            return None
        x, _, rows = data.split(TEST, cohort=name)
        return (x, rows) if len(x) else None

    return build


def maps_cohort(data, normal, model, cfg, progress):
    """The normal test images corrupted with ``model``'s maps (:func:`cam_cohort_images`)."""
    x, rows = normal
    return cam_cohort_images(model, x, cfg, progress=progress), rows


def cam_hard_cohort(data, normal, model, cfg, progress):
    """The normal test images corrupted with ``model``'s maps as cohort 3, but with the mask smoothed and
    thresholded (``cfg.cam_hard_weight``, ``cfg.cam_hard_smooth_sigma``, ``cfg.cam_hard_threshold``): a
    hard-edged patch where the raw map is a soft shadow. None (no such cohort) while the weight is 0."""
    if cfg.cam_hard_weight <= 0:
        return None
    x, rows = normal
    mask = (cfg.cam_hard_weight, cfg.cam_hard_smooth_sigma, cfg.cam_hard_threshold)
    return cam_cohort_images(model, x, cfg, progress=progress, mask=mask), rows


CAM, CAM_TRANSFER, CAM_B, CAM_HARD = "cam", "cam_transfer", "cam_b", "cam_hard"

register_cohort(Cohort(NORMAL, normal_cohort, FROM_MANIFEST, "the normal test split", paper_number=1,
                       paper_accuracy=(0.831, 0.866)))
register_cohort(Cohort(METAL, manifest_cohort(METAL), FROM_MANIFEST,
                       "every test exam with a metal implant (absent from training)", paper_number=2,
                       paper_accuracy=(0.706, 0.803)))
register_cohort(Cohort(NEW_SITE, manifest_cohort(NEW_SITE), FROM_MANIFEST,
                       "normal exams of a site (scanner and coil) never seen in train or val"))
# the CAM cohorts apply image * (1 - w * M) with the Grad-CAM of a trained LeNet, which is B's training
# transform; only whose maps differ: in distribution for B's family, and for every arm that reuses B's mask
# values (knee_tf.controls.arms.Arm.mask_values_of: B_random, B_keep)
register_cohort(Cohort(CAM, maps_cohort, OWN_MODEL_A, "normal test images corrupted with the job's own Model A's maps",
                       paper_number=3, paper_accuracy=(0.675, 0.855), in_distribution_for=(MODEL_B,)))
register_cohort(Cohort(CAM_TRANSFER, maps_cohort, OTHER_MODEL_A,
                       "normal test images corrupted with an independently trained Model A's maps",
                       in_distribution_for=(MODEL_B,)))
register_cohort(Cohort(CAM_B, maps_cohort, SEEDS_MODEL_B, "normal test images corrupted with the seed's Model B's maps",
                       in_distribution_for=(MODEL_B,)))
# declared by docs/analysis_plan.md's amendment 1 from docs/premise.md (the paper's words allow a smoothed,
# thresholded mask, and it fools Model A by 10 points or more); made only by configs that set
# cam_hard_weight (paper_point). B trains on raw maps, so it is in no arm's training distribution.
register_cohort(Cohort(CAM_HARD, cam_hard_cohort, OWN_MODEL_A,
                       "normal test images corrupted with the job's own Model A's maps, smoothed and thresholded",
                       optional=True))

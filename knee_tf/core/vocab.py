"""The study's vocabulary: class, plane, split, cohort, method and column names, and the decision rule.

Every other module imports these names; none spells them out again. No TensorFlow, no pandas:
this module is imported by the DICOM decoding workers and by the phantom as well.

* ``CLASSES``: the label values in class-index order; the index is the integer label and the
  softmax output position. ``relevant`` (index 1) is the positive class.
* ``predicted_class``: the one decision rule, ``p_relevant > 0.5`` -> 1 (relevant). A probability
  of exactly 0.5 goes to ``irrelevant``, the same answer as ``argmax`` over ``(p_irrelevant,
  p_relevant)`` (argmax breaks ties towards the first class), so thresholding and argmax never disagree.
* ``check_targets``: the one check of the classes an activation map explains (used by
  :mod:`knee_tf.core.cam` and :mod:`knee_tf.core.faithfulness`).
* ``check_cam_methods``: the one check of CAM method names (used by :mod:`knee_tf.core.cam` and
  ``StudyConfig``): an unknown name is an error naming the registered ones, never a fallback.
"""

from __future__ import annotations

import numpy as np

#: Label values in class-index order: label column value -> index (0 irrelevant, 1 relevant).
CLASSES: tuple[str, ...] = ("irrelevant", "relevant")
IRRELEVANT, RELEVANT = CLASSES
#: Localizer planes, in the order figures and tables show them.
PLANES: tuple[str, ...] = ("axial", "sagittal", "coronal")
AXIAL, SAGITTAL, CORONAL = PLANES
SPLITS: tuple[str, ...] = ("train", "val", "test")
TRAIN, VAL, TEST = SPLITS

#: Test cohorts, in the paper's order: (1) normal images, (2) metal-implant exams, (3) images
#: corrupted with Model A's own maps; then (4) ``new_site``: normal exams of a site (scanner and
#: coil) that never appears in train or val. ``normal``, ``metal`` and ``new_site`` come from the
#: manifest's ``cohort`` column; ``cam`` is made by the study (:data:`DERIVED_COHORTS`), never read
#: from a manifest.
COHORTS: tuple[str, ...] = ("normal", "metal", "cam", "new_site")
NORMAL, METAL, CAM, NEW_SITE = COHORTS
#: Further derived cohorts of the controls study (issue 11): the normal test images corrupted with
#: the maps of an *independently trained* Model A (another seed: does B's gain on ``cam`` need its
#: own Model A's maps?) and with Model B's own maps (can B be attacked the way A was?).
CAM_TRANSFER, CAM_B = "cam_transfer", "cam_b"
DERIVED_COHORTS: tuple[str, ...] = (CAM, CAM_TRANSFER, CAM_B)
#: The values a manifest's ``cohort`` column may hold.
MANIFEST_COHORTS: tuple[str, ...] = tuple(c for c in COHORTS if c not in DERIVED_COHORTS)

#: The ``corruption`` of a cohort's own images in prediction tables (held-out corruptions,
#: :data:`knee_tf.study.corrupt.CORRUPTIONS`, are applied to a cohort's images at a severity 1..5).
NO_CORRUPTION = "none"

#: The names of the registered activation-map methods, in canonical order, and their human-readable
#: names. Each name is one entry of :data:`knee_tf.core.cam_methods.REGISTRY` (the function that makes
#: its map); the names live here, without TensorFlow, for the config, the DICOM writer and the figures.
CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam")
GRADCAM, GRADCAM_PP, LAYERCAM = CAM_METHODS
METHOD_NAMES: dict[str, str] = {GRADCAM: "Grad-CAM", GRADCAM_PP: "Grad-CAM++", LAYERCAM: "LayerCAM"}
#: The study's methods (the paper's): Model B's maps, the figures' and explorers' default. LayerCAM is
#: registered but in none of the study's arms.
STUDY_CAM_METHODS: tuple[str, ...] = (GRADCAM, GRADCAM_PP)
#: Augmentation transforms (:mod:`knee_tf.core.augment`): ``image * (1 - M)`` and ``image * (1 - w * M)``.
TRANSFORMS: tuple[str, ...] = ("inverted", "weighted")
INVERTED, WEIGHTED = TRANSFORMS

#: The two arms of the paper: Model A (normal images) and Model B (normal + augmented). Arms are
#: plain strings; a further arm (a control, an ablation) adds its name here and one entry to
#: :data:`knee_tf.controls.arms.ARMS` (which accepts only names listed in ARM_NAMES).
MODEL_A, MODEL_B = "A", "B"
#: The arms of the controls study (issue 11); every arm trains the same architecture with the same
#: hyper-parameters, validation set and seeds. A: normal images; A_steps: normal images for as many
#: optimisation steps as B; B: normal + Model A's CAM-obfuscated images (the paper); B_random: B's
#: masks at a random position; B_untrained: masks from an untrained network's maps; erasing:
#: rectangles with the area of B's masks; B_keep: B's masks placed to avoid the salient region
#: (KeepAugment's opposite hypothesis); mri_aug: physics corruptions at training time
#: (:mod:`knee_tf.controls.control_masks` holds the mask functions).
A_STEPS, B_RANDOM, B_UNTRAINED, ERASING, B_KEEP, MRI_AUG = (
    "A_steps", "B_random", "B_untrained", "erasing", "B_keep", "mri_aug")
#: The controls at B's budget, in the order tables show them.
CONTROL_ARMS: tuple[str, ...] = (A_STEPS, B_RANDOM, B_UNTRAINED, ERASING, B_KEEP, MRI_AUG)
#: Ablations of B (one setting changed each; :data:`knee_tf.controls.arms.ARMS` says which): the map's layer,
#: the map method, the weight range of the weighted transform, the augmented share (copies per
#: image) and maps of the label instead of the predicted class.
ABLATION_ARMS: tuple[str, ...] = (
    "B_pool1", "B_pool2", "B_pool3", "B_gradcam", "B_gradcampp", "B_w25_50", "B_w50_75", "B_w75_100",
    "B_share0p25", "B_share0p5", "B_share2", "B_label_maps")
#: Every arm name, in the order tables show them (knee_tf.controls.arms registers only these).
ARM_NAMES: tuple[str, ...] = (MODEL_A, MODEL_B) + CONTROL_ARMS + ABLATION_ARMS
#: The arms the issue asks at least 10 seeds of (every other arm: at least 5).
MAIN_ARMS: tuple[str, ...] = (MODEL_A, A_STEPS, MODEL_B, B_RANDOM, ERASING)
#: Cohorts made by the very generator an arm trains on: the arm has seen their kind of image, so a
#: gain there is expected by construction and every table flags it (column ``in_distribution``).
#: All three CAM cohorts apply ``image * (1 - w * M)`` with the Grad-CAM of a trained LeNet, which
#: is B's training transform; only whose maps differ. (Which held-out corruptions ``mri_aug`` trains
#: on is :data:`knee_tf.controls.control_masks.MRI_AUG_CORRUPTIONS`.)
IN_DISTRIBUTION_FOR: dict[str, tuple[str, ...]] = {CAM: (MODEL_B,), CAM_TRANSFER: (MODEL_B,), CAM_B: (MODEL_B,)}

#: Manifest columns every row must fill (:mod:`knee_tf.data.manifest` checks them).
REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "patient_id", "exam_id", "path", "plane", "label", "split")
#: Optional manifest columns with a meaning in the study (others are kept as they are):
#: breakdowns (site, scanner, field_strength_t, coil), the test cohort, the frame of a
#: multi-frame file, and the phantom's slice_index / anatomy (teaching examples).
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "site", "scanner", "field_strength_t", "coil", "cohort", "frame", "slice_index", "anatomy",
)


#: Phantom manifest columns for label-noise analysis: the geometric rule's label, the annotator who
#: labelled the exam, and whether the annotator's label differs from the rule's.
RULE_LABEL_COLUMN, ANNOTATOR_COLUMN, LABEL_NOISE_COLUMN = "rule_label", "annotator", "label_flipped"


def encode_labels(labels) -> np.ndarray:
    """Label strings ('irrelevant' | 'relevant') -> int32 class indices (0 | 1)."""
    lookup = {c: i for i, c in enumerate(CLASSES)}
    try:
        return np.array([lookup[str(v)] for v in labels], dtype=np.int32)
    except KeyError as e:
        raise ValueError(f"unknown label {e.args[0]!r}; expected one of {CLASSES}") from None


def predicted_class(p_relevant) -> np.ndarray:
    """The decision rule: int64 class indices, 1 where ``p_relevant > 0.5``, else 0.

    p_relevant: float (N,) (or a scalar) in [0, 1], the probability of class 1. Ties (exactly 0.5)
    go to class 0, as ``argmax`` of the two softmax outputs does.
    """
    return (np.asarray(p_relevant, dtype=np.float64) > 0.5).astype(np.int64)


def class_name(p_relevant: float) -> str:
    """The class name :func:`predicted_class` picks for one probability of ``relevant``."""
    return CLASSES[int(predicted_class(p_relevant))]


def check_targets(targets, n: int, n_classes: int = len(CLASSES)) -> np.ndarray:
    """The classes activation maps explain: int32 (n,), -1 meaning "the predicted class".

    targets: None (every image's predicted class), one int for all images, or int (n,) class
    indices in [0, n_classes - 1]. Raises ValueError naming what is wrong.
    """
    if targets is None:
        return np.full(n, -1, np.int32)
    t = np.asarray(targets)
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"targets must be int class indices, got dtype {t.dtype}")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.shape != (n,):
        raise ValueError(f"targets must be an int or int (N,) = ({n},), got shape {t.shape}")
    if n and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(f"targets must lie in [0, {n_classes - 1}], got [{t.min()}, {t.max()}]")
    return t.astype(np.int32)


def check_cam_methods(methods, what: str = "methods") -> tuple[str, ...]:
    """CAM method names as a tuple: one name (a str) or a sequence of distinct registered names.

    what: the argument or setting checked, named in the error. Raises ValueError in one line naming
    the registered methods (:data:`CAM_METHODS`) when a name is unknown, repeated or missing.
    """
    names = (methods,) if isinstance(methods, str) else tuple(methods)
    registered = ", ".join(CAM_METHODS)
    unknown = [m for m in names if m not in CAM_METHODS]
    if unknown:
        raise ValueError(f"{what}: unknown CAM method {unknown[0]!r}; registered: {registered}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{what} must be distinct names among {registered}, got {names}")
    return names

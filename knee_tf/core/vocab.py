"""The study's vocabulary: class, plane, split, cohort, arm, method and column names, and the decision rule.

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

#: The cohorts a manifest's ``cohort`` column may hold (the data contract): ``normal`` exams, exams
#: with a ``metal`` implant, and ``new_site``: normal exams of a site (scanner and coil) that never
#: appears in train or val. What each test cohort is, the ones the study makes from a model's maps
#: among them, and the order tables show them in: :data:`knee_tf.study.cohorts.COHORTS`.
NORMAL, METAL, NEW_SITE = "normal", "metal", "new_site"
MANIFEST_COHORTS: tuple[str, ...] = (NORMAL, METAL, NEW_SITE)

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

#: Arm names, as constants for the modules that build or choose those arms. Which arms there are,
#: in which order tables show them, their role, reference, seeds and figure panels:
#: :data:`knee_tf.controls.arms.ARMS`, the one table of arms. The two arms of the paper: Model A
#: (normal images) and Model B (normal + augmented); the controls of the controls study (issue 11),
#: whose masks :mod:`knee_tf.controls.control_masks` makes.
MODEL_A, MODEL_B = "A", "B"
#: The paper study's two models, which notebooks 02 and 05 train into every study run.
STUDY_MODELS: tuple[str, ...] = (MODEL_A, MODEL_B)
A_STEPS, B_RANDOM, B_UNTRAINED, ERASING, B_KEEP, MRI_AUG = (
    "A_steps", "B_random", "B_untrained", "erasing", "B_keep", "mri_aug")

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

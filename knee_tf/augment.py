"""Activation-map augmentation: obfuscate what Model A looks at, keep the label.

Pure functions of ``(image, map, rng)``; nothing here touches a model. The maps come from
:func:`knee_tf.cam.compute_cams` (``{method: float32 (N, L, H, W) in [0, 1]}``); pick one layer with
:func:`select_layer`.

Transforms (the paper's "inverted" and "weighted (reduced intensity)" Grad-CAM / Grad-CAM++ masks):

* ``inverted``: ``image * (1 - M)`` -- the salient region is blacked out in proportion to the map;
* ``weighted``: ``image * (1 - w * M)`` with ``w`` drawn uniformly from ``weight_range`` -- the
  salient region is dimmed, not removed.

``M`` is the map at one layer (default ``pool4``, as in the paper), optionally Gaussian-smoothed and
thresholded by :func:`prepare_mask`.

Training-pool recipe (:func:`build_augmented_pool`): every training image gets ``variants``
augmented copies. Each copy uses one (method, transform) combination out of
``methods x transforms`` (by default {gradcam, gradcam++} x {inverted, weighted}: four combinations,
each a quarter of the pool). Within each class, a seeded permutation gives every image a starting
combination and its variants step through the combinations from there, so the shares are equal (to
within one image per class) and an image's first ``len(combinations)`` variants all differ. The
pool is a deterministic function of the inputs and ``seed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from knee_tf.config import StudyConfig

TRANSFORMS: tuple[str, ...] = ("inverted", "weighted")
METHODS: tuple[str, ...] = ("gradcam", "gradcam++")
#: Human-readable method names, used in DICOM descriptions and figure titles.
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
#: Pool slots processed at once by build_augmented_pool (bounds its temporary memory).
_POOL_CHUNK = 256
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "aug_id", "source_image_id", "label", "method", "transform", "layer", "weight", "variant",
)


# ----------------------------------------------------------------------------- masks


def prepare_mask(cam: np.ndarray, smooth_sigma: float = 0.0, threshold: float = 0.0) -> np.ndarray:
    """The obfuscation mask M from an activation map.

    cam: float (H, W), (H, W, 1), (N, H, W) or (N, H, W, 1) in [0, 1] (a trailing axis of length 1
    is treated as a channel axis). smooth_sigma: Gaussian sigma in pixels over the two spatial axes
    (0: none); the smoothed map is rescaled to the original map's peak, so ``w = 1`` still removes
    the most salient pixel fully; an all-zero map stays zero. threshold: map values below it are set
    to 0 (after smoothing; 0: none).
    Returns float32, same shape, in [0, 1].
    """
    m = np.asarray(cam, dtype=np.float32)
    if m.ndim not in (2, 3, 4):
        raise ValueError(f"cam must be (H, W), (H, W, 1), (N, H, W) or (N, H, W, 1); got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("cam contains NaN or inf")
    if m.size and (m.min() < -1e-4 or m.max() > 1 + 1e-4):
        raise ValueError(f"cam values must lie in [0, 1]; got [{m.min():.4g}, {m.max():.4g}]")
    if smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be >= 0; got {smooth_sigma}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1]; got {threshold}")
    m = np.clip(m, 0.0, 1.0)
    if smooth_sigma > 0:
        from scipy.ndimage import gaussian_filter

        spatial = _spatial_axes(m)
        sigma = [smooth_sigma if ax in spatial else 0.0 for ax in range(m.ndim)]
        peak = m.max(axis=spatial, keepdims=True)
        s = gaussian_filter(m, sigma=sigma, mode="nearest")
        s_peak = s.max(axis=spatial, keepdims=True)
        m = np.where(s_peak > 1e-12, s * peak / np.maximum(s_peak, 1e-12), 0.0).astype(np.float32)
    if threshold > 0:
        m = np.where(m >= threshold, m, 0.0).astype(np.float32)
    return np.clip(m, 0.0, 1.0)


def _spatial_axes(a: np.ndarray) -> tuple[int, int]:
    """The (H, W) axes of a map or image of rank 2, 3 or 4 (trailing axis of length 1 = channel)."""
    if a.ndim == 2:
        return (0, 1)
    if a.ndim == 3:
        return (0, 1) if a.shape[-1] == 1 else (1, 2)
    return (1, 2)


def _mask_like(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Reshape ``cam`` so it broadcasts against ``image`` (adds or drops a channel axis of 1)."""
    m = np.asarray(cam, dtype=np.float32)
    img_hw = tuple(image.shape[ax] for ax in _spatial_axes(image))
    cam_hw = tuple(m.shape[ax] for ax in _spatial_axes(m)) if m.ndim in (2, 3, 4) else None
    if cam_hw != img_hw:
        raise ValueError(f"cam spatial size {cam_hw} does not match image {img_hw} "
                         f"(image {image.shape}, cam {m.shape})")
    image_has_channel = image.ndim in (3, 4) and image.shape[-1] == 1
    cam_has_channel = m.ndim in (3, 4) and m.shape[-1] == 1
    if image_has_channel and not cam_has_channel:
        m = m[..., None]
    elif cam_has_channel and not image_has_channel:
        m = m[..., 0]
    try:
        np.broadcast_shapes(m.shape, image.shape)
    except ValueError:
        raise ValueError(f"cam {np.shape(cam)} does not broadcast against image {image.shape}") from None
    return m


def _check_image(image) -> np.ndarray:
    x = np.asarray(image, dtype=np.float32)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 1), (N, H, W) or (N, H, W, 1); got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("image contains NaN or inf")
    return x


# ----------------------------------------------------------------------------- transforms


def inverted_obfuscation(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """``image * (1 - M)``: the regions Model A relies on are removed in proportion to the map.

    image: float32 (H, W), (H, W, 1), (N, H, W) or (N, H, W, 1) in [0, 1]; cam: the matching map M
    in [0, 1] with or without the channel axis (already prepared; see :func:`prepare_mask`).
    Returns float32, the image's shape, in [0, 1].
    """
    return weighted_obfuscation(image, cam, 1.0)


def weighted_obfuscation(image: np.ndarray, cam: np.ndarray, weight) -> np.ndarray:
    """``image * (1 - w * M)``: the salient region dimmed by a factor down to ``1 - w``.

    image: float32 (H, W), (H, W, 1), (N, H, W) or (N, H, W, 1) in [0, 1]; cam: matching map M in
    [0, 1]; weight: scalar in [0, 1], or (N,) for a batch (one weight per image). ``w = 0`` returns
    the image unchanged, ``w = 1`` is :func:`inverted_obfuscation`.
    Returns float32, the image's shape, in [0, 1].
    """
    x = _check_image(image)
    m = _mask_like(x, cam)
    if m.size and (m.min() < -1e-4 or m.max() > 1 + 1e-4):
        raise ValueError(f"cam values must lie in [0, 1]; got [{m.min():.4g}, {m.max():.4g}]")
    w = np.asarray(weight, dtype=np.float32)
    if not np.all(np.isfinite(w)) or w.size == 0 or w.min() < 0 or w.max() > 1:
        raise ValueError(f"weight must lie in [0, 1]; got {weight!r}")
    if w.ndim == 1:
        if x.ndim != 4 and not (x.ndim == 3 and x.shape[-1] != 1):
            raise ValueError(f"a per-image weight (N,) needs a batch of images; got image {x.shape}")
        if w.shape[0] != x.shape[0]:
            raise ValueError(f"weight has {w.shape[0]} entries for {x.shape[0]} images")
        w = w.reshape((-1,) + (1,) * (x.ndim - 1))
    elif w.ndim != 0:
        raise ValueError(f"weight must be a scalar or (N,); got shape {w.shape}")
    out = x * (1.0 - w * np.clip(m, 0.0, 1.0))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment_image(
    image: np.ndarray,
    cam: np.ndarray,
    rng: np.random.Generator,
    weight_range: tuple[float, float] = (0.5, 1.0),
    transform: str = "weighted",
    smooth_sigma: float = 0.0,
    threshold: float = 0.0,
) -> tuple[np.ndarray, float]:
    """One augmented copy of one image.

    image: float32 (H, W) or (H, W, 1) in [0, 1]; cam: its raw activation map (H, W) or (H, W, 1) in
    [0, 1] (prepared here with ``smooth_sigma`` / ``threshold``); rng: draws the weight.
    transform: ``"inverted"`` (w = 1, no draw) or ``"weighted"`` (w ~ U(weight_range)).
    Returns (augmented float32 image of the input's shape in [0, 1], the weight used).
    """
    x = _check_image(image)
    if x.ndim == 4 or (x.ndim == 3 and x.shape[-1] != 1):
        raise ValueError(f"augment_image takes one image (H, W) or (H, W, 1); got {x.shape}")
    weight = _draw_weights(rng, transform, 1, weight_range)[0]
    mask = prepare_mask(cam, smooth_sigma, threshold)
    return weighted_obfuscation(x, mask, weight), float(weight)


def _check_weight_range(weight_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in weight_range)
    except (TypeError, ValueError):
        raise ValueError(f"weight_range must be (low, high); got {weight_range!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"weight_range must satisfy 0 <= low <= high <= 1; got {weight_range!r}")
    return lo, hi


def _draw_weights(rng: np.random.Generator, transform: str, n: int, weight_range) -> np.ndarray:
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")
    lo, hi = _check_weight_range(weight_range)
    if transform == "inverted":
        return np.ones(n, dtype=np.float32)
    return rng.uniform(lo, hi, size=n).astype(np.float32)


# ----------------------------------------------------------------------------- pool


def select_layer(maps: Mapping[str, np.ndarray], layers: Sequence[str], layer: str) -> dict:
    """One layer out of :func:`knee_tf.cam.compute_cams` output.

    maps: {method: float32 (N, L, H, W)}; layers: the L layer names in that order; layer: the one to
    keep. Returns {method: float32 (N, H, W)}.
    """
    layers = list(layers)
    if layer not in layers:
        raise ValueError(f"layer {layer!r} is not among the computed layers {layers}")
    k = layers.index(layer)
    out = {}
    for method, m in maps.items():
        m = np.asarray(m)
        if m.ndim != 4 or m.shape[1] != len(layers):
            raise ValueError(f"maps[{method!r}] must be (N, {len(layers)}, H, W); got {m.shape}")
        out[method] = m[:, k].astype(np.float32, copy=False)
    return out


def build_augmented_pool(
    images: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    maps: Mapping[str, np.ndarray],
    variants: int | None = None,
    weight_range: tuple[float, float] | None = None,
    seed: int = 0,
    *,
    layer: str | None = None,
    smooth_sigma: float | None = None,
    threshold: float | None = None,
    transforms: Sequence[str] = TRANSFORMS,
    methods: Sequence[str] | None = None,
    config: StudyConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The augmented training pool: ``variants`` labelled copies of every image, with provenance.

    images: float32 (N, H, W, 1) or (N, H, W) in [0, 1]; labels: int (N,) class indices (kept);
    image_ids: N unique ids; maps: {method: (N, H, W) or (N, H, W, 1) maps in [0, 1] at ``layer``}
    (see :func:`select_layer`). ``variants``, ``weight_range``, ``layer``, ``smooth_sigma`` and
    ``threshold`` default to ``config``'s ``aug_*`` fields (``StudyConfig()`` when None).
    transforms / methods: the combinations used (methods default to every key of ``maps``, in
    :data:`METHODS` order). The recipe is in the module docstring.

    Returns (aug_images float32 (N * variants, H, W, 1) in [0, 1], aug_labels int32 (N * variants,),
    provenance DataFrame with one row per augmented image and columns :data:`PROVENANCE_COLUMNS`;
    ``aug_id`` is ``f"{source_image_id}_aug{variant}"``). Rows are ordered by image, then variant.
    """
    cfg = config if config is not None else StudyConfig()
    variants = cfg.aug_variants if variants is None else int(variants)
    weight_range = _check_weight_range(cfg.aug_weight_range if weight_range is None else weight_range)
    layer = cfg.aug_layer if layer is None else layer
    smooth_sigma = cfg.aug_smooth_sigma if smooth_sigma is None else smooth_sigma
    threshold = cfg.aug_threshold if threshold is None else threshold

    x = _check_image(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"images must be (N, H, W, 1) or (N, H, W); got {np.shape(images)}")
    n = x.shape[0]
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be int class indices of shape ({n},); got {y.dtype} {y.shape}")
    ids = [str(i) for i in image_ids]
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for {n} images")
    if len(set(ids)) != n:
        raise ValueError("image_ids must be unique")
    if variants < 1:
        raise ValueError(f"variants must be >= 1; got {variants}")
    if not maps:
        raise ValueError("maps is empty; expected {method: (N, H, W) maps}")
    unknown = sorted(set(maps) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown map method(s) {unknown}; expected among {METHODS}")
    methods = [m for m in METHODS if m in maps] if methods is None else list(methods)
    missing = [m for m in methods if m not in maps]
    if missing or not methods:
        raise ValueError(f"methods {methods} must be non-empty keys of maps {sorted(maps)}")
    transforms = list(transforms)
    bad = [t for t in transforms if t not in TRANSFORMS]
    if bad or not transforms or len(set(transforms)) != len(transforms):
        raise ValueError(f"transforms must be distinct values among {TRANSFORMS}; got {transforms}")
    raw_maps = {}
    for m in methods:
        mm = np.asarray(maps[m], dtype=np.float32)
        if mm.ndim == 4 and mm.shape[-1] == 1:
            mm = mm[..., 0]
        if mm.shape != x.shape[:3]:
            raise ValueError(f"maps[{m!r}] must be ({n}, H, W) matching images {x.shape}; got "
                             f"{np.shape(maps[m])} (pick one layer with select_layer)")
        raw_maps[m] = mm

    combos = list(itertools.product(methods, transforms))
    rng = np.random.default_rng(seed)
    # A balanced, class-stratified starting combination per image; variants step from there.
    start = np.empty(n, dtype=np.int64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        start[idx[rng.permutation(idx.size)]] = np.arange(idx.size) % len(combos)
    combo_idx = (start[:, None] + np.arange(variants)[None, :]) % len(combos)  # (N, variants)
    combo_idx = combo_idx.reshape(-1)
    src = np.repeat(np.arange(n), variants)
    variant = np.tile(np.arange(variants), n)
    # Weights: one uniform draw per pool slot, used only where the transform is "weighted", so the
    # stream (and every weight) is the same whatever the transform mix.
    lo, hi = weight_range
    draws = rng.uniform(lo, hi, size=src.size).astype(np.float32)
    is_inverted = np.array([combos[c][1] == "inverted" for c in combo_idx], dtype=bool)
    weight = np.where(is_inverted, np.float32(1.0), draws).astype(np.float32)

    # In chunks of pool slots, so masks and temporaries never exceed a chunk's size.
    out = np.empty((src.size,) + x.shape[1:], dtype=np.float32)
    method_of_slot = np.array([combos[c][0] for c in combo_idx])
    for start in range(0, src.size, _POOL_CHUNK):
        for m in methods:
            sel = start + np.flatnonzero(method_of_slot[start:start + _POOL_CHUNK] == m)
            if sel.size:
                mask = prepare_mask(raw_maps[m][src[sel]], smooth_sigma, threshold)
                out[sel] = weighted_obfuscation(x[src[sel]], mask, weight[sel])
    prov = pd.DataFrame({
        "aug_id": [f"{ids[s]}_aug{v}" for s, v in zip(src, variant, strict=True)],
        "source_image_id": [ids[s] for s in src],
        "label": y[src].astype(np.int32),
        "method": [combos[c][0] for c in combo_idx],
        "transform": [combos[c][1] for c in combo_idx],
        "layer": layer,
        "weight": weight.astype(np.float64).round(6),
        "variant": variant.astype(np.int32),
    }, columns=list(PROVENANCE_COLUMNS))
    return out, y[src].astype(np.int32), prov


# ----------------------------------------------------------------------------- DICOM export

#: Attributes copied from the source file: patient, study, frame of reference, equipment and the
#: MR acquisition parameters (the derived image was acquired the same way, then altered).
_COPIED_KEYWORDS = (
    "SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "StationName",
    "MagneticFieldStrength", "ReceiveCoilName", "BodyPartExamined", "PatientPosition",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime", "FlipAngle",
    "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
    "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime",
)
#: MR Image module attributes of type 2 (must be present, may be empty) if the source lacks them.
_TYPE2_MR = ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
             "EchoTime", "EchoTrainLength", "PatientName", "PatientID", "PatientBirthDate",
             "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
             "ReferringPhysicianName", "PositionReferenceIndicator", "Manufacturer")
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: Series numbers of the derived series: 9000 + 10 * method index + transform index + 1.
_SERIES_BASE = 9000


def export_augmented_dicom(
    aug_images: np.ndarray,
    provenance: pd.DataFrame,
    source_paths: Mapping[str, str | Path],
    out_dir: str | Path,
) -> list[Path]:
    """Write each augmented image as a derived MR image a DICOM viewer opens beside its source.

    aug_images: float32 (M, H, W, 1) or (M, H, W) in [0, 1]; provenance: the matching DataFrame from
    :func:`build_augmented_pool`; source_paths: {source_image_id: path of the source DICOM}.
    Each file copies patient, study, frame of reference, equipment and acquisition attributes from
    its source and gets: ImageType ``DERIVED\\SECONDARY``; one new series per (study, method,
    transform, layer), with a deterministic SeriesInstanceUID and the transform named in
    SeriesDescription; the weight in DerivationDescription; the source referenced in
    SourceImageSequence; 16-bit unsigned pixels (12 bits used, 0..4095 for [0, 1]); PixelSpacing
    scaled so the image covers the source's field of view (the model image is a resize of it).
    UIDs are a deterministic function of the source UIDs and the provenance row, so a re-export
    gives identical files. Files are ``out_dir/<aug_id>.dcm``, written atomically.
    Returns the paths in provenance order.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from knee_tf.io import atomic_path

    x = np.asarray(aug_images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"aug_images must be (M, H, W, 1) or (M, H, W); got {np.shape(aug_images)}")
    need = {"aug_id", "source_image_id", "method", "transform", "layer", "weight"}
    missing = sorted(need - set(provenance.columns))
    if missing:
        raise ValueError(f"provenance lacks column(s) {missing}")
    if len(provenance) != x.shape[0]:
        raise ValueError(f"provenance has {len(provenance)} rows for {x.shape[0]} images")
    absent = sorted(set(provenance["source_image_id"].astype(str)) - {str(k) for k in source_paths})
    if absent:
        raise ValueError(f"no source DICOM path for image id(s) {absent[:5]}")
    paths_by_id = {str(k): Path(v) for k, v in source_paths.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    sources: dict[str, Dataset] = {}
    written: list[Path] = []
    instance_in_series: dict[str, int] = {}
    for i, row in enumerate(provenance.itertuples(index=False)):
        sid = str(row.source_image_id)
        if sid not in sources:
            try:
                sources[sid] = pydicom.dcmread(paths_by_id[sid], stop_before_pixels=True)
            except Exception as e:  # pydicom raises several types for unreadable files
                raise ValueError(f"{paths_by_id[sid]}: cannot read source DICOM: {e}") from None
        src = sources[sid]
        method, transform, layer = str(row.method), str(row.transform), str(row.layer)
        if method not in METHODS or transform not in TRANSFORMS:
            raise ValueError(f"provenance row {i}: unknown method/transform {method!r}/{transform!r}")
        study_uid = str(src.get("StudyInstanceUID", "")) or generate_uid(entropy_srcs=[sid])
        series_uid = generate_uid(entropy_srcs=["knee_tf.augment", study_uid, method, transform, layer])
        sop_uid = generate_uid(entropy_srcs=["knee_tf.augment", series_uid, str(row.aug_id)])
        instance_in_series[series_uid] = instance_in_series.get(series_uid, 0) + 1

        ds = Dataset()
        for kw in _COPIED_KEYWORDS:
            if kw in src and src[kw].value not in (None, ""):
                setattr(ds, kw, src[kw].value)
        for kw in _TYPE2_MR:
            if kw not in ds:
                setattr(ds, kw, None)
        ds.StudyInstanceUID = study_uid
        ds.SOPClassUID = _MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.Modality = "MR"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = _SERIES_BASE + 10 * METHODS.index(method) + TRANSFORMS.index(transform) + 1
        ds.InstanceNumber = instance_in_series[series_uid]
        ds.SeriesDescription = f"AUG {transform} {METHOD_NAMES[method]} {layer}"[:64]
        w = float(row.weight)
        ds.DerivationDescription = (
            f"knee_tf.augment {transform}: image * (1 - {w:.3f} * M), M = Model A "
            f"{METHOD_NAMES[method]} map at {layer}"
        )[:1024]
        ds.ImageComments = f"aug_id={row.aug_id} source={sid} weight={w:.4f}"[:10240]
        ref = Dataset()
        ref.ReferencedSOPClassUID = src.get("SOPClassUID", _MR_IMAGE_STORAGE)
        ref.ReferencedSOPInstanceUID = src.get("SOPInstanceUID", generate_uid(entropy_srcs=[sid]))
        ds.SourceImageSequence = DicomSequence([ref])

        img = x[i]
        if not np.all(np.isfinite(img)):
            raise ValueError(f"aug_images[{i}] contains NaN or inf")
        pixels = np.round(np.clip(img, 0.0, 1.0) * 4095.0).astype(np.uint16)
        if "PixelSpacing" in src and "Rows" in src and "Columns" in src:
            sr, sc = (float(v) for v in src.PixelSpacing)
            nr, nc = sr * int(src.Rows) / img.shape[0], sc * int(src.Columns) / img.shape[1]
            ds.PixelSpacing = [round(nr, 6), round(nc, 6)]
            if "ImagePositionPatient" in src and "ImageOrientationPatient" in src:
                # same field of view: the first pixel's centre moves by half the spacing change
                iop = np.asarray([float(v) for v in src.ImageOrientationPatient])
                ipp = np.asarray([float(v) for v in src.ImagePositionPatient])
                ipp = ipp + 0.5 * (nc - sc) * iop[:3] + 0.5 * (nr - sr) * iop[3:]
                ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
        ds.set_pixel_data(pixels, "MONOCHROME2", 12, generate_instance_uid=False)
        ds.WindowCenter = 2048
        ds.WindowWidth = 4096

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        path = out_dir / f"{_safe_name(str(row.aug_id))}.dcm"
        with atomic_path(path, suffix=".dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        written.append(path)
    return written


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)

"""Activation-map augmentation: obfuscate what Model A looks at, keep the label.

Pure functions of ``(image, map, rng)``; nothing here touches a model. The maps come from
:func:`knee_tf.core.cam.compute_cams` (``{method: float32 (N, L, H, W) in [0, 1]}``); pick one layer with
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

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from knee_tf.core.vocab import CAM_METHODS as METHODS
from knee_tf.core.vocab import INVERTED, TRANSFORMS, WEIGHTED

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
    transform: str = WEIGHTED,
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
    if transform == INVERTED:
        return np.ones(n, dtype=np.float32)
    return rng.uniform(lo, hi, size=n).astype(np.float32)


# ----------------------------------------------------------------------------- pool


def select_layer(maps: Mapping[str, np.ndarray], layers: Sequence[str], layer: str) -> dict:
    """One layer out of :func:`knee_tf.core.cam.compute_cams` output.

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


def check_training_images(images, labels, image_ids) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The inputs of an augmentation pool, checked: images float32 (N, H, W, 1) (or (N, H, W)) in
    [0, 1], labels int (N,) class indices, N unique image ids. Returns (x (N, H, W, 1), y, ids);
    raises ValueError saying which argument is wrong."""
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
    return x, y, ids


def build_augmented_pool(
    images: np.ndarray,
    labels: np.ndarray,
    image_ids: Sequence[str],
    maps: Mapping[str, np.ndarray],
    *,
    variants: int,
    weight_range: tuple[float, float],
    layer: str,
    seed: int,
    smooth_sigma: float = 0.0,
    threshold: float = 0.0,
    transforms: Sequence[str] = TRANSFORMS,
    methods: Sequence[str] | None = None,
    dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """The augmented training pool: ``variants`` labelled copies of every image, with provenance.

    images: float32 (N, H, W, 1) or (N, H, W) in [0, 1]; labels: int (N,) class indices (kept);
    image_ids: N unique ids; maps: {method: (N, H, W) or (N, H, W, 1) maps in [0, 1] at ``layer``}
    (see :func:`select_layer`; or a :class:`knee_tf.core.cam.BatchedMaps`, whose rows are computed as the
    pool reads them, image by image in order); variants: copies per image (>= 1); weight_range: (low, high) of the
    weighted transform's w; layer: the maps' layer (recorded in the provenance); seed: the recipe's
    rng; smooth_sigma / threshold: mask preparation (:func:`prepare_mask`; 0 = none).
    transforms / methods: the combinations used (methods default to every key of ``maps``, in
    :data:`METHODS` order). The recipe is in the module docstring. dtype: of the returned images;
    ``np.float16`` stores each float32 result rounded (the values of ``.astype(np.float16)``, without
    a float32 pool ever existing).

    Returns (aug_images ``dtype`` (N * variants, H, W, 1) in [0, 1], aug_labels int32 (N * variants,),
    provenance DataFrame with one row per augmented image and columns :data:`PROVENANCE_COLUMNS`;
    ``aug_id`` is ``f"{source_image_id}_aug{variant}"``). Rows are ordered by image, then variant.
    """
    variants = int(variants)
    weight_range = _check_weight_range(weight_range)

    x, y, ids = check_training_images(images, labels, image_ids)
    n = x.shape[0]
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
        # an array, or an array-like read by rows in ascending order (knee_tf.core.cam.BatchedMaps: made as read)
        mm = maps[m] if getattr(maps[m], "reads_rows", False) else np.asarray(maps[m], dtype=np.float32)
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
    is_inverted = np.array([combos[c][1] == INVERTED for c in combo_idx], dtype=bool)
    weight = np.where(is_inverted, np.float32(1.0), draws).astype(np.float32)

    # In chunks of pool slots, so masks and temporaries never exceed a chunk's size.
    out = np.empty((src.size,) + x.shape[1:], dtype=dtype)
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

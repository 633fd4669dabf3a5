"""The masks of the control arms: what B's gain is compared with at the same augmentation budget.

Model B (:mod:`knee_tf.core.augment`) trains on normal images plus one copy per image obfuscated with
Model A's Grad-CAM / Grad-CAM++ map ``M``: ``image * (1 - w * M)``. Each control below changes only
*where the mask comes from* and feeds the result through the very same recipe
(:func:`knee_tf.core.augment.build_augmented_pool`: the same methods x transforms shares, the same weight
draws, the same number of copies). So every control arm has B's augmentation share, and each
isolates one ingredient of the method:

========================  ==================================================================
arm                       mask (this module)
========================  ==================================================================
``B_random``              :func:`random_placement`: B's own mask, rotated/flipped by a random
                          multiple of 90 degrees and shifted circularly to a random position.
                          The pixels are permuted, so shape, area at every threshold and the
                          histogram of mask values are *exactly* B's; only saliency is lost.
``B_untrained``           Grad-CAM of an untrained network of the same architecture
                          (:func:`untrained_network`; the arm computes its maps with
                          :func:`knee_tf.core.cam.compute_cams`, and the pool takes them as they are).
``erasing``               :func:`matched_rectangles`: one axis-aligned rectangle per image whose
                          pixel count is the mask's mass ``sum(M)`` (generic random erasing, with
                          B's area distribution rather than ``keras.layers.RandomErasing``'s own
                          ``factor`` range, so that only the shape differs).
``B_keep``                :func:`keep_salient`: KeepAugment's opposite hypothesis. B's mask is
                          placed where it overlaps the salient region least, and the salient region
                          (the top ``keep_fraction`` of the map's pixels) is then cut out of it, so
                          the occlusion never touches what Model A looks at.
``mri_aug``               :func:`mri_augment`: no mask; physics corruptions from
                          :mod:`knee_tf.study.corrupt` at training time. The corruptions it trains on,
                          :data:`MRI_AUG_CORRUPTIONS`, are then no longer held out for this arm
                          (``motion_ghosting`` still is).
========================  ==================================================================

Every function is pure: ``(maps or images, rng) -> array``; nothing here trains or predicts (except
:func:`untrained_network`, which builds a model and never fits it). :class:`MasksAsRead` gives the
same masks as the three mask functions, made block by block as a pool reads them, so that a training
set's maps never sit in memory whole.
Maps: float (H, W) or (N, H, W) in [0, 1], one map per image (a method's maps at one layer, as
:func:`knee_tf.core.augment.select_layer` gives them).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from knee_tf.core.arrays import RowBlocks
from knee_tf.core.augment import build_augmented_pool, check_training_images
from knee_tf.core.cam import BatchedMaps
from knee_tf.core.model import build_lenet
from knee_tf.core.vocab import B_KEEP, B_RANDOM, B_UNTRAINED, ERASING, MRI_AUG
from knee_tf.study.config import StudyConfig
from knee_tf.study.corrupt import CORRUPTIONS, SEVERITIES

#: The held-out corruptions ``mri_aug`` trains on (so they are in distribution for that arm only).
#: Motion ghosting stays held out: a k-space artefact, not a receive-chain one.
MRI_AUG_CORRUPTIONS: tuple[str, ...] = ("bias_field", "coil_dropout", "rician_noise")
assert set(MRI_AUG_CORRUPTIONS) <= set(CORRUPTIONS)
#: erasing: the rectangle's aspect ratio h / w is drawn log-uniformly from this range (RandomErasing's
#: usual 0.3 .. 3.3).
ASPECT_RANGE: tuple[float, float] = (0.3, 1 / 0.3)
#: B_keep: the share of a map's pixels (its highest values) that form the salient region kept intact.
KEEP_FRACTION = 0.2
#: B_keep: the mask goes to a random one of the circular shifts whose overlap with the salient region
#: lies within this lowest quantile of all shifts' overlaps.
KEEP_SHIFT_QUANTILE = 0.05
_CHUNK = 256


# ----------------------------------------------------------------------------- checks


def _as_maps(maps, what: str = "maps") -> tuple[np.ndarray, tuple[int, ...]]:
    """float32 (N, H, W) view of maps given as (H, W) or (N, H, W); returns it and the input shape."""
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 2:
        b = m[None]
    elif m.ndim == 3:
        b = m
    else:
        raise ValueError(f"{what} must be (H, W) or (N, H, W); got {m.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{what} contain NaN or inf")
    if b.size and (b.min() < -1e-4 or b.max() > 1 + 1e-4):
        raise ValueError(f"{what} values must lie in [0, 1]; got [{b.min():.4g}, {b.max():.4g}]")
    return np.clip(b, 0.0, 1.0), m.shape


def _dihedral(m: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """One map (H, W) rotated by k * 90 degrees, then flipped left-right if ``flip``."""
    out = np.rot90(m, k)
    return out[:, ::-1] if flip else out


def _draw_orientation(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-map rotation k (multiples of 90 degrees; only 0 or 2 when the map is not square) and flip."""
    k = rng.integers(0, 4, size=n) if h == w else 2 * rng.integers(0, 2, size=n)
    flip = rng.integers(0, 2, size=n).astype(bool)
    return k, flip


# ----------------------------------------------------------------------------- B_random


def random_placement(maps, rng: np.random.Generator) -> np.ndarray:
    """B_random: each mask rotated/flipped at random and shifted circularly to a random position.

    maps: float (H, W) or (N, H, W) in [0, 1]; rng: draws, per map, a rotation by a multiple of 90
    degrees (0 or 180 for a non-square map), a left-right flip and a shift (uniform over all H x W
    circular offsets). The output is a permutation of each map's pixels: the same values, so the same
    mass, the same area above any threshold, and the same shape on the torus (a blob crossing the
    border reappears at the opposite side). Returns float32, the input's shape, in [0, 1].
    """
    b, shape = _as_maps(maps)
    return _place(b, _draw_placement(rng, *b.shape)).reshape(shape)


def _draw_placement(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    """B_random's draws for n maps: orientation (k, flip), then the shifts dy, dx (in this order)."""
    k, flip = _draw_orientation(rng, n, h, w)
    return k, flip, rng.integers(0, h, size=n), rng.integers(0, w, size=n)


def _place(b: np.ndarray, draws: tuple[np.ndarray, ...]) -> np.ndarray:
    """:func:`random_placement` of maps ``b`` (float32 (n, H, W), changed in place) with their draws."""
    k, flip, dy, dx = draws
    for i in range(len(b)):  # each map's result depends on that map and its draws alone
        b[i] = np.roll(_dihedral(b[i], int(k[i]), bool(flip[i])), (int(dy[i]), int(dx[i])), axis=(0, 1))
    return b


# ----------------------------------------------------------------------------- B_untrained


def untrained_network(input_shape, conv_filters: Sequence[int], dense_units: Sequence[int], seed: int):
    """B_untrained's source of maps: the study's LeNet with its seeded initial weights, never trained.

    input_shape: (H, W, 1); conv_filters / dense_units: the architecture (``StudyConfig``'s); seed:
    the initialisation seed (the arm's training seed: these are the weights Model A of that seed
    starts its training from, :func:`knee_tf.core.model.build_lenet`). Its Grad-CAM maps
    (:func:`knee_tf.core.cam.compute_cams`, predicted class) replace Model A's in B's recipe. Maps that come
    out all zero are counted by ``CamResult.n_zero`` and leave their copies unchanged.
    Returns an uncompiled keras.Model.
    """
    return build_lenet(tuple(input_shape), 2, tuple(conv_filters), tuple(dense_units), name=f"untrained_seed{seed}",
                       seed=int(seed))


# ----------------------------------------------------------------------------- erasing


def matched_rectangles(maps, rng: np.random.Generator, aspect_range: tuple[float, float] = ASPECT_RANGE) -> np.ndarray:
    """erasing: one binary rectangle per map, covering as many pixels as the map's mass ``sum(M)``.

    maps: float (H, W) or (N, H, W) in [0, 1] (B's masks: the area distribution to match);
    rng: draws per map the aspect ratio h / w (log-uniform in ``aspect_range``) and the position
    (uniform over the positions where the rectangle fits). The pixel count is ``round(sum(M))`` up to
    the rounding of one side (at most half the other side's length), capped at H x W; a map of mass
    below 0.5 gives an empty mask. Returns float32 {0, 1}, the input's shape.
    """
    b, shape = _as_maps(maps)
    return _rectangles(b, _draw_rectangles(rng, *b.shape, aspect_range=aspect_range)).reshape(shape)


def _draw_rectangles(rng: np.random.Generator, n: int, h: int, w: int,
                     aspect_range: tuple[float, float] = ASPECT_RANGE) -> tuple[np.ndarray, ...]:
    """erasing's draws for n maps: the aspect ratio, then the position (u, two per map)."""
    lo, hi = (float(v) for v in aspect_range)
    if not 0 < lo <= hi:
        raise ValueError(f"aspect_range must satisfy 0 < low <= high; got {aspect_range!r}")
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=n)), rng.uniform(size=(n, 2))


def _rectangles(b: np.ndarray, draws: tuple[np.ndarray, ...]) -> np.ndarray:
    """:func:`matched_rectangles` of maps ``b`` (float32 (n, H, W)) with their draws: new float32 masks."""
    aspect, u = draws
    n, h, w = b.shape
    area = np.minimum(np.rint(b.sum(axis=(1, 2), dtype=np.float64)), h * w)
    out = np.zeros((n, h, w), dtype=np.float32)
    for i in range(n):
        if area[i] < 1:
            continue
        rh = int(np.clip(np.rint(np.sqrt(area[i] * aspect[i])), 1, h))
        rw = int(np.clip(np.rint(area[i] / rh), 1, w))
        if rw == w:  # too wide for the image: make it taller instead
            rh = int(np.clip(np.rint(area[i] / w), 1, h))
        y0 = int(u[i, 0] * (h - rh + 1))
        x0 = int(u[i, 1] * (w - rw + 1))
        out[i, y0:y0 + rh, x0:x0 + rw] = 1.0
    return out


def mask_areas(maps) -> np.ndarray:
    """The mass ``sum(M)`` of each map, in pixels: float64 (N,) (a scalar's worth for one (H, W) map)."""
    b, _ = _as_maps(maps)
    return b.sum(axis=(1, 2), dtype=np.float64)


# ----------------------------------------------------------------------------- B_keep


def salient_region(maps, keep_fraction: float = KEEP_FRACTION) -> np.ndarray:
    """The pixels B_keep protects: each map's top ``keep_fraction`` of pixels (by value, ties
    included), and only pixels with a value above 0 (an all-zero map has no salient region).

    maps: float (H, W) or (N, H, W) in [0, 1]. Returns bool, the input's shape.
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must lie in [0, 1]; got {keep_fraction}")
    b, shape = _as_maps(maps)
    if keep_fraction == 0:
        return np.zeros(shape, dtype=bool)
    t = np.quantile(b.reshape(len(b), -1), 1.0 - keep_fraction, axis=1, method="higher")
    return ((b >= t[:, None, None]) & (b > 0)).reshape(shape)


def keep_salient(maps, rng: np.random.Generator, keep_fraction: float = KEEP_FRACTION,
                 shift_quantile: float = KEEP_SHIFT_QUANTILE) -> np.ndarray:
    """B_keep: B's mask moved away from the salient region, which is then cut out of it.

    maps: float (H, W) or (N, H, W) in [0, 1] -- both the mask to place and the saliency that defines
    the protected region (:func:`salient_region`). Per map the rng draws an orientation (as
    :func:`random_placement`) and one of the circular shifts whose overlap ``sum(M_shifted * S)`` is
    within the lowest ``shift_quantile`` of all H x W shifts (every overlap at once, by FFT); the
    placed mask is then set to 0 on the salient region S. So an image obfuscated with it is unchanged
    on S, exactly, and the mask keeps B's shape and most of its mass elsewhere.
    Returns float32, the input's shape, in [0, 1].
    """
    b, shape = _as_maps(maps)
    return _keep(b, _draw_keep(rng, *b.shape), keep_fraction, shift_quantile).reshape(shape)


def _draw_keep(rng: np.random.Generator, n: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    """B_keep's draws for n maps: orientation (k, flip), then u, which picks among the low-overlap shifts."""
    k, flip = _draw_orientation(rng, n, h, w)
    return k, flip, rng.uniform(size=n)


def _keep(b: np.ndarray, draws: tuple[np.ndarray, ...], keep_fraction: float = KEEP_FRACTION,
          shift_quantile: float = KEEP_SHIFT_QUANTILE) -> np.ndarray:
    """:func:`keep_salient` of maps ``b`` (float32 (n, H, W)) with their draws: new float32 masks. The
    overlaps are computed ``_CHUNK`` maps at a time from the first map on (so a block of ``_CHUNK``
    maps that starts at a multiple of ``_CHUNK`` is transformed exactly as inside all N maps)."""
    if not 0.0 <= shift_quantile <= 1.0:
        raise ValueError(f"shift_quantile must lie in [0, 1]; got {shift_quantile}")
    k, flip, u = draws
    keep = salient_region(b, keep_fraction)
    n, h, w = b.shape
    out = np.empty_like(b)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        oriented = np.stack([_dihedral(b[i], int(k[i]), bool(flip[i])) for i in range(sl.start, sl.stop)])
        s = keep[sl].astype(np.float32)
        # overlap[d] = sum_x S(x) * M(x - d): circular cross-correlation of S with M.
        overlap = np.fft.irfft2(np.fft.rfft2(s) * np.conj(np.fft.rfft2(oriented)), s=(h, w))
        flat = overlap.reshape(len(s), -1)
        cut = np.quantile(flat, shift_quantile, axis=1, method="higher")
        for j, i in enumerate(range(sl.start, sl.stop)):
            ok = np.flatnonzero(flat[j] <= cut[j] + 1e-6)
            d = int(ok[min(int(u[i] * ok.size), ok.size - 1)])
            placed = np.roll(oriented[j], (d // w, d % w), axis=(0, 1))
            out[i] = np.where(keep[i], 0.0, placed)
    return out


# ----------------------------------------------------------------------------- masks as read

#: The controls whose masks are made from a map, by arm: (draws for N maps, masks of maps with their draws).
_MASKS = {B_RANDOM: (_draw_placement, _place), ERASING: (_draw_rectangles, _rectangles),
          B_KEEP: (_draw_keep, _keep)}
MASK_ARMS: tuple[str, ...] = tuple(_MASKS)


class MasksAsRead:
    """One method's control masks (``arm`` in :data:`MASK_ARMS`) of ``maps``, made block by block as
    their rows are read, so that the N x H x W masks (and maps) are never in memory at once.

    maps: float32 (N, H, W) in [0, 1], an array or an array-like read by rows (e.g. one method of
    :class:`knee_tf.core.cam.BatchedMaps`). Every draw is taken here, for all N maps, exactly as
    :func:`random_placement`, :func:`matched_rectangles` or :func:`keep_salient` take them from
    ``rng``; block k (maps [k * block, (k + 1) * block)) is then made as those functions make it, so
    each mask is the same float32 value as theirs on all N maps. Only the blocks of the rows last read
    are kept. Reads like an array of shape (N, H, W) (``reads_rows``:
    :func:`knee_tf.core.augment.build_augmented_pool` reads it by rows).
    """

    dtype = np.dtype(np.float32)
    ndim = 3
    reads_rows = True

    def __init__(self, arm: str, maps, rng: np.random.Generator, block: int = _CHUNK):
        if arm not in _MASKS:
            raise ValueError(f"arm {arm!r} makes no mask from a map; expected one of {list(MASK_ARMS)}")
        if len(np.shape(maps)) != 3:
            raise ValueError(f"maps must be (N, H, W); got {np.shape(maps)}")
        if block % _CHUNK:
            raise ValueError(f"block must be a multiple of {_CHUNK}; got {block}")
        draw, make = _MASKS[arm]
        self.maps, self.block = maps, int(block)
        self.draws = draw(rng, *self.shape)
        self._blocks = RowBlocks(len(self), self.block,
                                 lambda a, b: make(_as_maps(self.maps[a:b])[0], tuple(d[a:b] for d in self.draws)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in np.shape(self.maps))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        picked = np.arange(len(self))[rows]
        out = self._blocks.read(np.atleast_1d(picked), lambda masks, local: masks[local], self.shape[1:])
        return out if picked.ndim else out[0]


# ----------------------------------------------------------------------------- mri_aug

MRI_AUG_PROVENANCE_COLUMNS: tuple[str, ...] = ("aug_id", "source_image_id", "label", "corruption", "severity")


def mri_augment(images, labels, image_ids, rng: np.random.Generator,
                corruptions: Sequence[str] = MRI_AUG_CORRUPTIONS,
                severities: Sequence[int] = SEVERITIES) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """mri_aug's pool: one physics-corrupted copy of every training image (B's augmentation share).

    images: float32 (N, H, W, 1) in [0, 1]; labels: int (N,) (kept); image_ids: N ids; rng: draws
    each image's corruption (equal shares within each class, as B's recipe balances its
    combinations), its severity (uniform over ``severities``) and the corruption's own parameters
    (one child generator per image). corruptions: names in :data:`knee_tf.study.corrupt.CORRUPTIONS`.
    Returns (images float32 (N, H, W, 1) in [0, 1], labels int32 (N,), provenance DataFrame with
    :data:`MRI_AUG_PROVENANCE_COLUMNS`; ``aug_id`` is ``f"{source_image_id}_aug0"``).
    """
    x, y, ids = check_training_images(images, labels, image_ids)
    n = len(x)
    corruptions = list(corruptions)
    bad = [c for c in corruptions if c not in CORRUPTIONS]
    if bad or not corruptions:
        raise ValueError(f"corruptions must be names among {sorted(CORRUPTIONS)}; got {corruptions}")
    severities = [int(s) for s in severities]
    if not severities or any(s not in SEVERITIES for s in severities):
        raise ValueError(f"severities must lie in {SEVERITIES}; got {severities}")
    which = np.empty(n, dtype=np.int64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        which[idx[rng.permutation(idx.size)]] = np.arange(idx.size) % len(corruptions)
    sev = np.asarray(severities)[rng.integers(0, len(severities), size=n)]
    children = rng.spawn(n)
    out = np.empty_like(x)
    for i in range(n):
        out[i] = CORRUPTIONS[corruptions[which[i]]](x[i], int(sev[i]), children[i])
    prov = pd.DataFrame({"aug_id": [f"{s}_aug0" for s in ids], "source_image_id": ids,
                         "label": y.astype(np.int32), "corruption": [corruptions[c] for c in which],
                         "severity": sev.astype(np.int32)}, columns=list(MRI_AUG_PROVENANCE_COLUMNS))
    return out, y.astype(np.int32), prov


def control_pool(arm: str, model_a, images: np.ndarray, labels: np.ndarray, image_ids, cfg: StudyConfig,
                 seed: int, progress: bool = True, dtype=np.float32) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """A control arm's augmented pool (this module's masks): B's recipe, another mask.

    The recipe (:func:`knee_tf.core.augment.build_augmented_pool` with the config's ``aug_*`` settings and
    ``seed``) is B's, so each copy gets the same method, transform and weight as in B's pool of the
    same seed; only the mask differs. The masks' own draws (positions, rectangles) use a generator
    seeded by ``seed`` and the arm's name. arm: ``B_random``, ``erasing`` or ``B_keep`` (masks made
    from Model A's maps, ``model_a`` required), ``B_untrained`` (maps of
    :func:`untrained_network` initialised with ``seed``; ``model_a`` unused) or
    ``mri_aug`` (physics corruptions, no maps). images: float32 (N, H, W, 1); labels int (N,); image_ids.
    dtype: of the pool images made from maps (:func:`knee_tf.study.experiment.augmented_pool`; mri_aug's stay float32). The maps
    and masks are made batch by batch as the pool reads them (:class:`knee_tf.core.cam.BatchedMaps`,
    :class:`MasksAsRead`), never N x H x W at once; progress: unused.
    Returns (pool images (N * aug_variants, H, W, 1) (N float32 for mri_aug), labels int32, provenance).
    """
    rng = np.random.default_rng([int(seed), zlib.crc32(arm.encode())])
    if arm == MRI_AUG:
        return mri_augment(images, labels, image_ids, rng, severities=cfg.severities)
    if arm == B_UNTRAINED:
        source = untrained_network(images.shape[1:], cfg.conv_filters, cfg.dense_units, seed)
    elif arm not in _MASKS:
        raise ValueError(f"unknown control arm {arm!r}; expected {MRI_AUG!r}, {B_UNTRAINED!r} or one of {list(MASK_ARMS)}")
    elif model_a is None:
        raise ValueError(f"arm {arm!r} makes its masks from Model A's maps: model_a is required")
    else:
        source = model_a
    # maps made one CAM batch at a time as the pool reads them, and masks one block at a time
    # (MasksAsRead: every method's draws taken first, in method order, as on whole arrays)
    maps = BatchedMaps(source, images, cfg.aug_layer, cfg.cam_methods, None, cfg.cam_batch_size)
    if arm != B_UNTRAINED:
        maps = {m: MasksAsRead(arm, maps[m], rng) for m in cfg.cam_methods}
    return build_augmented_pool(images, labels, image_ids, maps, variants=cfg.aug_variants,
                                weight_range=cfg.aug_weight_range, layer=cfg.aug_layer, seed=seed,
                                smooth_sigma=cfg.aug_smooth_sigma, threshold=cfg.aug_threshold, dtype=dtype)

"""The premise of the augmentation, measured on Model A alone: is A fooled by masks made from its own maps?

The paper's Model A lost 15.6 points on its own CAM corruptions (cohort 3); the study's loses far
less. This module measures why, as a dose-response over every knob of the mask
(:func:`knee_tf.core.augment.prepare_mask` and :func:`knee_tf.core.augment.weighted_obfuscation`):

* :func:`mask_design` -- the declared conditions: layer x method x weight w (w = 1 is the
  *inverted* transform, w < 1 the *weighted* one) with raw maps, plus a smoothing x threshold sweep
  at one layer;
* :func:`dose_response` -- for each condition, Model A's call on ``image * (1 - w * M)`` beside its
  call on the clean image, per image: correct, flipped (the call changed), and the mask's dose
  (share of the image, of the limb and of the signal it removes); :func:`summarise_outcomes` turns
  that into accuracy, accuracy drop and flip rate overall, per class and per plane;
* :func:`deletion_comparison` -- does A rely on evidence outside its map? Deleting the top-k % of
  map pixels against deleting the same share of random pixels and of the *inverse* map's top pixels
  (:func:`knee_tf.core.faithfulness.faithfulness_curves`), as target probability and flip rate;
* :func:`limb_mask` and :func:`map_coverage` -- how much of the limb a map covers.

Maps explain A's *predicted* class (as in cohort 3); a flip is a change of A's call, whatever the
truth. The limb mask is a plain image threshold: the image Gaussian-smoothed (sigma
:data:`LIMB_SMOOTH_SIGMA` px), pixels above :data:`LIMB_LEVEL` times its 99th percentile, a binary
opening (3 x 3: no one-pixel threads such as a table line), the largest connected component, holes
filled. It marks the limb (the other leg only where it touches), about one pixel generous at the
skin; on a slice that cuts little tissue it can be small or pick the brighter leg.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from knee_tf.core.augment import prepare_mask, weighted_obfuscation
from knee_tf.core.faithfulness import RANDOM_METHOD, faithfulness_curves
from knee_tf.core.model import check_images, predict_proba
from knee_tf.core.vocab import CLASSES, INVERTED, RELEVANT, WEIGHTED, encode_labels, predicted_class
from knee_tf.study.config import StudyConfig

#: Limb mask: Gaussian pre-smoothing (pixels) and level (share of the smoothed image's 99th percentile).
LIMB_SMOOTH_SIGMA = 1.0
LIMB_LEVEL = 0.1
#: A pixel counts as covered by a map where the map is at least this (:func:`map_coverage`).
COVER_LEVEL = 0.5
#: Suffix of the inverse map's method name in :func:`deletion_comparison` (``1 - M``).
INVERSE_SUFFIX = "_inverse"
#: The columns :func:`dose_response` returns, one row per (condition, image).
OUTCOME_COLUMNS: tuple[str, ...] = (
    "layer", "method", "transform", "weight", "smooth_sigma", "threshold", "image_id", "label", "plane",
    "base_correct", "correct", "flipped", "area_image", "area_limb", "signal_removed")
#: What :func:`summarise_outcomes` groups by besides the condition: every image, class, plane.
GROUPINGS: tuple[str, ...] = ("all", "label", "plane")


@dataclass(frozen=True)
class MaskSpec:
    """One mask condition: M = prepare_mask(map of ``method`` at ``layer``, smooth_sigma, threshold),
    image -> image * (1 - weight * M). ``transform``: inverted at weight 1, weighted below."""

    layer: str
    method: str
    weight: float
    smooth_sigma: float = 0.0
    threshold: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"mask weight must lie in [0, 1]; got {self.weight}")

    @property
    def transform(self) -> str:
        return INVERTED if self.weight == 1.0 else WEIGHTED


def cohort3_spec(cfg: StudyConfig) -> MaskSpec:
    """The study's cohort-3 (``cam``) corruption as a MaskSpec: ``cfg.cohort3_method`` at
    ``cfg.aug_layer``, w = ``cfg.cohort3_weight``, the augmentation's smoothing and threshold."""
    return MaskSpec(cfg.aug_layer, cfg.cohort3_method, float(cfg.cohort3_weight), float(cfg.aug_smooth_sigma),
                    float(cfg.aug_threshold))


def mask_design(layers: Sequence[str], methods: Sequence[str], weights: Sequence[float],
                smooth_sigmas: Sequence[float] = (), thresholds: Sequence[float] = (),
                sweep_layer: str = "", sweep_weights: Sequence[float] = ()) -> list[MaskSpec]:
    """The declared conditions: every (layer, method, weight) with raw maps (sigma 0, threshold 0),
    then, at ``sweep_layer`` (when given), every (method, sigma, threshold, weight in
    ``sweep_weights``) other than sigma = threshold = 0. Returns distinct MaskSpecs in that order."""
    specs = [MaskSpec(la, m, float(w)) for la, m, w in itertools.product(layers, methods, weights)]
    if sweep_layer:
        if sweep_layer not in layers:
            raise ValueError(f"sweep_layer {sweep_layer!r} is not among the layers {list(layers)}")
        for m, s, t, w in itertools.product(methods, smooth_sigmas, thresholds, sweep_weights):
            if s or t:
                specs.append(MaskSpec(sweep_layer, m, float(w), float(s), float(t)))
    return list(dict.fromkeys(specs))


def limb_mask(images, level: float = LIMB_LEVEL, smooth_sigma: float = LIMB_SMOOTH_SIGMA) -> np.ndarray:
    """The limb in each image (see the module docstring): images float32 (N, H, W, 1) or (N, H, W)
    in [0, 1] -> bool (N, H, W). An image with nothing above the level gets an empty mask."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W, 1) or (N, H, W); got {np.shape(images)}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    out = np.zeros(x.shape, dtype=bool)
    for i, img in enumerate(x):
        s = ndimage.gaussian_filter(img, smooth_sigma) if smooth_sigma > 0 else img
        ref = float(np.percentile(s, 99))
        if ref <= 0:
            continue
        lab, n = ndimage.label(ndimage.binary_opening(s > level * ref))  # opening: no 1-px threads
        if n:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0  # the background
            out[i] = ndimage.binary_fill_holes(lab == int(np.argmax(sizes)))
    return out


def _check_maps(maps, n: int, hw: tuple[int, int], what: str = "maps") -> np.ndarray:
    m = np.asarray(maps, dtype=np.float32)
    if m.shape != (n, *hw):
        raise ValueError(f"{what} must be (N, H, W) = {(n, *hw)}; got {m.shape}")
    return m


def mask_doses(images, masks, weight, limb) -> dict[str, np.ndarray]:
    """How much a prepared mask removes, per image. images float32 (N, H, W, 1) in [0, 1]; masks
    float32 (N, H, W) in [0, 1]; weight: scalar w; limb: bool (N, H, W).

    Returns {"area_image", "area_limb", "signal_removed"}: float64 (N,) each, the mean of w*M over
    the image, over the limb (NaN for an empty limb), and the share of the image's summed intensity
    removed, sum(x * w*M) / sum(x) (NaN for an all-black image)."""
    x = np.asarray(images, dtype=np.float32)[..., 0]
    d = float(weight) * _check_maps(masks, len(x), x.shape[1:], "masks").astype(np.float64)
    lm = _check_maps(limb, len(x), x.shape[1:], "limb").astype(bool)
    n_limb = lm.sum(axis=(1, 2))
    total = x.sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"area_image": d.mean(axis=(1, 2)),
                "area_limb": np.where(n_limb > 0, (d * lm).sum(axis=(1, 2)) / n_limb, np.nan),
                "signal_removed": np.where(total > 0, (d * x).sum(axis=(1, 2)) / total, np.nan)}


def _map_of(cams: Mapping, layers: Sequence[str], method: str, layer: str) -> np.ndarray:
    if method not in cams:
        raise ValueError(f"no {method!r} maps; computed methods: {sorted(cams)}")
    if layer not in layers:
        raise ValueError(f"no maps at layer {layer!r}; computed layers: {list(layers)}")
    return np.asarray(cams[method])[:, list(layers).index(layer)]


def dose_response(model, images, index: pd.DataFrame, cams: Mapping, layers: Sequence[str],
                  specs: Sequence[MaskSpec], limb=None, batch_size: int = 256,
                  progress=None) -> pd.DataFrame:
    """Model A's calls on its own masked images, one row per (condition, image).

    images: float32 (N, H, W, 1) in [0, 1]; index: N rows with ``image_id``, ``label`` (class
    names) and ``plane``; cams: {method: float32 (N, L, H, W)} A's maps of these images for its
    predicted class (:func:`knee_tf.core.cam.compute_cams`), at ``layers``; specs: the conditions
    (:func:`mask_design`); limb: bool (N, H, W) (default :func:`limb_mask` of the images);
    progress: None, or a callable wrapping the specs (e.g. ``tqdm``).
    Returns a DataFrame with :data:`OUTCOME_COLUMNS`: base_correct / correct / flipped are bool
    (A right on the clean / masked image, A's call changed), the doses float64 (:func:`mask_doses`).
    """
    x = check_images(images, model)
    n = len(x)
    if len(index) != n or not {"image_id", "label", "plane"} <= set(index.columns):
        raise ValueError(f"index must have {n} rows with columns image_id, label, plane; "
                         f"got {len(index)} rows, columns {list(index.columns)}")
    y = encode_labels(index["label"])
    limb = limb_mask(x) if limb is None else _check_maps(limb, n, x.shape[1:3], "limb").astype(bool)
    base = predicted_class(predict_proba(model, x, batch_size)[:, 1])
    frames = []
    for spec in (progress(specs) if progress else specs):
        mask = prepare_mask(_map_of(cams, layers, spec.method, spec.layer), spec.smooth_sigma, spec.threshold)
        pred = predicted_class(predict_proba(model, weighted_obfuscation(x, mask, spec.weight), batch_size)[:, 1])
        frames.append(pd.DataFrame({
            **asdict(spec), "transform": spec.transform, "image_id": index["image_id"].to_numpy(),
            "label": index["label"].to_numpy(), "plane": index["plane"].to_numpy(),
            "base_correct": base == y, "correct": pred == y, "flipped": pred != base,
            **mask_doses(x, mask, spec.weight, limb)}))
    if not frames:
        raise ValueError("specs is empty; expected at least one MaskSpec")
    return pd.concat(frames, ignore_index=True)[list(OUTCOME_COLUMNS)]


def summarise_outcomes(outcomes: pd.DataFrame, groupings: Sequence[str] = GROUPINGS) -> pd.DataFrame:
    """Accuracy, drop and flip rate per condition and group, from :func:`dose_response`'s rows.

    Returns one row per (condition, grouping, group): the condition's columns, ``grouping`` ("all",
    "label" or "plane"), ``group`` (the class or plane; "all"), n, base_accuracy, accuracy,
    accuracy_drop (base - masked, in accuracy units), flip_rate, and the mean doses. Classes and
    planes come in vocabulary order (classes first as in :data:`knee_tf.core.vocab.CLASSES`)."""
    spec_cols = ["layer", "method", "transform", "weight", "smooth_sigma", "threshold"]
    rows = []
    for grouping in groupings:
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping {grouping!r} is not one of {GROUPINGS}")
        keys = spec_cols + ([] if grouping == "all" else [grouping])
        g = outcomes.groupby(keys, sort=False, dropna=False).agg(
            n=("correct", "size"), base_accuracy=("base_correct", "mean"), accuracy=("correct", "mean"),
            flip_rate=("flipped", "mean"), area_image=("area_image", "mean"),
            area_limb=("area_limb", "mean"), signal_removed=("signal_removed", "mean")).reset_index()
        g.insert(len(spec_cols), "grouping", grouping)
        g.insert(len(spec_cols) + 1, "group", "all" if grouping == "all" else g.pop(grouping))
        rows.append(g)
    out = pd.concat(rows, ignore_index=True)
    out.insert(out.columns.get_loc("accuracy") + 1, "accuracy_drop", out["base_accuracy"] - out["accuracy"])
    return out


def map_coverage(cams: Mapping, layers: Sequence[str], limb, level: float = COVER_LEVEL) -> pd.DataFrame:
    """How much of the limb each map covers, per image.

    cams: {method: float32 (N, L, H, W) in [0, 1]}; limb: bool (N, H, W). Returns one row per
    (method, layer, image): ``limb_covered`` (share of limb pixels with M >= level), ``limb_removed``
    (mean of M over the limb: the share of the limb an inverted mask removes), ``mass_on_limb``
    (share of the map's sum inside the limb) and ``image_area`` (mean of M over the image); limb
    shares are NaN for an empty limb, mass_on_limb for an all-zero map."""
    lm = np.asarray(limb, dtype=bool)
    n_limb = lm.sum(axis=(1, 2))
    frames = []
    for method, maps in cams.items():
        for k, layer in enumerate(layers):
            m = _check_maps(np.asarray(maps)[:, k], len(lm), lm.shape[1:]).astype(np.float64)
            mass = m.sum(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                frames.append(pd.DataFrame({
                    "method": method, "layer": layer, "image": np.arange(len(lm)),
                    "limb_covered": np.where(n_limb > 0, ((m >= level) & lm).sum(axis=(1, 2)) / n_limb, np.nan),
                    "limb_removed": np.where(n_limb > 0, (m * lm).sum(axis=(1, 2)) / n_limb, np.nan),
                    "mass_on_limb": np.where(mass > 0, (m * lm).sum(axis=(1, 2)) / mass, np.nan),
                    "image_area": m.mean(axis=(1, 2))}))
    return pd.concat(frames, ignore_index=True)


def summarise_coverage(coverage: pd.DataFrame, planes) -> pd.DataFrame:
    """Mean coverage per (layer, method), over every image and per plane.

    coverage: :func:`map_coverage`'s rows; planes: (N,) the plane of each image. Returns columns
    layer, method, grouping ("all" | "plane"), group, n, n_empty_limb, limb_covered, limb_removed,
    mass_on_limb, image_area (means over the images where they are defined)."""
    metrics = ["limb_covered", "limb_removed", "mass_on_limb", "image_area"]
    c = coverage.assign(plane=np.asarray(planes)[coverage["image"].to_numpy()], all="all",
                        empty=coverage["limb_removed"].isna())
    parts = []
    for grouping, key in (("all", "all"), ("plane", "plane")):
        g = c.groupby(["layer", "method", key], sort=False).agg(
            n=("image", "size"), n_empty_limb=("empty", "sum"), **{m: (m, "mean") for m in metrics})
        parts.append(g.reset_index().rename(columns={key: "group"}).assign(grouping=grouping))
    return pd.concat(parts, ignore_index=True)[["layer", "method", "grouping", "group", "n", "n_empty_limb", *metrics]]


def deletion_comparison(model, images, maps, name: str, steps: int = 20, seed: int = 0,
                        batch_size: int = 256, progress: bool = False) -> pd.DataFrame:
    """Deleting (to black) the top-k % of map pixels, of the inverse map's and of random pixels.

    images: float32 (N, H, W, 1) in [0, 1]; maps: float32 (N, H, W) in [0, 1], A's maps for its
    predicted class; name: the maps' method name (the inverse is ``name + INVERSE_SUFFIX``, ranked
    by 1 - M; random is :data:`knee_tf.core.faithfulness.RANDOM_METHOD`). Uses
    :func:`knee_tf.core.faithfulness.faithfulness_curves` (deletion baseline "zero", ties broken by
    its seeded permutation), targets = A's predicted class. Returns one row per (ranking, fraction):
    ``ranking``, ``fraction`` (share of pixels deleted), ``target_prob`` (mean probability of A's
    clean call), ``flip_rate`` (share of images whose call changed) and ``n``.
    """
    x = check_images(images, model)
    m = _check_maps(maps, len(x), x.shape[1:3])
    targets = predicted_class(predict_proba(model, x, batch_size)[:, 1]).astype(np.int32)
    curves = faithfulness_curves(model, x, {name: m[:, None], name + INVERSE_SUFFIX: 1.0 - m[:, None]},
                                 layers=("map",), targets=targets, steps=steps, deletion_baseline="zero",
                                 seed=seed, batch_size=batch_size, progress=progress)
    rows = []
    for ranking in (name, name + INVERSE_SUFFIX, RANDOM_METHOD):
        p_target = curves.deletion[ranking][:, 0]  # (N, S)
        p_relevant = np.where(targets[:, None] == CLASSES.index(RELEVANT), p_target, 1.0 - p_target)
        flipped = predicted_class(p_relevant) != targets[:, None]
        rows.append(pd.DataFrame({"ranking": ranking, "fraction": curves.fractions.astype(np.float64),
                                  "target_prob": p_target.mean(axis=0), "flip_rate": flipped.mean(axis=0),
                                  "n": len(x)}))
    return pd.concat(rows, ignore_index=True)

"""Does a map point at what the model uses? Deletion and insertion curves (Petsiuk et al., RISE 2018).

For every image, map (one per method and layer) and fraction f in ``fractions``:

* deletion: the top-f share of pixels, ranked by the map, is replaced by the *deletion baseline*
  (default ``"zero"``: black, the background of an MR image); a faithful map makes the target
  class's probability fall quickly, so a LOW deletion AUC is good;
* insertion: starting from the *insertion baseline* (default ``"blur"``: the image Gaussian-blurred,
  which removes detail without adding edges), the top-f share of pixels is restored from the image;
  a faithful map makes the probability rise quickly, so a HIGH insertion AUC is good.

The score is the softmax probability of the target class (the class the maps explain). Pixels are
ranked by map value; ties (e.g. the flat zero part of a ReLU'd map) are broken by one seeded random
permutation, so an all-zero map behaves like a random one. AUCs are trapezoids over f in [0, 1].
A seeded uniform random map is scored alongside, as the chance reference (method ``"random"``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from knee_tf.core.model import check_images, predict_proba
from knee_tf.core.vocab import check_targets, predicted_class

#: Method name of the seeded uniform random reference map.
RANDOM_METHOD = "random"
#: Layer name given to the random reference in tables (it belongs to no layer).
NO_LAYER = "none"


def baseline_images(images, kind="zero", blur_sigma: float | None = None) -> np.ndarray:
    """What removed pixels become: images float32 (N, H, W, C) -> float32 (N, H, W, C).

    kind: ``"zero"`` (black), ``"blur"`` (each image Gaussian-blurred in-plane with
    ``blur_sigma`` pixels; default H / 16), ``"mean"`` (each image's mean intensity) or a number
    (that constant intensity).
    """
    x = np.asarray(images, dtype=np.float32)
    if isinstance(kind, int | float) and not isinstance(kind, bool):
        return np.full_like(x, float(kind))
    if kind == "zero":
        return np.zeros_like(x)
    if kind == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
    if kind == "blur":
        sigma = x.shape[1] / 16 if blur_sigma is None else float(blur_sigma)
        if sigma <= 0:
            raise ValueError(f"blur_sigma must be > 0, got {sigma}")
        return gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest").astype(np.float32)
    raise ValueError(f"baseline must be 'zero', 'blur', 'mean' or a number, got {kind!r}")


def pixel_ranks(maps, seed: int = 0) -> np.ndarray:
    """Importance rank of every pixel: maps float (N, H, W) -> int32 (N, H*W), 0 = highest value.

    Ties are broken by one seeded random permutation of the pixel positions (shared by all images).
    """
    flat = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
    if not np.isfinite(flat).all():
        raise ValueError("maps contain NaN or inf; cannot rank pixels")
    perm = np.random.default_rng(seed).permutation(flat.shape[1])
    order = perm[np.argsort(-flat[:, perm], axis=1, kind="stable")]
    ranks = np.empty_like(order, dtype=np.int32)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1], dtype=np.int32)[None], axis=1)
    return ranks


def curve_auc(scores, fractions) -> np.ndarray:
    """Trapezoid area under curves: scores (..., S) over fractions (S,) in [0, 1] -> (...)."""
    y = np.asarray(scores, dtype=np.float64)
    x = np.asarray(fractions, dtype=np.float64)
    return (0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(x)).sum(axis=-1)


_SCORERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _masked_scorer(model):
    """Compiled: target probability of ``where(rank < count, fill, base)`` for every count.

    fill, base: float32 (B, H, W, C); ranks: int32 (B, H*W); counts: int32 (S,); targets: int32 (B,)
    -> float32 (B, S). One forward pass over the B * S composites.
    """
    scorer = _SCORERS.get(model)
    if scorer is None:
        shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        model_ref = weakref.ref(model)
        img = tf.TensorSpec((None, *shape), tf.float32)

        @tf.function(input_signature=[img, img, tf.TensorSpec((None, None), tf.int32),
                                      tf.TensorSpec((None,), tf.int32),
                                      tf.TensorSpec((None,), tf.int32)])
        def scorer(fill, base, ranks, counts, targets):
            b, s = tf.shape(fill)[0], tf.shape(counts)[0]
            ranks = tf.reshape(ranks, (1, b, *shape[:2], 1))
            keep = ranks < tf.reshape(counts, (-1, 1, 1, 1, 1))  # (S, B, H, W, 1)
            composite = tf.where(keep, fill[None], base[None])
            probs = model_ref()(tf.reshape(composite, (-1, *shape)), training=False)
            probs = tf.reshape(probs, (s, b, -1))
            picked = tf.reduce_sum(probs * tf.one_hot(targets, tf.shape(probs)[2])[None], axis=2)
            return tf.transpose(picked)  # (B, S)

        _SCORERS[model] = scorer
    return scorer


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion / insertion curves from :func:`faithfulness_curves`.

    fractions: float32 (S,) in [0, 1]; deletion, insertion: {method: float32 (N, L, S)} target
    probabilities, with the random reference under ``"random"`` as (N, 1, S); layers: the L layer
    names; targets: int32 (N,) explained classes; baselines: the two baseline kinds used.
    """

    fractions: np.ndarray
    deletion: dict[str, np.ndarray]
    insertion: dict[str, np.ndarray]
    layers: tuple[str, ...]
    targets: np.ndarray
    deletion_baseline: object = "zero"
    insertion_baseline: object = "blur"

    def layers_of(self, method: str) -> tuple[str, ...]:
        return (NO_LAYER,) if method == RANDOM_METHOD else self.layers

    def auc(self, curve: str) -> dict[str, np.ndarray]:
        """{method: float64 (N, L)} areas under the ``"deletion"`` or ``"insertion"`` curves."""
        if curve not in ("deletion", "insertion"):
            raise ValueError(f"curve must be 'deletion' or 'insertion', got {curve!r}")
        return {m: curve_auc(c, self.fractions) for m, c in getattr(self, curve).items()}

    def table(self) -> pd.DataFrame:
        """One row per (layer, method): mean AUCs, their standard errors and n (images).

        Columns: layer, method, deletion_auc (lower = more faithful), insertion_auc (higher =
        more faithful), deletion_sem, insertion_sem, n.
        """
        dele, ins = self.auc("deletion"), self.auc("insertion")

        def sem(v: np.ndarray) -> float:
            return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")

        rows = []
        for method in dele:
            for i, layer in enumerate(self.layers_of(method)):
                d, s = dele[method][:, i], ins[method][:, i]
                rows.append({"layer": layer, "method": method, "deletion_auc": float(d.mean()),
                             "insertion_auc": float(s.mean()), "deletion_sem": sem(d),
                             "insertion_sem": sem(s), "n": len(d)})
        return pd.DataFrame(rows)

    def frame(self) -> pd.DataFrame:
        """Tidy mean curves for plotting: columns method, layer, curve, fraction, score."""
        rows = []
        for curve in ("deletion", "insertion"):
            for method, c in getattr(self, curve).items():
                mean = c.mean(axis=0)
                for i, layer in enumerate(self.layers_of(method)):
                    rows.append(pd.DataFrame({"method": method, "layer": layer, "curve": curve,
                                              "fraction": self.fractions, "score": mean[i]}))
        return pd.concat(rows, ignore_index=True)


def faithfulness_curves(model, images, cams: Mapping, layers: Sequence[str] | None = None,
                        targets=None, steps: int = 20, deletion_baseline="zero",
                        insertion_baseline="blur", blur_sigma: float | None = None,
                        random_reference: bool = True, seed: int = 0, batch_size: int = 256,
                        progress: bool = True) -> FaithfulnessCurves:
    """Deletion and insertion curves of every map in ``cams`` (see the module docstring).

    images: float32 (N, H, W, 1) in [0, 1]; cams: a :class:`knee_tf.core.cam.CamResult` or any
    ``{method: float (N, L, H, W)}`` (e.g. a ground-truth mask as ``{"truth": masks[:, None]}``);
    layers: the L layer names (default ``cams.layers``); targets: None (``cams.targets`` if present,
    else the predicted class), an int, or int (N,). steps: the curves have steps + 1 points at
    fractions 0, 1/steps, ..., 1. Baselines: see :func:`baseline_images`. ``batch_size`` bounds the
    composites per forward pass. Returns :class:`FaithfulnessCurves`.
    """
    x = check_images(images, model)
    n, height, width = x.shape[:3]
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not isinstance(cams, Mapping) or not cams:
        raise ValueError("cams must be a non-empty mapping {method: (N, L, H, W) maps}")
    if layers is None:
        layers = getattr(cams, "layers", None)
        if layers is None:
            raise ValueError("layers is required when cams has no .layers (a plain mapping)")
    layers = tuple(layers)
    maps = {}
    for method, m in cams.items():
        m = np.asarray(m, dtype=np.float32)
        if m.shape != (n, len(layers), height, width):
            raise ValueError(f"cams[{method!r}] must be (N, L, H, W) = "
                             f"{(n, len(layers), height, width)}, got {m.shape}")
        maps[method] = m
    if random_reference:
        if RANDOM_METHOD in maps:
            raise ValueError(f"method name {RANDOM_METHOD!r} is reserved for the random reference")
        rng = np.random.default_rng(seed)
        maps[RANDOM_METHOD] = rng.random((n, 1, height, width), dtype=np.float32)

    n_classes = int(model.outputs[0].shape[-1])
    if targets is None:
        targets = getattr(cams, "targets", None)
    if targets is None:
        targets = predicted_class(predict_proba(model, x, batch_size)[:, 1])
    t = check_targets(targets, n, n_classes)

    fractions = np.linspace(0.0, 1.0, steps + 1).astype(np.float32)
    counts = np.round(fractions.astype(np.float64) * height * width).astype(np.int32)
    removed = baseline_images(x, deletion_baseline, blur_sigma)
    start_from = baseline_images(x, insertion_baseline, blur_sigma)
    scorer = _masked_scorer(model)
    chunk = max(1, batch_size // len(counts))

    deletion = {m: np.empty((n, v.shape[1], len(counts)), np.float32) for m, v in maps.items()}
    insertion = {m: np.empty_like(deletion[m]) for m in maps}
    total = n * sum(v.shape[1] for v in maps.values())
    with tqdm(total=total, unit="map", desc="faithfulness", disable=not progress) as bar:
        for method, m in maps.items():
            for i in range(m.shape[1]):
                ranks = pixel_ranks(m[:, i], seed=seed)
                for lo in range(0, n, chunk):
                    sl = slice(lo, lo + chunk)
                    args = (ranks[sl], counts, t[sl])
                    deletion[method][sl, i] = scorer(removed[sl], x[sl], *args).numpy()
                    insertion[method][sl, i] = scorer(x[sl], start_from[sl], *args).numpy()
                    bar.update(len(ranks[sl]))
    return FaithfulnessCurves(fractions=fractions, deletion=deletion, insertion=insertion,
                              layers=layers, targets=t, deletion_baseline=deletion_baseline,
                              insertion_baseline=insertion_baseline)


def faithfulness_table(curves: FaithfulnessCurves) -> pd.DataFrame:
    """The AUC table of :meth:`FaithfulnessCurves.table`: layer, method, deletion_auc,
    insertion_auc, deletion_sem, insertion_sem, n."""
    return curves.table()

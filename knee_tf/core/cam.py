"""CAM maps at several layers at once, for every requested method, in one compiled forward + backward pass.

The methods are registered in :mod:`knee_tf.core.cam_methods` (Grad-CAM, Grad-CAM++, LayerCAM: one
weight function each); this module is the engine they share. The score is the target class's
*logit* (the softmax bypassed, as tf-keras-vis's ``ReplaceToLinear`` does) read from the model's
``logits`` layer, so the trained model is never modified: a gradient sub-model maps
``model.inputs`` to ``[layer outputs..., logits]``, is built once per model and cached (weakly keyed
on the model). Every batch then costs one forward and one backward pass, shared by every layer and
method. Each method's map is ReLU(sum_c weights * A) at the layer (``cam_methods``), then:

* Always float32: a model trained in mixed precision (``mixed_bfloat16``, :mod:`knee_tf.core.precision`)
  is explained through a float32 copy with its trained weights, so its maps are the float32 maps
  of those weights (``CamResult.probabilities`` then come from that float32 pass too).
* Maps are upsampled to the input size with align-corners bilinear interpolation (tf-keras-vis uses
  ``scipy.ndimage.zoom(order=1)``, which maps corner pixels onto corner pixels; ``tf.image.resize``
  uses half-pixel centres and differs), then min-max normalised per image:
  (m - min) / (max - min + eps) with eps = ``keras.config.epsilon()`` (times the method's
  ``eps_scale``, if any). A map with max == min (all zero, or constant) becomes exactly zero,
  never NaN, and is counted in ``CamResult.n_zero``.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from knee_tf.core.arrays import RowBlocks
from knee_tf.core.cam_methods import REGISTRY, low_resolution_map, reference_explainer
from knee_tf.core.model import LOGITS_LAYER, check_images, predict_proba
from knee_tf.core.precision import float32_twin
from knee_tf.core.vocab import CAM_METHODS, STUDY_CAM_METHODS, check_cam_methods, check_targets

#: The CAM methods :func:`compute_cams` knows, in their canonical order (:data:`knee_tf.core.vocab.CAM_METHODS`).
METHODS: tuple[str, ...] = CAM_METHODS
#: The methods :func:`compute_cams` computes unless told otherwise: the study's (Grad-CAM, Grad-CAM++).
DEFAULT_METHODS: tuple[str, ...] = STUDY_CAM_METHODS
#: The max-pool layers of :func:`knee_tf.core.model.build_lenet` (four conv blocks).
DEFAULT_LAYERS: tuple[str, ...] = ("pool1", "pool2", "pool3", "pool4")


def align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear interpolation weights float32 (n_out, n_in): output j samples input j*(n_in-1)/(n_out-1).

    ``R @ v`` resamples a length-n_in signal to n_out samples with the first and last samples
    aligned (align_corners=True). Each row has at most two non-zero weights summing to 1.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be >= 1, got n_in={n_in}, n_out={n_out}")
    pos = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, hi), frac)
    return weights.astype(np.float32)


def upsample_align_corners(maps, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, align-corners resampling: maps float (N, h, w) -> float32 (N, H, W), size=(H, W)."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, h, w), got shape {maps.shape}")
    rows = align_corners_matrix(maps.shape[1], int(size[0]))
    cols = align_corners_matrix(maps.shape[2], int(size[1]))
    return (rows.astype(np.float32) @ maps @ cols.T.astype(np.float32)).astype(np.float32)  # two matmuls, not a 3-operand einsum


@dataclass(frozen=True)
class CamResult(Mapping):
    """Maps from :func:`compute_cams`; behaves as ``{method: float32 (N, L, H, W) in [0, 1]}``.

    layers: the L layer names, in map order; targets: int32 (N,) the explained class per image;
    probabilities: float32 (N, n_classes) softmax of the same forward pass; n_zero: {method: int64
    (L,)} the number of images whose map at that layer is identically zero (max == min before
    normalisation: nothing to localise).
    """

    maps: dict[str, np.ndarray]
    layers: tuple[str, ...]
    targets: np.ndarray
    probabilities: np.ndarray
    n_zero: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, method: str) -> np.ndarray:
        return self.maps[method]

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.maps)

    def select(self, method: str, layer: str) -> np.ndarray:
        """One method at one layer: float32 (N, H, W) in [0, 1]."""
        if method not in self.maps:
            raise ValueError(f"unknown method {method!r}; this result has {self.methods}")
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; this result has {self.layers}")
        return self.maps[method][:, self.layers.index(layer)]

    def zero_counts(self):
        """A tidy table (method, layer, n_zero, n) of all-zero maps."""
        n = len(self.targets)
        return pd.DataFrame([{"method": m, "layer": layer, "n_zero": int(self.n_zero[m][i]), "n": n}
                             for m in self.maps for i, layer in enumerate(self.layers)])


def _normalise(cams, eps):
    """Per-map min-max to [0, 1] over the last two axes.

    cams (..., H, W); eps broadcastable to cams' leading axes (...). Returns the normalised maps
    and a bool (...) flag of constant maps, which become exactly 0 (never NaN).
    """
    lo = tf.reduce_min(cams, axis=(-2, -1), keepdims=True)
    span = tf.reduce_max(cams, axis=(-2, -1), keepdims=True) - lo
    eps = tf.broadcast_to(eps, tf.shape(span)[:-2])[..., None, None]
    flat = span <= 0  # then cams - lo is exactly 0 everywhere; divide it by 1
    denom = tf.where(flat, tf.ones_like(span), span + eps)
    return (cams - lo) / denom, flat[..., 0, 0]


class _CamEngine:
    """The gradient sub-model and its compiled CAM step for one model, layer set and method set."""

    def __init__(self, model, layers: tuple[str, ...], methods: tuple[str, ...]):
        outputs = []
        for name in layers:
            try:
                layer = model.get_layer(name)
            except ValueError:
                raise ValueError(f"model {model.name!r} has no layer {name!r}") from None
            if len(layer.output.shape) != 4:
                raise ValueError(f"layer {name!r} output must be (B, h, w, c) for a CAM, "
                                 f"got {tuple(layer.output.shape)}")
            outputs.append(layer.output)
        try:
            logits = model.get_layer(LOGITS_LAYER).output
        except ValueError:
            raise ValueError(f"model {model.name!r} has no linear {LOGITS_LAYER!r} layer to "
                             "explain; build it with knee_tf.core.model.build_lenet") from None
        self.grad_model = keras.Model(model.inputs, [*outputs, logits],
                                      name=f"{model.name}_cam_gradients")
        self.twin = None  # the float32 copy explained in place of a mixed-precision model (cam_engine)
        self.layers = layers
        self.methods = methods
        in_shape = tuple(int(s) for s in model.inputs[0].shape[1:])
        self.image_size = in_shape[:2]
        self.n_classes = int(logits.shape[-1])
        self.resamplers = [
            (tf.constant(align_corners_matrix(int(o.shape[1]), in_shape[0])),  # (H, h)
             tf.constant(align_corners_matrix(int(o.shape[2]), in_shape[1]).T))  # (w, W)
            for o in outputs
        ]
        self.eps = float(keras.config.epsilon())
        self.step = tf.function(
            self._step,
            input_signature=[tf.TensorSpec((None, *in_shape), tf.float32),
                             tf.TensorSpec((None,), tf.int32)],
        )

    def _step(self, images, targets):
        """images (B, H, W, C), targets int32 (B,) with -1 = predicted class.

        Returns per layer: maps float32 (M, B, H, W) and constant-map flags bool (M, B) (M methods,
        in self.methods order); then the used targets int32 (B,) and probabilities (B, K).
        """
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            *acts, logits = self.grad_model(images, training=False)
            predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)  # ties -> class 0, as vocab.predicted_class
            targets = tf.where(targets < 0, predicted, targets)
            scores = tf.gather(logits, targets, axis=1, batch_dims=1)
            total = tf.reduce_sum(scores)
        grads = tape.gradient(total, acts)
        # the normalisation epsilon (M, B): keras' epsilon, times the method's eps_scale where it has one
        eps = tf.stack([self.eps * REGISTRY[m].eps_scale(scores) if REGISTRY[m].eps_scale
                        else tf.fill(tf.shape(scores), self.eps) for m in self.methods])
        maps, zero = [], []
        for a, g, (rows, cols) in zip(acts, grads, self.resamplers, strict=True):
            low = [low_resolution_map(m, a, g, scores) for m in self.methods]
            cams = tf.matmul(tf.stack(low), cols)  # (M, B, h, W): one plain matmul
            cams = tf.matmul(rows, cams)  # (M, B, H, W): (H, h) broadcast over (M, B)
            cams, flat = _normalise(cams, eps)
            maps.append(cams)
            zero.append(flat)
        return maps, zero, targets, tf.nn.softmax(logits, axis=-1)


_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cam_engine(model, layers=DEFAULT_LAYERS, methods=DEFAULT_METHODS) -> _CamEngine:
    """The cached gradient sub-model + compiled step for ``model`` (built on first use only).

    Always float32: a model trained in mixed precision is explained through its float32 twin
    (:func:`knee_tf.core.precision.float32_twin`, same weights), built once with the engine.
    """
    layers, methods = _check_names(layers, methods)
    per_model = _ENGINES.setdefault(model, {})
    key = (layers, methods)
    if key not in per_model:
        # the twin is kept by the engine (never the model itself: the cache is weakly keyed on it)
        twin = next((e.twin for e in per_model.values() if e.twin is not None), None) or float32_twin(model)
        engine = _CamEngine(twin, layers, methods)
        engine.twin = twin if twin is not model else None
        per_model[key] = engine
    return per_model[key]


def _check_names(layers, methods) -> tuple[tuple[str, ...], tuple[str, ...]]:
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers must be distinct, got {layers}")
    return layers, check_cam_methods(methods, "methods")


def compute_cams(model, images, layers: Sequence[str] = DEFAULT_LAYERS,
                 methods: Sequence[str] = DEFAULT_METHODS, targets=None, batch_size: int = 256,
                 progress: bool = True) -> CamResult:
    """CAM maps of ``model`` at every layer in ``layers``, for every method in ``methods``, in one pass per batch.

    images: float32 (N, H, W, 1) in [0, 1] (the model's input shape). methods: registered names
    (:data:`METHODS`; default :data:`DEFAULT_METHODS`, Grad-CAM and Grad-CAM++). targets: None (explain the
    predicted class, taken from the same forward pass), an int, or int (N,) class indices.
    Returns a :class:`CamResult`: ``{method: float32 (N, L, H, W) in [0, 1]}`` in ``methods`` order,
    L = len(layers), plus targets, probabilities and per-layer counts of all-zero maps.
    """
    x = check_images(images, model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    engine = cam_engine(model, layers, methods)
    t = check_targets(targets, len(x), engine.n_classes)
    n, n_layers, (height, width) = len(x), len(engine.layers), engine.image_size
    maps = {m: np.empty((n, n_layers, height, width), np.float32) for m in engine.methods}
    zero = {m: np.zeros((n, n_layers), bool) for m in engine.methods}
    used = np.empty(n, np.int32)
    probs = np.empty((n, engine.n_classes), np.float32)
    with tqdm(total=n, unit="img", desc="CAMs", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            bx, bt = x[start:stop], t[start:stop]
            if stop - start == 1:  # a batch of one crashes TF 2.21's CPU kernels on a second call: pad it
                bx, bt = np.concatenate([bx, bx]), np.concatenate([bt, bt])
            b_maps, b_zero, b_targets, b_probs = engine.step(bx, bt)
            for i, (layer_maps, layer_zero) in enumerate(zip(b_maps, b_zero, strict=True)):
                # np.asarray views the tensor's buffer; Tensor.numpy() would copy it first
                layer_maps, layer_zero = np.asarray(layer_maps), np.asarray(layer_zero)
                for j, m in enumerate(engine.methods):
                    maps[m][start:stop, i] = layer_maps[j, :stop - start]
                    zero[m][start:stop, i] = layer_zero[j, :stop - start]
            used[start:stop] = b_targets.numpy()[:stop - start]
            probs[start:stop] = b_probs.numpy()[:stop - start]
            bar.update(stop - start)
    return CamResult(maps=maps, layers=engine.layers, targets=used, probabilities=probs,
                     n_zero={m: zero[m].sum(axis=0).astype(np.int64) for m in engine.methods})


def tf_keras_vis_cams(model, images, layers: Sequence[str] = DEFAULT_LAYERS,
                      methods: Sequence[str] = DEFAULT_METHODS, targets=None,
                      batch_size: int = 256) -> dict[str, np.ndarray]:
    """The reference: each method's tf-keras-vis explainer (``Gradcam``, ``GradcamPlusPlus``,
    ``Layercam``: :func:`knee_tf.core.cam_methods.reference_explainer`) looped over layers and batches.

    Uses ``ReplaceToLinear`` (on a clone; ``model`` is untouched), ``CategoricalScore(targets)`` and
    ``penultimate_layer=<layer>, seek_penultimate_conv_layer=False``. targets: None = predicted
    class. Returns ``{method: float32 (N, L, H, W)}`` like :func:`compute_cams`; slow by design
    (one eager pass per layer, method and batch), for tests and ``bench/cam.py`` only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.utils.model_modifiers import (
            ReplaceToLinear,  # lazy: loads TensorFlow (seconds)
        )
        from tf_keras_vis.utils.scores import CategoricalScore  # lazy: loads TensorFlow (seconds)

        layers, methods = _check_names(layers, methods)
        classes = {m: reference_explainer(m) for m in methods}
    x = check_images(images, model)
    n_classes = int(model.outputs[0].shape[-1])
    t = check_targets(targets, len(x), n_classes)
    if targets is None:
        t = predict_proba(model, x, batch_size).argmax(axis=1).astype(np.int32)
    out = {}
    for method in methods:
        explainer = classes[method](model, model_modifier=ReplaceToLinear(), clone=True)
        maps = np.empty((len(x), len(layers), *x.shape[1:3]), np.float32)
        for i, layer in enumerate(layers):
            for start in range(0, len(x), batch_size):
                batch = x[start:start + batch_size]
                score = CategoricalScore([int(v) for v in t[start:start + batch_size]])
                cam = explainer(score, batch, penultimate_layer=layer,
                                seek_penultimate_conv_layer=False)
                maps[start:start + len(batch), i] = np.asarray(cam).reshape(len(batch),
                                                                            *x.shape[1:3])
        out[method] = maps
    return out


class BatchedMaps:
    """One layer's maps of ``images``, computed batch by batch as their rows are read (never all at once).

    images: float32 (N, H, W, 1); layer: one layer name; methods: CAM methods; targets: None (the
    predicted class) or int (N,); batch_size: :func:`compute_cams`' batch. ``maps[method]`` is a
    read-only float32 (N, H, W) view whose rows, read in ascending order (e.g. by
    :func:`knee_tf.core.augment.build_augmented_pool`), are computed one :func:`compute_cams` batch at a
    time: batch k covers images [k * batch_size, (k + 1) * batch_size), as in one call of
    :func:`compute_cams` on all N images, so every map is the same float32 value. Only the batches
    of the rows last read are kept (batch_size x H x W per method).
    """

    def __init__(self, model, images, layer: str, methods: Sequence[str], targets=None, batch_size: int = 256):
        self.model, self.images, self.layer = model, check_images(images, model), layer
        self.methods, self.batch_size = tuple(methods), int(batch_size)
        self.targets = None if targets is None else np.asarray(targets, dtype=np.int32)
        self._blocks = RowBlocks(len(self.images), self.batch_size, self._batch)

    def _batch(self, a: int, b: int) -> CamResult:
        return compute_cams(self.model, self.images[a:b], layers=(self.layer,), methods=self.methods,
                            batch_size=self.batch_size, progress=False,
                            targets=None if self.targets is None else self.targets[a:b])

    def __getitem__(self, method: str) -> _MethodMaps:
        if method not in self.methods:
            raise KeyError(method)
        return _MethodMaps(self, method)

    def __iter__(self) -> Iterator[str]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    def keys(self):
        return self.methods

    def rows(self, method: str, rows) -> np.ndarray:
        """float32 (k, H, W): ``method``'s maps of the images ``rows`` (int (k,)), in that order."""
        return self._blocks.read(rows, lambda res, local: res.select(method, self.layer)[local],
                                 self.images.shape[1:3])


class _MethodMaps:
    """One method of a :class:`BatchedMaps`: a float32 (N, H, W) array-like read by rows."""

    dtype = np.dtype(np.float32)
    ndim = 3
    reads_rows = True  # build_augmented_pool reads it by rows instead of converting it to an array

    def __init__(self, source: BatchedMaps, method: str):
        self.source, self.method = source, method

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.source.images.shape[:3]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        picked = np.arange(len(self))[rows]
        out = self.source.rows(self.method, np.atleast_1d(picked))
        return out if picked.ndim else out[0]

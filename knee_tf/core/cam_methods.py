"""The CAM methods, registered in one place: a name mapped to the function that weights the activations.

:data:`REGISTRY` maps each name of :data:`knee_tf.core.vocab.CAM_METHODS` to a :class:`CamMethod`,
whose ``weights(acts, grads, scores)`` turns one layer's activations A and gradients g = dS/dA
(float32 (B, h, w, c)) and the explained class's logit S (float32 (B,)) into weights broadcastable
to A. The engine (:mod:`knee_tf.core.cam`) is the same for every method: map = ReLU(sum_c weights * A)
at (h, w), upsampled to the input size and min-max normalised with an epsilon. The weights are
*channel* weights (B, 1, 1, c) for Grad-CAM and Grad-CAM++; LayerCAM is not a channel-weight
method: its weights are per pixel and channel (B, h, w, c), which the same sum broadcasts over.

Conventions follow tf-keras-vis 0.8.7 (``penultimate_layer=<layer>``,
``seek_penultimate_conv_layer=False``), which the tests check to 2e-3:

* ``gradcam``: weights = spatial mean of g (tf-keras-vis ``Gradcam``).
* ``gradcam++``: alpha = g^2 / (2 g^2 + g^3 * sum_xy A) (a zero denominator is replaced by 1: where
  g^2 = 0, as tf-keras-vis does, and at the formula's pole, where the denominator rounds to exactly
  0 and tf-keras-vis's whole map would be NaN), alpha normalised to sum 1 over space (a zero sum
  replaced by 1), weights = sum_xy alpha * ReLU(g) (tf-keras-vis ``GradcamPlusPlus``).
  tf-keras-vis multiplies its derivatives by exp(S); so does this module, in the same operation
  order, because the formula is ill-conditioned where 2 + g * sum_xy A is near 0 and float32
  rounding then matters. The factor only scales the map, so S is clipped to +-EXP_SCORE_LIMIT
  inside exp (no inf/NaN for confident predictions) and the clipped-off factor is applied to the
  normalisation epsilon instead (``eps_scale``).
* ``layercam``: weights = ReLU(g), element by element (tf-keras-vis ``Layercam``).

Adding a method: its name (and display name) in :mod:`knee_tf.core.vocab`, one weight function here
and one :data:`REGISTRY` entry; every layer, batch, target and normalisation rule comes with the
engine. ``reference`` names the tf-keras-vis class the tests compare it with.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from knee_tf.core.vocab import CAM_METHODS, GRADCAM, GRADCAM_PP, LAYERCAM, check_cam_methods

#: Grad-CAM++'s exp(score) factor is evaluated at the score clipped to +-this (float32-safe).
EXP_SCORE_LIMIT = 50.0


@dataclass(frozen=True)
class CamMethod:
    """One CAM method.

    weights: (acts, grads, scores) -> float32 weights broadcastable to acts (B, h, w, c); the map
    is ReLU(sum_c weights * acts). eps_scale: None, or scores (B,) -> float32 (B,), the factor by
    which the normalisation epsilon is multiplied (for weights carrying a per-image scale).
    reference: ``"module.Class"`` of the tf-keras-vis explainer it agrees with ("": none).
    """

    weights: Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
    eps_scale: Callable[[tf.Tensor], tf.Tensor] | None = None
    reference: str = ""


def gradcam_weights(acts, grads, scores):
    """Grad-CAM: channel weights (B, 1, 1, c) = the spatial mean of the gradients."""
    return tf.reduce_mean(grads, axis=(1, 2), keepdims=True)


@tf.function(jit_compile=True)
def _gradcam_plus_plus_alphas(grads, scale, act_sum):
    """The element-wise part of Grad-CAM++, fused by XLA into one pass over (B, h, w, c).

    grads (B, h, w, c), scale (B,), act_sum (B, 1, 1, c) = sum_xy A. Returns the first derivative
    scale * g and the un-normalised alpha = g^2 / (2 g^2 + g^3 sum_xy A). As separate TensorFlow
    kernels these products and the division each wrote a (B, h, w, c) tensor to memory, which made
    them most of the cost of the CAM arithmetic at ``pool1``; fused, each element is read once. Only
    IEEE multiplications, additions, comparisons and divisions, in the same order as before (XLA on
    CPU neither re-associates nor contracts them without fast-math), so the maps are bit for bit
    those of the unfused graph (tested on trained models); the reductions stay outside, in
    TensorFlow's kernels, whose summation order XLA would change.
    """
    first = tf.reshape(scale, (-1, 1, 1, 1)) * grads
    second = first * grads
    third = second * grads
    # sum_xy A is broadcast explicitly, so that no optimiser re-associates (second * g) * sum_xy A
    denom = second * 2.0 + third * tf.broadcast_to(act_sum, tf.shape(grads))
    # A zero denominator becomes 1. tf-keras-vis does this where second == 0 (denom is then +-0). It
    # also happens at the formula's pole, where 2 g^2 + g^3 sum_xy A rounds to exactly 0 with g != 0;
    # alpha is then inf, and tf-keras-vis's map (and this one, before) becomes NaN: every map that
    # tf-keras-vis computes finitely is unchanged by the wider rule
    denom = tf.where(tf.equal(denom, 0.0), tf.ones_like(denom), denom)
    return first, second / denom


def _clipped(scores):
    return tf.clip_by_value(scores, -EXP_SCORE_LIMIT, EXP_SCORE_LIMIT)


def gradcam_plus_plus_weights(acts, grads, scores):
    """Grad-CAM++: channel weights (B, 1, 1, c), scaled by exp(S) (S clipped) as tf-keras-vis's are.

    Written in tf-keras-vis's operation order (first, second, third derivative = exp(S) * g, g^2,
    g^3) so that float32 rounding matches it where the formula is ill-conditioned
    (2 + g * sum_xy A near 0).
    """
    first, alphas = _gradcam_plus_plus_alphas(grads, tf.exp(_clipped(scores)),
                                              tf.reduce_sum(acts, axis=(1, 2), keepdims=True))
    alpha_sum = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
    alphas = alphas / (alpha_sum + tf.cast(tf.equal(alpha_sum, 0.0), alpha_sum.dtype))
    return tf.reduce_sum(tf.nn.relu(first) * alphas, axis=(1, 2), keepdims=True)


def gradcam_plus_plus_eps_scale(scores):
    """exp(clip(S) - S): the part of exp(S) that clipping took off the weights goes to the epsilon."""
    return tf.exp(_clipped(scores) - scores)


def layercam_weights(acts, grads, scores):
    """LayerCAM: per-pixel weights (B, h, w, c) = ReLU(g) (not channel weights: nothing is pooled)."""
    return tf.nn.relu(grads)


#: Every CAM method by name, in :data:`knee_tf.core.vocab.CAM_METHODS` order.
REGISTRY: dict[str, CamMethod] = {
    GRADCAM: CamMethod(gradcam_weights, reference="tf_keras_vis.gradcam.Gradcam"),
    GRADCAM_PP: CamMethod(gradcam_plus_plus_weights, eps_scale=gradcam_plus_plus_eps_scale,
                          reference="tf_keras_vis.gradcam_plus_plus.GradcamPlusPlus"),
    LAYERCAM: CamMethod(layercam_weights, reference="tf_keras_vis.layercam.Layercam"),
}
if tuple(REGISTRY) != CAM_METHODS:
    raise ImportError(f"REGISTRY registers {tuple(REGISTRY)}; knee_tf.core.vocab.CAM_METHODS names {CAM_METHODS}")


def low_resolution_map(method: str, acts, grads, scores):
    """One method's map at the layer's resolution, before normalisation: float32 (B, h, w).

    acts, grads: float32 (B, h, w, c); scores: float32 (B,) the explained logits. ReLU(sum_c weights * A).
    """
    (method,) = check_cam_methods(method, "method")
    weights = REGISTRY[method].weights(acts, grads, scores)
    return tf.nn.relu(tf.reduce_sum(acts * weights, axis=-1))


def reference_explainer(method: str):
    """The tf-keras-vis explainer class ``method`` is compared with (ValueError where there is none)."""
    (method,) = check_cam_methods(method, "method")
    module, _, name = REGISTRY[method].reference.rpartition(".")
    if not module:
        raise ValueError(f"CAM method {method!r} names no tf-keras-vis reference")
    return getattr(importlib.import_module(module), name)  # lazy: tf-keras-vis is the tests' reference only

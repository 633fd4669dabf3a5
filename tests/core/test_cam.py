"""knee_tf.core.cam and cam_methods: the one-pass engine and every registered method (Grad-CAM, Grad-CAM++,
LayerCAM) against tf-keras-vis, the registry, and edge cases."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import zoom

from knee_tf.core import cam as cam_module
from knee_tf.core import cam_methods
from knee_tf.core.cam import (
    DEFAULT_LAYERS,
    DEFAULT_METHODS,
    METHODS,
    CamResult,
    align_corners_matrix,
    cam_engine,
    compute_cams,
    tf_keras_vis_cams,
    upsample_align_corners,
)
from knee_tf.core.model import build_lenet, predict_proba
from knee_tf.core.precision import float32_twin, model_precision
from knee_tf.core.vocab import (
    CAM_METHODS,
    GRADCAM,
    GRADCAM_PP,
    LAYERCAM,
    METHOD_NAMES,
    STUDY_CAM_METHODS,
)


@pytest.fixture(scope="module")
def test_images(toy_blob_data):
    return toy_blob_data["test"][0][:32]


@pytest.fixture(scope="module")
def cams(tiny_trained_model, test_images):
    return compute_cams(tiny_trained_model, test_images, methods=METHODS, batch_size=12, progress=False)


@pytest.mark.parametrize("h, w, size", [(4, 4, (64, 64)), (8, 5, (64, 40)), (1, 3, (16, 9)),
                                        (7, 7, (7, 7))])
def test_upsampling_is_align_corners_bilinear_like_scipy_zoom(h, w, size):
    maps = np.random.default_rng(0).random((3, h, w), np.float32)
    expected = zoom(maps, (1, size[0] / h, size[1] / w), order=1)
    np.testing.assert_allclose(upsample_align_corners(maps, size), expected, atol=1e-6)


def test_tf_image_resize_is_not_align_corners():
    """The reason for our own resampler: tf.image.resize uses half-pixel centres."""
    maps = np.random.default_rng(1).random((1, 4, 4), np.float32)
    ours = upsample_align_corners(maps, (16, 16))
    theirs = tf.image.resize(maps[..., None], (16, 16), method="bilinear").numpy()[..., 0]
    assert np.abs(ours - theirs).max() > 1e-2
    assert ours[0, 0, 0] == maps[0, 0, 0] and ours[0, -1, -1] == maps[0, -1, -1]
    np.testing.assert_allclose(align_corners_matrix(4, 16).sum(axis=1), 1.0, rtol=1e-6)


def test_result_shapes_ranges_and_metadata(cams, tiny_trained_model, test_images):
    n = len(test_images)
    assert isinstance(cams, CamResult) and tuple(cams) == METHODS == cams.methods
    assert cams.layers == DEFAULT_LAYERS
    for method in METHODS:
        maps = cams[method]
        assert maps.dtype == np.float32 and maps.shape == (n, 4, 64, 64)
        assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
        peak = maps.reshape(n, 4, -1).max(axis=-1)
        zero = peak == 0
        np.testing.assert_array_equal(cams.n_zero[method], zero.sum(axis=0))
        np.testing.assert_allclose(peak[~zero], 1.0, atol=1e-3)  # min-max normalised
    probs = predict_proba(tiny_trained_model, test_images)
    np.testing.assert_array_equal(cams.targets, probs.argmax(axis=1))
    np.testing.assert_allclose(cams.probabilities, probs, atol=1e-5)
    np.testing.assert_array_equal(cams.select("gradcam++", "pool3"), cams["gradcam++"][:, 2])
    table = cams.zero_counts()
    assert list(table.columns) == ["method", "layer", "n_zero", "n"] and len(table) == 4 * len(METHODS)


@pytest.mark.parametrize("targets", [None, "other"], ids=["predicted", "other-class"])
def test_agrees_with_tf_keras_vis(tiny_trained_model, test_images, cams, targets):
    if targets is None:
        ours = cams
    else:  # explain the class the model did not predict
        targets = 1 - cams.targets
        ours = compute_cams(tiny_trained_model, test_images, methods=METHODS, targets=targets, progress=False)
        np.testing.assert_array_equal(ours.targets, targets)
    reference = tf_keras_vis_cams(tiny_trained_model, test_images, methods=METHODS, targets=targets, batch_size=16)
    _assert_agrees(ours, reference, len(test_images))


def test_bf16_trained_model_is_explained_in_float32_and_agrees_with_tf_keras_vis(tiny_bf16_model, test_images):
    """Maps of a model trained in mixed_bfloat16 are the float32 maps of its weights."""
    assert model_precision(tiny_bf16_model) == "mixed_bfloat16"
    ours = compute_cams(tiny_bf16_model, test_images, methods=METHODS, batch_size=12, progress=False)
    twin = float32_twin(tiny_bf16_model)
    assert model_precision(twin) == "float32" and twin is not tiny_bf16_model
    np.testing.assert_allclose(ours.probabilities, predict_proba(twin, test_images), atol=1e-5)
    reference = tf_keras_vis_cams(twin, test_images, methods=METHODS, batch_size=16)
    _assert_agrees(ours, reference, len(test_images))
    # the twin is built once per model and shared by its engines
    assert cam_engine(tiny_bf16_model, layers=("pool4",)).twin is cam_engine(tiny_bf16_model).twin


def _assert_agrees(ours, reference, n):
    assert ours.methods == METHODS == tuple(reference)  # every registered method, LayerCAM included
    for method in METHODS:
        assert ours.n_zero[method].sum() < n * 4, method  # not all blank
        for i, layer in enumerate(DEFAULT_LAYERS):
            diff = np.abs(ours[method][:, i] - reference[method][:, i])
            assert diff.max() <= 2e-3, (method, layer, diff.max())
            assert diff.mean() <= 1e-4, (method, layer, diff.mean())


def test_compiled_step_rounds_like_eager_execution(tiny_trained_model, test_images):
    """Grad-CAM++ is ill-conditioned where 2 + g * sum(A) ~ 0, so a graph rewrite that merely
    re-associates a product (Grappler's MinimizeBroadcasts) moves some maps by up to 1e-1; the
    compiled step must round exactly like eager execution, which is what tf-keras-vis runs."""
    engine = cam_engine(tiny_trained_model, methods=METHODS)
    images, targets = tf.constant(test_images), tf.constant(np.full(len(test_images), -1, np.int32))
    compiled, eager = engine.step(images, targets)[0], engine._step(images, targets)[0]
    for layer_compiled, layer_eager in zip(compiled, eager, strict=True):
        np.testing.assert_allclose(layer_compiled.numpy(), layer_eager.numpy(), atol=1e-6)


def test_fused_grad_cam_plus_plus_arithmetic_is_bit_identical_to_separate_kernels(tiny_trained_model, test_images):
    """The element-wise Grad-CAM++ arithmetic runs as one XLA-fused kernel for speed. Fusion must
    not change a bit: no contraction into fused multiply-adds, no re-association. Compared with the
    same Python function run op by op (TensorFlow's separate eager kernels), on the gradients of a
    trained model at every layer and on values spread over many orders of magnitude."""
    engine = cam_engine(tiny_trained_model)
    images = tf.constant(test_images)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(images)
        *acts, logits = engine.grad_model(images, training=False)
        scores = tf.reduce_max(logits, axis=-1)
        total = tf.reduce_sum(scores)
    grads = tape.gradient(total, acts)
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((8, 6, 5, 4)) * 10.0 ** rng.uniform(-6, 3, (8, 6, 5, 4))
    cases = [(g, tf.exp(scores), tf.reduce_sum(a, axis=(1, 2), keepdims=True)) for a, g in zip(acts, grads, strict=True)]
    cases.append((tf.constant(wide, tf.float32), tf.constant(10.0 ** rng.uniform(-5, 5, 8), tf.float32),
                  tf.constant(rng.standard_normal((8, 1, 1, 4)) * 100.0, tf.float32)))
    for g, scale, act_sum in cases:
        fused = cam_methods._gradcam_plus_plus_alphas(g, scale, act_sum)
        separate = cam_methods._gradcam_plus_plus_alphas.python_function(g, scale, act_sum)
        for f, s in zip(fused, separate, strict=True):
            np.testing.assert_array_equal(f.numpy(), s.numpy())


def test_batching_and_explicit_targets_do_not_change_maps(tiny_trained_model, test_images, cams):
    again = compute_cams(tiny_trained_model, test_images, methods=METHODS, targets=cams.targets, batch_size=5,
                         progress=False)
    for method in METHODS:  # equal up to float32 kernel differences between batch sizes
        diff = np.abs(again[method] - cams[method])
        assert diff.max() <= 1e-3 and diff.mean() <= 1e-6, (method, diff.max(), diff.mean())


def test_batches_of_one_image_give_the_same_maps(tiny_trained_model, test_images, cams):
    # a one-image batch, called more than once, crashed TF 2.21's CPU kernels (segfault) before
    # compute_cams padded it; a final partial batch of one is the common way to get there
    one = compute_cams(tiny_trained_model, test_images[:3], methods=METHODS, targets=cams.targets[:3], batch_size=1,
                       progress=False)
    tail = compute_cams(tiny_trained_model, test_images[:5], methods=METHODS, targets=cams.targets[:5], batch_size=4,
                        progress=False)
    for method in METHODS:
        assert np.abs(one[method] - cams[method][:3]).max() <= 1e-3, method
        assert np.abs(tail[method] - cams[method][:5]).max() <= 1e-3, method
    np.testing.assert_array_equal(one.targets, cams.targets[:3])


def test_trained_model_is_not_modified(tiny_trained_model, test_images):
    before = [w.copy() for w in tiny_trained_model.get_weights()]
    n_layers = len(tiny_trained_model.layers)
    probs_before = predict_proba(tiny_trained_model, test_images)
    compute_cams(tiny_trained_model, test_images, progress=False)
    assert tiny_trained_model.get_layer("probs").activation is keras.activations.softmax
    assert len(tiny_trained_model.layers) == n_layers
    for a, b in zip(before, tiny_trained_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(predict_proba(tiny_trained_model, test_images), probs_before)


def test_all_zero_maps_stay_zero_and_are_counted():
    model = build_lenet((32, 32, 1), conv_filters=(2, 2, 2, 2), dense_units=(4,))
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # every activation is 0
    images = np.random.default_rng(0).random((6, 32, 32, 1), np.float32)
    result = compute_cams(model, images, methods=METHODS, progress=False)
    for method in METHODS:
        assert not np.isnan(result[method]).any()
        assert (result[method] == 0).all()
        np.testing.assert_array_equal(result.n_zero[method], [6, 6, 6, 6])


def test_grad_cam_plus_plus_at_the_formulas_pole_is_finite():
    """Where 2 g^2 + g^3 sum_xy A is exactly 0 with g != 0 (seen at pool1 on a few real training
    images, where float32 rounding lands on the pole), alpha would be inf and the whole map NaN. The
    zero denominator becomes 1, as where g = 0. One channel, two positions: acts (1, 1), g (-1, 0.5),
    exp(S) = 1: alpha = (1 / 1, 0.25 / 0.75) = (1, 1/3), normalised (0.75, 0.25); the weight is
    ReLU(g) . alpha = 0.5 * 0.25 = 0.125, and the map is ReLU(A * 0.125)."""
    acts = tf.constant([[[[1.0], [1.0]]]])  # (B=1, h=1, w=2, c=1), sum 2
    grads = tf.constant([[[[-1.0], [0.5]]]])  # 2 g^2 + g^3 * 2 = 2 - 2 = 0 at the first position
    second = grads * grads
    assert float(tf.reduce_min(tf.abs(second * 2.0 + second * grads * 2.0))) == 0.0  # the pole is hit exactly
    cam = cam_methods.low_resolution_map(GRADCAM_PP, acts, grads, tf.constant([0.0])).numpy()  # exp(S) = 1
    np.testing.assert_allclose(cam, [[[0.125, 0.125]]], rtol=1e-6)


def test_layercam_weights_each_pixel_and_grad_cam_weights_each_channel():
    """Same one-channel layer as above, acts (1, 1), g (-1, 0.5). Grad-CAM's channel weight is the mean
    gradient -0.25, so its map ReLU(-0.25 * A) is all zero; LayerCAM weights each pixel by ReLU(g):
    its map is ReLU(A * (0, 0.5)) = (0, 0.5), which no channel weight can give."""
    acts, grads, scores = tf.constant([[[[1.0], [1.0]]]]), tf.constant([[[[-1.0], [0.5]]]]), tf.constant([0.0])
    np.testing.assert_array_equal(cam_methods.low_resolution_map(GRADCAM, acts, grads, scores).numpy(), [[[0.0, 0.0]]])
    np.testing.assert_array_equal(cam_methods.low_resolution_map(LAYERCAM, acts, grads, scores).numpy(), [[[0.0, 0.5]]])
    assert cam_methods.REGISTRY[GRADCAM].weights(acts, grads, scores).shape == (1, 1, 1, 1)  # per channel
    assert cam_methods.REGISTRY[LAYERCAM].weights(acts, grads, scores).shape == (1, 1, 2, 1)  # per pixel


def test_one_registry_names_every_method_and_an_unknown_name_is_an_error():
    assert tuple(cam_methods.REGISTRY) == CAM_METHODS == METHODS == tuple(METHOD_NAMES)
    assert DEFAULT_METHODS == STUDY_CAM_METHODS == (GRADCAM, GRADCAM_PP)  # LayerCAM is asked for by name
    for method in CAM_METHODS:
        assert cam_methods.reference_explainer(method).__name__ == cam_methods.REGISTRY[method].reference.split(".")[-1]
    for call in (lambda: cam_methods.low_resolution_map("scorecam", None, None, None),
                 lambda: cam_methods.reference_explainer("scorecam"), lambda: cam_engine(build_lenet((32, 32, 1)), methods="x")):
        with pytest.raises(ValueError, match=r"unknown CAM method '\w+'; registered: gradcam, gradcam\+\+, layercam$"):
            call()


def test_gradient_model_is_built_once_and_released_with_the_model():
    model = build_lenet((32, 32, 1), conv_filters=(2, 2, 2, 2), dense_units=(4,))
    images = np.random.default_rng(0).random((3, 32, 32, 1), np.float32)
    engine = cam_engine(model)
    compute_cams(model, images, progress=False)
    compute_cams(model, images, progress=False)
    assert cam_engine(model) is engine
    assert engine.step.experimental_get_tracing_count() == 1
    assert cam_engine(model, layers=("pool4",)) is not engine
    gc.collect()
    n_cached, model_ref = len(cam_module._ENGINES), weakref.ref(model)
    del model, engine
    gc.collect()
    assert model_ref() is None, "the CAM cache keeps the model alive"
    assert len(cam_module._ENGINES) == n_cached - 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(layers=("pool9",)), "no layer 'pool9'"),
    (dict(layers=("dense1",)), "must be \\(B, h, w, c\\)"),
    (dict(methods=("scorecam",)), "methods: unknown CAM method 'scorecam'; registered: gradcam, gradcam\\+\\+, layercam"),
    (dict(methods=(GRADCAM, GRADCAM)), "methods must be distinct"),
    (dict(methods=()), "methods must be distinct"),
    (dict(layers=()), "at least one layer"),
    (dict(targets=[0, 1]), "targets must be an int or int \\(N,\\)"),
    (dict(targets=2), "targets must lie in \\[0, 1\\]"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_arguments_raise_clear_errors(tiny_trained_model, test_images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_cams(tiny_trained_model, test_images[:3], progress=False, **kwargs)


def test_wrong_image_shape_and_missing_logits_layer(tiny_trained_model, test_images):
    with pytest.raises(ValueError, match="images must be float32"):
        compute_cams(tiny_trained_model, test_images[..., 0], progress=False)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.MaxPooling2D(name="pool1")(keras.layers.Conv2D(2, 3, name="conv1")(inputs))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    with pytest.raises(ValueError, match="no linear 'logits' layer"):
        compute_cams(keras.Model(inputs, outputs), np.zeros((1, 16, 16, 1), np.float32),
                     layers=("pool1",), progress=False)


def test_batched_maps_are_the_maps_of_one_call(tiny_trained_model, test_images):
    """Maps made batch by batch as rows are read (BatchedMaps) equal one compute_cams call, bit for bit,
    whatever rows are read together; a pool built from them equals the pool built from the arrays."""
    from knee_tf.core import augment
    from knee_tf.core.cam import BatchedMaps

    toy_model, x = tiny_trained_model, test_images[:11]
    whole = compute_cams(toy_model, x, layers=("pool2",), methods=METHODS, batch_size=4)
    lazy = BatchedMaps(toy_model, x, "pool2", METHODS, batch_size=4)
    for m in METHODS:
        ref = whole.select(m, "pool2")
        assert lazy[m].shape == ref.shape
        for rows in ([0, 1, 2], [3, 4, 5, 9], [10], list(range(11))):
            assert lazy[m][np.array(rows)].tobytes() == ref[rows].tobytes()
    labels, ids = np.arange(11) % 2, [f"i{k}" for k in range(11)]
    kw = {"variants": 2, "weight_range": (0.5, 1.0), "layer": "pool2", "seed": 3, "smooth_sigma": 1.0}
    a = augment.build_augmented_pool(x, labels, ids, {m: whole.select(m, "pool2") for m in METHODS}, **kw)
    b = augment.build_augmented_pool(x, labels, ids, BatchedMaps(toy_model, x, "pool2", METHODS, batch_size=4), **kw)
    assert a[0].tobytes() == b[0].tobytes() and a[2].equals(b[2])

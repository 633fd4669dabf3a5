"""knee_tf.core.augment: mask preparation, the two transforms, the training pool, DICOM export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.core import augment

H = 32


def _blob(cy: float, cx: float, width: float = 4.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:H]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2)).astype(np.float32)


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 1.0, size=(H, H, 1)).astype(np.float32)


@pytest.fixture
def cam() -> np.ndarray:
    return _blob(10, 20)


# ----------------------------------------------------------------------------- transforms


def test_weight_zero_is_identity(image, cam):
    np.testing.assert_array_equal(augment.weighted_obfuscation(image, cam, 0.0), image)


def test_transforms_on_hand_computed_pixels():
    image = np.array([[0.8, 0.4], [1.0, 0.5]], np.float32)
    cam = np.array([[1.0, 0.5], [0.0, 0.25]], np.float32)
    # inverted: image * (1 - M), worked out by hand
    np.testing.assert_allclose(augment.inverted_obfuscation(image, cam), [[0.0, 0.2], [1.0, 0.375]], atol=1e-7)
    # weighted, w = 0.5: image * (1 - 0.5 M)
    np.testing.assert_allclose(augment.weighted_obfuscation(image, cam, 0.5), [[0.4, 0.3], [1.0, 0.4375]],
                               atol=1e-7)
    # a batch with one weight per image: w = 0.5 for the first, 1.0 for the second
    both = augment.weighted_obfuscation(np.stack([image, image])[..., None], np.stack([cam, cam]),
                                        np.array([0.5, 1.0]))
    np.testing.assert_allclose(both[..., 0], [[[0.4, 0.3], [1.0, 0.4375]], [[0.0, 0.2], [1.0, 0.375]]], atol=1e-7)


def test_inverted_mask_dims_salient_region_more(image, cam):
    out = augment.inverted_obfuscation(image, cam)[..., 0]
    ratio = out / image[..., 0]
    salient = cam > 0.5
    assert salient.sum() > 5 and (~salient).sum() > 5
    assert ratio[salient].mean() < 0.5 < ratio[~salient].mean()
    # the peak of the map is removed entirely
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    assert out[peak] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_outputs_in_range_dtype_and_shape(weight):
    rng = np.random.default_rng(1)
    for shape in [(H, H), (H, H, 1), (3, H, H), (3, H, H, 1)]:
        x = rng.random(shape).astype(np.float32)
        m = rng.random(shape).astype(np.float32)
        out = augment.weighted_obfuscation(x, m, weight)
        assert out.shape == x.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.all(out <= x + 1e-7)  # obfuscation only ever darkens


def test_per_image_weights_in_a_batch():
    x = np.ones((3, H, H, 1), np.float32)
    m = np.ones((3, H, H), np.float32)
    out = augment.weighted_obfuscation(x, m, np.array([0.0, 0.5, 1.0]))
    np.testing.assert_allclose(out[:, 0, 0, 0], [1.0, 0.5, 0.0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight=1.5), "weight"),
    (dict(weight=-0.1), "weight"),
    (dict(cam=np.ones((H, H + 1), np.float32)), "spatial size"),
    (dict(cam=np.full((H, H), 2.0, np.float32)), r"\[0, 1\]"),
])
def test_bad_input_is_a_clear_error(image, cam, kwargs, match):
    args = dict(image=image, cam=cam, weight=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        augment.weighted_obfuscation(**args)


def test_augment_image_draws_weight_in_range_deterministically(image, cam):
    out1, w1 = augment.augment_image(image, cam, np.random.default_rng(5), (0.6, 0.8))
    out2, w2 = augment.augment_image(image, cam, np.random.default_rng(5), (0.6, 0.8))
    assert 0.6 <= w1 <= 0.8 and w1 == w2
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_allclose(out1, image * (1 - w1 * cam[..., None]), atol=1e-6)
    _, w_inv = augment.augment_image(image, cam, np.random.default_rng(5), transform="inverted")
    assert w_inv == 1.0


# ----------------------------------------------------------------------------- masks


def test_prepare_mask_smoothing_keeps_peak_and_zero_maps():
    cam = np.zeros((2, H, H), np.float32)
    cam[0, 16, 16] = 0.8
    m = augment.prepare_mask(cam, smooth_sigma=2.0)
    assert m[0].max() == pytest.approx(0.8, rel=1e-5)  # rescaled to the original peak
    assert (m[0] > 0.1).sum() > 4  # spread out
    assert np.all(m[1] == 0) and np.all(np.isfinite(m))  # an all-zero map stays zero, no NaN


def test_prepare_mask_threshold_and_channel_axis():
    cam = _blob(16, 16)[..., None]
    m = augment.prepare_mask(cam, threshold=0.5)
    assert m.shape == cam.shape
    assert np.all((m == 0) | (m >= 0.5))
    assert np.all(m[cam >= 0.5] == cam[cam >= 0.5])


# ----------------------------------------------------------------------------- pool


def _pool_inputs(n: int = 8):
    rng = np.random.default_rng(0)
    images = rng.uniform(0.1, 1.0, (n, H, H, 1)).astype(np.float32)
    labels = np.array([0, 1] * (n // 2), np.int32)
    ids = [f"img{i:02d}" for i in range(n)]
    maps = {"gradcam": np.stack([_blob(8 + i, 10) for i in range(n)]),
            "gradcam++": np.stack([_blob(20, 8 + i) for i in range(n)])}
    return images, labels, ids, maps


def test_pool_shapes_labels_provenance_and_recipe():
    images, labels, ids, maps = _pool_inputs(8)
    x, y, prov = _pool(images, labels, ids, maps, variants=2, weight_range=(0.5, 0.9), seed=3)
    assert x.shape == (16, H, H, 1) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    assert list(prov.columns) == list(augment.PROVENANCE_COLUMNS) and len(prov) == 16
    assert prov["aug_id"].is_unique
    assert set(prov["layer"]) == {"pool4"}
    src = prov["source_image_id"].map({k: i for i, k in enumerate(ids)}).to_numpy()
    np.testing.assert_array_equal(y, labels[src])  # labels kept
    # recipe: 4 combinations, equal shares; an image's two variants use different combinations
    counts = prov.groupby(["method", "transform"]).size()
    assert len(counts) == 4 and set(counts) == {4}
    assert (prov.groupby("source_image_id")[["method", "transform"]]
            .apply(lambda g: len(g.drop_duplicates())) == 2).all()
    inv = prov["transform"] == "inverted"
    assert (prov.loc[inv, "weight"] == 1.0).all()
    assert prov.loc[~inv, "weight"].between(0.5, 0.9).all()
    # every image is exactly image * (1 - w * M) with its own method's map
    for k, r in prov.iterrows():
        m = maps[r["method"]][src[k]][..., None]
        np.testing.assert_allclose(x[k], images[src[k]] * (1 - r["weight"] * m), atol=1e-5)


def test_pool_is_deterministic_for_a_seed():
    images, labels, ids, maps = _pool_inputs(8)
    a = _pool(images, labels, ids, maps, seed=7)
    b = _pool(images, labels, ids, maps, seed=7)
    c = _pool(images, labels, ids, maps, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[2], b[2])
    assert not a[2]["weight"].equals(c[2]["weight"])


def test_pool_does_not_depend_on_chunking(monkeypatch):
    images, labels, ids, maps = _pool_inputs(8)
    whole = _pool(images, labels, ids, maps, variants=2, seed=1, smooth_sigma=1.5)
    monkeypatch.setattr(augment, "_POOL_CHUNK", 3)
    chunked = _pool(images, labels, ids, maps, variants=2, seed=1, smooth_sigma=1.5)
    np.testing.assert_array_equal(whole[0], chunked[0])
    pd.testing.assert_frame_equal(whole[2], chunked[2])


def test_a_float16_pool_is_the_float32_pool_rounded():
    images, labels, ids, maps = _pool_inputs(8)
    full = _pool(images, labels, ids, maps, variants=2, seed=1, smooth_sigma=1.5)
    half = _pool(images, labels, ids, maps, variants=2, seed=1, smooth_sigma=1.5, dtype=np.float16)
    assert half[0].dtype == np.float16
    assert half[0].tobytes() == full[0].astype(np.float16).tobytes()
    pd.testing.assert_frame_equal(full[2], half[2])


def _pool(*args, **settings):
    """build_augmented_pool with the settings a test does not vary (one variant, w in [0.5, 1], pool4, seed 0)."""
    return augment.build_augmented_pool(*args, **({"variants": 1, "weight_range": (0.5, 1.0), "layer": "pool4",
                                                   "seed": 0} | settings))


def test_pool_takes_explicit_settings_and_validates():
    images, labels, ids, maps = _pool_inputs(4)
    _, _, prov = augment.build_augmented_pool(images, labels, ids, maps, variants=3, weight_range=(0.5, 1.0),
                                              layer="pool3", seed=0)
    assert len(prov) == 12 and set(prov["layer"]) == {"pool3"}
    with pytest.raises(TypeError, match="weight_range"):  # no hidden defaults
        augment.build_augmented_pool(images, labels, ids, maps, variants=1, layer="pool4", seed=0)
    with pytest.raises(ValueError, match="unique"):
        _pool(images, labels, ["a"] * 4, maps)
    with pytest.raises(ValueError, match="select_layer"):
        _pool(images, labels, ids, {"gradcam": np.zeros((4, 2, H, H))})


def test_select_layer_picks_the_named_layer():
    m = np.random.default_rng(0).random((2, 4, H, H)).astype(np.float32)
    out = augment.select_layer({"gradcam": m}, ("pool1", "pool2", "pool3", "pool4"), "pool3")
    np.testing.assert_array_equal(out["gradcam"], m[:, 2])
    with pytest.raises(ValueError, match="pool9"):
        augment.select_layer({"gradcam": m}, ("pool1", "pool2", "pool3", "pool4"), "pool9")

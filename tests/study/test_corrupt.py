"""knee_tf.study.corrupt: held-out corruptions (monotone, deterministic, in range) and cohort 3."""

from __future__ import annotations

import numpy as np
import pytest

from knee_tf.core import augment
from knee_tf.study import corrupt

H = 48
NAMES = sorted(corrupt.CORRUPTIONS)


def _phantom(n: int = 6) -> np.ndarray:
    """Bright ellipses with texture on a dark background: float32 (n, H, H, 1) in [0, 1]."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:H] / H - 0.5
    body = ((xx / 0.3) ** 2 + (yy / 0.4) ** 2 < 1).astype(np.float32)
    x = body[None] * (0.5 + 0.4 * rng.random((n, H, H)))
    return np.clip(x, 0, 1).astype(np.float32)[..., None]


@pytest.mark.parametrize("name", NAMES)
def test_monotone_in_severity(name):
    x = _phantom()
    rms = [np.sqrt(np.mean((corrupt.corrupt_batch(x, name, s, seed=1)[s] - x) ** 2, axis=(1, 2, 3)))
           for s in corrupt.SEVERITIES]
    rms = np.stack(rms)  # (5, n)
    assert rms[0].min() > 1e-3  # even severity 1 changes every image
    assert np.all(np.diff(rms, axis=0) > 0), rms.round(4)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_shape_dtype_range(name):
    x = _phantom(3)
    a = corrupt.corrupt_batch(x, name, 3, seed=5)[3]
    b = corrupt.corrupt_batch(x, name, 3, seed=5)[3]
    c = corrupt.corrupt_batch(x, name, 3, seed=6)[3]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    flat = corrupt.corrupt_batch(x[..., 0], name, 3, seed=5)[3]  # (N, H, W) input
    assert flat.shape == x.shape[:3]
    np.testing.assert_array_equal(flat, a[..., 0])


@pytest.mark.parametrize("name", NAMES)
def test_batch_matches_single_image_function(name):
    x = _phantom(4)
    batch = corrupt.corrupt_batch(x, name, 4, seed=2, chunk=3)[4]  # crosses a chunk boundary
    for i in (0, 3):
        single = corrupt.CORRUPTIONS[name](x[i], 4, corrupt.image_rng(2, name, i))
        assert single.shape == x[i].shape and single.dtype == np.float32
        np.testing.assert_allclose(batch[i], single, atol=1e-6)
    # an image's corruption does not depend on the rest of the batch
    np.testing.assert_array_equal(corrupt.corrupt_batch(x[:1], name, 4, seed=2)[4][0], batch[0])


@pytest.mark.parametrize("name", NAMES)
def test_piecewise_corruption_equals_the_whole_set(name):
    # predict_corruptions corrupts one inference batch at a time: with first_index, the pieces
    # must be the rows of corrupting the whole set at once
    x = _phantom(7)
    whole = corrupt.corrupt_batch(x, name, [2, 5], seed=3)
    for start, stop in ((0, 3), (3, 7), (5, 6)):
        piece = corrupt.corrupt_batch(x[start:stop], name, [2, 5], seed=3, first_index=start)
        for s in (2, 5):
            np.testing.assert_array_equal(piece[s], whole[s][start:stop])
    shifted = corrupt.corrupt_batch(x[3:], name, 5, seed=3)[5]  # without first_index: other draws
    assert not np.array_equal(shifted, whole[5][3:])


def test_bias_field_is_smooth_and_multiplicative():
    x = _phantom(1)[0, ..., 0]
    out = corrupt.bias_field(x, 5, np.random.default_rng(3))
    inside = x > 0.1
    log_ratio = np.log(out[inside] / x[inside])
    assert log_ratio.std() > 0.1
    assert np.all(out[~inside] == 0)  # multiplicative: air stays dark
    ratio = np.where(inside, out / np.maximum(x, 1e-6), np.nan)
    step = np.nanmax(np.abs(np.diff(ratio, axis=1)))
    assert step < 0.2  # smooth: neighbouring pixels see nearly the same gain
    assert out.max() == pytest.approx(x.max(), rel=1e-5)  # renormalised to the input maximum


def test_coil_dropout_darkens_one_sector_only():
    x = np.ones((H, H), np.float32)
    out = corrupt.coil_dropout(x, 5, np.random.default_rng(4))
    assert np.all(out <= x + 1e-6)
    assert out.min() < 0.6  # a deep shadow near the failed element
    yy, xx = np.mgrid[0:H, 0:H] / H - 0.5
    y0, x0 = np.unravel_index(np.argmin(out), out.shape)
    opposite = (-yy[y0, x0], -xx[y0, x0])
    oy, ox = int(round((opposite[0] + 0.5) * H - 0.5)), int(round((opposite[1] + 0.5) * H - 0.5))
    assert out[np.clip(oy, 0, H - 1), np.clip(ox, 0, H - 1)] > 0.9  # the far side keeps its signal
    assert out[H // 2, H // 2] > 0.85  # the centre sees all elements


def test_rician_noise_has_a_positive_floor_in_air():
    x = np.zeros((H, H), np.float32)
    out = corrupt.rician_noise(x, 3, np.random.default_rng(0))
    sigma = corrupt.RICIAN_SIGMA[2]
    # the magnitude of pure complex Gaussian noise is Rayleigh: mean sigma * sqrt(pi / 2)
    assert out.min() >= 0
    assert out.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.1)


def test_motion_ghosts_lie_along_the_phase_encode_axis():
    x = np.zeros((H, H), np.float32)
    x[18:30, 18:30] = 1.0
    outside_cols = np.ones(H, bool)
    outside_cols[18:30] = False
    for seed in range(4):
        out = corrupt.motion_ghosting(x, 5, np.random.default_rng(seed))
        ghost = np.abs(out - x) * (x == 0)
        along = ghost[:, ~outside_cols].sum()  # same columns as the object: the PE direction
        across = ghost[:, outside_cols].sum()
        assert along > 0.1 and along > 20 * across


@pytest.mark.parametrize("bad, match", [(0, "severity"), (6, "severity"), (2.0, "severity")])
def test_bad_severity(bad, match):
    with pytest.raises(ValueError, match=match):
        corrupt.corrupt_batch(_phantom(1), "rician_noise", bad)


def test_unknown_corruption_and_bad_shape():
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt.corrupt_batch(_phantom(1), "metal", 1)
    with pytest.raises(ValueError, match="images must be"):
        corrupt.corrupt_batch(np.zeros((H, H), np.float32), "bias_field", 1)


def test_cam_corruption_is_the_augmentation_transform():
    x = _phantom(3)
    yy, xx = np.mgrid[0:H, 0:H]
    maps = np.stack([np.exp(-((yy - 10 * (i + 1)) ** 2 + (xx - 24) ** 2) / 30.0)
                     for i in range(3)]).astype(np.float32)
    out = corrupt.cam_corruption(x, maps, 0.9)
    np.testing.assert_array_equal(out, augment.weighted_obfuscation(x, maps, 0.9))
    np.testing.assert_array_equal(corrupt.cam_corruption(x, maps, 0.0), x)
    smoothed = corrupt.cam_corruption(x, maps, 0.9, smooth_sigma=2.0)
    expected = augment.weighted_obfuscation(x, augment.prepare_mask(maps, 2.0), 0.9)
    np.testing.assert_array_equal(smoothed, expected)
    with pytest.raises(ValueError, match="maps must be"):
        corrupt.cam_corruption(x, maps[:2], 0.9)


def test_cam_corruption_lowers_the_target_class_score(tiny_trained_model, toy_blob_data):
    """On a trained toy model, obfuscating Model A's own Grad-CAM region lowers the score of the
    explained class, and more than the same masks moved elsewhere (rolled by half the image)."""
    from knee_tf.core.cam import compute_cams
    from knee_tf.core.model import predict_proba

    x, y, _ = toy_blob_data["test"]
    res = compute_cams(tiny_trained_model, x, layers=("pool4",), methods=("gradcam",),
                       progress=False)
    maps, target = res.select("gradcam", "pool4"), res.targets
    rows = np.arange(len(x))

    def score(images):
        return predict_proba(tiny_trained_model, images)[rows, target]

    before = score(x)
    after = score(corrupt.cam_corruption(x, maps, 0.9))
    control = score(corrupt.cam_corruption(x, np.roll(maps, x.shape[1] // 2, axis=(1, 2)), 0.9))
    relevant = target == 1  # images where the model points at a blob
    assert relevant.sum() >= 10
    drop, control_drop = (before - after)[relevant].mean(), (before - control)[relevant].mean()
    assert drop > 0.1, drop
    assert drop > control_drop + 0.05, (drop, control_drop)


@pytest.mark.parametrize("name", sorted(corrupt.CORRUPTIONS))
def test_several_severities_at_once_equal_one_at_a_time(name):
    x = np.random.default_rng(4).random((5, 24, 24, 1)).astype(np.float32)
    got = corrupt.corrupt_batch(x, name, (1, 3, 5), seed=7, chunk=2)
    assert sorted(got) == [1, 3, 5]
    for s in (1, 3, 5):
        np.testing.assert_array_equal(got[s], corrupt.corrupt_batch(x, name, s, seed=7, chunk=3)[s])

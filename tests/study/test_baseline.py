"""The linear difficulty baseline: separable data is learned, pure noise is not, bad input rejected."""

from __future__ import annotations

import numpy as np
import pytest

from knee_tf.study.baseline import downsample, fit_logistic, linear_baseline


def _blobs(n: int, seed: int):
    """Class 1: a bright square top-left; class 0: bottom-right; plus noise. (N, 40, 40, 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.3, 0.1, size=(n, 40, 40)).astype(np.float32)
    for i, c in enumerate(y):
        if c:
            x[i, 4:16, 4:16] += 0.5
        else:
            x[i, 24:36, 24:36] += 0.5
    planes = np.array(["axial", "sagittal"])[rng.integers(0, 2, n)]
    return x[..., None], y, planes


def test_learns_linearly_separable_images():
    xtr, ytr, ptr = _blobs(120, 0)
    xte, yte, pte = _blobs(80, 1)
    out = linear_baseline(xtr, ytr, xte, yte, size=8, train_planes=ptr, test_planes=pte)
    assert out["accuracy"] > 0.97 and out["train_accuracy"] > 0.97
    assert {"accuracy_axial", "accuracy_sagittal"} <= set(out)
    assert out["n_train"] == 120 and out["n_test"] == 80


def test_is_at_chance_on_random_labels():
    xtr, _, _ = _blobs(200, 2)
    xte, _, _ = _blobs(400, 3)
    rng = np.random.default_rng(4)
    out = linear_baseline(xtr, rng.integers(0, 2, 200), xte, rng.integers(0, 2, 400), size=8)
    assert 0.38 < out["accuracy"] < 0.62


def test_string_labels_and_per_plane_models():
    xtr, ytr, ptr = _blobs(100, 5)
    xte, yte, pte = _blobs(60, 6)
    names = np.array(["irrelevant", "relevant"])
    out = linear_baseline(xtr, names[ytr], xte, names[yte], size=8, train_planes=ptr,
                          test_planes=pte, per_plane=True)
    assert out["per_plane"] and out["accuracy"] > 0.95


def test_downsample_is_block_mean():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_allclose(downsample(x, 2), [[2.5, 4.5, 10.5, 12.5]])


def test_l2_shrinks_weights():
    xtr, ytr, _ = _blobs(80, 7)
    f = downsample(xtr, 8)
    w_small, _ = fit_logistic(f, ytr, l2=1e-3)
    w_big, _ = fit_logistic(f, ytr, l2=10.0)
    assert np.linalg.norm(w_big) < 0.2 * np.linalg.norm(w_small)


@pytest.mark.parametrize("call,match", [
    (lambda: downsample(np.zeros((2, 4)), 2), "images must be"),
    (lambda: downsample(np.zeros((1, 4, 4)), 8), "smaller than size"),
    (lambda: fit_logistic(np.zeros((3, 2)), np.array([0, 1, 2])), "labels must be 0 or 1"),
    (lambda: fit_logistic(np.zeros((3, 2)), np.array([0, 1, 1]), l2=-1), "l2 must be"),
    (lambda: linear_baseline(np.zeros((2, 8, 8)), [0, 1], np.zeros((2, 8, 8)), [0, 1], size=4,
                             per_plane=True), "per_plane=True needs"),
])
def test_bad_input_is_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()

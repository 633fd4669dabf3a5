"""knee_tf.core.faithfulness: pixel ranking, baselines, deletion/insertion curves and their table."""

from __future__ import annotations

import numpy as np
import pytest

from knee_tf.core.cam import compute_cams
from knee_tf.core.faithfulness import (
    NO_LAYER,
    RANDOM_METHOD,
    baseline_images,
    curve_auc,
    faithfulness_curves,
    faithfulness_table,
    pixel_ranks,
)
from knee_tf.core.model import predict_proba


@pytest.fixture(scope="module")
def relevant_test_set(toy_blob_data):
    """Class-1 (blob) test images and their ground-truth blob maps."""
    images, labels, blobs = toy_blob_data["test"]
    keep = labels == 1
    return images[keep], blobs[keep]


def test_pixel_ranks_order_and_seeded_tie_breaking():
    maps = np.array([[[0.1, 0.9], [0.5, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    ranks = pixel_ranks(maps, seed=3)
    np.testing.assert_array_equal(ranks[0], [2, 0, 1, 3])
    assert sorted(ranks[1]) == [0, 1, 2, 3]
    np.testing.assert_array_equal(pixel_ranks(maps, seed=3), ranks)
    assert any((pixel_ranks(maps, seed=s)[1] != ranks[1]).any() for s in range(4, 10))
    with pytest.raises(ValueError, match="NaN"):
        pixel_ranks(np.full((1, 2, 2), np.nan))


def test_curve_auc():
    fractions = np.linspace(0, 1, 11)
    np.testing.assert_allclose(curve_auc(np.ones((2, 11)), fractions), [1.0, 1.0])
    np.testing.assert_allclose(curve_auc(1 - fractions, fractions), 0.5)


def test_baselines():
    images = np.random.default_rng(0).random((2, 16, 16, 1), np.float32)
    assert (baseline_images(images, "zero") == 0).all()
    assert (baseline_images(images, 0.25) == 0.25).all()
    np.testing.assert_allclose(baseline_images(images, "mean")[:, 3, 5, 0],
                               images.mean(axis=(1, 2, 3)), rtol=1e-6)
    blurred = baseline_images(images, "blur", blur_sigma=2)
    assert blurred.shape == images.shape and blurred.std() < 0.5 * images.std()
    np.testing.assert_allclose(blurred.mean(), images.mean(), atol=0.02)
    with pytest.raises(ValueError, match="baseline must be"):
        baseline_images(images, "noise")


def test_true_map_deletes_faster_than_a_random_map(tiny_trained_model, relevant_test_set):
    images, blobs = relevant_test_set
    curves = faithfulness_curves(tiny_trained_model, images, {"truth": blobs[:, None]},
                                 layers=("blob",), targets=1, steps=10, progress=False)
    table = faithfulness_table(curves).set_index("method")
    assert table.loc["truth", "deletion_auc"] < 0.3
    assert table.loc[RANDOM_METHOD, "deletion_auc"] > 0.7
    assert table.loc[RANDOM_METHOD, "layer"] == NO_LAYER


def test_curves_endpoints_and_table(tiny_trained_model, relevant_test_set):
    images, _ = relevant_test_set
    cams = compute_cams(tiny_trained_model, images, progress=False)
    curves = faithfulness_curves(tiny_trained_model, images, cams, steps=4,
                                 insertion_baseline="zero", batch_size=32, progress=False)
    np.testing.assert_allclose(curves.fractions, [0, 0.25, 0.5, 0.75, 1])
    target_prob = cams.probabilities[np.arange(len(images)), cams.targets]
    black = predict_proba(tiny_trained_model, np.zeros_like(images))[:, 1]
    for method in ("gradcam", "gradcam++", RANDOM_METHOD):
        dele, ins = curves.deletion[method], curves.insertion[method]
        assert dele.shape == ins.shape == (len(images), 1 if method == RANDOM_METHOD else 4, 5)
        full, empty = (np.broadcast_to(p[:, None], dele.shape[:2]) for p in (target_prob, black))
        np.testing.assert_allclose(dele[..., 0], full, atol=1e-5)
        np.testing.assert_allclose(dele[..., -1], empty, atol=1e-5)
        np.testing.assert_allclose(ins[..., 0], empty, atol=1e-5)
        np.testing.assert_allclose(ins[..., -1], full, atol=1e-5)
    table = curves.table()
    assert list(table.columns) == ["layer", "method", "deletion_auc", "insertion_auc",
                                   "deletion_sem", "insertion_sem", "n"]
    assert len(table) == 9 and (table["n"] == len(images)).all()
    assert table[["deletion_auc", "insertion_auc"]].stack().between(0, 1).all()
    best = table[table.method == "gradcam"]["deletion_auc"].min()
    assert best < table.set_index("method").loc[RANDOM_METHOD, "deletion_auc"]
    frame = curves.frame()
    assert set(frame.columns) == {"method", "layer", "curve", "fraction", "score"}
    assert len(frame) == 2 * 9 * 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(cams={"gradcam": np.zeros((3, 1, 64, 32))}, layers=("pool4",)), "must be \\(N, L, H, W\\)"),
    (dict(cams={"gradcam": np.zeros((3, 1, 64, 64))}), "layers is required"),
    (dict(cams={}), "non-empty mapping"),
    (dict(cams={"random": np.zeros((3, 1, 64, 64))}, layers=("x",)), "reserved"),
    (dict(cams={"gradcam": np.zeros((3, 1, 64, 64))}, layers=("x",), targets=5), "targets"),
    (dict(cams={"gradcam": np.zeros((3, 1, 64, 64))}, layers=("x",), steps=0), "steps"),
])
def test_bad_arguments_raise_clear_errors(tiny_trained_model, relevant_test_set, kwargs, message):
    with pytest.raises(ValueError, match=message):
        faithfulness_curves(tiny_trained_model, relevant_test_set[0][:3], progress=False, **kwargs)

"""The explorers' logic without a browser (tiny trained model on the toy blob problem), and their
widgets driven by setting values as a browser would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.core.augment import weighted_obfuscation
from knee_tf.core.cam import compute_cams
from knee_tf.core.faithfulness import faithfulness_curves
from knee_tf.core.model import predict_proba
from knee_tf.core.vocab import CLASSES, PLANES
from knee_tf.teach import explore

LAYERS = ("pool1", "pool2", "pool3", "pool4")


@pytest.fixture(scope="module")
def toy_index(toy_blob_data):
    _, labels, _ = toy_blob_data["test"]
    n = len(labels)
    return pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(n)], "plane": [PLANES[i % 3] for i in range(n)],
                         "label": [CLASSES[v] for v in labels]})


def test_select_images_filters_by_plane_label_and_outcome(toy_index):
    correct = np.arange(len(toy_index)) % 4 != 0
    rows = explore.select_images(toy_index, correct, plane=PLANES[1], label=CLASSES[1], outcome="wrong")
    expected = [i for i in range(len(toy_index)) if toy_index["plane"][i] == PLANES[1]
                and toy_index["label"][i] == CLASSES[1] and not correct[i]]
    assert rows.tolist() == expected
    assert explore.select_images(toy_index, correct).tolist() == list(range(len(toy_index)))
    assert len(explore.select_images(toy_index, correct, outcome="right")) == correct.sum()
    for bad in ({"plane": "oblique"}, {"label": "maybe"}, {"outcome": "lucky"}):
        with pytest.raises(ValueError, match="must be"):
            explore.select_images(toy_index, correct, **bad)


def test_cam_view_is_compute_cams_for_the_call_and_the_other_class(tiny_trained_model, toy_blob_data):
    x = toy_blob_data["test"][0][:1]
    view = explore.cam_view(tiny_trained_model, x[0], LAYERS)
    p = predict_proba(tiny_trained_model, x)[0, 1]
    assert view.p_relevant == pytest.approx(float(p), abs=1e-6)
    assert view.predicted == int(p > 0.5)
    pair = np.concatenate([x, x])  # compute_cams on one image crashes tensorflow-cpu 2.21 (explore.image_maps)
    for target, maps in ((view.predicted, view.maps), (1 - view.predicted, view.other)):
        ref = compute_cams(tiny_trained_model, pair, layers=LAYERS, targets=target, progress=False)
        for m in ref.methods:
            np.testing.assert_allclose(maps[m], ref[m][0], atol=1e-5)
    maps = explore.image_maps(tiny_trained_model, x[0], "pool4")
    ref = compute_cams(tiny_trained_model, pair, layers=("pool4",), progress=False)
    np.testing.assert_allclose(maps["gradcam++"], ref["gradcam++"][0, 0], atol=1e-5)
    assert view.map("gradcam", "pool4").shape == x.shape[1:3]
    with pytest.raises(ValueError, match="unknown layer"):
        view.map("gradcam", "pool9")


def test_deletion_curve_is_the_faithfulness_curve_of_one_image(tiny_trained_model, toy_blob_data):
    x = toy_blob_data["test"][0][:1]
    cams = compute_cams(tiny_trained_model, np.concatenate([x, x]), layers=("pool4",), progress=False)
    t = int(cams.targets[0])
    fractions, scores, auc = explore.deletion_curve(tiny_trained_model, x[0], cams["gradcam"][0, 0], t, steps=8)
    ref = faithfulness_curves(tiny_trained_model, x, {"gradcam": cams["gradcam"][:1]}, layers=("pool4",), targets=[t],
                              steps=8, random_reference=False, progress=False)
    np.testing.assert_allclose(scores, ref.deletion["gradcam"][0, 0], atol=1e-6)
    assert scores[0] == pytest.approx(float(predict_proba(tiny_trained_model, x)[0, t]), abs=1e-5)
    assert auc == pytest.approx(float(ref.auc("deletion")["gradcam"][0, 0]))
    assert len(fractions) == 9


def _blob_image(toy_blob_data, model):
    """A class-1 toy image the model calls relevant (least confidently), and its blob mask."""
    x, y, blobs = toy_blob_data["test"]
    p = predict_proba(model, x)[:, 1]
    candidates = np.flatnonzero((y == 1) & (p > 0.5))
    i = int(candidates[np.argmin(p[candidates])])  # the least confident: its printed probability moves
    return x[i], blobs[i]


def test_smallest_flipping_weight_is_the_first_flip_of_a_scan(tiny_trained_model, toy_blob_data):
    image, blob = _blob_image(toy_blob_data, tiny_trained_model)

    def call(w):
        return predict_proba(tiny_trained_model, weighted_obfuscation(image, blob, w)[None])[0, 1] > 0.5

    flip = explore.smallest_flipping_weight(tiny_trained_model, image, blob, step=0.05, tol=1e-3)
    assert flip is not None and 0 < flip <= 1
    assert call(flip) != call(0.0)  # it flips there
    assert all(call(w) == call(0.0) for w in np.arange(0, flip - 1e-3, 0.05))  # no grid point below flips
    assert call(flip - 2e-3) == call(0.0)  # bisection: just below, the call is the original one
    assert explore.smallest_flipping_weight(tiny_trained_model, image, np.zeros_like(blob)) is None
    with pytest.raises(ValueError, match="tol < step"):
        explore.smallest_flipping_weight(tiny_trained_model, image, blob, step=0.01, tol=0.1)


def test_augment_view_applies_the_transform_and_scores_every_model(tiny_trained_model, toy_blob_data):
    image, blob = _blob_image(toy_blob_data, tiny_trained_model)
    models = {"A": tiny_trained_model, "B": None}
    view = explore.augment_view(models, image, blob, "weighted", 0.3)
    np.testing.assert_allclose(view.augmented, weighted_obfuscation(image, blob, 0.3), atol=1e-6)
    p = predict_proba(tiny_trained_model, view.augmented[None])[0, 1]
    assert view.p_relevant["A"] == pytest.approx(float(p), abs=1e-6) and view.p_relevant["B"] is None
    assert view.flipped("B") is None
    inverted = explore.augment_view(models, image, blob, "inverted", 0.3)
    assert inverted.weight == 1.0
    np.testing.assert_allclose(inverted.augmented, weighted_obfuscation(image, blob, 1.0), atol=1e-6)
    smooth = explore.augment_view(models, image, blob, "weighted", 0.3, smooth_sigma=2.0)
    assert not np.allclose(smooth.mask, view.mask) and smooth.mask.max() == pytest.approx(view.mask.max(), abs=1e-5)


def test_cam_explorer_widget_follows_its_controls(tiny_trained_model, toy_blob_data, toy_index):
    x = toy_blob_data["test"][0]
    box = explore.cam_explorer(tiny_trained_model, x, toy_index, LAYERS, steps=4)
    c, state = box.controls, box.explorer_state
    assert c["image"].value == 0 and c["picture"].value[:8] == b"\x89PNG\r\n\x1a\n"
    c["layer"].value = "pool1"
    assert state["layer"] == "pool1" and "deletion AUC" in c["status"].value
    c["image"].value = 5
    assert state["row"] == 5 and state["view"].image is not None
    c["plane"].value, c["outcome"].value = PLANES[2], "wrong"
    rows = [v for _, v in c["image"].options]
    assert all(toy_index["plane"][r] == PLANES[2] for r in rows)
    c["label"].value = CLASSES[0]
    if not c["image"].options:
        assert "No test image" in c["status"].value


def test_augmentation_explorer_slider_and_flip_button(tiny_trained_model, toy_blob_data, toy_index):
    x, y, blobs = toy_blob_data["test"]
    image, _ = _blob_image(toy_blob_data, tiny_trained_model)
    row = int(np.flatnonzero((x == image).all(axis=(1, 2, 3)))[0])
    box = explore.augmentation_explorer({"A": tiny_trained_model, "B": None}, x, toy_index, weight=0.0,
                                        maps_for=lambda r: {"gradcam": blobs[r], "gradcam++": blobs[r]})
    c, state = box.controls, box.explorer_state
    c["image"].value = row
    before = c["calls"].value
    assert "Model B: no model in this run yet" in before
    c["weight"].value = 1.0  # the whole blob removed
    assert c["calls"].value != before and state["view"].weight == pytest.approx(1.0)
    c["find"].click()
    flip = state["flip"]
    assert flip is not None and c["weight"].value == pytest.approx(np.ceil(flip * 1000) / 1000)
    assert state["view"].flipped("A") and "flips at w" in c["note"].value
    original = CLASSES[int(state["view"].p_original["A"] > 0.5)]
    assert f"→ {original}" not in c["calls"].value.split("(original")[0]

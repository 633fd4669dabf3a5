"""Live explorers for teaching: Grad-CAM per layer (notebook 03) and map-guided augmentation (notebook 04).

The logic is pure functions of (model, image, settings), tested without a browser:

* :func:`select_images` filters test images by plane, label and whether the model is right;
* :func:`cam_view` computes one image's maps at every layer and method (by default the study's two;
  any registered name, :data:`knee_tf.core.vocab.CAM_METHODS`), for the predicted class
  *and* the other class, in one forward + backward pass (:func:`knee_tf.core.cam.compute_cams` on a
  batch of two copies with the two targets) after a forward pass for the call;
* :func:`deletion_curve` is that image's deletion curve for one map
  (:func:`knee_tf.core.faithfulness.faithfulness_curves` on one image);
* :func:`augment_view` applies one augmentation (method, inverted or weighted, weight w, smoothing)
  and reports each model's probability of *relevant*;
* :func:`smallest_flipping_weight` finds the smallest w in [0, 1] whose weighted image
  ``image * (1 - w * M)`` changes the model's call: a **scan** of w in steps of ``step`` (one
  batch), then **bisection** inside the first step that flips. The scan comes first because the
  model's probability need not be monotone in w even though the image is: bisection alone could
  land on a later crossing and miss the first one.

:func:`cam_explorer` and :func:`augmentation_explorer` are the thin ipywidgets layer: controls, an
``Image`` widget with the figure (:mod:`knee_tf.study.plots`) and a text line; every change calls the
functions above. Papermill stores the widgets' last state in the executed notebook, and
:mod:`knee_tf.study.html` renders that state as static HTML.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from knee_tf.core.augment import prepare_mask, weighted_obfuscation
from knee_tf.core.cam import compute_cams
from knee_tf.core.faithfulness import faithfulness_curves
from knee_tf.core.model import predict_proba
from knee_tf.core.vocab import (
    CLASSES,
    GRADCAM,
    INVERTED,
    PLANES,
    STUDY_CAM_METHODS,
    TRANSFORMS,
    WEIGHTED,
    class_name,
    encode_labels,
    predicted_class,
)
from knee_tf.study.plots import plot_augment_view, plot_cam_view

#: Outcome filter of :func:`select_images`: every image, the ones the model gets right, or wrong.
OUTCOMES: tuple[str, ...] = ("any", "right", "wrong")
#: Filter value meaning "no filter" for plane and label.
ANY = "any"
#: Resolution of the explorers' figures (small: their last state is stored in the notebook).
FIGURE_DPI = 72


# ----------------------------------------------------------------------------- pure functions


def select_images(index: pd.DataFrame, correct, plane: str = ANY, label: str = ANY,
                  outcome: str = ANY) -> np.ndarray:
    """Row positions (int64, ascending) of ``index`` matching the filters.

    index: one row per image with ``plane`` and ``label`` columns; correct: bool (N,), whether the
    model's call is right; plane, label: a value of the column or ``"any"``; outcome: one of
    :data:`OUTCOMES`.
    """
    correct = np.asarray(correct, dtype=bool)
    if correct.shape != (len(index),):
        raise ValueError(f"correct must be bool ({len(index)},), got shape {correct.shape}")
    if plane != ANY and plane not in PLANES:
        raise ValueError(f"plane must be {ANY!r} or one of {PLANES}, got {plane!r}")
    if label != ANY and label not in CLASSES:
        raise ValueError(f"label must be {ANY!r} or one of {CLASSES}, got {label!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    keep = np.ones(len(index), dtype=bool)
    if plane != ANY:
        keep &= index["plane"].to_numpy() == plane
    if label != ANY:
        keep &= index["label"].to_numpy() == label
    if outcome != ANY:
        keep &= correct if outcome == "right" else ~correct
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class CamView:
    """One image's maps. image: float32 (H, W, 1); maps, other: {method: float32 (L, H, W) in [0, 1]}
    explaining the predicted class and the other class; p_relevant: the model's probability of
    class 1; predicted: the explained class index (the other class is ``1 - predicted``)."""

    image: np.ndarray
    layers: tuple[str, ...]
    methods: tuple[str, ...]
    maps: dict
    other: dict
    p_relevant: float
    predicted: int

    def map(self, method: str, layer: str, other: bool = False) -> np.ndarray:
        """float32 (H, W): one method at one layer, for the predicted (or the other) class."""
        if layer not in self.layers:
            raise ValueError(f"unknown layer {layer!r}; this view has {self.layers}")
        source = self.other if other else self.maps
        if method not in source:
            raise ValueError(f"unknown method {method!r}; this view has {self.methods}")
        return source[method][self.layers.index(layer)]


def cam_view(model, image, layers, methods=STUDY_CAM_METHODS) -> CamView:
    """Maps of one image at every layer in ``layers`` for every method, for the predicted class and
    the other class: one forward pass for the call, one compiled CAM pass for both targets. image: float32 (H, W, 1) in [0, 1]; a two-class model."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"image must be one (H, W, 1) image, got shape {x.shape}")
    predicted = int(predicted_class(_p_relevant(model, x[None])[0]))  # the same call as compute_cams' argmax
    res = compute_cams(model, np.stack([x, x]), layers=layers, methods=methods,
                       targets=np.array([predicted, 1 - predicted], np.int32), progress=False)
    return CamView(image=x, layers=tuple(res.layers), methods=tuple(res.methods),
                   maps={m: res[m][0] for m in res.methods}, other={m: res[m][1] for m in res.methods},
                   p_relevant=float(res.probabilities[0, 1]), predicted=predicted)


def image_maps(model, image, layer: str, methods=STUDY_CAM_METHODS) -> dict:
    """One image's maps at one layer for the predicted class: {method: float32 (H, W) in [0, 1]}."""
    x = np.asarray(image, dtype=np.float32)
    res = compute_cams(model, x[None], layers=(layer,), methods=methods, progress=False)
    return {m: res.select(m, layer)[0] for m in res.methods}


def deletion_curve(model, image, cam, target: int, steps: int = 10, seed: int = 0):
    """One image's deletion curve: (fractions float32 (steps + 1,), target-class probability
    float32 (steps + 1,), AUC float). image: (H, W, 1); cam: (H, W) in [0, 1]; pixels are blacked
    out in the map's order (ties broken by ``seed``), as :mod:`knee_tf.core.faithfulness` does."""
    x = np.asarray(image, dtype=np.float32)[None]
    m = np.asarray(cam, dtype=np.float32)[None, None]
    curves = faithfulness_curves(model, x, {"map": m}, layers=("map",), targets=np.array([target], np.int32),
                                 steps=steps, random_reference=False, seed=seed, progress=False)
    scores = curves.deletion["map"][0, 0]
    return curves.fractions, scores, float(curves.auc("deletion")["map"][0, 0])


@dataclass(frozen=True)
class AugmentView:
    """One augmentation of one image. mask: float32 (H, W) the prepared map M; augmented: float32
    (H, W, 1); weight: the w used (1 for inverted); p_relevant: {arm: probability of class 1 on the
    augmented image, or None for an arm without a model}; p_original: the same on the original."""

    mask: np.ndarray
    augmented: np.ndarray
    weight: float
    p_relevant: dict
    p_original: dict

    def flipped(self, arm: str) -> bool | None:
        p, q = self.p_relevant.get(arm), self.p_original.get(arm)
        return None if p is None or q is None else class_name(p) != class_name(q)


def _p_relevant(model, images) -> np.ndarray:
    return predict_proba(model, np.asarray(images, np.float32), batch_size=256)[:, 1]


def augment_view(models: dict, image, cam, transform: str = WEIGHTED, weight: float = 0.5,
                 smooth_sigma: float = 0.0) -> AugmentView:
    """image: float32 (H, W, 1); cam: its raw map (H, W) in [0, 1]; models: {arm: keras model or None}.

    transform ``inverted`` uses w = 1 (``weight`` ignored), ``weighted`` uses ``weight``.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    x = np.asarray(image, dtype=np.float32)
    w = 1.0 if transform == INVERTED else float(weight)
    mask = prepare_mask(cam, smooth_sigma=smooth_sigma)
    out = weighted_obfuscation(x, mask, w)
    p_aug, p_orig = {}, {}
    for arm, model in models.items():
        if model is None:
            p_aug[arm] = p_orig[arm] = None
            continue
        p = _p_relevant(model, np.stack([x, out]))
        p_orig[arm], p_aug[arm] = float(p[0]), float(p[1])
    return AugmentView(mask=mask, augmented=out, weight=w, p_relevant=p_aug, p_original=p_orig)


def smallest_flipping_weight(model, image, mask, step: float = 0.01, tol: float = 1e-4) -> float | None:
    """The smallest w in [0, 1] at which ``image * (1 - w * mask)`` changes the model's call.

    image: float32 (H, W, 1) in [0, 1]; mask: the prepared map M (H, W) in [0, 1]. A scan of
    w = 0, step, 2 step, ..., 1 in one batch finds the first grid point whose call differs from the
    call at w = 0; bisection between it and the grid point before narrows it to ``tol``. Returns
    the smallest w found to flip (within ``tol`` above the crossing), or None when no w on the grid
    flips the call.
    """
    if not 0 < step <= 1 or not 0 < tol < step:
        raise ValueError(f"need 0 < tol < step <= 1, got step={step}, tol={tol}")
    x = np.asarray(image, dtype=np.float32)
    grid = np.unique(np.append(np.arange(0.0, 1.0, step), 1.0)).astype(np.float32)
    batch = np.stack([weighted_obfuscation(x, mask, float(w)) for w in grid])
    calls = predicted_class(_p_relevant(model, batch))
    flips = np.flatnonzero(calls != calls[0])
    if not len(flips):
        return None
    k = int(flips[0])
    lo, hi = float(grid[k - 1]), float(grid[k])
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if predicted_class(_p_relevant(model, weighted_obfuscation(x, mask, mid)[None])[0]) != calls[0]:
            hi = mid
        else:
            lo = mid
    return hi


def figure_png(fig, dpi: int = FIGURE_DPI) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards), for an ipywidgets ``Image``."""
    import matplotlib.pyplot as plt  # lazy: plotting only

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------- widgets


def _call_text(arm: str, p: float | None, p0: float | None = None) -> str:
    if p is None:
        return f"Model {arm}: no model in this run yet"
    text = f"Model {arm}: p(relevant) = {p:.4f} → {class_name(p)}"
    if p0 is not None:
        text += f" (original image: {p0:.4f} → {class_name(p0)})"
    return text


def cam_explorer(model, images, index: pd.DataFrame, layers, methods=STUDY_CAM_METHODS, steps: int = 10,
                 seed: int = 0):
    """The Grad-CAM explorer (notebook 03): pick a test image by plane, label and right/wrong, a layer
    and a method; see the image, the map overlay, the other class's map and the image's deletion curve.

    images: float32 (N, H, W, 1); index: aligned rows with image_id, plane, label. Returns an
    ipywidgets VBox; its ``explorer_state`` dict holds the current view (for tests).
    """
    import ipywidgets as w  # lazy: notebook front end, optional outside Jupyter

    images = np.asarray(images, dtype=np.float32)
    p = _p_relevant(model, images)
    truth = encode_labels(index["label"])
    correct = predicted_class(p) == truth
    plane = w.Dropdown(options=(ANY, *PLANES), value=ANY, description="plane")
    label = w.Dropdown(options=(ANY, *CLASSES), value=ANY, description="label")
    outcome = w.Dropdown(options=OUTCOMES, value=ANY, description="model is")
    choice = w.Dropdown(description="image", layout=w.Layout(width="24em"))
    layer = w.ToggleButtons(options=tuple(layers), value=tuple(layers)[-1], description="layer")
    method = w.ToggleButtons(options=tuple(methods), value=tuple(methods)[0], description="method")
    picture = w.Image(format="png", layout=w.Layout(max_width="64em"))
    status = w.HTML()
    state: dict = {}

    def refilter(_=None):
        rows = [int(r) for r in select_images(index, correct, plane.value, label.value, outcome.value)]
        ids = index["image_id"].to_numpy(str)
        current = choice.value
        choice.options = [(f"{ids[r]} · {index['plane'].iloc[r]} · {index['label'].iloc[r]}", r) for r in rows]
        if rows:
            choice.value = current if current in rows else rows[0]
        if not rows:
            state.clear()
            picture.value = b""
            status.value = "<b>No test image matches these filters.</b>"

    def redraw(_=None):
        if choice.value is None:
            return
        r = int(choice.value)
        if state.get("row") != r:
            state.update(row=r, view=cam_view(model, images[r], layers, methods))
        view = state["view"]
        cam = view.map(method.value, layer.value)
        fractions, scores, auc = deletion_curve(model, images[r], cam, view.predicted, steps=steps, seed=seed)
        state.update(curve=(fractions, scores, auc), layer=layer.value, method=method.value)
        picture.value = figure_png(plot_cam_view(view, layer.value, method.value, fractions, scores, auc,
                                                 label=index["label"].iloc[r]))
        status.value = (f"p(relevant) = {view.p_relevant:.4f} → {class_name(view.p_relevant)}; "
                        f"true label {index['label'].iloc[r]}; deletion AUC of this map {auc:.3f} "
                        "(lower = the map points at what the model uses)")

    for control in (plane, label, outcome):
        control.observe(refilter, names="value")
    for control in (choice, layer, method):
        control.observe(redraw, names="value")
    refilter()
    redraw()
    box = w.VBox([w.HBox([plane, label, outcome]), choice, layer, method, picture, status])
    box.explorer_state = state
    box.controls = {"plane": plane, "label": label, "outcome": outcome, "image": choice, "layer": layer,
                    "method": method, "status": status, "picture": picture}
    return box


def pick_flippable(model, images, labels, layer: str, method: str = GRADCAM, seed: int = 0,
                   limit: int = 64) -> tuple[int, np.ndarray, float] | None:
    """A seeded draw of an image that ``model`` classifies correctly (relevant ones first) and that some
    w in [0, 1] of the weighted transform flips: (row, its prepared mask (H, W), the smallest flipping w), or None when
    none of ``limit`` drawn candidates flips. images: float32 (N, H, W, 1); labels: int (N,)."""
    p = predict_proba(model, images)[:, 1]
    y = np.asarray(labels)
    right = predicted_class(p) == y
    rng = np.random.default_rng(seed)  # relevant slices first: darkening their anatomy is the paper's case
    order = np.concatenate([rng.permutation(np.flatnonzero(right & (y == 1))),
                            rng.permutation(np.flatnonzero(right & (y != 1)))])
    for row in order[:limit]:
        mask = prepare_mask(image_maps(model, images[row], layer, (method,))[method])
        w = smallest_flipping_weight(model, images[row], mask)
        if w is not None:
            return int(row), mask, w
    return None


def augmentation_explorer(models: dict, images, index: pd.DataFrame, layer: str = "pool4", methods=STUDY_CAM_METHODS,
                          weight: float = 0.5, start: int = 0, flip_arm: str | None = None, maps_for=None):
    """The augmentation explorer (notebook 04): pick a test image, a method, inverted or weighted, the
    weight w and a smoothing sigma; see the mask, the augmented image and every model's probability.
    A button finds the smallest w that flips ``flip_arm`` (default: the first model) on this image
    (:func:`smallest_flipping_weight`) and moves the slider there.

    models: {arm: keras model or None (not trained yet)}; images: float32 (N, H, W, 1); index:
    aligned rows with image_id, plane, label; layer: the maps' layer (the maps explain the
    ``flip_arm`` model's call, :func:`image_maps`); start: the row shown first; maps_for: instead,
    ``row -> {method: (H, W) map}`` (tests). Returns an ipywidgets VBox (``controls`` and
    ``explorer_state`` attributes for tests).
    """
    import ipywidgets as w  # lazy: notebook front end, optional outside Jupyter

    arms = list(models)
    flip_arm = flip_arm or arms[0]
    if maps_for is None:
        def maps_for(r):
            return image_maps(models[flip_arm], images[r], layer, methods)
    ids = index["image_id"].to_numpy(str)
    choice = w.Dropdown(options=[(f"{ids[r]} · {index['plane'].iloc[r]} · {index['label'].iloc[r]}", r)
                                 for r in range(len(index))], value=int(start), description="image",
                        layout=w.Layout(width="24em"))
    method = w.ToggleButtons(options=tuple(methods), value=tuple(methods)[0], description="method")
    transform = w.ToggleButtons(options=TRANSFORMS, value=WEIGHTED, description="transform")
    wide = {"description_width": "initial"}
    slider = w.FloatSlider(value=weight, min=0.0, max=1.0, step=0.001, readout_format=".3f",
                           description="weight w", continuous_update=False, style=wide)
    smooth = w.FloatSlider(value=0.0, min=0.0, max=8.0, step=0.5, description="smoothing σ (px)",
                           continuous_update=False, style=wide)
    find = w.Button(description=f"smallest w that flips {flip_arm}", layout=w.Layout(width="20em"))
    picture = w.Image(format="png", layout=w.Layout(max_width="48em"))
    calls = w.HTML()
    note = w.HTML()
    state: dict = {}

    def redraw(_=None):
        r = int(choice.value)
        if state.get("row") != r:
            state.update(row=r, maps=maps_for(r))
        view = augment_view(models, images[r], state["maps"][method.value], transform.value, slider.value,
                            smooth.value)
        state["view"] = view
        picture.value = figure_png(plot_augment_view(images[r], view.mask, view.augmented, view.weight,
                                                     transform.value))
        calls.value = "<br>".join(_call_text(a, view.p_relevant[a], view.p_original[a]) for a in arms)

    def on_find(_=None):
        r = int(choice.value)

        mask = prepare_mask(state["maps"][method.value], smooth_sigma=smooth.value)
        flip = smallest_flipping_weight(models[flip_arm], images[r], mask)
        state["flip"] = flip
        if flip is None:
            note.value = f"No w in [0, 1] flips Model {flip_arm} on this image with this map."
            return
        note.value = (f"Model {flip_arm} flips at w = {flip:.4f} (scan in steps of 0.01, then bisection); "
                      "the slider moved there.")
        transform.value = WEIGHTED
        slider.value = float(np.ceil(flip * 1000) / 1000)

    for control in (choice, method, transform, slider, smooth):
        control.observe(redraw, names="value")
    find.on_click(on_find)
    redraw()
    box = w.VBox([choice, method, transform, slider, smooth, find, picture, calls, note])
    box.explorer_state = state
    box.controls = {"image": choice, "method": method, "transform": transform, "weight": slider,
                    "smoothing": smooth, "find": find, "calls": calls, "note": note, "picture": picture}
    return box

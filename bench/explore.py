"""Benchmark: how live do the explorers feel? The work behind one change of a control, one image.

    python bench/explore.py [--model runs/<run>/models/model_a_seed0.keras] [--repeats 20]

Without ``--model`` a LeNet of the default StudyConfig architecture is built with seeded random
weights at --image-size (128): the cost of a forward or backward pass does not depend on the
weights. Times, each the median of --repeats runs after one warm-up call (the first call of a
session also traces the compiled functions; that time is printed separately):

* ``cam_view``: one image, all 4 pool layers x 2 methods, for the call and the other class
  (what the Grad-CAM explorer computes when the image changes);
* ``deletion_curve`` at each of the 4 layers (what changes with the layer or method);
* ``augment_view`` for two models (what a move of the weight slider costs);
* ``smallest_flipping_weight`` (the button);
* ``figure_png`` of each explorer's figure (drawing, which the user waits for as well).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from knee_tf.core.model import build_lenet, load_model, seed_everything
from knee_tf.study import plots
from knee_tf.study.config import StudyConfig
from knee_tf.teach import explore

LAYERS = ("pool1", "pool2", "pool3", "pool4")


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of ``repeats`` later calls) in seconds."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--image-size", type=int, default=StudyConfig().image_size)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    seed_everything(0)
    cfg = StudyConfig()
    if a.model:
        model = load_model(a.model)
    else:
        model = build_lenet((a.image_size, a.image_size, 1), 2, cfg.conv_filters, cfg.dense_units)
    size = int(model.inputs[0].shape[1])
    rng = np.random.default_rng(0)
    image = rng.random((size, size, 1), dtype=np.float32)
    t0 = time.perf_counter()
    view = explore.cam_view(model, image, LAYERS)  # builds and traces the CAM step: once per explorer
    traced = time.perf_counter() - t0

    rows = []

    def add(name, fn):
        first, median = timed(fn, a.repeats)
        rows.append((name, first, median))

    add("cam_view (4 layers x 2 methods, both classes)", lambda: explore.cam_view(model, image, LAYERS))
    add("deletion_curve, each of 4 layers", lambda: [explore.deletion_curve(model, image, view.map("gradcam", layer),
                                                                            view.predicted) for layer in LAYERS])
    cam = view.map("gradcam", "pool4")
    add("augment_view, 2 models", lambda: explore.augment_view({"A": model, "B": model}, image, cam, "weighted", 0.7))
    add("smallest_flipping_weight", lambda: explore.smallest_flipping_weight(model, image, cam))
    fr, sc, auc = explore.deletion_curve(model, image, cam, view.predicted)
    add("figure_png, Grad-CAM explorer", lambda: explore.figure_png(plots.plot_cam_view(view, "pool4", "gradcam",
                                                                                         fr, sc, auc)))
    aug = explore.augment_view({"A": model}, image, cam, "weighted", 0.7)
    add("figure_png, augmentation explorer",
        lambda: explore.figure_png(plots.plot_augment_view(image, aug.mask, aug.augmented, 0.7, "weighted")))
    print(f"image {size} x {size}, {'model ' + a.model if a.model else 'default LeNet, random weights'}; "
          f"median of {a.repeats} after a first call")
    print(f"{'what':50s} {'first call':>11s} {'median':>9s}")
    for name, first, median in rows:
        print(f"{name:50s} {first * 1000:9.0f} ms {median * 1000:6.0f} ms")
    print(f"the very first cam_view of the session (builds the gradient model, traces): {traced * 1000:.0f} ms")
    image_change = rows[0][2] + rows[1][2] / len(LAYERS) + rows[4][2]
    print(f"a new image in the Grad-CAM explorer (maps + one curve + figure): {image_change * 1000:.0f} ms")


if __name__ == "__main__":
    main()

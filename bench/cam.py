"""Benchmark: one-pass compute_cams vs a tf-keras-vis loop vs the forward pass alone.

    python bench/cam.py [--model runs/<run>/model_a.keras] [--n 1000] [--batch-size 256] [--forward-batch-size 256]

Without ``--model`` a LeNet of the default StudyConfig is trained briefly on a seeded toy problem
(a bright disc present or absent) at --image-size (128). Times, on the same N images:
(1) the forward pass alone (compiled, batched: ``predict_proba``); (2) tf-keras-vis ``Gradcam`` and
``GradcamPlusPlus`` looped over the 4 pool layers x 2 methods (``knee_tf.core.cam.tf_keras_vis_cams``);
(3) ``compute_cams`` for all 4 layers x 2 methods. Goals (docs/performance.md): (3) >= 15x faster
than (2) and <= 4x the time of (1). Fast paths are warmed up (traced) first and timed as the median
of --repeats interleaved runs (the ratio of the fastest runs is printed too, as the least
contended estimate); the tf-keras-vis loop runs once.

CAMs are always computed in float32 (a bfloat16-trained model is explained through its float32
twin, ``knee_tf.core.precision.float32_twin``), so the forward pass timed in (1) is the float32 twin's
too: the ratio compares like with like whatever precision the model trained in. The toy model
trains in float32 unless ``--precision`` says otherwise.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from knee_tf.core.cam import compute_cams, tf_keras_vis_cams
from knee_tf.core.model import load_model, predict_proba, train_classifier
from knee_tf.core.precision import PRECISIONS, float32_twin
from knee_tf.study.config import StudyConfig


def toy_disc_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded toy set: float32 (n, size, size, 1) in [0, 1] noise, a bright disc in class 1 images."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int32)
    yy, xx = np.mgrid[0:size, 0:size]
    radius = size / 10
    centres = rng.uniform(radius, size - radius, size=(n, 2))
    discs = ((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) <= radius**2
    images = 0.2 * rng.random((n, size, size)) + 0.7 * discs * labels[:, None, None]
    return images.astype(np.float32)[..., None], labels


def interleaved_timings(fns: dict, repeats: int) -> tuple[dict[str, np.ndarray], dict]:
    """Wall times (repeats,) of each fn(), the fns alternating within each round (so that CPU
    contention from other processes hits all of them alike), and each fn's last result."""
    times = {name: [] for name in fns}
    results = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: np.array(t) for name, t in times.items()}, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="a trained .keras model (default: train a toy one)")
    ap.add_argument("--n", type=int, default=1000, help="images to explain")
    ap.add_argument("--image-size", type=int, default=StudyConfig().image_size)
    ap.add_argument("--batch-size", type=int, default=StudyConfig().cam_batch_size, help="images per CAM pass")
    ap.add_argument("--forward-batch-size", type=int, default=StudyConfig().predict_batch_size,
                    help="images per forward batch of the baseline (default: the study's prediction batch)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="float32", choices=PRECISIONS, help="the toy model's training precision")
    ap.add_argument("--skip-reference", action="store_true",
                    help="skip the slow tf-keras-vis loop (forward vs compute_cams only)")
    a = ap.parse_args()

    if a.model:
        model = load_model(a.model)
        size = int(model.inputs[0].shape[1])
    else:
        size = a.image_size
        cfg = StudyConfig(image_size=size, epochs=2, precision=a.precision)
        (xt, yt), (xv, yv) = toy_disc_images(512, size, 1), toy_disc_images(128, size, 2)
        with tempfile.TemporaryDirectory() as tmp:
            model = train_classifier(xt, yt, xv, yv, Path(tmp) / "bench.keras", seed=cfg.seed, verbose=0,
                                     **cfg.training_settings()).model
    images, _ = toy_disc_images(a.n, size, 3)
    layers, methods = ("pool1", "pool2", "pool3", "pool4"), ("gradcam", "gradcam++")

    forward_model = float32_twin(model)  # the model itself when it computes in float32
    predict_proba(forward_model, images[: a.forward_batch_size], a.forward_batch_size)  # trace once
    compute_cams(model, images[: a.batch_size], layers, methods, progress=False)
    times, results = interleaved_timings({
        "forward": lambda: predict_proba(forward_model, images, a.forward_batch_size),
        "cams": lambda: compute_cams(model, images, layers, methods, batch_size=a.batch_size,
                                     progress=False),
    }, a.repeats)
    t_forward, t_cams, ours = np.median(times["forward"]), np.median(times["cams"]), results["cams"]
    best_ratio = times["cams"].min() / times["forward"].min()
    t_tkv = max_diff = None
    if not a.skip_reference:
        t0 = time.perf_counter()
        # on the float32 twin, as compute_cams explains a bfloat16-trained model (scipy cannot zoom bfloat16 maps)
        reference = tf_keras_vis_cams(forward_model, images, layers, methods, batch_size=a.batch_size)
        t_tkv = time.perf_counter() - t0
        max_diff = max(float(np.abs(ours[m] - reference[m]).max()) for m in methods)

    print(f"model: {a.model or 'toy LeNet (default widths)'}  images: {a.n} x {size}x{size}  "
          f"batch: CAMs {a.batch_size}, forward {a.forward_batch_size}  maps: {len(layers)} layers x {len(methods)} methods")
    print(f"(1) forward pass (float32) : {t_forward:8.2f} s  {a.n / t_forward:8.0f} img/s")
    if t_tkv is not None:
        print(f"(2) tf-keras-vis loop (x{len(layers) * len(methods)}) : {t_tkv:8.2f} s  "
              f"{a.n / t_tkv:8.0f} img/s")
    print(f"(3) compute_cams (one pass): {t_cams:8.2f} s  {a.n / t_cams:8.0f} img/s")
    if t_tkv is not None:
        print(f"speed-up over tf-keras-vis : {t_tkv / t_cams:8.1f}x  (goal >= 15x)")
    print(f"cost vs forward only       : {t_cams / t_forward:8.2f}x  (goal <= 4x; "
          f"{best_ratio:.2f}x best run vs best run)")
    if max_diff is not None:
        print(f"max |ours - tf-keras-vis|  : {max_diff:.2e}")


if __name__ == "__main__":
    main()

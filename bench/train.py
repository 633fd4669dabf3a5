"""Benchmark: training speed of the default LeNet in float32 and mixed_bfloat16; tf.data overhead; XLA.

    python bench/train.py [--n 2048] [--image-size 128] [--rounds 3]

On the same N seeded toy images (bench/cam.py's disc problem) at the default StudyConfig's
architecture and batch size, it times one epoch of ``fit`` per configuration, the configurations
alternating within each round (so CPU contention from other processes hits all of them alike),
after one untimed warm-up epoch each (tracing):

* ``float32`` and ``mixed_bfloat16`` on the study's ``tf.data`` pipeline (knee_tf.core.arrays.make_dataset):
  images/s and their ratio (goal: bfloat16 >= 1.8x float32);
* ``float32`` fed an in-memory array (``fit(x, y, batch_size=...)``): the overhead of the tf.data
  pipeline (goal <= 10%);
* both precisions with XLA (``compile(jit_compile=True)``). Keras turns XLA off whenever TensorFlow
  op determinism is on (as the study's training has it), so this part runs with op determinism
  off, against the same precision without XLA and without determinism; it also checks whether two
  seeded XLA trainings still give identical weights;
* inference (``predict_proba``) images/s in both precisions.

Prints the median of the rounds, the load average before and after, and the CPU's bfloat16 flags.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cam import toy_disc_images  # noqa: E402  (bench/cam.py: the same seeded toy problem)

from knee_tf.core.arrays import make_dataset  # noqa: E402
from knee_tf.core.model import balanced_class_weights, build_lenet, predict_proba, seed_everything  # noqa: E402
from knee_tf.core.precision import BF16_CPU_FLAGS, cpu_flags, training_precision  # noqa: E402
from knee_tf.study.config import StudyConfig  # noqa: E402


def build(cfg: StudyConfig, size: int, precision: str, jit: bool, seed: int = 0, deterministic: bool = True):
    import keras

    seed_everything(seed, deterministic_ops=deterministic)
    with training_precision(precision):
        model = build_lenet((size, size, 1), 2, cfg.conv_filters, cfg.dense_units, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=jit)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="training images per epoch")
    ap.add_argument("--image-size", type=int, default=StudyConfig().image_size)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-xla", action="store_true", help="skip the XLA configurations")
    a = ap.parse_args()

    load_before = os.getloadavg()
    cfg = StudyConfig(image_size=a.image_size)
    x, y = toy_disc_images(a.n, a.image_size, 1)
    weights = balanced_class_weights(y, 2)
    configs = {  # name: (precision, jit, feed); op determinism on, as in the study
        "float32": ("float32", False, "tf.data"),
        "mixed_bfloat16": ("mixed_bfloat16", False, "tf.data"),
        "float32, in-memory array": ("float32", False, "array"),
    }
    xla_configs = {  # op determinism off: Keras ignores jit_compile=True while it is on
        "float32, no determinism": ("float32", False, "tf.data"),
        "float32, XLA": ("float32", True, "tf.data"),
        "mixed_bfloat16, no determinism": ("mixed_bfloat16", False, "tf.data"),
        "mixed_bfloat16, XLA": ("mixed_bfloat16", True, "tf.data"),
    }

    dataset = make_dataset(x, y, cfg.batch_size, shuffle=True, seed=0)  # one pipeline, reshuffled every epoch

    def fit(model, feed):
        if feed == "array":
            model.fit(x, y, batch_size=cfg.batch_size, epochs=1, shuffle=True, class_weight=weights, verbose=0)
        else:
            model.fit(dataset, epochs=1, shuffle=False, class_weight=weights, verbose=0)

    def timed(configs: dict, deterministic: bool) -> tuple[dict, dict]:
        from tensorflow.python.framework.config import is_op_determinism_enabled

        models = {}
        for name, (precision, jit, feed) in configs.items():
            models[name] = build(cfg, a.image_size, precision, jit, deterministic=deterministic)
            fit(models[name], feed)  # warm-up: tracing and compilation
        assert is_op_determinism_enabled() == deterministic
        times = {name: [] for name in configs}
        for _ in range(a.rounds):
            for name, (_, _, feed) in configs.items():
                t0 = time.perf_counter()
                fit(models[name], feed)
                times[name].append(time.perf_counter() - t0)
        return {name: a.n / float(np.median(t)) for name, t in times.items()}, models

    speed, models = timed(configs, deterministic=True)

    infer = {}
    for name in ("float32", "mixed_bfloat16"):
        predict_proba(models[name], x[:256], cfg.predict_batch_size)
    rounds = {name: [] for name in ("float32", "mixed_bfloat16")}
    for _ in range(a.rounds):
        for name in rounds:
            t0 = time.perf_counter()
            predict_proba(models[name], x, cfg.predict_batch_size)
            rounds[name].append(time.perf_counter() - t0)
    infer = {name: a.n / float(np.median(t)) for name, t in rounds.items()}

    deterministic = {}
    if not a.no_xla:  # op determinism off from here; two seeded XLA trainings of 2 epochs on a quarter of the images
        from tensorflow.python.framework.config import (
            disable_op_determinism,  # no public API for it
        )

        disable_op_determinism()
        xla_speed, _ = timed(xla_configs, deterministic=False)
        speed.update(xla_speed)
        xs, ys = x[: a.n // 4], y[: a.n // 4]
        for precision in ("float32", "mixed_bfloat16"):
            runs = []
            for _ in range(2):
                model = build(cfg, a.image_size, precision, jit=True, seed=3, deterministic=False)
                model.fit(make_dataset(xs, ys, cfg.batch_size, shuffle=True, seed=3), epochs=2, shuffle=False,
                          verbose=0)
                runs.append(model.get_weights())
            deterministic[precision] = all(np.array_equal(u, v) for u, v in zip(*runs, strict=True))

    flags = sorted(cpu_flags() & set(BF16_CPU_FLAGS)) or ["none"]
    print(f"LeNet {cfg.conv_filters} / {cfg.dense_units} at {a.image_size}x{a.image_size}, batch {cfg.batch_size}, "
          f"{a.n} images, median of {a.rounds} rounds; CPU bfloat16 flags: {', '.join(flags)}; "
          f"{os.cpu_count()} CPUs")
    print(f"load average (1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name, v in speed.items():
        print(f"training {name:28s} {v:7.0f} images/s")
    print(f"training mixed_bfloat16 / float32      : {speed['mixed_bfloat16'] / speed['float32']:.2f}x  (goal >= 1.8x)")
    print(f"tf.data pipeline vs in-memory array     : {speed['float32, in-memory array'] / speed['float32'] - 1:+.1%} "
          f"time overhead of tf.data (goal <= 10%)")
    if not a.no_xla:
        for precision in ("float32", "mixed_bfloat16"):
            ratio = speed[f"{precision}, XLA"] / speed[f"{precision}, no determinism"]
            print(f"XLA, {precision:15s}: {ratio:.2f}x the speed without XLA (both without op determinism); "
                  f"two seeded XLA runs identical: {deterministic[precision]}")
        print(f"op determinism costs: float32 {speed['float32, no determinism'] / speed['float32']:.2f}x, "
              f"mixed_bfloat16 {speed['mixed_bfloat16, no determinism'] / speed['mixed_bfloat16']:.2f}x "
              "(speed without / with)")
    for name, v in infer.items():
        print(f"inference {name:27s} {v:7.0f} images/s")
    print(f"inference mixed_bfloat16 / float32     : {infer['mixed_bfloat16'] / infer['float32']:.2f}x")


if __name__ == "__main__":
    main()

"""knee_tf.core.model: architecture contract, training (smoke, determinism, MirroredStrategy), inference."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from knee_tf.core.model import (
    balanced_class_weights,
    build_lenet,
    load_model,
    predict_proba,
    train_classifier,
)
from knee_tf.study.config import StudyConfig

TESTS_DIR = Path(__file__).resolve().parents[1]


def test_lenet_layer_names_and_shapes():
    model = build_lenet()
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv1"] == (128, 128, 16)
    assert [shapes[f"pool{k}"] for k in range(1, 5)] == [
        (64, 64, 16), (32, 32, 32), (16, 16, 64), (8, 8, 64)]
    for k in range(1, 5):
        assert isinstance(model.get_layer(f"pool{k}"), keras.layers.MaxPooling2D)
    assert shapes["dense1"] == (120,) and shapes["dense2"] == (84,)
    logits, probs = model.get_layer("logits"), model.get_layer("probs")
    assert shapes["logits"] == (2,) and logits.activation is keras.activations.linear
    assert isinstance(probs, keras.layers.Activation) and model.outputs[0].shape[1:] == (2,)
    p = model.predict(np.random.default_rng(0).random((3, 128, 128, 1), np.float32), verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(100, 128, 1)), "divisible by 16"),
    (dict(input_shape=(128, 128)), "input_shape"),
    (dict(n_classes=1), "n_classes"),
    (dict(conv_filters=()), "conv_filters"),
    (dict(dense_units=(0,)), "dense_units"),
])
def test_lenet_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_lenet(**kwargs)


def test_balanced_class_weights():
    assert balanced_class_weights([0, 0, 0, 1], 2) == {0: 4 / 6, 1: 2.0}
    assert balanced_class_weights([1, 1], 2) == {0: 1.0, 1: 1.0}


def _smoke_subset(toy_blob_data, n_train=32):
    (xt, yt, _), (xv, yv, _) = toy_blob_data["train"], toy_blob_data["val"]
    return xt[:n_train], yt[:n_train], xv[:32], yv[:32]


def test_one_step_training_on_smoke_config(toy_blob_data, tmp_path):
    cfg = StudyConfig.smoke(image_size=64)
    xt, yt, xv, yv = _smoke_subset(toy_blob_data, n_train=cfg.batch_size)  # one batch = one step
    result = train_classifier(xt, yt, xv, yv, tmp_path / "model_a.keras", seed=cfg.seed, verbose=0,
                              log_path=tmp_path / "model_a_training_log.csv",
                              tensorboard_dir=tmp_path / "tensorboard" / "model_a", **cfg.training_settings())
    assert list(result.history.columns[:1]) == ["epoch"] and len(result.history) == 1
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(result.history.columns)
    assert result.model.optimizer.iterations.numpy() == 1
    assert result.best_path == tmp_path / "model_a.keras" and result.best_path.is_file()
    assert not list(tmp_path.glob(".*tmp*")), "temporary checkpoint files left behind"
    log = pd.read_csv(tmp_path / "model_a_training_log.csv")
    assert len(log) == 1 and "val_loss" in log.columns
    assert list((tmp_path / "tensorboard" / "model_a" / "train").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tensorboard" / "model_a" / "validation").glob("events.out.*"))
    reloaded = load_model(result.best_path)
    np.testing.assert_allclose(predict_proba(reloaded, xv), predict_proba(result.model, xv),
                               atol=1e-6)


def test_training_rejects_bad_input(toy_blob_data, tmp_path):
    cfg = StudyConfig.smoke(image_size=64)
    xt, yt, xv, yv = _smoke_subset(toy_blob_data)
    kw = dict(seed=0, verbose=0, **cfg.training_settings())
    with pytest.raises(ValueError, match="training labels must lie in"):
        train_classifier(xt, yt + 1, xv, yv, tmp_path / "m.keras", **kw)
    with pytest.raises(ValueError, match="validation images must be"):
        train_classifier(xt, yt, xv[..., 0], yv, tmp_path / "m.keras", **kw)
    with pytest.raises(ValueError, match="image shapes differ"):
        train_classifier(xt, yt, xv[:, :32, :32], yv, tmp_path / "m.keras", **kw)
    with pytest.raises(ValueError, match="int class indices"):
        train_classifier(xt, yt.astype(float), xv, yv, tmp_path / "m.keras", **kw)
    with pytest.raises(TypeError, match="epochs"):  # no silent defaults: every setting is explicit
        train_classifier(xt, yt, xv, yv, tmp_path / "m.keras", seed=0, conv_filters=(4,), dense_units=(4,))


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_seeded_training_is_deterministic(toy_blob_data, tmp_path, precision):
    cfg = StudyConfig.smoke(image_size=64, precision=precision)
    xt, yt, xv, yv = _smoke_subset(toy_blob_data, n_train=96)  # 3 shuffled batches
    runs = [train_classifier(xt, yt, xv, yv, tmp_path / f"{name}.keras", seed=seed, verbose=0,
                             **cfg.training_settings()).model
            for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    same = [np.array_equal(u, v) for u, v in zip(runs[0].get_weights(), runs[1].get_weights(),
                                                 strict=True)]
    assert all(same)
    assert not np.array_equal(runs[0].get_weights()[0], runs[2].get_weights()[0])


def test_predict_proba_matches_model_and_validates(tiny_trained_model, toy_blob_data):
    x = toy_blob_data["test"][0]
    p = predict_proba(tiny_trained_model, x, batch_size=5)
    assert p.dtype == np.float32 and p.shape == (len(x), 2)
    np.testing.assert_allclose(p, tiny_trained_model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"images must be float32 \(N, 64, 64, 1\)"):
        predict_proba(tiny_trained_model, x[:, :32])


def test_tiny_model_learns_the_toy_problem(tiny_train_result, toy_blob_data):
    x, y, _ = toy_blob_data["test"]
    accuracy = (predict_proba(tiny_train_result.model, x).argmax(axis=1) == y).mean()
    assert accuracy >= 0.9
    history = tiny_train_result.history
    best = history["val_loss"].idxmin()
    reloaded = load_model(tiny_train_result.best_path)  # the checkpoint holds the best epoch
    np.testing.assert_allclose(
        reloaded.evaluate(toy_blob_data["val"][0], toy_blob_data["val"][1], verbose=0)[0],
        history.loc[best, "val_loss"], rtol=1e-3, atol=1e-6)


def test_load_model_rejects_missing_or_wrong_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_model(tmp_path / "nope.keras")
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.keras"):
        load_model(tmp_path / "model.h5")


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    sys.path.insert(0, sys.argv[1])
    from conftest import make_blob_images
    from knee_tf.study.config import StudyConfig
    from knee_tf.core.model import predict_proba, train_classifier
    (xt, yt, _), (xv, yv, _) = make_blob_images(256, seed=1), make_blob_images(64, seed=2)
    xs, ys, _ = make_blob_images(128, seed=3)
    cfg = StudyConfig.smoke(image_size=64, epochs=4, patience=4, learning_rate=3e-3)
    out = {"n_devices": len(tf.config.list_logical_devices("CPU"))}
    strategies = {"single": None,
                  "mirrored": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}
    for name, strategy in strategies.items():
        with tempfile.TemporaryDirectory() as tmp:
            res = train_classifier(xt, yt, xv, yv, tmp + "/m.keras", seed=cfg.seed, strategy=strategy, verbose=0,
                                   **cfg.training_settings())
            acc = float((predict_proba(res.model, xs).argmax(1) == ys).mean())
        out[name] = acc
        if strategy is not None:
            out["replicas"] = strategy.num_replicas_in_sync
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow  # two trainings in a fresh TensorFlow process
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device():
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(TESTS_DIR)],
                          capture_output=True, text=True, timeout=300, cwd=TESTS_DIR.parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["n_devices"] == 2 and out["replicas"] == 2
    assert out["single"] >= 0.85
    assert abs(out["mirrored"] - out["single"]) <= 0.05


def test_training_log_matches_history(tmp_path):
    from knee_tf.core.model import read_training_log

    rng = np.random.default_rng(0)
    x = rng.random((64, 64, 64, 1), dtype=np.float32)
    y = (np.arange(64) % 2).astype(np.int32)
    cfg = StudyConfig.smoke(image_size=64, epochs=2, patience=5)
    res = train_classifier(x, y, x[:16], y[:16], tmp_path / "m.keras", seed=0, log_path=tmp_path / "m.csv",
                           verbose=0, **cfg.training_settings())
    log = read_training_log(tmp_path / "m.csv")
    assert list(log["epoch"]) == list(res.history["epoch"]) == [1, 2]
    np.testing.assert_allclose(log["val_loss"], res.history["val_loss"], rtol=1e-5)


def test_training_does_not_keep_the_training_images(toy_blob_data, tmp_path):
    """tf.numpy_function never forgets the functions it wraps; if the batch gatherer held the image
    array, every model trained in one process (a notebook, an in-process grid) would keep its whole
    training set in memory."""
    import gc
    import weakref

    from knee_tf.core.arrays import make_dataset

    cfg = StudyConfig.smoke(image_size=64)
    xt, yt, xv, yv = _smoke_subset(toy_blob_data, n_train=cfg.batch_size)
    x_train, x_val = xt.copy(), xv.copy()
    refs = [weakref.ref(x_train), weakref.ref(x_val)]
    result = train_classifier(x_train, yt, x_val, yv, tmp_path / "m.keras", seed=0, verbose=0,
                              **cfg.training_settings())
    del x_train, x_val
    gc.collect()
    assert [r() is None for r in refs] == [True, True], "the training or validation images outlive fit"
    assert result.model.optimizer.iterations.numpy() == 1

    images = np.zeros((4, 8, 8, 1), np.float32)
    ref = weakref.ref(images)
    ds = make_dataset(images, np.arange(4) % 2, batch_size=2)
    del images
    gc.collect()
    assert ref() is not None, "the dataset must own its images while it exists"
    assert sum(len(xb) for xb, _ in ds) == 4
    del ds
    gc.collect()
    assert ref() is None


def test_a_pooled_training_set_trains_as_its_concatenation(toy_blob_data, tmp_path):
    """PooledImages (float32 normal images + float16 pool, never concatenated) gives the batches and
    the weights of the float32 concatenation it stands for, bit for bit."""
    from knee_tf.core.arrays import PooledImages, make_dataset

    cfg = StudyConfig.smoke(image_size=64)
    xt, yt, xv, yv = _smoke_subset(toy_blob_data, n_train=2 * cfg.batch_size)
    pool = (xt[::-1] * 0.7).astype(np.float16)
    pooled = PooledImages(xt, pool)
    whole = np.concatenate([xt, pool.astype(np.float32)])
    y = np.concatenate([yt, yt[::-1]])
    assert pooled.shape == whole.shape and len(pooled) == len(whole)
    np.testing.assert_array_equal(np.asarray(pooled), whole)
    np.testing.assert_array_equal(pooled[len(xt) - 3:len(xt) + 3], whole[len(xt) - 3:len(xt) + 3])
    np.testing.assert_array_equal(pooled[-1], whole[-1])
    for (a, ya), (b, yb) in zip(make_dataset(pooled, y, 16, shuffle=True, seed=3),
                                make_dataset(whole, y, 16, shuffle=True, seed=3), strict=True):
        assert a.numpy().tobytes() == b.numpy().tobytes() and np.array_equal(ya, yb)
    weights = [train_classifier(x, y, xv, yv, tmp_path / f"{k}.keras", seed=0, verbose=0,
                                **cfg.training_settings()).model.get_weights()
               for k, x in (("pooled", pooled), ("whole", whole))]
    for u, v in zip(*weights, strict=True):
        assert u.tobytes() == v.tobytes()

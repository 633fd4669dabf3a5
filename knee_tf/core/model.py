"""Model A: a LeNet-style CNN with four max-pool blocks, its training loop and inference.

Layer names are part of the contract: ``conv1..convK`` each followed by ``pool1..poolK`` (the
Grad-CAM layers), ``dense1``/``dense2``, a linear ``logits`` Dense and a softmax ``probs``
Activation. :mod:`knee_tf.core.cam` reads the ``logits`` output directly, so class activation maps never
need a modified copy of the trained model.

Precision (:mod:`knee_tf.core.precision`): the hidden layers follow the Keras dtype policy in force when
the model is built (float32, or ``mixed_bfloat16`` inside :func:`train_classifier` when asked for);
``logits`` and ``probs`` are always float32, so the softmax and the loss are computed in float32.

Initial weights are a function of ``seed`` alone: every kernel initializer gets its own integer
seed drawn from ``random.Random(seed)``, so a model does not depend on what else the process drew
from Python's global ``random`` before (a Dask worker, another training, a library).
"""

from __future__ import annotations

import random
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from knee_tf.core.arrays import PooledImages, make_dataset
from knee_tf.core.io import atomic_path
from knee_tf.core.precision import training_precision
from knee_tf.core.startup import keras_verbosity

#: The name of the linear output layer that CAMs differentiate (the softmax is bypassed).
LOGITS_LAYER = "logits"
#: The name of the softmax output layer (the model's only output).
PROBS_LAYER = "probs"



def seed_everything(seed: int, deterministic_ops: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow/Keras; optionally make TF ops deterministic.

    Called explicitly by each notebook's one setup call (knee_tf.study.session) and by the training
    functions, never on import.
    """
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def build_lenet(input_shape=(128, 128, 1), n_classes: int = 2,
                conv_filters=(16, 32, 64, 64), dense_units=(120, 84), kernel_size: int = 3,
                name: str = "lenet", seed: int = 0):
    """A Keras 3 functional LeNet-style classifier (uncompiled; see :func:`compile_classifier`).

    input_shape: (H, W, C) with H and W divisible by 2**len(conv_filters) (every block halves them).
    Architecture: for k = 1..len(conv_filters): ``convk`` (Conv2D, same padding, ReLU) -> ``poolk``
    (MaxPooling2D 2x2); then ``flatten``, ``dense1..`` (ReLU, one per ``dense_units`` entry),
    ``logits`` (linear Dense, n_classes) and ``probs`` (softmax Activation, the model output).
    seed: the kernel initializers' seeds are ``random.Random(seed).randint(1, 10**9)`` in layer order
    (Glorot uniform, zero biases): the values Keras would draw from Python's ``random`` right after
    ``keras.utils.set_random_seed(seed)``, made independent of the process's global state.
    """
    input_shape = tuple(int(s) for s in input_shape)
    conv_filters = tuple(int(f) for f in conv_filters)
    dense_units = tuple(int(u) for u in dense_units)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    if not conv_filters or min(conv_filters) < 1:
        raise ValueError(f"conv_filters must be a non-empty tuple of positive ints, got {conv_filters}")
    if dense_units and min(dense_units) < 1:
        raise ValueError(f"dense_units must be positive ints, got {dense_units}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    factor = 2 ** len(conv_filters)
    if input_shape[0] % factor or input_shape[1] % factor:
        raise ValueError(f"input_shape {input_shape[:2]} must be divisible by {factor} "
                         f"({len(conv_filters)} max-pool blocks)")

    draws = random.Random(int(seed))

    def kernel_init():
        return keras.initializers.GlorotUniform(seed=draws.randint(1, int(1e9)))

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for k, filters in enumerate(conv_filters, start=1):
        x = keras.layers.Conv2D(filters, kernel_size, padding="same", activation="relu",
                                kernel_initializer=kernel_init(), name=f"conv{k}")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, name=f"pool{k}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for k, units in enumerate(dense_units, start=1):
        x = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_init(), name=f"dense{k}")(x)
    logits = keras.layers.Dense(n_classes, kernel_initializer=kernel_init(), dtype="float32", name=LOGITS_LAYER)(x)
    probs = keras.layers.Activation("softmax", dtype="float32", name=PROBS_LAYER)(logits)
    return keras.Model(inputs, probs, name=name)


def compile_classifier(model, learning_rate: float = 1e-3) -> None:
    """Adam + sparse categorical cross-entropy on the softmax output (int labels, 1 = relevant)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def balanced_class_weights(labels, n_classes: int) -> dict[int, float]:
    """``{class: N / (n_present * count)}``: each present class carries equal total weight.

    n_present is the number of classes that occur in ``labels``; absent classes get 1.0.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    total, present = int(counts.sum()), int((counts > 0).sum())
    return {c: (total / (present * int(counts[c])) if counts[c] else 1.0) for c in range(n_classes)}


@dataclass
class TrainResult:
    """What :func:`train_classifier` returns.

    model: the trained keras.Model holding the best (lowest val loss) weights;
    history: one row per epoch (epoch, loss, accuracy, val_loss, val_accuracy);
    best_path: the saved ``.keras`` file of that best model.
    """

    model: keras.Model
    history: pd.DataFrame
    best_path: Path


class AtomicBestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (atomically) whenever the monitored value reaches a new minimum."""

    def __init__(self, path, monitor: str = "val_loss"):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = np.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value < self.best:
            return
        self.best = float(value)
        with atomic_path(self.path, suffix=".keras") as tmp, warnings.catch_warnings():
            # Keras's saver calls np.array(variable): a NumPy 2 copy-keyword DeprecationWarning
            warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept",
                                    category=DeprecationWarning)
            self.model.save(tmp)


class TensorBoardScalars(keras.callbacks.Callback):
    """Per-epoch scalars as TensorBoard event files, written with TensorFlow alone.

    ``keras.callbacks.TensorBoard`` needs the ``tensorboard`` package for ``tf.summary.scalar``;
    this writes the same records (``tf.summary.write`` with the "scalars" plugin metadata) into
    ``log_dir/train`` and ``log_dir/validation`` as ``epoch_<metric>``, as Keras does.
    """

    def __init__(self, log_dir):
        super().__init__()
        from tensorflow.core.framework import summary_pb2  # lazy: loads TensorFlow (seconds)

        self.log_dir = Path(log_dir)
        plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        self._metadata = summary_pb2.SummaryMetadata(plugin_data=plugin).SerializeToString()
        self._writers: dict[str, object] = {}

    def _writer(self, split: str):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
        return self._writers[split]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            split, metric = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{metric}", tf.constant(float(value), tf.float32),
                                 step=epoch, metadata=self._metadata)

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _check_xy(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 (N, H, W, 1), y int32 (N,)) checked; a :class:`knee_tf.core.arrays.PooledImages` x is kept
    as it is (its batches are gathered as float32, never the whole array)."""
    x = x if isinstance(x, PooledImages) else np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"{what} images must be float32 (N, H, W, 1), got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"{what} labels must be int (N,) = ({len(x)},), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what} labels must be int class indices, got dtype {y.dtype}")
    return x, y.astype(np.int32)


def train_classifier(x_train, y_train, x_val, y_val, model_path, *, seed: int, conv_filters, dense_units,
                     epochs: int, batch_size: int, learning_rate: float, patience: int, precision: str,
                     log_path=None, tensorboard_dir=None, strategy=None, verbose: int | None = None,
                     n_classes: int = 2) -> TrainResult:
    """Train :func:`build_lenet` from scratch (seeded, class-weighted, early stopping on val loss).

    x_train, x_val: float32 (N, H, W, 1) in [0, 1] (x_train may also be a
    :class:`knee_tf.core.arrays.PooledImages`); y_train, y_val: int (N,) class indices
    (:data:`knee_tf.core.vocab.CLASSES`, 1 = relevant). conv_filters / dense_units: the architecture
    (see :func:`build_lenet`); epochs: upper bound; batch_size: the global batch (with ``strategy``,
    an optional ``tf.distribute.Strategy`` such as MirroredStrategy); learning_rate: Adam's;
    patience: epochs without a val-loss improvement before stopping; precision: a
    :data:`knee_tf.core.precision.PRECISIONS` value (the model is built and trained under that Keras
    dtype policy, which is restored afterwards). Every setting is explicit
    (``StudyConfig.training_settings()`` gives the study's). verbose: Keras' (0 silent, 1 progress bar,
    2 one line per epoch); None: :func:`knee_tf.core.startup.keras_verbosity` (a bar on a terminal only).

    Writes ``model_path`` (the best model, saved atomically at every improvement) and, when given,
    ``log_path`` (Keras CSVLogger) and ``tensorboard_dir/{train,validation}`` (event files).
    Returns a :class:`TrainResult` whose model holds the best weights.
    """
    x_train, y_train = _check_xy(x_train, y_train, "training")
    x_val, y_val = _check_xy(x_val, y_val, "validation")
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError(f"need training and validation images, got {len(x_train)} and {len(x_val)}")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"training and validation image shapes differ: "
                         f"{x_train.shape[1:]} vs {x_val.shape[1:]}")
    for what, y in (("training", y_train), ("validation", y_val)):
        if y.min() < 0 or y.max() >= n_classes:
            raise ValueError(f"{what} labels must lie in [0, {n_classes - 1}], "
                             f"got range [{y.min()}, {y.max()}]")

    seed = int(seed)
    seed_everything(seed)
    best_path = Path(model_path)
    best_path.parent.mkdir(parents=True, exist_ok=True)
    name = best_path.stem

    def build():
        model = build_lenet(x_train.shape[1:], n_classes, tuple(conv_filters), tuple(dense_units), name=name,
                            seed=seed)
        compile_classifier(model, learning_rate)
        return model

    with training_precision(precision):
        if strategy is None:
            model = build()
        else:
            with strategy.scope():
                model = build()

    train_ds = make_dataset(x_train, y_train, batch_size, shuffle=True, seed=seed)
    val_ds = make_dataset(x_val, y_val, batch_size)
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        AtomicBestCheckpoint(best_path, monitor="val_loss"),
    ]
    if log_path is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(log_path)))
    if tensorboard_dir is not None:
        callbacks.append(TensorBoardScalars(Path(tensorboard_dir)))
    fit = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                    class_weight=balanced_class_weights(y_train, n_classes),
                    callbacks=callbacks, shuffle=False,
                    verbose=keras_verbosity() if verbose is None else verbose)
    history = pd.DataFrame(fit.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return TrainResult(model=model, history=history, best_path=best_path)


def read_training_log(path) -> pd.DataFrame:
    """The CSV log of a finished :func:`train_classifier` run (its ``log_path``), with a 1-based
    ``epoch`` column (Keras' CSVLogger counts from 0), i.e. the same table as ``TrainResult.history``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training log not found: {path}")
    log = pd.read_csv(path)
    log["epoch"] = log["epoch"] + 1
    return log


def load_model(path):
    """Load a model saved by :func:`train_classifier` (a ``.keras`` file)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise ValueError(f"expected a .keras model file, got {path.name}")
    return keras.saving.load_model(path)


_FORWARD_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_function(model):
    """A compiled ``tf.function`` images -> softmax probabilities for ``model``, built once per model.

    Takes float32 (B, H, W, C) and returns float32 (B, n_classes); inference mode.
    """
    fn = _FORWARD_FNS.get(model)
    if fn is None:
        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
        model_ref = weakref.ref(model)

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def fn(images):
            return model_ref()(images, training=False)

        _FORWARD_FNS[model] = fn
    return fn


def check_images(images, model, what: str = "images") -> np.ndarray:
    """``images`` as float32 (N, H, W, C) matching the model input, or a one-line ValueError."""
    x = np.asarray(images, dtype=np.float32)
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or x.shape[1:] != expected:
        raise ValueError(f"{what} must be float32 (N, {', '.join(map(str, expected))}) for this "
                         f"model, got shape {x.shape}")
    return x


def predict_proba(model, images, batch_size: int = 256) -> np.ndarray:
    """Class probabilities: images float32 (N, H, W, 1) in [0, 1] -> float32 (N, n_classes)."""
    x = check_images(images, model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fn = forward_function(model)
    n_classes = int(model.outputs[0].shape[-1])
    out = np.empty((len(x), n_classes), dtype=np.float32)
    for start in range(0, len(x), batch_size):
        out[start:start + batch_size] = fn(x[start:start + batch_size]).numpy()
    return out

"""Images into the model: class names, and ``tf.data`` pipelines over preprocessed arrays.

The manifest contract and its validation live in :mod:`knee_tf.manifest`; DICOM decoding in
:mod:`knee_tf.dicom`; the on-disk cache of decoded arrays in :mod:`knee_tf.ingest`.
"""

from __future__ import annotations

import numpy as np

#: Class index order used everywhere: label column value -> index. ``relevant`` is the positive class.
CLASSES: tuple[str, ...] = ("irrelevant", "relevant")
PLANES: tuple[str, ...] = ("axial", "sagittal", "coronal")
SPLITS: tuple[str, ...] = ("train", "val", "test")


def encode_labels(labels) -> np.ndarray:
    """Label strings ('irrelevant' | 'relevant') -> int32 class indices (0 | 1)."""
    lookup = {c: i for i, c in enumerate(CLASSES)}
    try:
        return np.array([lookup[str(v)] for v in labels], dtype=np.int32)
    except KeyError as e:
        raise ValueError(f"unknown label {e.args[0]!r}; expected one of {CLASSES}") from None


def make_dataset(images: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 64,
                 shuffle: bool = False, seed: int = 0):
    """A batched, prefetched ``tf.data.Dataset``.

    images: float32 (N, H, W, 1) in [0, 1]; labels: int (N,) class indices or None (inference).
    ``shuffle`` reshuffles every epoch with a fixed seed, so a seeded run sees the same order.
    """
    import tensorflow as tf

    x = np.asarray(images, dtype=np.float32)
    ds = tf.data.Dataset.from_tensor_slices(x if labels is None else (x, np.asarray(labels, np.int32)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

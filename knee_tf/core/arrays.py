"""Images into the model: ``tf.data`` pipelines over preprocessed arrays, and example picking.

The manifest contract and its validation live in :mod:`knee_tf.data.manifest`; DICOM decoding in
:mod:`knee_tf.data.dicom_read`; the on-disk cache of decoded arrays in :mod:`knee_tf.data.ingest`.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from knee_tf.core.vocab import CLASSES, PLANES


def make_dataset(images: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 64,
                 shuffle: bool = False, seed: int = 0):
    """A batched, prefetched ``tf.data.Dataset`` that gathers each batch from ``images`` in place.

    images: float32 (N, H, W, 1) in [0, 1] (a memory-mapped cache array works: nothing is copied
    up front), or a :class:`PooledImages` (each batch gathered as float32); labels: int (N,) class indices or None (inference). The dataset shuffles and batches
    *indices* and gathers the batch's images with NumPy, so the image array is never duplicated
    into a TensorFlow tensor (that copy doubled peak memory). ``shuffle`` reshuffles every epoch
    with a fixed seed, so a seeded run sees the same order.
    """
    import tensorflow as tf  # lazy: loads TensorFlow (seconds)

    x = images if isinstance(images, PooledImages) else np.asarray(images, dtype=np.float32)
    n, shape = len(x), x.shape[1:]
    idx = tf.data.Dataset.range(n)
    if shuffle:
        idx = idx.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    y = None if labels is None else tf.constant(np.asarray(labels, np.int32))
    # tf.numpy_function keeps every Python function it wraps in a process-wide registry that is never
    # emptied, so a function holding ``x`` would keep each training set alive for the life of the
    # process (+1 training set per model trained in a notebook or an in-process grid). It holds a
    # weak reference instead; the dataset owns the images, and they go when the dataset does.
    rows = _Rows(x)
    rows_ref = weakref.ref(rows)
    del x

    def take(k):
        r = rows_ref()
        if r is None:
            raise RuntimeError("make_dataset: the dataset's image array was released")
        return r.images[k]

    def gather(i):
        xb = tf.numpy_function(take, [i], tf.float32, stateful=False)
        xb.set_shape((None,) + shape)
        return xb if y is None else (xb, tf.gather(y, i))

    ds = idx.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)
    ds._knee_tf_rows = rows
    return ds


class PooledImages:
    """A training set's images float32 (n + m, H, W, 1) held as two arrays, never concatenated:
    ``head`` float32 (n, H, W, 1) (the normal images) and ``pool`` float16 (m, H, W, 1) (an augmented
    pool, stored rounded to float16 as the run folder stores pools). Row i < n is ``head[i]``, row
    n + j is ``pool[j]`` converted to float32 (exact), so any gather gives the bytes of
    ``np.concatenate([head, pool.astype(float32)])[rows]`` with a quarter less memory and no copy.

    Indexing (an int array, a slice or an int) returns float32 rows; ``np.asarray`` materialises the
    whole float32 array (tests and small sets only).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, head: np.ndarray, pool: np.ndarray):
        if head.dtype != np.float32 or pool.dtype != np.float16 or head.shape[1:] != pool.shape[1:]:
            raise ValueError(f"PooledImages needs float32 (n, ...) and float16 (m, ...) of one image shape, got "
                             f"{head.dtype} {head.shape} and {pool.dtype} {pool.shape}")
        self.head, self.pool = head, pool

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.head) + len(self.pool),) + self.head.shape[1:]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows) -> np.ndarray:
        """float32 (k, H, W, 1): the rows ``rows`` (int (k,), in [0, n + m)) in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows),) + self.head.shape[1:], dtype=np.float32)
        in_head = rows < len(self.head)
        out[in_head] = self.head[rows[in_head]]
        out[~in_head] = self.pool[rows[~in_head] - len(self.head)]
        return out

    def __getitem__(self, key) -> np.ndarray:
        rows = np.arange(len(self))[key]
        return self.take(rows) if np.ndim(rows) else self.take(rows[None])[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)


class _Rows:
    """The image array a :func:`make_dataset` dataset gathers its batches from (owned by the dataset)."""

    def __init__(self, images: np.ndarray):
        self.images = images


def pick_examples(index, by=("plane", "label"), per_group: int = 1, seed: int = 0, mask=None,
                  orders=None) -> np.ndarray:
    """Row positions of ``per_group`` seeded random rows per combination of ``by`` (in ``orders``).

    index: DataFrame; mask: optional bool (N,) restricting the candidates (e.g. correctly
    classified). Groups without a candidate are skipped. Returns int (K,) positions.
    """
    rng = np.random.default_rng(seed)
    ok = np.ones(len(index), bool) if mask is None else np.asarray(mask, bool)
    orders = orders or {"plane": PLANES, "label": CLASSES[::-1]}
    levels = [orders.get(c, sorted(index[c].unique())) for c in by]
    picks = []
    for combo in itertools.product(*levels):
        sel = ok.copy()
        for c, v in zip(by, combo, strict=True):
            sel &= (index[c] == v).to_numpy()
        pool = np.flatnonzero(sel)
        if len(pool):
            picks.extend(rng.choice(pool, size=min(per_group, len(pool)), replace=False).tolist())
    return np.asarray(picks, dtype=np.int64)


def shows_anatomy(index) -> np.ndarray:
    """bool (N,): rows whose ``anatomy`` column names at least one structure (True when the
    manifest has no such column). Used to pick teaching examples that are not empty slices."""
    if "anatomy" not in index:
        return np.ones(len(index), bool)
    return index["anatomy"].fillna("").astype(str).str.strip().ne("").to_numpy()


class RowBlocks:
    """Rows of an (N, ...) array that is made one block of rows at a time, as the rows are read.

    ``make(a, b)`` returns block ``[a, b)`` in any form; ``read(rows, take, row_shape)`` returns the
    rows (int (k,), in that order) as one array, ``take(block, local_rows)`` picking them from each
    block they fall in. Block k covers rows ``[k * size, (k + 1) * size)``. Only the blocks of the
    rows last read are kept, so reading in ascending order keeps one block (or two) in memory. Used
    by the array-likes that :func:`knee_tf.core.augment.build_augmented_pool` reads by rows (their
    ``reads_rows``): :class:`knee_tf.core.cam.BatchedMaps` and :class:`knee_tf.controls.control_masks.MasksAsRead`.
    """

    def __init__(self, n: int, size: int, make):
        if size < 1:
            raise ValueError(f"block size must be >= 1, got {size}")
        self.n, self.size, self._make = int(n), int(size), make
        self._kept: dict = {}

    def read(self, rows, take, row_shape, dtype=np.float32) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        blocks = [int(k) for k in np.unique(rows // self.size)]
        for k in [k for k in self._kept if k not in blocks]:
            del self._kept[k]
        out = np.empty((len(rows),) + tuple(row_shape), dtype=dtype)
        for k in blocks:
            a = k * self.size
            if k not in self._kept:
                self._kept[k] = self._make(a, min(a + self.size, self.n))
            sel = np.flatnonzero(rows // self.size == k)
            out[sel] = take(self._kept[k], rows[sel] - a)
        return out

"""The study's experiment: Model A's maps -> augmented pool; predictions of A and B on the cohorts.

Everything a notebook would otherwise loop over by hand lives here, so notebooks 04-06 stay short
and the same code serves the CLI, the tests and the notebooks.

The test cohorts, and how each is made: :mod:`knee_tf.study.cohorts`.

Held-out corruptions (no model trains on them): every type in :data:`knee_tf.study.corrupt.CORRUPTIONS` at
every severity in ``cfg.severities``, applied to the normal test images with one fixed seed, so
that across training seeds only the models change.

Maps explain Model A's *predicted* class (``targets=None``), never the true label, so that neither
the augmented pool nor cohort 3 encodes the label in the shape of its mask.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from knee_tf.core.augment import build_augmented_pool
from knee_tf.core.cam import BatchedMaps, compute_cams
from knee_tf.core.io import atomic_save_npy, atomic_write_csv
from knee_tf.core.model import load_model, predict_proba
from knee_tf.core.vocab import MODEL_A, predicted_class
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import StudyConfig
from knee_tf.study.corrupt import CORRUPTIONS, corrupt_batch
from knee_tf.study.evaluate import paired_predictions, prediction_frame


def augmentation_maps(model_a, images: np.ndarray, cfg: StudyConfig, methods=None,
                      progress: bool = True, targets=None) -> dict[str, np.ndarray]:
    """Model A's maps at ``cfg.aug_layer``: {method: float32 (N, H, W) in [0, 1]}.

    Only the one layer is computed (the gradient pass stops there), so memory is N x H x W per method.
    targets: the class each map explains (:func:`knee_tf.core.cam.compute_cams`): None, the predicted
    class (the study's choice), or int (N,) class indices (the labels, for the ablation).
    """
    methods = tuple(methods or cfg.cam_methods)
    res = compute_cams(model_a, images, layers=(cfg.aug_layer,), methods=methods, targets=targets,
                       batch_size=cfg.cam_batch_size, progress=progress)
    return {m: res.select(m, cfg.aug_layer) for m in methods}


def augmented_pool(model_a, images: np.ndarray, labels: np.ndarray, image_ids, cfg: StudyConfig, seed: int,
                   progress: bool = True, label_maps: bool = False,
                   dtype=np.float32) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """One seed's augmented training pool from its Model A: :func:`augmentation_maps` (made batch by
    batch as the pool needs them, :class:`knee_tf.core.cam.BatchedMaps`), then
    :func:`knee_tf.core.augment.build_augmented_pool` with the config's ``aug_*`` settings. progress: unused
    (kept for callers; the maps are made inside the pool's loop).

    images: float32 (N, H, W, 1) in [0, 1]; labels: int (N,); image_ids: N ids; label_maps: maps of
    the label instead of Model A's predicted class (an ablation; the mask may then encode the label).
    dtype: of the pool images (``np.float16``: rounded as they are made, no float32 pool).
    Returns (pool images ``dtype`` (N * aug_variants, H, W, 1), labels int32, provenance DataFrame).
    """
    targets = np.asarray(labels, dtype=np.int32) if label_maps else None
    # maps made one CAM batch at a time as the pool reads them (not N x H x W per method at once)
    maps = BatchedMaps(model_a, images, cfg.aug_layer, cfg.cam_methods, targets, cfg.cam_batch_size)
    return build_augmented_pool(images, labels, image_ids, maps, variants=cfg.aug_variants,
                                weight_range=cfg.aug_weight_range, layer=cfg.aug_layer, seed=seed,
                                smooth_sigma=cfg.aug_smooth_sigma, threshold=cfg.aug_threshold, dtype=dtype)


def predict_cohorts(models: dict, cohorts: dict, seed: int, batch_size: int = 256) -> pd.DataFrame:
    """Per-image predictions of every model on every cohort (see knee_tf.yourdata.predict.predictions_frame)."""
    frames = []
    for name, model in models.items():
        for cohort, (x, idx) in cohorts.items():
            frames.append(prediction_frame(predict_proba(model, x, batch_size), idx, name, seed, cohort=cohort))
    return pd.concat(frames, ignore_index=True)


def predict_corruptions(models: dict, images: np.ndarray, index: pd.DataFrame, cfg: StudyConfig, seed: int,
                        progress: bool = True) -> pd.DataFrame:
    """Predictions of every model on every held-out corruption x severity of ``images``.

    The corruptions are seeded by ``cfg.corruption_seed`` (the same images for every training seed);
    batches of ``cfg.predict_batch_size``. Columns as :func:`predict_cohorts` plus ``corruption`` and
    ``severity``; severity 0 rows are the clean images (the same for every corruption), so each
    curve starts at the clean accuracy.
    """
    batch_size = cfg.predict_batch_size
    frames = []
    for mname, model in models.items():  # severity 0: the clean images, where every curve starts
        clean = predict_proba(model, images, batch_size)
        frames += [prediction_frame(clean, index, mname, seed, corruption=c, severity=0) for c in CORRUPTIONS]
    n = len(images)
    for name in tqdm(CORRUPTIONS, desc="held-out corruptions", disable=not progress):
        # one inference batch at a time, every severity of it: only batch_size x severities corrupted
        # images are in memory (not every severity of every image), and each image's corruption and
        # each batch's composition are those of corrupting and predicting the whole set at once
        parts = {(s, m): [] for s in cfg.severities for m in models}
        for start in range(0, max(n, 1), batch_size):
            chunk = corrupt_batch(images[start:start + batch_size], name, cfg.severities,
                                  seed=cfg.corruption_seed, first_index=start)
            for severity, xc in chunk.items():
                for mname, model in models.items():
                    parts[severity, mname].append(predict_proba(model, xc, batch_size))
        for (severity, mname), p in parts.items():
            frames.append(prediction_frame(np.concatenate(p), index, mname, seed, corruption=name,
                                           severity=int(severity)))
    return pd.concat(frames, ignore_index=True)


def a_wrong_b_right(pred: pd.DataFrame, seed: int, per_cohort: int = 2, rng_seed: int = 0) -> pd.DataFrame:
    """Images Model A gets wrong and Model B right, in one seed: a seeded draw of up to ``per_cohort``
    per cohort (not the most striking cases). Columns: cohort, image_id, plane, y_true, p_a, p_b."""
    pairs = paired_predictions(pred[pred["seed"] == seed], keys=("cohort", "seed"))
    hit = pairs[~pairs["correct_a"] & pairs["correct_b"]]
    rng = np.random.default_rng(rng_seed)
    picks = [g.iloc[np.sort(rng.choice(len(g), size=min(per_cohort, len(g)), replace=False))]
             for _, g in hit.groupby("cohort", sort=False)]
    cols = ["cohort", "image_id", "plane", "y_true", "p_a", "p_b"]
    return pd.concat(picks, ignore_index=True)[cols] if picks else pd.DataFrame(columns=cols)


def cohort_images(cohorts: dict, rows: pd.DataFrame) -> np.ndarray:
    """The images named by ``rows`` (columns cohort, image_id) from the output of
    :func:`knee_tf.study.cohorts.build_test_cohorts`.

    Returns float32 (len(rows), H, W, 1), in row order (empty with the cohorts' image shape).
    """
    shape = next(iter(cohorts.values()))[0].shape[1:]
    out = np.zeros((len(rows),) + shape, np.float32)
    for k, (cohort, image_id) in enumerate(zip(rows["cohort"], rows["image_id"], strict=True)):
        x, idx = cohorts[cohort]
        out[k] = x[int(np.flatnonzero(idx["image_id"].to_numpy() == image_id)[0])]
    return out


def augmentation_flips(model_a, images: np.ndarray, labels: np.ndarray, pool_images: np.ndarray,
                       provenance: pd.DataFrame, batch_size: int = 256) -> pd.DataFrame:
    """Which augmented copies turn Model A's correct call into a wrong one.

    images, labels: the N source images/classes; pool_images: float32 (M, H, W, 1) with provenance rows
    (``source_image_id`` order as ``build_augmented_pool`` writes it: image by image, then variant).
    Returns the provenance rows whose source A classifies correctly, with a bool ``flipped`` column.
    """
    before = predicted_class(predict_proba(model_a, images, batch_size)[:, 1])
    after = predicted_class(predict_proba(model_a, pool_images, batch_size)[:, 1])
    src = np.repeat(np.arange(len(images)), len(pool_images) // max(len(images), 1))
    right = before[src] == labels[src]
    return provenance.assign(flipped=right & (after != labels[src]))[right]


def save_pool(layout: RunLayout, seed: int, images: np.ndarray, provenance: pd.DataFrame) -> None:
    """Store an augmented pool in the run: images as float16 .npy (half the disk), provenance as CSV."""
    atomic_write_csv(layout.aug_pool_provenance(seed), provenance)
    atomic_save_npy(layout.aug_pool_images(seed), np.asarray(images, dtype=np.float16))


def load_pool(layout: RunLayout, seed: int, dtype=np.float32) -> tuple[np.ndarray, pd.DataFrame]:
    """(images (M, H, W, 1) in [0, 1] as ``dtype``, provenance) written by :func:`save_pool`.

    ``dtype=np.float16`` returns the stored array without a float32 copy (half the memory)."""
    images = np.load(layout.aug_pool_images(seed)).astype(dtype, copy=False)
    prov = pd.read_csv(layout.aug_pool_provenance(seed), dtype={"source_image_id": str, "aug_id": str})
    if len(prov) != len(images):
        raise ValueError(f"augmented pool of seed {seed}: {len(images)} images but {len(prov)} provenance rows")
    return images, prov


def pools_per_seed(layout: RunLayout, images: np.ndarray, labels: np.ndarray, image_ids, cfg: StudyConfig,
                   seeds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 04: for each training seed, that seed's Model A (read from the run) makes its
    :func:`augmented_pool`, which is stored in the run (:func:`save_pool`) and scored for flips
    (:func:`augmentation_flips`). One pool is in memory at a time.

    images, labels, image_ids: the normal training images (float32 (N, H, W, 1) in [0, 1]), classes, ids.
    Returns (recipe, flips): every seed's provenance rows and flip rows, each with a ``seed`` column.
    """
    recipe, flips = [], []
    for seed in seeds:
        model_a = load_model(layout.model(MODEL_A, seed))
        pool_x, _, provenance = augmented_pool(model_a, images, labels, image_ids, cfg, seed)
        save_pool(layout, seed, pool_x, provenance)
        flips.append(augmentation_flips(model_a, images, labels, pool_x, provenance,
                                        cfg.predict_batch_size).assign(seed=seed))
        recipe.append(provenance.assign(seed=seed))
        del pool_x, provenance  # the pool is on disk; free it before the next seed
    return pd.concat(recipe), pd.concat(flips)


def training_exam_subset(index: pd.DataFrame, n_exams: int, order_seed: int = 0) -> np.ndarray:
    """The rows of the first ``n_exams`` training exams in a seeded order: bool (len(index),).

    index: ingest rows with ``exam_id`` (only the rows passed are considered: pass the normal training
    split); n_exams: how many whole exams to keep (0 or more than there are: all); order_seed: the
    order's seed, fixed across training seeds and sizes, so the subsets are nested (the 25 exams of
    the smallest subset are among the 50 of the next) and a learning curve varies only the amount
    of data. Every slice of a chosen exam is kept.
    """
    if int(n_exams) < 0:
        raise ValueError(f"n_exams must be >= 0; got {n_exams}")
    exams = np.array(sorted(index["exam_id"].astype(str).unique()))
    if n_exams == 0 or n_exams >= len(exams):
        return np.ones(len(index), dtype=bool)
    order = exams[np.random.default_rng(int(order_seed)).permutation(len(exams))]
    return index["exam_id"].astype(str).isin(set(order[: int(n_exams)])).to_numpy()


def subsample_pool(pool_images: np.ndarray, pool_labels: np.ndarray, provenance: pd.DataFrame, share: float,
                   n_source: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """An augmented share below one copy per image: ``round(share * n_source)`` pool rows, drawn
    without replacement within each class in proportion to it (seeded), in pool order.

    pool_images (M, H, W, 1), pool_labels (M,), provenance (M rows): a pool of one copy per image
    (:func:`augmented_pool` with ``aug_variants=1``, M = n_source); share in (0, 1].
    Returns the kept (images, labels, provenance).
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1]; got {share}")
    y = np.asarray(pool_labels)
    if len(y) != len(pool_images) or len(y) != len(provenance):
        raise ValueError(f"pool of {len(pool_images)} images, {len(y)} labels, {len(provenance)} provenance rows")
    rng = np.random.default_rng(int(seed))
    keep = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        keep.append(rng.choice(idx, size=int(round(share * n_source * idx.size / len(y))), replace=False))
    rows = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)
    return pool_images[rows], y[rows], provenance.iloc[rows].reset_index(drop=True)

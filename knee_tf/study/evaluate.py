"""Evaluation statistics: accuracy with bootstrap CIs, paired McNemar tests, calibration, seed summaries.

Turning these numbers into Markdown (the results table) is :mod:`knee_tf.study.report`'s job.

Everything works on one tidy *predictions* table, one row per (model, seed, cohort, image):

=============  =====================================================================
model          ``"A"`` (normal training data) or ``"B"`` (normal + augmented), any str
seed           training seed (int)
cohort         ``"normal"``, ``"metal"``, ``"cam"`` (or any other name)
image_id       str, the same id for the same test image under every model and seed
plane, site    str, for the per-plane / per-site breakdowns
y_true         int class index (0 irrelevant, 1 relevant)
p_relevant     float in [0, 1], the model's probability of class 1
y_pred         int class index the model predicts
=============  =====================================================================

:func:`prediction_frame` builds it from model outputs. Held-out corruptions use the same table
with ``corruption`` and ``severity`` columns in place of ``cohort`` (:func:`severity_table`).

Statistics: accuracy CIs are percentile bootstraps (``scipy.stats.bootstrap``); when every
prediction is right (or every one wrong) the bootstrap distribution is a single point, so the exact
Clopper-Pearson interval is returned instead (10/10 correct -> [0.69, 1.0], never NaN or a
zero-width interval). McNemar is the exact binomial test on the discordant pairs
(``statsmodels``). ECE is the top-label expected calibration error over equal-width bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap

from knee_tf.core.vocab import MODEL_A, MODEL_B, encode_labels, predicted_class
from knee_tf.study.cohorts import cohort_order

PREDICTION_COLUMNS: tuple[str, ...] = (
    "model", "seed", "cohort", "image_id", "plane", "site", "y_true", "p_relevant", "y_pred",
)
METRIC_COLUMNS: tuple[str, ...] = ("accuracy", "ci_low", "ci_high", "n", "ece")


# ----------------------------------------------------------------------------- single statistics


def _as_correct(correct, name: str = "correct") -> np.ndarray:
    x = np.asarray(correct)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {x.shape}")
    if x.dtype != bool:
        if not np.all(np.isin(x, (0, 1))):
            raise ValueError(f"{name} must be bool or 0/1")
        x = x.astype(bool)
    return x


def accuracy_ci(
    correct,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float, float, float]:
    """Accuracy and its bootstrap confidence interval.

    correct: bool or 0/1 (N,), one entry per prediction; n_boot: bootstrap resamples;
    method: ``"percentile"`` or ``"BCa"`` (``scipy.stats.bootstrap``); seed: the resampling rng.
    All-correct / all-wrong input (a one-point bootstrap distribution), or a BCa failure, falls
    back to the exact Clopper-Pearson interval.
    Returns (accuracy, low, high), floats in [0, 1].
    """
    x = _as_correct(correct)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if method not in ("percentile", "BCa"):
        raise ValueError(f"method must be 'percentile' or 'BCa'; got {method!r}")
    n, k = x.size, int(x.sum())
    acc = k / n
    low = high = float("nan")
    if 0 < k < n:
        res = bootstrap(
            (x.astype(np.float64),), np.mean, n_resamples=int(n_boot), confidence_level=confidence,
            method=method, vectorized=True, batch=max(1, min(int(n_boot), 4_000_000 // n)),
            rng=np.random.default_rng(seed),
        )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
        low, high = float(ci.low), float(ci.high)
    return float(acc), float(np.clip(low, 0, 1)), float(np.clip(high, 0, 1))


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact (binomial) McNemar test of two models on the same images.

    correct_a, correct_b: bool or 0/1 (N,), paired by position. b = A right and B wrong,
    c = A wrong and B right; under H0 ``b ~ Binomial(b + c, 1/2)``.
    Returns dict(n, b, c, statistic = min(b, c), pvalue two-sided; 1.0 when b + c = 0).
    """
    from statsmodels.stats.contingency_tables import mcnemar  # lazy: slow import, one test needs it

    a = _as_correct(correct_a, "correct_a")
    bb = _as_correct(correct_b, "correct_b")
    if a.shape != bb.shape:
        raise ValueError(f"correct_a {a.shape} and correct_b {bb.shape} must be paired (same length)")
    both, b = int(np.sum(a & bb)), int(np.sum(a & ~bb))
    c, neither = int(np.sum(~a & bb)), int(np.sum(~a & ~bb))
    res = mcnemar([[both, b], [c, neither]], exact=True)
    p = float(res.pvalue) if b + c > 0 else 1.0
    return {"n": int(a.size), "b": b, "c": c, "statistic": float(res.statistic),
            "pvalue": min(p, 1.0)}


def _positive_prob(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("probs (N, 2) rows must sum to 1 (softmax outputs)")
        p = p[:, 1]
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"probs must be (N,) p_relevant or (N, 2); got shape {np.shape(probs)}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must be finite and lie in [0, 1]")
    return p


def calibration_bins(probs, y_true, n_bins: int = 15, mode: str = "top_label") -> pd.DataFrame:
    """Reliability table: equal-width bins over [0, 1], intervals ``(lo, hi]`` (0 in the first).

    probs: (N,) probability of class 1, or (N, 2) class probabilities; y_true: int (N,) 0/1.
    mode ``"top_label"``: confidence = max(p, 1 - p), outcome = prediction (:func:`knee_tf.core.vocab.predicted_class`) correct;
    mode ``"positive_class"``: confidence = p, outcome = (y_true == 1).
    Returns DataFrame (bin, bin_low, bin_high, n, confidence, accuracy); empty bins have n = 0 and
    NaN means.
    """
    p = _positive_prob(probs)
    y = np.asarray(y_true)
    if y.shape != p.shape or not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"y_true must be 0/1 of shape {p.shape}; got {y.shape}")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if mode == "top_label":
        conf = np.maximum(p, 1.0 - p)
        hit = predicted_class(p) == y
    elif mode == "positive_class":
        conf, hit = p, y == 1
    else:
        raise ValueError(f"mode must be 'top_label' or 'positive_class'; got {mode!r}")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(n_bins) - 1)
    n = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / n
        acc = np.bincount(idx, weights=hit.astype(float), minlength=n_bins) / n
    return pd.DataFrame({"bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:],
                         "n": n, "confidence": mean_conf, "accuracy": acc})


def expected_calibration_error(probs, y_true, n_bins: int = 15, mode: str = "top_label") -> float:
    """ECE = sum over bins of (n_bin / N) * |accuracy_bin - confidence_bin|, in [0, 1].

    probs: (N,) probability of class 1 or (N, 2); y_true: int (N,) 0/1; bins and ``mode`` as in
    :func:`calibration_bins` (default: top-label confidence, 15 bins).
    """
    t = calibration_bins(probs, y_true, n_bins, mode)
    t = t[t["n"] > 0]
    return float(np.sum(t["n"] / t["n"].sum() * np.abs(t["accuracy"] - t["confidence"])))


def grouped_calibration_errors(probs, y_true, groups, n_bins: int = 15) -> np.ndarray:
    """:func:`expected_calibration_error` (top label) of many groups at once, without a loop.

    probs: float (N,) probability of class 1; y_true: int (N,) 0/1; groups: int (N,) group codes
    0..G-1 (e.g. ``DataFrame.groupby(...).ngroup()``). Returns float64 (G,), the ECE of each group
    (NaN for a code with no rows); equal to calling :func:`expected_calibration_error` per group.
    """
    p = _positive_prob(probs)
    y = np.asarray(y_true)
    g = np.asarray(groups, dtype=np.int64)
    if y.shape != p.shape or g.shape != p.shape:
        raise ValueError(f"probs, y_true and groups must have one entry per row; got {p.shape}, {y.shape}, {g.shape}")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    n_groups = int(g.max()) + 1 if g.size else 0
    conf = np.maximum(p, 1.0 - p)
    hit = (predicted_class(p) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(n_bins) - 1)
    cell = g * int(n_bins) + b
    size = n_groups * int(n_bins)
    n = np.bincount(cell, minlength=size).reshape(n_groups, -1)
    gap = np.abs(np.bincount(cell, weights=hit, minlength=size) - np.bincount(cell, weights=conf, minlength=size))
    total = n.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap.reshape(n_groups, -1).sum(axis=1) / np.where(total > 0, total, np.nan)


# ----------------------------------------------------------------------------- prediction tables


def prediction_frame(probs, meta: pd.DataFrame, model: str, seed: int, **constants) -> pd.DataFrame:
    """Tidy predictions of one model on one set of images.

    probs: float (N, 2) softmax outputs or (N,) p_relevant, in ``meta`` row order; meta: DataFrame
    with ``image_id`` and ``y_true`` (int 0/1) or ``label`` (str), and optionally ``plane``,
    ``site``; constants: further constant columns, e.g. ``cohort="normal"`` or
    ``corruption="rician_noise", severity=3``.
    Returns DataFrame with :data:`PREDICTION_COLUMNS` (``cohort`` only when given) plus the
    constants; ``y_pred`` = :func:`knee_tf.core.vocab.predicted_class` of ``p_relevant``.
    """
    p = _positive_prob(probs)
    if len(meta) != p.size:
        raise ValueError(f"meta has {len(meta)} rows for {p.size} predictions")
    if "image_id" not in meta.columns:
        raise ValueError("meta lacks column 'image_id'")
    if "y_true" in meta.columns:
        y = meta["y_true"].to_numpy()
        if not np.all(np.isin(y, (0, 1))):
            raise ValueError("meta['y_true'] must be 0/1 class indices")
        y = y.astype(np.int64)
    elif "label" in meta.columns:
        y = encode_labels(meta["label"]).astype(np.int64)
    else:
        raise ValueError("meta needs a 'y_true' (0/1) or 'label' (str) column")
    df = pd.DataFrame({"model": str(model), "seed": int(seed)}, index=range(p.size))
    for k, v in constants.items():
        df[k] = v
    df["image_id"] = meta["image_id"].astype(str).to_numpy()
    for col in ("plane", "site"):
        df[col] = meta[col].astype(str).to_numpy() if col in meta.columns else pd.NA
    df["y_true"] = y
    df["p_relevant"] = p
    df["y_pred"] = predicted_class(p)
    first = [c for c in PREDICTION_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _check_predictions(df: pd.DataFrame, keys: Sequence[str], need_prob: bool) -> None:
    need = list(keys) + ["image_id", "y_true", "y_pred"] + (["p_relevant"] if need_prob else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}")
    if df.empty:
        raise ValueError("predictions table is empty")
    for col in ("y_true", "y_pred"):
        if not df[col].isin([0, 1]).all():
            raise ValueError(f"predictions[{col!r}] must be 0/1 class indices")
    dup = df.duplicated(list(keys) + ["image_id"])
    if dup.any():
        row = df.loc[dup, list(keys) + ["image_id"]].iloc[0].to_dict()
        raise ValueError(f"duplicate prediction rows, e.g. {row}")


def _group_metrics(df: pd.DataFrame, keys: list[str], n_boot: int, confidence: float,
                   seed: int, n_bins: int, with_ece: bool) -> pd.DataFrame:
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        correct = (g["y_pred"].to_numpy() == g["y_true"].to_numpy())
        acc, lo, hi = accuracy_ci(correct, n_boot=n_boot, confidence=confidence, seed=seed)
        row = dict(zip(keys, key, strict=True))
        row.update(accuracy=acc, ci_low=lo, ci_high=hi, n=int(correct.size))
        if with_ece:
            row["ece"] = expected_calibration_error(g["p_relevant"].to_numpy(),
                                                    g["y_true"].to_numpy(), n_bins)
        rows.append(row)
    cols = keys + [c for c in METRIC_COLUMNS if with_ece or c != "ece"]
    return _sorted(pd.DataFrame(rows, columns=cols))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in a stable, readable order: cohorts in :func:`knee_tf.study.cohorts.cohort_order` (unknown ones
    after them, by name), then by the key columns."""
    order = [c for c in ("model", "cohort", "corruption", "severity", "plane", "site", "seed")
             if c in df.columns]
    if not order or df.empty:
        return df.reset_index(drop=True)

    def key(col: pd.Series) -> pd.Series:
        if col.name == "cohort":
            rank = {c: i for i, c in enumerate(cohort_order())}
            return col.map(lambda v: (rank.get(v, len(rank)), str(v))).map(lambda t: f"{t[0]:03d}{t[1]}")
        return col

    return df.sort_values(order, key=key, kind="stable").reset_index(drop=True)


def cohort_metrics(
    predictions: pd.DataFrame,
    breakdown: str | None = None,
    *,
    n_boot: int,
    ece_bins: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy (bootstrap CI), n and ECE per (model, cohort, seed) -- or per plane / site too.

    predictions: the tidy table (module docstring); breakdown: None, ``"plane"`` or ``"site"``
    (adds that key); n_boot: bootstrap resamples per CI; ece_bins: calibration bins.
    Returns DataFrame (model, cohort, seed[, breakdown], accuracy, ci_low, ci_high, n, ece), one row
    per group, paper cohorts first.
    """
    keys = ["model", "cohort", "seed"]
    if breakdown is not None:
        if breakdown not in ("plane", "site"):
            raise ValueError(f"breakdown must be None, 'plane' or 'site'; got {breakdown!r}")
        keys.append(breakdown)
    _check_predictions(predictions, keys, need_prob=True)
    return _group_metrics(predictions, keys, n_boot, confidence, seed, ece_bins, True)


def severity_table(
    predictions: pd.DataFrame,
    *,
    n_boot: int,
    ece_bins: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy under the held-out corruptions, per (model, corruption, severity, seed).

    predictions: tidy table with ``corruption`` and ``severity`` columns (see
    :func:`prediction_frame`); the clean images may be included as severity 0.
    Returns DataFrame (model, corruption, severity, seed, accuracy, ci_low, ci_high, n[, ece]);
    ``ece`` (``ece_bins`` bins) when ``p_relevant`` is present.
    """
    keys = ["model", "corruption", "severity", "seed"]
    _check_predictions(predictions, keys, need_prob=False)
    with_ece = "p_relevant" in predictions.columns
    return _group_metrics(predictions, keys, n_boot, confidence, seed, ece_bins, with_ece)


def paired_predictions(predictions: pd.DataFrame, model_a: str = MODEL_A, model_b: str = MODEL_B,
                       keys: Sequence[str] = ("cohort", "seed")) -> pd.DataFrame:
    """A's and B's predictions side by side, paired by image within each ``keys`` group.

    Returns DataFrame (*keys, image_id, plane, site, y_true, p_a, p_b, correct_a, correct_b), one row
    per image. Raises ValueError when A and B were not evaluated on the same images.
    Figure 3's images are ``df[~df.correct_a & df.correct_b]``.
    """
    keys = list(keys)
    _check_predictions(predictions, ["model"] + keys, need_prob=False)
    a = predictions[predictions["model"] == model_a]
    b = predictions[predictions["model"] == model_b]
    if a.empty or b.empty:
        raise ValueError(f"predictions need both models {model_a!r} and {model_b!r}; found "
                         f"{sorted(predictions['model'].astype(str).unique())}")
    on = keys + ["image_id"]
    extra = [c for c in ("plane", "site") if c in predictions.columns]
    left = a[on + extra + ["y_true", "y_pred"] + (["p_relevant"] if "p_relevant" in a else [])]
    right = b[on + ["y_true", "y_pred"] + (["p_relevant"] if "p_relevant" in b else [])]
    m = left.merge(right, on=on, how="outer", suffixes=("_a", "_b"), indicator=True)
    unpaired = m[m["_merge"] != "both"]
    if len(unpaired):
        ex = unpaired.iloc[0]
        raise ValueError(f"{len(unpaired)} image(s) scored by only one model, e.g. "
                         f"{dict(zip(on, ex[on], strict=True))} ({ex['_merge']})")
    if (m["y_true_a"] != m["y_true_b"]).any():
        raise ValueError("the same image has different y_true under the two models")
    out = m[on + extra].copy()
    out["y_true"] = m["y_true_a"].astype(np.int64)
    if "p_relevant_a" in m and "p_relevant_b" in m:
        out["p_a"], out["p_b"] = m["p_relevant_a"], m["p_relevant_b"]
    out["correct_a"] = (m["y_pred_a"] == m["y_true_a"]).to_numpy()
    out["correct_b"] = (m["y_pred_b"] == m["y_true_b"]).to_numpy()
    return _sorted(out)


def mcnemar_table(predictions: pd.DataFrame, model_a: str = MODEL_A, model_b: str = MODEL_B) -> pd.DataFrame:
    """Exact McNemar test of A vs B per (cohort, seed), images paired by ``image_id``.

    Returns DataFrame (cohort, seed, n, accuracy_a, accuracy_b, b, c, statistic, pvalue), with
    b = A right & B wrong, c = A wrong & B right.
    """
    pairs = paired_predictions(predictions, model_a, model_b, ("cohort", "seed"))
    rows = []
    for (cohort, seed), g in pairs.groupby(["cohort", "seed"], sort=False):
        t = mcnemar_exact(g["correct_a"].to_numpy(), g["correct_b"].to_numpy())
        rows.append({"cohort": cohort, "seed": seed, "n": t["n"],
                     "accuracy_a": float(g["correct_a"].mean()),
                     "accuracy_b": float(g["correct_b"].mean()),
                     "b": t["b"], "c": t["c"], "statistic": t["statistic"], "pvalue": t["pvalue"]})
    cols = ["cohort", "seed", "n", "accuracy_a", "accuracy_b", "b", "c", "statistic", "pvalue"]
    return _sorted(pd.DataFrame(rows, columns=cols))


# ----------------------------------------------------------------------------- across seeds


def summarize_seeds(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample sd across seeds of a metrics table (cohort, breakdown or severity rows).

    metrics: output of :func:`cohort_metrics` or :func:`severity_table`. Groups by whichever of
    model, cohort, corruption, severity, plane, site are present.
    Returns DataFrame (*keys, n_seeds, accuracy_mean, accuracy_sd, ci_low_mean, ci_high_mean,
    [ece_mean, ece_sd,] n); sd is NaN with one seed; n is the per-seed image count (the largest,
    should they differ).
    """
    if "seed" not in metrics.columns or "accuracy" not in metrics.columns:
        raise ValueError("metrics need 'seed' and 'accuracy' columns (cohort_metrics output)")
    keys = [c for c in ("model", "cohort", "corruption", "severity", "plane", "site")
            if c in metrics.columns]
    if not keys:
        raise ValueError("metrics have none of the key columns model/cohort/corruption/severity")
    rows = []
    for key, g in metrics.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key, strict=True))
        row["n_seeds"] = int(g["seed"].nunique())
        row["accuracy_mean"] = float(g["accuracy"].mean())
        row["accuracy_sd"] = float(g["accuracy"].std(ddof=1)) if len(g) > 1 else float("nan")
        row["ci_low_mean"] = float(g["ci_low"].mean())
        row["ci_high_mean"] = float(g["ci_high"].mean())
        if "ece" in g.columns:
            row["ece_mean"] = float(g["ece"].mean())
            row["ece_sd"] = float(g["ece"].std(ddof=1)) if len(g) > 1 else float("nan")
        row["n"] = int(g["n"].max())
        rows.append(row)
    return _sorted(pd.DataFrame(rows))

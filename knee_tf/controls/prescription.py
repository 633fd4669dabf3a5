"""The prescription endpoint: does a model pick the right slices of each exam and plane?

Automated prescription places the scan planes on the slices a classifier calls relevant, so what
matters is the *set* of relevant slices per exam and localizer plane, not each slice on its own.
Per (arm, seed, condition, exam, plane) the predicted set P (slices with ``p_relevant > 0.5``, the
vocabulary's decision rule) is compared with the true set T:

* ``all_right``: P == T, every slice of the exam-plane right;
* ``jaccard``: |P & T| / |P | T| (1 when both are empty);
* ``range_within_one``: the predicted range (first to last relevant slice, in slice order) has both
  ends within one slice of the true range's ends (both empty: True; one empty: False). A range
  that is too short cuts off anatomy and one that is too long wastes coverage, so both ends count.

Slice order within an exam-plane comes from the ingest index (:func:`slice_ranks`): the manifest's
``slice_index`` (the phantom writes it), else ``slice_location_mm`` (what ``knee-tf scan`` records
from ImagePositionPatient along the slice normal), else ``instance_number``.

:func:`prescription_table` reports, per arm and condition, each endpoint's mean over seeds with a
two-level interval (seeds and patients resampled; :func:`knee_tf.controls.effect_stats.two_level_bootstrap`),
beside the slice accuracy of the same predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from knee_tf.controls.arms import arm_names
from knee_tf.controls.effect_stats import RESAMPLE_LEVELS, percentile_interval, two_level_bootstrap
from knee_tf.controls.effects import condition_keys, condition_order, row_rng
from knee_tf.core.vocab import predicted_class

#: Index columns that order the slices of one exam-plane, in order of preference.
SLICE_ORDER_COLUMNS: tuple[str, ...] = ("slice_index", "slice_location_mm", "instance_number")
#: The endpoints, per exam-plane, and the slice accuracy they are reported beside.
ENDPOINTS: tuple[str, ...] = ("all_right", "jaccard", "range_within_one")
PER_EXAM_COLUMNS: tuple[str, ...] = (
    "n_slices", "n_true", "n_predicted", "n_wrong", "all_right", "jaccard", "range_within_one",
    "first_error", "last_error",
)


def slice_ranks(index: pd.DataFrame, order_column: str | None = None) -> pd.Series:
    """The position of each slice within its exam and plane: int64 0, 1, ... along the slice order.

    index: ingest/manifest rows with ``image_id``, ``exam_id``, ``plane`` and one of
    :data:`SLICE_ORDER_COLUMNS` (``order_column`` picks one; default the first present whose values
    are all numbers). Returns a Series indexed by ``image_id``. Raises ValueError naming the column
    when no order is known, a value is not a number, or two slices of one exam-plane share a position.
    """
    need = [c for c in ("image_id", "exam_id", "plane") if c not in index.columns]
    if need:
        raise ValueError(f"index lacks column(s) {need}")
    candidates = [order_column] if order_column else [c for c in SLICE_ORDER_COLUMNS if c in index.columns]
    if not candidates or candidates[0] not in index.columns:
        raise ValueError(f"index has no slice order column (one of {', '.join(SLICE_ORDER_COLUMNS)})")
    col = candidates[0]
    for c in candidates:
        if pd.to_numeric(index[c], errors="coerce").notna().all():
            col = c
            break
    pos = pd.to_numeric(index[col], errors="coerce")
    if pos.isna().any():
        row = index.loc[pos.isna(), "image_id"].iloc[0]
        raise ValueError(f"slice order column {col!r}: image {row!r} has no numeric value ({index.loc[pos.isna(), col].iloc[0]!r})")
    t = pd.DataFrame({"image_id": index["image_id"].astype(str).to_numpy(), "exam_id": index["exam_id"].to_numpy(),
                      "plane": index["plane"].to_numpy(), "pos": pos.to_numpy(np.float64)})
    dup = t.duplicated(["exam_id", "plane", "pos"], keep=False)
    if dup.any():
        r = t[dup].iloc[0]
        raise ValueError(f"slice order column {col!r}: exam {r['exam_id']!r}, plane {r['plane']!r} has two slices "
                         f"at {r['pos']:g}")
    ranks = t.groupby(["exam_id", "plane"], sort=False)["pos"].rank(method="first").astype(np.int64) - 1
    return pd.Series(ranks.to_numpy(), index=t["image_id"], name="slice_rank")


def per_exam_plane(predictions: pd.DataFrame, ranks: pd.Series | None = None) -> pd.DataFrame:
    """Predicted vs true relevant set of every (arm, seed, condition, exam, plane).

    predictions: per-image rows with ``arm``, ``seed``, ``cohort`` (optionally ``corruption``,
    ``severity``), ``image_id``, ``patient_id``, ``exam_id``, ``plane``, ``y_true`` and ``y_pred`` or
    ``p_relevant``, and ``slice_rank`` unless ``ranks`` (:func:`slice_ranks`) gives it by image_id.
    Returns one row per exam-plane: the keys, ``patient_id`` and :data:`PER_EXAM_COLUMNS`
    (``first_error`` / ``last_error``: predicted minus true first / last relevant slice, NaN when
    either set is empty).
    """
    need = [c for c in ("arm", "seed", "image_id", "patient_id", "exam_id", "plane", "y_true") if c not in predictions]
    if need:
        raise ValueError(f"predictions lack column(s) {need}")
    keys = ["arm", "seed", *condition_keys(predictions), "exam_id", "plane"]
    df = predictions
    if ranks is not None:
        df = df.assign(slice_rank=df["image_id"].astype(str).map(ranks))
        if df["slice_rank"].isna().any():
            missing = df.loc[df["slice_rank"].isna(), "image_id"].iloc[0]
            raise ValueError(f"no slice rank for image {missing!r} (not in the index given)")
    elif "slice_rank" not in df.columns:
        raise ValueError("predictions lack column 'slice_rank' and no ranks were given (see slice_ranks)")
    y = df["y_true"].to_numpy().astype(bool)
    pred = (df["y_pred"].to_numpy() if "y_pred" in df.columns else predicted_class(df["p_relevant"].to_numpy())).astype(bool)
    rank = df["slice_rank"].to_numpy(np.float64)
    t = df[keys + ["patient_id"]].copy()
    t["n_slices"] = 1
    t["n_true"], t["n_predicted"] = y.astype(np.int64), pred.astype(np.int64)
    t["n_wrong"] = (y != pred).astype(np.int64)
    t["inter"], t["union"] = (y & pred).astype(np.int64), (y | pred).astype(np.int64)
    t["t_rank"] = np.where(y, rank, np.nan)
    t["p_rank"] = np.where(pred, rank, np.nan)
    g = t.groupby(keys, sort=False, dropna=False, observed=True)
    out = g[["n_slices", "n_true", "n_predicted", "n_wrong", "inter", "union"]].sum()
    out["patient_id"] = g["patient_id"].first()
    lo, hi = g[["t_rank", "p_rank"]].min(), g[["t_rank", "p_rank"]].max()
    out["all_right"] = out["n_wrong"] == 0
    out["jaccard"] = np.where(out["union"] > 0, out["inter"] / out["union"].where(out["union"] > 0, 1), 1.0)
    out["first_error"] = lo["p_rank"] - lo["t_rank"]
    out["last_error"] = hi["p_rank"] - hi["t_rank"]
    both_empty = (out["n_true"] == 0) & (out["n_predicted"] == 0)
    out["range_within_one"] = both_empty | ((out["first_error"].abs() <= 1) & (out["last_error"].abs() <= 1))
    return out.reset_index()[keys + ["patient_id"] + list(PER_EXAM_COLUMNS)]


def prescription_table(predictions: pd.DataFrame, ranks: pd.Series | None = None, *, n_boot: int = 2000,
                       confidence: float = 0.95, seed: int = 0,
                       resample: Sequence[str] = RESAMPLE_LEVELS) -> pd.DataFrame:
    """Per arm and condition: the three prescription endpoints beside slice accuracy.

    Arguments as :func:`per_exam_plane`; each endpoint is the mean over seeds of its mean over
    exam-planes, with a two-level percentile interval (seeds and patients resampled; n_boot,
    confidence, seed as :func:`knee_tf.controls.effects.effects_table`). ``slice_accuracy`` is the mean over
    seeds of the share of slices right, on the same predictions. Returns DataFrame (arm,
    *conditions, n_seeds, n_exam_planes (per seed), slice_accuracy, then per endpoint E:
    E, E_low, E_high, E_sd (across seeds)).
    """
    per = per_exam_plane(predictions, ranks)
    cond = condition_keys(predictions)
    per["patient_id"] = per["patient_id"].astype(str)
    per["n_right"] = per["n_slices"] - per["n_wrong"]
    rows = []
    for key, g in per.groupby(["arm", *cond], sort=False, dropna=False, observed=True):
        seeds = sorted(g["seed"].unique())
        patients = sorted(g["patient_id"].unique())
        idx = pd.MultiIndex.from_product([seeds, patients], names=["seed", "patient_id"])
        agg = g.groupby(["seed", "patient_id"])[["n_right", "n_slices", *ENDPOINTS]].sum()
        agg["exam_planes"] = g.groupby(["seed", "patient_id"]).size()
        agg = agg.astype(np.float64).reindex(idx, fill_value=0.0)
        shape = (len(seeds), len(patients))
        matrix = {c: agg[c].to_numpy().reshape(shape) for c in agg.columns}.__getitem__
        num = np.stack([matrix(e) for e in ENDPOINTS])
        den = np.broadcast_to(matrix("exam_planes"), num.shape)
        point, boot = two_level_bootstrap(num, den, n_boot=n_boot, resample=resample,
                                          rng=row_rng(seed, "prescription", *key))
        per_seed = num.sum(axis=2) / den.sum(axis=2)
        row = {"arm": key[0], **dict(zip(cond, key[1:], strict=True)), "n_seeds": len(seeds),
               "n_exam_planes": int(round(len(g) / len(seeds))),
               "slice_accuracy": float(np.mean(matrix("n_right").sum(1) / matrix("n_slices").sum(1)))}
        for k, e in enumerate(ENDPOINTS):
            lo, hi = percentile_interval(boot[k], confidence)
            row.update({e: float(point[k]), f"{e}_low": lo, f"{e}_high": hi,
                        f"{e}_sd": float(np.std(per_seed[k], ddof=1)) if len(seeds) > 1 else float("nan")})
        rows.append(row)
    cols = ["arm", *cond, "n_seeds", "n_exam_planes", "slice_accuracy"]
    cols += [f"{e}{s}" for e in ENDPOINTS for s in ("", "_low", "_high", "_sd")]
    known = list(arm_names())
    rows.sort(key=lambda r: (known.index(r["arm"]) if r["arm"] in known else len(known), str(r["arm"]),
                             condition_order(r)))  # the effects tables' order
    return pd.DataFrame(rows, columns=cols)

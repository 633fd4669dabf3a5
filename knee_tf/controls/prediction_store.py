"""The prediction store: every (arm, seed, condition)'s per-image predictions in one compact file.

Every number the controls study reports (:mod:`knee_tf.controls.effects`, :mod:`knee_tf.controls.prescription`) is a
function of this table, so publishing it (``RunLayout.prediction_store``, copied to ``results/`` by
:func:`knee_tf.study.pipeline.publish`) lets anyone recompute them, and a test does
(:func:`recompute_tables`, :func:`compare_with_published`).

One row per (arm, seed, cohort, corruption, severity, image), columns :data:`STORE_COLUMNS`:

=============  ======================================================================
arm            the model's name: the arm (:data:`knee_tf.controls.arms.ARMS`), or a grid
               job's ``<arm>_<variant>``
seed           training seed (int16)
cohort         test cohort (:data:`knee_tf.study.cohorts.COHORTS`)
corruption     held-out corruption applied to the cohort's images, ``"none"`` when none
severity       its severity 1..5 (0 with no corruption) (int8)
image_id       the source image (the same id under every arm and seed)
patient_id     for the patient-level bootstrap
exam_id        for the prescription endpoint
plane, site    breakdowns
slice_rank     position of the slice in its exam-plane (:func:`knee_tf.controls.prescription.slice_ranks`)
y_true         0/1 (int8)
p_relevant     float32, the model's probability of ``relevant``
=============  ======================================================================

Parquet (pyarrow, zstd): strings are dictionary-encoded, so the repeated names cost almost
nothing; rows are sorted so that the same predictions give the same file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from knee_tf.controls.effects import arms_table, effects_table
from knee_tf.controls.prescription import prescription_table, slice_ranks
from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_path
from knee_tf.core.vocab import NO_CORRUPTION
from knee_tf.study.config import StudyConfig

STORE_COLUMNS: tuple[str, ...] = (
    "arm", "seed", "cohort", "corruption", "severity", "image_id", "patient_id", "exam_id", "plane", "site",
    "slice_rank", "y_true", "p_relevant",
)
_KEY = ["arm", "seed", "cohort", "corruption", "severity", "image_id"]
_DTYPES = {"seed": np.int16, "severity": np.int8, "slice_rank": np.int16, "y_true": np.int8,
           "p_relevant": np.float32}
_CATEGORIES = ("arm", "cohort", "corruption", "patient_id", "exam_id", "plane", "site")
#: Index columns a store row takes from the ingest index, by image_id.
INDEX_COLUMNS: tuple[str, ...] = ("patient_id", "exam_id", "plane", "site")


def store_frame(predictions: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """Predictions in the store's schema: image metadata and slice order joined from the ingest index.

    predictions: per-image rows with ``model`` (as :func:`knee_tf.study.evaluate.prediction_frame` and the
    grid name it: the arm, or ``<arm>_<variant>``; it becomes the store's ``arm``) or ``arm``, ``seed``, ``cohort``, optional ``corruption`` / ``severity``, ``image_id``, ``y_true``,
    ``p_relevant``; index: the ingest index (``image_id``, ``patient_id``, ``exam_id``, ``plane``,
    optional ``site``, and a slice order column, :data:`knee_tf.controls.prescription.SLICE_ORDER_COLUMNS`).
    Rows of a corruption at severity 0 (the clean images, as :func:`knee_tf.study.experiment.predict_corruptions`
    repeats them for every corruption) are left out: the cohort's own rows hold them once.
    Returns DataFrame with :data:`STORE_COLUMNS` in store dtypes, sorted by arm, seed, cohort,
    corruption, severity, image_id.
    """
    if "model" in predictions.columns:  # the model's name names the row (a grid variant's "<arm>_<variant>")
        df = predictions.drop(columns=["arm"], errors="ignore").rename(columns={"model": "arm"})
    else:
        df = predictions
    need = [c for c in ("arm", "seed", "cohort", "image_id", "y_true", "p_relevant") if c not in df.columns]
    if need:
        raise ValueError(f"predictions lack column(s) {need}")
    df = df.assign(image_id=df["image_id"].astype(str))
    if "corruption" not in df.columns:
        df = df.assign(corruption=NO_CORRUPTION)
    if "severity" not in df.columns:
        df = df.assign(severity=0)
    df = df.assign(corruption=df["corruption"].fillna(NO_CORRUPTION), severity=df["severity"].fillna(0))
    # knee_tf.study.experiment.predict_corruptions repeats the clean images as severity 0 of every corruption:
    # in the store they are the cohort's own rows, once
    df = df[(df["corruption"] == NO_CORRUPTION) | (df["severity"] != 0)]
    idx = index.assign(image_id=index["image_id"].astype(str))
    if "site" not in idx.columns:
        idx = idx.assign(site="")
    ranks = slice_ranks(idx)
    meta = idx.set_index("image_id")[list(INDEX_COLUMNS)].assign(slice_rank=ranks)
    unknown = ~df["image_id"].isin(meta.index)
    if unknown.any():
        raise ValueError(f"image {df.loc[unknown, 'image_id'].iloc[0]!r} of the predictions is not in the index")
    out = df[["arm", "seed", "cohort", "corruption", "severity", "image_id", "y_true", "p_relevant"]].join(
        meta, on="image_id")
    return _typed(out[list(STORE_COLUMNS)])


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col, dtype in _DTYPES.items():
        df[col] = df[col].astype(dtype)
    for col in _CATEGORIES:
        df[col] = df[col].astype(str).astype("category")
    df["image_id"] = df["image_id"].astype(str)
    dup = df.duplicated(_KEY)
    if dup.any():
        raise ValueError(f"duplicate store rows, e.g. {df.loc[dup, _KEY].iloc[0].to_dict()}")
    return df.sort_values(_KEY, kind="stable").reset_index(drop=True)


def write_store(path: str | Path, store: pd.DataFrame) -> Path:
    """Write a store table (:func:`store_frame`) as Parquet (zstd), atomically. Returns the path."""
    missing = [c for c in STORE_COLUMNS if c not in store.columns]
    if missing:
        raise ValueError(f"store table lacks column(s) {missing}")
    table = _typed(store[list(STORE_COLUMNS)])
    with atomic_path(path, suffix=".parquet") as tmp:
        table.to_parquet(tmp, engine="pyarrow", compression="zstd", index=False)
    return Path(path)


def read_store(path: str | Path, arms: Sequence[str] | None = None) -> pd.DataFrame:
    """The store table at ``path`` (optionally only some arms). InputError naming the file when it is
    missing, unreadable or lacks a column."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: prediction store not found")
    try:
        filters = [("arm", "in", list(arms))] if arms is not None else None
        df = pd.read_parquet(path, engine="pyarrow", filters=filters)
    except Exception as e:  # pyarrow raises several kinds for a damaged or foreign file
        raise InputError(f"{path}: cannot read the prediction store: {type(e).__name__}: {e}") from None
    missing = [c for c in STORE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: prediction store lacks column(s) {', '.join(missing)}")
    return df[list(STORE_COLUMNS)]


# ----------------------------------------------------------------------------- recomputation


def recompute_tables(store: pd.DataFrame, comparisons: Sequence[tuple[str, str]] | None = None, *,
                     family: Mapping[str, str] | None = None, arm_info: pd.DataFrame | None = None,
                     n_boot: int = 2000, n_boot_effects: int | None = None, ece_bins: int = 15, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, pd.DataFrame]:
    """The published tables from the store alone: {"arms_table", "effects_table", "prescription_table"},
    keyed by their :class:`knee_tf.data.layout.RunLayout` attribute names. Everything is seeded, so the
    same store gives the same tables.

    comparisons, family: as :func:`knee_tf.controls.effects.effects_table`; arm_info: optional rows (``arm``,
    then e.g. ``budget``, ``description``) describing each arm, put beside the arm's name in the arms
    table (every arm of the store must have a row); n_boot: the prescription table's resamples;
    n_boot_effects: the arms and effects tables' (default: ``StudyConfig.n_bootstrap_effects``).
    """
    if n_boot_effects is None:
        n_boot_effects = StudyConfig().n_bootstrap_effects
    arms = arms_table(store, n_boot=n_boot_effects, ece_bins=ece_bins, seed=seed, family=family)
    if arm_info is not None:
        info = arm_info.drop_duplicates("arm").set_index("arm")
        missing = sorted(set(arms["arm"]) - set(info.index))
        if missing:
            raise ValueError(f"arm_info has no row for arm(s) {missing}")
        arms = pd.concat([arms[["arm"]], info.reindex(arms["arm"]).reset_index(drop=True),
                          arms.drop(columns="arm")], axis=1)
    return {
        "arms_table": arms,
        "effects_table": effects_table(store, comparisons, n_boot=n_boot_effects, seed=seed, alpha=alpha,
                                       family=family),
        "prescription_table": prescription_table(store, n_boot=n_boot, seed=seed),
    }


def compare_with_published(computed: Mapping[str, pd.DataFrame], published: Mapping[str, str | Path],
                           rtol: float = 1e-9, atol: float = 1e-12) -> list[str]:
    """Differences between recomputed tables and the CSV files published from them.

    computed: {name: DataFrame} (:func:`recompute_tables`); published: {name: CSV path}. Numbers are
    compared to ``rtol`` / ``atol`` (a CSV round trip keeps 17 significant digits), everything else
    exactly. Returns one line per difference, naming the file, the row and the column ([] when all agree).
    """
    problems = []
    for name, table in computed.items():
        path = Path(published[name])
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        pub = pd.read_csv(path, keep_default_na=True)
        if list(pub.columns) != list(table.columns):
            problems.append(f"{path}: columns {list(pub.columns)} != recomputed {list(table.columns)}")
            continue
        if len(pub) != len(table):
            problems.append(f"{path}: {len(pub)} rows, recomputed {len(table)}")
            continue
        new = table.reset_index(drop=True)
        for col in table.columns:
            a, b = pub[col], new[col]
            if pd.api.types.is_bool_dtype(b) or pd.api.types.is_bool_dtype(a):
                bad = a.astype(bool).to_numpy() != b.astype(bool).to_numpy()
            elif pd.api.types.is_numeric_dtype(b) and pd.api.types.is_numeric_dtype(a):
                x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
                bad = ~(np.isclose(x, y, rtol=rtol, atol=atol) | (np.isnan(x) & np.isnan(y)))
            else:  # an empty string comes back from CSV as NaN
                bad = a.fillna("").astype(str).to_numpy() != b.fillna("").astype(str).to_numpy()
            for i in np.flatnonzero(bad)[:3]:
                problems.append(f"{path}: row {i + 2}, column {col!r}: published {a.iloc[i]!r}, recomputed {b.iloc[i]!r}")
    return problems

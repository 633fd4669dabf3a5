"""Assign train/val/test by patient: seeded, stratified by site when the manifest has one.

A patient's rows always share one split (the manifest rule against leakage). Within each stratum
(a site, or the whole manifest without a ``site`` column) the patients are shuffled with the seed
and cut at the cumulative ratios, so every site contributes to every split in proportion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from knee_tf.core.errors import InputError
from knee_tf.core.vocab import CLASSES, SPLITS


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'0.7,0.1,0.2' -> (0.7, 0.1, 0.2): three non-negative numbers (train, val, test) summing to 1."""
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"--ratios {text!r}: expected three numbers like 0.7,0.1,0.2") from None
    if len(vals) != len(SPLITS) or any(v < 0 or not np.isfinite(v) for v in vals):
        raise InputError(f"--ratios {text!r}: expected three non-negative numbers ({', '.join(SPLITS)})")
    if abs(sum(vals) - 1.0) > 1e-6:
        raise InputError(f"--ratios {text!r}: they sum to {sum(vals):g}, not 1")
    return vals  # type: ignore[return-value]


def split_by_patient(df: pd.DataFrame, ratios=(0.7, 0.1, 0.2), seed: int = 0, stratify: str | None = "site",
                     manifest_name: str = "manifest") -> pd.DataFrame:
    """A copy of ``df`` with ``split`` set for every row; every patient lies in exactly one split.

    df: manifest rows (needs ``patient_id``; ``stratify`` is used when that column exists).
    ratios: shares of *patients* per split, in SPLITS order, summing to 1. A patient seen at several
    sites is placed in the stratum of the site holding most of their rows (ties: the first by name).
    Deterministic in (patients, strata, ratios, seed); row order is kept.
    """
    ratios = parse_ratios(",".join(str(r) for r in ratios))
    if "patient_id" not in df.columns:
        raise InputError(f"{manifest_name}: split --by patient needs a patient_id column")
    empty = df.index[df["patient_id"].astype(str).str.strip() == ""]
    if len(empty):
        lines = ", ".join(str(i + 2) for i in empty[:10])
        raise InputError(f"{manifest_name} line(s) {lines}: empty patient_id (split --by patient needs one per row)")
    pid = df["patient_id"].astype(str)
    if stratify and stratify in df.columns:
        counts = pd.DataFrame({"p": pid, "s": df[stratify].astype(str)}).value_counts().reset_index(name="n")
        counts = counts.sort_values(["p", "n", "s"], ascending=[True, False, True])
        stratum = counts.drop_duplicates("p").set_index("p")["s"]
    else:
        stratum = pd.Series("", index=sorted(pid.unique()))
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    cum = np.cumsum(ratios)
    for s in sorted(stratum.unique()):
        patients = np.array(sorted(stratum.index[stratum == s]))
        patients = patients[rng.permutation(len(patients))]
        cuts = np.rint(cum * len(patients)).astype(int)
        start = 0
        for name, stop in zip(SPLITS, cuts, strict=True):
            assign.update({p: name for p in patients[start:stop]})
            start = stop
    out = df.copy()
    out["split"] = pid.map(assign)
    return out


def split_summary(df: pd.DataFrame, stratify: str | None = "site") -> pd.DataFrame:
    """Patients and rows per split (and per stratum when present), for the terminal."""
    keys = ["split"] + ([stratify] if stratify and stratify in df.columns else [])
    g = df.groupby(keys, sort=True)
    return pd.DataFrame({"patients": g["patient_id"].nunique(), "rows": g.size()})


def split_problems(df: pd.DataFrame, ratios=(0.7, 0.1, 0.2)) -> list[str]:
    """What makes a split of ``df`` (with ``split`` set) unusable for training, as sentences: a split
    with a share above 0 that got no patient, or (over the labelled rows, when any row has a label)
    a split without a class. Empty when all is well."""
    problems = []
    labelled = df[df["label"].astype(str) != ""] if "label" in df.columns else df.iloc[:0]
    for name, share in zip(SPLITS, ratios, strict=True):
        rows = df[df["split"] == name]
        if share > 0 and rows.empty:
            problems.append(f"{name} is empty")
            continue
        if len(labelled):
            have = set(labelled.loc[labelled["split"] == name, "label"])
            missing = [c for c in CLASSES if c not in have]
            if share > 0 and missing:
                problems.append(f"{name} has no {' or '.join(missing)} slice")
    return problems


def split_counts(df: pd.DataFrame) -> str:
    """'train 4 patients/120 rows, val 0/0, test 1/30': the counts a refusal quotes."""
    parts = []
    for i, name in enumerate(SPLITS):
        rows = df[df["split"] == name]
        unit = (" patients", " rows") if i == 0 else ("", "")
        parts.append(f"{name} {rows['patient_id'].nunique()}{unit[0]}/{len(rows)}{unit[1]}")
    return ", ".join(parts)

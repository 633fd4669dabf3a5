"""The test families of the pre-registered analysis plan (``docs/analysis_plan.md``): which rows of an
effects table are tested, and Benjamini-Hochberg within each family only.

:data:`FAMILY_PLAN` is the plan's two tables, one entry per (arm, reference) with its cohorts; the
tests are accuracy on the cohort's own images (no held-out corruption). Every other row of the
effects table (sensitivity and specificity, the held-out corruptions, every other pair of arms, the
learning curve's and the ablations' models) is :data:`EXPLORATORY`: it keeps its interval and p-value,
but takes no part in a family, so it has no q and is never called significant.

:func:`family_fdr` adds the columns ``test_family``, ``n_comparisons`` (tests in the row's family;
0 for an exploratory row), ``q_bh`` (NaN for an exploratory row) and ``significant`` (q <= alpha).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from knee_tf.controls.effect_stats import benjamini_hochberg
from knee_tf.core.vocab import (
    A_STEPS,
    B_KEEP,
    B_RANDOM,
    B_UNTRAINED,
    ERASING,
    METAL,
    MODEL_A,
    MODEL_B,
    MRI_AUG,
    NEW_SITE,
    NO_CORRUPTION,
    NORMAL,
)
from knee_tf.study.cohorts import CAM, CAM_B, CAM_TRANSFER

PRIMARY, SECONDARY, EXPLORATORY = "primary", "secondary", "exploratory"
#: The values of the ``test_family`` column, in the order tables list them.
TEST_FAMILIES: tuple[str, ...] = (PRIMARY, SECONDARY, EXPLORATORY)
#: The metric every family test is on.
FAMILY_METRIC = "accuracy"

#: {family: ((arm, reference, cohorts), ...)}: the analysis plan's primary (8 tests) and secondary
#: (16 tests) families.
FAMILY_PLAN: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    PRIMARY: (
        (MODEL_B, MODEL_A, (NORMAL, METAL, CAM, NEW_SITE)),
        (MODEL_B, B_RANDOM, (NORMAL, METAL)),
        (MODEL_B, A_STEPS, (NORMAL, METAL)),
    ),
    SECONDARY: (
        (MODEL_B, ERASING, (NORMAL, METAL)),
        (MODEL_B, MODEL_A, (CAM_TRANSFER, CAM_B)),
        (MODEL_B, B_RANDOM, (CAM, NEW_SITE, CAM_TRANSFER, CAM_B)),
        (MODEL_B, A_STEPS, (CAM, NEW_SITE)),
        (MODEL_B, B_UNTRAINED, (NORMAL, METAL)),
        (MODEL_B, B_KEEP, (NORMAL, METAL)),
        (MODEL_B, MRI_AUG, (NORMAL, METAL)),
    ),
}

_FAMILY_OF: dict[tuple[str, str, str], str] = {
    (arm, ref, cohort): family for family, entries in FAMILY_PLAN.items()
    for arm, ref, cohorts in entries for cohort in cohorts}
if len(_FAMILY_OF) != sum(len(c) for entries in FAMILY_PLAN.values() for _, _, c in entries):
    raise RuntimeError("FAMILY_PLAN names one test in two families")


def family_size(family: str) -> int:
    """How many tests the plan puts in ``family`` (0 for :data:`EXPLORATORY`)."""
    return sum(f == family for f in _FAMILY_OF.values())


def row_family(arm: str, reference: str, cohort: str, corruption: str = NO_CORRUPTION,
                metric: str = FAMILY_METRIC) -> str:
    """The family of one effects row: :data:`PRIMARY`, :data:`SECONDARY` or :data:`EXPLORATORY`."""
    if metric != FAMILY_METRIC or str(corruption) != NO_CORRUPTION:
        return EXPLORATORY
    return _FAMILY_OF.get((str(arm), str(reference), str(cohort)), EXPLORATORY)


def family_fdr(effects: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """``effects`` (rows with ``arm``, ``reference``, ``cohort``, ``metric``, ``p`` and optionally
    ``corruption``) with ``test_family``, ``n_comparisons``, ``q_bh`` and ``significant``:
    Benjamini-Hochberg at FDR ``alpha`` within each family; exploratory rows get no q."""
    need = [c for c in ("arm", "reference", "cohort", "metric", "p") if c not in effects.columns]
    if need:
        raise ValueError(f"effects lack column(s) {need}")
    corruption = effects["corruption"] if "corruption" in effects.columns else pd.Series(NO_CORRUPTION,
                                                                                           index=effects.index)
    family = [row_family(a, r, c, k, m) for a, r, c, k, m in
              zip(effects["arm"], effects["reference"], effects["cohort"], corruption, effects["metric"], strict=True)]
    out = effects.assign(test_family=family)
    q = np.full(len(out), np.nan)
    n = np.zeros(len(out), dtype=np.int64)
    fam = out["test_family"].to_numpy()
    p = out["p"].to_numpy(np.float64)
    for f in (PRIMARY, SECONDARY):
        rows = np.flatnonzero(fam == f)
        if rows.size:
            q[rows] = benjamini_hochberg(p[rows], alpha)[0]
            n[rows] = int(np.isfinite(p[rows]).sum())
    out["n_comparisons"] = n
    out["q_bh"] = q
    out["significant"] = np.where(np.isfinite(q), q <= alpha, False).astype(bool)
    return out

"""Effects of each arm against its reference (usually Model A), with intervals that include seed variance.

Input: the per-image predictions of every (arm, seed, condition) -- the prediction store's table
(:mod:`knee_tf.controls.prediction_store`), one row per image with at least ``arm``, ``seed``, ``cohort``,
``image_id``, ``patient_id``, ``y_true`` (0/1) and ``p_relevant``; the optional ``corruption`` and
``severity`` columns split a cohort into conditions (:data:`CONDITION_KEYS`).

**Effect.** For arm X against reference R (arm − R) on one condition: in every seed s that both arms
have, ``rate_X(s) - rate_R(s)`` on the same images (X's seed s is paired with R's seed s, the
Model A it was built from); the effect is the mean over seeds. Rates are accuracy, sensitivity
(accuracy on relevant slices) or specificity (on irrelevant slices) -- each a ratio of per-patient
sums, which is what makes the bootstrap below fast.

The interval and the p-value of each row come from one two-level bootstrap that resamples seeds and
patients (:func:`knee_tf.controls.effect_stats.bootstrap_inference`: a percentile interval with 10 or
more seeds, a studentized t interval with fewer, the method in column ``interval_method``; p is the
interval inverted). Benjamini-Hochberg runs within the analysis plan's test families only
(:func:`knee_tf.controls.families.family_fdr`, column ``test_family``); exploratory rows have no q.
The sign-flip test across seeds (``p_sign_flip``) is kept as an exploratory column.

Rows on conditions made by an arm's own training generator are flagged ``in_distribution``
(:func:`in_distribution`): a gain there is expected by construction.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from knee_tf.controls.arms import ARMS, arm_names
from knee_tf.controls.effect_stats import (
    RESAMPLE_LEVELS,
    bootstrap_inference,
    sign_flip_test,
    two_level_bootstrap,
)
from knee_tf.controls.families import family_fdr
from knee_tf.core.vocab import MODEL_A, NO_CORRUPTION, predicted_class
from knee_tf.study.cohorts import COHORTS, cohort_order
from knee_tf.study.evaluate import grouped_calibration_errors

#: The columns that name one test condition, where present: a cohort, and optionally a held-out
#: corruption and its severity applied to it.
CONDITION_KEYS: tuple[str, ...] = ("cohort", "corruption", "severity")
#: Rates the effects are computed for.
METRICS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity")
EFFECT_COLUMNS: tuple[str, ...] = (
    "arm", "reference", *CONDITION_KEYS, "metric", "test_family", "in_distribution", "n_seeds", "n_patients",
    "n_images", "arm_mean", "reference_mean", "effect", "se", "interval_method", "ci_low", "ci_high", "p",
    "n_comparisons", "q_bh", "significant", "seeds_better", "p_sign_flip", "p_sign_flip_min",
)
#: The columns :func:`knee_tf.controls.families.family_fdr` adds.
_FAMILY_COLUMNS = ("test_family", "n_comparisons", "q_bh", "significant")


def condition_keys(predictions: pd.DataFrame) -> list[str]:
    """The :data:`CONDITION_KEYS` columns the table has (``cohort`` is required)."""
    if "cohort" not in predictions.columns:
        raise ValueError("predictions lack column 'cohort'")
    return [k for k in CONDITION_KEYS if k in predictions.columns]


def generator_families(arm: str, family: Mapping[str, str] | None = None) -> set[str]:
    """The arm families (:attr:`knee_tf.controls.arms.Arm.family`) whose training images ``arm``'s generator
    makes, from the arm table :data:`knee_tf.controls.arms.ARMS`: its own family and, for an arm that
    reuses another's mask values (:attr:`knee_tf.controls.arms.Arm.mask_values_of`: ``B_random``,
    ``B_keep``), that arm's family. family: {model name: registered arm or family} for names the
    table does not have (a grid variant ``B_n100`` -> ``"B"``); an unknown name is its own family."""
    base = (family or {}).get(arm, arm)
    a = ARMS.get(base)
    if a is None:
        return {base}
    out = {a.family or a.name}
    if a.mask_values_of:
        out.add(ARMS[a.mask_values_of].family or a.mask_values_of)
    return out


def in_distribution(arm: str, cohort: str, corruption: str | None = None,
                    family: Mapping[str, str] | None = None) -> bool:
    """Whether an arm's training generator made this condition's images (a gain there is by construction).

    True on a cohort made for one of the arm's :func:`generator_families`
    (:attr:`knee_tf.study.cohorts.Cohort.in_distribution_for`: the CAM cohorts for B's family, which
    includes every arm that reuses B's mask values) and on the held-out corruptions the arm trains on
    (:attr:`knee_tf.controls.arms.Arm.trains_on`: ``mri_aug``'s). family: see :func:`generator_families`.
    """
    families = generator_families(arm, family)
    if str(cohort) in COHORTS and families & set(COHORTS[str(cohort)].in_distribution_for):
        return True
    base = (family or {}).get(arm, arm)
    return base in ARMS and corruption is not None and str(corruption) in ARMS[base].trains_on


def condition_order(condition: Mapping) -> tuple:
    """Sort key of a condition ({cohort, corruption?, severity?}): the registered cohorts in
    :func:`knee_tf.study.cohorts.cohort_order`, then any other by name; within a cohort its own images
    first, then each corruption by severity."""
    cohorts = list(cohort_order())
    c = str(condition["cohort"])
    corruption = str(condition.get("corruption", NO_CORRUPTION))
    severity = condition.get("severity", 0)
    severity = 0 if severity is None or pd.isna(severity) else int(severity)
    return (cohorts.index(c) if c in cohorts else len(cohorts), c, corruption != NO_CORRUPTION, corruption, severity)


def _check(predictions: pd.DataFrame) -> pd.DataFrame:
    need = ["arm", "seed", "image_id", "patient_id", "y_true"]
    missing = [c for c in need if c not in predictions.columns]
    if "y_pred" not in predictions.columns and "p_relevant" not in predictions.columns:
        missing.append("y_pred or p_relevant")
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}")
    if predictions.empty:
        raise ValueError("predictions table is empty")
    df = predictions
    if "y_pred" not in df.columns:
        df = df.assign(y_pred=predicted_class(df["p_relevant"].to_numpy()))
    if not df["y_true"].isin([0, 1]).all():
        raise ValueError("predictions['y_true'] must be 0/1 class indices")
    return df


#: rate -> (numerator, denominator) among the per-(seed, patient) sums of :class:`_Sums` (slices n,
#: correct slices, relevant slices pos, correct relevant tp, correct irrelevant tn, neg = n - pos).
_NUM_DEN = {"accuracy": ("correct", "n"), "sensitivity": ("tp", "pos"), "specificity": ("tn", "neg")}


class _Sums:
    """Dense per-(arm, condition, seed, patient) sums of a predictions table, built in one pass.

    ``values[stat]``: float64 (arms, conditions, seeds, patients). Patients are the union over all
    conditions; a condition's own patients are those with slices in it.
    """

    def __init__(self, df: pd.DataFrame, keys: list[str]):
        arm_code, arms = pd.factorize(df["arm"].astype(str), sort=False)
        known = list(arm_names())  # the registered arms in their order, then any other (variants) by name
        order = sorted(range(len(arms)), key=lambda k: (known.index(arms[k]) if arms[k] in known else len(known),
                                                        arms[k]))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        arm_code, self.arms = rank[arm_code], pd.Index([arms[k] for k in order])
        cond_code = df.groupby(keys, sort=False, dropna=False, observed=True).ngroup().to_numpy()
        first = np.unique(cond_code, return_index=True)[1]  # codes count up in order of first appearance
        conditions = list(df[keys].iloc[first].itertuples(index=False, name=None))
        order = sorted(range(len(conditions)), key=lambda k: condition_order(dict(zip(keys, conditions[k], strict=True))))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        cond_code = rank[cond_code]  # conditions in the study's reading order
        self.conditions = [conditions[k] for k in order]
        seed_code, seeds = pd.factorize(df["seed"], sort=True)
        self.seeds = [int(x) for x in seeds]
        pat_code, self.patients = pd.factorize(df["patient_id"].astype(str), sort=True)
        self.shape = (len(self.arms), len(self.conditions), len(self.seeds), len(self.patients))
        flat = np.ravel_multi_index((arm_code, cond_code, seed_code, pat_code), self.shape)
        y = df["y_true"].to_numpy().astype(np.int64)
        hit = df["y_pred"].to_numpy().astype(np.int64) == y
        h = pd.util.hash_pandas_object(df["image_id"].astype(str), index=False).to_numpy()
        weights = {"n": None, "correct": hit, "pos": y, "tp": hit & (y == 1), "tn": hit & (y == 0),
                   # order-free fingerprint of which images (and labels) a seed was scored on
                   "images": (h % np.uint64(2**31)).astype(np.float64) * (1 + y)}
        size = int(np.prod(self.shape))
        self.values = {k: np.bincount(flat, weights=None if w is None else np.asarray(w, np.float64),
                                      minlength=size).reshape(self.shape) for k, w in weights.items()}
        self.values["neg"] = self.values["n"] - self.values["pos"]
        self.keys = keys

    def index(self, arm: str, condition: tuple) -> tuple[int, int]:
        return int(self.arms.get_loc(arm)), self.conditions.index(condition)

    def seeds_of(self, a: int, c: int) -> np.ndarray:
        return np.flatnonzero(self.values["n"][a, c].sum(axis=1) > 0)

    def matrices(self, a: int, c: int, seeds: np.ndarray, patients: np.ndarray,
                 metrics: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(numerators, denominators), float64 (len(metrics), S, P) each."""
        pick = np.ix_(seeds, patients)
        num = np.stack([self.values[_NUM_DEN[m][0]][a, c][pick] for m in metrics])
        den = np.stack([self.values[_NUM_DEN[m][1]][a, c][pick] for m in metrics])
        return num, den


def row_rng(seed: int, *parts) -> np.random.Generator:
    """The bootstrap generator of one table row: seeded by ``seed`` and the row's names, so a row's
    interval does not change when rows are added or removed."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(p).encode()) for p in parts])


def _per_seed_rates(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num.sum(axis=2) / den.sum(axis=2)  # (M, S)


def effects_table(predictions: pd.DataFrame, comparisons: Sequence[tuple[str, str]] | None = None, *,
                  metrics: Sequence[str] = METRICS, n_boot: int = 10_000, confidence: float = 0.95,
                  seed: int = 0, resample: Sequence[str] = RESAMPLE_LEVELS, alpha: float = 0.05,
                  family: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every arm against its reference on every condition: effect, interval and p from one two-level
    bootstrap, FDR within the plan's test families, and the exploratory sign-flip p.

    predictions: the per-image table (module docstring); comparisons: (arm, reference) pairs
    (default: every arm other than A against A); metrics: among :data:`METRICS`; n_boot, confidence:
    the bootstrap (:func:`two_level_bootstrap`; the draws are seeded by ``seed`` and the row's
    names, so a row does not change when others are added, and a row's metrics share one draw) and
    its interval (:func:`knee_tf.controls.effect_stats.bootstrap_inference`); alpha: the FDR level
    within each family (:func:`knee_tf.controls.families.family_fdr`); family: see :func:`in_distribution`.
    Arm and reference are paired on the seeds both have, and must have scored the same images
    (with the same labels) in each of them (else ValueError naming the condition and seed).
    Returns DataFrame with :data:`EFFECT_COLUMNS`, one row per comparison x condition x metric;
    effects and rates are fractions (0.012 = +1.2 points); ``n_images`` counts the slices per seed in
    the rate's denominator (all slices for accuracy, the relevant ones for sensitivity); ``se`` the
    standard deviation of the resampled effects; ``seeds_better`` the seeds in which the arm's rate
    is higher.
    """
    df = _check(predictions)
    keys = condition_keys(df)
    metrics = list(metrics)
    bad = sorted(set(metrics) - set(METRICS))
    if bad or not metrics:
        raise ValueError(f"metrics must be among {METRICS}; got {metrics}")
    sums = _Sums(df, keys)
    arms = list(sums.arms)
    if comparisons is None:
        comparisons = [(a, MODEL_A) for a in arms if a != MODEL_A]
    missing = sorted({a for pair in comparisons for a in pair} - set(arms))
    if missing:
        raise ValueError(f"arm(s) {missing} not in the predictions (have {arms})")
    rows = []
    for arm, ref in comparisons:
        for cond in sums.conditions:
            a, c = sums.index(arm, cond)
            r, _ = sums.index(ref, cond)
            seeds = np.intersect1d(sums.seeds_of(a, c), sums.seeds_of(r, c))
            if not seeds.size:
                continue
            cdict = dict(zip(keys, cond, strict=True))
            _check_paired(sums, a, r, c, seeds, f"{arm} and {ref}", cdict)
            patients = np.flatnonzero(sums.values["n"][a, c][seeds].sum(axis=0) > 0)
            num_a, den = sums.matrices(a, c, seeds, patients, metrics)
            num_r, _ = sums.matrices(r, c, seeds, patients, metrics)
            rng = row_rng(seed, arm, ref, *cond)
            points, boots = two_level_bootstrap(num_a, den, num_r, n_boot=n_boot, rng=rng, resample=resample)
            rate_a, rate_r = _per_seed_rates(num_a, den), _per_seed_rates(num_r, den)
            flag = in_distribution(arm, cdict["cohort"], cdict.get("corruption"), family)
            for k, metric in enumerate(metrics):
                inference = bootstrap_inference(float(points[k]), boots[k], int(seeds.size), confidence)
                p_flip, p_flip_min = sign_flip_test(rate_a[k] - rate_r[k], rng)
                rows.append({
                    "arm": arm, "reference": ref, **cdict, "metric": metric, "in_distribution": flag,
                    "n_seeds": int(seeds.size), "n_patients": int(patients.size),
                    "n_images": int(den[k].sum() / seeds.size),
                    "arm_mean": float(np.nanmean(rate_a[k])), "reference_mean": float(np.nanmean(rate_r[k])),
                    "effect": float(points[k]), **inference,
                    "seeds_better": int(np.sum(rate_a[k] > rate_r[k])), "p_sign_flip": p_flip,
                    "p_sign_flip_min": p_flip_min,
                })
    out = pd.DataFrame(rows, columns=[c for c in EFFECT_COLUMNS if c not in _FAMILY_COLUMNS])
    return family_fdr(out, alpha)[list(EFFECT_COLUMNS)]


def _check_paired(sums: _Sums, a: int, r: int, c: int, seeds: np.ndarray, what: str, cond: dict) -> None:
    for stat in ("n", "images"):
        va, vr = sums.values[stat][a, c][seeds], sums.values[stat][r, c][seeds]
        differ = np.flatnonzero((va != vr).any(axis=1))
        if differ.size:
            s = seeds[differ[0]]
            na, nr = int(sums.values["n"][a, c, s].sum()), int(sums.values["n"][r, c, s].sum())
            raise ValueError(f"{what} were not scored on the same images in {cond}, seed {sums.seeds[s]} "
                             f"({na} vs {nr} images)")


def arms_table(predictions: pd.DataFrame, *, n_boot: int = 10_000, confidence: float = 0.95, seed: int = 0,
               ece_bins: int = 15, resample: Sequence[str] = RESAMPLE_LEVELS,
               family: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per arm and condition: accuracy (two-level interval), sensitivity, specificity and ECE across seeds.

    The accuracy interval is read off the two-level bootstrap as the effects' are
    (:func:`knee_tf.controls.effect_stats.bootstrap_inference`: percentile with 10 or more seeds, t with
    fewer; column ``interval_method``).
    Returns DataFrame (arm, *conditions, in_distribution, n_seeds, n_patients, n_images, accuracy,
    interval_method, accuracy_low, accuracy_high, accuracy_sd, sensitivity, sensitivity_sd, specificity,
    specificity_sd, ece, ece_sd): means over seeds, sd across seeds (NaN with one seed); ECE is
    :func:`knee_tf.study.evaluate.expected_calibration_error` (top label, ``ece_bins`` bins) per seed
    (computed for all groups at once, :func:`knee_tf.study.evaluate.grouped_calibration_errors`).
    """
    df = _check(predictions)
    if "p_relevant" not in df.columns:
        raise ValueError("predictions lack column 'p_relevant' (needed for ECE)")
    keys = condition_keys(df)
    sums = _Sums(df, keys)
    groups = ["arm", *keys, "seed"]
    grouped = df.groupby(groups, sort=False, dropna=False, observed=True)
    codes = grouped.ngroup().to_numpy()
    per_group = grouped_calibration_errors(df["p_relevant"].to_numpy(), df["y_true"].to_numpy(), codes, ece_bins)
    first = np.unique(codes, return_index=True)[1]
    ece = {(str(k[0]), *k[1:]): e for k, e in
           zip(df[groups].iloc[first].itertuples(index=False, name=None), per_group, strict=True)}
    rows = []
    for a, arm in enumerate(sums.arms):
        for c, cond in enumerate(sums.conditions):
            seeds = sums.seeds_of(a, c)
            if not seeds.size:
                continue
            cdict = dict(zip(keys, cond, strict=True))
            patients = np.flatnonzero(sums.values["n"][a, c][seeds].sum(axis=0) > 0)
            num, den = sums.matrices(a, c, seeds, patients, METRICS)
            per_seed = _per_seed_rates(num, den)
            point, boot = two_level_bootstrap(num[0], den[0], n_boot=n_boot, resample=resample,
                                              rng=row_rng(seed, arm, *cond))
            inference = bootstrap_inference(point, boot, int(seeds.size), confidence)
            e = np.array([ece[(arm, *cond, sums.seeds[s])] for s in seeds])
            row = {"arm": arm, **cdict, "in_distribution": in_distribution(arm, cdict["cohort"],
                                                                           cdict.get("corruption"), family),
                   "n_seeds": int(seeds.size), "n_patients": int(patients.size),
                   "n_images": int(den[0].sum() / seeds.size), "interval_method": inference["interval_method"],
                   "accuracy_low": inference["ci_low"], "accuracy_high": inference["ci_high"]}
            for k, metric in enumerate(METRICS):
                row[metric] = float(np.nanmean(per_seed[k]))
                row[f"{metric}_sd"] = float(np.nanstd(per_seed[k], ddof=1)) if seeds.size > 1 else float("nan")
            row["ece"] = float(e.mean())
            row["ece_sd"] = float(e.std(ddof=1)) if e.size > 1 else float("nan")
            rows.append(row)
    cols = ["arm", *keys, "in_distribution", "n_seeds", "n_patients", "n_images", "accuracy", "interval_method",
            "accuracy_low", "accuracy_high", "accuracy_sd", "sensitivity", "sensitivity_sd", "specificity", "specificity_sd",
            "ece", "ece_sd"]
    return pd.DataFrame(rows, columns=cols)

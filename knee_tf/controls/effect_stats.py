"""The statistics under the effects tables: a two-level bootstrap, the interval and the test read off it,
a sign-flip test across seeds (exploratory), and FDR control within test families.

Array level only: sums in, numbers out. :mod:`knee_tf.controls.effects` builds the per-(seed, patient)
sums from a predictions table and calls these functions once per table row. The rules are the
pre-registered analysis plan's (``docs/analysis_plan.md``).

**Two-level bootstrap** (Bouthillier et al. 2021; seeds and patients are both samples). Each of
``n_boot`` resamples draws seeds with replacement *and* patients with replacement (slices of one
exam are correlated, so whole patients are drawn), and recomputes the effect with per-seed rates
over the drawn patients. The test patients are the same for every seed (a crossed design), so one
patient draw is shared by all drawn seeds of a resample; arm and reference always share both draws
(a paired bootstrap). Resampling both is slightly conservative for a crossed design. All resamples
are computed at once as two matrix products (counts (B, P) @ per-(seed, patient) sums (P, S)).
``resample=("patient",)`` gives the patient-only interval for comparison (what the per-seed CIs of
:mod:`knee_tf.study.evaluate` do), ``("seed",)`` the seed-only one.

**Interval and test from the same resamples** (:func:`bootstrap_inference`). With
:data:`MIN_SEEDS_PERCENTILE` (10) or more seeds, or with one seed (patients only), the percentile
interval of the B resampled effects, taken as order statistics (the lower end the ⌈αB/2⌉-th
smallest, the upper the ⌈αB/2⌉-th largest), and ``p = min(1, 2 min(#{b <= 0}, #{b >= 0}) / B)``.
With 2 to 9 seeds a percentile interval over so few seeds is too narrow, so the interval is
studentized: ``effect ± t(S - 1, 1 - α/2) SE``, SE the standard deviation of the same resampled
effects, and ``p = 2 (1 - F_t(|effect| / SE; S - 1))``. Either way p is the interval inverted: the
1 - α interval excludes 0 exactly when p < α (:data:`PERCENTILE`, :data:`STUDENTIZED` name the method
in the tables).

**Sign-flip test across seeds** (exploratory, not used for any claim: it holds the patients fixed
while the interval resamples them). Under "arm X and its reference R are exchangeable" each
per-seed difference is as likely positive as negative: the test compares ``|mean_s d_s|`` with its
value under every one of the ``2**S`` sign patterns (exact up to 16 seeds; 20,000 random patterns
beyond); with S seeds no p-value can fall below ``2 / 2**S`` (0.0625 with 5 seeds).

**Multiple comparisons.** Benjamini-Hochberg (:func:`benjamini_hochberg`) within each test family of
the plan (:mod:`knee_tf.controls.families`), never over the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import t as student_t

#: What the two-level bootstrap can redraw.
RESAMPLE_LEVELS: tuple[str, ...] = ("seed", "patient")
#: Sign-flip test: enumerate every sign pattern up to this many seeds, else draw this many at random.
EXACT_SIGN_FLIP_MAX_SEEDS = 16
RANDOM_SIGN_FLIPS = 20_000
#: Fewest seeds for a percentile interval; with 2 to this many minus one seeds the interval is studentized.
MIN_SEEDS_PERCENTILE = 10
#: The interval methods (the ``interval_method`` column of the effects and arms tables).
PERCENTILE, STUDENTIZED = "percentile", "t"


def interval_method(n_seeds: int) -> str:
    """The interval method for a row of ``n_seeds`` seeds: :data:`STUDENTIZED` with 2 to
    ``MIN_SEEDS_PERCENTILE - 1`` seeds, else :data:`PERCENTILE` (one seed: patients only)."""
    return STUDENTIZED if 2 <= int(n_seeds) < MIN_SEEDS_PERCENTILE else PERCENTILE


def interval_description(n_seeds) -> str:
    """What the 95% intervals of rows with these ``n_seeds`` values are, in words for a title or a
    caption: a two-level bootstrap over seeds and patients (:func:`two_level_bootstrap`), read as a
    percentile interval (10 or more seeds) or a studentized t interval (2 to 9 seeds,
    :func:`bootstrap_inference`); with one seed (a one-seed ``make study``) patients alone, so that
    seed-to-seed variance is not in the interval."""
    seeds = sorted({int(s) for s in n_seeds})
    if not seeds or seeds[-1] <= 1:
        return "95% bootstrap percentile interval over patients only: 1 seed, so seed variance is not included"
    span = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
    methods = {interval_method(s) for s in seeds if s > 1}
    how = []
    if STUDENTIZED in methods:
        how.append(f"t interval (effect ± t·SE) with {MIN_SEEDS_PERCENTILE - 1} or fewer seeds"
                   if PERCENTILE in methods else "t interval, effect ± t·SE")
    if PERCENTILE in methods:
        how.append(f"percentile interval with {MIN_SEEDS_PERCENTILE} or more" if STUDENTIZED in methods
                   else "percentile interval")
    only = "; rows of 1 seed: patients only" if seeds[0] <= 1 else ""
    return f"95% two-level bootstrap, {span} seeds and their patients resampled: {', '.join(how)}{only}"


def method_summary(n_seeds) -> str:
    """The interval methods of rows with these ``n_seeds`` values, briefly, for a small figure's title:
    e.g. ``"t with 5 seeds, percentile with 10"``."""
    by = {}
    for s in sorted({int(s) for s in n_seeds}):
        by.setdefault(interval_method(s), []).append(str(s))
    return ", ".join(f"{m} with {'/'.join(seeds)} seed{'s' if seeds != ['1'] else ''}" for m, seeds in by.items())


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n`` units is drawn in each of ``n_boot`` resamples with replacement:
    float64 (n_boot, n), every row summing to n."""
    if n < 1:
        raise ValueError(f"need at least one unit to resample; got {n}")
    draws = rng.integers(0, n, size=(int(n_boot), n)) + n * np.arange(int(n_boot))[:, None]
    return np.bincount(draws.ravel(), minlength=int(n_boot) * n).reshape(int(n_boot), n).astype(np.float64)


def two_level_bootstrap(num_arm: np.ndarray, den: np.ndarray, num_ref: np.ndarray | None = None, *,
                        n_boot: int = 2000, rng: np.random.Generator,
                        resample: Sequence[str] = RESAMPLE_LEVELS) -> tuple:
    """The mean over seeds of ``rate_arm - rate_ref`` (or of ``rate_arm`` alone), and its bootstrap.

    num_arm, num_ref: float (S, P) per (seed, patient) sums of the rate's numerator (e.g. correct
    slices) for the arm and its reference, seeds paired by row; den: (S, P) the matching denominators
    (e.g. slices), the same for both (the same images). Several rates at once: (M, S, P) each, all
    resampled with the same draws. resample: which of ``("seed", "patient")`` are redrawn (the
    others are kept as they are). A seed whose denominator sum is 0 in a resample is left out of
    that resample's mean.
    Returns (estimate on the data: float, or (M,); resampled estimates: float64 (n_boot,), or
    (M, n_boot); NaN where no seed had data).
    """
    num_arm = np.asarray(num_arm, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    single = num_arm.ndim == 2
    if num_arm.ndim not in (2, 3) or num_arm.shape != den.shape:
        raise ValueError(f"num_arm {num_arm.shape} and den {den.shape} must be (seeds, patients) alike "
                         "(or (rates, seeds, patients))")
    if num_ref is not None:
        num_ref = np.asarray(num_ref, dtype=np.float64)
        if num_ref.shape != den.shape:
            raise ValueError(f"num_ref {num_ref.shape} must match den {den.shape}")
    bad = sorted(set(resample) - set(RESAMPLE_LEVELS))
    if bad:
        raise ValueError(f"resample levels must be among {RESAMPLE_LEVELS}; got {bad}")
    if single:
        num_arm, den = num_arm[None], den[None]
        num_ref = None if num_ref is None else num_ref[None]
    m, s, p = den.shape
    parts = [num_arm, den] + ([num_ref] if num_ref is not None else [])
    stacked = np.concatenate([x.reshape(m * s, p) for x in parts]).T  # (P, parts * M * S)

    def estimate(w_p: np.ndarray, w_s: np.ndarray) -> np.ndarray:  # (B, P), (B, S) -> (B, M)
        sums = (w_p @ stacked).reshape(len(w_p), len(parts), m, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = sums[:, 1] > 0
            diff = np.where(ok, sums[:, 0] / sums[:, 1], 0.0)
            if num_ref is not None:
                diff = diff - np.where(ok, sums[:, 2] / sums[:, 1], 0.0)
            w = np.where(ok, w_s[:, None, :], 0.0)
            return (diff * w).sum(axis=2) / w.sum(axis=2)

    point = estimate(np.ones((1, p)), np.ones((1, s)))[0]
    w_p = resample_counts(p, n_boot, rng) if "patient" in resample else np.ones((int(n_boot), p))
    w_s = resample_counts(s, n_boot, rng) if "seed" in resample else np.ones((int(n_boot), s))
    boot = estimate(w_p, w_s).T
    return (float(point[0]), boot[0]) if single else (point, boot)


def percentile_interval(boot: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap estimates (NaNs ignored; NaN, NaN when all are NaN)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    b = np.asarray(boot, dtype=np.float64)
    b = b[np.isfinite(b)]
    if b.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(b, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def bootstrap_inference(estimate: float, boot, n_seeds: int, confidence: float = 0.95) -> dict:
    """The interval and the p-value of "the effect is 0" from one row's bootstrap (module docstring).

    estimate: the effect on the data; boot: float (B,) its resampled values (NaNs, resamples without
    data, are left out); n_seeds: the row's seeds S (:func:`interval_method` picks the method).
    Returns {"ci_low", "ci_high", "se" (sd of the resamples), "p", "interval_method"}, with
    ``p < 1 - confidence`` exactly when the interval excludes 0 (NaNs when no resample has data).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    alpha = round(1.0 - confidence, 12)
    method = interval_method(n_seeds)
    b = np.asarray(boot, dtype=np.float64)
    b = b[np.isfinite(b)]
    nan = float("nan")
    if b.size == 0 or not np.isfinite(estimate):
        return {"ci_low": nan, "ci_high": nan, "se": nan, "p": nan, "interval_method": method}
    se = float(b.std(ddof=1)) if b.size > 1 else 0.0
    if method == PERCENTILE:
        # the largest count k < alpha B / 2: 0 lies outside [b_(k), b_(B-1-k)] exactly when fewer than
        # alpha B / 2 resamples fall on one side of it, i.e. when p below is < alpha
        k = max(int(np.ceil(alpha * b.size / 2 - 1e-9)) - 1, 0)
        ordered = np.sort(b)
        lo, hi = float(ordered[k]), float(ordered[b.size - 1 - k])
        tail = min(int(np.sum(b <= 0)), int(np.sum(b >= 0)))
        p = min(1.0, 2.0 * tail / b.size)
    else:
        df = int(n_seeds) - 1
        half = float(student_t.ppf(1 - alpha / 2, df)) * se
        lo, hi = float(estimate) - half, float(estimate) + half
        if se > 0:
            p = float(min(1.0, 2.0 * student_t.sf(abs(float(estimate)) / se, df)))
        else:  # no spread at all: the interval is the point
            p = 1.0 if estimate == 0 else 0.0
    return {"ci_low": lo, "ci_high": hi, "se": se, "p": p, "interval_method": method}


def excludes_zero(ci_low, ci_high) -> np.ndarray:
    """Whether intervals lie wholly above or wholly below 0 (bool, elementwise; False for NaN)."""
    lo, hi = np.asarray(ci_low, dtype=np.float64), np.asarray(ci_high, dtype=np.float64)
    return (lo > 0) | (hi < 0)


def sign_flip_test(differences, rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Two-sided sign-flip permutation test of "the mean per-seed difference is 0".

    differences: float (S,), one paired difference per seed. Every sign pattern is enumerated up to
    :data:`EXACT_SIGN_FLIP_MAX_SEEDS` seeds (the observed pattern included, so p >= 2 / 2**S);
    beyond, :data:`RANDOM_SIGN_FLIPS` random patterns (rng required) with the usual +1 correction.
    Returns (p-value, the smallest p-value attainable with S seeds).
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    s = d.size
    if s == 0:
        return float("nan"), float("nan")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, np.abs(d).max())
    if s <= EXACT_SIGN_FLIP_MAX_SEEDS:
        signs = 1 - 2 * ((np.arange(2**s)[:, None] >> np.arange(s)[None, :]) & 1)
        stats = np.abs(signs @ d) / s
        return float(np.mean(stats >= observed - tol)), float(2.0 / 2**s)
    if rng is None:
        raise ValueError(f"{s} seeds: more than {EXACT_SIGN_FLIP_MAX_SEEDS} needs an rng for random sign flips")
    signs = rng.choice((-1.0, 1.0), size=(RANDOM_SIGN_FLIPS, s))
    stats = np.abs(signs @ d) / s
    return float((1 + np.sum(stats >= observed - tol)) / (RANDOM_SIGN_FLIPS + 1)), 1.0 / (RANDOM_SIGN_FLIPS + 1)


def benjamini_hochberg(pvalues, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR control over every finite p-value given (NaNs are not comparisons).

    Returns (adjusted p-values float64 (m,) in the input order, NaN where the input is NaN; bool
    (m,) rejected at FDR ``alpha``). The adjusted p of the i-th smallest of m p-values is
    ``min_{k >= i} p_(k) * m / k``, capped at 1.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D; got shape {p.shape}")
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    q = np.full(p.shape, np.nan)
    m = int(ok.sum())
    if m:
        order = np.argsort(p[ok], kind="stable")
        ranked = p[ok][order] * m / np.arange(1, m + 1)
        adj = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
        out = np.empty(m)
        out[order] = adj
        q[ok] = out
    return q, np.where(ok, q <= alpha, False)

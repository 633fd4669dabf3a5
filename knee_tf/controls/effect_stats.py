"""The statistics under the effects tables: a two-level bootstrap, a sign-flip test across seeds, and FDR control.

Array level only: sums in, numbers out. :mod:`knee_tf.controls.effects` builds the per-(seed, patient)
sums from a predictions table and calls these functions once per table row.

**Two-level bootstrap** (Bouthillier et al. 2021; seeds and patients are both samples). Each of
``n_boot`` resamples draws seeds with replacement *and* patients with replacement (slices of one
exam are correlated, so whole patients are drawn), and recomputes the effect with per-seed rates
over the drawn patients. The test patients are the same for every seed (a crossed design), so one
patient draw is shared by all drawn seeds of a resample; arm and reference always share both draws
(a paired bootstrap). Resampling both is slightly conservative for a crossed design. All resamples
are computed at once as two matrix products (counts (B, P) @ per-(seed, patient) sums (P, S)).
``resample=("patient",)`` gives the patient-only interval for comparison (what the per-seed CIs of
:mod:`knee_tf.study.evaluate` do), ``("seed",)`` the seed-only one.

**Permutation check across seeds.** Under "arm X and its reference R are exchangeable" each per-seed difference is as
likely positive as negative: the sign-flip test compares ``|mean_s d_s|`` with its value under every
one of the ``2**S`` sign patterns (exact up to 16 seeds; 20,000 random patterns beyond). It backs the
bootstrap with an assumption-free p-value; with S seeds no p-value can fall below ``2 / 2**S``
(column ``p_min``): 0.0625 with 5 seeds, which is why an effect needs about 10 seeds to be testable.

**Multiple comparisons.** Benjamini-Hochberg (:func:`benjamini_hochberg`) over every row of the effects
table (every arm x condition x metric); the table says how many comparisons that is
(``n_comparisons``) and gives the adjusted p-value (``q_bh``) and the verdict at the FDR level ``alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: What the two-level bootstrap can redraw.
RESAMPLE_LEVELS: tuple[str, ...] = ("seed", "patient")
#: Sign-flip test: enumerate every sign pattern up to this many seeds, else draw this many at random.
EXACT_SIGN_FLIP_MAX_SEEDS = 16
RANDOM_SIGN_FLIPS = 20_000


def interval_description(n_seeds) -> str:
    """What the 95% intervals of effects rows with these ``n_seeds`` values resample, in words for a
    title or a caption: seeds and patients (:func:`two_level_bootstrap`), or, with one seed (a
    one-seed ``make study``), patients alone, so that seed-to-seed variance is not in the interval."""
    seeds = sorted({int(s) for s in n_seeds})
    if not seeds or seeds[-1] <= 1:
        return "95% bootstrap interval over patients only: 1 seed, so seed variance is not included"
    span = f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"{seeds[0]}"
    only = "; rows of 1 seed: patients only" if seeds[0] <= 1 else ""
    return f"95% two-level bootstrap interval: {span} seeds and their patients resampled{only}"


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

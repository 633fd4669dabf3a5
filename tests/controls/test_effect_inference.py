"""The interval, its p-value and the test families of the analysis plan (docs/analysis_plan.md):
knee_tf.controls.effect_stats.bootstrap_inference on constructed data with a known answer, p < 0.05 exactly
when the 95% interval excludes 0, and Benjamini-Hochberg within each family only
(knee_tf.controls.families)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from knee_tf.controls import effect_stats, effects, families
from knee_tf.core.vocab import A_STEPS, B_RANDOM, MODEL_A, MODEL_B, NORMAL

ROOT = Path(__file__).resolve().parents[2]


def constructed_counts(differences, n_patients=4, slices=100):
    """Per (seed, patient) correct-slice counts where every patient of a seed has the same rates:
    reference 0.5, arm 0.5 + differences[s]. Resampling patients then changes nothing, so the
    two-level bootstrap is the bootstrap of the mean of the per-seed differences."""
    d = np.asarray(differences, dtype=np.float64)
    den = np.full((d.size, n_patients), float(slices))
    return den * (0.5 + d[:, None]), den * 0.5, den


# ----------------------------------------------------------------------------- known answers


def test_studentized_interval_of_five_seeds_is_effect_plus_minus_t_times_the_bootstrap_sd():
    # the bootstrap of a mean of S values has sd sqrt(population variance / S); here 0.0063246
    d = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    num_a, num_r, den = constructed_counts(d)
    point, boot = effect_stats.two_level_bootstrap(num_a, den, num_r, n_boot=40_000, rng=np.random.default_rng(0))
    r = effect_stats.bootstrap_inference(point, boot, n_seeds=5)
    se = np.sqrt(d.var() / d.size)
    t975 = student_t.ppf(0.975, 4)  # 2.776
    assert point == pytest.approx(0.03)
    assert r["interval_method"] == "t" and r["se"] == pytest.approx(se, rel=0.02)
    assert r["ci_low"] == pytest.approx(0.03 - t975 * se, abs=3e-4)
    assert r["ci_high"] == pytest.approx(0.03 + t975 * se, abs=3e-4)
    assert r["ci_high"] - point == pytest.approx(point - r["ci_low"])  # symmetric about the effect
    assert r["p"] == pytest.approx(2 * student_t.sf(0.03 / se, 4), rel=0.05)  # about 0.009
    # the same numbers read as a percentile interval would be narrower: what the t interval corrects
    lo, hi = effect_stats.percentile_interval(boot)
    assert hi - lo < r["ci_high"] - r["ci_low"]


def test_percentile_interval_is_a_pair_of_order_statistics_and_p_counts_the_resamples_beyond_zero():
    rng = np.random.default_rng(1)
    boot = rng.permutation(np.arange(1, 10_001, dtype=np.float64))
    r = effect_stats.bootstrap_inference(5000.0, boot, n_seeds=10)
    assert r["interval_method"] == "percentile"
    assert (r["ci_low"], r["ci_high"]) == (250.0, 9751.0)  # the 250th smallest and the 250th largest of 10,000
    assert r["p"] == 0.0  # no resample at or below zero
    # 250 of 10,000 resamples at or below zero: p = 0.05 exactly, and the interval reaches zero
    r = effect_stats.bootstrap_inference(1.0, boot - 250, n_seeds=12)
    assert r["p"] == pytest.approx(0.05) and r["ci_low"] == 0.0
    # 249 below zero: p = 0.0498 < 0.05, and the interval excludes zero
    r = effect_stats.bootstrap_inference(1.0, boot - 249.5, n_seeds=12)
    assert r["p"] == pytest.approx(0.0498) and r["ci_low"] == 0.5
    # NaN resamples (no seed with data) are left out; no resample at all gives NaNs
    r = effect_stats.bootstrap_inference(1.0, np.r_[boot, np.nan], n_seeds=10)
    assert (r["ci_low"], r["ci_high"]) == (250.0, 9751.0)
    assert np.isnan(effect_stats.bootstrap_inference(1.0, [np.nan], n_seeds=10)["p"])


def test_the_method_follows_the_number_of_seeds():
    assert [effect_stats.interval_method(s) for s in (1, 2, 5, 9, 10, 20)] == [
        "percentile", "t", "t", "t", "percentile", "percentile"]
    assert "t interval" in effect_stats.interval_description([5])
    assert "percentile" in effect_stats.interval_description([10]) and "t interval" not in \
        effect_stats.interval_description([10])
    both = effect_stats.interval_description([5, 10])
    assert "t interval" in both and "percentile" in both and "5–10 seeds" in both
    assert "patients only" in effect_stats.interval_description([1])
    assert effect_stats.method_summary([5, 10, 5]) == "t with 5 seeds, percentile with 10 seeds"
    # a studentized interval without any spread is the point itself
    r = effect_stats.bootstrap_inference(0.25, np.full(100, 0.25), n_seeds=5)
    assert (r["ci_low"], r["ci_high"], r["se"], r["p"]) == (0.25, 0.25, 0.0, 0.0)
    assert effect_stats.bootstrap_inference(0.0, np.zeros(100), n_seeds=5)["p"] == 1.0


# ----------------------------------------------------------------------------- the test is the interval inverted


@pytest.mark.parametrize("n_seeds", [3, 5, 9, 10, 12])
def test_p_below_005_exactly_when_the_95_interval_excludes_zero(n_seeds):
    from test_effects import simulate_counts

    outcomes = []
    for r in range(60):
        rng = np.random.default_rng(100 * n_seeds + r)
        delta = (r % 6) * 0.15  # from no effect to a clear one
        num_a, num_r, den = simulate_counts(rng, n_seeds=n_seeds, n_patients=25, delta=delta)
        point, boot = effect_stats.two_level_bootstrap(num_a, den, num_r, n_boot=1000, rng=rng)
        res = effect_stats.bootstrap_inference(point, boot, n_seeds)
        excludes = bool(effect_stats.excludes_zero(res["ci_low"], res["ci_high"]))
        assert (res["p"] < 0.05) == excludes, (r, res)
        assert res["interval_method"] == ("t" if n_seeds < 10 else "percentile")
        outcomes.append(excludes)
    assert any(outcomes) and not all(outcomes)  # both outcomes occur: the check is not vacuous


def test_effects_table_rows_agree_with_themselves():
    from test_effects import simulate_predictions

    rng = np.random.default_rng(5)
    df = pd.concat([simulate_predictions(rng, {MODEL_A: 0.0, MODEL_B: 0.5, A_STEPS: 0.1}, n_seeds=s, cohort=c)
                    .assign(seed=lambda x, s=s: x["seed"] + 100 * s)  # seeds of the two sizes are different seeds
                    for s, c in ((5, NORMAL), (10, "metal"))], ignore_index=True)
    t = effects.effects_table(df, n_boot=600)
    assert set(t["interval_method"]) == {"t", "percentile"}
    assert ((t["p"] < 0.05) == effect_stats.excludes_zero(t["ci_low"], t["ci_high"])).all()
    assert (t["interval_method"] == np.where(t["n_seeds"] < 10, "t", "percentile")).all()


# ----------------------------------------------------------------------------- families


def plan_tables() -> dict[str, set[tuple[str, str, str]]]:
    """The primary and secondary tests named in docs/analysis_plan.md's two tables."""
    text = (ROOT / "docs" / "analysis_plan.md").read_text()
    out = {}
    for family, start, end in (("primary", "**Primary family**", "**Secondary family**"),
                               ("secondary", "**Secondary family**", "**Exploratory**")):
        section = text[text.index(start):text.index(end)]
        tests = set()
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            pairs = re.findall(r"`(\w+)` − `(\w+)`", line)
            if pairs:
                tests |= {(a, r, c.strip()) for a, r in pairs for c in cells[-1].split(",")}
        out[family] = tests
    return out


def test_the_families_are_the_analysis_plans():
    plan = plan_tables()
    for family in ("primary", "secondary"):
        coded = {(a, r, c) for a, r, cohorts in families.FAMILY_PLAN[family] for c in cohorts}
        assert coded == plan[family], family
    assert (families.family_size("primary"), families.family_size("secondary")) == (8, 16)
    assert families.row_family(MODEL_B, MODEL_A, NORMAL) == "primary"
    assert families.row_family(MODEL_B, MODEL_A, NORMAL, metric="sensitivity") == "exploratory"
    assert families.row_family(MODEL_B, MODEL_A, NORMAL, corruption="rician_noise") == "exploratory"
    assert families.row_family(B_RANDOM, MODEL_A, NORMAL) == "exploratory"  # another pair of arms


def test_benjamini_hochberg_runs_within_each_family_only():
    primary = [(MODEL_B, MODEL_A, c) for c in (NORMAL, "metal", "cam", "new_site")] + \
        [(MODEL_B, ref, c) for ref in (B_RANDOM, A_STEPS) for c in (NORMAL, "metal")]
    p_primary = [0.001, 0.01, 0.02, 0.03, 0.04, 0.2, 0.5, 0.9]
    rows = [dict(arm=a, reference=r, cohort=c, metric="accuracy", corruption="none", p=p)
            for (a, r, c), p in zip(primary, p_primary, strict=True)]
    rows += [dict(arm=MODEL_B, reference="erasing", cohort=NORMAL, metric="accuracy", corruption="none", p=0.02),
             dict(arm=MODEL_B, reference="B_keep", cohort="metal", metric="accuracy", corruption="none", p=0.03)]
    exploratory = [dict(arm=MODEL_B, reference=MODEL_A, cohort=NORMAL, metric="sensitivity", corruption="none", p=1e-6),
                   dict(arm=MODEL_B, reference=MODEL_A, cohort=NORMAL, metric="accuracy", corruption="bias_field",
                        p=1e-6),
                   dict(arm="erasing", reference=MODEL_A, cohort=NORMAL, metric="accuracy", corruption="none", p=1e-6)]
    out = families.family_fdr(pd.DataFrame(rows + exploratory * 50))
    prim = out[out["test_family"] == "primary"]
    # by hand: sorted p x 8 / rank = 0.008, 0.04, 0.0533, 0.06, 0.064, 0.2667, 0.5714, 0.9; then running minima from the top
    np.testing.assert_allclose(prim["q_bh"], [0.008, 0.04, 0.0533333, 0.06, 0.064, 0.2666667, 0.5714286, 0.9],
                               rtol=1e-6)
    assert prim["significant"].tolist() == [True, True, False, False, False, False, False, False]
    assert (prim["n_comparisons"] == 8).all()
    sec = out[out["test_family"] == "secondary"]
    np.testing.assert_allclose(sec["q_bh"], [0.03, 0.03])  # two secondary tests: x2/1 and x2/2, minimum from the top
    assert (sec["n_comparisons"] == 2).all() and sec["significant"].all()
    ex = out[out["test_family"] == "exploratory"]
    assert len(ex) == 150 and ex["q_bh"].isna().all() and not ex["significant"].any() and (ex["n_comparisons"] == 0).all()
    # the many tiny exploratory p-values change nothing in the families
    alone = families.family_fdr(pd.DataFrame(rows))
    np.testing.assert_array_equal(alone["q_bh"].to_numpy(), out["q_bh"].to_numpy()[:len(rows)])

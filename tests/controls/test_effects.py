"""knee_tf.controls.effects, effect_stats and families on synthetic predictions with known effects: coverage, power,
seed variance, the interval and its p-value, FDR within test families."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.controls import effect_stats, effects
from knee_tf.core.vocab import A_STEPS, MODEL_A, MODEL_B, MRI_AUG, NORMAL
from knee_tf.study.cohorts import CAM


def simulate_counts(rng, n_seeds=10, n_patients=40, slices=6, seed_sd=0.3, delta=0.0):
    """Per (seed, patient) correct-slice counts of an arm and its reference on the same slices.

    Slice difficulty = a patient effect (sd 1) + a slice effect (sd 0.5), shared by both arms; every
    (arm, seed) adds its own training-seed effect (sd ``seed_sd``, logit scale); the arm adds ``delta``.
    """
    difficulty = rng.normal(0, 1.0, n_patients)[:, None] + rng.normal(0, 0.5, (n_patients, slices))
    counts = []
    for d in (delta, 0.0):
        u = rng.normal(0, seed_sd, n_seeds)[:, None, None]
        p = 1 / (1 + np.exp(-(1.5 + difficulty[None] + u + d)))
        counts.append((rng.random(p.shape) < p).sum(axis=2).astype(float))
    return counts[0], counts[1], np.full((n_seeds, n_patients), float(slices))


def simulate_predictions(rng, arm_deltas: dict[str, float], cohort=NORMAL, n_seeds=10, n_patients=30, slices=5,
                         seed_sd=0.3, **constant) -> pd.DataFrame:
    """A predictions table (one row per arm, seed, image) with the given logit effects per arm."""
    n = n_patients * slices
    patient = np.repeat([f"P{k:03d}" for k in range(n_patients)], slices)
    difficulty = np.repeat(rng.normal(0, 1.0, n_patients), slices) + rng.normal(0, 0.5, n)
    y = rng.integers(0, 2, n)
    frames = []
    for arm, delta in arm_deltas.items():
        for s in range(n_seeds):
            p = 1 / (1 + np.exp(-(1.5 + difficulty + rng.normal(0, seed_sd) + delta)))
            correct = rng.random(n) < p
            y_pred = np.where(correct, y, 1 - y)
            frames.append(pd.DataFrame({"arm": arm, "seed": s, "cohort": cohort, **constant,
                                        "image_id": [f"{cohort}_{i}" for i in range(n)], "patient_id": patient,
                                        "y_true": y, "p_relevant": np.where(y_pred == 1, 0.8, 0.2)}))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- the bootstrap


@pytest.mark.parametrize("seed_sd", [0.3, 0.6])
def test_a_zero_effect_is_covered_at_least_at_the_nominal_rate(seed_sd):
    reps, covered, covered_patients_only = 300, 0, 0
    for r in range(reps):
        rng = np.random.default_rng(r)
        num_a, num_r, den = simulate_counts(rng, seed_sd=seed_sd)
        for levels in (("seed", "patient"), ("patient",)):
            _, boot = effect_stats.two_level_bootstrap(num_a, den, num_r, n_boot=400, rng=rng, resample=levels)
            lo, hi = effect_stats.percentile_interval(boot)
            hit = lo <= 0 <= hi
            covered += hit and len(levels) == 2
            covered_patients_only += hit and len(levels) == 1
    # nominal 95% (binomial sd over 300 reps: 1.3 points); resampling both factors of a crossed design
    # is a little conservative
    assert 0.92 <= covered / reps <= 0.995
    # leaving the seeds out is what the per-seed CIs did: it misses a null effect far too often
    assert covered_patients_only / reps < 0.8


def test_seed_variance_widens_the_interval_relative_to_patient_only_resampling():
    widths = {"both": [], "patient": []}
    for r in range(40):
        rng = np.random.default_rng(1000 + r)
        num_a, num_r, den = simulate_counts(rng, seed_sd=0.6)
        for name, levels in (("both", ("seed", "patient")), ("patient", ("patient",))):
            _, boot = effect_stats.two_level_bootstrap(num_a, den, num_r, n_boot=500, rng=rng, resample=levels)
            lo, hi = effect_stats.percentile_interval(boot)
            widths[name].append(hi - lo)
    assert np.mean(widths["both"]) > 2 * np.mean(widths["patient"])


def test_a_large_effect_is_detected():
    rng = np.random.default_rng(7)
    num_a, num_r, den = simulate_counts(rng, delta=1.0)
    point, boot = effect_stats.two_level_bootstrap(num_a, den, num_r, n_boot=2000, rng=rng)
    lo, hi = effect_stats.percentile_interval(boot)
    assert 0.05 < lo < point < hi
    d = num_a.sum(1) / den.sum(1) - num_r.sum(1) / den.sum(1)
    assert point == pytest.approx(d.mean())
    p, pmin = effect_stats.sign_flip_test(d)
    assert p == pmin == 2 / 2**10
    inference = effect_stats.bootstrap_inference(point, boot, 10)
    assert inference["interval_method"] == "percentile" and inference["p"] < 0.01 and inference["ci_low"] > 0.05


def test_bootstrap_checks_its_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="seeds, patients"):
        effect_stats.two_level_bootstrap(np.ones(3), np.ones(3), rng=rng)
    with pytest.raises(ValueError, match="resample"):
        effect_stats.two_level_bootstrap(np.ones((2, 3)), np.ones((2, 3)), rng=rng, resample=("exam",))
    _, boot = effect_stats.two_level_bootstrap(np.ones((2, 3)), np.ones((2, 3)), rng=rng, resample=(), n_boot=5)
    np.testing.assert_array_equal(boot, np.ones(5))  # nothing resampled: the estimate itself


# ----------------------------------------------------------------------------- permutation, FDR


def test_sign_flip_test_on_hand_worked_cases():
    assert effect_stats.sign_flip_test([0.1, 0.2, 0.3]) == (2 / 8, 2 / 8)  # only all + and all - are as extreme
    assert effect_stats.sign_flip_test([1.0, -1.0])[0] == 1.0
    # [0.3, 0.1, -0.1], observed |sum| 0.3; the 8 sums: +++ 0.3, ++- 0.5, +-+ 0.1, +-- 0.3, -++ -0.3,
    # -+- -0.1, --+ -0.5, --- -0.3: six reach 0.3 in size
    d = np.array([0.3, 0.1, -0.1])
    signs = np.array([[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)])
    expected = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    assert effect_stats.sign_flip_test(d)[0] == pytest.approx(expected) == pytest.approx(6 / 8)
    p, pmin = effect_stats.sign_flip_test(np.ones(20), rng=np.random.default_rng(0))
    assert p == pmin == pytest.approx(1 / 20_001)
    with pytest.raises(ValueError, match="rng"):
        effect_stats.sign_flip_test(np.ones(20))


def test_benjamini_hochberg_matches_a_hand_checked_example():
    # sorted: 0.005 (x4/1 = 0.02), 0.01 (x4/2 = 0.02), 0.03 (x4/3 = 0.04), 0.04 (x4/4 = 0.04)
    q, reject = effect_stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    np.testing.assert_allclose(q, [0.02, 0.04, 0.04, 0.02])
    assert reject.tolist() == [True, True, True, True]
    _, reject = effect_stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005], alpha=0.03)
    assert reject.tolist() == [True, False, False, True]
    # step-up: 0.04 at rank 2 of 2 passes (0.04 <= 0.05) and carries 0.045 (> 0.025) with it
    q, reject = effect_stats.benjamini_hochberg([0.045, 0.04], alpha=0.05)
    np.testing.assert_allclose(q, [0.045, 0.045])
    assert reject.all()
    q, reject = effect_stats.benjamini_hochberg([0.2, np.nan, 0.01])  # NaN: not a comparison
    np.testing.assert_allclose(q, [0.2, np.nan, 0.02])
    assert reject.tolist() == [False, False, True]
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).uniform(0, 0.2, 50)
    np.testing.assert_allclose(effect_stats.benjamini_hochberg(p)[0], multipletests(p, method="fdr_bh")[1])


# ----------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    deltas = {MODEL_A: 0.0, MODEL_B: 1.2, A_STEPS: 0.0}
    plain = [simulate_predictions(rng, deltas, cohort=c, corruption="none", severity=0) for c in (NORMAL, CAM)]
    noisy = simulate_predictions(rng, {**deltas, MRI_AUG: 0.0}, cohort=NORMAL, corruption="rician_noise", severity=3)
    return pd.concat(plain + [noisy], ignore_index=True)


def test_effects_table_pairs_seeds_and_flags_in_distribution_rows(predictions):
    t = effects.effects_table(predictions, n_boot=500)
    assert list(t.columns) == list(effects.EFFECT_COLUMNS)
    # 3 arms on the rician condition, 2 on each plain cohort; 3 metrics each
    assert len(t) == (2 + 2 + 3) * 3
    # of these, B - A accuracy on normal and cam images are tests of the primary family; the rest is exploratory
    tested = t[t["test_family"] == "primary"]
    assert sorted(tested["cohort"]) == sorted([NORMAL, CAM]) and (tested["metric"] == "accuracy").all()
    assert (tested["n_comparisons"] == 2).all() and tested["q_bh"].notna().all()
    rest = t[t["test_family"] != "primary"]
    assert (rest["test_family"] == "exploratory").all() and (rest["n_comparisons"] == 0).all()
    assert rest["q_bh"].isna().all() and not rest["significant"].any()
    assert (t["interval_method"] == "percentile").all()  # 10 seeds
    acc = t[t["metric"] == "accuracy"].set_index(["arm", "cohort", "corruption"])
    a = predictions[(predictions["arm"] == MODEL_A) & (predictions["cohort"] == NORMAL)
                    & (predictions["corruption"] == "none")]
    b = predictions[(predictions["arm"] == MODEL_B) & (predictions["cohort"] == NORMAL)
                    & (predictions["corruption"] == "none")]
    rate = {k: g.groupby("seed").apply(lambda d: np.mean((d["p_relevant"] > 0.5) == d["y_true"]),
                                       include_groups=False) for k, g in (("a", a), ("b", b))}
    row = acc.loc[(MODEL_B, NORMAL, "none")]
    assert row["effect"] == pytest.approx((rate["b"] - rate["a"]).mean())
    assert row["reference_mean"] == pytest.approx(rate["a"].mean())
    assert row["ci_low"] > 0 and row["significant"] and row["p"] < 0.01 and row["seeds_better"] >= 8
    assert row["p_sign_flip"] < 0.01
    assert (row["n_seeds"], row["n_patients"], row["n_images"]) == (10, 30, 150)
    null = acc.loc[(A_STEPS, NORMAL, "none")]
    assert null["ci_low"] < 0 < null["ci_high"]
    assert acc.loc[(MODEL_B, CAM, "none"), "in_distribution"]
    assert not acc.loc[(MODEL_B, NORMAL, "none"), "in_distribution"]
    assert not acc.loc[(A_STEPS, CAM, "none"), "in_distribution"]
    assert acc.loc[(MRI_AUG, NORMAL, "rician_noise"), "in_distribution"]
    # a row does not depend on which other rows are computed
    alone = effects.effects_table(predictions, [(MODEL_B, MODEL_A)], n_boot=500)
    one = alone[(alone["metric"] == "accuracy") & (alone["cohort"] == NORMAL) & (alone["corruption"] == "none")]
    assert one["ci_low"].item() == row["ci_low"] and one["ci_high"].item() == row["ci_high"]


def test_cam_is_in_distribution_for_every_arm_that_reuses_Bs_mask_values():
    """The CAM cohorts are made with B's transform and mask values, so they are in distribution for B,
    its ablations and the controls that move B's own masks (B_random, B_keep: Arm.mask_values_of in
    the arm table), and for no other arm."""
    from knee_tf.controls.arms import ARMS
    from knee_tf.core.vocab import B_KEEP, B_RANDOM, B_UNTRAINED, ERASING
    from knee_tf.study.cohorts import CAM_B, CAM_TRANSFER

    for cohort in (CAM, CAM_TRANSFER, CAM_B):
        flagged = {a for a in ARMS if effects.in_distribution(a, cohort)}
        assert {MODEL_B, B_RANDOM, B_KEEP, "B_pool1", "B_share2"} <= flagged, cohort
        assert not flagged & {MODEL_A, A_STEPS, ERASING, B_UNTRAINED, MRI_AUG}, cohort
        assert {a for a in ARMS if ARMS[a].mask_values_of == MODEL_B} == {B_RANDOM, B_KEEP}
    assert not effects.in_distribution(B_RANDOM, NORMAL) and not effects.in_distribution(B_KEEP, "metal")
    # a grid variant (model name not in the table) is flagged through the family map notebook 07 passes
    assert effects.in_distribution("B_random_n100", CAM, family={"B_random_n100": B_RANDOM})
    assert not effects.in_distribution("B_random_n100", CAM)


def test_ablation_arms_inherit_in_distribution_from_their_family(predictions):
    df = predictions.replace({"arm": {MODEL_B: "B_layer_pool2"}})
    t = effects.effects_table(df, [("B_layer_pool2", MODEL_A)], metrics=["accuracy"], n_boot=50,
                              family={"B_layer_pool2": MODEL_B})
    assert t.set_index("cohort").loc[CAM, "in_distribution"]


def test_effects_table_refuses_unpaired_images(predictions):
    df = predictions.copy()
    drop = df.index[(df["arm"] == MODEL_B) & (df["seed"] == 4) & (df["cohort"] == NORMAL)][:3]
    with pytest.raises(ValueError, match="not scored on the same images.*seed 4"):
        effects.effects_table(df.drop(drop), n_boot=10)
    with pytest.raises(ValueError, match="not in the predictions"):
        effects.effects_table(predictions, [("B_keep", MODEL_A)], n_boot=10)
    with pytest.raises(ValueError, match="patient_id"):
        effects.effects_table(predictions.drop(columns="patient_id"), n_boot=10)


def test_arms_table_reports_sensitivity_specificity_and_ece_per_arm_and_condition(predictions):
    t = effects.arms_table(predictions, n_boot=300)
    assert len(t) == 3 + 3 + 4
    row = t[(t["arm"] == MODEL_A) & (t["cohort"] == NORMAL) & (t["corruption"] == "none")].iloc[0]
    a = predictions[(predictions["arm"] == MODEL_A) & (predictions["cohort"] == NORMAL)
                    & (predictions["corruption"] == "none")]
    pos = a[a["y_true"] == 1]
    assert row["sensitivity"] == pytest.approx(pos.groupby("seed")["p_relevant"].apply(lambda p: (p > 0.5).mean()).mean())
    assert row["accuracy_low"] < row["accuracy"] < row["accuracy_high"]
    from knee_tf.study.evaluate import expected_calibration_error

    ece = [expected_calibration_error(g["p_relevant"].to_numpy(), g["y_true"].to_numpy(), 15) for _, g in a.groupby("seed")]
    assert row["ece"] == pytest.approx(np.mean(ece)) and row["ece_sd"] == pytest.approx(np.std(ece, ddof=1))


def test_effects_markdown_on_a_hand_made_table():
    from knee_tf.controls.markdown_tables import effects_markdown

    rows = [
        # arm, ref, cohort, corruption, severity, effect, lo, hi, significant, in_distribution
        ("B", "A", "normal", "none", 0, 0.002, -0.018, 0.022, False, False),
        ("B", "A", "cam", "none", 0, 0.015, 0.004, 0.026, True, True),
        ("B", "A", "normal", "rician_noise", 5, 0.078, 0.01, 0.14, True, False),
        ("B_random", "A", "normal", "none", 0, -0.004, -0.02, 0.012, False, False),
    ]
    t = pd.DataFrame(rows, columns=["arm", "reference", "cohort", "corruption", "severity", "effect", "ci_low",
                                    "ci_high", "significant", "in_distribution"])
    t = t.assign(metric="accuracy", n_seeds=10, n_comparisons=12, q_bh=0.01, test_family="primary")
    md = effects_markdown(t)
    assert md.splitlines()[:4] == [
        "| comparison | seeds | normal | cam |",
        "|---|---|---|---|",
        "| B − A | 10 | +0.2 [-1.8, +2.2] | +1.5 [+0.4, +2.6]* (in dist.) |",
        "| B_random − A | 10 | -0.4 [-2.0, +1.2] | — |",
    ]
    assert "primary 12 comparisons" in md and "percentile interval" in md and "p from inverting" in md
    assert "t interval" in effects_markdown(t.assign(n_seeds=5))
    md = effects_markdown(t, conditions=["rician_noise 5"], arms=["B"])
    assert md.splitlines()[2] == "| B − A | 10 | +7.8 [+1.0, +14.0]* |"
    with pytest.raises(ValueError, match="no rows for metric"):
        effects_markdown(t, metric="sensitivity")


def test_controls_markdown_groups_main_arms_ablations_and_the_rest():
    from knee_tf.controls.markdown_tables import controls_markdown

    rows = [(arm, ref, 0.01) for arm, ref in (("B_pool2", "A"), ("erasing", "A"), ("B", "A"), ("B", "erasing"),
                                              ("B_n25", "A_n25"))]
    t = pd.DataFrame(rows, columns=["arm", "reference", "effect"]).assign(
        cohort="normal", corruption="none", severity=0, ci_low=0.0, ci_high=0.02, significant=False,
        in_distribution=False, metric="accuracy", n_seeds=5, n_comparisons=5, q_bh=0.5, test_family="secondary")
    tables = controls_markdown(t)
    firsts = [[line.split(" | ")[0] for line in md.splitlines()[2:] if line.startswith("| ")] for md in tables]
    assert firsts == [["| B − A", "| B − erasing", "| erasing − A"], ["| B_pool2 − A"], ["| B_n25 − A_n25"]]
    assert len(controls_markdown(t[t["arm"] == "B"])) == 1  # groups without rows are left out


def test_arms_are_paired_on_the_seeds_both_have(predictions):
    few = predictions[~((predictions["arm"] == MODEL_B) & (predictions["seed"] >= 5))]
    t = effects.effects_table(few, [(MODEL_B, MODEL_A)], metrics=["accuracy"], n_boot=100)
    assert (t["n_seeds"] == 5).all() and (t["p_sign_flip_min"] == 2 / 2**5).all()
    assert (t["interval_method"] == "t").all()  # fewer than 10 seeds: studentized
    full = effects.effects_table(predictions, [(MODEL_B, MODEL_A)], metrics=["accuracy"], n_boot=100)
    assert (full["n_seeds"] == 10).all() and (full["interval_method"] == "percentile").all()
    assert not np.allclose(t["reference_mean"], full["reference_mean"])  # A's rate over B's five seeds only


def test_conditions_come_in_the_studys_reading_order(predictions):
    from knee_tf.core.vocab import METAL
    from knee_tf.study.cohorts import CAM_B

    conds = [{"cohort": CAM_B}, {"cohort": NORMAL, "corruption": "rician_noise", "severity": 2},
             {"cohort": "zz_site"}, {"cohort": CAM}, {"cohort": NORMAL, "corruption": "none", "severity": 0},
             {"cohort": METAL}, {"cohort": NORMAL, "corruption": "bias_field", "severity": 5}]
    ordered = sorted(conds, key=effects.condition_order)
    assert [(c["cohort"], c.get("corruption", "none")) for c in ordered] == [
        (NORMAL, "none"), (NORMAL, "bias_field"), (NORMAL, "rician_noise"), (METAL, "none"), (CAM, "none"),
        (CAM_B, "none"), ("zz_site", "none")]
    t = effects.effects_table(predictions.sort_values("cohort", ascending=False), [(MODEL_B, MODEL_A)],
                              metrics=["accuracy"], n_boot=10)
    assert list(zip(t["cohort"], t["corruption"], strict=True)) == [(NORMAL, "none"), (NORMAL, "rician_noise"),
                                                                   (CAM, "none")]


def test_arms_come_in_the_arm_tables_order_then_by_name(predictions):
    df = pd.concat([predictions.replace({"arm": {A_STEPS: "B_pool2"}}), predictions[predictions["arm"] == A_STEPS]])
    t = effects.arms_table(df.sort_values("arm", ascending=False), n_boot=10)
    assert list(dict.fromkeys(t["arm"])) == [MODEL_A, MODEL_B, A_STEPS, MRI_AUG, "B_pool2"]


def test_a_registered_cohort_is_ordered_and_flagged_from_its_entry():
    """A cohort's place in the tables and its in-distribution flags come from its one entry in
    knee_tf.study.cohorts.COHORTS (registered here for this test and removed afterwards)."""
    from knee_tf.study.cohorts import (
        CAM_B,
        COHORTS,
        OWN_MODEL_A,
        Cohort,
        maps_cohort,
        register_cohort,
    )

    register_cohort(Cohort("cam_pp", maps_cohort, OWN_MODEL_A, "Grad-CAM++ maps", in_distribution_for=(MODEL_B,)))
    try:
        assert effects.in_distribution("B_pool1", "cam_pp", family={"B_pool1": MODEL_B})
        assert not effects.in_distribution(A_STEPS, "cam_pp")
        conds = [{"cohort": "zz_site"}, {"cohort": "cam_pp"}, {"cohort": CAM_B}, {"cohort": NORMAL}]
        assert [c["cohort"] for c in sorted(conds, key=effects.condition_order)] == [NORMAL, CAM_B, "cam_pp", "zz_site"]
    finally:
        COHORTS.pop("cam_pp")
    assert not effects.in_distribution(MODEL_B, "cam_pp")

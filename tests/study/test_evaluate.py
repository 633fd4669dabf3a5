"""knee_tf.study.evaluate: CIs, McNemar and ECE against hand-computed values; the tidy tables."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest

from knee_tf.study import evaluate as ev
from knee_tf.study.cohorts import COHORTS
from knee_tf.study.report import paper_comparison_markdown

# ----------------------------------------------------------------------------- accuracy CI


def _binom_quantile(q: float, n: int, p: float) -> int:
    """Smallest k with P(K <= k) >= q, K ~ Binomial(n, p), from the pmf by hand."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += comb(n, k) * p**k * (1 - p) ** (n - k)
        if cdf >= q:
            return k
    return n


def test_percentile_ci_matches_the_binomial_bootstrap_distribution():
    # Resampling n outcomes with k correct gives K* ~ Binomial(n, k/n): the percentile interval
    # converges to the binomial quantiles / n.
    n, k = 40, 30
    correct = np.array([True] * k + [False] * (n - k))
    acc, low, high = ev.accuracy_ci(correct, n_boot=20000, seed=1)
    assert acc == 0.75
    assert low == pytest.approx(_binom_quantile(0.025, n, 0.75) / n, abs=1 / n + 1e-9)
    assert high == pytest.approx(_binom_quantile(0.975, n, 0.75) / n, abs=1 / n + 1e-9)
    assert low < acc < high


def test_ci_is_deterministic_for_a_seed_and_accepts_ints():
    correct = (np.arange(50) % 3 != 0).astype(int)
    assert ev.accuracy_ci(correct, n_boot=500, seed=3) == ev.accuracy_ci(correct, 500, seed=3)
    assert ev.accuracy_ci(correct, n_boot=500, seed=3) != ev.accuracy_ci(correct, 500, seed=4)
    acc, low, high = ev.accuracy_ci(correct, n_boot=500, method="BCa")
    assert low < acc < high


def test_degenerate_all_correct_or_all_wrong_gives_clopper_pearson():
    n = 10
    # Clopper-Pearson with k = n: lower = (alpha/2)^(1/n); with k = 0: upper = 1 - (alpha/2)^(1/n)
    acc, low, high = ev.accuracy_ci(np.ones(n, bool))
    assert (acc, high) == (1.0, 1.0)
    assert low == pytest.approx(0.025 ** (1 / n), rel=1e-9)
    acc, low, high = ev.accuracy_ci(np.zeros(n, bool))
    assert (acc, low) == (0.0, 0.0)
    assert high == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
    assert all(np.isfinite(ev.accuracy_ci([True])))


@pytest.mark.parametrize("bad", [[], [0, 2], [[1, 0]]])
def test_ci_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="correct"):
        ev.accuracy_ci(bad)


# ----------------------------------------------------------------------------- McNemar


def test_mcnemar_exact_hand_checked():
    # b = 1 (A right, B wrong), c = 9 (A wrong, B right), plus 5 concordant pairs
    a = np.array([1] + [0] * 9 + [1] * 3 + [0] * 2, bool)
    b = np.array([0] + [1] * 9 + [1] * 3 + [0] * 2, bool)
    res = ev.mcnemar_exact(a, b)
    expected = 2 * sum(comb(10, k) for k in range(2)) / 2**10
    assert (res["b"], res["c"], res["n"]) == (1, 9, 15)
    assert res["statistic"] == 1
    assert res["pvalue"] == pytest.approx(expected, rel=1e-12)


def test_mcnemar_symmetric_and_no_discordant_pairs():
    a = np.array([1, 1, 1, 0, 0, 0, 1, 1], bool)
    b = np.array([0, 0, 0, 1, 1, 1, 1, 1], bool)
    res = ev.mcnemar_exact(a, b)
    assert (res["b"], res["c"]) == (3, 3)
    assert res["pvalue"] == 1.0  # 2 * P(K <= 3 | n = 6) = 84/64, capped at 1
    same = ev.mcnemar_exact(a, a)
    assert (same["b"], same["c"], same["pvalue"]) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="paired"):
        ev.mcnemar_exact(a, b[:-1])


# ----------------------------------------------------------------------------- ECE


def test_ece_hand_built():
    p = np.array([0.9, 0.9, 0.38, 0.62])
    y = np.array([1, 0, 0, 1])
    # top-label confidences 0.9, 0.9, 0.62, 0.62; correct 1, 0, 1, 1
    # bin of 0.9: accuracy 0.5, gap 0.4; bin of 0.62: accuracy 1, gap 0.38; each holds half
    expected = 0.5 * 0.4 + 0.5 * 0.38
    assert ev.expected_calibration_error(p, y) == pytest.approx(expected)
    assert ev.expected_calibration_error(np.stack([1 - p, p], 1), y) == pytest.approx(expected)
    # positive-class reliability: p 0.9 -> frequency 0.5 (gap .4); 0.38 -> 0 (.38); 0.62 -> 1 (.38)
    pos = ev.expected_calibration_error(p, y, mode="positive_class")
    assert pos == pytest.approx(0.5 * 0.4 + 0.25 * 0.38 + 0.25 * 0.38)


def test_ece_zero_when_calibrated_and_one_bin_table():
    assert ev.expected_calibration_error([1.0, 0.0, 1.0], [1, 0, 1]) == 0.0
    assert ev.expected_calibration_error([0.0, 1.0], [1, 0]) == 1.0  # confidently wrong
    t = ev.calibration_bins([0.9, 0.9, 0.38, 0.62], [1, 0, 0, 1], n_bins=15)
    assert len(t) == 15 and t["n"].sum() == 4
    assert t["accuracy"].isna().sum() == 13  # empty bins: NaN, not 0


def test_ece_rejects_bad_probabilities():
    with pytest.raises(ValueError, match="sum to 1"):
        ev.expected_calibration_error(np.array([[0.5, 0.6]]), [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ev.expected_calibration_error([1.2], [1])


# ----------------------------------------------------------------------------- tables


def _predictions() -> pd.DataFrame:
    """A: 3/4 right on normal; B: 4/4 right on normal. Seeds 0 and 1; two planes."""
    meta = pd.DataFrame({"image_id": ["i0", "i1", "i2", "i3"],
                         "plane": ["axial", "axial", "sagittal", "sagittal"],
                         "site": ["s1", "s2", "s1", "s2"], "y_true": [1, 0, 1, 0]})
    frames = []
    for seed in (0, 1):
        pa = np.array([0.9, 0.2, 0.3, 0.1]) if seed == 0 else np.array([0.8, 0.7, 0.6, 0.6])
        pb = np.array([0.8, 0.1, 0.7, 0.2])
        frames.append(ev.prediction_frame(pa, meta, "A", seed, cohort="normal"))
        frames.append(ev.prediction_frame(np.stack([1 - pb, pb], 1), meta, "B", seed,
                                          cohort="normal"))
    return pd.concat(frames, ignore_index=True)


def test_prediction_frame_columns_and_labels():
    df = _predictions()
    assert list(df.columns) == list(ev.PREDICTION_COLUMNS)
    row = df[(df.model == "A") & (df.seed == 0)]
    assert row["y_pred"].tolist() == [1, 0, 0, 0]
    meta = pd.DataFrame({"image_id": ["x"], "label": ["relevant"]})
    assert ev.prediction_frame([0.3], meta, "A", 0, cohort="metal")["y_true"].tolist() == [1]


def test_cohort_metrics_by_hand():
    cm = ev.cohort_metrics(_predictions(), n_boot=200, ece_bins=15)
    assert list(cm.columns) == ["model", "cohort", "seed", *ev.METRIC_COLUMNS]
    acc = cm.set_index(["model", "seed"])["accuracy"]
    assert acc[("A", 0)] == 0.75 and acc[("A", 1)] == 0.5 and acc[("B", 0)] == 1.0
    assert (cm["n"] == 4).all()
    # B seed 0: confidences 0.8, 0.9, 0.7, 0.8, all right -> ECE = mean(1 - confidence)
    ece_b = cm[(cm.model == "B") & (cm.seed == 0)]["ece"].item()
    assert ece_b == pytest.approx(np.mean([0.2, 0.1, 0.3, 0.2]))
    plane = ev.cohort_metrics(_predictions(), breakdown="plane", n_boot=200, ece_bins=15)
    a0 = plane[(plane.model == "A") & (plane.seed == 0)].set_index("plane")["accuracy"]
    assert a0["axial"] == 1.0 and a0["sagittal"] == 0.5
    site = ev.cohort_metrics(_predictions(), breakdown="site", n_boot=200, ece_bins=15)
    assert set(site["site"]) == {"s1", "s2"} and (site["n"] == 2).all()


def test_duplicate_rows_are_rejected():
    df = _predictions()
    with pytest.raises(ValueError, match="duplicate"):
        ev.cohort_metrics(pd.concat([df, df.iloc[:1]]), n_boot=10, ece_bins=15)


def test_mcnemar_table_pairs_by_image_id():
    df = _predictions().sample(frac=1.0, random_state=0)  # row order must not matter
    t = ev.mcnemar_table(df)
    assert list(t[["cohort", "seed"]].itertuples(index=False, name=None)) == [("normal", 0),
                                                                               ("normal", 1)]
    s0 = t[t.seed == 0].iloc[0]
    assert (s0["b"], s0["c"], s0["n"]) == (0, 1, 4)
    assert s0["pvalue"] == 1.0  # 2 * P(K <= 0 | n = 1) = 1
    s1 = t[t.seed == 1].iloc[0]  # A wrong on i1, i3; B right everywhere
    assert (s1["b"], s1["c"]) == (0, 2) and s1["pvalue"] == pytest.approx(2 * 1 / 4)
    pairs = ev.paired_predictions(df)
    fig3 = pairs[~pairs.correct_a & pairs.correct_b]
    assert sorted(fig3["image_id"]) == ["i1", "i2", "i3"]


def test_unpaired_images_are_an_error():
    df = _predictions()
    df = df[~((df.model == "B") & (df.image_id == "i3"))]
    with pytest.raises(ValueError, match="only one model"):
        ev.mcnemar_table(df)


def test_summarize_seeds_mean_and_sd():
    m = pd.DataFrame({"model": "A", "cohort": "normal", "seed": [0, 1, 2],
                      "accuracy": [0.7, 0.8, 0.9], "ci_low": [0.6, 0.7, 0.8],
                      "ci_high": [0.8, 0.9, 1.0], "n": 10, "ece": [0.1, 0.1, 0.1]})
    s = ev.summarize_seeds(m).iloc[0]
    assert s["n_seeds"] == 3 and s["n"] == 10
    assert s["accuracy_mean"] == pytest.approx(0.8)
    assert s["accuracy_sd"] == pytest.approx(0.1)  # sample sd, ddof = 1
    assert s["ci_low_mean"] == pytest.approx(0.7) and s["ece_sd"] == pytest.approx(0.0)
    one = ev.summarize_seeds(m.iloc[:1]).iloc[0]
    assert np.isnan(one["accuracy_sd"])


def test_paper_comparison_reports_measured_numbers_honestly():
    rows = []
    for model, acc in (("A", 0.9), ("B", 0.8)):  # B worse than A here
        rows.append({"model": model, "cohort": "normal", "seed": 0, "accuracy": acc,
                     "ci_low": acc - 0.05, "ci_high": acc + 0.05, "n": 100, "ece": 0.05})
    summary = ev.summarize_seeds(pd.DataFrame(rows))
    mcn = pd.DataFrame([{"cohort": "normal", "seed": 0, "n": 100, "accuracy_a": 0.9,
                         "accuracy_b": 0.8, "b": 15, "c": 5, "statistic": 5, "pvalue": 0.04}])
    md = paper_comparison_markdown(summary, mcn)
    normal = next(line for line in md.splitlines() if line.startswith("| normal"))
    pa, pb = COHORTS["normal"].paper_accuracy
    assert f"{100 * pa:.1f}%" in normal and f"{100 * pb:.1f}%" in normal
    assert "90.0% [85.0, 95.0]" in normal and "80.0% [75.0, 85.0]" in normal
    assert "-10.0 pts" in normal and "| no |" in normal and "B worse" in normal
    metal = next(line for line in md.splitlines() if line.startswith("| metal"))
    assert "not run" in metal
    no_test = paper_comparison_markdown(summary)
    assert "CIs" in next(line for line in no_test.splitlines() if line.startswith("| normal"))


def test_severity_table_columns_and_values():
    meta = pd.DataFrame({"image_id": ["a", "b"], "y_true": [1, 0]})
    frames = [ev.prediction_frame([0.9, 0.2 + 0.2 * s], meta, "A", 0,
                                  corruption="rician_noise", severity=s) for s in (1, 2)]
    t = ev.severity_table(pd.concat(frames, ignore_index=True), n_boot=100, ece_bins=15)
    assert list(t.columns[:8]) == ["model", "corruption", "severity", "seed", "accuracy",
                                   "ci_low", "ci_high", "n"]
    assert t.set_index("severity")["accuracy"].to_dict() == {1: 1.0, 2: 0.5}


def test_grouped_calibration_errors_equal_the_per_group_ece():
    from knee_tf.study.evaluate import expected_calibration_error, grouped_calibration_errors

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 3000)
    y = (rng.uniform(0, 1, 3000) < p).astype(int)
    g = rng.integers(0, 7, 3000)
    g[g == 5] = 6  # code 5 has no rows
    got = grouped_calibration_errors(p, y, g, n_bins=15)
    for k in (0, 1, 2, 3, 4, 6):
        assert got[k] == pytest.approx(expected_calibration_error(p[g == k], y[g == k], 15), abs=1e-12)
    assert np.isnan(got[5])

"""Notebook 07's figures from synthetic tables: forest plot, ablations, learning curve, prescription."""

from __future__ import annotations

import os
import shutil

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_effects import simulate_predictions  # noqa: E402

from knee_tf.controls import figures  # noqa: E402
from knee_tf.controls.effects import arms_table, effects_table  # noqa: E402
from knee_tf.controls.prescription import prescription_table  # noqa: E402
from knee_tf.core.vocab import A_STEPS, B_RANDOM, METAL, MODEL_A, MODEL_B, NORMAL  # noqa: E402
from knee_tf.study import plots  # noqa: E402
from knee_tf.study.cohorts import CAM  # noqa: E402

DELTAS = {MODEL_A: 0.0, MODEL_B: 0.6, A_STEPS: 0.1, B_RANDOM: 0.5, "B_layer_pool1": -0.2, "B_layer_pool2": 0.2,
          "A_n25": -1.0, "B_n25": -0.6}


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    frames = [simulate_predictions(rng, DELTAS, cohort=c, n_seeds=5, corruption="none", severity=0)
              for c in (NORMAL, METAL, CAM)]
    df = pd.concat(frames, ignore_index=True)
    # hand-made slice order: every patient's 5 slices form one exam-plane
    df["exam_id"] = df["patient_id"]
    df["plane"] = "p"
    df["slice_rank"] = df["image_id"].str.split("_").str[-1].astype(int) % 5
    comparisons = [(a, MODEL_A) for a in DELTAS if a not in (MODEL_A, "B_n25")] + [("B_n25", "A_n25")]
    return (effects_table(df, comparisons, n_boot=200), arms_table(df, n_boot=200),
            prescription_table(df, n_boot=200))


def test_forest_ablation_learning_curve_and_prescription_figures(tables, tmp_path):
    effects, arms, presc = tables
    figs = {
        "forest": figures.plot_forest(effects, arms=[A_STEPS, MODEL_B, B_RANDOM]),
        "ablation": figures.plot_ablations(effects, {"layer": [("B_layer_pool1", "pool1"), ("B_layer_pool2", "pool2"),
                                                             (MODEL_B, "pool4")]}),
        "curve": figures.plot_learning_curve(arms, {"A": [("A_n25", 25), (MODEL_A, 359)],
                                                  "B": [("B_n25", 25), (MODEL_B, 359)]}),
        "prescription": figures.plot_prescription(presc, arms=[MODEL_A, MODEL_B, B_RANDOM]),
    }
    assert len(figs["forest"].axes) == 3  # normal, metal, cam
    assert [a.get_title() for a in figs["forest"].axes] == [NORMAL, METAL, CAM]
    assert len(figs["curve"].axes[0].lines) == 2
    for name, fig in figs.items():
        path = plots.savefig(fig, name, tmp_path, close=True)
        if os.environ.get("KNEE_TF_FIGURES_TO"):  # to look at them: KNEE_TF_FIGURES_TO=DIR pytest ...
            shutil.copy(path, os.environ["KNEE_TF_FIGURES_TO"])
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_condition_labels():
    assert figures.condition_label({"cohort": NORMAL, "corruption": "none", "severity": 0}) == NORMAL
    assert figures.condition_label({"cohort": NORMAL, "corruption": "rician_noise", "severity": 3}) == "rician_noise 3"
    assert figures.condition_label({"cohort": CAM}) == CAM


def test_prescription_figure_of_a_full_grid_stays_readable(tmp_path):
    """Twenty-one arms on four cohorts: one row per cohort, not one row of 84 groups (5328 x 443 px)."""
    arms = [f"arm{k}" for k in range(21)]
    cohorts = [NORMAL, METAL, CAM, "new_site"]
    rows = [{"arm": a, "cohort": c, "corruption": "none", "severity": 0, "slice_accuracy": 0.9, "all_right": 0.4,
             "jaccard": 0.8, "range_within_one": 0.7} for a in arms for c in cohorts]
    fig = figures.plot_prescription(pd.DataFrame(rows))
    width, height = fig.get_size_inches()
    assert [ax.get_ylabel() for ax in fig.axes] == [f"{c} (%)" for c in cohorts]
    assert 0.5 <= width / height <= 2.5, (width, height)
    assert plots.savefig(fig, "prescription_21", tmp_path, close=True).stat().st_size > 5000


def test_forest_axis_fits_the_intervals_drawn_not_the_rows_left_out(tables):
    effects = tables[0].copy()
    far = effects.iloc[[0]].assign(corruption="rician_noise", severity=5, effect=-0.5, ci_low=-0.6, ci_high=-0.4)
    fig = figures.plot_forest(pd.concat([effects, far], ignore_index=True), arms=[A_STEPS, MODEL_B, B_RANDOM])
    shown = effects[(effects["metric"] == "accuracy") & effects["arm"].isin([A_STEPS, MODEL_B, B_RANDOM])]
    widest = 100 * np.abs(shown[["ci_low", "ci_high"]].to_numpy()).max()
    low, high = fig.axes[0].get_xlim()
    assert high == -low and widest < high < 1.5 * widest, (widest, high)


def test_forest_title_and_table_caption_say_what_the_intervals_resample(tables):
    """Five seeds: seeds and patients, read as a t interval. One seed (a one-seed `make study`): patients
    only, and the title and the results page's caption say seed variance is not in the intervals rather
    than promising a two-level bootstrap. Ten seeds: a percentile interval."""
    from knee_tf.controls.markdown_tables import effects_markdown

    effects = tables[0]
    two_level = "95% two-level bootstrap, 5 seeds and their patients resampled: t interval, effect ± t·SE"
    one_seed = "95% bootstrap percentile interval over patients only: 1 seed, so seed variance is not included"
    five = figures.plot_forest(effects, arms=[MODEL_B])
    assert f"({two_level})" in " ".join(five._suptitle.get_text().split())
    assert f"[{two_level}]" in effects_markdown(effects)
    one = figures.plot_forest(effects.assign(n_seeds=1), arms=[MODEL_B])
    assert f"({one_seed})" in " ".join(one._suptitle.get_text().split())
    assert f"[{one_seed}]" in effects_markdown(effects.assign(n_seeds=1))
    mixed = effects.assign(n_seeds=np.where(effects["arm"] == MODEL_B, 10, 1))
    fig = figures.plot_forest(mixed)
    assert ("1–10 seeds and their patients resampled: percentile interval; rows of 1 seed: patients only"
            in " ".join(fig._suptitle.get_text().split()))
    assert "10 seeds and their patients resampled: percentile interval]" in effects_markdown(mixed, arms=[MODEL_B])
    for f in (five, one, fig):
        plots.plt.close(f)

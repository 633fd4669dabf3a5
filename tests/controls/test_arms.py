"""The controls study's arms and plan: the one table of arms (its entries, its checks, and that one more
entry is all an arm needs to be planned, compared, grouped, ordered and drawn), training sets at B's
budget, the full grid's seeds, learning curve and transfer Model A (no training here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.controls import arms, control_masks, summary
from knee_tf.controls.arms import (
    ABLATION,
    CONTROL,
    STUDY,
    Arm,
    PanelPoint,
    arm_names,
    get_arm,
    register,
)
from knee_tf.controls.jobs import TRANSFER_VARIANT, Job, controls_comparisons, controls_plan
from knee_tf.core.vocab import (
    A_STEPS,
    B_RANDOM,
    ERASING,
    MODEL_A,
    MODEL_B,
    MRI_AUG,
    NORMAL,
    STUDY_MODELS,
    TRAIN,
)
from knee_tf.study.config import StudyConfig, get_config

SIZE = 32


class Data:
    """The part of knee_tf.data.ingest.IngestResult that training sets use: 6 training exams of 4 slices."""

    def __init__(self):
        n = 24
        self.x = np.random.default_rng(0).uniform(0.2, 1, size=(n, SIZE, SIZE, 1)).astype(np.float32)
        self.index = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "exam_id": [f"E{k // 4}" for k in range(n)],
                                   "split": TRAIN, "cohort": NORMAL, "label": ["irrelevant", "relevant"] * (n // 2)})

    def split(self, name, cohort=None):
        m = (self.index["split"] == name).to_numpy()
        y = (self.index["label"] == "relevant").to_numpy().astype(np.int32)
        return self.x[m], y[m], self.index[m].reset_index(drop=True)


@pytest.fixture(scope="module")
def setup():
    cfg = StudyConfig.smoke(image_size=SIZE, conv_filters=(4, 4, 4, 4), dense_units=(8,))
    stand_in_a = control_masks.untrained_network((SIZE, SIZE, 1), cfg.conv_filters, cfg.dense_units, seed=3)
    return cfg, stand_in_a, Data()


def test_every_arm_is_registered_with_its_role_budget_family_and_panel():
    assert arm_names()[:2] == STUDY_MODELS and arm_names(STUDY) == STUDY_MODELS  # the paper study's two models
    assert set(arm_names()) == set(arm_names(STUDY) + arm_names(CONTROL) + arm_names(ABLATION))
    assert get_arm(MODEL_A).reference == "" and all(get_arm(a).reference == MODEL_A for a in arm_names()[1:])
    for name in arm_names(CONTROL):
        assert arms.ARMS[name].budget in (arms.SHARE, arms.STEPS), name
    assert arms.ARMS[A_STEPS].budget == arms.STEPS and arms.ARMS[B_RANDOM].budget == arms.SHARE
    assert all(arms.ARMS[a].family == MODEL_B for a in arm_names(ABLATION))
    assert get_arm(MRI_AUG).trains_on == control_masks.MRI_AUG_CORRUPTIONS
    assert not any(get_arm(a).trains_on for a in arm_names() if a != MRI_AUG)
    panels = arms.figure_panels()
    # every ablation is drawn once, beside B's own setting, in notebook 07's published panel order
    assert list(panels) == ["layer", "method", "weight range", "augmented share", "maps of"]
    drawn = [a for panel in panels.values() for a, _ in panel if a != MODEL_B]
    assert sorted(drawn) == sorted(arm_names(ABLATION)) and all(MODEL_B in dict(p) for p in panels.values())
    assert [label for _, label in panels["augmented share"]] == ["0.25", "0.5", "1", "2"]
    assert panels["layer"][-1] == (MODEL_B, "pool4")


def test_the_table_refuses_a_bad_entry_in_one_line():
    def arm(name, **kw):
        return Arm(name, arms.normal_training_set, needs_model_a=False, description="a test arm",
                   **{"role": CONTROL, **kw})

    for entry, match in ((arm(MODEL_A), "already registered"), (arm("no/slash"), "letters, digits"),
                         (arm("C1", role="main"), "role 'main' is not one of"),
                         (arm("C2", reference="A_old"), "reference 'A_old' is not registered"),
                         (arm("C3", family="B_old"), "family 'B_old' is not registered"),
                         (arm("C4", panels=(PanelPoint("layer", 3, "pool9"),)), "position 3 of panel 'layer' is 'B'")):
        with pytest.raises(ValueError, match=match):
            register(entry)
    assert "C1" not in arms.ARMS and "C4" not in arms.ARMS
    with pytest.raises(ValueError, match="unknown arm 'C9'; known arms: A, B, A_steps"):
        get_arm("C9")


@pytest.fixture
def two_more_arms():
    """A control (10 seeds, with a learning curve) and an ablation of B drawn in the layer panel, registered
    for one test and removed afterwards."""
    added = [register(Arm("B_blur", arms.normal_training_set, needs_model_a=False, role=CONTROL, budget=arms.SHARE,
                          description="a control for the test", main_seeds=True, learning_curve=True)),
             register(Arm("B_pool0", arms.normal_training_set, needs_model_a=False, role=ABLATION, family=MODEL_B,
                          description="an ablation for the test", panels=(PanelPoint(arms.LAYER, 4, "pool0"),)))]
    try:
        yield [a.name for a in added]
    finally:
        for a in added:
            arms.ARMS.pop(a.name)


def test_one_entry_is_all_an_arm_needs(two_more_arms):
    """An arm registered in the table is planned with its seeds and learning curve, compared with its
    reference (and, as a control, with B), grouped in README's tables, ordered in every table and drawn
    in its panel, with no other code changed."""
    from test_effects import simulate_predictions

    from knee_tf.controls.effects import arms_table, effects_table
    from knee_tf.controls.markdown_tables import controls_markdown

    control, ablation = two_more_arms
    assert arm_names(CONTROL)[-1] == control and arm_names(ABLATION)[-1] == ablation
    cfg = get_config("full")
    jobs = controls_plan(cfg)
    seeds = pd.Series([j.name for j in jobs]).value_counts()
    assert seeds[control] == cfg.n_seeds and seeds[ablation] == cfg.n_seeds_other
    assert seeds[f"{control}_n25"] == cfg.n_seeds_other
    pairs = controls_comparisons(jobs)
    assert {(control, MODEL_A), (MODEL_B, control), (ablation, MODEL_A), (f"{control}_n25", "A_n25")} <= set(pairs)
    assert (MODEL_B, ablation) not in pairs
    assert arms.figure_panels()["layer"][-1] == (ablation, "pool0")

    shown = [MODEL_A, MODEL_B, B_RANDOM, "B_pool1", control, ablation]
    store = simulate_predictions(np.random.default_rng(0), dict.fromkeys(reversed(shown), 0.0), n_seeds=3,
                                 n_patients=8, corruption="none", severity=0)
    assert summary.ablation_panels(store) == {"layer": [("B_pool1", "pool1"), (MODEL_B, "pool4"), (ablation, "pool0")]}
    in_table_order = [a for a in arm_names() if a in shown]
    assert summary.plan_order(jobs, store) == in_table_order
    assert list(dict.fromkeys(arms_table(store, n_boot=20)["arm"])) == in_table_order
    effects = effects_table(store, [p for p in pairs if set(p) <= set(shown)], n_boot=20, metrics=("accuracy",))
    main, ablations = controls_markdown(effects)
    assert f"| {control} − A |" in main and f"| B − {control} |" in main and f"| {ablation} − A |" in ablations
    assert main.index(f"| {B_RANDOM} − A |") < main.index(f"| {control} − A |")


def test_training_sets_at_bs_budget(setup):
    cfg, model_a, data = setup
    b = arms.get_arm(MODEL_B).training_set(data, model_a, cfg, 0)
    a = arms.get_arm(MODEL_A).training_set(data, None, cfg, 0)
    steps = arms.get_arm(A_STEPS).training_set(data, None, cfg, 0)
    assert len(b.labels) == len(steps.labels) == 2 * len(a.labels)  # B's steps per epoch
    np.testing.assert_array_equal(steps.images[len(a.labels):], a.images.astype(np.float16).astype(np.float32))
    for name in (B_RANDOM, ERASING, MRI_AUG, "B_share2", "B_share0p5", "B_pool2", "B_label_maps"):
        arm = arms.get_arm(name)
        t = arm.training_set(data, model_a if arm.needs_model_a else None, cfg, 0)
        expected = {"B_share2": 3, "B_share0p5": 1.5}.get(name, 2) * len(a.labels)
        assert len(t.labels) == expected, name
        np.testing.assert_array_equal(t.images[:len(a.labels)], a.images)  # the normal images come first


def test_the_learning_curve_trains_on_whole_exams(setup):
    cfg, model_a, data = setup
    small = arms.get_arm(MODEL_B).training_set(data, model_a, cfg.replace(train_exams=2), 0)
    assert len(small.labels) == 2 * 2 * 4
    x, _, index = arms.training_split(data, cfg.replace(train_exams=3))
    assert len(x) == 12 and index["exam_id"].nunique() == 3


def test_the_full_plan_has_the_issues_seeds_learning_curve_and_transfer_model():
    cfg = get_config("full")
    assert cfg.name == "full" and cfg.grid_arms == ()  # every registered arm
    jobs = controls_plan(cfg)
    assert list(dict.fromkeys(j.name for j in jobs if not j.variant)) == [MODEL_A] + list(arm_names()[1:])
    seeds = pd.Series({j.name: 0 for j in jobs})
    for j in jobs:
        seeds[j.name] += 1
    main = {a for a in arm_names() if get_arm(a).main_seeds}
    assert main == {MODEL_A, A_STEPS, MODEL_B, B_RANDOM, ERASING}  # the arms the issue asks at least 10 seeds of
    assert all(seeds[a] == 10 for a in main)
    assert all(seeds[a] == 5 for a in set(arm_names()) - main)
    for n in (25, 50, 100, 200):
        assert seeds[f"A_n{n}"] == seeds[f"B_n{n}"] == 5
        assert dict(next(j for j in jobs if j.name == f"B_n{n}").overrides) == {"train_exams": n}
    transfer = [j for j in jobs if j.variant == TRANSFER_VARIANT]
    assert transfer == [Job(MODEL_A, cfg.transfer_seed, (), TRANSFER_VARIANT)]
    assert all(j.model_a() in jobs for j in jobs if j.model_a() is not None)
    assert [j.arm for j in jobs[:12]] == [MODEL_A] * 12  # A jobs first
    pairs = controls_comparisons(jobs)
    assert (MODEL_B, MODEL_A) in pairs and (MODEL_B, B_RANDOM) in pairs and ("B_n25", "A_n25") in pairs
    assert not any("transfer" in a or "transfer" in r for a, r in pairs)


def test_the_default_plan_is_what_make_study_runs():
    jobs = controls_plan(StudyConfig())
    assert {j.name for j in jobs} == {MODEL_A, MODEL_B, A_STEPS, B_RANDOM}  # no transfer A: one training fewer
    assert {j.seed for j in jobs} == {0}

"""The controls study's arms and plan: every arm registered with its budget, training sets at B's budget,
the full grid's seeds, learning curve and transfer Model A (no training here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.controls import arms, control_masks
from knee_tf.controls.jobs import TRANSFER_VARIANT, Job, controls_comparisons, controls_plan
from knee_tf.core.vocab import (
    A_STEPS,
    ABLATION_ARMS,
    ARM_NAMES,
    B_RANDOM,
    CONTROL_ARMS,
    ERASING,
    MAIN_ARMS,
    MODEL_A,
    MODEL_B,
    MRI_AUG,
    NORMAL,
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


def test_every_arm_is_registered_with_its_budget_and_family():
    assert tuple(arms.ARMS) == ARM_NAMES
    for name in CONTROL_ARMS:
        assert arms.ARMS[name].budget in (arms.SHARE, arms.STEPS), name
    assert arms.ARMS[A_STEPS].budget == arms.STEPS and arms.ARMS[B_RANDOM].budget == arms.SHARE
    assert all(arms.ARMS[a].family == MODEL_B for a in ABLATION_ARMS)
    for panel in arms.ABLATION_PANELS.values():
        assert {a for a, _ in panel} <= set(ARM_NAMES) and MODEL_B in {a for a, _ in panel}


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
    assert cfg.name == "full" and set(cfg.grid_arms) == set(ARM_NAMES)
    jobs = controls_plan(cfg)
    seeds = pd.Series({j.name: 0 for j in jobs})
    for j in jobs:
        seeds[j.name] += 1
    assert all(seeds[a] == 10 for a in MAIN_ARMS)
    assert all(seeds[a] == 5 for a in set(ARM_NAMES) - set(MAIN_ARMS))
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

"""knee_tf.controls.prescription on hand-made exams: slice order, the three endpoints, the per-arm table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.controls import prescription
from knee_tf.core.vocab import AXIAL, CORONAL

# Exam E1, axial, five slices; the rows are deliberately out of slice order.
ORDER = [3, 0, 4, 1, 2]  # slice_index of row k
TRUTH = [0, 1, 1, 1, 0]  # by slice position: slices 1-3 relevant


def exams(calls_by_position: dict[tuple[str, int], list[int]]) -> pd.DataFrame:
    """Predictions of E1 (axial, the calls given by slice position) and E2 (coronal, 2 slices, none
    relevant and none predicted) per (arm, seed)."""
    frames = []
    for (arm, seed), calls in calls_by_position.items():
        e1 = pd.DataFrame({"image_id": [f"E1_{i}" for i in ORDER], "exam_id": "E1", "plane": AXIAL,
                           "slice_index": ORDER, "y_true": [TRUTH[i] for i in ORDER],
                           "y_pred": [calls[i] for i in ORDER]})
        e2 = pd.DataFrame({"image_id": ["E2_0", "E2_1"], "exam_id": "E2", "plane": CORONAL, "slice_index": [0, 1],
                           "y_true": [0, 0], "y_pred": [0, 0]})
        frames.append(pd.concat([e1, e2]).assign(arm=arm, seed=seed, cohort="normal", patient_id=lambda d: "P" + d["exam_id"]))
    df = pd.concat(frames, ignore_index=True)
    df["p_relevant"] = np.where(df["y_pred"] == 1, 0.9, 0.1)
    return df


CASES = {
    ("exact", 0): [0, 1, 1, 1, 0],       # every slice right
    ("shifted", 0): [0, 0, 1, 1, 1],     # one slice late at both ends: J = 2/4, range within one
    ("one_off", 0): [1, 0, 0, 0, 0],     # J = 0; first -1, last -3
    ("silent", 0): [0, 0, 0, 0, 0],      # nothing predicted: J = 0, no range
    ("wide", 0): [1, 1, 1, 1, 1],        # J = 3/5; first -1, last +1: within one
}


def test_slice_ranks_follow_slice_index_whatever_the_row_order():
    idx = exams({("exact", 0): CASES[("exact", 0)]}).drop(columns=["y_pred"])
    ranks = prescription.slice_ranks(idx)
    assert ranks.loc["E1_0"] == 0 and ranks.loc["E1_4"] == 4 and ranks.loc["E2_1"] == 1
    # without slice_index: slice_location_mm (what knee-tf scan writes), in mm, any origin
    alt = idx.drop(columns="slice_index").assign(slice_location_mm=-40.0 + 8.5 * idx["slice_index"])
    pd.testing.assert_series_equal(prescription.slice_ranks(alt), ranks)
    # a slice_index column with gaps falls back to the next complete order column
    gappy = alt.assign(slice_index=[1.0, None] + [2.0] * (len(alt) - 2))
    pd.testing.assert_series_equal(prescription.slice_ranks(gappy), ranks)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.drop(columns="slice_index"), "no slice order column"),
    (lambda d: d.assign(slice_index=[0, 0, 1, 2, 3, 0, 1]), "exam 'E1', plane 'axial' has two slices at 0"),
    (lambda d: d.assign(slice_index=["a"] + [1] * 6), "image 'E1_3' has no numeric value"),
    (lambda d: d.drop(columns="exam_id"), "exam_id"),
])
def test_slice_ranks_reject_unordered_exams(change, match):
    idx = exams({("exact", 0): CASES[("exact", 0)]})
    with pytest.raises(ValueError, match=match):
        prescription.slice_ranks(change(idx))


def test_per_exam_plane_endpoints_on_hand_worked_cases():
    df = exams(CASES)
    per = prescription.per_exam_plane(df, prescription.slice_ranks(df[df["arm"] == "exact"]))
    e1 = per[per["exam_id"] == "E1"].set_index("arm")
    assert e1.loc["exact", ["all_right", "jaccard", "range_within_one"]].tolist() == [True, 1.0, True]
    assert e1.loc["shifted", ["all_right", "jaccard", "range_within_one", "first_error", "last_error"]].tolist() == [
        False, 0.5, True, 1.0, 1.0]
    assert e1.loc["one_off", ["jaccard", "range_within_one", "first_error", "last_error"]].tolist() == [
        0.0, False, -1.0, -3.0]
    silent = e1.loc["silent"]
    assert (silent["jaccard"], silent["range_within_one"], silent["n_predicted"]) == (0.0, False, 0)
    assert np.isnan(silent["first_error"])
    assert e1.loc["wide", ["jaccard", "range_within_one", "n_wrong"]].tolist() == [0.6, True, 2]
    e2 = per[per["exam_id"] == "E2"]  # nothing relevant, nothing predicted: a perfect exam-plane
    assert e2["all_right"].all() and (e2["jaccard"] == 1).all() and e2["range_within_one"].all()
    assert len(per) == 2 * len(CASES)


def test_per_exam_plane_needs_an_order():
    df = exams(CASES)
    with pytest.raises(ValueError, match="slice_rank"):
        prescription.per_exam_plane(df)
    with pytest.raises(ValueError, match="no slice rank for image 'E1_3'"):
        prescription.per_exam_plane(df, pd.Series({"E2_0": 0, "E2_1": 1}))


def test_prescription_table_averages_exam_planes_then_seeds():
    df = exams({("B", 0): CASES[("exact", 0)], ("B", 1): CASES[("shifted", 0)], ("A", 0): CASES[("one_off", 0)],
                ("A", 1): CASES[("one_off", 0)]})
    t = prescription.prescription_table(df, prescription.slice_ranks(df[(df["arm"] == "B") & (df["seed"] == 0)]),
                                        n_boot=200).set_index("arm")
    b = t.loc["B"]
    # seed 0: E1 and E2 right (1.0); seed 1: E1 wrong, E2 right (0.5) -> 0.75
    assert b["all_right"] == pytest.approx(0.75)
    assert b["jaccard"] == pytest.approx(((1 + 1) / 2 + (0.5 + 1) / 2) / 2)
    assert b["range_within_one"] == pytest.approx(1.0)
    assert b["slice_accuracy"] == pytest.approx((7 / 7 + 5 / 7) / 2)
    assert (b["n_seeds"], b["n_exam_planes"]) == (2, 2)
    assert b["all_right_low"] <= b["all_right"] <= b["all_right_high"]
    assert b["all_right_sd"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    a = t.loc["A"]
    assert (a["all_right"], a["range_within_one"], a["all_right_sd"]) == (0.5, 0.5, 0.0)

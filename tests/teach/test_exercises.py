"""The tour's self-check cells: right/wrong with a hint, answers computed from tables of a run."""

from __future__ import annotations

import pandas as pd
import pytest

from knee_tf.study.config import StudyConfig, get_config
from knee_tf.teach import exercises


def _check(*args, **kw):
    lines = []
    verdict = exercises.check_answer(*args, out=lines.append, **kw)
    assert len(lines) == 1
    return verdict, lines[0]


@pytest.mark.parametrize("given, expected, tol, verdict", [
    ("pool4", "pool4", None, True), (" POOL4 ", "pool4", None, True), ("pool2", "pool4", None, False),
    (0.52, 0.5, 0.05, True), (0.6, 0.5, 0.05, False), ("0.51", 0.5, 0.05, True), ("half", 0.5, 0.05, False),
    ("yes", True, None, True), ("no", True, None, False), (False, False, None, True), ("maybe", True, None, False),
    (None, "pool4", None, None), (..., 0.5, 0.1, None),
])
def test_check_answer_verdicts(given, expected, tol, verdict):
    got, line = _check(given, expected, hint="look at the table", tolerance=tol)
    assert got is verdict
    if verdict is False:
        assert line.startswith("Not quite") and "Hint: look at the table" in line
    elif verdict is True:
        assert line.startswith("Right")
    else:
        assert "No answer yet" in line
    assert "answer from this run" not in line


def test_reveal_prints_the_computed_answer():
    _, line = _check(None, 0.4321, tolerance=0.05, reveal=True)
    assert "[answer from this run: 0.432 (within 0.05)]" in line


def test_answers_come_from_the_tables():
    table = pd.DataFrame({"layer": ["pool1", "pool2", "pool4", "none"], "method": ["gradcam"] * 3 + ["random"],
                          "deletion_auc": [0.7, 0.5, 0.6, 0.1]})
    assert exercises.lowest_deletion_layer(table, "gradcam") == "pool2"  # the random reference is not a layer
    with pytest.raises(ValueError, match="no rows"):
        exercises.lowest_deletion_layer(table, "gradcam++")
    metrics = pd.DataFrame({"model": ["A", "A", "B", "B"], "cohort": ["normal", "cam"] * 2,
                            "accuracy": [0.9, 0.7, 0.91, 0.8]})
    assert exercises.largest_gain_cohort(metrics, "A", "B") == "cam"
    assert exercises.relevant_share([0, 1, 1, 1]) == 0.75
    assert exercises.beats_majority(0.8, [0, 1, 1, 1]) and not exercises.beats_majority(0.75, [0, 1, 1, 1])


def test_tour_config_is_small_and_named():
    cfg = get_config("tour")
    assert cfg == StudyConfig.tour() and cfg.name == "tour" and cfg.synth_matrix == 128
    assert cfg.n_exams < StudyConfig().n_exams and cfg.image_size < StudyConfig().image_size
    assert not cfg.reveal_answers and StudyConfig.tour(reveal_answers=True).reveal_answers
    assert StudyConfig.tour().with_settings(["reveal_answers=true"]).reveal_answers


def test_the_tour_ends_by_saying_how_to_open_the_exercises(tmp_path):
    """`knee-tf tour`'s last lines name the exercises, the command that opens the tour notebook (a file that
    exists) in JupyterLab, and the command that renders the executed tour as pages."""
    from knee_tf.study.pipeline import NOTEBOOK_DIR
    from knee_tf.teach.tour import TOUR, next_steps

    text = next_steps(tmp_path / "runs" / "t")
    assert "exercises" in text and "answer = ..." in text
    opened = text.split("jupyter lab ")[1].split()[0]
    assert opened == f"notebooks/{TOUR}.ipynb" and (NOTEBOOK_DIR.parent / opened).exists()
    assert f"knee-tf html --run {tmp_path / 'runs' / 't'}" in text

"""Self-check cells for the tour's exercises: the expected answer always comes from the run.

A tour cell asks a question, the student writes ``answer = ...`` and runs the check::

    answer = None  # your answer, e.g. "pool2"
    check_answer(answer, lowest_deletion_layer(table, GRADCAM), hint="...", reveal=cfg.reveal_answers)

:func:`check_answer` prints one line, right or wrong (with a hint), and returns True/False (None
while no answer is given). Numbers count as right within ``tolerance``; strings compare without
case and surrounding spaces; booleans also accept yes/no. The functions below compute the
expected answers from tables and models of the run, so nothing is typed in by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}


def _same(given, expected, tolerance: float | None) -> bool:
    if isinstance(expected, bool | np.bool_):
        if isinstance(given, str):
            g = given.strip().lower()
            if g not in _YES | _NO:
                return False
            return (g in _YES) == bool(expected)
        return isinstance(given, bool | np.bool_ | int) and bool(given) == bool(expected)
    if isinstance(expected, int | float | np.number):
        try:
            g = float(given)
        except (TypeError, ValueError):
            return False
        return abs(g - float(expected)) <= (tolerance or 0.0)
    return str(given).strip().lower() == str(expected).strip().lower()


def _shown(value) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return f"{float(value):.3g}"
    return str(value)


def check_answer(given, expected, hint: str = "", tolerance: float | None = None, reveal: bool = False,
                 out=print) -> bool | None:
    """Print whether ``given`` is the ``expected`` answer; return True, False, or None (no answer yet).

    tolerance: for numbers, how far off still counts as right. reveal: also print the expected
    answer (``StudyConfig.reveal_answers``, for teachers).
    """
    if given is None or given is Ellipsis:
        verdict, line = None, "No answer yet: set `answer = ...` above and run this cell again."
    elif _same(given, expected, tolerance):
        verdict, line = True, f"Right: {_shown(given)}."
    else:
        verdict, line = False, f"Not quite: {_shown(given)} is not it." + (f" Hint: {hint}" if hint else "")
    if reveal:
        within = f" (within {tolerance:g})" if tolerance else ""
        line += f" [answer from this run: {_shown(expected)}{within}]"
    out(line)
    return verdict


# ----------------------------------------------------------------------------- answers from the run


def relevant_share(labels) -> float:
    """The share of class 1 (relevant) among int labels (N,)."""
    y = np.asarray(labels)
    if not len(y):
        raise ValueError("no labels")
    return float((y == 1).mean())


def beats_majority(accuracy: float, labels) -> bool:
    """Whether ``accuracy`` is higher than always answering the majority class of ``labels``."""
    share = relevant_share(labels)
    return bool(accuracy > max(share, 1 - share))


def lowest_deletion_layer(table: pd.DataFrame, method: str) -> str:
    """The layer whose ``method`` maps have the lowest mean deletion AUC in a faithfulness table
    (:meth:`knee_tf.core.faithfulness.FaithfulnessCurves.table`)."""
    rows = table[table["method"] == method]
    if rows.empty:
        raise ValueError(f"no rows for method {method!r} in the faithfulness table")
    return str(rows.loc[rows["deletion_auc"].idxmin(), "layer"])


def largest_gain_cohort(metrics: pd.DataFrame, model_a: str, model_b: str) -> str:
    """The cohort where ``model_b``'s accuracy exceeds ``model_a``'s by the most (mean over seeds),
    from :func:`knee_tf.study.evaluate.cohort_metrics` output (columns model, cohort, accuracy)."""
    acc = metrics.groupby(["cohort", "model"])["accuracy"].mean().unstack("model")
    return str((acc[model_b] - acc[model_a]).idxmax())

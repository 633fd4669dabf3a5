"""The shipped models' measured accuracy, per test cohort and plane, for ``docs/model_card.md``.

Computed from the published per-image predictions of the shipped grid jobs
(:data:`knee_tf.yourdata.models.SHIPPED`; ``results/grid/model_<arm>_seed0/predictions.parquet``), which a
test shows the shipped weights reproduce. Accuracy is a ratio of per-patient sums, with a 95 %
percentile interval from resampling patients (slices of one exam are correlated; one seed, so no
seed variance). The table sits between the generated-block markers of the page
(:func:`knee_tf.controls.results_page.fill_blocks`): ``python -m knee_tf.yourdata.model_card`` rewrites it
and a test checks that the committed page is what it would write.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from knee_tf.controls.effect_stats import percentile_interval, two_level_bootstrap
from knee_tf.controls.results_page import fill_blocks
from knee_tf.core.io import atomic_write_text
from knee_tf.core.vocab import NO_CORRUPTION, PLANES, predicted_class
from knee_tf.data.layout import published_grid
from knee_tf.study.cohorts import cohort_order

#: The page, and its generated block.
MODEL_CARD = "docs/model_card.md"
BLOCK = "model-card-accuracy"
#: The command that rewrites the block.
WRITER = "python -m knee_tf.yourdata.model_card"
#: Resamples of each interval.
N_BOOT = 2000


def accuracy_with_interval(rows: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(accuracy, low, high) of per-image predictions (``y_true``, ``p_relevant``, ``patient_id``), resampling patients."""
    correct = (predicted_class(rows["p_relevant"].to_numpy()) == rows["y_true"].to_numpy()).astype(np.float64)
    per_patient = pd.DataFrame({"patient": rows["patient_id"].astype(str).to_numpy(), "correct": correct})
    sums = per_patient.groupby("patient", sort=True)["correct"].agg(["sum", "size"])
    rng = np.random.default_rng([seed, zlib.crc32(b"model card")])
    point, boot = two_level_bootstrap(sums["sum"].to_numpy()[None], sums["size"].to_numpy()[None].astype(float),
                                      n_boot=n_boot, rng=rng, resample=("patient",))
    low, high = percentile_interval(boot)
    return point, low, high


def accuracy_table(top: str | Path, shipped) -> pd.DataFrame:
    """One row per (model, cohort, plane) of the shipped models' published predictions, ``plane`` "all" first."""
    pub = published_grid(top)
    out = []
    for arm, seed in shipped:
        pred = pd.read_parquet(pub.predictions(arm, seed))
        pred = pred[pred["corruption"].astype(str) == NO_CORRUPTION]
        present = set(pred["cohort"].astype(str))
        order = cohort_order()
        for cohort in [c for c in order if c in present] + sorted(present - set(order)):
            rows = pred[pred["cohort"].astype(str) == cohort]
            for plane in ("all", *PLANES):
                sel = rows if plane == "all" else rows[rows["plane"].astype(str) == plane]
                if len(sel):
                    acc, low, high = accuracy_with_interval(sel)
                    out.append({"model": arm, "seed": seed, "cohort": cohort, "plane": plane, "n_images": len(sel),
                                "n_patients": sel["patient_id"].nunique(), "accuracy": acc, "low": low, "high": high})
    return pd.DataFrame(out)


def accuracy_markdown(table: pd.DataFrame) -> str:
    """Cohorts as rows, planes as columns, one table per model: ``acc % [low, high]`` (n images)."""
    parts = []
    for (model, seed), t in table.groupby(["model", "seed"], sort=False):
        planes = list(dict.fromkeys(t["plane"]))
        lines = [f"**`published:{model}`** (seed {seed})", "",
                 "| cohort | " + " | ".join(planes) + " |", "|---" * (1 + len(planes)) + "|"]
        for cohort, c in t.groupby("cohort", sort=False):
            cells = {r.plane: f"{100 * r.accuracy:.1f} [{100 * r.low:.1f}, {100 * r.high:.1f}] ({r.n_images})"
                     for r in c.itertuples()}
            lines.append(f"| {cohort} | " + " | ".join(cells.get(p, "–") for p in planes) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + ("\n\nAccuracy in % with a 95 % interval resampling patients (one seed: seed "
                                 "variance not included), and the number of images, from the published "
                                 "per-image predictions of the shipped models.")


def write_model_card(top: str | Path, shipped, log: Callable[[str], object] = print) -> Path:
    """Rewrite the generated block of ``top``/docs/model_card.md (atomically); return its path."""
    page = Path(top) / MODEL_CARD
    if not page.is_file():
        raise ValueError(f"{page} does not exist")
    text = page.read_text()
    new = fill_blocks(text, {BLOCK: accuracy_markdown(accuracy_table(top, shipped))}, where=MODEL_CARD, by=WRITER)
    if new != text:
        atomic_write_text(page, new)
        log(f"rewrote the accuracy table of {MODEL_CARD}")
    return page


if __name__ == "__main__":
    from knee_tf.study.config import REPO_ROOT  # lazy: only the command needs the repository's root
    from knee_tf.yourdata.models import (
        SHIPPED,  # lazy: loads TensorFlow, which the table does not need
    )

    write_model_card(REPO_ROOT, SHIPPED)

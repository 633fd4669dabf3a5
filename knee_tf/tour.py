"""The classroom tour (``notebooks/00_tour``): the whole method on :meth:`StudyConfig.tour` settings.

:func:`run_tour` executes the tour notebook with papermill into a run folder (its executed copy at
``RunLayout.executed_notebook(TOUR)``, a step marker with the seconds it took), so that
``knee-tf html`` can render it like the study's notebooks. :func:`pick_flippable` chooses the
image of the tour's "at what w does Model A flip?" exercise.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from knee_tf.config import REPO_ROOT, StudyConfig, get_config, resolve
from knee_tf.errors import StepFailed
from knee_tf.io import atomic_write_text
from knee_tf.layout import RunLayout
from knee_tf.vocab import GRADCAM, predicted_class

#: The tour notebook's file stem (notebooks/<TOUR>.ipynb).
TOUR = "00_tour"


def pick_flippable(model, images, labels, layer: str, method: str = GRADCAM, seed: int = 0,
                   limit: int = 64) -> tuple[int, np.ndarray, float] | None:
    """A seeded draw of an image that ``model`` classifies correctly (relevant ones first) and that some
    w in [0, 1] of the weighted transform flips: (row, its prepared mask (H, W), the smallest flipping w), or None when
    none of ``limit`` drawn candidates flips. images: float32 (N, H, W, 1); labels: int (N,)."""
    from knee_tf.augment import prepare_mask
    from knee_tf.explore import image_maps, smallest_flipping_weight
    from knee_tf.model import predict_proba

    p = predict_proba(model, images)[:, 1]
    y = np.asarray(labels)
    right = predicted_class(p) == y
    rng = np.random.default_rng(seed)  # relevant slices first: darkening their anatomy is the paper's case
    order = np.concatenate([rng.permutation(np.flatnonzero(right & (y == 1))),
                            rng.permutation(np.flatnonzero(right & (y != 1)))])
    for row in order[:limit]:
        mask = prepare_mask(image_maps(model, images[row], layer, (method,))[method])
        w = smallest_flipping_weight(model, images[row], mask)
        if w is not None:
            return int(row), mask, w
    return None


def run_tour(config: str | StudyConfig = "tour", out: str | Path | None = None, log=print) -> Path:
    """Execute ``notebooks/00_tour.ipynb`` into a run folder (default ``runs/<timestamp>-tour``);
    return the folder. The tour generates its data when missing, like ``knee-tf study``."""
    import papermill as pm

    from knee_tf.study import NOTEBOOK_DIR, RUNS_DIR

    cfg = get_config(config)
    root = resolve(out) if out else RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    layout = RunLayout(root).create()
    cfg.save(layout.config)
    executed = layout.executed_notebook(TOUR)
    log(f"[{TOUR}] running into {root} ...")
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{TOUR}.ipynb"), str(executed),
                            parameters={"config": str(layout.config), "run_dir": str(root)},
                            kernel_name="python3", progress_bar=False, log_output=False, cwd=str(REPO_ROOT),
                            stdout_file=sys.stdout, stderr_file=None)
    except pm.PapermillExecutionError as e:
        raise StepFailed(f"[{TOUR}] failed in cell {e.exec_count}: {e.ename}: {e.evalue} "
                         f"(executed notebook: {executed})") from None
    seconds = round(time.perf_counter() - t0, 1)
    atomic_write_text(layout.step_marker(TOUR), json.dumps({"seconds": seconds, "outputs": [
        layout.relative(executed)]}, indent=2))
    log(f"[{TOUR}] finished in {seconds:.0f} s")
    return root

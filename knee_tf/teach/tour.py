"""The classroom tour (``notebooks/00_tour``): the whole method on :meth:`StudyConfig.tour` settings.

:func:`run_tour` executes the tour notebook with papermill into a run folder (its executed copy at
``RunLayout.executed_notebook(TOUR)``, a step marker with the seconds it took), so that
``knee-tf html`` can render it like the study's notebooks. The image of the tour's "at what w
does Model A flip?" exercise comes from :func:`knee_tf.teach.explore.pick_flippable`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from knee_tf.core.io import atomic_write_text
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import StudyConfig, get_config, resolve
from knee_tf.study.pipeline import NOTEBOOK_DIR, RUNS_DIR, execute_notebook

#: The tour notebook's file stem (notebooks/<TOUR>.ipynb).
TOUR = "00_tour"


def run_tour(config: str | StudyConfig = "tour", out: str | Path | None = None, log=print, settings=()) -> Path:
    """Execute ``notebooks/00_tour.ipynb`` into a run folder (default ``runs/<timestamp>-tour``);
    return the folder. The tour generates its data when missing, like ``knee-tf study``.
    settings: ``["field=value", ...]`` overrides (:meth:`StudyConfig.with_settings`)."""
    cfg = get_config(config).with_settings(settings)
    root = resolve(out) if out else RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"
    layout = RunLayout(root).create()
    cfg.save(layout.config)
    executed = layout.executed_notebook(TOUR)
    log(f"[{TOUR}] running into {root} ...")
    t0 = time.perf_counter()
    execute_notebook(NOTEBOOK_DIR / f"{TOUR}.ipynb", executed, {"config": str(layout.config), "run_dir": str(root)})
    seconds = round(time.perf_counter() - t0, 1)
    atomic_write_text(layout.step_marker(TOUR), json.dumps({"seconds": seconds, "outputs": [
        layout.relative(executed)]}, indent=2))
    log(f"[{TOUR}] finished in {seconds:.0f} s")
    log(next_steps(root))
    return root


def next_steps(root: str | Path) -> str:
    """What a student does after ``knee-tf tour``, its last lines: open the tour's exercises (its
    ``answer = ...`` cells) in JupyterLab, or read the executed tour as a page. ``root``: the tour's run folder."""
    root = Path(root)
    return "\n".join([
        "Next: the exercises. Each section of the tour ends with an `answer = ...` cell that checks your answer.",
        f"  open them:        .venv/bin/jupyter lab {NOTEBOOK_DIR.name}/{TOUR}.ipynb",
        "                    (run the cells top to bottom, write your answers, run each check cell)",
        f"  read it as pages: knee-tf html --run {root}   (then open {RunLayout(root).html_index})",
    ])

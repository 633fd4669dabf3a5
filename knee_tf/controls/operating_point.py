"""The operating-point grid on the results pages (issue 27 part 4, ``docs/analysis_plan.md``).

The grid of the ``paper_point`` config (the default data with 100 training exams) is trained and
published apart from the full-data grid: its jobs in ``results/paper_point/grid/``, notebook 07's tables
of it in ``results/paper_point/`` and its figures in ``figures/paper_point/``
(``StudyConfig.publish_grid_as``). :func:`operating_point_markdown` writes the pages' block about it
from those files: while its tables are not published, how many of its planned jobs are; once they
are, how much Model A loses on the corruptions made from its own maps (the premise, beside the
paper's), and the analysis plan's primary family, each test with its effect, interval and q value.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from knee_tf.controls.effect_stats import interval_description
from knee_tf.controls.families import PRIMARY
from knee_tf.controls.jobs import controls_plan
from knee_tf.controls.markdown_tables import effect_cell
from knee_tf.core.vocab import MODEL_A, MODEL_B, NO_CORRUPTION
from knee_tf.data.layout import FIGURES, RESULTS, published_grid, published_path
from knee_tf.study.cohorts import CAM, NORMAL, get_cohort, own_maps_cohort_names
from knee_tf.study.config import get_config

#: The config of the operating-point grid (``StudyConfig.paper_point``).
OPERATING_POINT = "paper_point"


def operating_point_status(top: str | Path) -> tuple[int, int, Path]:
    """(published jobs, planned jobs, the effects table's path) of the operating-point grid under ``top``."""
    cfg = get_config(OPERATING_POINT)
    pub = published_grid(top, cfg.publish_grid_as)
    done = len(pub.records()) if pub.root.is_dir() else 0
    return done, len(controls_plan(cfg)), published_path(top, "results", RESULTS["effects_table"], cfg.publish_grid_as)


def primary_markdown(effects: pd.DataFrame) -> str:
    """The primary family's rows of an effects table (``RunLayout.effects_table``) as a table: comparison,
    cohort, the effect in points with its interval (``*`` significant), the q value (BH within the family)."""
    rows = effects[(effects["test_family"] == PRIMARY) & (effects["arm"] == MODEL_B)]
    if rows.empty:
        raise ValueError("the effects table has no row of the analysis plan's primary family")
    lines = ["| B against | cohort | seeds | effect, points [95% interval] | q |", "|---|---|---|---|---|"]
    for r in rows.to_dict("records"):
        q = "< 0.001" if r["q_bh"] < 0.0005 else f"{r['q_bh']:.3f}"
        lines.append(f"| `{r['reference']}` | `{r['cohort']}` | {int(r['n_seeds'])} | {effect_cell(r)} | {q} |")
    lines += ["", f"Effects of B in accuracy points, mean over seeds paired on the same test images "
              f"[{interval_description(rows['n_seeds'])}]; q: Benjamini–Hochberg within the primary family "
              f"({int(rows['n_comparisons'].max())} tests); * significant at FDR 0.05; (in dist.): made by B's own "
              "training generator."]
    return "\n".join(lines)


def premise_markdown(arms: pd.DataFrame) -> str:
    """Model A's accuracy on normal images and on the corruptions made from its own maps
    (:func:`knee_tf.study.cohorts.own_maps_cohort_names`: ``cam``, and ``cam_hard`` where the grid made
    it; optional cohorts are exploratory), from an arms table (``RunLayout.arms_table``), beside the
    paper's Model A on its CAM corruptions. Descriptive: each accuracy with its interval over seeds, the
    loss as the difference of the means."""
    a = arms[(arms["arm"] == MODEL_A) & arms["variant"].isna() & (arms["corruption"] == NO_CORRUPTION)]
    a = a.set_index("cohort")
    own = [c for c in own_maps_cohort_names() if c in a.index]
    for cohort in [NORMAL, *own_maps_cohort_names()[:1]]:  # normal images and the paper's cohort 3
        if cohort not in a.index:
            raise ValueError(f"the arms table has no row of Model A on {cohort}")

    def acc(cohort):
        r = a.loc[cohort]
        return f"{100 * r['accuracy']:.1f} % [{100 * r['accuracy_low']:.1f}, {100 * r['accuracy_high']:.1f}]"

    def loss(cohort):
        tag = "; exploratory" if get_cohort(cohort).optional else ""
        return f"{100 * (a.loc[cohort, 'accuracy'] - a.loc[NORMAL, 'accuracy']):+.1f} points{tag}"

    seeds = sorted({int(a.loc[c, "n_seeds"]) for c in [NORMAL, *own]})
    normal_paper, cam_paper = get_cohort(NORMAL).paper_accuracy[0], get_cohort(CAM).paper_accuracy[0]
    return (f"**Is Model A fooled by its own maps here?** Model A ({'/'.join(map(str, seeds))} seeds) is "
            f"{acc(NORMAL)} accurate on normal images; on the same images masked with its own maps, "
            + " and ".join(f"`{c}` {acc(c)} ({loss(c)})" for c in own)
            + f". The paper's Model A: {100 * normal_paper:.1f} % on normal images, "
            f"{100 * cam_paper:.1f} % on its CAM corruptions ({100 * (cam_paper - normal_paper):+.1f} points). "
            f"Accuracy [{interval_description(a.loc[[NORMAL], 'n_seeds'])}].")


def operating_point_markdown(top: str | Path, root: str = "") -> str:
    """The pages' block on the operating-point grid, from ``top``/results. root: the relative path from the
    page to the repository's top (``""`` from README, ``"../"`` from a page in docs/ or a notebook)."""
    done, planned, effects_path = operating_point_status(top)
    name = get_config(OPERATING_POINT).publish_grid_as
    grid = f"`results/{name}/grid/`"
    plan = f"[analysis plan]({root}docs/analysis_plan.md)"
    if not effects_path.exists():
        return (f"The operating-point grid (`{OPERATING_POINT}`: the default data with 100 training exams, as the "
                f"{plan} declares it) is being trained: **{done} of its {planned} jobs** are published in {grid}. "
                f"Its tables appear here once `knee-tf controls --config {OPERATING_POINT} --publish` has run on "
                "the whole grid.")
    effects = pd.read_csv(effects_path)
    arms = pd.read_csv(published_path(top, "results", RESULTS["arms_table"], name))
    forest = published_path("", "figures", f"{FIGURES['forest']}.png", name).as_posix()
    return "\n".join([f"The operating-point grid (`{OPERATING_POINT}`, {done} of its {planned} jobs published in {grid}; "
                      f"{plan}).", "", premise_markdown(arms), "",
                      f"The plan's primary family ([forest plot]({root}{forest})):", "",
                      primary_markdown(effects)])

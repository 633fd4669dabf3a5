"""The controls study's tables as Markdown: effects with their intervals, one table per group of arms.

The numbers come from :mod:`knee_tf.controls.effects`; this module only formats them.
"""

from __future__ import annotations

import pandas as pd

from knee_tf.controls.arms import ABLATION, CONTROL, STUDY, arm_names
from knee_tf.controls.effect_stats import interval_description
from knee_tf.controls.families import EXPLORATORY, PRIMARY, SECONDARY
from knee_tf.core.vocab import NO_CORRUPTION


def effect_cell(r) -> str:
    """One effects row (:func:`knee_tf.controls.effects.effects_table`) as a table cell: ``effect [low, high]``
    in percentage points, ``*`` when significant after Benjamini-Hochberg within its test family,
    ``(in dist.)`` when the condition was made by the arm's own training generator."""
    cell = f"{100 * r['effect']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
    cell += "*" if r["significant"] else ""
    return cell + (" (in dist.)" if r["in_distribution"] else "")


def effects_markdown(effects: pd.DataFrame, metric: str = "accuracy", conditions=None, arms=None) -> str:
    """Markdown table of an effects table (:func:`knee_tf.controls.effects.effects_table`): one row per
    comparison, one column per condition, cells ``effect [low, high]`` in percentage points.

    ``*``: significant after Benjamini-Hochberg within the row's test family
    (:mod:`knee_tf.controls.families`; exploratory rows are never starred); ``(in dist.)``: the
    condition was made by the arm's own training generator. conditions: condition labels
    (:func:`knee_tf.controls.figures.condition_label` style: the cohort, or ``"<corruption> <severity>"``) in
    column order (default: the conditions without a corruption, in table order); arms: row order
    as arm names (default: table order). Ends with a legend stating the interval's method and the
    size of each test family.
    """
    need = {"arm", "reference", "cohort", "metric", "effect", "ci_low", "ci_high", "significant",
            "in_distribution", "n_seeds", "test_family", "n_comparisons", "q_bh"}
    missing = sorted(need - set(effects.columns))
    if missing:
        raise ValueError(f"effects lack column(s) {missing} (use knee_tf.controls.effects.effects_table)")
    t = effects[effects["metric"] == metric].copy()
    if t.empty:
        raise ValueError(f"effects have no rows for metric {metric!r}")
    has_corruption = "corruption" in t.columns
    plain = (t["corruption"].astype(str) == NO_CORRUPTION) if has_corruption else pd.Series(True, index=t.index)
    t["condition"] = [str(r["cohort"]) if not has_corruption or str(r["corruption"]) == NO_CORRUPTION
                      else f"{r['corruption']} {int(r['severity'])}" for _, r in t.iterrows()]
    conditions = list(conditions) if conditions is not None else list(dict.fromkeys(t.loc[plain, "condition"]))
    pairs = list(dict.fromkeys(zip(t["arm"], t["reference"], strict=True)))
    if arms is not None:
        pairs = [p for a in arms for p in pairs if p[0] == a]
    lines = ["| comparison | seeds | " + " | ".join(conditions) + " |", "|---|---|" + "---|" * len(conditions)]
    shown_seeds = []  # n_seeds of every cell shown, for the caption
    for arm, ref in pairs:
        d = t[(t["arm"] == arm) & (t["reference"] == ref)].set_index("condition")
        shown_seeds += list(d.loc[d.index.isin(conditions), "n_seeds"])
        cells = []
        for c in conditions:
            if c not in d.index:
                cells.append("—")
                continue
            cells.append(effect_cell(d.loc[c]))
        seeds = "/".join(str(int(s)) for s in sorted(d["n_seeds"].unique()))
        lines.append(f"| {arm} − {ref} | {seeds} | " + " | ".join(cells) + " |")

    lines.append("")
    lines.append(f"{metric.capitalize()} difference in points, mean over seeds paired on the same images "
                 f"[{interval_description(shown_seeds)}]; * significant at FDR 0.05, p from inverting "
                 f"that interval ({family_legend(effects)}); (in dist.): made by the arm's own training "
                 "generator.")
    return "\n".join(lines) + "\n"


def family_legend(effects: pd.DataFrame) -> str:
    """How the effects table's tests are grouped, for a caption: Benjamini-Hochberg within the primary
    and secondary families of the analysis plan (their sizes), everything else exploratory."""
    sizes = effects.groupby("test_family")["n_comparisons"].max()
    tested = [f"{f} {int(sizes[f])}" for f in (PRIMARY, SECONDARY) if f in sizes and sizes[f] > 0]
    if not tested:
        return "no row is in a test family of the analysis plan: intervals only"
    return (f"Benjamini-Hochberg within each test family of docs/analysis_plan.md: {' and '.join(tested)} "
            f"comparisons; every other row is {EXPLORATORY}, intervals only")


def controls_markdown(effects: pd.DataFrame, metric: str = "accuracy") -> list[str]:
    """The results page's effects tables of the controls study (:func:`effects_markdown` each), in this order and
    only for the arms the table has, each group in the order of :data:`knee_tf.controls.arms.ARMS`: B and the
    controls (each against A, and B against each control); the ablations of B (against A); every other
    compared model (the learning curve's B against its A)."""
    arms = list(dict.fromkeys(effects.loc[effects["metric"] == metric, "arm"].astype(str)))
    main = [a for a in arm_names(STUDY, CONTROL) if a in arms]
    ablations = [a for a in arm_names(ABLATION) if a in arms]
    rest = [a for a in arms if a not in main and a not in ablations]
    return [effects_markdown(effects, metric, arms=group) for group in (main, ablations, rest) if group]

"""Reporting: the measured results as Markdown, beside the paper's numbers.

The statistics come from :mod:`knee_tf.evaluate`; this module only formats them. The paper's
accuracies (:data:`PAPER_ACCURACY`) are quoted for side-by-side tables, never used in a computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from knee_tf.evaluate import COHORT_ORDER
from knee_tf.vocab import (
    ABLATION_ARMS,
    CAM,
    CONTROL_ARMS,
    METAL,
    MODEL_A,
    MODEL_B,
    NO_CORRUPTION,
    NORMAL,
)

#: The paper's reported accuracies of (Model A, Model B) per test cohort (ISMRM 2021, abstract 0811).
PAPER_ACCURACY: dict[str, tuple[float, float]] = {
    NORMAL: (0.831, 0.866),
    METAL: (0.706, 0.803),
    CAM: (0.675, 0.855),
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _measured_cell(r: pd.Series) -> str:
    sd = "" if not np.isfinite(r["accuracy_sd"]) else f" ± {100 * r['accuracy_sd']:.1f}"
    return (f"{_pct(r['accuracy_mean'])}{sd} "
            f"[{100 * r['ci_low_mean']:.1f}, {100 * r['ci_high_mean']:.1f}]")


def _significance_cell(cohort: str, a: pd.Series, b: pd.Series, mcnemar: pd.DataFrame | None,
                       alpha: float) -> str:
    if mcnemar is not None and (mcnemar["cohort"] == cohort).any():
        t = mcnemar[mcnemar["cohort"] == cohort]
        better = int(((t["pvalue"] < alpha) & (t["c"] > t["b"])).sum())
        worse = int(((t["pvalue"] < alpha) & (t["b"] > t["c"])).sum())
        k = len(t)
        if k == 1:
            p = float(t["pvalue"].iloc[0])
            verdict = "yes, B better" if better else "yes, B worse" if worse else "no"
            return f"{verdict} (McNemar p = {p:.3g})"
        med = float(t["pvalue"].median())
        if better == k:
            verdict = f"yes, B better in all {k} seeds"
        elif worse == k:
            verdict = f"yes, B worse in all {k} seeds"
        elif better == 0 and worse == 0:
            verdict = f"no (0/{k} seeds)"
        else:
            verdict = f"mixed: B better in {better}/{k}, worse in {worse}/{k} seeds"
        return f"{verdict} (McNemar median p = {med:.3g})"
    if b["ci_low_mean"] > a["ci_high_mean"]:
        return "yes, B better (95% CIs disjoint)"
    if a["ci_low_mean"] > b["ci_high_mean"]:
        return "yes, B worse (95% CIs disjoint)"
    return "no (95% CIs overlap)"


def paper_comparison_markdown(
    summary: pd.DataFrame,
    mcnemar: pd.DataFrame | None = None,
    model_a: str = MODEL_A,
    model_b: str = MODEL_B,
    alpha: float = 0.05,
) -> str:
    """Markdown table: the paper's accuracies beside ours, per cohort, with a significance verdict.

    summary: :func:`summarize_seeds` of :func:`cohort_metrics` (one row per model and cohort);
    mcnemar: :func:`mcnemar_table` (per seed); without it the verdict compares mean 95% CIs.
    Measured cells read ``mean ± sd across seeds [mean of the per-seed 95% bootstrap CI]``.
    "B beat A?" compares the mean accuracies; "significant?" counts seeds whose exact McNemar test
    has p < alpha in B's favour (or against it). Returns the table and a one-line legend.
    """
    need = {"model", "cohort", "accuracy_mean", "accuracy_sd", "ci_low_mean", "ci_high_mean"}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks column(s) {missing} (use summarize_seeds(cohort_metrics))")
    if {"plane", "site"} & set(summary.columns):
        raise ValueError("summary has a plane/site breakdown; pass the per-cohort summary")
    cohorts = list(COHORT_ORDER) + [c for c in summary["cohort"].unique() if c not in COHORT_ORDER]
    lines = [
        "| cohort | paper A | paper B | paper B−A | measured A | measured B | measured B−A "
        "| B beat A? | significant? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n_seeds = set()
    for cohort in cohorts:
        sa = summary[(summary["cohort"] == cohort) & (summary["model"] == model_a)]
        sb = summary[(summary["cohort"] == cohort) & (summary["model"] == model_b)]
        if cohort in PAPER_ACCURACY:
            pa, pb = PAPER_ACCURACY[cohort]
            paper = [_pct(pa), _pct(pb), f"{100 * (pb - pa):+.1f} pts"]
        else:
            paper = ["—", "—", "—"]
        if sa.empty and sb.empty and cohort in PAPER_ACCURACY:
            lines.append(f"| {cohort} | " + " | ".join(paper) + " | not run | not run | — | — | — |")
            continue
        cells = [_measured_cell(s.iloc[0]) if not s.empty else "not run" for s in (sa, sb)]
        if not sa.empty and not sb.empty:
            a, b = sa.iloc[0], sb.iloc[0]
            n_seeds.update({int(a.get("n_seeds", 1)), int(b.get("n_seeds", 1))})
            d = b["accuracy_mean"] - a["accuracy_mean"]
            beat = "yes" if d > 0 else "no" if d < 0 else "tie"
            rest = [f"{100 * d:+.1f} pts", beat, _significance_cell(cohort, a, b, mcnemar, alpha)]
        else:
            rest = ["—", "—", "—"]
        lines.append(f"| {cohort} | " + " | ".join(paper + cells + rest) + " |")
    seeds = "/".join(str(s) for s in sorted(n_seeds)) or "0"
    lines.append("")
    test = (f"exact McNemar test A vs B on the same images, per seed, alpha = {alpha}"
            if mcnemar is not None else "whether the mean 95% CIs of A and B are disjoint")
    lines.append(
        f"Measured: mean ± sd over {seeds} training seed(s) [mean of the per-seed 95% bootstrap CI]; "
        f"significance: {test}. The paper reports single accuracies without intervals or tests."
    )
    return "\n".join(lines) + "\n"


def effects_markdown(effects: pd.DataFrame, metric: str = "accuracy", conditions=None, arms=None) -> str:
    """Markdown table of an effects table (:func:`knee_tf.effects.effects_table`): one row per
    comparison, one column per condition, cells ``effect [low, high]`` in percentage points.

    ``*``: significant after Benjamini-Hochberg over the whole effects table; ``(in dist.)``: the
    condition was made by the arm's own training generator. conditions: condition labels
    (:func:`knee_tf.plots.condition_label` style: the cohort, or ``"<corruption> <severity>"``) in
    column order (default: the conditions without a corruption, in table order); arms: row order
    as arm names (default: table order). Ends with a legend stating the number of comparisons.
    """
    need = {"arm", "reference", "cohort", "metric", "effect", "ci_low", "ci_high", "significant",
            "in_distribution", "n_seeds", "n_comparisons", "q_bh"}
    missing = sorted(need - set(effects.columns))
    if missing:
        raise ValueError(f"effects lack column(s) {missing} (use knee_tf.effects.effects_table)")
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
            r = d.loc[c]
            cell = f"{100 * r['effect']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
            cell += "*" if r["significant"] else ""
            cell += " (in dist.)" if r["in_distribution"] else ""
            cells.append(cell)
        seeds = "/".join(str(int(s)) for s in sorted(d["n_seeds"].unique()))
        lines.append(f"| {arm} − {ref} | {seeds} | " + " | ".join(cells) + " |")
    from knee_tf.effects import interval_description

    n = int(effects["n_comparisons"].iloc[0])
    lines.append("")
    lines.append(f"{metric.capitalize()} difference in points, mean over seeds paired on the same images "
                 f"[{interval_description(shown_seeds)}]; * significant at "
                 f"FDR 0.05 (Benjamini-Hochberg over all {n} comparisons of the effects table, sign-flip "
                 f"test across seeds); (in dist.): made by the arm's own training generator.")
    return "\n".join(lines) + "\n"


def controls_markdown(effects: pd.DataFrame, metric: str = "accuracy") -> list[str]:
    """README's effects tables of the controls study (:func:`effects_markdown` each), in this order and
    only for the arms the table has: B and the controls (each against A, and B against each control);
    the ablations of B (against A); every other compared model (the learning curve's B against its A)."""
    arms = list(dict.fromkeys(effects.loc[effects["metric"] == metric, "arm"].astype(str)))
    main = [a for a in (MODEL_B,) + CONTROL_ARMS if a in arms]
    ablations = [a for a in ABLATION_ARMS if a in arms]
    rest = [a for a in arms if a not in main and a not in ablations]
    return [effects_markdown(effects, metric, arms=group) for group in (main, ablations, rest) if group]


def precision_markdown(table: pd.DataFrame) -> str:
    """README's precision comparison from ``results/precision.csv`` (bench/precision.py): Model A's
    normal-test accuracy per seed and mean ± sd per precision, the epochs kept, and training speed.

    table: one row per (precision, seed) with accuracy, best_epoch, train_images_per_s.
    """
    seeds = sorted(table["seed"].unique())
    head = "| precision | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | best epochs | training images/s |"
    lines = [head, "|---" * (len(seeds) + 4) + "|"]
    for precision, g in table.groupby("precision", sort=False):
        g = g.set_index("seed")
        acc = g["accuracy"] * 100
        cells = [f"{acc[s]:.2f}%" if s in acc.index else "—" for s in seeds]
        lines.append(f"| {precision} | " + " | ".join(cells) + f" | {acc.mean():.2f} ± {acc.std(ddof=1):.2f} | "
                     + ", ".join(str(int(e)) for e in g["best_epoch"]) + f" | {g['train_images_per_s'].median():.0f} |")
    return "\n".join(lines)

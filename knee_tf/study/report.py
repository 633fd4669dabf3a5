"""Reporting: the measured results as Markdown, beside the paper's numbers.

The statistics come from :mod:`knee_tf.study.evaluate`; this module only formats them. The paper's
accuracies (:attr:`knee_tf.study.cohorts.Cohort.paper_accuracy`) are quoted for side-by-side tables, never used
in a computation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.study.cohorts import COHORTS, listed_cohorts


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
    cohorts = listed_cohorts(summary["cohort"].unique())  # the paper study's, each even when not run
    lines = [
        "| cohort | paper A | paper B | paper B−A | measured A | measured B | measured B−A "
        "| B beat A? | significant? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n_seeds = set()
    for cohort in cohorts:
        sa = summary[(summary["cohort"] == cohort) & (summary["model"] == model_a)]
        sb = summary[(summary["cohort"] == cohort) & (summary["model"] == model_b)]
        paper_accuracy = COHORTS[cohort].paper_accuracy if cohort in COHORTS else None
        if paper_accuracy:
            pa, pb = paper_accuracy
            paper = [_pct(pa), _pct(pb), f"{100 * (pb - pa):+.1f} pts"]
        else:
            paper = ["—", "—", "—"]
        if sa.empty and sb.empty and paper_accuracy:
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


def precision_markdown(table: pd.DataFrame) -> str:
    """The precision comparison of docs/performance.md from ``results/precision.csv`` (bench/precision.py): Model A's
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

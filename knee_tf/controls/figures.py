"""Figures of the controls study (notebook 07): the forest plot of effects, the ablation panels,
the learning curve and the prescription endpoint. Saved like every figure, with
:func:`knee_tf.study.plots.savefig`.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from knee_tf.controls.effect_stats import interval_description, method_summary
from knee_tf.core.vocab import NO_CORRUPTION, NORMAL
from knee_tf.study.plots import MAX_WIDTH_IN, legible

_IN_DIST_COLOR, _OUT_DIST_COLOR = "#dd8452", "#4c72b0"
#: Panels per row of the forest and ablation figures: three keep a figure within a page at legible text.
PANELS_PER_ROW = 3


def _panel_grid(n: int, width: float, height: float, **kw):
    """A figure of ``n`` panels, at most :data:`PANELS_PER_ROW` a row (each ``width`` × ``height`` inches);
    the unused cells of the last row are removed. Returns (fig, list of the n axes, the axes array)."""
    cols = max(1, min(PANELS_PER_ROW, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.2, height * rows + 1.0), squeeze=False, **kw)
    for ax in axes.ravel()[n:]:
        ax.remove()
    return fig, list(axes.ravel()[:n]), axes


def condition_label(row) -> str:
    """``cohort``, or ``"<corruption> <severity>"`` for a held-out corruption (a table row or dict)."""
    corruption = row.get("corruption", None) if hasattr(row, "get") else None
    if corruption is None or str(corruption) in (NO_CORRUPTION, "nan", ""):
        return str(row["cohort"])
    return f"{corruption} {int(row['severity'])}"


@legible
def plot_forest(effects, metric: str = "accuracy", conditions=None, arms=None):
    """Forest plot: each arm's effect against its reference, per condition, with its interval.

    effects: :func:`knee_tf.controls.effects.effects_table` output; metric: which rate; conditions: labels
    (:func:`condition_label`) to show as panels, in order (default: every condition without a
    corruption); arms: row order (default: table order). Filled markers: significant after the
    FDR control within the row's test family (:mod:`knee_tf.controls.families`); hollow: not, or
    exploratory. Orange: the condition is in distribution for the arm (its training
    generator made such images). Effects in percentage points. Returns the Figure.
    """
    t = effects[effects["metric"] == metric].copy()
    t["condition"] = [condition_label(r) for _, r in t.iterrows()]
    if conditions is None:
        plain = t["corruption"].astype(str) == NO_CORRUPTION if "corruption" in t else np.ones(len(t), bool)
        conditions = list(dict.fromkeys(t.loc[plain, "condition"]))
    arms = list(arms) if arms is not None else list(dict.fromkeys(t["arm"]))
    fig, panels, grid = _panel_grid(len(conditions), 2.6, 0.36 * len(arms) + 1.4, sharey=True)
    shown = t[t["condition"].isin(conditions) & t["arm"].isin(arms)]
    # one symmetric axis for every panel, fitted to the intervals drawn (not to rows left out, such as
    # the held-out corruptions' larger effects), so that panels compare at a glance
    lim = 100 * np.nanmax(np.abs(shown[["ci_low", "ci_high"]].to_numpy())) * 1.15 if len(shown) else 1.0
    for ax, cond in zip(panels, conditions, strict=True):
        d = t[t["condition"] == cond].set_index("arm")
        for y, arm in enumerate(arms):
            if arm not in d.index:
                continue
            r = d.loc[arm]
            color = _IN_DIST_COLOR if r["in_distribution"] else _OUT_DIST_COLOR
            ax.errorbar(100 * r["effect"], y, xerr=[[100 * (r["effect"] - r["ci_low"])], [100 * (r["ci_high"] - r["effect"])]],
                        fmt="o", color=color, mfc=color if r["significant"] else "white", ms=6, capsize=2, lw=1.2)
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(cond)
        ax.set_xlim(-lim, lim)
        ax.grid(axis="x", alpha=0.3)
    refs = sorted(set(t["reference"]))
    grid[0, 0].set_yticks(range(len(arms)), [f"{a} − {'/'.join(refs)}" if len(refs) == 1 else a for a in arms])
    grid[0, 0].invert_yaxis()
    bottom = [ax for ax in panels if ax.get_subplotspec().rowspan.stop == grid.shape[0]]
    bottom[len(bottom) // 2].set_xlabel(f"{metric} − reference (points)")  # once, under the middle of the bottom row
    from matplotlib.lines import Line2D  # lazy: plotting only

    handles = [Line2D([], [], marker="o", ls="", color=_OUT_DIST_COLOR, label="held out for the arm"),
               Line2D([], [], marker="o", ls="", color=_IN_DIST_COLOR, label="in distribution for the arm"),
               Line2D([], [], marker="o", ls="", color="k", mfc="k", label="significant (BH in its family)"),
               Line2D([], [], marker="o", ls="", color="k", mfc="white", label="not significant or exploratory")]
    fig.suptitle("Effects\n" + "\n".join(textwrap.wrap(f"({interval_description(shown['n_seeds'])})", 64)))
    fig.tight_layout(rect=(0, 0.7 / fig.get_size_inches()[1], 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


@legible
def plot_ablations(effects, ablations: dict, metric: str = "accuracy", conditions=None):
    """One panel per ablation of B: the effect (arm − reference) against the ablated setting.

    ablations: {ablation name: [(arm, setting label), ...]} in plot order; conditions: labels
    (:func:`condition_label`) drawn as lines (default: the conditions without a corruption).
    Returns the Figure.
    """
    t = effects[effects["metric"] == metric].copy()
    t["condition"] = [condition_label(r) for _, r in t.iterrows()]
    if conditions is None:
        conditions = list(dict.fromkeys(t.loc[t["corruption"].astype(str) == NO_CORRUPTION, "condition"]))
    fig, panels, grid = _panel_grid(len(ablations), 3.0, 2.8, sharey=True)
    offsets = np.linspace(-0.15, 0.15, len(conditions)) if len(conditions) > 1 else [0.0]
    for ax, (name, settings) in zip(panels, ablations.items(), strict=True):
        for off, cond in zip(offsets, conditions, strict=True):
            d = t[t["condition"] == cond].set_index("arm")
            xs, ys, lo, hi = [], [], [], []
            for k, (arm, _) in enumerate(settings):
                if arm in d.index:
                    r = d.loc[arm]
                    xs.append(k + off)
                    ys.append(100 * r["effect"])
                    lo.append(100 * (r["effect"] - r["ci_low"]))
                    hi.append(100 * (r["ci_high"] - r["effect"]))
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", ms=4, capsize=2, lw=1, label=cond)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(settings)), [label for _, label in settings], rotation=30, ha="right")
        ax.set_title(name)
        ax.grid(axis="y", alpha=0.3)
    for row in grid:
        row[0].set_ylabel(f"{metric} − A (points)")
    handles, labels = panels[0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.5 / fig.get_size_inches()[1], 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


@legible
def plot_learning_curve(arms_table, curves: dict, condition: str = NORMAL):
    """Accuracy against the number of training exams, per arm family, with two-level intervals.

    arms_table: :func:`knee_tf.controls.effects.arms_table` output; curves: {label: [(arm, n_training_exams), ...]}
    (e.g. ``{"A": [("A_n25", 25), ..., ("A", 359)], "B": [...]}``); condition: a
    :func:`condition_label`. Returns the Figure.
    """
    t = arms_table.copy()
    t["condition"] = [condition_label(r) for _, r in t.iterrows()]
    d = t[t["condition"] == condition].set_index("arm")
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for label, points in curves.items():
        pts = [(n, d.loc[a]) for a, n in points if a in d.index]
        if not pts:
            continue
        n = [p[0] for p in pts]
        acc = [100 * p[1]["accuracy"] for p in pts]
        ax.plot(n, acc, "o-", label=label, ms=4)
        ax.fill_between(n, [100 * p[1]["accuracy_low"] for p in pts], [100 * p[1]["accuracy_high"] for p in pts],
                        alpha=0.2, lw=0)
    ax.set_xscale("log")
    ticks = sorted({n for points in curves.values() for _, n in points})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("training exams")
    ax.set_ylabel(f"accuracy on {condition} (%)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    shown = [d.loc[a, "n_seeds"] for points in curves.values() for a, _ in points if a in d.index]
    ax.set_title(f"Learning curve (mean over seeds, 95% two-level interval:\n{method_summary(shown)})")
    fig.tight_layout()
    return fig


@legible
def plot_prescription(prescription, arms=None, conditions=None):
    """The prescription endpoint per arm: share of exam-planes all right, Jaccard, range within one
    slice, beside slice accuracy; one row of bars per condition, whiskers the two-level intervals.

    prescription: :func:`knee_tf.controls.prescription.prescription_table` output; arms: bar groups, in order
    (default: table order); conditions: labels (:func:`condition_label`), one row each (default: every
    condition without a corruption). The figure grows down with the conditions and across with the
    arms, so that a grid of twenty arms stays readable, and is never narrower than its legend. Returns
    the Figure.
    """
    t = prescription.copy()
    t["condition"] = [condition_label(r) for _, r in t.iterrows()]
    if conditions is None:
        plain = t["corruption"].astype(str) == NO_CORRUPTION if "corruption" in t else np.ones(len(t), bool)
        conditions = list(dict.fromkeys(t.loc[plain, "condition"]))
    arms = list(arms) if arms is not None else list(dict.fromkeys(t["arm"]))
    bars = [("slice_accuracy", "slice accuracy"), ("all_right", "exam-plane all right"), ("jaccard", "Jaccard"),
            ("range_within_one", "range within 1 slice")]
    fig, axes = plt.subplots(len(conditions), 1, figsize=(min(MAX_WIDTH_IN - 1.5, max(5.6, 0.45 * len(arms) + 2.0)),
                                                             2.3 * len(conditions) + 1.2),
                             sharex=True, sharey=True, squeeze=False)
    width = 0.8 / len(bars)
    x = np.arange(len(arms))
    for ax, cond in zip(axes[:, 0], conditions, strict=True):
        d = t[t["condition"] == cond].set_index("arm").reindex(arms)
        for k, (col, label) in enumerate(bars):
            v = 100 * d[col].to_numpy(dtype=float)
            err = None
            if f"{col}_low" in d:
                err = [v - 100 * d[f"{col}_low"].to_numpy(dtype=float), 100 * d[f"{col}_high"].to_numpy(dtype=float) - v]
            ax.bar(x + (k - 1.5) * width, v, width, yerr=err, capsize=1.5, label=label, error_kw={"lw": 0.8})
        ax.set_ylabel(f"{cond} (%)")
        ax.set_xlim(-0.6, len(arms) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(x, arms, rotation=45, ha="right")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle("Prescription endpoint per exam and plane (one row per cohort)")
    height = fig.get_size_inches()[1]
    fig.legend(handles, labels, loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1 - 0.35 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - 1.0 / height))
    return fig

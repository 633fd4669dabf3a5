"""The premise measurement (:mod:`knee_tf.study.premise`) as figures and as the generated page docs/premise.md.

Everything here reads the tables ``bench/premise.py`` writes to ``results/premise/`` (or the same
tables made in notebook 04); no number is typed in. :func:`premise_markdown` is the whole page, so
a test can check that docs/premise.md is what the published tables give.
"""

from __future__ import annotations

from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from knee_tf.core.vocab import CLASSES, METHOD_NAMES, NORMAL, PLANES, STUDY_CAM_METHODS
from knee_tf.study.cohorts import CAM, COHORTS
from knee_tf.study.config import get_config
from knee_tf.study.premise import (
    INVERSE_SUFFIX,
    LIMB_LEVEL,
    LIMB_SMOOTH_SIGMA,
    RANDOM_METHOD,
    MaskSpec,
)

#: The paper's Model A on normal images and on its own CAM corruptions (knee_tf.study.cohorts), quoted only.
PAPER_A_NORMAL, PAPER_A_CAM = COHORTS[NORMAL].paper_accuracy[0], COHORTS[CAM].paper_accuracy[0]
#: The share of pixels deleted that the page's answer quotes (deletion curves have a point there).
DELETION_FRACTION = 0.2
#: A construction "fools A the way the paper's did" when it costs at least this much accuracy.
FOOLED_DROP = 0.10


def raw_maps(summary: pd.DataFrame, grouping: str = "all") -> pd.DataFrame:
    """The summary rows of unsmoothed, unthresholded masks for one grouping."""
    s = summary[(summary["smooth_sigma"] == 0) & (summary["threshold"] == 0) & (summary["grouping"] == grouping)]
    return s.copy()


def condition(summary: pd.DataFrame, spec: MaskSpec, grouping: str = "all") -> pd.DataFrame:
    """The summary rows of one condition for one grouping ("all", "label" or "plane")."""
    m = summary["grouping"] == grouping
    for k, v in asdict(spec).items():
        m &= np.isclose(summary[k], v) if isinstance(v, float) else summary[k] == v
    return summary[m]


def spec_of(row: pd.Series) -> MaskSpec:
    """The MaskSpec of a summary row."""
    return MaskSpec(row["layer"], row["method"], float(row["weight"]), float(row["smooth_sigma"]),
                    float(row["threshold"]))


def plot_dose_response(summary: pd.DataFrame):
    """Accuracy drop and flip rate (percentage points) against the weight w, one panel per layer,
    one line per method, raw maps, every image. Returns the figure."""
    s = raw_maps(summary)
    layers = list(dict.fromkeys(s["layer"]))
    fig, axes = plt.subplots(2, len(layers), figsize=(2.6 * len(layers), 4.6), sharey="row", squeeze=False)
    for j, layer in enumerate(layers):
        for method, g in s[s["layer"] == layer].groupby("method", sort=False):
            g = g.sort_values("weight")
            axes[0, j].plot(g["weight"], 100 * g["accuracy_drop"], marker="o", label=METHOD_NAMES.get(method, method))
            axes[1, j].plot(g["weight"], 100 * g["flip_rate"], marker="o")
        axes[0, j].set_title(layer)
        axes[1, j].set_xlabel("weight w (1 = inverted)")
        axes[0, j].axhline(100 * (PAPER_A_NORMAL - PAPER_A_CAM), color="grey", ls="--", lw=0.8)
    axes[0, 0].set_ylabel("accuracy drop (points)")
    axes[1, 0].set_ylabel("flip rate (%)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Model A on image x (1 - w M), M its own map (dashed: the paper's "
                 f"{100 * (PAPER_A_NORMAL - PAPER_A_CAM):.1f}-point drop)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_dose_vs_area(summary: pd.DataFrame):
    """Flip rate against the share of the image's signal each condition removes, every condition
    (smoothing and threshold included), coloured by layer. Returns the figure."""
    s = summary[summary["grouping"] == "all"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for layer, g in s.groupby("layer", sort=False):
        ax.scatter(100 * g["signal_removed"], 100 * g["flip_rate"], s=14, label=layer, alpha=0.8)
    ax.set_xlabel("signal removed (% of the image's summed intensity)")
    ax.set_ylabel("flip rate of Model A (%)")
    ax.legend(fontsize=7, title="layer", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_deletion(deletion: pd.DataFrame):
    """Flip rate against the share of pixels deleted (to black), by map, inverse map and random,
    one panel per map. Returns the figure."""
    maps = list(dict.fromkeys(deletion["map"]))
    fig, axes = plt.subplots(1, len(maps), figsize=(3.4 * len(maps), 3.0), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], maps, strict=True):
        d = deletion[deletion["map"] == name]
        for ranking, g in d.groupby("ranking", sort=False):
            ax.plot(100 * g["fraction"], 100 * g["flip_rate"], marker=".", label=_ranking_label(ranking))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("pixels deleted (%)")
    axes[0, 0].set_ylabel("flip rate of Model A (%)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _ranking_label(ranking: str) -> str:
    if ranking == RANDOM_METHOD:
        return "random pixels"
    if ranking.endswith(INVERSE_SUFFIX):
        return "top of the inverse map (1 - M)"
    return "top of the map M"


def plot_coverage_examples(images, maps, limb, titles):
    """Rows of (image with the limb outline, the map, the inverted image). images float32 (R, H, W, 1),
    maps float32 (R, H, W) in [0, 1], limb bool (R, H, W), titles: R strings. Returns the figure."""
    fig, axes = plt.subplots(len(images), 3, figsize=(5.4, 1.8 * len(images)), squeeze=False)
    for r in range(len(images)):
        img, m = np.asarray(images[r])[..., 0], np.asarray(maps[r])
        axes[r, 0].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[r, 0].contour(limb[r], levels=[0.5], colors="lime", linewidths=0.7)
        axes[r, 1].imshow(m, cmap="jet", vmin=0, vmax=1)
        axes[r, 1].contour(limb[r], levels=[0.5], colors="white", linewidths=0.7)
        axes[r, 2].imshow(img * (1 - m), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(titles[r], fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, t in zip(axes[0], ("image, limb outline", "map M", "image x (1 - M)"), strict=True):
        ax.set_title(t, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def _pct(v: float) -> str:
    return "n/a" if pd.isna(v) else f"{100 * v:.1f}"


def _table(frame: pd.DataFrame, columns: dict) -> str:
    """Markdown table of ``frame``'s ``columns`` ({column: header}); floats in [0, 1] shown as %."""
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, r in frame.iterrows():
        cells = [(_pct(r[c]) if isinstance(r[c], float) and c not in ("weight", "smooth_sigma", "threshold")
                  else f"{r[c]:g}" if isinstance(r[c], float) else str(r[c])) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strongest(summary: pd.DataFrame, layer: str = "", transform: str = "") -> pd.Series:
    """The condition with the largest accuracy drop over every image (optionally at one layer /
    transform); ties go to the first in table order."""
    s = summary[summary["grouping"] == "all"]
    s = s[s["layer"] == layer] if layer else s
    s = s[s["transform"] == transform] if transform else s
    return s.loc[s["accuracy_drop"].idxmax()]


def premise_markdown(summary: pd.DataFrame, deletion: pd.DataFrame, coverage: pd.DataFrame, cohort3: MaskSpec,
                     figures: str = "../figures") -> str:
    """docs/premise.md from the three tables of bench/premise.py (dose_response.csv, deletion.csv,
    coverage.csv; each carries the model's provenance columns); cohort3: the study's cohort-3
    condition (:func:`knee_tf.study.premise.cohort3_spec`). Returns the page's Markdown."""
    prov = summary.iloc[0]
    c3 = condition(summary, cohort3).iloc[0]
    top = strongest(summary)
    top4 = strongest(summary, layer=cohort3.layer)
    fooled = summary[(summary["grouping"] == "all") & (summary["accuracy_drop"] >= FOOLED_DROP)]
    paper = summary[(summary["grouping"] == "all") & summary["method"].isin(STUDY_CAM_METHODS)
                    & (summary["layer"] == cohort3.layer)]
    fooled_paper = paper[paper["accuracy_drop"] >= FOOLED_DROP]
    paper_any = paper.loc[paper["accuracy_drop"].idxmax()]
    raw = paper[(paper["smooth_sigma"] == 0) & (paper["threshold"] == 0)]
    paper_raw = raw.loc[raw["accuracy_drop"].idxmax()]
    cov = coverage[(coverage["grouping"] == "all") & (coverage["layer"] == cohort3.layer)].set_index("method")
    cov_g = cov.loc[cohort3.method]
    k = deletion[np.isclose(deletion["fraction"], DELETION_FRACTION)]
    d_map = k[k["ranking"] == cohort3.method].iloc[0] if len(k) else None
    d_inv = k[k["ranking"] == cohort3.method + INVERSE_SUFFIX].iloc[0] if len(k) else None
    d_rnd = k[(k["ranking"] == RANDOM_METHOD) & (k["map"] == d_map["map"])].iloc[0] if len(k) else None

    def cond(r) -> str:
        extra = f", smoothing sigma {r['smooth_sigma']:g} px, threshold {r['threshold']:g}" \
            if r["smooth_sigma"] or r["threshold"] else ""
        return f"{METHOD_NAMES.get(r['method'], r['method'])} at {r['layer']}, {r['transform']} (w = {r['weight']:g}{extra})"

    out = [
        "# The premise: is Model A fooled by masks made from its own maps?",
        "",
        "<!-- generated by bench/premise.py from results/premise/*.csv: do not edit by hand -->",
        "",
        f"The paper's Model A fell from {_pct(PAPER_A_NORMAL)} % to {_pct(PAPER_A_CAM)} % on images masked with its own "
        "Grad-CAM maps (its cohort 3): the masks remove what A relies on, which is why training on them should help. "
        "This page measures that premise on the study's Model A alone, over every knob the paper's words allow "
        "(layer, method, inverted or weighted, weight w, smoothing, threshold) on the held-out normal test images "
        "(`knee_tf.study.premise`, run by `bench/premise.py`; notebook 04 runs the same on the smoke data).",
        "",
        f"Model A: arm A, seed {prov['model_seed']}, default data, trained at commit `{str(prov['model_commit'])[:12]}` "
        f"on {prov['model_machine']} ({prov['model_precision']}); it is not the published AMD-trained seed-0 job, "
        f"so its clean accuracy here is {_pct(c3['base_accuracy'])} % on {int(c3['n'])} images.",
        "",
        "## Answer",
        "",
        f"- The study's cohort-3 condition ({cond(c3)}) costs A {_pct(c3['accuracy_drop'])} points "
        f"({_pct(c3['base_accuracy'])} % -> {_pct(c3['accuracy'])} %) and changes {_pct(c3['flip_rate'])} % of its calls; "
        f"the paper's cost its A {_pct(PAPER_A_NORMAL - PAPER_A_CAM)} points.",
        f"- The strongest of all {len(summary[summary['grouping'] == 'all'])} conditions is {cond(top)}: "
        f"{_pct(top['accuracy_drop'])} points, {_pct(top['flip_rate'])} % of calls changed, "
        f"{_pct(top['signal_removed'])} % of the image's signal removed. At {cohort3.layer}, the paper's layer, the strongest is "
        f"{cond(top4)}: {_pct(top4['accuracy_drop'])} points, {_pct(top4['flip_rate'])} % flipped.",
        f"- Among the paper's methods ({', '.join(METHOD_NAMES[m] for m in STUDY_CAM_METHODS)}) at {cohort3.layer}, "
        f"raw maps cost A at most {_pct(paper_raw['accuracy_drop'])} points ({cond(paper_raw)}, "
        f"{_pct(paper_raw['flip_rate'])} % flipped); with the mask's smoothing and threshold (which the paper's words "
        f"neither name nor exclude) at most {_pct(paper_any['accuracy_drop'])} points ({cond(paper_any)}, "
        f"{_pct(paper_any['flip_rate'])} % flipped, {_pct(paper_any['signal_removed'])} % of the signal removed).",
        (f"- {len(fooled)} condition(s) cost A at least {_pct(FOOLED_DROP)} points ({len(fooled_paper)} of them with "
         f"the paper's methods at {cohort3.layer}); they are listed below." if len(fooled) else
         f"- No condition costs A {_pct(FOOLED_DROP)} points or more: no construction of the paper's masks fools "
         "this Model A the way the paper's did."),
        f"- Why: an inverted {cohort3.layer} {METHOD_NAMES[cohort3.method]} map (upsampled from the layer's "
        f"grid: 8 x 8 at pool4) covers {_pct(cov_g['limb_covered'])} % of the "
        f"limb at M >= 0.5 and removes {_pct(cov_g['limb_removed'])} % of it on average; "
        f"{_pct(cov_g['mass_on_limb'])} % of the map's mass lies on the limb.",
    ]
    if d_map is not None:
        out.append(
            f"- Deleting the top {_pct(DELETION_FRACTION)} % of A's {d_map['map']} pixels flips {_pct(d_map['flip_rate'])} % "
            f"of its calls ({int(d_map['n'])} images), as many random pixels {_pct(d_rnd['flip_rate'])} %, the top of "
            "the inverse map "
            f"{_pct(d_inv['flip_rate'])} %: deleting where the map points costs A "
            + ("more than" if d_map["flip_rate"] > max(d_rnd["flip_rate"], d_inv["flip_rate"]) else "no more than")
            + " deleting elsewhere, and A keeps its call on "
            + ("most" if d_map["flip_rate"] < 0.5 else "only a minority of the")
            + " images with that share of the image gone."
            + "".join(f" At {_pct(f)} % deleted: map {_pct(r[0])} %, random {_pct(r[1])} %, inverse {_pct(r[2])} %."
                      for f, r in _deletion_flips(deletion, d_map["map"], cohort3.method).items()
                      if not np.isclose(f, DELETION_FRACTION) and f <= 0.3))
    if len(fooled):
        out += ["", f"## Conditions that cost A at least {_pct(FOOLED_DROP)} points", "",
                _table(fooled.sort_values("accuracy_drop", ascending=False),
                       {"layer": "layer", "method": "method", "weight": "w", "smooth_sigma": "sigma (px)",
                        "threshold": "threshold", "accuracy": "accuracy %", "accuracy_drop": "drop (points)",
                        "flip_rate": "flip rate %", "area_image": "image area %", "signal_removed": "signal removed %"})]
    if len(fooled_paper):
        hard = fooled_paper[fooled_paper["smooth_sigma"] == 0].sort_values("accuracy_drop", ascending=False)
        out += ["", "## A second `cam` cohort?", "",
                f"The paper's words allow masks that fool this Model A by {_pct(FOOLED_DROP)} points or more: "
                f"{cond(paper_any)} costs {_pct(paper_any['accuracy_drop'])} points. The reason is the mask's shape, "
                "not its dose: the raw map's soft shadow dims the limb smoothly, like an intensity shading, while "
                "a threshold cuts the map into a hard-edged black patch"
                + (f" ({cond(hard.iloc[0])} costs {_pct(hard.iloc[0]['accuracy_drop'])} points removing "
                   f"{_pct(hard.iloc[0]['signal_removed'])} % of the signal; the raw {cond(paper_raw)} costs "
                   f"{_pct(paper_raw['accuracy_drop'])} points removing {_pct(paper_raw['signal_removed'])} %)"
                   if len(hard) else "")
                + " and a wide smoothing spreads the shadow over more of the limb. Hard-edged deletion is what fools A "
                "most per pixel (the deletion curves below: even random pixels deleted to black flip many calls).",
                "",
                declared_cam_hard()]
    raw = raw_maps(summary).sort_values(["layer", "method", "weight"])
    out += ["", "## Dose-response (raw maps, every image)", "",
            f"![dose-response]({figures}/premise_dose_response.png)", "",
            _table(raw, {"layer": "layer", "method": "method", "transform": "transform", "weight": "w",
                         "accuracy": "accuracy %", "accuracy_drop": "drop (points)", "flip_rate": "flip rate %",
                         "area_image": "image area %", "area_limb": "limb area %", "signal_removed": "signal removed %"}),
            "", "Image / limb area: the mean of w x M over the image / over the limb mask; signal removed: "
            "sum(x w M) / sum(x). Accuracy and flips over every held-out normal test image.",
            "", f"## Smoothing and threshold ({cohort3.layer})", "",
            f"![flip rate against signal removed]({figures}/premise_area.png)", ""]
    sweep = summary[(summary["grouping"] == "all") & (summary["layer"] == cohort3.layer)
                    & ((summary["smooth_sigma"] > 0) | (summary["threshold"] > 0) | np.isclose(summary["weight"], 0.9)
                       | (summary["weight"] == 1.0))]
    sweep = sweep[sweep["weight"] >= 0.9].sort_values(["method", "weight", "smooth_sigma", "threshold"])
    out += [_table(sweep, {"method": "method", "weight": "w", "smooth_sigma": "sigma (px)", "threshold": "threshold",
                           "accuracy_drop": "drop (points)", "flip_rate": "flip rate %", "area_limb": "limb area %",
                           "signal_removed": "signal removed %"}), ""]
    groups = pd.concat([condition(summary, spec, grouping) for spec in dict.fromkeys((cohort3, spec_of(top)))
                        for grouping in ("label", "plane")], ignore_index=True)
    groups["condition"] = [f"{r.method} {r.layer} w={r.weight:g}" + (f" s={r.smooth_sigma:g} t={r.threshold:g}"
                                                                      if r.smooth_sigma or r.threshold else "")
                           for r in groups.itertuples()]
    groups["order"] = [(CLASSES + PLANES).index(g) for g in groups["group"]]
    groups = groups.sort_values(["condition", "order"], kind="stable")
    out += ["## Per class and per plane", "",
            "The study's cohort-3 condition and the strongest condition, by true class and by plane:", "",
            _table(groups, {"condition": "condition", "group": "class / plane", "n": "n",
                            "base_accuracy": "clean accuracy %", "accuracy": "masked accuracy %",
                            "accuracy_drop": "drop (points)", "flip_rate": "flip rate %"}), "",
            "## Does A rely on evidence outside its map?", "",
            f"![deletion]({figures}/premise_deletion.png)", "",
            "Pixels deleted to black, ranked by A's map (top first), by the inverse map 1 - M (top first) or at "
            "random (`knee_tf.core.faithfulness`, ties broken by its seeded permutation); the map explains A's call "
            "and a flip is a change of that call.", ""]
    kk = deletion[deletion["fraction"].round(4).isin([0.1, 0.2, 0.3, 0.5])].copy()
    kk["ranking"] = kk["ranking"].map(_ranking_label)
    out += [_table(kk, {"map": "map", "ranking": "deleted", "fraction": "pixels deleted %",
                        "target_prob": "prob. of A's call %", "flip_rate": "flip rate %"}), "",
            "## How much of the limb does a map cover?", "",
            f"![coverage]({figures}/premise_coverage.png)", "",
            f"The limb mask: the image Gaussian-smoothed (sigma {LIMB_SMOOTH_SIGMA:g} px), pixels above {LIMB_LEVEL:g} x its "
            "99th percentile, a 3 x 3 opening, the largest connected component with holes filled "
            "(`knee_tf.study.premise.limb_mask`). Covered: M >= 0.5; "
            "removed: the mean of M over the limb (what an inverted mask takes away).", ""]
    cv = coverage[coverage["grouping"] == "all"].sort_values(["layer", "method"])
    out += [_table(cv, {"layer": "layer", "method": "method", "limb_covered": "limb covered %",
                        "limb_removed": "limb removed %", "mass_on_limb": "map mass on limb %",
                        "image_area": "image area %"}), ""]
    return "\n".join(out)


def _deletion_flips(deletion: pd.DataFrame, map_name: str, method: str) -> dict:
    """{fraction: (flip rate of the map, of random, of the inverse)} of one map's deletion rows (fraction > 0)."""
    d = deletion[(deletion["map"] == map_name) & (deletion["fraction"] > 0)]
    flips = d.pivot(index="fraction", columns="ranking", values="flip_rate")
    return {float(f): (r[method], r[RANDOM_METHOD], r[method + INVERSE_SUFFIX]) for f, r in flips.iterrows()}


def provenance_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The model provenance columns (one row) that bench/premise.py writes into every table."""
    cols = [c for c in summary.columns if c.startswith("model_")]
    return summary[cols].drop_duplicates()


def declared_cam_hard() -> str:
    """The page's sentence on the cohort that the analysis plan declared from this measurement: cam_hard, with
    its mask as the operating-point config sets it (``StudyConfig.paper_point``'s ``cam_hard_*`` fields)."""
    cfg = get_config("paper_point")
    return ("It is declared as a second cam cohort of the operating-point grid, `cam_hard` "
            "([analysis plan](analysis_plan.md), amendment 1, before any job of that grid was trained): "
            f"{METHOD_NAMES[cfg.cohort3_method]} at {cfg.aug_layer}, inverted (w = {cfg.cam_hard_weight:g}, smoothing "
            f"sigma {cfg.cam_hard_smooth_sigma:g} px, threshold {cfg.cam_hard_threshold:g}), scored for every job "
            "of that grid beside the default `cam`, its rows exploratory. The full-data grid has no such cohort.")

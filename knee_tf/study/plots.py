"""Figures of the study, and one way to save them: a PNG a person can open, written atomically.

No backend is forced: notebooks show figures inline, and without a display matplotlib uses Agg.

Every figure is legible on a projector: no text below :data:`MIN_TEXT_PT` points *as a page shows it*.
A browser shows one image pixel per CSS pixel (96 per inch) and scales a figure wider than the page's
column (:data:`PAGE_WIDTH_PX`) down to it, so a text of ``s`` points in a figure drawn at ``dpi`` and
``w`` pixels wide shows at :func:`shown_points` ``= s · dpi/96 · min(1, PAGE_WIDTH_PX/w)``. Figures are
embedded at 72 dpi in notebooks (:data:`knee_tf.core.startup.INLINE_DPI`) and the explorers, at 120 dpi
in ``figures/`` (:func:`savefig`): every plotting function draws its text at :data:`TEXT_PT` (its
:func:`legible` style) and keeps its width within the page at 72 dpi.
"""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from knee_tf.core.io import atomic_path
from knee_tf.core.vocab import (
    CLASSES,
    GRADCAM,
    IRRELEVANT,
    METHOD_NAMES,
    MODEL_A,
    MODEL_B,
    PLANES,
    RELEVANT,
    SPLITS,
    STUDY_CAM_METHODS,
    class_name,
)

#: The smallest text of a figure, in points as a page shows it (a rule of thumb for a projected slide).
MIN_TEXT_PT = 9.0
#: The widest a page shows a figure before scaling it down, in CSS pixels: a notebook output or a README
#: column on a 1024 × 768 projector.
PAGE_WIDTH_PX = 800
#: CSS pixels per inch: a browser shows one image pixel per CSS pixel.
CSS_PX_PER_INCH = 96
#: The smallest resolution a figure is embedded at (notebook outputs and the explorers: 72 dpi).
MIN_EMBED_DPI = 72
#: Every figure's text size, in points at the figure's own size: MIN_TEXT_PT at MIN_EMBED_DPI (9 · 96/72).
TEXT_PT = MIN_TEXT_PT * CSS_PX_PER_INCH / MIN_EMBED_DPI
#: The widest figure, in inches, that a page shows unscaled at MIN_EMBED_DPI (800 / 72 ≈ 11.1).
MAX_WIDTH_IN = PAGE_WIDTH_PX / MIN_EMBED_DPI
#: The matplotlib settings of every figure (:func:`legible`).
FIGURE_RC = {"font.size": TEXT_PT, "axes.titlesize": TEXT_PT, "axes.labelsize": TEXT_PT, "xtick.labelsize": TEXT_PT,
             "ytick.labelsize": TEXT_PT, "legend.fontsize": TEXT_PT, "legend.title_fontsize": TEXT_PT,
             "figure.titlesize": TEXT_PT + 1}


def shown_points(size_pt: float, dpi: float, width_px: float) -> float:
    """The size in points at which a page shows a text of ``size_pt`` points of a figure drawn at ``dpi``
    that is ``width_px`` pixels wide (scaled down to :data:`PAGE_WIDTH_PX` when wider)."""
    return size_pt * dpi / CSS_PX_PER_INCH * min(1.0, PAGE_WIDTH_PX / width_px)


def legible(func):
    """Decorator of a plotting function: its figure is built under :data:`FIGURE_RC` (text at :data:`TEXT_PT`)."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(FIGURE_RC):
            return func(*args, **kwargs)
    return wrapper


def savefig(fig, name: str, out_dir: str | Path, dpi: int = 120, close: bool = False) -> Path:
    """Save ``fig`` as ``out_dir/name.png`` (``.png`` added if missing) and return the path."""
    name = name if name.endswith(".png") else f"{name}.png"
    path = Path(out_dir) / name
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if close:
        plt.close(fig)
    return path


@legible
def plot_counts(index):
    """Bar chart of image counts per split x plane x label, one panel per split; returns the Figure."""
    import seaborn as sns  # lazy: slow import (about 1 s), plotting only

    g = sns.catplot(data=index, x="plane", hue="label", col="split", kind="count", height=2.8, aspect=1.0,
                    order=list(PLANES), hue_order=list(CLASSES),
                    col_order=[s for s in SPLITS if s in set(index["split"])],
                    palette={IRRELEVANT: "#9e9e9e", RELEVANT: "#d1495b"})
    g.set_titles("{col_name}")
    g.figure.suptitle("Images per split, plane and label", y=1.04)
    return g.figure


@legible
def montage(images, index, rows: str = "plane", cols: str = "label", per_cell: int = 3, seed: int = 0,
            row_order=None, col_order=None, title: str = ""):
    """A grid of example images: one block of ``per_cell`` random images per (row value, column value).

    images: float32 (N, H, W, 1) in [0, 1]; index: DataFrame aligned with images.
    """
    rng = np.random.default_rng(seed)
    rv = row_order or sorted(index[rows].unique())
    cv = col_order or sorted(index[cols].unique())
    fig, axes = plt.subplots(len(rv), len(cv) * per_cell, figsize=(1.3 * len(cv) * per_cell, 1.45 * len(rv)),
                             squeeze=False)
    for i, r in enumerate(rv):
        for j, c in enumerate(cv):
            pool = np.flatnonzero((index[rows] == r).to_numpy() & (index[cols] == c).to_numpy())
            pick = rng.choice(pool, size=min(per_cell, len(pool)), replace=False) if len(pool) else []
            for k in range(per_cell):
                ax = axes[i, j * per_cell + k]
                ax.set_xticks([])
                ax.set_yticks([])
                if k < len(pick):
                    ax.imshow(np.asarray(images[pick[k]])[..., 0], cmap="gray", vmin=0, vmax=1)
                if i == 0 and k == 0:
                    ax.set_title(str(c), loc="left")
                if j == 0 and k == 0:
                    ax.set_ylabel(str(r))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plane_label_montage(images, index, per_cell: int = 3, seed: int = 0):
    """:func:`montage` of ``per_cell`` example images per plane (rows, in vocabulary order) and label
    (columns, relevant first)."""
    return montage(images, index, rows="plane", cols="label", per_cell=per_cell, seed=seed,
                   row_order=list(PLANES), col_order=list(CLASSES[::-1]))


@legible
def intensity_histograms(images, index, by: str = "site", bins: int = 50):
    """Per-group histogram of normalised intensities (the foreground, pixels > 0.05), one line per group."""
    import seaborn as sns  # lazy: slow import (about 1 s), plotting only

    fig, ax = plt.subplots(figsize=(6, 3.2))
    groups = sorted(index[by].unique()) if by in index else ["all"]
    palette = sns.color_palette("tab10", len(groups))
    edges = np.linspace(0, 1, bins + 1)
    for g, color in zip(groups, palette, strict=True):
        sel = np.flatnonzero((index[by] == g).to_numpy()) if by in index else np.arange(len(images))
        sel = sel[:: max(1, len(sel) // 300)]  # at most ~300 images per group
        v = np.asarray(images[sel]).ravel()
        hist, _ = np.histogram(v[v > 0.05], bins=edges, density=True)
        ax.plot((edges[:-1] + edges[1:]) / 2, hist, label=str(g), color=color, lw=1.3)
    ax.set_xlabel("normalised intensity (foreground, > 0.05)")
    ax.set_ylabel("density")
    ax.legend(frameon=False, ncol=2)
    ax.set_title(f"Intensity distribution per {by}")
    fig.tight_layout()
    return fig


@legible
def plot_history(histories: dict):
    """Learning curves: loss and accuracy per epoch, train (solid) vs validation (dashed).

    histories: {label: DataFrame with columns epoch (1-based), loss, accuracy, val_loss,
    val_accuracy}, as :attr:`knee_tf.core.model.TrainResult.history` or
    :func:`knee_tf.core.model.read_training_log` give them.
    """
    import seaborn as sns  # lazy: slow import (about 1 s), plotting only

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    colors = sns.color_palette("tab10", len(histories))
    for (label, h), c in zip(histories.items(), colors, strict=True):
        ep = h["epoch"] if "epoch" in h else range(1, len(h) + 1)
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            ax.plot(ep, h[key], color=c, lw=1.4, label=f"{label} train")
            ax.plot(ep, h[f"val_{key}"], color=c, lw=1.4, ls="--", label=f"{label} val")
    for ax, key in zip(axes, ("cross-entropy loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
    axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig


@legible
def plot_confusion(y_true, y_pred, labels=CLASSES, title: str = ""):
    """Confusion matrix with counts and row percentages; y_true, y_pred: int (N,) class indices."""
    import seaborn as sns  # lazy: slow import (about 1 s), plotting only

    k = len(labels)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    pct = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    annot = np.array([[f"{cm[i, j]}\n{pct[i, j]:.0%}" for j in range(k)] for i in range(k)])
    fig, ax = plt.subplots(figsize=(3.6, 3.0))
    sns.heatmap(pct, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                xticklabels=labels, yticklabels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def overlay(ax, image, heatmap=None, alpha: float = 0.45, title: str = ""):
    """Draw a greyscale image (H, W[, 1]) with an optional [0, 1] heatmap in jet on top."""
    ax.imshow(np.asarray(image).squeeze(), cmap="gray", vmin=0, vmax=1)
    if heatmap is not None:
        ax.imshow(np.asarray(heatmap).squeeze(), cmap="jet", vmin=0, vmax=1, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


@legible
def plot_cam_layers(images, cams, layers, row_labels, methods=STUDY_CAM_METHODS):
    """Figure 1: each row an image, then its map at every layer for every method.

    images: float32 (R, H, W, 1); cams: {method: float32 (R, L, H, W)} (a CamResult works);
    methods: registered names (:data:`knee_tf.core.vocab.CAM_METHODS`), titled by their ``METHOD_NAMES``.
    """
    n_cols = 1 + len(layers) * len(methods)
    fig, axes = plt.subplots(len(images), n_cols, figsize=(1.2 * n_cols, 1.35 * len(images)), squeeze=False)
    for r in range(len(images)):
        overlay(axes[r, 0], images[r], title="image" if r == 0 else "")
        axes[r, 0].set_ylabel(row_labels[r])
        for m_i, m in enumerate(methods):
            for l_i, layer in enumerate(layers):
                ax = axes[r, 1 + m_i * len(layers) + l_i]
                overlay(ax, images[r], cams[m][r, l_i], title=f"{METHOD_NAMES[m]}\n{layer}" if r == 0 else "")
    fig.tight_layout(pad=0.3)
    return fig


@legible
def plot_faithfulness(frame):
    """Mean deletion and insertion curves per method and layer (frame from FaithfulnessCurves.frame())."""
    import seaborn as sns  # lazy: slow import (about 1 s), plotting only

    g = sns.relplot(data=frame, x="fraction", y="score", hue="layer", style="method", col="curve", kind="line",
                    height=3.0, aspect=1.15, facet_kws={"sharey": True})
    g.set_axis_labels("fraction of pixels removed / inserted", "target-class probability")
    g.set_titles("{col_name}")
    return g.figure


def _call(p_relevant: float) -> str:
    return f"{class_name(p_relevant)} ({p_relevant:.2f})"


@legible
def plot_augmentation(images, cams, augmented, preds: dict, row_labels, cam_name: str = METHOD_NAMES[GRADCAM]):
    """Figure 2: image | map | inverted mask (1 - M) | augmented image, with each model's calls.

    images, augmented: float32 (R, H, W, 1); cams: float32 (R, H, W) in [0, 1];
    preds: {model name: (p_relevant on the original (R,), p_relevant on the augmented (R,))}.
    """
    fig, axes = plt.subplots(len(images), 4, figsize=(7.6, 2.0 * len(images)), squeeze=False)
    for r in range(len(images)):
        titles = ["image", f"{cam_name} map", "inverted mask 1 - M", "augmented image"] if r == 0 else [""] * 4
        orig = "\n".join(f"{m}: {_call(p[0][r])}" for m, p in preds.items())
        aug = "\n".join(f"{m}: {_call(p[1][r])}" for m, p in preds.items())
        overlay(axes[r, 0], images[r], title=titles[0])
        axes[r, 0].set_xlabel(orig)
        overlay(axes[r, 1], images[r], cams[r], title=titles[1])
        axes[r, 2].imshow(1.0 - np.asarray(cams[r]), cmap="gray", vmin=0, vmax=1)
        axes[r, 2].set_xticks([])
        axes[r, 2].set_yticks([])
        axes[r, 2].set_title(titles[2])
        overlay(axes[r, 3], augmented[r], title=titles[3])
        axes[r, 3].set_xlabel(aug)
        axes[r, 0].set_ylabel(row_labels[r])
    fig.tight_layout()
    return fig


@legible
def plot_a_wrong_b_right(images, cams_a, cams_b, rows, cam_name: str = METHOD_NAMES[GRADCAM]):
    """Figure 3: per row an image that Model A gets wrong and Model B right, with both models' maps.

    images: float32 (R, H, W, 1); cams_a, cams_b: float32 (R, H, W); rows: DataFrame with cohort,
    plane, y_true, p_a, p_b (p_relevant under A and B).
    """
    n = max(len(images), 1)
    fig, axes = plt.subplots(n, 3, figsize=(5.8, 2.0 * n), squeeze=False)
    if len(images) == 0:
        axes[0, 0].text(0.5, 0.5, "no test image is wrong under A and right under B", ha="center")
        for ax in axes[0]:
            ax.axis("off")
        return fig
    for r, row in enumerate(rows.itertuples()):
        overlay(axes[r, 0], images[r], title="image" if r == 0 else "")
        axes[r, 0].set_ylabel(f"{row.cohort} · {row.plane}\ntrue: {CLASSES[row.y_true]}")
        overlay(axes[r, 1], images[r], cams_a[r], title=f"Model A {cam_name}" if r == 0 else "")
        axes[r, 1].set_xlabel(f"A: {_call(row.p_a)}")
        overlay(axes[r, 2], images[r], cams_b[r], title=f"Model B {cam_name}" if r == 0 else "")
        axes[r, 2].set_xlabel(f"B: {_call(row.p_b)}")
    fig.tight_layout()
    return fig


@legible
def plot_severity(severity):
    """Accuracy vs severity per held-out corruption, Model A vs B (mean over seeds, CI band).

    severity: DataFrame with model, corruption, severity, seed, accuracy, ci_low, ci_high.
    """
    import seaborn as sns  # lazy: slow import (about 1 s), plotting only

    g = sns.relplot(data=severity, x="severity", y="accuracy", hue="model", col="corruption", kind="line",
                    marker="o", errorbar=None, height=2.6, aspect=1.0, palette={MODEL_A: "#4c72b0", MODEL_B: "#dd8452"})
    mean = severity.groupby(["corruption", "model", "severity"], as_index=False)[["ci_low", "ci_high"]].mean()
    colors = {MODEL_A: "#4c72b0", MODEL_B: "#dd8452"}
    for name, ax in g.axes_dict.items():
        for m, d in mean[mean["corruption"] == name].groupby("model"):
            ax.fill_between(d["severity"], d["ci_low"], d["ci_high"], color=colors.get(m, "grey"), alpha=0.2, lw=0)
    g.set_titles("{col_name}")
    g.set(ylim=(0.3, 1.0), xticks=sorted(severity["severity"].unique()), xlabel="severity (0 = clean)")
    return g.figure


@legible
def plot_cam_view(view, layer: str, method: str, fractions, scores, auc: float, label: str = ""):
    """The Grad-CAM explorer's figure: image | map overlay | the other class's map | deletion curve.

    view: a :class:`knee_tf.teach.explore.CamView`; fractions, scores: the image's deletion curve for the
    shown map (target-class probability as the top-ranked pixels are blacked out); auc: its area.
    """
    explained, other = CLASSES[view.predicted], CLASSES[1 - view.predicted]
    fig, axes = plt.subplots(1, 4, figsize=(10.5, 2.7), gridspec_kw={"width_ratios": [1, 1, 1, 1.4]})
    overlay(axes[0], view.image, title=f"image ({label})" if label else "image")
    overlay(axes[1], view.image, view.map(method, layer), title=f"{METHOD_NAMES[method]} {layer}\n"
                                                                 f"for {explained} (the call)")
    overlay(axes[2], view.image, view.map(method, layer, other=True), title=f"{METHOD_NAMES[method]} {layer}\n"
                                                                              f"for {other}")
    ax = axes[3]
    ax.plot(fractions, scores, marker="o", ms=3)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("fraction of pixels removed (map order)")
    ax.set_ylabel(f"p({explained})")
    ax.set_title(f"deletion curve, AUC {auc:.3f}")
    fig.tight_layout(pad=0.4)
    return fig


@legible
def plot_augment_view(image, mask, augmented, weight: float, transform: str):
    """The augmentation explorer's figure: image | mask M | augmented image ``image * (1 - w * M)``."""
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
    overlay(axes[0], image, title="image")
    axes[1].imshow(mask, cmap="magma", vmin=0, vmax=1)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[1].set_title("mask M (map at the augmentation layer)")
    overlay(axes[2], augmented, title=f"{transform}: image × (1 − {weight:.3f}·M)")
    fig.tight_layout(pad=0.4)
    return fig

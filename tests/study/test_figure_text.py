"""Every figure the package makes is legible on a projector: each text it draws (titles, labels, tick
labels, legend entries, annotations) shows at no less than ``plots.MIN_TEXT_PT`` points at the size a
page embeds it (``plots.shown_points``: the figure's dpi, and its width against the page's column).

Each figure is built on small inputs shaped like the study's (the controls figures on the published
tables in results/, the largest the package draws), then drawn the way it is embedded: as a notebook
output at ``startup.INLINE_DPI`` and as a file at ``savefig``'s 120 dpi; the explorers' figures at
``explore.FIGURE_DPI``. The sizes are read from what the renderer actually draws, so a text that is
not drawn (an empty label, a hidden axis) does not count and one that is (a seaborn legend) does.

To look at the figures: KNEE_TF_FIGURES_TO=DIR pytest tests/study/test_figure_text.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from PIL import Image  # noqa: E402

from knee_tf.controls import figures  # noqa: E402
from knee_tf.controls.arms import figure_panels  # noqa: E402
from knee_tf.core import startup  # noqa: E402
from knee_tf.core.vocab import CLASSES, GRADCAM, MODEL_A, MODEL_B, PLANES, STUDY_CAM_METHODS  # noqa: E402
from knee_tf.study import plots  # noqa: E402
from knee_tf.teach import explore  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FILE_DPI = 120  # plots.savefig's default: the files in figures/ and runs/<run>/figures/


@contextlib.contextmanager
def drawn_texts():
    """Record (text, size in points at the figure's own size) of every text the Agg renderer draws."""
    seen, draw = [], RendererAgg.draw_text

    def record(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if str(s).strip():
            seen.append((str(s), prop.get_size_in_points()))
        return draw(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    RendererAgg.draw_text = record
    try:
        yield seen
    finally:
        RendererAgg.draw_text = draw


def shown_sizes(fig, dpi: int) -> tuple[int, list[tuple[str, float]]]:
    """Draw ``fig`` as a tight PNG at ``dpi`` (as notebooks and savefig do); return its width in pixels
    and (text, points as a page shows it) for every text drawn."""
    buf = io.BytesIO()
    with drawn_texts() as seen:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    width = Image.open(io.BytesIO(buf.getvalue())).size[0]
    return width, [(s, plots.shown_points(size, dpi, width)) for s, size in seen]


# ----------------------------------------------------------------------------- inputs shaped like the study's


def _images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 1), dtype=np.float32)


def _index(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"plane": [PLANES[i % 3] for i in range(n)], "label": [CLASSES[(i // 3) % 2] for i in range(n)],
                         "split": [("train", "val", "test")[i % 3] for i in range(n)],
                         "site": [f"site_{k}" for k in rng.integers(0, 7, n)]})


def _history(n: int = 12) -> pd.DataFrame:
    e = np.arange(1, n + 1)
    return pd.DataFrame({"epoch": e, "loss": 1 / e, "accuracy": 1 - 0.5 / e, "val_loss": 1.1 / e,
                         "val_accuracy": 1 - 0.6 / e})


def _severity() -> pd.DataFrame:
    rows = [{"model": m, "corruption": c, "severity": s, "seed": 0, "accuracy": 0.9 - 0.05 * s,
             "ci_low": 0.85 - 0.05 * s, "ci_high": 0.95 - 0.05 * s}
            for m in (MODEL_A, MODEL_B) for c in ("bias_field", "coil_dropout", "rician_noise", "motion_ghosting")
            for s in range(6)]
    return pd.DataFrame(rows)


def _faithfulness() -> pd.DataFrame:
    rows = [{"method": m, "layer": f"pool{k}", "curve": c, "fraction": f, "score": 1 - f * k / 4}
            for m in STUDY_CAM_METHODS for k in range(1, 5) for c in ("deletion", "insertion")
            for f in np.linspace(0, 1, 11)]
    return pd.DataFrame(rows)


def _cam_view() -> explore.CamView:
    layers = ("pool1", "pool2", "pool3", "pool4")
    maps = {m: np.random.default_rng(2).random((4, 64, 64), dtype=np.float32) for m in STUDY_CAM_METHODS}
    return explore.CamView(image=_images(1)[0], layers=layers, methods=STUDY_CAM_METHODS, maps=maps, other=maps,
                           p_relevant=0.8, predicted=1)


def _wrong_right_rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"cohort": ["metal"] * n, "plane": list(PLANES[:n]), "y_true": [1] * n,
                         "p_a": [0.2] * n, "p_b": [0.9] * n})


def _published(name: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / "results" / name)


def _learning_curves(arms: pd.DataFrame) -> dict:
    have = set(arms["arm"])
    curves = {}
    for arm in (MODEL_A, MODEL_B):
        points = sorted((int(a.rsplit("_n", 1)[1]), a) for a in have if a.startswith(f"{arm}_n") and a[len(arm) + 2:].isdigit())
        curves[arm] = [(a, n) for n, a in points] + [(arm, 359)]
    return curves


def study_figures():
    """(name, build, dpis): every figure of knee_tf.study.plots and knee_tf.controls.figures, the way notebooks
    01-07 and the tour call them."""
    n = 12
    images, index = _images(n), _index(n)
    cams = {m: np.random.default_rng(3).random((3, 4, 64, 64), dtype=np.float32) for m in STUDY_CAM_METHODS}
    effects = _published("effects.csv")
    versus_a = effects[effects["reference"] == MODEL_A]
    arms, presc = _published("arms.csv"), _published("prescription.csv")
    panels = {name: [(a, label) for a, label in panel if a in set(effects["arm"])] for name, panel in figure_panels().items()}
    preds = {"A": (np.full(3, 0.8), np.full(3, 0.3)), "B": (np.full(3, 0.9), np.full(3, 0.7))}
    both = (startup.INLINE_DPI, FILE_DPI)
    return [
        ("counts", lambda: plots.plot_counts(index), both),
        ("montage", lambda: plots.plane_label_montage(images, index, per_cell=4), both),
        ("montage_sites", lambda: plots.montage(images, index.assign(plane=index["plane"]), rows="plane", cols="site",
                                                per_cell=1, row_order=list(PLANES)), both),
        ("intensity", lambda: plots.intensity_histograms(images, index, by="site"), both),
        ("history", lambda: plots.plot_history({"A seed 0": _history(), "A seed 1": _history(9), "B seed 0": _history()}),
         both),
        ("confusion", lambda: plots.plot_confusion([0, 1, 1, 0], [0, 1, 0, 0], title="Model A, normal test, seed 0"),
         both),
        ("cam_layers", lambda: plots.plot_cam_layers(images[:3], cams, ["pool1", "pool2", "pool3", "pool4"],
                                                      ["axial\nrelevant", "sagittal\nirrelevant", "coronal\nrelevant"]),
         both),
        ("faithfulness", lambda: plots.plot_faithfulness(_faithfulness()), both),
        ("augmentation", lambda: plots.plot_augmentation(images[:3], cams[GRADCAM][:, 3], images[:3], preds,
                                                          ["axial · relevant", "sagittal · irrelevant", "coronal · relevant"]), both),
        ("a_wrong_b_right", lambda: plots.plot_a_wrong_b_right(images[:3], cams[GRADCAM][:, 3], cams[GRADCAM][:, 0],
                                                               _wrong_right_rows(3)), both),
        ("a_wrong_b_right_none", lambda: plots.plot_a_wrong_b_right(images[:0], None, None, _wrong_right_rows(0)), both),
        ("severity", lambda: plots.plot_severity(_severity()), both),
        ("forest", lambda: figures.plot_forest(versus_a), both),
        ("ablations", lambda: figures.plot_ablations(versus_a, {k: v for k, v in panels.items() if len(v) > 1}), both),
        ("learning_curve", lambda: figures.plot_learning_curve(arms, _learning_curves(arms)), both),
        ("prescription", lambda: figures.plot_prescription(presc, arms=list(dict.fromkeys(presc["arm"]))), both),
        ("cam_view", lambda: plots.plot_cam_view(_cam_view(), "pool4", GRADCAM, np.linspace(0, 1, 11),
                                                 np.linspace(1, 0, 11), 0.42, label="axial · relevant"),
         (explore.FIGURE_DPI,)),
        ("augment_view", lambda: plots.plot_augment_view(images[0], images[1, ..., 0], images[2], 0.25, "weighted"),
         (explore.FIGURE_DPI,)),
    ]


FIGURES = study_figures()


def test_every_plotting_function_is_measured():
    """A new plotting function must join FIGURES: every public plot_* and montage function is built here."""
    built = " ".join(name for name, _, _ in FIGURES)
    public = [n for mod in (plots, figures) for n in dir(mod) if n.startswith(("plot_", "montage", "plane_label_montage", "intensity"))]
    names = {"plot_counts": "counts", "montage": "montage_sites", "plane_label_montage": "montage",
             "intensity_histograms": "intensity", "plot_history": "history", "plot_confusion": "confusion",
             "plot_cam_layers": "cam_layers", "plot_faithfulness": "faithfulness", "plot_augmentation": "augmentation",
             "plot_a_wrong_b_right": "a_wrong_b_right", "plot_severity": "severity", "plot_cam_view": "cam_view",
             "plot_augment_view": "augment_view", "plot_forest": "forest", "plot_ablations": "ablations",
             "plot_learning_curve": "learning_curve", "plot_prescription": "prescription"}
    assert sorted(public) == sorted(names), sorted(set(public) ^ set(names))
    assert all(names[n] in built.split() for n in public)


def test_shown_points_scales_with_dpi_and_a_figure_wider_than_the_page():
    assert plots.shown_points(12, 72, 600) == pytest.approx(9.0)
    assert plots.shown_points(12, 120, 1600) == pytest.approx(12 * 1.25 * 0.5)
    assert plots.TEXT_PT * plots.MIN_EMBED_DPI / plots.CSS_PX_PER_INCH == pytest.approx(plots.MIN_TEXT_PT)
    assert plots.MIN_EMBED_DPI == min(startup.INLINE_DPI, explore.FIGURE_DPI)


@pytest.mark.parametrize("name,build,dpis", FIGURES, ids=[f[0] for f in FIGURES])
def test_every_text_of_every_figure_is_legible_where_it_is_embedded(name, build, dpis, tmp_path):
    fig = build()
    try:
        for dpi in dpis:
            width, sizes = shown_sizes(fig, dpi)
            assert sizes, f"{name}: no text drawn"
            small = sorted({(round(pt, 1), s) for s, pt in sizes if pt < plots.MIN_TEXT_PT - 1e-6})
            assert not small, (f"{name} at {dpi} dpi ({width} px wide): {len(small)} text(s) below "
                               f"{plots.MIN_TEXT_PT} pt as shown, smallest {small[:5]}")
        if os.environ.get("KNEE_TF_FIGURES_TO"):
            path = plots.savefig(fig, name, tmp_path)
            shutil.copy(path, os.environ["KNEE_TF_FIGURES_TO"])
    finally:
        plt.close(fig)

"""One difficulty-calibration trial of the phantom, with Model A alone (issue 10).

For one setting of the ``synth_*`` difficulty fields of :class:`knee_tf.study.config.StudyConfig`:
synthesise the default 513-exam dataset, ingest it, train Model A (seed 0 unless ``--set seed=N``,
the default training settings), and append one row to ``docs/calibration.csv``: UTC time, the settings, Model A's
normal-test accuracy with its bootstrap CI, the share of A's errors that are label-noise errors
(annotator label != geometric rule label), Model A's seed, the linear baseline, and (for information) A on the
new_site and metal cohorts. Model B and the augmentation are never trained or evaluated here.

    python bench/calibrate.py --set synth_texture=1.0 --set synth_snr_scale=0.8 --note "first try"

The data and cache go to a scratch folder (``--work``, default /tmp/knee-tf-calibrate); nothing in
``data/`` or ``runs/`` is touched.

``--relabel``: reuse the images already in ``--work`` and change only the label knobs
(``synth_annotator_spread``, ``synth_quality_shift_mm``). Those knobs draw from their own random
streams and never touch the pixels, so the images are exactly those a fresh synthesis would write;
the labels are recomputed from the phantom's geometry (:func:`knee_tf.phantom.synth.prepare_exam`).
The script refuses when an image knob differs from the one the images were made with.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LOG = ROOT / "docs" / "calibration.csv"
IMAGE_FIELDS = ("synth_texture", "synth_snr_scale", "synth_hard_share", "synth_ghost_probability")
FIELDS = ("synth_texture", "synth_snr_scale", "synth_hard_share", "synth_annotator_spread",
          "synth_quality_shift_mm", "synth_ghost_probability")
COLUMNS = ("utc", *FIELDS, "seed", "label_noise_rate", "a_normal_acc", "a_normal_ci_low",
           "a_normal_ci_high", "noise_share_of_errors", "linear_baseline", "a_new_site_acc",
           "a_metal_acc", "epochs_run", "synth_s", "commit", "note")


def _prepared_exams(cfg, plan):
    """(task, :func:`knee_tf.phantom.synth.prepare_exam` of it) for each exam of ``plan``, with
    ``cfg``'s synthesis settings: the geometry and labels a synthesis would write, without pixels."""
    from dataclasses import asdict

    from knee_tf.phantom.synth import prepare_exam

    diff = asdict(cfg.synth_difficulty())
    for task in plan.to_dict("records"):
        yield task, prepare_exam(dict(task, seed=cfg.synth_seed, out_dir="", base_matrix=cfg.synth_matrix,
                                      difficulty=diff))


def _relabel(index, cfg):
    """The ingest index with label and label-noise columns recomputed for cfg's label knobs."""

    from knee_tf.core.vocab import LABEL_NOISE_COLUMN
    from knee_tf.phantom.synth import plan_exams

    new = {}
    for task, ex in _prepared_exams(cfg, plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction)):
        for k, sl in enumerate(ex["slices"], start=1):
            new[f"{task['exam_id']}_{k:02d}"] = (sl["label"], str(bool(sl["flipped"])))
    out = index.copy()
    out["label"] = [new[i][0] for i in out["image_id"]]
    out[LABEL_NOISE_COLUMN] = [new[i][1] for i in out["image_id"]]
    return out


def markdown_table(path: Path) -> str:
    """The calibration log as a Markdown table (knobs, then results; one row per trial)."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    cols = ("utc", "synth_texture", "synth_snr_scale", "synth_hard_share", "synth_annotator_spread",
            "synth_quality_shift_mm", "synth_ghost_probability", "seed", "label_noise_rate", "a_normal_acc",
            "a_normal_ci_low", "a_normal_ci_high", "noise_share_of_errors", "linear_baseline",
            "a_new_site_acc", "a_metal_acc", "epochs_run", "synth_s", "commit")
    short = [c if c == "synth_s" else c.replace("synth_", "") for c in cols]
    lines = ["| " + " | ".join(short) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r.get(c, "") for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def error_breakdown(predictions: Path) -> str:
    """Where a trial's Model A errs on the normal test images (from ``test_predictions.csv``): by
    distance to the rule boundary, plane, site and plane x side of the boundary."""
    import pandas as pd

    p = pd.read_csv(predictions)
    return _breakdown(p[p["cohort"] == "normal"], str(predictions))


def grid_error_breakdown(grid: Path, manifest: Path) -> str:
    """The same breakdown for the published grid's Model A jobs (``<grid>/model_a_seed*/``), every seed
    pooled, joined to the manifest's rule geometry; plus plane x distance to the boundary."""
    import pandas as pd

    n, n_jobs, every = _grid_model_a_errors(grid, manifest, ("label_flipped",))
    n["correct"] = ~n["error"]
    title = f"{_shown(grid)}: Model A, {n_jobs} seeds pooled"
    out = _breakdown(n, title)
    n["|distance| mm"] = pd.cut(n["boundary_distance_mm"].abs(), [0, 4, 8, 12, 24, np.inf], right=False)
    n["side"] = np.where(n["boundary_distance_mm"] >= 0, "inside", "outside")
    g = n.groupby(["plane", "side", "|distance| mm"], observed=True)["error"].agg(["size", "mean"])
    out += "\n\nerror rate by plane, side of the boundary and distance to it\n" + g.round(3).unstack(0).to_string()
    # the slice protocol: the held-out site is modelled on the measured GE localizer (9 slices, 10-11 mm)
    full = pd.read_csv(manifest, usecols=["image_id", "split", "cohort", "boundary_distance_mm", "spacing_mm"])
    acc = ((every["p_relevant"] >= 0.5).astype(int) == every["y_true"]).groupby(every["cohort"].astype(str)).mean()
    lines = ["\nslice protocol of the test cohorts (manifest) and Model A's accuracy there (seeds pooled)"]
    for cohort in ("normal", "new_site"):
        t = full[(full["split"] == "test") & (full["cohort"] == cohort)]
        d = t["boundary_distance_mm"].abs()
        lines.append(f"{cohort:9s} {len(t)} slices, median spacing {t['spacing_mm'].median():.1f} mm, "
                     f"within 8 mm of the boundary {(d < 8).mean():.3f}, more than 24 mm {(d > 24).mean():.3f}; "
                     f"Model A accuracy {acc.get(cohort, float('nan')):.4f}")
    return out + "\n".join(lines)


def _grid_model_a_errors(grid: Path, manifest: Path, columns=()):
    """(the published Model A jobs' normal-test predictions, seeds pooled, no corruption, joined to the
    manifest's signed boundary distance and ``columns``, with an ``error`` column; the number of jobs;
    every uncorrupted prediction of those jobs)."""
    import pandas as pd

    m = pd.read_csv(manifest, usecols=["image_id", "boundary_distance_mm", *columns])
    paths = sorted(grid.glob("model_a_seed*/predictions.parquet"))
    if not paths:
        raise SystemExit(f"{grid}: no published Model A job (model_a_seed*/predictions.parquet)")
    every = pd.concat([pd.read_parquet(q) for q in paths], ignore_index=True)
    every = every[every["corruption"] == "none"]
    p = every[every["cohort"] == "normal"].astype({"image_id": str, "plane": str, "site": str})
    n = p.merge(m, on="image_id", how="left", validate="many_to_one")
    if n["boundary_distance_mm"].isna().any():
        raise SystemExit(f"{manifest}: lacks image(s) of the published predictions, e.g. "
                         f"{n.loc[n['boundary_distance_mm'].isna(), 'image_id'].iloc[0]}")
    n["error"] = (n["p_relevant"] >= 0.5).astype(int) != n["y_true"]
    return n, len(paths), every


def _shown(path: Path) -> str:
    """A path as logs show it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


ESTIMATE_BANDS = (0.0, 4.0, 8.0, 12.0, 24.0, np.inf)


def geometry_estimate(grid: Path, manifest: Path, centring: dict | None = None, stretch: float = 1.0) -> str:
    """Model A's normal-test accuracy as the slice geometry alone predicts it, without training: the
    published Model A jobs' error rate per plane, side of the rule boundary and distance band, applied
    to the boundary distances of the default dataset's normal test slices (:func:`prepare_exam`, cheap).

    centring: {plane: sd mm} replacing ``synth.CENTRING_SD_MM`` (where the localizer stack is placed);
    stretch: distances divided by it before the lookup, as if the band where Model A is unsure were
    that much wider (e.g. thicker slices). With neither, the estimate must give back the measured
    accuracy (a check of the method)."""
    from knee_tf.phantom import synth
    from knee_tf.study.config import StudyConfig

    n, n_jobs, _ = _grid_model_a_errors(grid, manifest)
    n["side"] = np.where(n["boundary_distance_mm"] >= 0, "inside", "outside")
    n["band"] = np.searchsorted(ESTIMATE_BANDS, n["boundary_distance_mm"].abs(), side="right") - 1
    rate = n.groupby(["plane", "side", "band"])["error"].mean().to_dict()
    cfg = StudyConfig()
    plan = synth.plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction)
    plan = plan[(plan["cohort"] == "normal") & (plan["split"] == "test")]
    saved = dict(synth.CENTRING_SD_MM)
    synth.CENTRING_SD_MM.update(centring or {})
    try:
        errs = []
        for _task, ex in _prepared_exams(cfg, plan):
            for sl in ex["slices"]:
                d = sl["dist"]
                band = int(np.searchsorted(ESTIMATE_BANDS, abs(d) / stretch, side="right") - 1)
                errs.append(rate[(sl["plane"], "inside" if d >= 0 else "outside", band)])
    finally:
        synth.CENTRING_SD_MM.clear()
        synth.CENTRING_SD_MM.update(saved)
    return (f"{_shown(grid)}: Model A, {n_jobs} seeds pooled, measured accuracy {1 - n['error'].mean():.4f}; "
            f"centring sd {dict(saved, **(centring or {}))}, band stretch {stretch}: "
            f"estimated accuracy {1 - np.mean(errs):.4f} over {len(errs)} normal test slices")


def _breakdown(n, title: str) -> str:
    import pandas as pd

    n = n.copy()
    n["error"] = ~n["correct"].astype(bool)
    n["label_noise"] = n["label_flipped"].astype(str).str.lower() == "true"
    n["|distance| mm"] = pd.cut(n["boundary_distance_mm"].abs(), [0, 2, 4, 6, 8, 12, 16, 24, np.inf], right=False)
    n["side"] = np.where(n["boundary_distance_mm"] >= 0, "inside", "outside")
    out = [f"{title}: {len(n)} normal test images, accuracy {1 - n['error'].mean():.4f}, "
           f"label-noise share of errors {n.loc[n['error'], 'label_noise'].mean():.4f}"]
    for by in ("|distance| mm", "plane", "site", ["plane", "side"]):
        g = n.groupby(by, observed=True).agg(images=("error", "size"), error_rate=("error", "mean"),
                                             label_noise=("label_noise", "mean"))
        out.append(g.round(3).to_string())
    return "\n\n".join(out)


def _commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "knee_tf"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--work", default="/tmp/knee-tf-calibrate")
    p.add_argument("--note", default="")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--table", action="store_true",
                   help="print docs/calibration.csv as a Markdown table (for docs/calibration.md) and exit")
    p.add_argument("--errors", metavar="WORK", default=None,
                   help="print where the trial in WORK (its test_predictions.csv) errs, and exit")
    p.add_argument("--grid-errors", action="store_true",
                   help="print where the published grid's Model A jobs (results/grid/) err, and exit")
    p.add_argument("--geometry-estimate", action="store_true",
                   help="estimate Model A's accuracy from the slice geometry alone (no training) and exit")
    p.add_argument("--centring", default="", metavar="PLANE=SD,...",
                   help="with --geometry-estimate: centring sd (mm) per plane, e.g. axial=8,sagittal=10")
    p.add_argument("--stretch", type=float, default=1.0,
                   help="with --geometry-estimate: widen Model A's distance bands by this factor")
    p.add_argument("--relabel", action="store_true",
                   help="reuse the images in --work, recompute labels for new label knobs")
    a = p.parse_args(argv)
    if a.table:
        print(markdown_table(LOG))
        return 0
    if a.errors:
        print(error_breakdown(Path(a.errors) / "test_predictions.csv"))
        return 0
    if a.grid_errors:
        print(grid_error_breakdown(ROOT / "results" / "grid", ROOT / "data_manifest.csv"))
        return 0
    if a.geometry_estimate:
        centring = {k: float(v) for k, v in (kv.split("=") for kv in a.centring.split(",") if kv)}
        print(geometry_estimate(ROOT / "results" / "grid", ROOT / "data_manifest.csv", centring, a.stretch))
        return 0

    from knee_tf.core.model import predict_proba, seed_everything, train_classifier
    from knee_tf.core.vocab import (
        LABEL_NOISE_COLUMN,
        METAL,
        MODEL_A,
        NEW_SITE,
        NORMAL,
        TEST,
        TRAIN,
        VAL,
        predicted_class,
    )
    from knee_tf.data.ingest import ingest
    from knee_tf.phantom import synthesize
    from knee_tf.study.baseline import linear_baseline
    from knee_tf.study.config import StudyConfig
    from knee_tf.study.evaluate import accuracy_ci

    cfg = StudyConfig().with_settings(a.set)
    commit = _commit()  # the code the trial runs (taken at the start: later commits do not count)
    work = Path(a.work)
    data_dir = work / "data"
    made_with = work / "settings.json"
    t0 = time.perf_counter()
    if a.relabel:
        old = json.loads(made_with.read_text())
        bad = [f for f in IMAGE_FIELDS if old[f] != getattr(cfg, f)]
        if bad:
            raise SystemExit(f"--relabel: {', '.join(bad)} differ from the images in {work}")
        synth_s = float("nan")
    else:
        synthesize(data_dir, n_exams=cfg.n_exams, seed=cfg.synth_seed, matrix=cfg.synth_matrix,
                   metal_fraction=cfg.metal_fraction, workers=a.workers or None,
                   difficulty=cfg.synth_difficulty())
        synth_s = time.perf_counter() - t0
        made_with.write_text(json.dumps({f: getattr(cfg, f) for f in FIELDS}))
    data = ingest(data_dir / "data_manifest.csv", data_dir, work / "cache", cfg.image_size,
                  workers=a.workers or None)
    if a.relabel:
        data = replace(data, index=_relabel(data.index, cfg))
    seed_everything(cfg.seed)
    x_tr, y_tr, _ = data.split(TRAIN, cohort=NORMAL)
    x_va, y_va, _ = data.split(VAL, cohort=NORMAL)
    res = train_classifier(x_tr, y_tr, x_va, y_va, work / f"model_{MODEL_A}.keras", seed=cfg.seed,
                           verbose=2, **cfg.training_settings())
    acc = {}
    frames = []
    noise_share = float("nan")
    for cohort in (NORMAL, NEW_SITE, METAL):
        x, y, idx = data.split(TEST, cohort=cohort)
        if not len(x):
            continue
        pred = predicted_class(predict_proba(res.model, x, cfg.predict_batch_size)[:, 1])
        correct = pred == y
        acc[cohort] = accuracy_ci(correct, n_boot=cfg.n_bootstrap, seed=0)
        frame = idx.assign(prob_relevant=predict_proba(res.model, x, cfg.predict_batch_size)[:, 1],
                           correct=correct)
        frames.append(frame)
        if cohort == NORMAL:
            noisy = idx[LABEL_NOISE_COLUMN].astype(str).str.lower() == "true"
            noise_share = float(noisy[~correct].mean()) if (~correct).any() else 0.0
            x_test, y_test = x, y
    # every test prediction beside the phantom's manifest (boundary distance, site, hard exam ...),
    # so a trial's errors can be analysed afterwards: work/test_predictions.csv
    import pandas as pd
    manifest = pd.read_csv(data_dir / "data_manifest.csv")
    keep = [c for c in manifest.columns if c not in frames[0].columns or c == "image_id"]
    preds = pd.concat(frames).merge(manifest[keep], on="image_id", how="left", validate="1:1")
    preds.to_csv(work / "test_predictions.csv", index=False)
    base = linear_baseline(x_tr, y_tr, x_test, y_test)
    flips = data.index[LABEL_NOISE_COLUMN].astype(str).str.lower() == "true"
    # metal exams' labels are the same annotator model; the rate is over every image
    row = {"utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
           **{f: getattr(cfg, f) for f in FIELDS},
           "seed": cfg.seed,
           "label_noise_rate": round(float(flips.mean()), 4),
           "a_normal_acc": round(acc[NORMAL][0], 4), "a_normal_ci_low": round(acc[NORMAL][1], 4),
           "a_normal_ci_high": round(acc[NORMAL][2], 4),
           "noise_share_of_errors": round(noise_share, 4),
           "linear_baseline": round(float(base["accuracy"]), 4),
           "a_new_site_acc": round(acc[NEW_SITE][0], 4) if NEW_SITE in acc else "",
           "a_metal_acc": round(acc[METAL][0], 4) if METAL in acc else "",
           "epochs_run": len(res.history), "synth_s": round(synth_s, 1), "commit": commit,
           "note": a.note}
    new = not LOG.exists()
    with LOG.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            w.writeheader()
        w.writerow(row)
    print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

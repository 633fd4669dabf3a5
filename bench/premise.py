"""Issue 27, part 3: is Model A fooled by masks made from its own maps? The published measurement.

Loads one trained Model A (a grid job folder: ``model.keras`` and ``job.json``), the config's
held-out normal test images (ingested from the config's data root into its cache), and runs
:mod:`knee_tf.study.premise`: the dose-response over layer x method x weight (plus a smoothing x
threshold sweep at pool4), deletion of the top-k % of map pixels against random pixels and the
inverse map, and the limb coverage of every map. Writes

    results/premise/dose_response.csv   accuracy, drop, flip rate and doses per condition, overall / per class / per plane
    results/premise/deletion.csv        target probability and flip rate per share of pixels deleted
    results/premise/coverage.csv        limb coverage per layer and method, overall / per plane
    figures/premise_*.png               the page's figures
    docs/premise.md                     the page, generated from the three tables

Every table carries the model's provenance (arm, seed, training commit, machine, precision) and the
commit of this analysis. ``--doc-only`` regenerates docs/premise.md from the tables.

    python bench/premise.py --job runs/gridA/models/model_A_seed0
    python bench/premise.py --doc-only
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this tree's knee_tf, not another checkout's editable install
OUT = ROOT / "results" / "premise"
FIGURES = ROOT / "figures"
DOC = ROOT / "docs" / "premise.md"
TABLES = ("dose_response", "deletion", "coverage")
#: The declared design (fixed before the model was looked at; not tuned to any target).
#: (Cut from a 150-condition design when that ran at 10 s a condition on a shared 2-core machine.)
WEIGHTS = (0.25, 0.5, 0.75, 0.9, 1.0)
SIGMAS = (0.0, 4.0, 8.0)
THRESHOLDS = (0.0, 0.4)
SWEEP_WEIGHTS = (1.0,)
#: Deletion curves: steps (fractions 0, 0.1, ..., 1) and a seeded subset of the test images.
DELETION_STEPS = 10
DELETION_IMAGES = 500


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(job_dir: Path) -> dict:
    """The model's provenance columns, from its job.json, plus this analysis's commit."""
    job = json.loads((job_dir / "job.json").read_text())
    if str(job.get("code_commit", "")).endswith("+dirty"):
        sys.exit(f"error: {job_dir / 'job.json'}: trained from a dirty tree ({job['code_commit']}); "
                 "published measurements need a model trained from a clean commit")
    dirty = "+dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
    if dirty:
        sys.exit("error: uncommitted changes in this tree: commit them first (published tables name a clean commit)")
    return {"model_arm": job["arm"], "model_seed": int(job["seed"]), "model_commit": job.get("code_commit", ""),
            "model_machine": f"{job.get('host', '?')} ({_cpu()}, {job.get('tf_threads', '?')} TF threads)",
            "model_precision": job.get("precision", ""), "model_epochs_run": job.get("epochs_run", ""),
            "analysis_commit": _git("rev-parse", "HEAD") + dirty}


def measure(job_dir: Path, config: str, limit: int, workers: int) -> dict[str, pd.DataFrame]:
    """Run the three measurements; returns {table name: DataFrame} with provenance columns."""
    from tqdm.auto import tqdm

    from knee_tf.core.arrays import pick_examples, shows_anatomy
    from knee_tf.core.cam import compute_cams
    from knee_tf.core.model import load_model, seed_everything
    from knee_tf.core.vocab import (
        CAM_METHODS,
        METHOD_NAMES,
        MODEL_A,
        NORMAL,
        STUDY_CAM_METHODS,
        TEST,
    )
    from knee_tf.data.ingest import ingest
    from knee_tf.study import plots, premise, premise_report
    from knee_tf.study.config import get_config, resolve

    cfg = get_config(config)
    prov = provenance(job_dir)
    if prov["model_arm"] != MODEL_A:
        raise SystemExit(f"{job_dir}: arm {prov['model_arm']!r}; this measurement is for Model A only")
    seed_everything(cfg.seed)
    root = resolve(cfg.data_root)
    data = ingest(root / "data_manifest.csv", root, cache_dir=resolve(cfg.cache_dir), image_size=cfg.image_size,
                  on_error=cfg.on_error, workers=workers or None)
    x, _, index = data.split(TEST, cohort=NORMAL)
    if limit:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(x), min(limit, len(x)), replace=False))
        x, index = x[keep], index.iloc[keep]
    x, index = np.asarray(x, np.float32), index.reset_index(drop=True)
    model = load_model(job_dir / "model.keras")
    layers = tuple(cfg.cam_layers)
    cams = compute_cams(model, x, layers, CAM_METHODS, batch_size=cfg.cam_batch_size)
    limb = premise.limb_mask(x)
    specs = premise.mask_design(layers, CAM_METHODS, WEIGHTS, SIGMAS, THRESHOLDS, cfg.aug_layer, SWEEP_WEIGHTS)
    print(f"{len(x)} held-out normal test images, {len(specs)} mask conditions")
    outcomes = premise.dose_response(model, x, index, cams, layers, specs, limb, cfg.predict_batch_size,
                                     progress=lambda s: tqdm(s, desc="conditions", unit="cond"))
    summary = premise.summarise_outcomes(outcomes)
    frames = []
    sub = np.sort(np.random.default_rng(cfg.seed).choice(len(x), min(DELETION_IMAGES, len(x)), replace=False))
    for method in STUDY_CAM_METHODS:  # the paper's two methods (LayerCAM is in the dose-response only)
        d = premise.deletion_comparison(model, x[sub], cams[method][sub, layers.index(cfg.aug_layer)], method,
                                        DELETION_STEPS, seed=cfg.seed, batch_size=cfg.predict_batch_size,
                                        progress=True)
        d.insert(0, "map", f"{METHOD_NAMES[method]} {cfg.aug_layer}")
        frames.append(d)
    deletion = pd.concat(frames, ignore_index=True)
    coverage = premise.summarise_coverage(premise.map_coverage(cams, layers, limb), index["plane"])

    rows = pick_examples(index, seed=cfg.seed, mask=shows_anatomy(index))
    k = layers.index(cfg.aug_layer)
    titles = [f"{p} · {lab}" for p, lab in zip(index["plane"].iloc[rows], index["label"].iloc[rows], strict=True)]
    figs = {"premise_dose_response": premise_report.plot_dose_response(summary),
            "premise_area": premise_report.plot_dose_vs_area(summary),
            "premise_deletion": premise_report.plot_deletion(deletion),
            "premise_coverage": premise_report.plot_coverage_examples(
                x[rows], cams[cfg.cohort3_method][rows, k], limb[rows], titles)}
    for name, fig in figs.items():
        plots.savefig(fig, name, FIGURES, close=True)
    tables = {"dose_response": summary, "deletion": deletion, "coverage": coverage}
    return {name: t.assign(**prov) for name, t in tables.items()}


def write_doc(config: str) -> None:
    from knee_tf.core.io import atomic_write_text
    from knee_tf.study.config import get_config
    from knee_tf.study.premise import cohort3_spec
    from knee_tf.study.premise_report import premise_markdown

    t = {name: pd.read_csv(OUT / f"{name}.csv") for name in TABLES}
    spec = cohort3_spec(get_config(config))
    atomic_write_text(DOC, premise_markdown(t["dose_response"], t["deletion"], t["coverage"], spec) + "\n")
    print(f"wrote {DOC}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--job", type=Path, help="Model A's grid job folder (model.keras, job.json)")
    p.add_argument("--config", default="default", help="config name or JSON (data root, cache, layers)")
    p.add_argument("--limit", type=int, default=0, help="use a seeded subset of this many test images (0: all)")
    p.add_argument("--workers", type=int, default=0, help="ingest workers (0: the default)")
    p.add_argument("--doc-only", action="store_true", help="only regenerate docs/premise.md from the tables")
    a = p.parse_args(argv)
    if not a.doc_only:
        if a.job is None:
            p.error("--job is required unless --doc-only")
        from knee_tf.core.io import atomic_write_csv

        for name, table in measure(a.job, a.config, a.limit, a.workers).items():
            atomic_write_csv(OUT / f"{name}.csv", table, index=False)
            print(f"wrote {OUT / f'{name}.csv'} ({len(table)} rows)")
    write_doc(a.config)


if __name__ == "__main__":
    main()

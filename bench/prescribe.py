"""How often does ``knee-tf prescribe`` find the true relevant range, within one slice at both ends, per plane?

    python bench/prescribe.py RUN [--arm A --seed 0] [--split test] [--log bench/logs/prescribe.txt]
    python bench/prescribe.py --model FILE_OR_SPEC --manifest CSV --root DIR [--split test]

The model is the run folder's ``--arm``/``--seed`` model (or ``--model``); the manifest and its data root are
the run config's (or ``--manifest``/``--root``). Only the rows of ``--split`` (default test: exams the model
never saw; ``all`` for every row) are prescribed, through :func:`knee_tf.yourdata.prescribe.prescribe`, into
``--out``. The true range of each exam and plane is the range of its ``label`` column (the annotators' labels,
which the model learns and is scored on) and, where the manifest has one, of the geometric rule label
(:mod:`knee_tf.phantom.labels`). An exam-plane matches when both ends of the predicted range lie within one
slice of the true ends, or when neither has a relevant slice: the study's endpoint ``range_within_one``
(:func:`knee_tf.controls.prescription.per_exam_plane`), with the slices in prescribe's order along the normal.
Printed and appended to ``--log``: per truth, plane (and cohort) the matches, the share of exam-planes with
every slice right, the Jaccard index and the mean absolute end error.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent


def _summary(per, by: list[str]):
    """Per group: exam-planes, range within one slice at both ends (count, share), every slice right, mean
    Jaccard index, mean |end error| (slices, where both ranges exist)."""
    import pandas as pd

    rows = []
    for key, g in per.groupby(by, sort=False):
        errors = pd.concat([g["first_error"], g["last_error"]]).dropna().abs()
        rows.append(dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True), exam_planes=len(g),
                         within_1=int(g["range_within_one"].sum()),
                         within_1_pct=round(100 * g["range_within_one"].mean(), 1),
                         all_right_pct=round(100 * g["all_right"].mean(), 1),
                         jaccard=round(float(g["jaccard"].mean()), 3),
                         mean_abs_end_error=round(float(errors.mean()), 3) if len(errors) else float("nan")))
    return pd.DataFrame(rows)


def _against_the_grid(a, rows, slices, df) -> list[str]:
    """With a run's model: its own grid predictions (knee-tf grid's evaluation of the same images) against
    prescribe's p_relevant, and the published job of the same arm and seed scored the same way."""
    import pandas as pd

    from knee_tf.controls.prescription import per_exam_plane
    from knee_tf.core.vocab import NORMAL
    from knee_tf.data.layout import RunLayout, published_grid

    if a.run is None or a.model is not None:
        return []
    lines = []
    own = RunLayout(a.run).grid_predictions(a.arm, a.seed)
    if own.is_file():
        g = pd.read_parquet(own)
        cohorts = set(df["cohort"]) if "cohort" in df else {NORMAL}  # not the cohorts made from other images
        g = g[(g["corruption"] == "none") & g["cohort"].isin(cohorts) & g["image_id"].isin(slices["image_id"])]
        m = g.merge(slices[["image_id", "p_relevant"]], on="image_id", suffixes=("", "_prescribe"))
        lines.append(f"\nthe run's own grid predictions of these images ({len(m)} of {len(slices)} found): max "
                     f"|p_relevant difference| {(m['p_relevant'] - m['p_relevant_prescribe']).abs().max():.2g}, "
                     f"decisions that differ {int(((m['p_relevant'] > 0.5) != (m['p_relevant_prescribe'] > 0.5)).sum())}")
    pub = published_grid(ROOT).predictions(a.arm, a.seed)
    if pub.is_file():
        p = pd.read_parquet(pub)
        p = p[(p["corruption"] == "none") & (p["cohort"] == NORMAL)].drop(columns="slice_rank", errors="ignore")
        p = p.merge(rows[["image_id", "slice_rank"]], on="image_id")
        per = per_exam_plane(p.assign(y_true=p["y_true"].astype(int)))
        lines.append(f"the published grid job {a.arm} seed {a.seed} (results/grid; trained elsewhere), same "
                     f"scoring, cohort {NORMAL}, truth 'label':")
        lines.append(_summary(per, ["plane"]).to_string(index=False))
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="run folder with the trained model and its config")
    ap.add_argument("--arm", default="A", help="arm of the run's model (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the run's model (default: %(default)s)")
    ap.add_argument("--model", default=None, help="a .keras file or published:A instead of the run's model")
    ap.add_argument("--manifest", type=Path, default=None, help="default: the run config's manifest")
    ap.add_argument("--root", type=Path, default=None, help="data root of --manifest (default: the run config's)")
    ap.add_argument("--cache", type=Path, default=None, help="ingest cache (default: the run config's)")
    ap.add_argument("--split", default="test", help="rows to prescribe: train, val, test or all (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=None, help="prescription folder (default: <run>/prescribe_bench)")
    ap.add_argument("--figures", type=int, default=3, help="exam PNGs to draw, the first exams (default: %(default)s)")
    ap.add_argument("--figure-exams", default="", help="comma-separated exam_ids to draw as well (default: none)")
    ap.add_argument("--log", type=Path, default=ROOT / "bench" / "logs" / "prescribe.txt")
    a = ap.parse_args()

    from knee_tf.controls.prescription import per_exam_plane
    from knee_tf.core.vocab import NORMAL, RELEVANT, RULE_LABEL_COLUMN
    from knee_tf.data.layout import RunLayout
    from knee_tf.data.manifest import read_manifest
    from knee_tf.study.config import StudyConfig, resolve
    from knee_tf.yourdata.prescribe import FOUND, prescribe, prescription
    from knee_tf.yourdata.prescribe_plot import plot_exam

    cfg = None
    if a.run is not None:
        layout = RunLayout(a.run)
        if not layout.config.is_file():
            sys.exit(f"{a.run}: not a run folder (no {layout.relative(layout.config)})")
        cfg = StudyConfig.load(layout.config)
    if a.model is None and a.run is None:
        sys.exit("pass a run folder or --model")
    model = a.model or str(RunLayout(a.run).model(a.arm, a.seed))
    manifest = a.manifest or (cfg.manifest_path if cfg else None)
    root = a.root or (resolve(cfg.data_root) if cfg else None)
    if manifest is None or root is None:
        sys.exit("pass --manifest and --root (or a run folder, whose config names them)")
    cache = a.cache or (resolve(cfg.cache_dir) if cfg else ROOT / "data" / "cache")
    out = a.out or (a.run / "prescribe_bench" if a.run else Path("prescribe_bench"))
    out.mkdir(parents=True, exist_ok=True)

    df = read_manifest(manifest)
    if a.split != "all":
        df = df[df["split"] == a.split]
    subset = out / f"manifest_{a.split}.csv"
    df.to_csv(subset, index=False)
    t0 = time.perf_counter()
    res = prescribe(subset, out, model, root=root, cache_dir=cache, figures=False, progress=True)
    seconds = time.perf_counter() - t0
    slices = res.slices
    truths = ["label"] + ([RULE_LABEL_COLUMN] if RULE_LABEL_COLUMN in df else [])
    extra = [c for c in (RULE_LABEL_COLUMN, "cohort") if c in df]
    rows = slices.drop(columns=[c for c in extra if c in slices]).merge(df[["image_id", *extra]], on="image_id")
    if "cohort" not in rows:
        rows["cohort"] = NORMAL
    rows = rows.assign(arm=a.arm if a.model is None else "model", seed=a.seed, slice_rank=rows["index"])

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"## python bench/prescribe.py {' '.join(sys.argv[1:])}",
             f"# at {commit}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, shared; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}",
             f"model {model}; manifest {manifest} rows of split {a.split}: {len(df)} slices, "
             f"{df['exam_id'].nunique()} exams, {len(res.table)} plane stacks; prescribe took {seconds:.0f} s"]
    for name in truths:
        per = per_exam_plane(rows.assign(y_true=(rows[name] == RELEVANT).astype(int)))
        per.to_csv(out / f"per_exam_plane_{name}.csv", index=False)
        lines.append(f"\ntruth = the {name!r} column; within_1 = both ends of the predicted range within one "
                     "slice of the true ends (or no relevant slice in either)")
        lines.append(_summary(per, ["plane"]).to_string(index=False))
        if rows["cohort"].nunique() > 1:
            lines.append(_summary(per, ["cohort", "plane"]).to_string(index=False))
    lines += _against_the_grid(a, rows, slices, df)
    t = res.table
    true_edge = prescription(slices, truth=True)["edge_warning"] != ""  # same stack order as t
    lines.append(f"\npredicted stacks with gaps: {int((t['n_gaps'] > 0).sum())} of {len(t)}; reaching an edge: "
                 f"{int((t['edge_warning'] != '').sum())} (true ranges reaching an edge: {int(true_edge.sum())}, "
                 f"both: {int((true_edge & (t['edge_warning'] != '')).sum())}); without a relevant slice: "
                 f"{int((t['status'] != FOUND).sum())}")
    text = "\n".join(lines) + "\n"
    print(text)
    a.log.parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, "a") as f:
        f.write(text + "\n")
    extra = [e for e in a.figure_exams.split(",") if e]
    for exam in sorted(slices["exam_id"].unique())[:a.figures] + extra:
        print("figure:", plot_exam(slices[slices["exam_id"] == exam], t[t["exam_id"] == exam], root,
                                   out / "exams" / f"{exam}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

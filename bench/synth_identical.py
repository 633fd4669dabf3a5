"""Is the phantom's output byte-identical to a reference commit's? (a guard for speed work)

Renders the same exams with two source trees, this one and ``--ref`` (a git revision, exported
with ``git archive``), each in its own process, and compares every written file byte for byte:

* **picked exams**: ``--exams`` exams of the default 513-exam plan (default settings), chosen
  greedily so that they cover every site, cohort (normal, metal, new_site), implant kind, matrix,
  wrap, partial Fourier, ghosts, pulsation and hard exams; each exam rendered alone with
  ``render_exam``, its manifest rows written as CSV;
* **a whole synthesis** (``--full N``, 0 = skip): ``synthesize(n_exams=N)`` with 1 worker in the
  reference tree and ``--workers`` (default 2) in this one, so the check also covers the worker
  count; its ``data_manifest.csv`` is compared too.

Cost: the picks need ``prepare_exam`` of all 513 exams (about 10 CPU s), then about 1 CPU s per
rendered exam and tree.

For each DICOM file that differs it says whether the PixelData differs and by how much (max
absolute difference in stored values). Exit status 0 only when every file is identical.

    python bench/synth_identical.py --ref main --work /tmp/synth-speed/ident --exams 12 --full 8

``--ref-src DIR`` uses a source tree already on disk instead of exporting ``--ref``;
``--keep-ref`` reuses the reference output of an earlier run in the same ``--work`` (same picks
and ``--full``), so a speed-up can be checked again without rendering the reference twice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: run inside each tree's own process (PYTHONPATH = that tree); argv: out, picks, full, workers
_RENDER = textwrap.dedent("""
    import sys
    from dataclasses import asdict
    from pathlib import Path
    import pandas as pd
    from knee_tf.study.config import StudyConfig
    from knee_tf.phantom.synth import MANIFEST_COLUMNS, plan_exams, render_exam, synthesize
    out, picks, full, workers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cfg = StudyConfig()
    plan = plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction)
    rows = []
    for e in [int(v) for v in picks.split(",") if v]:
        task = dict(plan.iloc[e].to_dict(), seed=cfg.synth_seed, out_dir=str(out / "exams"),
                    base_matrix=cfg.synth_matrix, difficulty=asdict(cfg.synth_difficulty()))
        rows += render_exam(task)
    (out / "exams").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(out / "exams" / "rows.csv",
                                                               index=False, lineterminator="\\n")
    if full:
        synthesize(out / "full", n_exams=full, seed=cfg.synth_seed, matrix=cfg.synth_matrix,
                   metal_fraction=cfg.metal_fraction, workers=workers, progress=False,
                   difficulty=cfg.synth_difficulty())
""")


def pick_exams(n: int) -> list[int]:
    """Exam indices of the default plan that together cover the phantom's code paths (greedy set
    cover over the whole plan: each pick adds the most features not yet covered; ties: the
    earliest exam; when all are covered, the earliest exams not yet picked). Sorted."""
    from dataclasses import asdict

    from knee_tf.phantom.synth import plan_exams, prepare_exam
    from knee_tf.study.config import StudyConfig

    cfg = StudyConfig()
    plan = plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction)
    feats = []
    for e in range(len(plan)):
        task = dict(plan.iloc[e].to_dict(), seed=cfg.synth_seed, out_dir="",
                    base_matrix=cfg.synth_matrix, difficulty=asdict(cfg.synth_difficulty()))
        ex = prepare_exam(task)
        f = {("site", task["site"]), ("cohort", task["cohort"]), ("matrix", ex["matrix"]),
             ("coil", ex["coil"].name), ("hard", ex["hard"])}
        if ex["implant"] is not None:
            f.add(("implant", ex["implant"].kind))
        for sl in ex["slices"]:
            s = sl["series"]
            f |= {("wrap", s.wrap), ("pf", s.partial_fourier < 1), ("ghost", s.ghost_px > 0),
                  ("pulse", s.pulsation > 0)}
        feats.append(f)
    seen, picks = set(), []
    while len(picks) < min(n, len(plan)):
        gain = [len(f - seen) if e not in picks else -1 for e, f in enumerate(feats)]
        e = int(np.argmax(gain))
        seen |= feats[e]
        picks.append(e)
    return sorted(picks)


def _export(ref: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest.with_suffix(".tar")
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), ref], check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    tar.unlink()
    return dest


def _render(src: Path, out: Path, picks: list[int], full: int, workers: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(src))
    subprocess.run([sys.executable, "-c", _RENDER, str(out), ",".join(map(str, picks)), str(full),
                    str(workers)], check=True, env=env, cwd=src)


def _pixel_diff(a: Path, b: Path) -> str:
    import pydicom

    pa, pb = pydicom.dcmread(a), pydicom.dcmread(b)
    if pa.PixelData == pb.PixelData:
        return "header only (PixelData identical)"
    xa, xb = pa.pixel_array.astype(np.int64), pb.pixel_array.astype(np.int64)
    if xa.shape != xb.shape:
        return f"PixelData shape {xa.shape} vs {xb.shape}"
    d = np.abs(xa - xb)
    return f"PixelData: max |diff| {int(d.max())}, {int((d > 0).sum())} of {d.size} pixels"


def compare(ref: Path, new: Path) -> list[str]:
    """Differences between two output folders (relative paths, file bytes)."""
    fa = {p.relative_to(ref) for p in ref.rglob("*") if p.is_file()}
    fb = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    out = [f"only in reference: {p}" for p in sorted(fa - fb)]
    out += [f"only in candidate: {p}" for p in sorted(fb - fa)]
    for p in sorted(fa & fb):
        if (ref / p).read_bytes() != (new / p).read_bytes():
            why = _pixel_diff(ref / p, new / p) if p.suffix == ".dcm" else "bytes differ"
            out.append(f"{p}: {why}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="git revision to compare against")
    ap.add_argument("--ref-src", help="a reference source tree on disk (instead of --ref)")
    ap.add_argument("--work", default="/tmp/synth-identical")
    ap.add_argument("--exams", type=int, default=12, help="picked exams of the default plan")
    ap.add_argument("--full", type=int, default=8, help="n_exams of a whole synthesis (0: none)")
    ap.add_argument("--workers", type=int, default=2, help="this tree's workers for --full")
    ap.add_argument("--keep-ref", action="store_true",
                    help="reuse --work's reference output (made with the same picks and --full)")
    a = ap.parse_args(argv)
    work = Path(a.work)
    if (work / "new-out").exists():
        shutil.rmtree(work / "new-out")
    picks = pick_exams(a.exams)
    what = f"exams {picks}; whole synthesis of {a.full} exams"
    print(f"{what} (reference 1 worker, this tree {a.workers})", flush=True)
    stamp = work / "ref-out.what"
    if a.keep_ref and stamp.exists() and stamp.read_text() == what:
        print(f"reusing the reference output in {work / 'ref-out'}", flush=True)
    else:
        if (work / "ref-out").exists():
            raise SystemExit(f"{work / 'ref-out'} exists: use --keep-ref or an empty --work")
        ref_src = Path(a.ref_src) if a.ref_src else _export(a.ref, work / "ref-src")
        _render(ref_src, work / "ref-out", picks, a.full, 1)
        stamp.write_text(what)
    _render(ROOT, work / "new-out", picks, a.full, a.workers)
    diffs = compare(work / "ref-out", work / "new-out")
    n = sum(1 for p in (work / "ref-out").rglob("*") if p.is_file())
    for d in diffs[:40]:
        print(d)
    print(f"{n} reference files, {len(diffs)} differences"
          f"{' (first 40 shown)' if len(diffs) > 40 else ''}: "
          f"{'IDENTICAL' if not diffs else 'DIFFERENT'}")
    return 0 if not diffs else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Render only the slices that ``bench/realism.py`` samples, with any phantom settings: a quick
look at a candidate appearance between two full syntheses (about 450 slices instead of 11,419).

The slices are those of the full synthesis (same plan, geometry and labels); their pixels are not
byte-identical to it, because each exam's noise stream is drawn only for the slices rendered here.
Final numbers come from a full ``python -m knee_tf synth``.

    python bench/realism_render.py --like data/v2 --out data/v3_sample --set synth_appearance=v3
    python bench/realism.py --data data/v3_sample
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the bench helpers, then this tree's knee_tf
import realism  # noqa: E402  (the bench beside this file)


def _enable(changes) -> None:
    """Pool initializer: switch v3's changes (knee_tf.phantom.appearance.CHANGES) in this worker."""
    from knee_tf.phantom import appearance as look  # lazy: worker processes import it themselves
    if changes is not None:
        look.ENABLED = frozenset(changes)


def _render(args) -> int:
    task, instances = args
    from knee_tf.phantom import appearance as look  # lazy: worker processes import it themselves
    from knee_tf.phantom.dicom_export import write_slice
    from knee_tf.phantom.render import render_slice
    from knee_tf.phantom.synth import prepare_exam
    ex = prepare_exam(task)
    out = Path(task["out_dir"])
    for instance in instances:
        sl = ex["slices"][instance - 1]
        rel = out / f"dicom/{task['site']}/{task['exam_id']}/IM{instance:04d}.dcm"
        if ex["appearance"] == look.V3:
            px = look.render_slice(ex["structures"], ex["acq"], sl["geom"], ex["r_noise"], sl["series"],
                                   ex["implant"])
            write_slice(rel, px, ex["header"], sl["geom"], instance, look.phase_direction(sl["plane"]))
        else:
            px = render_slice(ex["structures"], ex["acq"], sl["geom"], ex["r_noise"], sl["series"],
                              ex["implant"])
            write_slice(rel, px, ex["header"], sl["geom"], instance)
    return len(instances)


def main(argv=None) -> int:
    from knee_tf.phantom.synth import plan_exams  # lazy: after sys.path is set up
    from knee_tf.study.config import StudyConfig
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--like", type=Path, required=True, help="a full synthesis of the same plan (its manifest)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--changes", default=None, help="with synth_appearance=v3: only these of v3's "
                   "changes, comma-separated (default all; '' none)")
    a = p.parse_args(argv)
    cfg = StudyConfig().with_settings(a.set)
    manifest = pd.read_csv(a.like / "data_manifest.csv")
    picked = realism.sample(manifest)
    plan = plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction).set_index("exam_id")
    jobs = []
    for exam_id, g in picked.groupby("exam_id", sort=True):
        row = plan.loc[exam_id].to_dict()
        task = dict(row, exam_id=exam_id, seed=cfg.synth_seed, out_dir=str(a.out),
                    base_matrix=cfg.synth_matrix, difficulty=asdict(cfg.synth_difficulty()),
                    appearance=cfg.synth_appearance)
        jobs.append((task, sorted(int(i.rsplit("_", 1)[1]) for i in g.image_id)))
    a.out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(picked), desc="sampled slices", unit="slice")
    changes = None if a.changes is None else [c for c in a.changes.split(",") if c]
    with mp.get_context("spawn").Pool(a.workers, initializer=_enable, initargs=(changes,)) as pool:
        for k in pool.imap_unordered(_render, jobs):
            bar.update(k)
    bar.close()
    picked.to_csv(a.out / "data_manifest.csv", index=False, lineterminator="\n")
    print(f"rendered {len(picked)} slices of {len(jobs)} exams to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU seconds per exam of the default synthesis, one process, on a seeded sample of the 513-exam
plan (DICOM writing included), and the wall time that implies on 2 idle cores.

    python bench/synth_cpu.py --sample 40 [--set synth_appearance=v3]

Use it where the machine is shared: CPU time per process is far less sensitive to other jobs
than wall time (not insensitive: shared caches and hyper-threads still slow it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's knee_tf, not the installed one


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sample", type=int, default=40)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a StudyConfig synth_* field, e.g. synth_appearance=v3 (repeatable)")
    a = p.parse_args(argv)
    from dataclasses import asdict

    from knee_tf.phantom import texture
    from knee_tf.phantom.synth import plan_exams, render_exam
    from knee_tf.study.config import StudyConfig

    cfg = StudyConfig().with_settings(a.set)
    plan = plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction)
    pick = np.sort(np.random.default_rng(0).choice(len(plan), size=a.sample, replace=False))
    t0 = time.process_time()
    texture.bank()
    bank_s = time.process_time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        n_img = 0
        for e in pick:
            task = dict(plan.iloc[int(e)].to_dict(), seed=cfg.synth_seed, out_dir=tmp,
                        base_matrix=cfg.synth_matrix, difficulty=asdict(cfg.synth_difficulty()),
                        appearance=cfg.synth_appearance)
            n_img += len(render_exam(task))
        cpu = time.process_time() - t0
    per_exam = cpu / a.sample
    print(f"{a.sample} exams, {n_img} images: {per_exam:.3f} CPU s/exam "
          f"({1000 * cpu / n_img:.1f} ms/image); texture bank {bank_s:.2f} s per process; "
          f"513 exams = {513 * per_exam:.0f} CPU s -> {513 * per_exam / 2 + bank_s:.0f} s on 2 "
          f"idle cores; appearance {cfg.synth_appearance}; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: peak resident memory of each step of the study (every process of the run).

    python bench/memory.py [--config default] [--out DIR] [--interval 0.5]

Runs ``knee-tf study`` (synthesis included when the data is missing) and samples, every interval,
the resident set size of the study process and each of its descendants (the papermill kernel of
each notebook, the decoding and synthesis workers). Prints the peak per process kind and the peak
of the whole tree. Goal (README, performance): peak <= 3 GB.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time

import psutil


def kind(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    if "ipykernel" in cmd:
        return "notebook kernel"
    if "multiprocessing" in cmd or "spawn_main" in cmd or "forkserver" in cmd:
        return "worker"
    return "study (papermill, synthesis)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default")
    ap.add_argument("--out", default=None)
    ap.add_argument("--interval", type=float, default=0.5)
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "knee_tf", "study", "--config", a.config] + (["--out", a.out] if a.out else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # step lines must arrive when printed
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=env)
    root = psutil.Process(proc.pid)
    peaks: dict[str, float] = {}
    tree_peak, step = 0.0, "start"
    step_peaks: dict[str, float] = {}
    def read_output():
        nonlocal step
        for line in proc.stdout:
            if re.match(r"\[\d\d_\w+\] running", line):
                step = line.split("]")[0][1:]
                print(line.rstrip(), flush=True)

    threading.Thread(target=read_output, daemon=True).start()
    while proc.poll() is None:
        total = 0.0
        for p in [root] + root.children(recursive=True):
            try:
                rss = p.memory_info().rss / 2**30
            except psutil.Error:
                continue
            total += rss
            k = kind(p)
            peaks[k] = max(peaks.get(k, 0.0), rss)
        tree_peak = max(tree_peak, total)
        step_peaks[step] = max(step_peaks.get(step, 0.0), total)
        time.sleep(a.interval)
    print(f"exit code {proc.returncode}")
    for s, v in step_peaks.items():
        print(f"peak of the process tree during {s:24s} {v:5.2f} GiB")
    for k, v in sorted(peaks.items()):
        print(f"peak of one {k:30s} {v:5.2f} GiB")
    print(f"peak of the whole process tree: {tree_peak:.2f} GiB (goal <= 3 GB)")


if __name__ == "__main__":
    main()

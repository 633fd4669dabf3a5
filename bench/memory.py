"""Benchmark: peak resident memory of each step of the study (every process of the run).

    python bench/memory.py [--config default] [--out DIR] [--set FIELD=VALUE ...] [--interval 0.5]

Runs ``knee-tf study`` (synthesis included when the data is missing) and samples, every interval,
the resident set size of the study process and each of its descendants (the papermill kernel of
each notebook, the decoding and synthesis workers, the Dask workers of the grid). Prints the peak
per process kind, the peak per step and the peak of the whole tree. Goal (docs/performance.md):
peak <= 3 GB (decimal).

The tree's total is the sum of every process's RSS, which counts a page shared by several
processes (a memory-mapped ingest cache, copy-on-write pages) once per process: an upper bound.
The sum of proportional set sizes (PSS: a shared page split between its processes) is printed
beside it, the memory the tree actually occupies.

Process kinds: a LocalCluster's scheduler and nannies run inside the process that starts it (the
notebook kernel); its workers are spawned children with the nanny's environment
(``MALLOC_TRIM_THRESHOLD_``), counted as "dask worker". Processes of the ``dask scheduler`` and
``dask worker`` commands (a cluster started by hand, ``bench/cluster.py``) are counted as
"dask scheduler" and "dask nanny"; their spawned workers as "dask worker".
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

GB, GIB = 1e9, 2**30


def kind(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return "?"
    if "ipykernel" in cmd:
        return "notebook kernel (+ LocalCluster scheduler, nannies)"
    if re.search(r"dask[ -]scheduler", cmd):
        return "dask scheduler"
    if re.search(r"dask[ -]worker", cmd):
        return "dask nanny"
    if "resource_tracker" in cmd:
        return "multiprocessing resource tracker"
    if "multiprocessing" in cmd or "spawn_main" in cmd or "forkserver" in cmd:
        try:
            dask = "MALLOC_TRIM_THRESHOLD_" in p.environ()  # set by the Dask nanny for its worker
        except psutil.Error:
            dask = False
        return "dask worker" if dask else "worker (decoding, synthesis, augmentation)"
    return "study (papermill, synthesis)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default")
    ap.add_argument("--out", default=None)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                    help="passed to knee-tf study (e.g. --set grid_workers=2)")
    ap.add_argument("--interval", type=float, default=0.5)
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "knee_tf", "study", "--config", a.config] + (["--run", a.out] if a.out else [])
    cmd += [f"--set={s}" for s in a.settings]
    print(f"command: knee-tf {' '.join(cmd[3:])}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # step lines must arrive when printed
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=env)
    root = psutil.Process(proc.pid)
    peaks: dict[str, float] = {}
    kinds: dict[int, str] = {}
    tree_peak = pss_peak = 0.0
    step = "start"
    step_peaks: dict[str, float] = {}
    step_pss: dict[str, float] = {}
    step_procs: dict[str, dict[str, int]] = {}
    tail: list[str] = []

    def read_output():
        nonlocal step
        for line in proc.stdout:
            tail.append(line.rstrip())
            del tail[:-20]
            if re.match(r"\[\d\d_\w+\] running", line):
                step = line.split("]")[0][1:]
                print(line.rstrip(), flush=True)

    threading.Thread(target=read_output, daemon=True).start()
    while proc.poll() is None:
        total = pss = 0.0
        count: dict[str, int] = {}
        for p in [root] + root.children(recursive=True):
            try:
                mem = p.memory_full_info()
            except psutil.Error:
                continue
            k = kinds.setdefault(p.pid, kind(p))
            total += mem.rss
            pss += mem.pss
            peaks[k] = max(peaks.get(k, 0.0), mem.rss)
            count[k] = count.get(k, 0) + 1
        tree_peak, pss_peak = max(tree_peak, total), max(pss_peak, pss)
        if total >= step_peaks.get(step, 0.0):
            step_procs[step] = count
        step_peaks[step] = max(step_peaks.get(step, 0.0), total)
        step_pss[step] = max(step_pss.get(step, 0.0), pss)
        time.sleep(a.interval)
    print(f"exit code {proc.returncode} after {time.perf_counter() - t0:.0f} s")
    if proc.returncode:
        print("\n".join(tail))
    for s, v in step_peaks.items():
        procs = ", ".join(f"{n} {k}" for k, n in sorted(step_procs.get(s, {}).items()))
        print(f"peak of the process tree during {s:24s} {v / GB:5.2f} GB ({v / GIB:5.2f} GiB), "
              f"PSS {step_pss[s] / GB:5.2f} GB; processes at the peak: {procs}")
    for k, v in sorted(peaks.items()):
        print(f"peak of one {k:52s} {v / GB:5.2f} GB ({v / GIB:5.2f} GiB)")
    print(f"peak of the whole process tree: {tree_peak / GB:.2f} GB ({tree_peak / GIB:.2f} GiB) RSS summed, "
          f"{pss_peak / GB:.2f} GB PSS summed (goal <= 3.0 GB)")


if __name__ == "__main__":
    main()

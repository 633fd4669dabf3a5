"""Benchmark: the grid in-process, on a 2-worker LocalCluster, and on a real Dask cluster on loopback.

    python bench/cluster.py [--config default] [--arms A,B] [--seeds 2] [--set epochs=2 ...] [--out DIR]

Runs the same jobs three times into three run folders under --out (default: a temporary folder):
(1) ``--workers 1`` in one process; (2) a LocalCluster of 2 single-threaded workers; (3) a cluster
started here as separate processes, ``dask scheduler`` and two ``dask worker --nthreads 1``
processes on 127.0.0.1, the grid sent to it by address (``--scheduler tcp://127.0.0.1:PORT``),
as on a real cluster. Each is a fresh ``knee-tf grid`` process (the timing includes its start-up
and, for (2), the LocalCluster's). Prints jobs/hour of each and whether the per-image predictions
of every job are byte-identical across the three. The ingest cache is built first (untimed).
Default settings: the default config with 2 epochs per job, so that a run takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from knee_tf.controls.jobs import plan_jobs
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import get_config


def grid(args, out: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "knee_tf", "grid", "--config", args.config, "--arms", args.arms,
           "--seeds", str(args.seeds), "--run", str(out)] + [f"--set={s}" for s in args.settings] + extra
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def start_cluster(folder: Path) -> tuple[str, list[subprocess.Popen]]:
    """``dask scheduler`` + two ``dask worker`` processes on loopback; returns (address, processes)."""
    dask = str(Path(sys.executable).with_name("dask"))
    sched_file = folder / "scheduler.json"
    logs = open(folder / "cluster.log", "w")  # noqa: SIM115  (kept open for the processes' lifetime)
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                               "127.0.0.1:0", "--scheduler-file", str(sched_file)], stdout=logs, stderr=logs)]
    for _ in range(60):
        if sched_file.exists():
            break
        time.sleep(1)
    address = json.loads(sched_file.read_text())["address"]
    for _ in range(2):
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                       "--no-dashboard"], stdout=logs, stderr=logs))
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    return address, procs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default")
    ap.add_argument("--arms", default="A,B")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--set", dest="settings", action="append", default=None, metavar="FIELD=VALUE")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    a.settings = ["epochs=2"] if a.settings is None else a.settings
    out = Path(a.out or tempfile.mkdtemp(prefix="knee-tf-cluster-"))
    out.mkdir(parents=True, exist_ok=True)
    env_load = os.getloadavg()

    # the ingest cache first, untimed: a grid of zero-cost (every job done) is not possible, so ingest directly
    cfg = get_config(a.config).with_settings(a.settings)
    from knee_tf.data.ingest import ingest
    from knee_tf.study.config import resolve
    from knee_tf.study.pipeline import ensure_dataset

    ingest(ensure_dataset(cfg), resolve(cfg.data_root), cache_dir=resolve(cfg.cache_dir), image_size=cfg.image_size,
           on_error=cfg.on_error, workers=cfg.n_workers)
    jobs = plan_jobs([s.strip() for s in a.arms.split(",")], range(cfg.seed, cfg.seed + a.seeds))

    seconds = {"in-process (--workers 0)": grid(a, out / "in_process", ["--workers", "1"]),
               "LocalCluster, 2 workers": grid(a, out / "local_cluster", ["--workers", "2"])}
    address, procs = start_cluster(out)
    try:
        seconds["dask scheduler + 2 dask workers (by address)"] = grid(a, out / "remote", ["--scheduler", address])
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=60)

    folders = {"in-process (--workers 0)": "in_process", "LocalCluster, 2 workers": "local_cluster",
               "dask scheduler + 2 dask workers (by address)": "remote"}
    same = all(len({RunLayout(out / f).grid_predictions(j.name, j.seed).read_bytes() for f in folders.values()}) == 1
               for j in jobs)
    print(f"{len(jobs)} jobs ({', '.join(j.label for j in jobs)}), config {cfg.name} with {', '.join(a.settings)}; "
          f"{os.cpu_count()} CPUs; load average before {env_load[0]:.2f} {env_load[1]:.2f}, "
          f"after {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    base = seconds["in-process (--workers 0)"]
    for name, s in seconds.items():
        print(f"{name:46s} {s:7.1f} s  {3600 * len(jobs) / s:6.1f} jobs/hour  ({base / s:.2f}x in-process)")
    print(f"predictions byte-identical across the three: {same}")
    print(f"run folders: {out}")


if __name__ == "__main__":
    main()

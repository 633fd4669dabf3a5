"""Benchmark: `knee-tf pull` at the size of a busy day, one retrieval at a time against a pool.

    python bench/pull.py [--exams 200] [--matrix 64] [--workers 2,4,8] [--rounds 1] [--tls]
                         [--work DIR] [--log bench/logs/pull.txt]

Starts a local Orthanc with its DICOMweb plugin on loopback (tests/pacs_servers.py, as the tests
do), loads ``--exams`` phantom exams into it (knee_tf.phantom.synthesize, the study's difficulty,
``--matrix`` pixels), then times ``knee_tf.yourdata.dicomweb.pull(--since 2000-01-01)`` into a fresh
folder:

* with ``workers=0`` (sequential, the pull before the pool) and with each ``--workers`` count,
  alternating the order within each of ``--rounds`` rounds so that load from other processes hits
  both alike; wall seconds, instances/s, and the speed-up of each pool over sequential (median);
* an interrupted pull: ``python -m knee_tf pull`` in a subprocess gets SIGINT (Ctrl-C) once about
  half the files are there; the same pull run again must skip exactly those and fetch the rest;
* every folder must hold the same files byte for byte (SHA-256 of each relative path).

``--tls`` puts nginx with a certificate made here in front of an Orthanc with a registered user,
so the same pulls go over HTTPS with basic auth (the deployment the CLI's options are for).
Writes the results to ``--log`` (and prints them). Exit status 0 only when all files agree.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this tree's knee_tf (the subprocess pull runs from ROOT too)
import pacs_servers  # noqa: E402  (tests/pacs_servers.py: the servers the tests start)

from knee_tf.yourdata.dicomweb import connect, pull  # noqa: E402
from knee_tf.yourdata.pacs_auth import PASSWORD_ENV, PacsAuth  # noqa: E402

SINCE = "2000-01-01"
USER, PASSWORD = "bench", "bench-pull-pw"


def digests(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob("*.dcm"))}


def timed_pull(pacs: PacsAuth, out: Path, workers: int) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    stats = pull(pacs, out, since=SINCE, progress=False, workers=workers)
    return time.perf_counter() - t, stats.instances


def interrupted_then_resumed(pacs: PacsAuth, out: Path, workers: int, total: int) -> dict:
    """SIGINT a CLI pull at about half the files, then pull again; what each got."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "knee_tf", "pull", "--url", pacs.url, "--since", SINCE, "--out", str(out),
           "--workers", str(workers or 1)]  # the CLI's 1 is pull()'s 0: one at a time, in this thread
    env = dict(os.environ)
    if pacs.user is not None:
        cmd += ["--user", pacs.user]
        env[PASSWORD_ENV] = pacs.password
    if pacs.ca_bundle:
        cmd += ["--ca-bundle", str(pacs.ca_bundle)]
    # a shell's background job ignores SIGINT, and a Python started so never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while proc.poll() is None and len(list(out.rglob("*.dcm"))) < total // 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    there = len(list(out.rglob("*.dcm")))
    temp_left = [f.name for f in out.rglob(".*")]
    t = time.perf_counter()
    stats = pull(pacs, out, since=SINCE, progress=False, workers=workers)
    return {"rc": proc.returncode, "said": err.strip().splitlines()[-1:] or [""], "there": there, "temp_left": temp_left,
            "skipped": stats.skipped, "fetched": stats.instances, "resume_s": time.perf_counter() - t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exams", type=int, default=200)
    ap.add_argument("--matrix", type=int, default=64, help="phantom image matrix (small: quick to make and store)")
    ap.add_argument("--workers", default="2,4,8", help="pool sizes to time against sequential")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tls", action="store_true", help="HTTPS through nginx, with basic auth")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--log", default=str(ROOT / "bench" / "logs" / "pull.txt"))
    a = ap.parse_args()
    pools = [int(w) for w in a.workers.split(",")]
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    orthanc = shutil.which("Orthanc") or sys.exit("Orthanc not installed (apt-get install orthanc orthanc-dicomweb)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    version = subprocess.run([orthanc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    with ExitStack() as stack:
        work = Path(a.work) if a.work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pull-")))
        users = {USER: PASSWORD} if a.tls else None
        http = stack.enter_context(pacs_servers.orthanc(orthanc, work / "orthanc", users=users))
        pacs = PacsAuth(http, user=USER, password=PASSWORD) if a.tls else PacsAuth(http)
        loader = pacs
        if a.tls:
            nginx = shutil.which("nginx") or sys.exit("nginx not installed (apt-get install nginx-light)")
            certs = pacs_servers.tls_certificates(work / "tls")
            https = stack.enter_context(pacs_servers.nginx_tls_proxy(nginx, work / "nginx", http.removesuffix("/dicom-web"),
                                                                     certs["cert"], certs["key"], certs["ca"]))
            pacs = PacsAuth(f"{https}/dicom-web", user=USER, password=PASSWORD, ca_bundle=certs["ca"])
        say(f"# bench/pull.py at {commit}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, shared; "
            f"{version}; {'HTTPS via nginx, basic auth' if a.tls else 'plain HTTP on loopback, no auth'}")
        t = time.perf_counter()
        df = pacs_servers.load_phantom_exams(connect(loader), work / "synth", a.exams, matrix=a.matrix, workers=2)
        say(f"loaded {a.exams} phantom exams ({len(df)} instances, {a.matrix}x{a.matrix}) in "
            f"{time.perf_counter() - t:.0f} s; load average {os.getloadavg()[0]:.1f}")

        times: dict[int, list[float]] = {w: [] for w in [0, *pools]}
        for r in range(a.rounds):
            order = [0, *pools] if r % 2 == 0 else [*pools, 0]
            for w in order:
                s, n = timed_pull(pacs, work / f"pull_w{w}", w)
                assert n == len(df), (w, n, len(df))
                times[w].append(s)
                say(f"round {r + 1}: workers={w}: {n} instances in {s:.1f} s ({n / s:.0f}/s); "
                    f"load average {os.getloadavg()[0]:.1f}")
        seq = statistics.median(times[0])
        say(f"median sequential: {seq:.1f} s")
        for w in pools:
            say(f"median workers={w}: {statistics.median(times[w]):.1f} s, speed-up {seq / statistics.median(times[w]):.2f}x")

        resumed = interrupted_then_resumed(pacs, work / "resumed", pools[len(pools) // 2], len(df))
        say(f"interrupted (SIGINT, workers={pools[len(pools) // 2]}): exit {resumed['rc']}, said {resumed['said'][0]!r}, "
            f"{resumed['there']} of {len(df)} files there, temporary files left: {len(resumed['temp_left'])}")
        say(f"resumed: {resumed['skipped']} skipped, {resumed['fetched']} fetched in {resumed['resume_s']:.1f} s")

        reference = digests(work / "pull_w0")
        same = True
        for name in [f"pull_w{w}" for w in pools] + ["resumed"]:
            d = digests(work / name)
            ok = d == reference
            same &= ok
            say(f"{name}: {len(d)} files, {'identical to' if ok else 'DIFFERENT from'} the sequential pull")
        ok_resume = (resumed["rc"] == 130 and 0 < resumed["there"] < len(df) and not resumed["temp_left"]
                     and resumed["skipped"] == resumed["there"] and resumed["skipped"] + resumed["fetched"] == len(df))
        say(f"interrupted part-way, and the resumed pull skipped exactly the files there and fetched the rest: {ok_resume}")
    Path(a.log).parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, "a") as f:
        f.write("\n".join(lines) + "\n\n")
    return 0 if same and ok_resume else 1


if __name__ == "__main__":
    sys.exit(main())

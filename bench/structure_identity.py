"""Check: does a change of code structure leave training bit for bit the same on this machine?

    python bench/structure_identity.py CHECKOUT CACHE_DIR

Trains Model A of seed 0 for one epoch, with the default settings in the default precision (mixed
bfloat16 on a CPU with bfloat16 units), from the ingest cache ``CACHE_DIR`` (a default study's
``data/cache/<key>``), with the knee_tf package of ``CHECKOUT`` (a git worktree of any commit, before
or after the package became wings), and prints the SHA-256 of the job's predictions and training
log. Run it for two checkouts on one machine: equal digests mean the code change kept the numbers.
Across machine kinds the digests differ in bfloat16 (AMX and AVX-512 BF16 kernels round differently).
"""

from __future__ import annotations

import hashlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    checkout, cache = sys.argv[1], sys.argv[2]
    sys.path.insert(0, checkout)
    try:  # the wings (after the reorganisation)
        from knee_tf.controls.jobs import Job
        from knee_tf.controls.training_job import run_job
        from knee_tf.study.config import StudyConfig
    except ImportError:  # the flat package (before it)
        from knee_tf.config import StudyConfig
        from knee_tf.grid import Job, run_job
    import knee_tf

    print(f"knee_tf from {os.path.dirname(knee_tf.__file__)}")
    res = run_job(Job("A", 0), StudyConfig(epochs=1, job_threads=2).to_dict(), cache)
    for name, data in sorted(res["files"].items()):
        if name.endswith((".parquet", ".csv")):
            print(f"{name} sha256 {hashlib.sha256(data).hexdigest()[:16]} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

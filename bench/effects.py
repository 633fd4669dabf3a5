"""Benchmark: the effects and arms tables of a full grid's predictions (knee_tf.controls.effects, effect_stats).

    python bench/effects.py [--arms 16] [--seeds 10] [--n-boot 10000] [--coverage 300] [--store STORE.parquet]

Builds a seeded synthetic predictions table the size of the full grid (by default 16 arms x 10
seeds = 160 models, each scored on 5 cohorts of 2,000 slices from 83 patients and 4 corruptions x 5
severities of the normal cohort: 8 million rows), then times :func:`knee_tf.controls.effects.effects_table`
(every arm against A, 3 metrics, ``--n-boot`` two-level resamples per row) and
:func:`knee_tf.controls.effects.arms_table`. Goal (issue 11): seconds, not minutes.

``--coverage R`` also measures, on R simulated data sets with a null effect (10 seeds, 40 patients
of 6 slices; training-seed effects of sd 0.3 and 0.6 on the logit scale), how often the 95%
interval covers 0: two-level (seeds and patients) against patients only (tests/controls/test_effects.py's
simulation).

``--store PATH`` times the tables of a real prediction store instead (the published grid's:
``knee_tf.controls.publish.rebuild_store``), with the comparisons of the published ``results/effects.csv``
and the arm families of ``results/arms.csv``, as ``knee-tf controls --publish`` computes them.
The default ``--n-boot`` is the analysis plan's 10,000 (``StudyConfig.n_bootstrap_effects``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from knee_tf.controls.effect_stats import percentile_interval, two_level_bootstrap
from knee_tf.controls.effects import arms_table, effects_table
from knee_tf.controls.prediction_store import read_store
from knee_tf.study.config import REPO_ROOT, StudyConfig

RESULTS = REPO_ROOT / "results"


def grid_predictions(n_arms: int, n_seeds: int, n_images: int = 2000, n_patients: int = 83,
                     seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    patient = pd.Categorical(np.sort(rng.integers(0, n_patients, n_images)).astype(str))
    y = rng.integers(0, 2, n_images)
    conditions = [(c, "none", 0) for c in ("normal", "metal", "cam", "cam_transfer", "cam_b")]
    conditions += [("normal", c, s) for c in ("bias_field", "coil_dropout", "rician_noise", "motion_ghosting")
                   for s in range(1, 6)]
    frames = []
    for a in range(n_arms):
        for s in range(n_seeds):
            for cohort, corruption, severity in conditions:
                p = np.clip(np.where(y == 1, 0.75, 0.25) + rng.normal(0, 0.3, n_images), 0, 1).astype(np.float32)
                frames.append(pd.DataFrame({
                    "arm": "A" if a == 0 else f"arm{a}", "seed": s, "cohort": cohort, "corruption": corruption,
                    "severity": severity, "image_id": np.arange(n_images), "patient_id": patient,
                    "y_true": y, "p_relevant": p}))
    df = pd.concat(frames, ignore_index=True)
    for col in ("arm", "cohort", "corruption"):
        df[col] = df[col].astype("category")
    return df


def coverage(reps: int, seed_sd: float, n_boot: int = 400) -> dict[str, float]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_effects import simulate_counts

    hits = {"seeds and patients": 0, "patients only": 0}
    for r in range(reps):
        rng = np.random.default_rng(r)
        num_a, num_r, den = simulate_counts(rng, seed_sd=seed_sd)
        for name, levels in (("seeds and patients", ("seed", "patient")), ("patients only", ("patient",))):
            _, boot = two_level_bootstrap(num_a, den, num_r, n_boot=n_boot, rng=rng, resample=levels)
            lo, hi = percentile_interval(boot)
            hits[name] += lo <= 0 <= hi
    return {k: v / reps for k, v in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arms", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--n-boot", type=int, default=StudyConfig().n_bootstrap_effects)
    ap.add_argument("--store", default="", help="time a real prediction store's tables instead of a synthetic grid")
    ap.add_argument("--coverage", type=int, default=0, help="simulated data sets for the coverage check")
    args = ap.parse_args()
    for sd in (0.3, 0.6) if args.coverage else ():
        cov = coverage(args.coverage, sd)
        print(f"null-effect coverage of the 95% interval, seed sd {sd}: "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in cov.items()) + f" ({args.coverage} data sets)")
    t0 = time.perf_counter()
    comparisons, family = None, None
    if args.store:
        df = read_store(args.store)
        published = pd.read_csv(RESULTS / "effects.csv")
        comparisons = list(dict.fromkeys(zip(published["arm"], published["reference"], strict=True)))
        arms = pd.read_csv(RESULTS / "arms.csv").drop_duplicates("arm")
        family = dict(zip(arms["arm"], arms["family"], strict=True))
        print(f"store {args.store}: {len(df):,} rows, {df.groupby(['arm', 'seed'], observed=True).ngroups} models "
              f"({time.perf_counter() - t0:.1f} s to read)")
    else:
        df = grid_predictions(args.arms, args.seeds)
        print(f"table: {len(df):,} rows, {args.arms * args.seeds} models ({time.perf_counter() - t0:.1f} s to build)")
    t0 = time.perf_counter()
    eff = effects_table(df, comparisons, n_boot=args.n_boot, family=family)
    t_eff = time.perf_counter() - t0
    tested = eff["test_family"].value_counts().to_dict()
    print(f"effects_table: {len(eff)} rows ({', '.join(f'{n} {f}' for f, n in tested.items())}), "
          f"{args.n_boot} resamples each: {t_eff:.1f} s")
    t0 = time.perf_counter()
    arms = arms_table(df, n_boot=args.n_boot, family=family)
    print(f"arms_table: {len(arms)} rows: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

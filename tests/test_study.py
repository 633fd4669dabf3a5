"""The whole study on smoke settings: end to end, deterministic, resumable; notebooks under nbmake.

These are the slow tests of the suite (a few minutes on 2 cores): they execute every notebook.
"""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from knee_tf.config import StudyConfig
from knee_tf.study import STEPS, run_study

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_config(tmp_path_factory):
    """The smoke config with its data and cache in a temporary folder (generated once per module)."""
    tmp = tmp_path_factory.mktemp("smoke")
    cfg = StudyConfig.smoke(data_root=str(tmp / "data"), cache_dir=str(tmp / "cache"))
    path = tmp / "smoke.json"
    cfg.save(path)
    return path


@pytest.fixture(scope="module")
def first_run(smoke_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run1")
    log = []
    run_study(str(smoke_config), out=out, log=log.append)
    return out, log


def test_smoke_study_writes_every_promised_output(first_run):
    out, log = first_run
    assert all(f"[{s.name}] finished" in " ".join(log) for s in STEPS)
    for name in ("fig1_gradcam_layers", "fig2_augmentation", "fig2_augmentation_a_vs_b", "fig3_a_wrong_b_right"):
        png = out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    cohorts = pd.read_csv(out / "results" / "cohorts.csv")
    assert {"model", "cohort", "seed", "accuracy", "ci_low", "ci_high", "n"} <= set(cohorts.columns)
    assert set(cohorts["cohort"]) == {"normal", "metal", "cam"} and set(cohorts["model"]) == {"A", "B"}
    assert ((cohorts["ci_low"] <= cohorts["accuracy"]) & (cohorts["accuracy"] <= cohorts["ci_high"])).all()
    table = (out / "results" / "results_table.md").read_text()
    assert "83.1%" in table and "| metal |" in table
    for nb in STEPS:  # executed copies carry outputs, the committed notebooks do not
        assert (out / "notebooks" / f"{nb.name}.ipynb").exists()


def test_same_seed_gives_identical_results(first_run, smoke_config, tmp_path):
    out, _ = first_run
    run_study(str(smoke_config), out=tmp_path / "run2", log=lambda m: None)
    for name in ("cohorts.csv", "mcnemar.csv", "severity.csv"):
        a = (out / "results" / name).read_text()
        assert a == (tmp_path / "run2" / "results" / name).read_text(), name


def test_rerun_recomputes_only_the_missing_step_and_what_follows(first_run, smoke_config):
    out, _ = first_run
    (out / "models" / "model_b_seed0.keras").unlink()
    before = (out / "results" / "cohorts.csv").read_text()
    log = []
    run_study(str(smoke_config), out=out, log=log.append)
    text = "\n".join(log)
    for s in STEPS[:4]:
        assert f"[{s.name}] done earlier, skipped" in text
    for s in STEPS[4:]:
        assert f"[{s.name}] finished" in text
    assert (out / "models" / "model_b_seed0.keras").exists()
    assert (out / "results" / "cohorts.csv").read_text() == before  # same seed, same numbers


def test_cli_study_rejects_a_run_folder_of_another_config(first_run, tmp_path):
    out, _ = first_run
    other = tmp_path / "other.json"
    StudyConfig.smoke(epochs=2).save(other)
    proc = subprocess.run([sys.executable, "-m", "knee_tf", "study", "--config", str(other), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "holds a run with a different config" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_notebook_01_under_nbmake_with_smoke_switch(tmp_path):
    env = dict(os.environ, KNEE_TF_SMOKE="1", KNEE_TF_RUNS=str(tmp_path / "runs"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                           str(ROOT / "notebooks" / "01_data_ingest.ipynb")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert list((tmp_path / "runs").glob("*-smoke/artifacts/ingest.json"))

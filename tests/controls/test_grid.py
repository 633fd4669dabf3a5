"""knee_tf.controls.grid: the same jobs in-process and on a 2-worker LocalCluster give byte-identical predictions;
resuming recomputes nothing; failures are reported by name; no half-written model folder.

One smoke grid (2 arms x 2 seeds, 32 x 32 images) is run twice: in-process through the CLI (a fresh
process, as `knee-tf grid --workers 1`: the session's small_grid, tests/conftest.py), and, once for the
module, on a LocalCluster of two worker processes on loopback from this process, with one deliberately
failing job and its dependent added.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import GRID_ARMS, GRID_SEEDS

from knee_tf.controls.grid import run_grid
from knee_tf.controls.jobs import Job, plan_jobs
from knee_tf.controls.training_job import check_cache, commit_job, read_predictions, run_job
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import RunLayout
from knee_tf.study.cohorts import cohort_order
from knee_tf.study.config import StudyConfig

pytestmark = pytest.mark.slow
ARMS, SEEDS = GRID_ARMS, GRID_SEEDS  # the session's small grid (tests/conftest.py)
BAD = {"precision": "float16"}  # an invalid setting: the A job fails when it starts training


@pytest.fixture(scope="module")
def grids(small_grid, tmp_path_factory):
    tmp, cfg, cache = small_grid["tmp"], small_grid["cfg"], small_grid["cache"]
    jobs = plan_jobs(ARMS, SEEDS)
    bad = plan_jobs([MODEL_B], [0], overrides=BAD, variant="bad")  # A_bad fails, B_bad depends on it
    log = []
    cluster_dir = tmp_path_factory.mktemp("grid_cluster") / "cluster"
    cluster = run_grid(jobs + bad, cfg, cluster_dir, cache, workers=2, progress=False, log=log.append)
    return {"tmp": tmp, "cfg": cfg, "cache": cache, "jobs": jobs, "bad": bad, "cluster": cluster,
            "cluster_dir": cluster_dir, "log": log}


def test_cluster_and_in_process_give_byte_identical_predictions(grids):
    assert sorted(grids["cluster"].ran) == sorted(j.label for j in grids["jobs"])
    assert any("LocalCluster of 2 worker(s) at tcp://127.0.0.1:" in line for line in grids["log"])
    for job in grids["jobs"]:
        ours = RunLayout(grids["cluster_dir"]).grid_predictions(job.name, job.seed).read_bytes()
        assert ours == RunLayout(grids["tmp"] / "in_process").grid_predictions(job.name, job.seed).read_bytes(), job


def test_prediction_table_schema(grids):
    pred = read_predictions(grids["tmp"] / "in_process", grids["jobs"])
    assert list(pred.columns) == ["model", "seed", "cohort", "image_id", "plane", "site", "y_true", "p_relevant",
                                  "y_pred", "arm", "variant", "exam_id", "patient_id"]
    assert set(pred["model"]) == set(ARMS) and set(pred["seed"]) == set(SEEDS)
    assert set(pred["cohort"]) <= set(cohort_order(own_only=True)) and {"normal", "cam"} <= set(pred["cohort"])
    per_model = pred.groupby(["model", "seed", "cohort"]).size().unstack("cohort")
    assert (per_model.nunique() == 1).all()  # every model is scored on the same images
    assert not pred.duplicated(["model", "seed", "cohort", "image_id"]).any()
    assert pred["p_relevant"].between(0, 1).all() and (pred["variant"] == "").all()
    record = json.loads(RunLayout(grids["tmp"] / "in_process").job_record(MODEL_B, 0).read_text())
    assert record["n_augmented"] > 0 and record["precision"] == "float32"


def test_failed_job_is_reported_by_name_and_its_dependent_is_not_run(grids):
    failed = grids["cluster"].failed
    assert set(failed) == {"A_bad seed 0", "B_bad seed 0"}
    assert failed["A_bad seed 0"].startswith("ValueError: precision must be one of auto, float32, mixed_bfloat16")
    assert "\n" not in failed["A_bad seed 0"]
    assert failed["B_bad seed 0"] == "not run: A_bad seed 0 failed"
    assert any(line.startswith("grid: FAILED A_bad seed 0: ValueError") for line in grids["log"])
    layout = RunLayout(grids["cluster_dir"])
    assert not layout.model_dir("A_bad", 0).exists() and not list(layout.models.glob(".*"))


def test_resumed_grid_recomputes_nothing(grids):
    layout = RunLayout(grids["cluster_dir"])
    before = {p: p.stat().st_mtime_ns for p in layout.models.rglob("*")}
    log = []
    res = run_grid(grids["jobs"], grids["cfg"], layout.root, grids["cache"], workers=2, progress=False, log=log.append)
    assert res.ran == [] and res.failed == {} and sorted(res.skipped) == sorted(j.label for j in grids["jobs"])
    assert not any("LocalCluster" in line for line in log)  # nothing to run: no cluster started
    assert {p: p.stat().st_mtime_ns for p in layout.models.rglob("*")} == before


def test_in_process_failure_leaves_the_other_jobs_running(grids, tmp_path):
    """In-process: a job whose cache is missing fails in one line naming the path."""
    missing = tmp_path / "no_cache"
    res = run_grid([Job(MODEL_A, 0)], grids["cfg"], tmp_path / "run", missing, workers=0, progress=False,
                   log=lambda m: None)
    assert res.failed == {"A seed 0": f"FileNotFoundError: ingest cache not found at {missing} on "
                                      f"{os.uname().nodename}: every worker reads it from this path "
                                      "(a shared filesystem, or a copy staged there)"}
    with pytest.raises(FileNotFoundError, match="ingest cache not found at"):
        check_cache(missing)


def test_interrupted_commit_leaves_no_model_folder(grids, tmp_path, monkeypatch):
    layout = RunLayout(tmp_path / "run")
    job = Job(MODEL_A, 0)
    files = {name: p.read_bytes() for name, p in (
        ("model.keras", RunLayout(grids["tmp"] / "in_process").model(MODEL_A, 0)),
        ("training_log.csv", RunLayout(grids["tmp"] / "in_process").training_log(MODEL_A, 0)))}
    calls = []
    real = Path.write_bytes

    def dying(self, data):
        calls.append(self)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after the first file
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", dying)
    with pytest.raises(KeyboardInterrupt):
        commit_job(layout, job, {"files": files, "record": {}})
    monkeypatch.undo()
    assert not layout.model_dir(MODEL_A, 0).exists() and list(layout.models.iterdir()) == []
    # a temporary folder left by a killed client is removed by the next run
    # (atomic_dir's temporary folder, and an old folder it had moved aside), and nothing else
    name = RunLayout.model_name(MODEL_A, 0)
    stale = [layout.models / f".{name}.deadbeef.tmp", layout.models / f".{name}.old-deadbeef"]
    for p in stale:
        p.mkdir()
    kept = layout.models / name
    kept.mkdir()
    run_grid([], grids["cfg"], layout.root, grids["cache"], workers=0, log=lambda m: None)
    assert not any(p.exists() for p in stale) and kept.exists()


def test_jobs_need_their_model_a_and_valid_names():
    assert [j.label for j in plan_jobs([MODEL_B], [3])] == ["A seed 3", "B seed 3"]
    with pytest.raises(ValueError, match="unknown arm 'C'; known arms: A, B"):
        Job("C", 0)
    with pytest.raises(ValueError, match="need a variant name"):
        Job(MODEL_A, 0, overrides={"epochs": 2})
    with pytest.raises(ValueError, match="job B seed 0 needs the model of A seed 0"):
        run_job(Job(MODEL_B, 0), StudyConfig.smoke().to_dict(), "/nonexistent")


def test_missing_dependency_is_refused_before_anything_runs(grids, tmp_path):
    with pytest.raises(ValueError, match="job B seed 7 needs A seed 7: add it to the grid"):
        run_grid([Job(MODEL_B, 7)], grids["cfg"], tmp_path / "run", grids["cache"], workers=0)


def test_read_predictions_finds_every_finished_folder(grids):
    every = read_predictions(grids["tmp"] / "in_process")
    assert len(every) == len(read_predictions(grids["tmp"] / "in_process", grids["jobs"]))
    assert isinstance(every, pd.DataFrame)

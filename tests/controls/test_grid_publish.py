"""knee_tf.controls.publish: a grid publishes each finished job, a later session's grid skips what is published
and trains nothing, a retrained Model A must reproduce its published predictions, published jobs of
other settings or data are refused in one line, and the prediction store is rebuilt from the published jobs.

One smoke grid (A and B, seed 0, 32 x 32 images, in-process, on the data of the session's small_grid in
tests/conftest.py) is published once for the module; the other tests copy the published folder and work
on the copy.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest

from knee_tf.controls import grid
from knee_tf.controls import publish as gp
from knee_tf.controls.grid import run_grid
from knee_tf.controls.jobs import plan_jobs
from knee_tf.controls.prediction_store import STORE_COLUMNS, read_store, store_frame, write_store
from knee_tf.core.vocab import MODEL_A, MODEL_B, NO_CORRUPTION
from knee_tf.data.ingest import open_cache
from knee_tf.data.layout import PUBLISHED_CROSS_FILES, PUBLISHED_JOB_FILES, PublishedGrid, RunLayout

pytestmark = pytest.mark.slow
JOBS = plan_jobs([MODEL_B], [0])  # A seed 0, B seed 0


#: The code commit the jobs of this module record: a clean one, whatever the state of the tree the tests
#: run from (a job trained from a tree with uncommitted changes is never published; see
#: test_a_grid_from_a_dirty_tree_is_refused_before_training).
CLEAN_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", autouse=True)
def clean_commit():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gp, "code_commit", lambda repo=None: CLEAN_COMMIT)
        yield


@pytest.fixture(scope="module")
def published(small_grid, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gridpub")
    cfg, cache = small_grid["cfg"], small_grid["cache"]
    pub = PublishedGrid(tmp / "results" / "grid")
    log = []
    res = run_grid(JOBS, cfg, tmp / "run1", cache, workers=0, progress=False, log=log.append, publish=pub)
    assert res.ok, res.failed
    return {"tmp": tmp, "cfg": cfg, "cache": cache, "pub": pub, "res": res, "log": log,
            "index": open_cache(cache).index, "unpublished_run": small_grid["tmp"] / "in_process"}


def _copy(pub: PublishedGrid, dst) -> PublishedGrid:
    shutil.copytree(pub.root, dst)
    return PublishedGrid(dst)


def _no_training(monkeypatch):
    def refuse(job, *a, **k):
        raise AssertionError(f"{job.label} was trained")

    monkeypatch.setattr(grid, "run_job", refuse)


def test_each_finished_job_is_published_compactly_with_its_record(published):
    pub, layout = published["pub"], RunLayout(published["tmp"] / "run1")
    assert sorted(published["res"].published) == sorted(j.label for j in JOBS)
    for job in JOBS:
        folder = pub.job_dir(job.name, job.seed)
        assert sorted(p.name for p in folder.iterdir()) == sorted([*PUBLISHED_JOB_FILES.values(),
                                                                   *PUBLISHED_CROSS_FILES.values()])
        pred = pd.read_parquet(pub.predictions(job.name, job.seed))
        assert list(pred.columns) == list(STORE_COLUMNS) and str(pred["p_relevant"].dtype) == "float32"
        assert all(str(pred[c].dtype) == "category" for c in ("arm", "cohort", "corruption", "plane"))
        run_rows = pd.read_parquet(layout.grid_predictions(job.name, job.seed))
        assert len(pred) == len(run_rows)  # every cohort row and every held-out corruption row
        assert {"normal", "cam"} <= set(pred["cohort"]) and (pred["corruption"] != NO_CORRUPTION).any()
        record = json.loads(pub.job_record(job.name, job.seed).read_text())
        for key in ("settings", "settings_digest", "data_digest", "ingest_key", "code_commit", "precision",
                    "seconds", "epochs_run"):
            assert key in record, key
        assert record["settings_digest"] == gp.digest(record["settings"])
        assert record["data_digest"] == gp.data_digest(published["cache"])
        assert record == json.loads(layout.job_record(job.name, job.seed).read_text())
        assert pub.training_log(job.name, job.seed).read_bytes() == layout.training_log(job.name, job.seed).read_bytes()
        assert not (folder / "model.keras").exists()
    size = pub.predictions(MODEL_B, 0).stat().st_size
    print(f"published predictions of B seed 0: {len(pred)} rows, {size} bytes, {size / len(pred):.2f} bytes/row")


def test_the_cross_cohorts_are_published_once_a_seeds_models_are_together(published):
    """cam_b needs B's model, so it is published beside each job once B of the seed has finished: the
    same rows notebook 07 scores from the run folder, with a record naming the maps' job and digests."""
    from knee_tf.controls.summary import run_store
    from knee_tf.study.cohorts import CAM_B

    pub, cache = published["pub"], published["cache"]
    assert sorted(published["res"].cross_published) == sorted(j.label for j in JOBS)
    assert "grid: cam_transfer / cam_b of seed 0 published for 2 job(s)" in published["log"]
    b_record = json.loads(pub.job_record(MODEL_B, 0).read_text())
    from_run = run_store(published["tmp"] / "run1", JOBS, published["cfg"], open_cache(cache))
    for job in JOBS:
        record = json.loads(pub.cross_record(job.name, job.seed).read_text())
        assert record["cohorts"] == [CAM_B]
        assert record["maps"] == {CAM_B: ["B seed 0", b_record["settings_digest"], b_record["data_digest"]]}
        cross = pd.read_parquet(pub.cross_predictions(job.name, job.seed))
        assert list(cross.columns) == list(STORE_COLUMNS) and set(cross["cohort"]) == {CAM_B}
        expected = from_run[(from_run["cohort"] == CAM_B) & (from_run["arm"] == job.name)].reset_index(drop=True)
        pd.testing.assert_frame_equal(cross.astype(str), expected.astype(str))
    store = gp.read_published(pub, JOBS)
    assert CAM_B in set(store["cohort"]) and len(store) == len(from_run)


def test_cross_cohorts_wait_for_models_missing_from_the_run_folder(published, tmp_path, monkeypatch):
    """A later session whose run folder lacks B's model (lost with the earlier session's run folder)
    publishes no cross cohorts and says which models they wait for; a run-folder model that is not
    the published one is refused."""
    pub = _copy(published["pub"], tmp_path / "grid")
    for job in JOBS:
        pub.cross_predictions(job.name, job.seed).unlink()
    _no_training(monkeypatch)
    log = []
    res = run_grid(JOBS, published["cfg"], tmp_path / "fresh_run", published["cache"], workers=0, progress=False,
                   log=log.append, publish=pub)
    assert res.ran == [] and res.cross_published == []
    assert "grid: cam_transfer / cam_b of seed 0 wait for 2 model(s) not in the run folder: B seed 0, A seed 0" in log
    assert not any(pub.cross_predictions(j.name, j.seed).exists() for j in JOBS)
    # B's model is at hand again, A's not: B's cross cohorts are published, A's wait
    part = tmp_path / "part"
    shutil.copytree(published["tmp"] / "run1", part)
    shutil.rmtree(RunLayout(part).model_dir(MODEL_A, 0))
    log.clear()
    res = run_grid(JOBS, published["cfg"], part, published["cache"], workers=0, progress=False, log=log.append,
                   publish=pub)
    assert res.ran == [] and res.cross_published == ["B seed 0"]
    assert "grid: cam_transfer / cam_b of seed 0 wait for 1 model(s) not in the run folder: A seed 0" in log
    assert pub.cross_predictions(MODEL_B, 0).read_bytes() == published["pub"].cross_predictions(MODEL_B, 0).read_bytes()
    assert not pub.cross_predictions(MODEL_A, 0).exists()
    pub.cross_predictions(MODEL_B, 0).unlink()
    # the models are at hand again (trained again into a run folder); one of them is not the published one
    run = tmp_path / "again"
    shutil.copytree(published["tmp"] / "run1", run)
    path = pub.predictions(MODEL_A, 0)
    df = pd.read_parquet(path)
    df.loc[0, "p_relevant"] = 0.25 if df.loc[0, "p_relevant"] > 0.5 else 0.75
    df.to_parquet(path, compression="zstd", index=False)
    with pytest.raises(RuntimeError, match=r"A seed 0 trained again does not reproduce its published predictions"):
        run_grid(JOBS, published["cfg"], run, published["cache"], workers=0, progress=False, log=log.append,
                 publish=pub)
    assert not any(pub.cross_predictions(j.name, j.seed).exists() for j in JOBS)


def test_a_job_here_without_cross_cohorts_retrains_the_published_models_that_make_them(published, tmp_path):
    """A job of the run folder that lacks its cross cohorts (a dirty-tree job replaced whole by
    --republish, whose cohorts the replaced model's maps no longer match) gets them once the grid's
    own jobs are done: the published B whose maps make cam_b, not in this run folder, is trained again,
    checked against its published predictions, and used."""
    pub = _copy(published["pub"], tmp_path / "grid")
    pub.cross_predictions(MODEL_A, 0).unlink()
    pub.cross_record(MODEL_A, 0).unlink()
    run = tmp_path / "run"
    shutil.copytree(published["tmp"] / "run1", run)
    shutil.rmtree(RunLayout(run).model_dir(MODEL_B, 0))  # B's model is not here
    log = []
    res = run_grid(JOBS, published["cfg"], run, published["cache"], workers=0, progress=False, log=log.append,
                   publish=pub)
    assert res.ok and res.ran == ["B seed 0"] and res.retrained == ["B seed 0"] and res.published == []
    assert res.cross_published == ["A seed 0"]
    assert ("grid: 1 published model(s) trained again for the cross cohorts (cam_transfer / cam_b) of jobs without "
            "current ones: B seed 0") in log
    for name in ("cross_predictions", "cross_record", "predictions"):
        assert getattr(pub, name)(MODEL_A, 0).read_bytes() == getattr(published["pub"], name)(MODEL_A, 0).read_bytes()
    # without a job here that lacks them (a fresh run folder), nothing is trained: the cohorts wait
    pub.cross_predictions(MODEL_A, 0).unlink()
    res = run_grid(JOBS, published["cfg"], tmp_path / "fresh", published["cache"], workers=0, progress=False,
                   log=lambda m: None, publish=pub)
    assert res.ran == [] and res.retrained == [] and res.cross_published == []


def test_republish_makes_cross_cohorts_from_a_dirty_tree_again_training_the_models_it_needs(published, tmp_path):
    """Cross cohorts whose record names a tree with uncommitted changes are kept as they are without
    --republish; with it, the published job and the models whose maps make them are trained again
    (each checked against its published predictions) and the cohorts made again from a clean tree."""
    pub = _copy(published["pub"], tmp_path / "grid")
    path = pub.cross_record(MODEL_A, 0)
    record = json.loads(path.read_text())
    path.write_text(json.dumps(dict(record, code_commit=record["code_commit"] + gp.DIRTY_SUFFIX)))
    res = run_grid(JOBS, published["cfg"], tmp_path / "kept", published["cache"], workers=0, progress=False,
                   log=lambda m: None, publish=pub)
    assert res.ran == [] and gp.is_dirty(json.loads(path.read_text())["code_commit"])
    log = []
    res = run_grid(JOBS, published["cfg"], tmp_path / "again", published["cache"], workers=0, progress=False,
                   log=log.append, publish=pub, republish=True)
    assert res.ok and res.ran == ["A seed 0", "B seed 0"] and res.retrained == ["A seed 0", "B seed 0"]
    assert res.published == [] and res.cross_published == ["A seed 0"]
    assert ("grid: 2 published model(s) trained again for the cross cohorts (cam_transfer / cam_b) of jobs without "
            "current ones: A seed 0, B seed 0") in log
    assert json.loads(path.read_text()) == json.loads(published["pub"].cross_record(MODEL_A, 0).read_text())
    assert pub.cross_predictions(MODEL_A, 0).read_bytes() == published["pub"].cross_predictions(MODEL_A, 0).read_bytes()


def test_cross_cohorts_made_by_other_maps_are_made_again(published, tmp_path, monkeypatch):
    """A cross record whose maps' job or digests differ from the plan's (B republished, say) is stale:
    the next --publish with the models at hand replaces it, with the same rows for the same maps."""
    pub = _copy(published["pub"], tmp_path / "grid")
    path = pub.cross_record(MODEL_A, 0)
    record = json.loads(path.read_text())
    record["maps"]["cam_b"][1] = "0123456789abcdef"  # made from another B's maps
    path.write_text(json.dumps(record))
    _no_training(monkeypatch)
    res = run_grid(JOBS, published["cfg"], published["tmp"] / "run1", published["cache"], workers=0,
                   progress=False, log=lambda m: None, publish=pub)
    assert res.cross_published == ["A seed 0"]
    assert json.loads(path.read_text())["maps"] == json.loads(published["pub"].cross_record(MODEL_A, 0).read_text())["maps"]
    assert pub.cross_predictions(MODEL_A, 0).read_bytes() == published["pub"].cross_predictions(MODEL_A, 0).read_bytes()


def test_cross_cohorts_of_a_config_with_more_makers_are_left_alone(published, tmp_path, monkeypatch):
    """Published cross cohorts that include one this grid's config does not make (cam_transfer, published
    by a grid with a transfer Model A; this config has none) are current when the rest match: a grid
    with the models at hand neither waits for nor remakes them, so cam_transfer is never dropped."""
    pub = _copy(published["pub"], tmp_path / "grid")
    for job in JOBS:
        path = pub.cross_record(job.name, job.seed)
        record = json.loads(path.read_text())
        assert "cam_transfer" not in record["maps"] and published["cfg"].transfer_seed < 0
        record["maps"]["cam_transfer"] = ["A_transfer seed 1000", "0123456789abcdef", "0123456789abcdef"]
        path.write_text(json.dumps(record))
    before = {p: p.stat().st_mtime_ns for p in pub.root.rglob("*")}
    _no_training(monkeypatch)
    log = []
    res = run_grid(JOBS, published["cfg"], published["tmp"] / "run1", published["cache"], workers=0,
                   progress=False, log=log.append, publish=pub)
    assert res.cross_published == [] and not any("wait for" in line for line in log)
    assert {p: p.stat().st_mtime_ns for p in pub.root.rglob("*")} == before


def test_a_later_session_skips_every_published_job_and_trains_nothing(published, tmp_path, monkeypatch):
    pub = _copy(published["pub"], tmp_path / "grid")
    before = {p: p.stat().st_mtime_ns for p in pub.root.rglob("*")}
    _no_training(monkeypatch)
    log = []
    res = run_grid(JOBS, published["cfg"], tmp_path / "fresh_run", published["cache"], workers=0, progress=False,
                   log=log.append, publish=pub)
    assert res.ran == [] and res.failed == {} and res.skipped == [] and res.retrained == []
    assert sorted(res.skipped_published) == sorted(j.label for j in JOBS)
    assert any(line.startswith("grid: 2 job(s) published earlier with these settings and data, skipped")
               for line in log)
    assert {p: p.stat().st_mtime_ns for p in pub.root.rglob("*")} == before
    # every job has current cross cohorts: nothing waits for the models this run folder lacks
    assert not any("wait for" in line for line in log)


def test_a_run_made_without_publishing_is_published_afterwards_without_training(published, tmp_path, monkeypatch):
    # a run made without --publish (as notebook 05 runs its jobs): the session's small grid, trained in
    # another process; every job record carries its provenance
    run = tmp_path / "study_run"
    shutil.copytree(published["unpublished_run"], run)
    for path in run.rglob("job.json"):  # trained in another process from this tree, whose changes may be uncommitted
        record = json.loads(path.read_text())
        path.write_text(json.dumps(dict(record, code_commit=record["code_commit"].removesuffix(gp.DIRTY_SUFFIX))))
    res = run_grid(JOBS, published["cfg"], run, published["cache"], workers=0, progress=False, log=lambda m: None)
    assert res.ok and res.published == [] and sorted(res.skipped) == sorted(j.label for j in JOBS)
    record = json.loads(RunLayout(run).job_record(MODEL_A, 0).read_text())
    assert record["settings_digest"] == gp.digest(record["settings"])
    assert record["data_digest"] == gp.data_digest(published["cache"])
    pub = PublishedGrid(tmp_path / "grid")
    _no_training(monkeypatch)
    res = run_grid(JOBS, published["cfg"], run, published["cache"], workers=0, progress=False, log=lambda m: None,
                   publish=pub)
    assert res.ran == [] and sorted(res.published) == sorted(j.label for j in JOBS)
    for job in JOBS:  # same seed, same weights: the same bytes as the grid that published as it ran
        assert pub.predictions(job.name, 0).read_bytes() == published["pub"].predictions(job.name, 0).read_bytes()


def test_a_pending_dependent_retrains_its_published_model_a_which_reproduces_its_predictions(published, tmp_path):
    pub = _copy(published["pub"], tmp_path / "grid")
    shutil.rmtree(pub.job_dir(MODEL_B, 0))  # B did not finish in the earlier session; A did
    res = run_grid(JOBS, published["cfg"], tmp_path / "fresh_run", published["cache"], workers=0, progress=False,
                   log=lambda m: None, publish=pub)
    assert res.ok and res.retrained == ["A seed 0"] and res.published == ["B seed 0"]
    assert res.skipped_published == ["A seed 0"]
    old = published["pub"]
    for job in JOBS:  # same seed, same weights: B trained on the retrained A is published byte for byte again
        assert pub.predictions(job.name, 0).read_bytes() == old.predictions(job.name, 0).read_bytes(), job


def test_a_retrained_model_a_that_differs_from_its_published_predictions_fails_loudly(published, tmp_path):
    pub = _copy(published["pub"], tmp_path / "grid")
    path = pub.predictions(MODEL_A, 0)
    df = pd.read_parquet(path)
    df.loc[3, "p_relevant"] = 0.25 if df.loc[3, "p_relevant"] > 0.5 else 0.75  # one probability changed
    df.to_parquet(path, compression="zstd", index=False)
    with pytest.raises(RuntimeError, match=r"A seed 0 trained again does not reproduce its published predictions "
                                           r".*first differing row"):
        gp.check_retrained(pub, RunLayout(published["tmp"] / "run1"), JOBS[0], published["index"])


def test_published_jobs_of_other_settings_or_data_are_refused_in_one_line(published, tmp_path, monkeypatch):
    pub = _copy(published["pub"], tmp_path / "grid")
    _no_training(monkeypatch)
    other = published["cfg"].replace(learning_rate=0.002)
    with pytest.raises(ValueError) as e:
        run_grid(JOBS, other, tmp_path / "run_a", published["cache"], workers=0, progress=False,
                 log=lambda m: None, publish=pub)
    assert str(e.value) == (f"published job A seed 0 ({pub.job_dir(MODEL_A, 0)}) differs from this run: settings "
                            "learning_rate 0.001 -> 0.002 (and 1 more job(s)); use --republish to retrain and "
                            "replace it, or publish to another folder")
    record_path = pub.job_record(MODEL_B, 0)
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps(dict(record, data_digest="0123456789abcdef")))
    with pytest.raises(ValueError, match=r"^published job B seed 0 .* data digest 0123456789abcdef -> "
                                         r"[0-9a-f]{16} \(the ingested images or index differ\); use --republish"):
        run_grid(JOBS, published["cfg"], tmp_path / "run_b", published["cache"], workers=0, progress=False,
                 log=lambda m: None, publish=pub)
    # settings that cannot change a job's results do not count
    same = published["cfg"].replace(name="renamed", n_bootstrap=5, grid_workers=2)
    res = run_grid(JOBS[:1], same, tmp_path / "run_c", published["cache"], workers=0, progress=False,
                   log=lambda m: None, publish=pub)
    assert res.skipped_published == ["A seed 0"]


def test_a_grid_from_a_dirty_tree_is_refused_before_training(published, tmp_path, monkeypatch):
    """`grid --publish` from a tree with uncommitted changes refuses, in one line naming the job, before
    training a job it would publish; a grid with nothing left to publish is not refused."""
    pub = _copy(published["pub"], tmp_path / "grid")
    shutil.rmtree(pub.job_dir(MODEL_B, 0))  # B is still to be trained and published
    _no_training(monkeypatch)
    monkeypatch.setattr(gp, "code_commit", lambda repo=None: CLEAN_COMMIT + "+dirty")
    with pytest.raises(ValueError) as e:
        run_grid(JOBS, published["cfg"], tmp_path / "run", published["cache"], workers=0, progress=False,
                 log=lambda m: None, publish=pub)
    assert str(e.value) == (f"grid --publish: B seed 0 would be trained from a tree with uncommitted changes (code "
                            f"commit {CLEAN_COMMIT}+dirty) and could not be published; commit the changes first")
    assert not pub.job_dir(MODEL_B, 0).exists()
    res = run_grid(JOBS, published["cfg"], tmp_path / "run2", published["cache"], workers=0, progress=False,
                   log=lambda m: None, publish=_copy(published["pub"], tmp_path / "complete"))
    assert res.ran == [] and sorted(res.skipped_published) == sorted(j.label for j in JOBS)


def _dirty_copy(published, dst) -> PublishedGrid:
    pub = _copy(published["pub"], dst)
    for job in JOBS:
        path = pub.job_record(job.name, 0)
        record = json.loads(path.read_text())
        path.write_text(json.dumps(dict(record, code_commit=CLEAN_COMMIT[::-1] + gp.DIRTY_SUFFIX)))
    return pub


def test_republish_trains_dirty_tree_jobs_again_and_keeps_what_they_reproduce(published, tmp_path, monkeypatch):
    """A job published from a tree with uncommitted changes stays published, untouched, without
    --republish. With it, the job is trained again (here: found finished in the run folder): one that
    reproduces its predictions and training log byte for byte keeps its files and gets the clean
    record; one that reproduces its predictions only also gets the new training log; one whose
    predictions differ is replaced whole."""
    _no_training(monkeypatch)
    whole = _dirty_copy(published, tmp_path / "whole")
    log = []
    res = run_grid(JOBS, published["cfg"], tmp_path / "run0", published["cache"], workers=0, progress=False,
                   log=log.append, publish=whole)  # no --republish: kept as they are
    assert res.ran == [] and sorted(res.skipped_published) == sorted(j.label for j in JOBS)
    shutil.copytree(published["tmp"] / "run1", tmp_path / "run1")  # the same jobs, trained from a clean tree
    before = {p: p.stat().st_mtime_ns for p in whole.root.rglob("*")}
    res = run_grid(JOBS, published["cfg"], tmp_path / "run1", published["cache"], workers=0, progress=False,
                   log=log.append, publish=whole, republish=True)
    assert res.ran == [] and sorted(res.published) == sorted(j.label for j in JOBS)
    for job in JOBS:
        assert f"grid: {job.label} reproduces its dirty-tree publication byte for byte; record replaced" in log
        kept = [p for p in whole.job_dir(job.name, 0).iterdir() if p.name != whole.job_record(job.name, 0).name]
        assert kept and all(p.stat().st_mtime_ns == before[p] for p in kept)
        assert not gp.is_dirty(json.loads(whole.job_record(job.name, 0).read_text())["code_commit"])

    pub = _dirty_copy(published, tmp_path / "grid")
    pub.training_log(MODEL_A, 0).write_text("epoch,loss\n0,1.0\n")  # A's dirty tree trained other later epochs
    b_pred = pub.predictions(MODEL_B, 0)
    df = pd.read_parquet(b_pred)
    df.loc[3, "p_relevant"] = 0.25 if df.loc[3, "p_relevant"] > 0.5 else 0.75  # B's dirty tree trained other bits
    df.to_parquet(b_pred, compression="zstd", index=False)
    a_cross = pub.cross_predictions(MODEL_A, 0).stat().st_mtime_ns
    log.clear()
    run = tmp_path / "run"
    shutil.copytree(published["tmp"] / "run1", run)
    res = run_grid(JOBS, published["cfg"], run, published["cache"], workers=0, progress=False, log=log.append,
                   publish=pub, republish=True)
    assert res.ran == [] and sorted(res.published) == sorted(j.label for j in JOBS)
    assert ("grid: A seed 0 reproduces its dirty-tree publication's predictions byte for byte but not its training "
            "log; record and training log replaced, predictions and cross cohorts kept") in log
    assert pub.cross_predictions(MODEL_A, 0).stat().st_mtime_ns == a_cross
    assert any(line.startswith("grid: B seed 0 does not reproduce its dirty-tree publication (B seed 0 trained "
                               "again does not reproduce") for line in log)
    for job in JOBS:
        assert not gp.is_dirty(json.loads(pub.job_record(job.name, 0).read_text())["code_commit"])
        for name in ("predictions", "training_log", "cross_predictions"):
            assert getattr(pub, name)(job.name, 0).read_bytes() == \
                getattr(published["pub"], name)(job.name, 0).read_bytes(), (job.label, name)


def test_the_prediction_store_is_rebuilt_from_the_published_jobs(published, tmp_path):
    """The published jobs' own and cross-cohort rows make the store notebook 07 builds from the run folder."""
    from knee_tf.controls.summary import run_store

    rebuilt = gp.rebuild_store(published["pub"], tmp_path / "store_rebuilt.parquet")
    from_run = run_store(published["tmp"] / "run1", JOBS, published["cfg"], open_cache(published["cache"]))
    direct = write_store(tmp_path / "store_run.parquet", from_run)
    assert rebuilt.read_bytes() == direct.read_bytes()
    pd.testing.assert_frame_equal(read_store(rebuilt), read_store(direct))


def test_tables_of_a_partial_grid_say_how_many_seeds_each_arm_has(published):
    from knee_tf.controls.summary import grid_status_line, study_tables

    store = gp.read_published(published["pub"])
    plan = plan_jobs([MODEL_B], [0, 1])  # the plan asks for two seeds; one is published
    assert gp.completeness(store, plan).to_dict("records") == [
        {"arm": MODEL_A, "n_seeds_planned": 2, "n_seeds": 1, "complete": False},
        {"arm": MODEL_B, "n_seeds_planned": 2, "n_seeds": 1, "complete": False}]
    assert grid_status_line(store, plan) == ("PARTIAL grid: 2 of 4 planned (model, seed) jobs; "
                                             "seeds present/planned: A 1/2, B 1/2")
    assert grid_status_line(store, JOBS).startswith("grid complete")
    tables = study_tables(store, plan, published["cfg"].replace(n_bootstrap=20))
    arms = tables["arms_table"]
    assert (arms["n_seeds"] == 1).all() and (arms["n_seeds_planned"] == 2).all()
    assert list(arms.columns).index("n_seeds_planned") < list(arms.columns).index("cohort")  # an arm_info column
    assert set(zip(tables["effects_table"]["arm"], tables["effects_table"]["reference"], strict=True)) \
        == {(MODEL_B, MODEL_A)}


def test_cli_publish_options_need_publish():
    from knee_tf.cli import main

    assert main(["grid", "--config", "smoke", "--republish"]) == 2


def test_notebook_07s_assembly_from_a_run_folder(published):
    """knee_tf.controls.summary as notebook 07 calls it: the run's store (own predictions and cam_b), its
    tables, the ablation panels and the learning curve's points."""
    from knee_tf.controls.summary import (
        ablation_panels,
        cross_status_line,
        learning_curves,
        run_store,
        study_tables,
    )
    from knee_tf.study.cohorts import CAM_B

    data = open_cache(published["cache"])
    store = run_store(published["tmp"] / "run1", JOBS, published["cfg"], data)
    assert list(store.columns) == list(STORE_COLUMNS) and CAM_B in set(store["cohort"])
    # the published jobs hold the same rows: their own cohorts and, published beside them, cam_b
    pd.testing.assert_frame_equal(store.astype({"cohort": str}),
                                  gp.read_published(published["pub"]).pipe(
                                      lambda d: store_frame(d, published["index"])).astype({"cohort": str}),
                                  check_categorical=False)
    assert cross_status_line(store, JOBS) == "cross cohorts: cam_transfer 0, cam_b 2 of 2 planned jobs"
    own = store[store["cohort"].astype(str) != CAM_B]
    assert cross_status_line(own, JOBS) == "cross cohorts: cam_transfer 0, cam_b 0 of 2 planned jobs"
    tables = study_tables(store, JOBS, published["cfg"].replace(n_bootstrap=20))
    assert set(tables) == {"arms_table", "effects_table", "prescription_table"}
    assert ablation_panels(store) == {}  # no ablation arm trained
    curves = learning_curves(data, published["cfg"].replace(learning_curve_exams=(5,)))
    assert [n for _, n in curves[MODEL_A]][0] == 5 and curves[MODEL_B][0][0] == "B_n5"
    assert learning_curves(data, published["cfg"]) == {}
    # with the store: only the points it holds, only arms with two or more of them (a partial grid)
    five = published["cfg"].replace(learning_curve_exams=(5,))
    assert learning_curves(data, five, store) == {}
    a5 = store[store["arm"] == MODEL_A].astype({"arm": str}).assign(arm="A_n5")
    assert learning_curves(data, five, pd.concat([store.astype({"arm": str}), a5])) == {
        MODEL_A: curves[MODEL_A]}


def test_notebook_07_takes_its_store_from_the_configured_source(published):
    from knee_tf.controls.summary import controls_store

    cfg = published["cfg"]
    data = SimpleNamespace(cache_dir=published["cache"])  # what notebook 07 hands over: the run's ingest
    store = controls_store(cfg.replace(controls_source="published"), None, JOBS, data, published["tmp"])
    pd.testing.assert_frame_equal(store, gp.read_published(published["pub"], JOBS))
    with pytest.raises(ValueError, match="controls_source 'both'"):
        controls_store(cfg.replace(controls_source="both"), None, JOBS, data, published["tmp"])
    # published jobs trained with other settings are refused in one line, naming how to train them instead
    with pytest.raises(ValueError, match="trained with other settings .*make study CONTROLS=train"):
        controls_store(cfg.replace(controls_source="published", learning_rate=0.5), None, JOBS, data, published["tmp"])


def test_plan_order_puts_the_learning_curve_in_exam_order_not_name_order():
    """Figures of notebook 07 list arms as the plan does; "A_n100" sorts before "A_n25" by name."""
    from knee_tf.controls.jobs import controls_plan
    from knee_tf.controls.summary import plan_order
    from knee_tf.study.config import get_config

    table = pd.DataFrame({"arm": ["B_n25", "A_n100", "A", "A_n25", "not_planned", "A", "B"]})
    assert plan_order(controls_plan(get_config("full")), table) == ["A", "A_n25", "A_n100", "B", "B_n25",
                                                                    "not_planned"]

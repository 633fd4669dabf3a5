"""A job trained from a tree with uncommitted changes (its record's code commit ends with ``+dirty``) is
never published (knee_tf.controls.publish.publish_job refuses it in one line naming the job), and the jobs
published before that rule are flagged (published_jobs' ``dirty`` column, the results page's grid table).
The grid's refusal before training is tested with the published smoke grid in test_grid_publish.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from knee_tf.controls import publish as gp
from knee_tf.controls.jobs import Job
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import PublishedGrid, RunLayout


def _record(layout: RunLayout, job: Job, commit: str) -> None:
    path = layout.job_record(job.name, job.seed)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"job": job.name, "arm": job.arm, "variant": job.variant, "seed": job.seed,
                                "settings": {}, "settings_digest": gp.digest({}), "data_digest": "0" * 16,
                                "code_commit": commit}))


def test_publish_job_refuses_a_job_trained_from_a_dirty_tree_in_one_line(tmp_path):
    layout, pub = RunLayout(tmp_path / "run"), PublishedGrid(tmp_path / "results" / "grid")
    job = Job(MODEL_B, 3)
    _record(layout, job, "e2ac01e7a23be25660c9ae3eeb2cbada0e0a1971+dirty")
    with pytest.raises(ValueError) as err:
        gp.publish_job(pub, layout, job, pd.DataFrame())
    message = str(err.value)
    assert "\n" not in message and message.startswith("B seed 3 (")
    assert "trained from a tree with uncommitted changes (code commit e2ac01e7a23be25660c9ae3eeb2cbada0e0a1971+dirty)" \
        in message and "not published" in message
    assert not pub.root.exists()  # nothing was written


def test_is_dirty_reads_the_suffix_code_commit_writes():
    assert gp.is_dirty("abc+dirty") and not gp.is_dirty("abc") and not gp.is_dirty("") and not gp.is_dirty(None)
    assert gp.code_commit(gp.REPO_ROOT).endswith(gp.DIRTY_SUFFIX) == gp.is_dirty(gp.code_commit(gp.REPO_ROOT))


def test_published_outputs_do_not_make_the_tree_dirty_code_does(tmp_path):
    """A grid that has just published into results/grid (or redrawn figures/) may go on publishing: only
    tracked files outside knee_tf.controls.publish.PUBLISHED_OUTPUTS make the code commit dirty."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for rel in ("knee_tf/model.py", "results/grid/model_a_seed0/job.json", "figures/f.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("0")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    sha = gp.code_commit(tmp_path)
    assert len(sha) == 40 and not gp.is_dirty(sha)
    (tmp_path / "results/grid/model_a_seed0/job.json").write_text("1")
    (tmp_path / "figures/f.png").write_text("1")
    (tmp_path / "notes.txt").write_text("untracked")
    assert gp.code_commit(tmp_path) == sha
    (tmp_path / "knee_tf/model.py").write_text("1")
    assert gp.code_commit(tmp_path) == sha + gp.DIRTY_SUFFIX


def test_published_jobs_flags_the_dirty_ones(tmp_path):
    pub = PublishedGrid(tmp_path / "grid")
    for job, commit in ((Job(MODEL_A, 0), "a" * 40), (Job(MODEL_A, 1), "b" * 40 + "+dirty"),
                        (Job(MODEL_B, 1), "b" * 40 + "+dirty")):
        path = pub.job_record(job.name, job.seed)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"job": job.name, "arm": job.arm, "variant": "", "seed": job.seed,
                                    "code_commit": commit}))
    # cross cohorts made from a dirty tree are flagged apart from the job's own record
    pub.cross_record(MODEL_A, 0).write_text(json.dumps({"code_commit": "c" * 40 + "+dirty"}))
    pub.cross_record(MODEL_B, 1).write_text(json.dumps({"code_commit": "c" * 40}))
    jobs = gp.published_jobs(pub).sort_values(["job", "seed"])
    assert jobs[["job", "seed", "dirty", "cross_dirty"]].values.tolist() == [
        [MODEL_A, 0, False, True], [MODEL_A, 1, True, False], [MODEL_B, 1, True, False]]
    from knee_tf.controls.results_page import _cross_dirty_sentence, dirty_seeds

    assert dirty_seeds(jobs) == {MODEL_A: [1], MODEL_B: [1]}
    assert dirty_seeds(jobs, "cross_dirty") == {MODEL_A: [0]}
    assert "The cross cohorts of 1 published jobs were made from a tree with uncommitted changes" \
        in _cross_dirty_sentence({MODEL_A: [0]}) and "(their `cross.json`): `A` 0; " in _cross_dirty_sentence({MODEL_A: [0]})
    assert _cross_dirty_sentence({}) == ""

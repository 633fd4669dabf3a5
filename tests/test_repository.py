"""Promises of the repository itself: one dependency list, clean paired notebooks, a config round trip."""

import hashlib
import json
import re
import subprocess
import tomllib
from pathlib import Path

import jupytext
import pytest
import yaml

from knee_tf.study.config import StudyConfig, get_config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    got = {_norm(r) for r in pip if not r.startswith("-e")}
    assert got == wanted, f"only in environment.yml: {got - wanted}; only in pyproject: {wanted - got}"
    assert "-e ." in pip


def test_notebooks_exist_and_are_numbered():
    stems = [p.stem for p in NOTEBOOKS]
    assert stems and all(re.fullmatch(r"0[0-9]_[a-z0-9_]+", s) for s in stems), stems


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_committed_without_outputs(nb_path):
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        assert not cell.get("outputs"), f"{nb_path.name}: a cell has outputs"
        assert cell.get("execution_count") is None, f"{nb_path.name}: a cell has an execution count"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_paired_and_in_sync(nb_path):
    py = nb_path.with_suffix(".py")
    assert py.exists(), f"{nb_path.name} has no paired jupytext .py"
    a = [(c.cell_type, c.source.strip()) for c in jupytext.read(nb_path).cells]
    b = [(c.cell_type, c.source.strip()) for c in jupytext.read(py).cells]
    assert a == b, f"{nb_path.name} and {py.name} differ: run `jupytext --sync {py}`"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_parameters_cell_and_intro(nb_path):
    cells = jupytext.read(nb_path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "opens with a title + why"
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "config" in params[0].source and "run_dir" in params[0].source


#: the most non-blank lines a notebook's code cell may have: longer logic belongs in a knee_tf function
MAX_CELL_LINES = 15


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_code_cells_are_short(nb_path):
    cells = [c for c in jupytext.read(nb_path).cells if c.cell_type == "code"]
    sizes = [sum(1 for line in c.source.splitlines() if line.strip()) for c in cells]
    long = [(cell.source.splitlines()[0], n) for cell, n in zip(cells, sizes, strict=True) if n > MAX_CELL_LINES]
    assert not long, f"{nb_path.name}: code cells over {MAX_CELL_LINES} lines (first line, lines): {long}"


def test_config_round_trip(tmp_path):
    cfg = StudyConfig.smoke(epochs=3)
    cfg.save(tmp_path / "c.json")
    assert StudyConfig.load(tmp_path / "c.json") == cfg == get_config(str(tmp_path / "c.json"))
    assert get_config("smoke").epochs == 1 and get_config().n_exams == 513


def test_config_rejects_unknown_fields(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "epoch": 3}))
    with pytest.raises(ValueError, match="unknown StudyConfig field"):
        StudyConfig.load(tmp_path / "c.json")


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def _full_history():
    """Skip where git cannot date the plan: not a checkout, or a shallow clone."""
    if _git("rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.skip("not a git checkout")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone lacks the history that dates the plan")


def test_the_analysis_plan_is_recorded_and_unchanged():
    """results/analysis_plan.json names the commit that added docs/analysis_plan.md and the plan's digest,
    and each amendment's commit and digest in order: the plan's text today is the last amendment's (or the
    registered one), each recorded commit holds exactly that text, and each is in this checkout's history."""
    record = json.loads((ROOT / "results" / "analysis_plan.json").read_text())
    plan = ROOT / record["plan"]
    versions = [record] + record.get("amendments", [])
    assert hashlib.sha256(plan.read_bytes()).hexdigest() == versions[-1]["sha256"], \
        "the plan changed after its last recorded version: record the amendment in results/analysis_plan.json"
    _full_history()
    added = _git("log", "--diff-filter=A", "--format=%H", "--", record["plan"]).stdout.split()
    assert added and added[-1] == record["commit"], (added, record["commit"])
    for earlier, version in zip(versions, versions[1:], strict=False):
        assert _git("merge-base", "--is-ancestor", earlier["commit"], version["commit"]).returncode == 0, version
    for version in versions:
        assert _git("merge-base", "--is-ancestor", version["commit"], "HEAD").returncode == 0, version["commit"]
        at_commit = _git("show", f"{version['commit']}:{record['plan']}").stdout.encode()
        assert hashlib.sha256(at_commit).hexdigest() == version["sha256"], version["commit"]


def test_every_operating_point_job_was_trained_after_the_plan():
    """Issue 27: every job of the operating-point grid (results/paper_point/grid) was trained from a clean
    checkout at the plan's last recorded version or after it (its record's code commit descends from it)."""
    from knee_tf.data.layout import published_grid
    from knee_tf.study.config import get_config

    pub = published_grid(ROOT, get_config("paper_point").publish_grid_as)
    records = sorted(pub.root.glob("*/job.json")) if pub.root.is_dir() else []
    if not records:
        pytest.skip("no job of the operating-point grid is published yet")
    record = json.loads((ROOT / "results" / "analysis_plan.json").read_text())
    plan_commit = (record.get("amendments") or [record])[-1]["commit"]
    _full_history()
    for path in records:
        commit = json.loads(path.read_text())["code_commit"]
        assert "dirty" not in commit, (path, commit)
        assert _git("merge-base", "--is-ancestor", plan_commit, commit).returncode == 0, (path.parent.name, commit)

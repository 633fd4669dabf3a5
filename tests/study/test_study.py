"""The whole study on smoke settings: end to end, deterministic, resumable; notebooks under nbmake.

These are the slow tests of the suite (a few minutes on 2 cores): they execute every notebook.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from knee_tf.core.errors import InputError
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import RunLayout
from knee_tf.study.cohorts import listed_cohorts
from knee_tf.study.config import StudyConfig
from knee_tf.study.pipeline import STEPS, Run, publish, run_study

pytestmark = pytest.mark.slow
# smoke_config and first_run (one smoke study shared by the whole session) live in tests/conftest.py
ROOT = Path(__file__).resolve().parents[2]


def test_smoke_study_writes_every_promised_output(first_run):
    out, log = first_run
    layout = RunLayout(out)
    assert all(f"[{s.name}] finished" in " ".join(log) for s in STEPS)
    for png in sorted(layout.figures.glob("*.png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png.name
    for step in STEPS:  # the marker lists exactly the outputs the step promised, and they all exist
        promised = step.outputs(layout, [0])
        assert json.loads(layout.step_marker(step.name).read_text())["outputs"] == [layout.relative(p) for p in promised]
        assert all(p.exists() for p in promised)
        assert layout.executed_notebook(step.name).exists()  # executed copies carry outputs
    cohorts = pd.read_csv(layout.cohorts)
    assert set(cohorts["cohort"]) == set(listed_cohorts([])) and set(cohorts["model"]) == {MODEL_A, MODEL_B}
    assert ((cohorts["ci_low"] <= cohorts["accuracy"]) & (cohorts["accuracy"] <= cohorts["ci_high"])).all()
    # every accuracy in cohorts.csv is recomputed from the per-image predictions of the same run
    pred = pd.read_csv(layout.predictions)
    recomputed = (pred["y_pred"] == pred["y_true"]).groupby([pred["model"], pred["cohort"], pred["seed"]]).agg(
        ["mean", "size"])
    got = cohorts.set_index(["model", "cohort", "seed"])
    assert (recomputed["size"] == got.loc[recomputed.index, "n"]).all()
    assert (abs(recomputed["mean"] - got.loc[recomputed.index, "accuracy"]) < 1e-12).all()
    # the Markdown table quotes the measured accuracies of this run (not only the paper's constants)
    table = layout.results_table.read_text()
    for (model, cohort, _), acc in got["accuracy"].items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {cohort} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4 if model == MODEL_A else 5].startswith(f"{100 * acc:.1f}%"), (model, cohort, row)


#: CPU features that select different float kernels (numpy's and oneDNN's SIMD paths)
_KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _kernel_isa() -> list[str]:
    from knee_tf.core.precision import cpu_flags

    return sorted(set(_KERNEL_FLAGS) & cpu_flags())


def test_results_equal_the_reference_from_before_the_refactor(first_run):
    """tests/data/smoke_cohorts.csv: a smoke run's cohorts.csv; tests/data/smoke_cohorts_cpu.json: the
    instruction sets of the CPU it was made on. When the data or model changes on purpose, regenerate
    both: `knee-tf study --config smoke --out runs/ref && cp runs/ref/results/cohorts.csv
    tests/data/smoke_cohorts.csv`, then `python tests/study/test_study.py --record-cpu`.

    Results are bit-identical only on the same instruction set (docs/reproducibility.md): there the
    file must be equal byte for byte. On another CPU kind the float kernels differ in the last bits,
    so image counts must be equal and accuracies, CIs and ECE within three images' worth (a regression that
    moves more than that still fails)."""
    out, _ = first_run
    got_text = RunLayout(out).cohorts.read_text()
    ref_path = ROOT / "tests" / "data" / "smoke_cohorts.csv"
    made_on = json.loads((ROOT / "tests" / "data" / "smoke_cohorts_cpu.json").read_text())["kernel_isa"]
    if made_on == _kernel_isa():
        assert got_text == ref_path.read_text()
        return
    got, ref = pd.read_csv(RunLayout(out).cohorts), pd.read_csv(ref_path)
    assert got[["model", "cohort", "seed", "n"]].equals(ref[["model", "cohort", "seed", "n"]])
    tol = 3.0 / ref["n"]
    for col in ("accuracy", "ci_low", "ci_high", "ece"):
        assert ((got[col] - ref[col]).abs() <= tol + 1e-9).all(), (col, made_on, _kernel_isa())


if __name__ == "__main__" and sys.argv[1:] == ["--record-cpu"]:
    (ROOT / "tests" / "data" / "smoke_cohorts_cpu.json").write_text(json.dumps({"kernel_isa": _kernel_isa()}) + "\n")


@pytest.fixture(scope="module")
def recomputed_run(first_run, smoke_config, tmp_path_factory):
    """A copy of the first run with the raw DICOM and every output of steps 02-07 deleted, run again:
    the second computation of the study (same seed) that test_same_seed_gives_identical_results and
    test_steps_02_to_06_need_only_the_ingest_cache compare with the first. (run folder, runner log)."""
    out, _ = first_run
    again = tmp_path_factory.mktemp("run2") / "run2"
    shutil.copytree(out, again)
    cfg = StudyConfig.load(smoke_config)
    shutil.rmtree(cfg.data_root)
    run = Run(again, cfg)
    for step in STEPS[1:]:
        for path in run.expected_outputs(step):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    log = []
    run_study(str(smoke_config), out=again, log=log.append)
    return again, log


def test_same_seed_gives_identical_results(first_run, recomputed_run):
    out, _ = first_run
    again, _ = recomputed_run
    for name in ("cohorts", "mcnemar", "severity_table", "predictions"):
        a = getattr(RunLayout(out), name).read_text()
        assert a == getattr(RunLayout(again), name).read_text(), name


def test_rerun_recomputes_only_the_missing_step_and_what_follows(first_run, smoke_config, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run[0], out)  # the session's run stays as it was made (its executed notebooks)
    layout = RunLayout(out)
    layout.figure_learning_curves_a_vs_b.unlink()  # one output of step 05, not its model
    before = layout.cohorts.read_text()
    log = []
    run_study(str(smoke_config), out=out, log=log.append)
    text = "\n".join(log)
    for s in STEPS[:4]:
        assert f"[{s.name}] done earlier, skipped" in text
    for s in STEPS[4:]:
        assert f"[{s.name}] finished" in text
    assert layout.figure_learning_curves_a_vs_b.exists()
    assert layout.cohorts.read_text() == before  # same seed, same numbers


def test_steps_02_to_06_need_only_the_ingest_cache(first_run, smoke_config, recomputed_run):
    """The cache is the hand-off: delete the raw DICOM and every output of steps 02-06, run again."""
    out, _ = first_run
    again, log = recomputed_run
    assert f"[{STEPS[0].name}] done earlier, skipped" in log
    assert all(any(f"[{s.name}] finished" in line for line in log) for s in STEPS[1:])
    assert not Path(StudyConfig.load(smoke_config).data_root).exists()  # nothing regenerated or read the raw data
    for name in ("cohorts", "mcnemar", "severity_table"):
        assert getattr(RunLayout(again), name).read_text() == getattr(RunLayout(out), name).read_text(), name


def test_publish_refuses_fewer_seeds_and_smoke_runs(first_run, smoke_config, tmp_path):
    out, _ = first_run
    run = Run(out, StudyConfig.load(smoke_config))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "published.json").write_text(json.dumps({"n_seeds": 3}))
    with pytest.raises(InputError, match="smoke run is never published"):
        publish(run, top=tmp_path, log=lambda m: None)
    with pytest.raises(InputError, match="has 1 seed\\(s\\) but the published results have 3"):
        publish(Run(out, run.config.replace(name="smoke-as-other")), top=tmp_path, log=lambda m: None)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["published.json"]  # nothing copied
    written = publish(run, force=True, top=tmp_path, log=lambda m: None)
    assert (tmp_path / "results" / "cohorts.csv").read_text() == RunLayout(out).cohorts.read_text()
    assert json.loads((tmp_path / "results" / "published.json").read_text())["n_seeds"] == 1
    assert {p.parent.name for p in written} == {"figures", "results"}


def test_publish_of_one_step_copies_only_its_files_and_keeps_the_record(first_run, smoke_config, tmp_path):
    """`knee-tf controls --publish`: notebook 07's files only; the other steps' published files and the
    record of their run stay; an optional figure of an earlier publish that this run lacks goes."""
    out, _ = first_run
    run, lay, step = Run(out, StudyConfig.load(smoke_config)), RunLayout(out), STEPS[-1].name
    (tmp_path / "results").mkdir()
    (tmp_path / "figures").mkdir()
    earlier = {"run": "earlier", "config": "default", "n_seeds": 3, "seeds": [0, 1, 2]}
    (tmp_path / "results" / "published.json").write_text(json.dumps(earlier))
    (tmp_path / "results" / "cohorts.csv").write_text("step 06 of the earlier run")
    stale = tmp_path / "figures" / lay.figure_ablations.name
    stale.write_bytes(b"an ablation figure of an earlier publish")
    assert not lay.figure_ablations.exists()  # the smoke config trains no ablation
    written = publish(run, force=True, top=tmp_path, steps=(step,), log=lambda m: None)
    own = [lay.arms_table, lay.effects_table, lay.prescription_table, lay.figure_forest,
           lay.figure_prescription]
    assert sorted(p.name for p in written) == sorted([p.name for p in own] + ["published.json"])
    for p in own:
        assert (tmp_path / p.parent.name / p.name).read_bytes() == p.read_bytes()
    assert not (tmp_path / "results" / lay.prediction_store.name).exists()  # rebuilt from results/grid instead
    assert (tmp_path / "results" / "cohorts.csv").read_text() == "step 06 of the earlier run"
    assert not stale.exists()
    record = json.loads((tmp_path / "results" / "published.json").read_text())
    assert {k: record[k] for k in earlier} == earlier  # the seed rule still reads the earlier run's seeds
    assert record["steps"][step]["run"] == out.name and record["steps"][step]["controls_source"] == "run"
    with pytest.raises(InputError, match="unknown step"):
        publish(run, force=True, top=tmp_path, steps=("07_controls",), log=lambda m: None)
    with pytest.raises(InputError, match=f"not finished \\({step}\\)"):
        publish(Run(tmp_path / "empty", run.config), force=True, top=tmp_path, steps=(step,), log=lambda m: None)


def test_a_run_resumed_with_more_seeds_keeps_what_it_has_and_trains_the_new_seed(first_run, tmp_path):
    out, _ = first_run
    ext = tmp_path / "extended"
    shutil.copytree(out, ext)
    layout = RunLayout(ext)
    kept = {arm: (layout.grid_predictions(arm, 0).read_bytes(), layout.job_record(arm, 0).stat().st_mtime_ns)
            for arm in (MODEL_A, MODEL_B)}
    log = []
    run = run_study(out=ext, seeds=2, log=log.append)
    assert run.config.n_seeds == 2 and StudyConfig.load(layout.config).n_seeds == 2
    assert "[01_data_ingest] done earlier, skipped" in log
    for arm in (MODEL_A, MODEL_B):  # seed 0 kept as it was (not trained again), seed 1 trained
        assert (layout.grid_predictions(arm, 0).read_bytes(), layout.job_record(arm, 0).stat().st_mtime_ns) == kept[arm]
        assert layout.job_record(arm, 1).exists()
    assert set(pd.read_csv(layout.cohorts)["seed"]) == {0, 1}


def test_cli_study_rejects_a_run_folder_of_another_config(first_run, tmp_path):
    out, _ = first_run
    other = tmp_path / "other.json"
    StudyConfig.smoke(epochs=2).save(other)
    proc = subprocess.run([sys.executable, "-m", "knee_tf", "study", "--config", str(other), "--run", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "holds a run with a different config" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_notebook_01_under_nbmake_with_smoke_switch(tmp_path):
    env = dict(os.environ, KNEE_TF_SMOKE="1", KNEE_TF_RUNS=str(tmp_path / "runs"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                           str(ROOT / "notebooks" / "01_data_ingest.ipynb")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert [p for p in (tmp_path / "runs").glob("*-smoke") if RunLayout(p).ingest_record.exists()]


def _notebook(path: Path, *sources: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    return path


@pytest.mark.skipif(os.name != "posix", reason="Unix-socket kernels are POSIX only")
def test_notebooks_run_on_a_unix_socket_kernel_without_the_tcp_warning(tmp_path, capfd):
    """Every notebook of a study or the tour runs through study.execute_notebook: parameters
    injected, output to stdout, and a kernel on Unix sockets (over TCP ipykernel warns on stderr that
    any local user can reach it; that line printed once per notebook in `make study`)."""
    from knee_tf.study.config import REPO_ROOT
    from knee_tf.study.pipeline import execute_notebook

    def ipc_sockets():  # in the kernel's working directory (other tests may add other files there)
        return sorted(p.name for p in REPO_ROOT.iterdir() if p.name.startswith("kernel-ipc-"))

    before = ipc_sockets()
    nb = _notebook(tmp_path / "probe.ipynb", "word = 'default'",
                   "import os, stat, ipykernel.kernelapp as k\napp = k.IPKernelApp.instance()\n"
                   "folder = os.path.dirname(app.ip)\n"
                   "print('said', word, app.transport, folder, oct(stat.S_IMODE(os.stat(folder).st_mode)))")
    execute_notebook(nb, tmp_path / "probe_out.ipynb", {"word": "injected"})
    out, err = capfd.readouterr()
    said = next(line for line in out.splitlines() if line.startswith("said "))
    _, word, transport, folder, mode = said.split()
    assert (word, transport, mode) == ("injected", "ipc", "0o700")  # sockets in a folder only we can open
    assert Path(folder).name.startswith("knee-tf-kernel-") and not Path(folder).exists()  # removed afterwards
    assert "without encryption" not in err
    assert ipc_sockets() == before  # no kernel-ipc-<n> sockets left there


def test_a_failing_notebook_cell_is_one_line_naming_notebook_cell_and_error(tmp_path):
    from knee_tf.core.errors import StepFailed
    from knee_tf.study.pipeline import execute_notebook

    nb = _notebook(tmp_path / "broken.ipynb", "x = 1", "raise ValueError('row 7 has no label')")
    with pytest.raises(StepFailed, match=r"^\[broken\] failed in cell 3: ValueError: row 7 has no label "
                                         r"\(executed notebook: .*broken_out.ipynb\)$"):
        execute_notebook(nb, tmp_path / "broken_out.ipynb", {"x": 2})


def test_run_controls_runs_ingest_and_notebook_07_on_the_published_grid(monkeypatch, tmp_path):
    """`knee-tf controls`: steps 01 and 07 only, controls_source "published", and step 07 always again
    (the published grid may have grown since the folder's last run)."""
    import knee_tf.study.pipeline as study

    calls = {}

    def fake_run_study(cfg, out, steps, log):
        calls.update(cfg=cfg, out=out, steps=steps)
        return "the run"

    monkeypatch.setattr(study, "run_study", fake_run_study)
    marker = RunLayout(tmp_path).step_marker(study.CONTROLS_STEP)
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert study.run_controls("smoke", out=tmp_path, log=lambda m: None) == "the run"
    assert calls["steps"] == (STEPS[0].name, STEPS[-1].name) and calls["out"] == tmp_path
    assert calls["cfg"].controls_source == "published" and calls["cfg"].name == "smoke"
    assert not marker.exists()

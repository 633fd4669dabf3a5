"""The shipped models (results/models/): published:A and published:B open on a fresh clone, reproduce the
published predictions byte for byte, and a --model spec that is wrong says in one line what to pass."""

from __future__ import annotations

import re
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from knee_tf.cli import main
from knee_tf.core.model import predict_proba
from knee_tf.core.precision import model_precision
from knee_tf.core.vocab import CLASSES, MODEL_A, MODEL_B, NORMAL, RELEVANT, TEST
from knee_tf.data.ingest import ingest
from knee_tf.data.layout import RunLayout, published_grid, published_weights
from knee_tf.phantom import MANIFEST_COLUMNS, plan_exams, render_exam
from knee_tf.study.config import REPO_ROOT, StudyConfig
from knee_tf.yourdata.models import (
    SHIPPED,
    load_published,
    open_model,
    parse_published,
    published_record,
    run_model_path,
)

#: Not shipped until a run on the published grid's machine kind reproduces the jobs (docs/model_card.md)
NOT_SHIPPED = [f"published:{arm}" for arm, seed in SHIPPED if not published_weights(REPO_ROOT, arm, seed).is_file()]
needs_weights = pytest.mark.skipif(bool(NOT_SHIPPED), reason=f"{', '.join(NOT_SHIPPED)}: weights not shipped yet "
                                   "(bench/ship_models.py ships them from a run that reproduces the published jobs)")


def test_the_shipped_weights_are_named_by_the_layout():
    for arm, seed in SHIPPED:
        assert published_weights(REPO_ROOT, arm, seed) == REPO_ROOT / "results" / "models" / \
            f"model_{arm.lower()}_seed{seed}.weights.h5"


@needs_weights
def test_the_shipped_weights_are_small():
    for arm, seed in SHIPPED:
        path = published_weights(REPO_ROOT, arm, seed)
        assert path.stat().st_size <= 3_000_000, (path.name, path.stat().st_size)


def test_weights_round_trip_into_the_published_architecture(tmp_path):
    """export_weights then load_published rebuild the published job's LeNet, in its precision, with the
    weights exported (here: a model of that architecture after one training step, into a copy of the
    repository's layout). The file holds the layers' weights only: a trained model's optimizer state
    (Adam's two moments per variable) would triple it past 3 MB."""
    import shutil

    from knee_tf.core.model import compile_classifier
    from knee_tf.yourdata.models import build_published, export_weights

    record = published_record(MODEL_A, 0)
    shutil.copytree(published_grid(REPO_ROOT).job_dir(MODEL_A, 0), published_grid(tmp_path).job_dir(MODEL_A, 0))
    with pytest.raises(ValueError, match="not shipped"):
        load_published(MODEL_A, 0, tmp_path)
    model = build_published(record)
    compile_classifier(model)
    size = record["settings"]["image_size"]
    model.fit(np.zeros((2, size, size, 1), np.float32), np.array([0, 1]), epochs=1, verbose=0)
    assert model.optimizer.variables  # the state a plain save_weights would write too
    path = export_weights(model, MODEL_A, 0, tmp_path)
    assert path == published_weights(tmp_path, MODEL_A, 0) and path.stat().st_size <= 3_000_000
    again = load_published(MODEL_A, 0, tmp_path)
    assert model_precision(again) == record["precision"]
    assert again.input_shape[1:] == (record["settings"]["image_size"],) * 2 + (1,)
    assert all(np.array_equal(x, y) for x, y in zip(model.get_weights(), again.get_weights(), strict=True))


@needs_weights
def test_a_shipped_model_is_the_published_jobs_architecture_and_precision():
    model = open_model("published:A")
    record = published_record(MODEL_A, 0)
    assert model.input_shape[1:] == (record["settings"]["image_size"],) * 2 + (1,)
    assert model_precision(model) == record["precision"]
    assert [layer.name for layer in model.layers if layer.name.startswith("pool")] == ["pool1", "pool2", "pool3",
                                                                                        "pool4"]
    b = open_model("published:B:0")
    assert not all(np.array_equal(x, y) for x, y in zip(model.get_weights(), b.get_weights(), strict=True))


@needs_weights
def test_a_notebook_explains_the_runs_model_a_or_else_the_shipped_one(tmp_path):
    """study_model (notebook 03, its explorer): the run's first-seed Model A when it has one, the shipped
    published:A when it has none, a named spec as given; a model of another input size is one line."""
    from types import SimpleNamespace

    from knee_tf.yourdata.models import build_published, study_model

    layout = RunLayout(tmp_path / "run")
    study = SimpleNamespace(run=SimpleNamespace(layout=layout, seeds=[3]), config=StudyConfig())
    shipped, where = study_model(study)
    assert where.startswith("the shipped published:A (this run has no trained Model A yet")
    assert all(np.array_equal(x, y) for x, y in zip(shipped.get_weights(), load_published(MODEL_A).get_weights(),
                                                    strict=True))
    own = build_published(published_record(MODEL_A, 0))
    layout.model(MODEL_A, 3).parent.mkdir(parents=True)
    own.save(layout.model(MODEL_A, 3))
    model, where = study_model(study)
    assert where == "this run's Model A (seed 3)"
    assert all(np.array_equal(x, y) for x, y in zip(model.get_weights(), own.get_weights(), strict=True))
    assert study_model(study, MODEL_B, "published:B")[1] == "published:B"
    small = SimpleNamespace(run=SimpleNamespace(layout=RunLayout(tmp_path / "other"), seeds=[0]),
                            config=StudyConfig.smoke(image_size=32))
    with pytest.raises(ValueError, match=r"^published:A: takes 128 x 128 images, but the study's config \(smoke\) "
                                         r"makes 32 x 32; train its own Model A"):
        study_model(small)


@pytest.mark.parametrize("spec,match", [
    ("published:", "expected published:ARM"),
    ("published:A:x", "expected published:ARM"),
    ("published:A:7", "its weights are not shipped"),
    ("published:nope", "no published grid job"),
])
def test_a_wrong_published_spec_is_one_line(spec, match):
    with pytest.raises(ValueError, match=match):
        open_model(spec)


def test_a_folder_or_a_missing_file_names_what_to_pass(tmp_path):
    (tmp_path / "models" / "model_a_seed0").mkdir(parents=True)
    (tmp_path / "models" / "model_a_seed0" / "model.keras").write_bytes(b"")
    with pytest.raises(ValueError, match="model_a_seed0/model.keras"):
        open_model(tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        open_model(tmp_path / "nothing.keras")
    assert parse_published("published:B") == (MODEL_B, 0)


def test_a_run_folder_with_arm_and_seed_names_its_model(tmp_path, tiny_trained_model):
    run = tmp_path / "run"
    RunLayout(run).model(MODEL_A, 0).parent.mkdir(parents=True)
    tiny_trained_model.save(RunLayout(run).model(MODEL_A, 0))
    assert run_model_path(f"{run}:A:0") == RunLayout(run).model(MODEL_A, 0)
    assert run_model_path(f"{run}:A") == RunLayout(run).model(MODEL_A, 0)  # no config: seed 0
    assert run_model_path(str(tmp_path / "nothing:A:0")) is None  # not a folder: not this kind of spec
    model = open_model(f"{run}:A:0")
    assert model.input_shape == tiny_trained_model.input_shape
    with pytest.raises(ValueError, match=rf"no model .*model_b_seed0.*pass {re.escape(str(run))}:A:0"):
        open_model(f"{run}:B:0")
    with pytest.raises(ValueError, match=rf"a folder; pass {re.escape(str(run))}:A:0"):
        open_model(run)
    with pytest.raises(ValueError, match="a folder; pass the model file .*model_a_seed0/model.keras"):
        open_model(RunLayout(run).model_dir(MODEL_A, 0))


def test_predict_with_a_missing_model_fails_in_one_line_before_reading_data(tmp_path, capsys):
    code = main(["predict", "--model", "published:A:7", "--manifest", str(tmp_path / "none.csv"),
                 "--root", str(tmp_path), "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not shipped" in err[0]
    assert not (tmp_path / "p.csv").exists()


@pytest.fixture(scope="module")
def normal_test_cohort(tmp_path_factory):
    """The normal test cohort of the default data, made again exam by exam (the phantom is deterministic
    per exam) and ingested, once for both shipped models: (images, their manifest rows)."""
    tmp = tmp_path_factory.mktemp("normal_test")
    cfg = StudyConfig()
    plan = plan_exams(cfg.n_exams, cfg.synth_seed, cfg.metal_fraction)
    rows = []
    for task in plan[(plan["split"] == TEST) & (plan["cohort"] == NORMAL)].to_dict("records"):
        rows += render_exam(dict(task, seed=cfg.synth_seed, out_dir=str(tmp), base_matrix=cfg.synth_matrix,
                                 difficulty=asdict(cfg.synth_difficulty())))
    manifest = tmp / "normal_test.csv"
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(manifest, index=False)
    data = ingest(manifest, tmp, cache_dir=tmp / "cache", image_size=cfg.image_size, workers=1)
    x, _, idx = data.split(TEST, cohort=NORMAL)
    return x, idx


@needs_weights
@pytest.mark.slow
@pytest.mark.parametrize("arm", [MODEL_A, MODEL_B])
def test_the_shipped_weights_reproduce_the_published_predictions(arm, normal_test_cohort):
    """The normal test cohort of the default data predicted by the shipped model in the job's batches:
    every probability is the published one, bit for bit."""
    cfg = StudyConfig()
    record = published_record(arm, 0)
    assert record["settings"]["image_size"] == cfg.image_size and record["settings"]["train_exams"] == 0
    x, idx = normal_test_cohort
    probs = predict_proba(load_published(arm, 0), x, batch_size=cfg.predict_batch_size)[:, CLASSES.index(RELEVANT)]
    pub = pd.read_parquet(published_grid(REPO_ROOT).predictions(arm, 0))
    pub = pub[(pub["cohort"] == NORMAL) & (pub["corruption"] == "none")].set_index("image_id")["p_relevant"]
    assert len(pub) == len(idx) == len(probs)
    expected = pub.loc[idx["image_id"].to_numpy()].to_numpy(np.float32)
    assert probs.astype(np.float32).tobytes() == expected.tobytes(), (
        f"{int((probs != expected).sum())} of {len(probs)} probabilities differ")


def test_the_model_card_table_is_what_its_generator_writes():
    from knee_tf.controls.results_page import fill_blocks
    from knee_tf.yourdata.model_card import (
        BLOCK,
        MODEL_CARD,
        WRITER,
        accuracy_markdown,
        accuracy_table,
    )

    table = accuracy_table(REPO_ROOT, SHIPPED)
    text = (REPO_ROOT / MODEL_CARD).read_text()
    assert fill_blocks(text, {BLOCK: accuracy_markdown(table)}, where=MODEL_CARD, by=WRITER) == text, (
        f"{MODEL_CARD} is stale: run `{WRITER}`")
    # the table's accuracy is the published predictions' own, cohort by cohort and plane by plane
    pub = pd.read_parquet(published_grid(REPO_ROOT).predictions(MODEL_A, 0))
    pub = pub[pub["corruption"] == "none"]
    correct = (pub["p_relevant"] > 0.5).astype(int) == pub["y_true"]
    for r in table[table["model"] == MODEL_A].itertuples():
        sel = (pub["cohort"] == r.cohort) & ((pub["plane"] == r.plane) if r.plane != "all" else True)
        assert r.accuracy == pytest.approx(correct[sel].mean(), abs=1e-12) and r.n_images == sel.sum()
        assert r.low <= r.accuracy <= r.high

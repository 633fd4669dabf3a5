"""The experiment glue: Model A's maps degrade what it relies on; predictions through the CLI."""

import numpy as np
import pandas as pd
import pytest
from conftest import TOY_SIZE
from dicom_factory import write_manifest, write_mr

from knee_tf.cli import main
from knee_tf.core.model import predict_proba
from knee_tf.core.vocab import MODEL_A
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import StudyConfig
from knee_tf.study.corrupt import CORRUPTIONS, cam_corruption
from knee_tf.study.experiment import (
    a_wrong_b_right,
    augmentation_flips,
    augmentation_maps,
    augmented_pool,
    load_pool,
    pools_per_seed,
    predict_corruptions,
)


def test_cam_corruption_lowers_target_score_more_than_a_random_mask(tiny_trained_model, toy_blob_data):
    x, y, _ = toy_blob_data["test"]
    x = x[y == 1]
    cfg = StudyConfig.smoke(image_size=TOY_SIZE)
    maps = augmentation_maps(tiny_trained_model, x, cfg, methods=("gradcam",), progress=False)["gradcam"]
    rng = np.random.default_rng(0)
    random_maps = np.stack([np.roll(m, rng.integers(16, 48, size=2), axis=(0, 1)) for m in maps])  # same mass
    before = predict_proba(tiny_trained_model, x)[:, 1]
    by_cam = predict_proba(tiny_trained_model, cam_corruption(x, maps, 0.9))[:, 1]
    by_random = predict_proba(tiny_trained_model, cam_corruption(x, random_maps, 0.9))[:, 1]
    assert before.mean() > 0.8
    assert by_cam.mean() < before.mean() - 0.2
    assert by_cam.mean() < by_random.mean() - 0.1


def test_augmentation_flips_counts_only_correct_sources(tiny_trained_model, toy_blob_data):
    x, y, _ = toy_blob_data["test"]
    prov = pd.DataFrame({"source_image_id": [str(i) for i in range(len(x))]})
    flips = augmentation_flips(tiny_trained_model, x, y, x, prov)  # "augmented" = unchanged images
    right = predict_proba(tiny_trained_model, x).argmax(1) == y
    assert len(flips) == right.sum() and not flips["flipped"].any()


def test_pools_per_seed_stores_each_seeds_pool_and_tables_it(tiny_trained_model, toy_blob_data, tmp_path):
    x, y, _ = toy_blob_data["train"]
    x, y, ids = x[:24], y[:24], pd.Series([f"img{i}" for i in range(24)])
    layout = RunLayout(tmp_path / "run").create()
    for seed in (3, 4):  # one Model A per seed, read from the run
        layout.model(MODEL_A, seed).parent.mkdir(parents=True)
        tiny_trained_model.save(layout.model(MODEL_A, seed))
    cfg = StudyConfig.smoke(image_size=TOY_SIZE)
    recipe, flips = pools_per_seed(layout, x, y, ids, cfg, [3, 4])
    assert list(recipe["seed"].unique()) == [3, 4] and len(recipe) == 2 * 24 * cfg.aug_variants
    for seed in (3, 4):
        pool_x, _, provenance = augmented_pool(tiny_trained_model, x, y, ids, cfg, seed)
        stored_x, stored = load_pool(layout, seed)
        np.testing.assert_array_equal(stored_x, pool_x.astype(np.float16).astype(np.float32))
        pd.testing.assert_frame_equal(recipe[recipe["seed"] == seed].drop(columns="seed"), provenance)
        expected = augmentation_flips(tiny_trained_model, x, y, pool_x, provenance, cfg.predict_batch_size)
        pd.testing.assert_frame_equal(flips[flips["seed"] == seed].drop(columns="seed"), expected)
        assert list(stored["aug_id"]) == list(provenance["aug_id"])


def test_predict_corruptions_has_clean_and_every_severity(tiny_trained_model, toy_blob_data):
    x, y, _ = toy_blob_data["test"]
    idx = pd.DataFrame({"image_id": [f"i{k}" for k in range(16)], "label": np.where(y[:16], "relevant",
                                                                                    "irrelevant")})
    cfg = StudyConfig.smoke(severities=(1, 5))
    out = predict_corruptions({"A": tiny_trained_model}, x[:16], idx, cfg, seed=0, progress=False)
    assert len(out) == 16 * len(CORRUPTIONS) * 3
    assert set(out["severity"]) == {0, 1, 5}
    clean = out[out["severity"] == 0].groupby("corruption")["p_relevant"].apply(np.array)
    assert all(np.allclose(v, clean.iloc[0]) for v in clean)  # severity 0 is the same clean images


def test_predict_corruptions_is_independent_of_the_inference_batch(tiny_trained_model, toy_blob_data):
    # corrupted one batch at a time: the probabilities must not depend on how the set is cut
    x, y, _ = toy_blob_data["test"]
    idx = pd.DataFrame({"image_id": [f"i{k}" for k in range(20)], "label": np.where(y[:20], "relevant",
                                                                                    "irrelevant")})
    small = predict_corruptions({"A": tiny_trained_model}, x[:20], idx, StudyConfig.smoke(severities=(2,),
                                predict_batch_size=6), seed=0, progress=False)
    large = predict_corruptions({"A": tiny_trained_model}, x[:20], idx, StudyConfig.smoke(severities=(2,),
                                predict_batch_size=64), seed=0, progress=False)
    pd.testing.assert_frame_equal(small, large, check_exact=False, atol=1e-6)


def test_a_wrong_b_right_selects_only_those():
    rows = []
    for model, preds in (("A", [0, 1, 0, 1]), ("B", [1, 1, 1, 0])):
        for k, p in enumerate(preds):
            rows.append(dict(model=model, seed=0, cohort="normal", image_id=f"i{k}", plane="axial", site="s",
                             y_true=1, p_relevant=float(p), y_pred=p))
    got = a_wrong_b_right(pd.DataFrame(rows), seed=0, per_cohort=5)
    assert sorted(got["image_id"]) == ["i0", "i2"]


@pytest.fixture
def toy_dicom_study(tmp_path, toy_blob_data):
    x, y, _ = toy_blob_data["test"]
    rows = []
    for k in range(24):
        rel = f"img/{k}.dcm"
        write_mr(tmp_path / rel, (x[k, ..., 0] * 4000).astype(np.uint16), plane="axial")
        rows.append(dict(image_id=f"t{k}", patient_id=f"P{k}", exam_id=f"E{k}", path=rel, plane="axial",
                         label=("irrelevant", "relevant")[y[k]], split="test"))
    write_manifest(tmp_path / "m.csv", rows)
    return tmp_path


def test_predict_cli_on_a_manifest(tiny_train_result, toy_dicom_study, capsys):
    root = toy_dicom_study
    code = main(["predict", "--model", str(tiny_train_result.best_path), "--manifest", str(root / "m.csv"),
                 "--root", str(root), "--out", str(root / "pred.csv"), "--cache", str(root / "cache"),
                 "--workers", "1"])
    assert code == 0 and "wrote 24 predictions" in capsys.readouterr().out
    df = pd.read_csv(root / "pred.csv")
    assert list(df.columns) == ["image_id", "plane", "p_relevant", "predicted", "label"]
    assert df["p_relevant"].between(0, 1).all()
    assert ((df["p_relevant"] >= 0.5) == (df["predicted"] == "relevant")).all()
    assert (df["predicted"] == df["label"]).mean() > 0.7  # the toy model survives the DICOM round trip


def test_predict_cli_bad_manifest_one_line(tiny_train_result, toy_dicom_study, capsys):
    root = toy_dicom_study
    (root / "img/3.dcm").unlink()
    code = main(["predict", "--model", str(tiny_train_result.best_path), "--manifest", str(root / "m.csv"),
                 "--root", str(root), "--out", str(root / "pred.csv"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "m.csv line 5 (image_id=t3, path=img/3.dcm): file not found" in err
    assert not (root / "pred.csv").exists()

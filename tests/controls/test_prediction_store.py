"""knee_tf.controls.prediction_store: schema, a lossless compact round trip, and the tables recomputed from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.controls import prediction_store as store
from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv
from knee_tf.core.vocab import CLASSES, MODEL_A, MODEL_B, NORMAL, PLANES
from knee_tf.data.layout import RunLayout
from knee_tf.study.cohorts import CAM
from knee_tf.study.evaluate import prediction_frame


@pytest.fixture(scope="module")
def index() -> pd.DataFrame:
    """An ingest index: 8 patients, one exam each, 2 planes x 5 slices, slices 1-3 relevant; rows shuffled."""
    rows = [{"image_id": f"E{p}_{pl}_{k}", "patient_id": f"P{p}", "exam_id": f"E{p}", "plane": PLANES[pl],
             "site": f"S{p % 2}", "slice_index": k, "label": CLASSES[int(1 <= k <= 3)]}
            for p in range(8) for pl in range(2) for k in range(5)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def predictions(index) -> pd.DataFrame:
    """evaluate.prediction_frame output (column ``model``) of A and B, 3 seeds, two cohorts and a corruption."""
    rng = np.random.default_rng(0)
    meta = index[["image_id", "label", "plane", "site"]]
    frames = []
    for arm in (MODEL_A, MODEL_B):
        for seed in range(3):
            for cohort, extra in ((NORMAL, {}), (CAM, {}), (NORMAL, {"corruption": "rician_noise", "severity": 2})):
                p = rng.uniform(0, 1, len(meta))
                frames.append(prediction_frame(p, meta, arm, seed, cohort=cohort, **extra))
    return pd.concat(frames, ignore_index=True)


def test_store_frame_joins_patients_exams_and_slice_order(predictions, index):
    t = store.store_frame(predictions, index)
    assert list(t.columns) == list(store.STORE_COLUMNS)
    assert len(t) == len(predictions)
    assert set(t["corruption"]) == {store.NO_CORRUPTION, "rician_noise"}
    assert t["p_relevant"].dtype == np.float32 and t["y_true"].dtype == np.int8
    row = t[(t["image_id"] == "E3_1_4")].iloc[0]
    assert (row["patient_id"], row["exam_id"], row["plane"], row["slice_rank"]) == ("P3", "E3", PLANES[1], 4)
    keys = ["arm", "seed", "cohort", "corruption", "severity", "image_id"]
    assert t[keys].astype(str).equals(t[keys].astype(str).sort_values(keys).reset_index(drop=True))
    clean_again = predictions[predictions["corruption"] == "rician_noise"].assign(severity=0)
    assert len(store.store_frame(pd.concat([predictions, clean_again]), index)) == len(t)
    grid_style = store.store_frame(predictions.assign(arm="B", variant="x"), index)  # model names the row
    assert set(grid_style["arm"].astype(str)) == {MODEL_A, MODEL_B}
    with pytest.raises(ValueError, match="not in the index"):
        store.store_frame(predictions, index[index["image_id"] != "E3_1_4"])
    with pytest.raises(ValueError, match="duplicate store rows"):
        store.store_frame(pd.concat([predictions.iloc[:2], predictions.iloc[:1]]), index)


def test_store_round_trip_is_lossless_compact_and_deterministic(predictions, index, tmp_path):
    t = store.store_frame(predictions, index)
    path = store.write_store(RunLayout(tmp_path).prediction_store, t)
    back = store.read_store(path)
    pd.testing.assert_frame_equal(back, t, check_categorical=False)
    again = store.write_store(tmp_path / "again.parquet", back)
    assert again.read_bytes() == path.read_bytes()
    assert path.stat().st_size < 0.5 * len(t.to_csv(index=False))
    only_b = store.read_store(path, arms=[MODEL_B])
    assert set(only_b["arm"].astype(str)) == {MODEL_B} and len(only_b) == len(t) / 2


def test_read_store_names_the_file_when_something_is_wrong(predictions, index, tmp_path):
    with pytest.raises(InputError, match="missing.parquet: prediction store not found"):
        store.read_store(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("arm,seed\nA,0\n")
    with pytest.raises(InputError, match="bad.parquet: cannot read"):
        store.read_store(bad)
    partial = tmp_path / "partial.parquet"
    store.store_frame(predictions, index).drop(columns="exam_id").to_parquet(partial)
    with pytest.raises(InputError, match="partial.parquet: prediction store lacks column.*exam_id"):
        store.read_store(partial)


def test_published_tables_are_recomputed_from_the_store(predictions, index, tmp_path):
    lay = RunLayout(tmp_path).create()
    path = store.write_store(lay.prediction_store, store.store_frame(predictions, index))
    info = pd.DataFrame({"arm": [MODEL_A, MODEL_B], "budget": ["reference", "same augmentation share"]})
    tables = store.recompute_tables(store.read_store(path), n_boot=200, arm_info=info)
    assert list(tables["arms_table"].columns[:3]) == ["arm", "budget", "cohort"]
    assert tables["arms_table"].set_index("arm").loc[MODEL_B, "budget"].unique().tolist() == ["same augmentation share"]
    with pytest.raises(ValueError, match="no row for arm"):
        store.recompute_tables(store.read_store(path), n_boot=10, arm_info=info.iloc[:1])
    assert set(tables) == {"arms_table", "effects_table", "prescription_table"}
    assert (tables["effects_table"]["arm"] == MODEL_B).all()
    published = {name: getattr(lay, name) for name in tables}
    for name, table in tables.items():
        atomic_write_csv(published[name], table)
    again = store.recompute_tables(store.read_store(path), n_boot=200, arm_info=info)
    assert store.compare_with_published(again, published) == []
    pub = pd.read_csv(published["effects_table"])
    pub.loc[3, "ci_high"] += 0.01
    atomic_write_csv(published["effects_table"], pub)
    problems = store.compare_with_published(again, published)
    assert len(problems) == 1 and "effects.csv: row 5, column 'ci_high'" in problems[0]

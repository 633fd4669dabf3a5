"""open_study and ingest_study: a notebook's one setup call (run folder, config, seed, images)."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_dataset_dir

from knee_tf.core.errors import InputError
from knee_tf.core.vocab import TEST, TRAIN
from knee_tf.study.config import StudyConfig
from knee_tf.study.session import ingest_study, open_study

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def my_config(tmp_path):
    """A config for a small DICOM export (12 slices of 6 patients, no cohort column), saved as JSON."""
    manifest = make_dataset_dir(tmp_path / "export")
    cfg = StudyConfig.smoke(name="mine", manifest=str(manifest), data_root=str(tmp_path / "export"),
                            cache_dir=str(tmp_path / "cache"), image_size=32, workers=1, seed=7)
    cfg.save(tmp_path / "mine.json")
    return tmp_path / "mine.json"


def test_ingest_study_records_the_data_and_open_study_reopens_it_seeded(my_config, tmp_path):
    said = []
    first = ingest_study(tmp_path / "run", str(my_config), seed=False, log=said.append)
    assert first.seed is None and first.config == StudyConfig.load(my_config)
    assert len(first.data.index) == 12 and not first.data.from_cache and first.run.layout.ingest_record.exists()
    assert first.manifest == first.config.manifest_path and f"manifest:   {first.manifest}" in said[0]
    assert "seeded:     no " in said[0] and "12 ingested, 0 skipped (decoded" in said[0]

    second = open_study(tmp_path / "run", "default", log=said.append)  # the run's own config wins
    drawn = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    assert drawn == (random.random(), np.random.random())  # seeded by the call, with the config's seed
    assert second.seed == 7 and second.config == first.config and second.run.root == first.run.root
    assert "seeded:     7 " in said[1] and "read from cache" in said[1] and "manifest" not in said[1]
    np.testing.assert_array_equal(second.data.images, first.data.images)
    for split, n in ((TRAIN, 8), (TEST, 2)):
        x, y, rows = second.normal(split)
        assert len(x) == len(y) == len(rows) == n and set(rows["split"]) == {split}


def test_open_study_before_notebook_01_names_the_missing_record(my_config, tmp_path):
    with pytest.raises(InputError, match="ingest.json: missing; run the step that writes it first"):
        open_study(tmp_path / "empty-run", str(my_config), log=lambda line: None)


def test_open_study_with_no_run_yet_ingests_as_notebook_01_when_asked(my_config, tmp_path, monkeypatch):
    """Notebook 03 on a fresh clone: no run folder under runs/ yet. Without ingest_if_missing the call
    says to run notebook 01; with it, the data are ingested into a new run folder, which the next call opens."""
    from knee_tf.study import pipeline

    monkeypatch.setattr(pipeline, "RUNS_DIR", tmp_path / "runs")
    with pytest.raises(InputError, match="no run folder under runs/"):
        open_study("", str(my_config), log=lambda line: None)
    said = []
    first = open_study("", str(my_config), log=said.append, ingest_if_missing=True)
    assert said[0] == "no run folder under runs/ yet: ingesting the data as notebook 01 does"
    assert first.run.root.parent == tmp_path / "runs" and len(first.data.index) == 12 and first.seed == 7
    said.clear()
    again = open_study("", str(my_config), log=said.append, ingest_if_missing=True)
    assert again.run.root == first.run.root and again.data.from_cache and "ingesting" not in said[0]


def test_importing_the_setup_loads_no_tensorflow():
    """Notebook 01 (ingest_study with seed=False) must not pay TensorFlow's start-up."""
    code = "import sys, knee_tf.study.session; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"

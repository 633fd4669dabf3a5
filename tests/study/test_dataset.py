"""ensure_dataset: the synthetic data folder is generated on first use, reused while it matches the
config and the phantom's code, and generated again (saying why) when it does not."""

import json

import pytest

from knee_tf.core.errors import InputError
from knee_tf.data.layout import SYNTH_RECORD
from knee_tf.phantom.synth import synth_record
from knee_tf.study.config import StudyConfig
from knee_tf.study.pipeline import ensure_dataset


def _cfg(root, **kw):
    return StudyConfig.smoke(**{"data_root": str(root), "n_exams": 3, "synth_matrix": 64, "workers": 1, **kw})


def test_a_folder_is_reused_while_its_record_matches_and_made_again_when_not(tmp_path):
    root = tmp_path / "synthetic"
    said = []
    manifest = ensure_dataset(_cfg(root), progress=False, log=said.append)
    assert manifest.exists() and said == []
    record = json.loads((root / SYNTH_RECORD).read_text())
    assert record == synth_record(3, 0, 64, StudyConfig().metal_fraction, _cfg(root).synth_difficulty())
    stamp = manifest.stat().st_mtime_ns

    ensure_dataset(_cfg(root), progress=False, log=said.append)
    assert said == [] and manifest.stat().st_mtime_ns == stamp  # same settings and code: not touched

    ensure_dataset(_cfg(root, synth_texture=0.5), progress=False, log=said.append)
    assert len(said) == 1 and "another difficulty" in said[0] and str(root) in said[0]
    assert json.loads((root / SYNTH_RECORD).read_text())["difficulty"]["texture"] == 0.5

    (root / SYNTH_RECORD).unlink()  # a folder from before the record existed
    ensure_dataset(_cfg(root, synth_texture=0.5), progress=False, log=said.append)
    assert "older knee-tf" in said[1] and (root / SYNTH_RECORD).exists()


def test_the_record_changes_with_the_phantom_code(tmp_path, monkeypatch):
    from knee_tf.phantom import synth

    before = synth_record(3, 0, 64, 0.1, StudyConfig().synth_difficulty())
    extra = tmp_path / "pkg"
    (extra / "phantom").mkdir(parents=True)
    (extra / "phantom" / "anatomy.py").write_text("# another phantom\n")
    monkeypatch.setattr(synth, "__file__", str(extra / "phantom" / "synth.py"))
    assert synth_record(3, 0, 64, 0.1, StudyConfig().synth_difficulty())["phantom_code"] != before["phantom_code"]


def test_a_user_manifest_is_never_generated(tmp_path):
    cfg = StudyConfig.smoke(manifest=str(tmp_path / "mine.csv"))
    with pytest.raises(InputError, match="mine.csv: manifest not found"):
        ensure_dataset(cfg, progress=False)
    assert not (tmp_path / "mine.csv").exists()


def test_making_fewer_exams_again_removes_the_old_exams_files(tmp_path):
    import pandas as pd

    root = tmp_path / "synthetic"
    ensure_dataset(_cfg(root), progress=False)
    before = set(pd.read_csv(root / "data_manifest.csv")["path"])
    said = []
    ensure_dataset(_cfg(root, n_exams=2), progress=False, log=said.append)
    after = set(pd.read_csv(root / "data_manifest.csv")["path"])
    gone = before - after
    assert gone and all(not (root / p).exists() for p in gone) and all((root / p).exists() for p in after)
    assert f"removed {len(gone)} DICOM file(s)" in said[-1]
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.dcm")}
    assert on_disk == after  # nothing left that no manifest lists, and no empty exam folders
    assert all(any(d.iterdir()) for d in root.rglob("*") if d.is_dir())

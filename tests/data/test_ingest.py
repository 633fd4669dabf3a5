"""Ingest: fail/skip policy, the rows-in = ingested + skipped invariant, the cache, the CLI."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from dicom_factory import make_dataset_dir, write_manifest, write_mr
from pydicom.data import get_testdata_file
from test_dicom import REAL_ENCODINGS

import knee_tf.data.ingest as ingest_mod
from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.data.ingest import ingest, summary_table


@pytest.fixture
def study(tmp_path):
    make_dataset_dir(tmp_path / "root")
    return tmp_path / "root"


def run(study, tmp_path, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return ingest(study / "data_manifest.csv", study, cache_dir=tmp_path / "cache", image_size=32, **kw)


def break_some_rows(study):
    """Three bad rows of different kinds: unknown plane, a non-DICOM file, a plane mismatch."""
    df = pd.read_csv(study / "data_manifest.csv", dtype=str, keep_default_na=False)
    df.loc[0, "plane"] = "oblique"
    (study / df.loc[4, "path"]).write_text("not dicom at all\n" * 10)
    df.loc[7, "plane"] = {"axial": "coronal", "sagittal": "axial", "coronal": "sagittal"}[df.loc[7, "plane"]]
    df.to_csv(study / "data_manifest.csv", index=False)
    return df


def test_ingest_shapes_and_order(study, tmp_path):
    res = run(study, tmp_path)
    assert res.images.shape == (12, 32, 32, 1) and res.images.dtype == np.float32
    assert list(res.index["image_id"]) == [f"p{p}_{k}" for p in range(6) for k in range(2)]
    assert 0.0 <= res.images.min() and res.images.max() <= 1.0 and len(res.skipped) == 0
    x, y, idx = res.split("train")
    assert len(x) == len(y) == len(idx) == 8 and set(y) <= {0, 1}


def test_fail_reports_every_bad_row_and_caches_nothing(study, tmp_path):
    break_some_rows(study)
    with pytest.raises(InputError) as e:
        run(study, tmp_path)
    lines = e.value.problems
    assert len(lines) == 3
    assert "line 2" in lines[0] and "unknown plane 'oblique'" in lines[0]
    assert "line 6" in lines[1] and "not a DICOM file" in lines[1]
    assert "line 9" in lines[2] and "ImageOrientationPatient says" in lines[2]
    assert not list((tmp_path / "cache").glob("*/meta.json"))


def test_skip_keeps_invariant_and_writes_report(study, tmp_path):
    break_some_rows(study)
    res = run(study, tmp_path, on_error="skip")
    assert len(res.index) + len(res.skipped) == 12 == res.n_rows
    assert list(res.skipped["line"].astype(int)) == [2, 6, 9]
    report = pd.read_csv(res.cache_dir / "skipped.csv")
    assert list(report.columns) == ["image_id", "path", "line", "reason"] and len(report) == 3
    # a later fail-mode run that hits the same cache still fails
    with pytest.raises(InputError):
        run(study, tmp_path)


def test_cache_hit_and_invalidation(study, tmp_path):
    a = run(study, tmp_path)
    b = run(study, tmp_path)
    assert not a.from_cache and b.from_cache and a.cache_dir == b.cache_dir
    np.testing.assert_array_equal(a.images, b.images)
    c = ingest(study / "data_manifest.csv", study, cache_dir=tmp_path / "cache", image_size=16, workers=1,
               progress=False)
    assert not c.from_cache and c.cache_dir != a.cache_dir
    write_mr(study / "img/p0_0.dcm", np.eye(32, dtype=np.uint16) * 100 + 1)  # file content changes
    d = run(study, tmp_path)
    assert not d.from_cache and d.cache_dir != a.cache_dir


def test_interrupted_write_leaves_no_trusted_cache(study, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ingest_mod.pd.DataFrame, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        run(study, tmp_path)
    monkeypatch.undo()
    assert not list((tmp_path / "cache").glob("*/meta.json"))
    assert not list((tmp_path / "cache").glob(".*tmp"))  # temp folder cleaned up
    assert not run(study, tmp_path).from_cache


def test_parallel_equals_serial(study, tmp_path):
    a = run(study, tmp_path)
    shutil.rmtree(tmp_path / "cache")
    b = run(study, tmp_path, workers=2)
    np.testing.assert_array_equal(a.images, b.images)


def test_multiframe_rows_by_frame_column(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    shutil.copy(get_testdata_file("rtdose.dcm"), root / "dose.dcm")
    rows = [dict(image_id=f"f{k}", patient_id="P", exam_id="E", path="dose.dcm", plane="axial",
                 label="relevant", split="train", frame=k) for k in (0, 14, 15)]
    write_manifest(root / "m.csv", rows)
    res = ingest(root / "m.csv", root, cache_dir=tmp_path / "c", image_size=16, on_error="skip", workers=1,
                 progress=False)
    assert list(res.index["image_id"]) == ["f0", "f14"]
    assert "frame 15 out of range" in res.skipped.loc[0, "reason"]


def test_real_encodings_ingest_through_cli(tmp_path, capsys):
    root = tmp_path / "r"
    root.mkdir()
    rows = []
    for k, name in enumerate(REAL_ENCODINGS):
        shutil.copy(get_testdata_file(name), root / name)
        rows.append(dict(image_id=name, patient_id=f"P{k}", exam_id=f"E{k}", path=name,
                         plane="axial" if name != "JPGExtended.dcm" else "coronal", label="relevant",
                         split="test"))
    write_manifest(root / "m.csv", rows)
    code = main(["ingest", "--manifest", str(root / "m.csv"), "--root", str(root), "--cache", str(tmp_path / "c"),
                 "--image-size", "32", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "8 ingested, 0 skipped" in out


def test_cli_bad_input_exits_nonzero_with_one_line_per_row(study, tmp_path):
    break_some_rows(study)
    proc = subprocess.run([sys.executable, "-m", "knee_tf", "ingest", "--manifest", str(study / "data_manifest.csv"),
                           "--root", str(study), "--cache", str(tmp_path / "c"), "--workers", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: data_manifest.csv line")]
    assert len(errors) == 3 and "Traceback" not in proc.stderr


def test_cli_skip_prints_counts(study, tmp_path, capsys):
    break_some_rows(study)
    code = main(["ingest", "--manifest", str(study / "data_manifest.csv"), "--root", str(study),
                 "--cache", str(tmp_path / "c"), "--on-error", "skip", "--workers", "1"])
    assert code == 0 and "9 ingested, 3 skipped" in capsys.readouterr().out


def test_summary_table_counts(study, tmp_path):
    t = summary_table(run(study, tmp_path).index)
    assert int(t["total"].iloc[-1]) == 12 and int(t["site0"].iloc[-1]) == 6
    assert int(t.loc[("train", "axial", "relevant"), "total"]) == 2


def test_read_rows_equals_fancy_indexing_of_the_cache(study, tmp_path):
    from knee_tf.data.ingest import read_rows

    res = run(study, tmp_path)
    assert isinstance(res.images, np.memmap)
    for rows in ([0, 1, 2, 7, 8, 11], [5], [], list(range(12))):
        r = np.array(rows, dtype=np.int64)
        got = read_rows(res.images, r)
        assert not isinstance(got, np.memmap)
        np.testing.assert_array_equal(got, np.asarray(res.images)[r])


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """mkstemp creates 0600 files; an atomically written artifact must be readable like any other file."""
    import os
    import stat

    from knee_tf.core.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_a_wrong_root_is_one_line_not_one_per_row(study, tmp_path, capsys, on_error):
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    code = main(["ingest", "--manifest", str(study / "data_manifest.csv"), "--root", str(wrong),
                 "--cache", str(tmp_path / "c"), "--on-error", on_error, "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"none of its 12 paths exists under the data root {wrong}" in err[0] and "--root" in err[0]
    assert not (tmp_path / "c").exists()


def test_the_cache_goes_to_the_user_cache_folder_never_the_current_one(study, tmp_path, monkeypatch, capsys):
    from knee_tf.data.ingest import CACHE_ENV, default_cache_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user"))
    assert main(["ingest", "--manifest", str(study / "data_manifest.csv"), "--root", str(study), "--workers", "1"]) == 0
    assert f"decoded: {tmp_path / 'user'}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "user"]  # no data/cache here
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "knee-tf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "knee-tf"

"""knee-tf scan on a mixed export: exact counts taken/reported, pseudonyms, manifests per use."""

import collections

import pandas as pd
import pytest
from mixed_export import make_mixed_export

from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.data.manifest import read_manifest, validate_manifest
from knee_tf.yourdata.scan import REASONS, scan_folder


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "pacs_export"
    return root, make_mixed_export(root)


@pytest.fixture(scope="module")
def scanned(export, tmp_path_factory):
    root, expected = export
    out = tmp_path_factory.mktemp("scan_out")
    return scan_folder(root, out / "manifest.csv", progress=False), expected, out


def test_exact_counts_taken_and_reported(scanned):
    res, expected, out = scanned
    assert res.n_files == expected["files"] == len(res.manifest) + len(res.report)
    assert len(res.manifest) == expected["taken"]
    assert dict(collections.Counter(res.report["reason"])) == expected["reported"]
    assert set(res.report["reason"]) <= set(REASONS)
    on_disk = pd.read_csv(out / "scan_report.csv", dtype=str, keep_default_na=False)
    assert len(on_disk) == len(res.report) and on_disk["detail"].ne("").all()


def test_planes_from_orientation_and_taken_series(scanned, export):
    res, expected, _ = scanned
    synth = pd.read_csv(expected["synth"] / "data_manifest.csv")
    loose = res.manifest[res.manifest["path"].str.startswith("loose/")]
    by_file = dict(zip("loose/" + synth["path"], synth["plane"], strict=True))
    assert (loose["plane"] == loose["path"].map(by_file)).all()
    siemens = res.manifest[res.manifest["path"].str.startswith("siemens/")]
    assert sorted(collections.Counter(siemens["plane"]).values()) == [3, 3, 3]
    # the DICOMDIR file set: one exam's localizer, every slice of it
    assert res.manifest["path"].str.startswith("cd/").sum() == expected["dicomdir_images"] > 0
    assert res.manifest["image_id"].is_unique
    assert (res.manifest["label"] == "").all() and (res.manifest["split"] == "").all()


def test_patient_ids_are_salted_pseudonyms_with_a_private_map(scanned, tmp_path, export):
    res, _, out = scanned
    real = {"P0001", "P0002", "SIEMENS-PAT-7"}
    text = (out / "manifest.csv").read_text()
    assert not any(r in text for r in real)
    idmap = pd.read_csv(out / "patient_id_map.csv", dtype=str)
    back = dict(zip(idmap["pseudonym"], idmap["original"], strict=True))
    assert {back[p] for p in res.manifest["patient_id"]} == real
    again = scan_folder(export[0], tmp_path / "m.csv", salt_file=out / "pseudonym_salt.txt",
                        id_map=tmp_path / "map.csv", progress=False)
    assert again.manifest["patient_id"].tolist() == res.manifest["patient_id"].tolist()
    other = scan_folder(export[0], tmp_path / "m2.csv", salt_file=tmp_path / "new.salt",
                        id_map=tmp_path / "map2.csv", progress=False)
    assert not set(other.manifest["patient_id"]) & set(res.manifest["patient_id"])


def test_manifest_uses_say_which_needs_which_column(scanned, export):
    res, _, out = scanned
    df = read_manifest(out / "manifest.csv")
    assert validate_manifest(df, export[0], use="scan") == []
    assert validate_manifest(df, export[0], use="predict") == []
    train = [str(p) for p in validate_manifest(df, export[0], use="train")]
    assert len(train) == 2 * len(df) and "train needs every row's label" in train[0]
    bare = df.drop(columns=["label", "split"])
    assert validate_manifest(bare, export[0], use="predict") == []
    msg = str(validate_manifest(bare, export[0], use="train")[0])
    assert "missing required column(s): label, split (train needs" in msg and "only for training" in msg
    half = df.copy()
    half.loc[0, "label"] = "maybe"
    assert "unknown label 'maybe'" in str(validate_manifest(half, export[0], use="predict")[0])


def test_cli_scan_prints_counts_and_bad_dir_is_one_line(export, tmp_path, capsys):
    assert main(["scan", str(export[0]), "--out", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert f"{export[1]['files']} files: {export[1]['taken']} localizer slices taken" in out
    assert main(["scan", str(tmp_path / "nope"), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no files to scan"):
        scan_folder(tmp_path / "empty", tmp_path / "y.csv")


def test_scan_with_model_adds_predictions_never_labels(export, tmp_path, tiny_trained_model, capsys):
    model = tmp_path / "m.keras"
    tiny_trained_model.save(model)
    out = tmp_path / "manifest.csv"
    assert main(["scan", str(export[0]), "--out", str(out), "--model", str(model),
                 "--cache", str(tmp_path / "cache")]) == 0
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(df) == export[1]["taken"] and (df["label"] == "").all()
    p = df["p_relevant"].astype(float)
    assert p.between(0, 1).all() and set(df["predicted"]) <= {"relevant", "irrelevant"}
    assert ((p > 0.5) == (df["predicted"] == "relevant")).all()
    assert "predictions of" in capsys.readouterr().out


def test_scan_checks_the_model_before_writing_and_caches_outside_the_current_folder(export, tmp_path, monkeypatch,
                                                                                    tiny_trained_model, capsys):
    from knee_tf.data.ingest import CACHE_ENV

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run = tmp_path / "run"
    (run / "models" / "model_a_seed0").mkdir(parents=True)
    tiny_trained_model.save(run / "models" / "model_a_seed0" / "model.keras")
    assert main(["scan", str(export[0]), "--out", "m.csv", "--model", str(run)]) == 2  # a folder: refused first
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pass {run}:A:0" in err[0]
    assert not any(work.iterdir())  # no manifest, report, salt or id map written
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user_cache"))
    assert main(["scan", str(export[0]), "--out", "m.csv", "--model", f"{run}:A:0"]) == 0
    assert "predictions of" in capsys.readouterr().out
    assert not (work / "data").exists() and any((tmp_path / "user_cache").iterdir())

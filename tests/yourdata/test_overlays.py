"""`knee-tf overlays RUN --out DIR`: a run's Grad-CAM overlays as DICOM files without a PACS; and `push`
checks the PACS before it computes anything."""

import pandas as pd
import pydicom
import pytest
from pacs_servers import free_port

import knee_tf.yourdata.dicomweb as dicomweb
from knee_tf.cli import main
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.study.config import StudyConfig
from knee_tf.study.pipeline import Run


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Two synthetic knee exams at matrix 64 with their manifest."""
    from knee_tf.phantom import synthesize

    d = tmp_path_factory.mktemp("phantom")
    df = synthesize(d, n_exams=2, matrix=64, workers=1, progress=False, difficulty=StudyConfig().synth_difficulty())
    return d, df


def study_run(tmp_path, phantom, model=None) -> Run:
    d, _ = phantom
    run = Run(tmp_path / "run", StudyConfig.smoke(name="mydata", manifest=str(d / "data_manifest.csv"),
                                                  data_root=str(d), image_size=64, cache_dir=str(tmp_path / "cache")))
    run.config.save(run.layout.config)
    run.layout.model(MODEL_A, 0).parent.mkdir(parents=True)
    if model is None:
        run.layout.model(MODEL_A, 0).write_bytes(b"")
    else:
        model.save(run.layout.model(MODEL_A, 0))
    return run


def test_overlays_are_written_as_dicom_files_the_same_each_time(tmp_path, phantom, tiny_trained_model, capsys):
    d, df = phantom
    run = study_run(tmp_path, phantom, tiny_trained_model)
    out = tmp_path / "overlays"
    assert main(["overlays", str(run.root), "--out", str(out), "--arms", MODEL_A]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(ln.startswith("Model A seed 0: study ") for ln in lines)  # one per study
    files = sorted(out.rglob("*.dcm"))
    objs = [pydicom.dcmread(f) for f in files]
    sc = [o for o in objs if o.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage]
    ko = [o for o in objs if o.Modality == "KO"]
    assert len(sc) == len(df) and len(ko) == sum("+ KOS" in ln for ln in lines)
    sources = {str(pydicom.dcmread(d / p, stop_before_pixels=True).SOPInstanceUID) for p in df["path"]}
    assert {o.SourceImageSequence[0].ReferencedSOPInstanceUID for o in sc} == sources
    for o, f in zip(objs, files, strict=True):
        assert f.relative_to(out).parts == (o.StudyInstanceUID, o.SeriesInstanceUID, f"{o.SOPInstanceUID}.dcm")
    assert all(o.PhotometricInterpretation == "RGB" and "p_relevant=" in o.ImageComments for o in sc)
    before = {f: o.get("PixelData") for f, o in zip(files, objs, strict=True)}
    assert main(["overlays", str(run.root), "--out", str(out), "--arms", MODEL_A]) == 0
    again = {f: pydicom.dcmread(f).get("PixelData") for f in sorted(out.rglob("*.dcm"))}
    assert again == before  # the same UIDs (file names) and images; only the content time differs
    assert not any(p.name.startswith(".") for p in out.rglob("*"))  # no temporary file left


def test_overlays_refuse_a_missing_model_or_a_non_run_in_one_line(tmp_path, phantom, capsys):
    run = study_run(tmp_path, phantom)
    assert main(["overlays", str(run.root), "--out", str(tmp_path / "o"), "--arms", MODEL_B]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_b_seed0" in err[0] and "model missing" in err[0]
    assert main(["overlays", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_push_asks_the_pacs_before_computing_anything(tmp_path, phantom, monkeypatch, capsys):
    run = study_run(tmp_path, phantom)

    def never(*a, **k):
        raise AssertionError("predictions computed before the PACS answered")

    monkeypatch.setattr(dicomweb, "study_objects", never)
    url = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    assert main(["push", "--url", url, "--run", str(run.root), "--arms", MODEL_A]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0]
    assert not (tmp_path / "cache").exists()  # nothing decoded either


def test_pull_scans_into_data_manifest_csv(tmp_path, phantom, monkeypatch, capsys):
    """pull writes the manifest name synth and reslice write (the PACS round trip: tests/yourdata/test_dicomweb.py)."""
    import shutil

    d, df = phantom

    def fake_pull(pacs, out_dir, **kw):  # what WADO-RS would have retrieved
        shutil.copytree(d / "dicom", out_dir)
        return dicomweb.PullStats(2, len(df), 0)

    monkeypatch.setattr(dicomweb, "pull", fake_pull)
    out = tmp_path / "pulled"
    assert main(["pull", "--url", "http://127.0.0.1:1/dicom-web", "--since", "2000-01-01", "--out", str(out)]) == 0
    assert f"manifest: {out / 'data_manifest.csv'}" in capsys.readouterr().out
    assert len(pd.read_csv(out / "data_manifest.csv")) == len(df) and not (out / "manifest.csv").exists()

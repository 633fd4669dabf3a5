"""The PACS round trip against a real Orthanc with its DICOMweb plugin, started on loopback.

Upload synthetic exams, pull, scan, predict, push; then query and check the derived series is
there and references the right images; a retry stores nothing twice; failures are one line.
"""

import pacs_servers
import pandas as pd
import pydicom
import pytest
from conftest import require_tool
from dicom_factory import knee_like, write_mr
from pacs_servers import ORTHANC_PLUGIN, free_port

from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.core.vocab import MODEL_A

pytestmark = pytest.mark.slow  # starts Orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    exe = require_tool("Orthanc", why="the DICOMweb round-trip tests need a real PACS")
    require_tool(ORTHANC_PLUGIN, why="Orthanc's DICOMweb plugin (Debian package orthanc-dicomweb)")
    with pacs_servers.orthanc(exe, tmp_path_factory.mktemp("orthanc")) as url:
        yield url


@pytest.fixture(scope="module")
def uploaded(orthanc, tmp_path_factory):
    """Two synthetic knee exams (three-plane localizers) + a diagnostic series, stored with STOW-RS."""
    from knee_tf.phantom import synthesize
    from knee_tf.study.config import StudyConfig
    from knee_tf.yourdata.dicomweb import connect

    d = tmp_path_factory.mktemp("synth")
    df = synthesize(d, n_exams=2, matrix=64, workers=1, progress=False,
                    difficulty=StudyConfig().synth_difficulty())
    files = [d / p for p in df["path"]]
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    for k in range(18):  # a diagnostic series in the first exam's study
        files.append(write_mr(d / "diag" / f"{k}.dcm", knee_like(32, k), plane="sagittal",
                              PatientID=first.PatientID, StudyInstanceUID=first.StudyInstanceUID,
                              SeriesInstanceUID=pydicom.uid.generate_uid(entropy_srcs=["diag"]),
                              SOPInstanceUID=pydicom.uid.generate_uid(entropy_srcs=["diag", str(k)]),
                              ImagePositionPatient=[3.0 * k, 0, 0], BodyPartExamined="KNEE"))
    client = connect(orthanc)
    datasets = [pydicom.dcmread(f) for f in files]
    client.store_instances(datasets)
    return {"df": df, "n_files": len(files), "client": client, "patients": sorted(df["patient_id"].unique())}


def test_round_trip_pull_scan_predict_push(orthanc, uploaded, tmp_path, tiny_trained_model, capsys):
    from knee_tf.study.config import StudyConfig
    from knee_tf.study.pipeline import Run

    client = uploaded["client"]
    pulled = tmp_path / "pulled"
    assert main(["pull", "--url", orthanc, "--since", "2000-01-01", "--out", str(pulled)]) == 0
    out = capsys.readouterr().out
    assert f"retrieved {uploaded['n_files']} instances of 2 studies" in out
    assert f"{len(uploaded['df'])} localizer slices taken, 18 reported" in out  # the diagnostic series
    manifest = pulled / "data_manifest.csv"

    run = Run(tmp_path / "run", StudyConfig.smoke(name="mydata", manifest=str(manifest), data_root=str(pulled),
                                                  image_size=64, cache_dir=str(tmp_path / "cache")))
    run.config.save(run.layout.config)
    run.layout.model(MODEL_A, 0).parent.mkdir(parents=True)
    tiny_trained_model.save(run.layout.model(MODEL_A, 0))
    assert main(["push", "--url", orthanc, "--run", str(run.root), "--arms", MODEL_A]) == 0
    first = capsys.readouterr().out
    assert first.count("Model A seed 0: study") == 2 and "0 already there" in first

    scanned = pd.read_csv(manifest, dtype=str)
    before = {}
    for study, rows in scanned.groupby("study_uid"):
        series = client.search_for_series(study_instance_uid=study)
        desc = {s["0020000E"]["Value"][0]: s.get("0008103E", {}).get("Value", [""])[0] for s in series}
        overlay = [uid for uid, d in desc.items() if d.startswith("Model A seed 0 Grad-CAM")]
        assert len(overlay) == 1, desc
        insts = client.search_for_instances(study_instance_uid=study, series_instance_uid=overlay[0])
        assert len(insts) == len(rows)
        refs = set()
        for it in insts:
            sc = client.retrieve_instance(study, overlay[0], it["00080018"]["Value"][0])
            assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and sc.PhotometricInterpretation == "RGB"
            assert sc.StudyInstanceUID == study and "p_relevant=" in sc.ImageComments
            refs.add(sc.SourceImageSequence[0].ReferencedSOPInstanceUID)
        assert refs == set(rows["sop_uid"])  # every overlay references one of this study's localizer slices
        kos = int("KOS" in next(ln for ln in first.splitlines() if study in ln))
        n_ko = len(client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "KO"}))
        assert n_ko == kos
        before[study] = len(client.search_for_instances(study_instance_uid=study))

    assert main(["push", "--url", orthanc, "--run", str(run.root), "--arms", MODEL_A]) == 0  # a retry
    again = capsys.readouterr().out
    assert again.count("stored 0 new") == 2
    after = {s: len(client.search_for_instances(study_instance_uid=s)) for s in before}
    assert after == before


def _fail_on_call(monkeypatch, n_fail: int):
    """Make DICOMwebClient.retrieve_instance's ``n_fail``-th call (counted over all threads) drop the connection."""
    import threading

    from dicomweb_client.api import DICOMwebClient
    from requests.exceptions import ConnectionError as RequestsConnectionError

    real, lock, calls = DICOMwebClient.retrieve_instance, threading.Lock(), {"n": 0}

    def flaky(self, *a, **k):
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n == n_fail:
            raise RequestsConnectionError("Connection reset by peer")
        return real(self, *a, **k)

    monkeypatch.setattr(DICOMwebClient, "retrieve_instance", flaky)
    return lambda: monkeypatch.setattr(DICOMwebClient, "retrieve_instance", real)


@pytest.mark.parametrize("workers", [0, 4])
def test_partial_pull_resumes_without_duplicates(orthanc, uploaded, tmp_path, monkeypatch, workers):
    from knee_tf.yourdata.dicomweb import pull

    restore = _fail_on_call(monkeypatch, 4)
    patient = uploaded["patients"][0]
    with pytest.raises(InputError, match="stopped after retrieving") as e:
        pull(orthanc, tmp_path / "p", patient=patient, progress=False, workers=workers)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and "run the same pull again" in msg
    got = int(msg.split("stopped after retrieving ")[1].split()[0])
    files = list((tmp_path / "p").rglob("*.dcm"))
    assert len(files) == got and not any(f.name.startswith(".") for f in files)  # no temporary file left
    if workers == 0:
        assert got == 3  # calls 1-3 landed, the 4th failed, nothing after it started
    restore()
    stats = pull(orthanc, tmp_path / "p", patient=patient, progress=False, workers=workers)
    assert stats.skipped == got and stats.instances > 0
    files = list((tmp_path / "p").rglob("*.dcm"))
    assert len(files) == stats.skipped + stats.instances
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}) == len(files)
    whole = pull(orthanc, tmp_path / "whole", patient=patient, progress=False, workers=workers)
    assert whole.instances == len(files)
    assert {f.relative_to(tmp_path / "p"): f.read_bytes() for f in files} == {
        f.relative_to(tmp_path / "whole"): f.read_bytes() for f in (tmp_path / "whole").rglob("*.dcm")}


def test_network_failures_are_one_line(orthanc, tmp_path, capsys):
    closed = f"http://127.0.0.1:{free_port()}/dicom-web"
    cases = [(["--url", "ftp://nowhere", "--since", "2020-01-01"], "not a DICOMweb URL"),
             (["--url", closed, "--since", "2020-01-01"], "nothing answers at 127.0.0.1"),
             (["--url", orthanc.replace("/dicom-web", "/no-such-root"), "--since", "2020-01-01"], "HTTP 404"),
             (["--url", orthanc, "--study", "1.2.3.4.5.999"], "no study matches"),
             (["--url", orthanc, "--since", "last week"], "expected a date")]
    for args, expect in cases:
        assert main(["pull", *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0], (args, err)
    assert main(["push", "--url", orthanc, "--run", str(tmp_path / "norun")]) == 2
    assert "not a run folder" in capsys.readouterr().err

"""A folder like a hospital's DICOM export, built for tests: what ``knee-tf scan`` must sort out.

``make_mixed_export(root)`` writes, and returns the exact count of files it expects to be taken and
reported per reason:

- phantom knee localizers (``knee_tf.phantom``, three-plane, one series per exam): two exams as
  loose files, one exam as a DICOMDIR file set (files without extensions);
- a localizer written as three single-plane series with ImageType LOCALIZER (as some vendors do);
- a phantom "diagnostic" series (20 thin sagittal slices) in the same study as a localizer;
- a three-plane shoulder localizer (BodyPartExamined SHOULDER) and a "BRAIN LOC" series;
- an MR slice without ImageOrientationPatient, and a multi-frame MR file;
- pydicom's bundled CT, NM (JPEG 2000), colour (RLE RGB, YBR ultrasound), SR, RT plan, ECG,
  segmentation, multi-frame RT dose, MR (RLE, JPEG 2000 copies of one instance, truncated) files;
- junk: an empty file, text, random bytes, a truncated phantom slice, the synthesizer's CSV.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
from dicom_factory import knee_like, write_mr
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

#: pydicom test file -> the reason scan must give for it ("" = taken)
PYDICOM_FILES = {
    "CT_small.dcm": "another modality",
    "JPEG2000.dcm": "another modality",  # NM, JPEG 2000 compressed
    "MR_small.dcm": "not a localizer",  # one derived axial slice
    "MR_small_RLE.dcm": "duplicate instance",  # the same SOPInstanceUID as MR_small.dcm
    "MR_small_jp2klossless.dcm": "duplicate instance",
    "MR_truncated.dcm": "unreadable",  # header fine, pixel data cut short
    "SC_rgb_rle.dcm": "colour image",
    "examples_ybr_color.dcm": "colour image",
    "test-SR.dcm": "non-image object",
    "rtplan.dcm": "non-image object",
    "waveform_ecg.dcm": "non-image object",
    "liver_1frame.dcm": "non-image object",  # SEG
    "rtdose.dcm": "multi-frame object",
}


def _series(root: Path, name: str, planes, n_per_plane: int, study: str, patient: str, **tags) -> int:
    series = generate_uid(entropy_srcs=[name, "series"])
    k = 0
    for plane in planes:
        for j in range(n_per_plane):
            k += 1
            pos = {"axial": [0, 0, 10.0 * j], "sagittal": [10.0 * j, 0, 0], "coronal": [0, 10.0 * j, 0]}[plane]
            write_mr(root / name / f"{k:03d}", knee_like(32, seed=k), plane=plane, PatientID=patient,
                     StudyInstanceUID=study, SeriesInstanceUID=tags.pop("SeriesInstanceUID", series),
                     SOPInstanceUID=generate_uid(entropy_srcs=[name, str(k)]), ImagePositionPatient=pos,
                     InstanceNumber=k, **tags)
    return k


def make_mixed_export(root: str | Path) -> dict:
    """Write the mixed folder under ``root``; return {"taken": n, "files": n, "reported": {reason: n},
    "dicomdir_images": n, ...}."""
    from knee_tf.phantom import synthesize
    from knee_tf.study.config import StudyConfig

    root = Path(root)
    synth = root.parent / f"{root.name}_synth"
    df = synthesize(synth, n_exams=3, matrix=32, workers=1, progress=False,
                    difficulty=StudyConfig().synth_difficulty())
    exams = sorted(df["exam_id"].unique())
    reported: dict[str, int] = {}

    def rep(reason: str, n: int = 1) -> None:
        reported[reason] = reported.get(reason, 0) + n

    taken = 0
    for ex in exams[:2]:  # loose files, the synthesizer's own folder layout
        for rel in df.loc[df["exam_id"] == ex, "path"]:
            (root / "loose" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(synth / rel, root / "loose" / rel)
            taken += 1
    from pydicom.fileset import FileSet

    fs = FileSet()
    n_cd = int((df["exam_id"] == exams[2]).sum())
    for rel in df.loc[df["exam_id"] == exams[2], "path"]:
        fs.add(pydicom.dcmread(synth / rel))
        taken += 1
    fs.write(root / "cd")
    rep("dicomdir")

    first = pydicom.dcmread(synth / df.loc[df["exam_id"] == exams[0], "path"].iloc[0], stop_before_pixels=True)
    study, patient = str(first.StudyInstanceUID), str(first.PatientID)
    # the same study's diagnostic series: 20 thin sagittal slices, no LOCALIZER
    rep("diagnostic series", _series(root / "loose", "sag_pd", ["sagittal"], 20, study, patient,
                                     SeriesDescription="Sag PD FSE", BodyPartExamined="KNEE", SliceThickness=3,
                                     ImageType=["ORIGINAL", "PRIMARY", "M"], SeriesNumber=2))
    # a localizer as three single-plane series, ImageType LOCALIZER (Siemens-like)
    loc_study = generate_uid(entropy_srcs=["siemens", "study"])
    for i, plane in enumerate(("sagittal", "coronal", "axial")):
        taken += _series(root / "siemens", f"loc_{plane}", [plane], 3, loc_study, "SIEMENS-PAT-7",
                         SeriesDescription="localizer", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
                         SeriesNumber=1 + i, BodyPartExamined="", SliceThickness=7)
    rep("another body part", _series(root / "other", "shoulder_loc", ["axial", "sagittal", "coronal"], 3,
                                     generate_uid(entropy_srcs=["shoulder"]), "PAT-SHOULDER",
                                     BodyPartExamined="SHOULDER", SeriesDescription="3-pl loc"))
    rep("another body part", _series(root / "other", "brain_loc", ["axial", "sagittal", "coronal"], 1,
                                     generate_uid(entropy_srcs=["brain"]), "PAT-BRAIN",
                                     SeriesDescription="BRAIN LOC"))
    ds = pydicom.dcmread(write_mr(root / "other" / "no_iop.dcm", PatientID="PAT-X"))
    del ds.ImageOrientationPatient
    ds.save_as(root / "other" / "no_iop.dcm")
    rep("no orientation")
    mf = pydicom.dcmread(write_mr(root / "other" / "multiframe.dcm", PatientID="PAT-X"))
    mf.set_pixel_data(np.stack([knee_like(32, 1), knee_like(32, 2)]), "MONOCHROME2", 16)
    mf.save_as(root / "other" / "multiframe.dcm")
    rep("multi-frame object")

    for name, reason in PYDICOM_FILES.items():
        (root / "pydicom").mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), root / "pydicom" / name)
        rep(reason)

    junk = root / "junk"
    junk.mkdir()
    (junk / "empty.dcm").write_bytes(b"")
    (junk / "README.txt").write_text("exported by PACS\n")
    (junk / "blob.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    some = (synth / df["path"].iloc[0]).read_bytes()
    (junk / "cut.dcm").write_bytes(some[: len(some) // 2])
    shutil.copy(synth / "data_manifest.csv", junk / "data_manifest.csv")
    rep("unreadable", 5)
    n_files = sum(1 for p in root.rglob("*") if p.is_file())
    assert n_files == taken + sum(reported.values()), (n_files, taken, reported)
    return {"taken": taken, "files": n_files, "reported": reported, "exams": exams, "synth": synth,
            "dicomdir_images": n_cd}

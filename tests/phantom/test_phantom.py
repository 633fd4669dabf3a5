"""The synthetic default dataset: label rules, DICOM validity, determinism, metal physics, splits."""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from knee_tf.data.dicom_read import plane_from_orientation
from knee_tf.phantom import MANIFEST_COLUMNS, plan_exams, plan_manifest, synthesize
from knee_tf.phantom.anatomy import Pose, build_knee
from knee_tf.phantom.difficulty import Difficulty
from knee_tf.phantom.labels import (
    JITTER_MM,
    PLANE_AXES,
    annotator_label,
    annotator_offsets,
    relevant_interval,
    rule_label,
)
from knee_tf.phantom.metal import MATERIALS, Implant, off_resonance_hz, susceptibility_artifact
from knee_tf.phantom.render import SliceGeometry, render_slice, slab_weights
from knee_tf.phantom.sites import NEW_SITE_CODE
from knee_tf.phantom.synth import prepare_exam
from knee_tf.study.config import StudyConfig

N_EXAMS, SIZE = 4, 48

#: the study's calibrated knobs (their one owner is StudyConfig)
DIFFICULTY = StudyConfig().synth_difficulty()


def _neutral_pose(**kw) -> Pose:
    base = dict(side="right", scale=1.0, flexion_deg=0.0, rotation_deg=0.0, varus_deg=0.0,
                offset_mm=(0.0, 0.0, 0.0), fat_mm=10.0, muscle=1.0, patella_height=0.0,
                other_leg_mm=190.0)
    base.update(kw)
    return Pose(**base)


def _geom(plane: str, s_axis: float) -> SliceGeometry:
    nrm = SliceGeometry(plane, 0.0, 220.0, 64, 8.0, (0, 0, 0)).normal
    sign = float(nrm @ np.array(PLANE_AXES[plane]))
    return SliceGeometry(plane, s_axis * sign, 220.0, 64, 8.0, (0, 0, 0))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("synth")
    # metal_fraction 0.25 of 4 exams -> exactly one metal exam
    df = synthesize(out, n_exams=N_EXAMS, seed=7, matrix=SIZE, metal_fraction=0.25,
                    workers=1, progress=False, difficulty=DIFFICULTY)
    return out, df


# ---------------------------------------------------------------------------------- label rules

@pytest.mark.parametrize("pose", [_neutral_pose(), _neutral_pose(side="left", flexion_deg=20,
                                                                 rotation_deg=12, scale=1.1,
                                                                 offset_mm=(20, -15, 10))])
@pytest.mark.parametrize("plane", ["axial", "sagittal", "coronal"])
def test_joint_line_slice_is_relevant(pose, plane):
    knee = build_knee(pose)
    label, dist = rule_label(knee, _geom(plane, float(knee.centre @ np.array(PLANE_AXES[plane]))))
    assert label == "relevant" and dist > 5.0


@pytest.mark.parametrize("flexion", [0.0, 25.0])
def test_slice_80mm_up_the_femoral_shaft_is_irrelevant(flexion):
    knee = build_knee(_neutral_pose(flexion_deg=flexion))
    label, dist = rule_label(knee, _geom("axial", float(knee.centre[2]) + 80.0))
    assert label == "irrelevant" and dist < 0


@pytest.mark.parametrize("plane,offset", [("sagittal", 70.0), ("sagittal", -70.0),
                                          ("coronal", -60.0), ("coronal", 65.0)])
def test_slices_outside_the_condyles_are_irrelevant(plane, offset):
    """Outer sagittal (collateral soft tissue) and anterior/posterior coronal slices."""
    knee = build_knee(_neutral_pose())
    label, _ = rule_label(knee, _geom(plane, float(knee.centre @ np.array(PLANE_AXES[plane]))
                                      + offset))
    assert label == "irrelevant"


def test_relevant_interval_moves_with_the_knee():
    a = relevant_interval(build_knee(_neutral_pose()), "axial")
    b = relevant_interval(build_knee(_neutral_pose(offset_mm=(0.0, 0.0, 20.0))), "axial")
    assert b[0] == pytest.approx(a[0] + 20.0) and b[1] == pytest.approx(a[1] + 20.0)
    with pytest.raises(ValueError, match="unknown plane"):
        relevant_interval(build_knee(_neutral_pose()), "oblique")


# ------------------------------------------------------------------------------ dataset contract

def test_manifest_columns_and_values(dataset):
    out, df = dataset
    assert list(df.columns[:7]) == list(MANIFEST_COLUMNS[:7])
    for col in ("site", "scanner", "field_strength_t", "coil", "cohort", "slice_index",
                "anatomy"):
        assert col in df.columns and df[col].notna().all()
    assert set(df.plane) == {"axial", "sagittal", "coronal"}
    assert set(df.label) <= {"relevant", "irrelevant"}
    assert set(df.split) <= {"train", "val", "test"}
    assert df.image_id.is_unique
    on_disk = pd.read_csv(out / "data_manifest.csv", keep_default_na=False)
    assert list(on_disk.image_id) == list(df.image_id)
    assert b"\r\n" not in (out / "data_manifest.csv").read_bytes()
    assert all("\\" not in p and not p.startswith("/") for p in df.path)
    # labels are the annotator's: they differ from the rule only near a boundary, by at most the
    # annotator's offset, the quality shift and a few jitter sd
    assert ((df.label != df.rule_label) == df.label_flipped).all()
    d = DIFFICULTY
    bound = df.annotator_offset_mm.abs() + d.quality_shift_mm + 5 * JITTER_MM
    assert (df[df.label_flipped].boundary_distance_mm.abs() <= bound[df.label_flipped]).all()
    assert (df.groupby("exam_id").annotator.nunique() == 1).all()


def test_dicom_files_are_valid_and_plane_matches_iop(dataset):
    out, df = dataset
    required = ("Manufacturer", "ManufacturerModelName", "MagneticFieldStrength",
                "ReceiveCoilName", "ImageOrientationPatient", "ImagePositionPatient",
                "PixelSpacing", "SliceThickness", "SliceLocation", "SeriesDescription",
                "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    studies = {}
    for row in df.itertuples():
        raw = (out / row.path).read_bytes()
        assert raw[128:132] == b"DICM"  # preamble + prefix: a conformant Part 10 file
        ds = pydicom.dcmread(io.BytesIO(raw), force=False)
        pydicom.dcmwrite(io.BytesIO(), ds, enforce_file_format=True)  # file meta is complete
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        for tag in required:
            assert tag in ds, f"{row.path} lacks {tag}"
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
        assert float(ds.MagneticFieldStrength) == row.field_strength_t
        assert ds.PatientID == row.patient_id
        assert plane_from_orientation(ds.ImageOrientationPatient) == row.plane
        px = ds.pixel_array
        assert px.dtype == np.uint16 and px.shape == (row.matrix, row.matrix) and px.max() > 0
        studies.setdefault(row.exam_id, set()).add((ds.StudyInstanceUID, ds.SeriesInstanceUID))
    assert all(len(v) == 1 for v in studies.values())  # one study + series per exam
    assert len({next(iter(v))[0] for v in studies.values()}) == len(studies)


def test_byte_identical_across_worker_counts(dataset, tmp_path):
    out1, df1 = dataset
    df2 = synthesize(tmp_path, n_exams=N_EXAMS, seed=7, matrix=SIZE, metal_fraction=0.25,
                     workers=2, progress=False, difficulty=DIFFICULTY)
    assert (out1 / "data_manifest.csv").read_bytes() == (tmp_path / "data_manifest.csv").read_bytes()

    def digest(root):
        return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in df2.path}

    assert digest(out1) == digest(tmp_path)
    assert list(df1.path) == list(df2.path)


def test_the_manifest_planned_without_images_is_the_rendered_ones(dataset, tmp_path, capsys):
    """plan_manifest (knee-tf synth --manifest-only) gives the manifest synthesize writes, byte for byte,
    without an image; the CLI refuses to write it into a synthesized folder, whose files it could mismatch."""
    from knee_tf.cli import main

    out, df = dataset
    planned = plan_manifest(n_exams=N_EXAMS, seed=7, matrix=SIZE, metal_fraction=0.25, progress=False,
                            difficulty=DIFFICULTY)
    pd.testing.assert_frame_equal(planned, df)
    assert planned.to_csv(index=False, lineterminator="\n").encode() == (out / "data_manifest.csv").read_bytes()
    assert main(["synth", "--out", str(out), "--manifest-only", "--exams", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a synthesized data folder" in err[0]
    assert (out / "data_manifest.csv").read_bytes() == planned.to_csv(index=False, lineterminator="\n").encode()


def test_seed_changes_the_data(dataset, tmp_path):
    out1, df1 = dataset
    synthesize(tmp_path, n_exams=1, seed=8, matrix=SIZE, metal_fraction=0.0, workers=1,
               progress=False, difficulty=DIFFICULTY)
    a = (out1 / df1.path.iloc[0]).read_bytes()
    other = sorted(tmp_path.glob("dicom/*/*/IM0001.dcm"))[0].read_bytes()
    assert a != other


def test_splits_by_patient_and_metal_only_in_test(dataset):
    _, df = dataset
    assert (df.groupby("patient_id").split.nunique() == 1).all()
    assert set(df[df.cohort == "metal"].split) == {"test"}
    assert set(df[df.cohort == "new_site"].split) == {"test"}  # a small study still gets one
    assert (df[df.cohort == "metal"].implant != "").all()
    assert (df[df.cohort == "normal"].implant == "").all()


def test_plan_splits_are_stratified_by_site_and_patient_disjoint():
    plan = plan_exams(513, seed=0, metal_fraction=0.10)
    assert (plan.cohort == "metal").sum() == 51
    assert (plan.groupby("patient_id").split.nunique() == 1).all()
    assert set(plan[plan.cohort == "metal"].split) == {"test"}
    normal = plan[plan.cohort == "normal"].drop_duplicates("patient_id")
    for _, g in normal.groupby("site"):
        frac = g.split.value_counts(normalize=True)
        assert abs(frac["train"] - 0.7) < 0.05 and abs(frac["test"] - 0.2) < 0.05
    assert plan.repeat.any()  # some patients have two exams
    # the held-out site: its normal exams are the new_site cohort, never in train or val
    held = plan[plan.site == NEW_SITE_CODE]
    assert len(held) > 30 and set(held.cohort) <= {"new_site", "metal"}
    assert set(plan[plan.cohort == "new_site"].site) == {NEW_SITE_CODE}
    assert set(held.split) == {"test"}
    # one annotator per exam, drawn from the panel
    assert plan.annotator.nunique() > 1 and plan.annotator.notna().all()


def test_annotators_are_consistent_and_spread_scales_their_offsets():
    a, b = annotator_offsets(0, 0.3), annotator_offsets(0, 0.3)
    assert a == b and len(a) >= 3  # one panel per dataset seed
    assert all(abs(v) <= 0.3 for planes in a.values() for v in planes.values())
    assert annotator_offsets(0, 0.0)["R1"]["axial"] == 0.0
    rng = np.random.default_rng(0)
    # well inside / outside the interval: the offset cannot change the label
    assert annotator_label(30.0, -3.0, 2.0, rng) == "relevant"
    assert annotator_label(-30.0, 3.0, 0.0, rng) == "irrelevant"
    # a generous annotator calls a slice just outside the rule interval relevant, more often
    gen = [annotator_label(-2.0, 6.0, 0.0, rng) for _ in range(200)]
    strict = [annotator_label(-2.0, -6.0, 0.0, rng) for _ in range(200)]
    assert gen.count("relevant") > 190 and strict.count("relevant") < 10
    # poor image quality pulls the boundary inwards
    poor = [annotator_label(1.0, 0.0, 4.0, rng) for _ in range(200)]
    assert poor.count("relevant") < 20


def test_the_phantom_has_no_difficulty_defaults_of_its_own():
    """The calibrated knobs have one owner, ``StudyConfig``; the phantom takes them as an argument."""
    with pytest.raises(TypeError):
        Difficulty()
    with pytest.raises(TypeError, match="difficulty"):
        synthesize("unused", n_exams=1, progress=False)
    with pytest.raises(KeyError):  # a task carries its knobs
        prepare_exam(dict(plan_exams(1, seed=0, metal_fraction=0.0).iloc[0], seed=0, out_dir="", base_matrix=64))


@pytest.mark.parametrize("kw", [{"texture": -1}, {"hard_share": 1.5}, {"snr_scale": 0}])
def test_bad_difficulty_is_rejected(kw):
    with pytest.raises(ValueError, match="Difficulty"):
        replace(DIFFICULTY, **kw)


@pytest.mark.parametrize("kw,match", [({"n_exams": 0}, "n_exams"),
                                      ({"metal_fraction": 1.5}, "metal_fraction"),
                                      ({"matrix": 8}, "matrix"),
                                      ({"workers": -1}, "workers")])
def test_bad_arguments_are_rejected(tmp_path, kw, match):
    args = dict(n_exams=1, matrix=SIZE, progress=False, difficulty=DIFFICULTY) | kw
    with pytest.raises(ValueError, match=match):
        synthesize(tmp_path, **args)


# ---------------------------------------------------------------------------------- metal physics

def test_uniform_offset_shifts_signal_along_the_readout_only():
    img = np.zeros((32, 32))
    img[10:20, 12] = 1.0
    out = np.abs(susceptibility_artifact(img, np.full(img.shape, 750.0), 250.0, te_ms=0.0))
    cols = np.flatnonzero(out.sum(axis=0) > 0.5)
    rows = np.flatnonzero(out.sum(axis=1) > 0.5)
    assert list(cols) == [15]  # 750 Hz / 250 Hz per pixel = 3 pixels along the readout
    assert list(rows) == list(range(10, 20))  # nothing moves along the phase direction
    assert out.sum() == pytest.approx(img.sum(), rel=1e-5)  # forward mapping conserves signal


def _sphere_artifact(b0: float) -> float:
    """Pixels changed by > 20 % around a titanium sphere in a uniform slab."""
    n, fov = 96, 96.0
    geom = SliceGeometry("coronal", 0.0, fov, n, 4.0, (0.0, 0.0, 0.0))
    implant = Implant("test", np.array([[0.0, 0.0, 0.0, 4.0, 180.0]]))
    pts = geom.points(np.arange(n), np.arange(n))
    df = off_resonance_hz(pts, implant, b0)
    img = np.where(np.linalg.norm(pts, axis=-1) > 4.0, 1.0, 0.0)
    out = np.abs(susceptibility_artifact(img, df, 244.0, te_ms=2.0))
    changed = np.abs(out - img) > 0.2
    changed &= np.linalg.norm(pts, axis=-1) > 4.0
    return float(changed.sum())


def test_metal_artifact_grows_with_field_strength():
    a15, a30 = _sphere_artifact(1.5), _sphere_artifact(3.0)
    assert a15 > 0 and a30 > 1.25 * a15


def test_stainless_steel_makes_a_bigger_artifact_than_titanium():
    assert MATERIALS["stainless steel"] > 10 * MATERIALS["titanium"]
    n, fov = 96, 96.0
    geom = SliceGeometry("coronal", 0.0, fov, n, 4.0, (0.0, 0.0, 0.0))
    pts = geom.points(np.arange(n), np.arange(n))
    img = np.where(np.linalg.norm(pts, axis=-1) > 2.0, 1.0, 0.0)
    changed = {}
    for m in ("titanium", "stainless steel"):
        df = off_resonance_hz(pts, Implant("t", np.array([[0.0, 0.0, 0.0, 2.0, MATERIALS[m]]])), 1.5)
        out = np.abs(susceptibility_artifact(img, df, 244.0, te_ms=1.3))
        changed[m] = int((np.abs(out - img) > 0.2).sum())
    assert changed["stainless steel"] > 3 * changed["titanium"] > 0


def test_slab_weights_bend_the_slice_away_near_metal():
    lo, c, hi = slab_weights(np.zeros(3), 9.0)
    np.testing.assert_allclose([lo[0], c[0], hi[0]], [0.25, 0.5, 0.25])
    lo, c, hi = slab_weights(np.array([4.5, 30.0]), 9.0)  # shifted by half a thickness, then far away
    assert hi[0] > c[0] > lo[0] == 0.0
    assert lo[1] == c[1] == hi[1] == 0.0


def test_dipole_field_scales_with_b0_and_has_dipole_sign():
    implant = Implant("test", np.array([[0.0, 0.0, 0.0, 3.0, 180.0]]))
    along_b0 = np.array([[0.0, 0.0, 6.0]])
    across = np.array([[6.0, 0.0, 0.0]])
    f15 = off_resonance_hz(along_b0, implant, 1.5)[0]
    assert f15 > 0 and off_resonance_hz(across, implant, 1.5)[0] == pytest.approx(-f15 / 2, rel=1e-5)
    assert off_resonance_hz(along_b0, implant, 3.0)[0] == pytest.approx(2 * f15, rel=1e-5)


def test_metal_exam_renders_an_artifact_near_the_implant():
    """The same slice of a metal exam with and without its implant differs around the metal."""
    plan = plan_exams(4, seed=7, metal_fraction=0.25)
    task = dict(plan[plan.cohort == "metal"].iloc[0], seed=7, out_dir="unused", base_matrix=64,
                difficulty=asdict(DIFFICULTY))
    ex = prepare_exam(task)
    centre = ex["implant"].spheres[:, :3].mean(axis=0)
    geom = min((sl["geom"] for sl in ex["slices"] if sl["plane"] == "coronal"),
               key=lambda g: abs(float(g.centre @ g.normal) - float(centre @ g.normal)))
    with_metal = render_slice(ex["structures"], ex["acq"], geom, np.random.default_rng(0),
                              implant=ex["implant"]).astype(float)
    without = render_slice(list(ex["knee"]), ex["acq"], geom, np.random.default_rng(0)).astype(float)
    diff = np.abs(with_metal / with_metal.max() - without / without.max())
    assert diff.max() > 0.3

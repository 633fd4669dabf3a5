"""reslice geometry: slice positions, orientation and content from a known volume."""

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_factory import write_mr

from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.data.dicom_read import ORIENTATIONS
from knee_tf.yourdata.reslice import LocalizerPlan, load_volume, reslice

SHAPE = (40, 50, 60)  # voxels along i, j, k
VOXEL = (2.0, 1.5, 1.0)  # mm
ORIGIN_RAS = np.array([-30.0, 20.0, -10.0])
BLOB_IJK = (12, 30, 41)


def known_nifti(path):
    """A volume that is 0 except one bright 3x3x3 block at BLOB_IJK, with a RAS affine."""
    data = np.zeros(SHAPE, np.float32)
    i, j, k = BLOB_IJK
    data[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = 1000.0
    affine = np.diag(VOXEL + (1.0,))
    affine[:3, 3] = ORIGIN_RAS
    nib.save(nib.Nifti1Image(data, affine), str(path))
    lps = np.array([-1, -1, 1]) * (ORIGIN_RAS + np.array(BLOB_IJK) * VOXEL)
    centre = np.array([-1, -1, 1]) * (ORIGIN_RAS + (np.array(SHAPE) - 1) / 2 * VOXEL)
    return lps, centre


def test_positions_orientation_and_content_from_nifti(tmp_path):
    blob, centre = known_nifti(tmp_path / "knee.nii.gz")
    vol = load_volume(tmp_path / "knee.nii.gz")
    np.testing.assert_allclose(vol.centre_mm(), centre)
    plan = LocalizerPlan(count=5, thickness_mm=4.0, spacing_mm=6.0, matrix=64)
    slices = reslice(vol, plan)
    assert [s.plane for s in slices] == ["axial"] * 5 + ["sagittal"] * 5 + ["coronal"] * 5
    for s in slices:
        r, c = ORIENTATIONS[s.plane]
        np.testing.assert_allclose(s.row_dir, r)
        np.testing.assert_allclose(s.col_dir, c)
        normal = np.cross(r, c)
        # the slice centre lies at the volume centre + (k - 2) * 6 mm along the normal
        mid = s.top_left + (plan.matrix - 1) / 2 * s.pixel_mm * (s.row_dir + s.col_dir)
        np.testing.assert_allclose(mid, centre + (s.index - 2) * 6.0 * normal, atol=1e-9)
        assert s.position_mm == pytest.approx((s.index - 2) * 6.0)
    for plane in ORIENTATIONS:
        mine = [s for s in slices if s.plane == plane]
        normal = np.cross(*[np.array(v) for v in ORIENTATIONS[plane]])
        offset = (blob - centre) @ normal
        brightest = max(mine, key=lambda s: s.pixels.max())
        assert abs(brightest.position_mm - offset) <= 3.0  # the blob is in the slab nearest to it
        row, col = np.unravel_index(brightest.pixels.argmax(), brightest.pixels.shape)
        at = brightest.top_left + col * brightest.pixel_mm * brightest.row_dir + row * brightest.pixel_mm * brightest.col_dir
        inplane = (at - blob) - ((at - blob) @ normal) * normal
        assert np.linalg.norm(inplane) <= 2.5  # where the blob is, within a voxel
        far = [s for s in mine if abs(s.position_mm - offset) > 6.0]
        assert all(s.pixels.max() == 0 for s in far)


def test_npy_needs_orientation_and_matches_dicom_series(tmp_path):
    stack = np.random.default_rng(0).integers(10, 100, size=(12, 32, 32)).astype(np.float32)
    np.save(tmp_path / "sagittal.npy", stack)
    with pytest.raises(InputError, match="no header; give --orientation"):
        load_volume(tmp_path / "sagittal.npy")
    vol = load_volume(tmp_path / "sagittal.npy", "sagittal", (0.8, 0.8, 3.0))
    for k in range(12):  # the same stack as a DICOM series: same affine
        write_mr(tmp_path / "series" / f"{k:02d}.dcm", stack[k].astype(np.uint16), plane="sagittal",
                 ImagePositionPatient=list(vol.affine[:3, 3] + k * vol.affine[:3, 0]),
                 PixelSpacing=[0.8, 0.8], SOPInstanceUID=pydicom.uid.generate_uid(entropy_srcs=[str(k)]))
    dvol = load_volume(tmp_path / "series")
    np.testing.assert_allclose(dvol.affine, vol.affine, atol=1e-6)
    np.testing.assert_array_equal(dvol.data, stack)


def test_cli_reslice_writes_dicom_localizers_and_manifest(tmp_path, capsys):
    known_nifti(tmp_path / "knee1.nii")
    out = tmp_path / "pseudo"
    assert main(["reslice", str(tmp_path / "knee1.nii"), "--out", str(out), "--count", "3", "--matrix", "48"]) == 0
    assert "wrote 9 pseudo-localizer slices from 1 volume(s)" in capsys.readouterr().out
    from knee_tf.data.manifest import load_manifest
    from knee_tf.yourdata.scan import scan_folder

    df, problems = load_manifest(out / "data_manifest.csv", out, use="predict")
    assert problems == [] and len(df) == 9
    ds = pydicom.dcmread(out / df["path"].iloc[3])
    assert "LOCALIZER" in ds.ImageType and ds.Rows == 48
    res = scan_folder(out, tmp_path / "scan.csv", progress=False)  # scan takes them as localizers
    assert len(res.manifest) == 9 and (res.manifest["plane"].value_counts() == 3).all()
    assert main(["reslice", str(tmp_path / "missing.nii"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err

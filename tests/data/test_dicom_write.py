"""knee_tf.data.dicom_write: the one DICOM writer; derived images from a cached source header."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import validate_file_meta
from test_augment import _pool, _pool_inputs

from knee_tf.core.vocab import INVERTED
from knee_tf.data.dicom_write import (
    SeriesEncoder,
    export_augmented_dicom,
    header_from_json,
    source_header,
    write_image,
)


def _cached_header(path) -> pydicom.Dataset:
    """What ingest stores and notebook 04 reads back: the source header through DICOM JSON."""
    return header_from_json(source_header(pydicom.dcmread(path)))


def test_export_augmented_dicom_is_valid_and_derived(tmp_path):
    source = pydicom.data.get_testdata_file("MR_small.dcm")
    src = pydicom.dcmread(source)
    images, labels, ids, maps = _pool_inputs(2)
    x, _, prov = _pool(images, labels, ids, maps, variants=2)
    headers = {i: _cached_header(source) for i in ids}
    paths = export_augmented_dicom(x, prov, headers, tmp_path / "dcm")
    assert len(paths) == 4 and all(p.exists() for p in paths)
    assert not list((tmp_path / "dcm").glob(".*"))  # no temporary files left behind
    series = {}
    for p, (_, row), img in zip(paths, prov.iterrows(), x, strict=True):
        raw = p.read_bytes()
        assert raw[128:132] == b"DICM"  # preamble + prefix: a conformant DICOM file
        ds = pydicom.dcmread(p)  # force=False: refuses files without a valid header
        validate_file_meta(ds.file_meta, enforce_standard=True)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.Modality == "MR" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
        assert ds.PatientID == src.PatientID and ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert row["transform"] in ds.SeriesDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert ds.BitsAllocated == 16 and ds.BitsStored == 12 and ds.PixelRepresentation == 0
        np.testing.assert_allclose(ds.pixel_array / 4095.0, img[..., 0], atol=1 / 4095)
        # same field of view: spacing scales with the size, the outer pixel edge stays put
        scale = src.Rows / ds.Rows
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing],
                                   [float(v) * scale for v in src.PixelSpacing])
        edge = [float(p) - 0.5 * float(sp) for p, sp in
                zip(ds.ImagePositionPatient[:2], ds.PixelSpacing, strict=True)]
        src_edge = [float(p) - 0.5 * float(sp) for p, sp in
                    zip(src.ImagePositionPatient[:2], src.PixelSpacing, strict=True)]
        np.testing.assert_allclose(edge, src_edge, atol=1e-3)
        if row["transform"] == INVERTED:
            assert "1.000 * M" in ds.DerivationDescription
        series.setdefault((row["method"], row["transform"]), set()).add(ds.SeriesInstanceUID)
    assert all(len(v) == 1 for v in series.values())  # one series per transform
    assert len({next(iter(v)) for v in series.values()}) == len(series)
    # deterministic: a re-export writes identical bytes
    again = export_augmented_dicom(x, prov, headers, tmp_path / "dcm2")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_export_needs_every_source_header(tmp_path):
    images, labels, ids, maps = _pool_inputs(2)
    x, _, prov = _pool(images, labels, ids, maps)
    with pytest.raises(ValueError, match="no source DICOM header"):
        export_augmented_dicom(x, prov, {}, tmp_path)


def test_source_header_keeps_only_what_a_derived_image_needs():
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    header = _cached_header(pydicom.data.get_testdata_file("MR_small.dcm"))
    assert "PixelData" not in header and header.SOPInstanceUID == ds.SOPInstanceUID
    assert [float(v) for v in header.PixelSpacing] == [float(v) for v in ds.PixelSpacing]
    assert header.Rows == ds.Rows and header.PatientName == ds.PatientName


def test_series_encoder_writes_the_bytes_of_write_image(tmp_path):
    """SeriesEncoder (shared elements encoded once) == write_image, byte for byte, across images
    of two pixel shapes, per-image elements that replace shared ones, and text in ISO_IR 100."""
    from pydicom.uid import MRImageStorage

    shared = pydicom.Dataset()
    shared.SpecificCharacterSet = "ISO_IR 100"
    shared.SOPClassUID = MRImageStorage
    shared.PatientName = "SYNTH^Müller"
    shared.StudyInstanceUID = "1.2.3.4"
    shared.SliceThickness = "4.0"
    shared.AcquisitionMatrix = [0, 64, 64, 0]
    shared.InstanceNumber = 99  # replaced per image
    enc = SeriesEncoder(shared, bits_stored=16, implementation_version="KNEE_TF_TEST")
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(64, 64), (64, 64), (32, 48), (64, 64)]):
        own = {"SOPInstanceUID": f"1.2.3.4.{i + 1}" + "1" * (i % 2),  # odd and even lengths
               "InstanceNumber": i + 1,
               "ImagePositionPatient": [f"{v:.4f}" for v in rng.normal(0, 50, 3)],
               "SliceLocation": f"{rng.normal(0, 50):.4f}",
               "WindowCenter": str(100 + 7 * i), "ImageType": ["ORIGINAL", "PRIMARY"]}
        pixels = rng.integers(0, 65535, size=shape, dtype=np.uint16)
        ds = pydicom.Dataset()
        for elem in shared:
            ds.add(elem)
        for keyword, value in own.items():
            setattr(ds, keyword, value)
        write_image(tmp_path / f"ref{i}.dcm", ds, pixels, bits_stored=16,
                    implementation_version="KNEE_TF_TEST")
        enc.write(tmp_path / f"new{i}.dcm", own, pixels)
        assert (tmp_path / f"new{i}.dcm").read_bytes() == (tmp_path / f"ref{i}.dcm").read_bytes()
    with pytest.raises(ValueError, match="per image"):
        SeriesEncoder(ds)
    with pytest.raises(ValueError, match="uint16"):
        enc.encode(own, pixels.astype(np.int32))
    with pytest.raises(ValueError, match="not a per-image element"):
        enc.encode({**own, "Rows": 64}, pixels)

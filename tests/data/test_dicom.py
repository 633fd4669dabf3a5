"""DICOM decoding: real encodings from pydicom's bundled files, and every rejected file kind."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import knee_like, write_mr, write_mr_jpeg_lossless
from pydicom.data import get_testdata_file

from knee_tf.data.dicom_read import (
    DicomError,
    pad_and_resize,
    plane_from_orientation,
    preprocess,
    read_dicom_image,
)

# Eight encodings that ship with pydicom (no download): transfer syntaxes a scanner or PACS may send.
REAL_ENCODINGS = [
    "MR_small.dcm",  # Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "MR_small_RLE.dcm",  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless
    "JPGExtended.dcm",  # JPEG Extended (process 2 & 4), 12-bit
    "693_J2KI.dcm",  # JPEG 2000 (lossy), signed CT with a Modality LUT
]


@pytest.mark.parametrize("name", REAL_ENCODINGS)
def test_real_encodings_decode(name):
    im = read_dicom_image(get_testdata_file(name))
    assert im.pixels.dtype == np.float32 and im.pixels.ndim == 2 and np.isfinite(im.pixels).all()
    x = preprocess(im.pixels, 48, im.pixel_spacing)
    assert x.shape == (48, 48) and 0.0 <= x.min() < 0.05 and 0.9 < x.max() <= 1.0


def test_lossless_encodings_agree_pixel_for_pixel():
    ref = read_dicom_image(get_testdata_file("MR_small.dcm")).pixels
    for name in ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]:
        np.testing.assert_array_equal(read_dicom_image(get_testdata_file(name)).pixels, ref, err_msg=name)


def test_ge_jpeg_lossless_sv1_decodes_exactly(tmp_path):
    """GE stores localizers as JPEG Lossless process 14 SV1; extreme jumps exercise category 16."""
    px = knee_like(40, seed=3)
    px[5, 5], px[5, 6], px[0, 0] = 65535, 0, 0
    p = write_mr_jpeg_lossless(tmp_path / "ge.dcm", px, plane="sagittal")
    assert pydicom.dcmread(p).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    im = read_dicom_image(p)
    np.testing.assert_array_equal(im.pixels, px.astype(np.float32))
    assert im.plane == "sagittal"


def test_modality_lut_applied(tmp_path):
    px = knee_like()
    p = write_mr(tmp_path / "a.dcm", px, RescaleSlope=2.0, RescaleIntercept=-100.0)
    np.testing.assert_allclose(read_dicom_image(p).pixels, px.astype(np.float32) * 2 - 100)


def test_monochrome1_is_inverted(tmp_path):
    px = knee_like()
    p = write_mr(tmp_path / "a.dcm", px, PhotometricInterpretation="MONOCHROME1")
    got = read_dicom_image(p).pixels
    np.testing.assert_allclose(got, px.max() + px.min() - px.astype(np.float32))


@pytest.mark.parametrize("plane", ["axial", "sagittal", "coronal"])
def test_plane_from_orientation(tmp_path, plane):
    assert read_dicom_image(write_mr(tmp_path / "a.dcm", plane=plane)).plane == plane


def test_plane_from_oblique_orientation():
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    assert plane_from_orientation([1, 0, 0, 0, c, s]) == "axial"  # tilted 30 degrees: still mostly axial
    assert plane_from_orientation([1, 0, 0, 0, s, c]) == "coronal"  # tilted 60 degrees: mostly coronal
    assert plane_from_orientation(None) is None
    assert plane_from_orientation([1, 0, 0, 1, 0, 0]) is None  # degenerate (row = column)


def test_multiframe_needs_valid_frame():
    path = get_testdata_file("rtdose.dcm")  # 15 frames
    with pytest.raises(DicomError, match=r"multi-frame file \(15 frames\).*'frame'"):
        read_dicom_image(path)
    with pytest.raises(DicomError, match="frame 15 out of range: the file has 15 frames"):
        read_dicom_image(path, frame=15)
    a, b = read_dicom_image(path, frame=0).pixels, read_dicom_image(path, frame=7).pixels
    assert a.shape == b.shape == (10, 10) and not np.array_equal(a, b)


def test_single_frame_rejects_other_frames(tmp_path):
    with pytest.raises(DicomError, match="frame 1 out of range: single-frame"):
        read_dicom_image(write_mr(tmp_path / "a.dcm"), frame=1)


def test_zero_size_file(tmp_path):
    (tmp_path / "z.dcm").write_bytes(b"")
    with pytest.raises(DicomError, match=r"empty file \(0 bytes\)"):
        read_dicom_image(tmp_path / "z.dcm")


def test_not_dicom(tmp_path):
    (tmp_path / "n.dcm").write_text("this is a text file, not an image\n" * 20)
    with pytest.raises(DicomError, match="not a DICOM file"):
        read_dicom_image(tmp_path / "n.dcm")


def test_truncated_in_pixel_data():
    with pytest.raises(DicomError, match="pixel data is 8130 bytes but .* = 8192 .*truncated"):
        read_dicom_image(get_testdata_file("MR_truncated.dcm"))


def test_truncated_in_header(tmp_path):
    p = write_mr(tmp_path / "a.dcm")
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DicomError, match="truncated|no PixelData|not a DICOM"):
        read_dicom_image(p)


def test_pixel_length_not_matching_rows_columns(tmp_path):
    p = write_mr(tmp_path / "a.dcm", Rows=40)  # data holds 32 rows
    with pytest.raises(DicomError, match=r"Rows x Columns .* = 2560 \(truncated file or wrong Rows/Columns\)"):
        read_dicom_image(p)
    p = write_mr(tmp_path / "b.dcm", Rows=16)
    with pytest.raises(DicomError, match="more than one frame too long: .* do not match the data"):
        read_dicom_image(p)


def test_no_pixel_data(tmp_path):
    p = write_mr(tmp_path / "a.dcm")
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(DicomError, match="no PixelData element"):
        read_dicom_image(p)


@pytest.mark.parametrize("name,kind", [("examples_palette.dcm", "PALETTE COLOR"),
                                       ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422"),
                                       ("SC_rgb_rle.dcm", "RGB")])
def test_colour_rejected(name, kind):
    with pytest.raises(DicomError, match=f"colour image \\(PhotometricInterpretation={kind}"):
        read_dicom_image(get_testdata_file(name))


@pytest.mark.parametrize("name,modality", [("test-SR.dcm", "SR"), ("waveform_ecg.dcm", "ECG"),
                                           ("rtplan.dcm", "RTPLAN")])
def test_non_image_objects_rejected(name, modality):
    with pytest.raises(DicomError, match=f"non-image DICOM object \\(Modality {modality}\\)"):
        read_dicom_image(get_testdata_file(name))


def test_constant_image_rejected(tmp_path):
    p = write_mr(tmp_path / "a.dcm", np.full((16, 16), 7, np.uint16))
    with pytest.raises(DicomError, match=r"constant image \(every pixel = 7\)"):
        read_dicom_image(p)


def test_non_finite_image_rejected(tmp_path):
    p = write_mr(tmp_path / "a.dcm")
    ds = pydicom.dcmread(p)
    f = np.ones((8, 8), np.float32)
    f[2, 3] = np.nan
    del ds.PixelData
    ds.Rows, ds.Columns, ds.BitsAllocated = 8, 8, 32
    for k in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, k)
    ds.FloatPixelData = f.tobytes()
    ds.save_as(p)
    with pytest.raises(DicomError, match="non-finite"):
        read_dicom_image(p)


def test_pad_preserves_aspect():
    img = np.zeros((20, 40), np.float32)
    img[:, :] = 1.0
    out = pad_and_resize(img, 40)
    # 20 rows of content centred in 40: top and bottom quarters are padding
    assert out[:9].max() == 0.0 and out[31:].max() == 0.0 and out[12:28].min() == 1.0


def test_non_square_pixels_resampled():
    img = np.ones((20, 40), np.float32)  # 20 rows of 2 mm = 40 mm; 40 cols of 1 mm = 40 mm
    out = pad_and_resize(img, 40, pixel_spacing=(2.0, 1.0))
    assert out.min() > 0.99  # physically square: no padding needed


def test_normalisation_is_robust_to_hot_pixels():
    img = knee_like(64).astype(np.float32)
    hot = img.copy()
    hot[0, 0] = 1e6
    a, b = preprocess(img, 64), preprocess(hot, 64)
    assert np.abs(a - b).mean() < 0.01


# ----------------------------------------------------------------------------- what is valid must ingest


def _pydicom_decodes(path) -> tuple[bool, str]:
    """The independent oracle: does pydicom itself read and decode ``path`` as a greyscale, single-frame
    MR or CT image? For a file without File Meta, the transfer syntax is the encoding pydicom read
    the dataset with. Returns (decodes, why not)."""
    import warnings

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
                implicit, little = ds.original_encoding
                ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            arr = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - pydicom refuses it: that is the answer
            return False, f"pydicom: {type(e).__name__}"
    if int(ds.get("SamplesPerPixel", 1)) != 1 or not str(ds.get("PhotometricInterpretation", "")).startswith("MONO"):
        return False, "colour"
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or arr.ndim != 2:
        return False, "multi-frame"
    if str(ds.get("Modality", "")) not in ("MR", "CT"):
        return False, f"Modality {ds.get('Modality', '')!r}"
    return True, ""


#: Each documented reason a file is refused (docs/yourdata.md, "What ingest checks and refuses"), as the start of its message.
DOCUMENTED_REASONS = (
    "colour image", "non-image DICOM object", "no PixelData element", "pixel data without",
    "pixel data is", "multi-frame file", "cannot decode pixel data", "not a DICOM file",
    "truncated or corrupt DICOM file", "constant image", "image has non-finite", "invalid DICOM header",
    "empty file",
)
#: The DICOM files bundled in the pydicom wheel, listed from its folder: pydicom.data.get_testdata_files would
#: first try to download pydicom-data's extra files (about 10 s to time out offline, and a list that
#: depends on the network).
PYDICOM_FILES = sorted(str(p) for p in (Path(pydicom.data.DATA_ROOT) / "test_files").glob("*.dcm"))


@pytest.mark.parametrize("path", PYDICOM_FILES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_bundled_pydicom_file_ingests_or_is_refused_for_a_documented_reason(path):
    """Greyscale single-frame MR/CT that pydicom decodes must ingest; anything pydicom cannot decode, colour
    and multi-frame files (without a frame) are refused with a documented one-line reason. Greyscale images
    of other modalities (NM, OT, SEG, RTDOSE, none) are read as well, unless they are non-image objects."""
    decodes, why = _pydicom_decodes(path)
    if decodes:
        im = read_dicom_image(path)
        assert im.pixels.ndim == 2 and im.pixels.dtype == np.float32 and np.isfinite(im.pixels).all()
    elif why.startswith("Modality"):
        try:
            assert read_dicom_image(path).pixels.ndim == 2
        except DicomError as e:
            assert str(e).startswith("non-image DICOM object"), (why, str(e))
    else:
        with pytest.raises(DicomError) as err:
            read_dicom_image(path)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(DOCUMENTED_REASONS), (why, msg)


def test_the_sweep_covers_the_cases_the_issue_names():
    ok = {p.rsplit("/", 1)[-1] for p in PYDICOM_FILES if _pydicom_decodes(p)[0]}
    assert {"MR_small_padded.dcm", "MR_small.dcm", "CT_small.dcm", "MR_small_bigendian.dcm"} <= ok
    assert "MR_truncated.dcm" not in ok and len(ok) >= 10


def test_trailing_pixel_padding_is_accepted_and_ignored():
    padded = read_dicom_image(get_testdata_file("MR_small_padded.dcm"))
    plain = read_dicom_image(get_testdata_file("MR_small.dcm"))
    assert padded.pixels.shape == plain.pixels.shape == (64, 64)
    np.testing.assert_array_equal(padded.pixels, plain.pixels)  # same image, the padding dropped


@pytest.mark.parametrize("implicit, little", [(True, True), (False, True)])
def test_file_without_file_meta_ingests(tmp_path, implicit, little):
    """Old archives: no preamble, no group 0002; the encoding is inferred from the data."""
    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds = pydicom.Dataset()
    for elem in src:
        ds.add(elem)
    path = tmp_path / "nometa.dcm"
    with open(path, "wb") as f:
        from pydicom.filewriter import write_dataset

        fp = pydicom.filebase.DicomFileLike(f)
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        write_dataset(fp, ds)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM" and b"\x02\x00\x10\x00" not in raw[:200]  # really no preamble, no meta
    got = read_dicom_image(path)
    np.testing.assert_array_equal(got.pixels, read_dicom_image(get_testdata_file("MR_small.dcm")).pixels)

"""Read one 2D image from a DICOM file, check it is a usable greyscale image, and preprocess it.

No TensorFlow here: this module runs inside the parallel decoding workers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from knee_tf.core.vocab import AXIAL, CORONAL, SAGITTAL
from knee_tf.data.dicom_write import source_header

#: Modalities that never carry an image to classify (structured reports, waveforms, RT plans...).
NON_IMAGE_MODALITIES = frozenset({"SR", "ECG", "HD", "RTPLAN", "RTSTRUCT", "PR", "KO", "REG", "AU", "DOC"})


class DicomError(ValueError):
    """A file that is not a usable 2D greyscale image; the message is one line."""


@dataclass
class DicomImage:
    """pixels: float32 (rows, cols) after the Modality LUT, MONOCHROME1 already inverted."""

    pixels: np.ndarray
    plane: str | None  # from ImageOrientationPatient; None when the file has no orientation
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) in mm
    n_frames: int = 1
    source: dict = field(default_factory=dict)  # the header a derived image copies (knee_tf.data.dicom_write.source_header)


#: plane -> the (row direction, column direction) in LPS that a slice of that plane is written with
#: (ImageOrientationPatient): the synthetic phantom and the resliced volumes both use these.
ORIENTATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


def plane_from_orientation(iop) -> str | None:
    """axial | sagittal | coronal from ImageOrientationPatient (6 direction cosines), by the
    dominant axis of the slice normal (row x column) in LPS patient coordinates."""
    if iop is None or len(iop) != 6:
        return None
    r = np.asarray(iop[:3], dtype=float)
    c = np.asarray(iop[3:], dtype=float)
    n = np.cross(r, c)
    if not np.all(np.isfinite(n)) or np.linalg.norm(n) < 1e-6:
        return None
    return (SAGITTAL, CORONAL, AXIAL)[int(np.argmax(np.abs(n)))]


def _read_dataset(path: Path) -> pydicom.Dataset:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DicomError(f"cannot read file: {e.strerror}") from None
    if size == 0:
        raise DicomError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except InvalidDicomError:
            pass  # no preamble/DICM prefix: some writers omit it; try once more leniently
        except Exception as e:  # noqa: BLE001 - pydicom raises many types on corrupt input
            raise DicomError(f"truncated or corrupt DICOM file ({type(e).__name__}: {_short(e)})") from None
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as e:  # noqa: BLE001
            raise DicomError(f"not a DICOM file ({_short(e)})") from None
    if len(ds) == 0 or not any(tag.group in (0x0008, 0x0010, 0x0020, 0x0028) for tag in ds.keys()):
        raise DicomError("not a DICOM file (no DICM prefix and no recognisable DICOM elements)")
    return ds


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__


def read_dicom_image(path: str | Path, frame: int | None = None) -> DicomImage:
    """Decode one 2D greyscale image. Raises :class:`DicomError` with a one-line reason.

    frame: 0-based frame of a multi-frame file (required there; must be None or 0 otherwise).
    A header value that cannot be interpreted (e.g. NumberOfFrames ``"1A"``) is a DicomError too.
    """
    try:
        return _read_image(Path(path), frame)
    except DicomError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed header values raise many types inside pydicom
        raise DicomError(f"invalid DICOM header ({type(e).__name__}: {_short(e)})") from None


def _read_image(path: Path, frame: int | None) -> DicomImage:
    ds = _read_dataset(path)
    modality = str(ds.get("Modality", "")).upper()
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if modality in NON_IMAGE_MODALITIES or (not has_pixels and "WaveformSequence" in ds):
        raise DicomError(f"non-image DICOM object (Modality {modality or '?'}): nothing to classify")
    if not has_pixels:
        raise DicomError("no PixelData element: the file holds no image")
    for tag in ("Rows", "Columns", "BitsAllocated"):
        if tag not in ds:
            raise DicomError(f"pixel data without {tag}: cannot interpret the image")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(f"colour image (PhotometricInterpretation={photometric}, SamplesPerPixel={samples}): "
                         "only greyscale MR images are supported")
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1:
        if frame is None:
            raise DicomError(f"multi-frame file ({n_frames} frames): the manifest needs a 'frame' value")
        if not 0 <= frame < n_frames:
            raise DicomError(f"frame {frame} out of range: the file has {n_frames} frames (0..{n_frames - 1})")
    elif frame not in (None, 0):
        raise DicomError(f"frame {frame} out of range: single-frame file (only frame 0)")

    tsyntax = _transfer_syntax(ds)
    if "PixelData" in ds and not tsyntax.is_compressed:
        rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
        frame_bytes = rows * cols * samples * bits // 8
        expected = frame_bytes * n_frames
        got = len(ds.PixelData)
        if got < expected:
            raise DicomError(f"pixel data is {got} bytes but Rows x Columns x frames x {bits // 8} bytes = "
                             f"{expected} (truncated file or wrong Rows/Columns)")
        # Trailing padding shorter than a frame is legal; pydicom ignores it. A whole extra frame is not padding.
        if got >= expected + max(frame_bytes, 2):
            raise DicomError(f"pixel data is {got} bytes but Rows x Columns x frames x {bits // 8} bytes = "
                             f"{expected} (more than one frame too long: Rows/Columns/NumberOfFrames do not "
                             "match the data)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001
        raise DicomError(f"cannot decode pixel data ({tsyntax.name}): {_short(e)}") from None
    if n_frames > 1:
        arr = arr[frame]
    if arr.ndim != 2:
        raise DicomError(f"expected a 2D image, decoded shape {arr.shape}")

    img = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    if photometric == "MONOCHROME1":
        img = img.max() + img.min() - img
    if not np.all(np.isfinite(img)):
        raise DicomError("image has non-finite values (NaN or Inf)")
    if float(img.max()) == float(img.min()):
        raise DicomError(f"constant image (every pixel = {float(img.min()):g}): nothing to learn from")

    spacing = ds.get("PixelSpacing")
    pix = (float(spacing[0]), float(spacing[1])) if spacing is not None and len(spacing) == 2 else None
    return DicomImage(img, plane_from_orientation(ds.get("ImageOrientationPatient")), pix, n_frames,
                      source_header(ds))


def _transfer_syntax(ds: pydicom.Dataset) -> UID:
    """The file's transfer syntax; for a file without File Meta (old archives: no preamble, no group
    0002) the one pydicom read it with, stored in the file meta so that decoding can use it."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsyntax is not None:
        return tsyntax
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if implicit is None or little is None:
        raise DicomError("no transfer syntax: the file has no File Meta and its encoding cannot be inferred")
    if implicit and not little:
        raise DicomError("no transfer syntax: implicit VR big endian is not a DICOM encoding")
    tsyntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = tsyntax
    return tsyntax


def normalise_intensity(img: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Robust [0, 1] scaling: the low/high percentiles map to 0/1, values beyond are clipped.

    img: float (H, W), any scale. Returns float32 (H, W) in [0, 1]. Scanner-, coil- and
    rescale-independent, and insensitive to a few hot pixels (metal pile-up, noise spikes).
    """
    lo, hi = np.percentile(img, [low_pct, high_pct])
    if hi <= lo:  # almost constant: fall back to the full range
        lo, hi = float(img.min()), float(img.max())
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)


def pad_and_resize(img: np.ndarray, size: int, pixel_spacing: tuple[float, float] | None = None) -> np.ndarray:
    """Zero-pad to a square field of view (centred), then resize to (size, size) with antialiasing.

    Preserves the physical aspect ratio: non-square pixels are accounted for before padding.
    img: float32 (H, W) in [0, 1]. Returns float32 (size, size) in [0, 1].
    """
    h, w = img.shape
    if pixel_spacing is not None and pixel_spacing[0] > 0 and pixel_spacing[1] > 0:
        sr, sc = pixel_spacing
        if abs(sr - sc) / max(sr, sc) > 1e-3:  # resample to square pixels of the finer spacing
            s = min(sr, sc)
            h2, w2 = max(1, round(h * sr / s)), max(1, round(w * sc / s))
            img = np.asarray(Image.fromarray(img, mode="F").resize((w2, h2), Image.BILINEAR))
            h, w = img.shape
    n = max(h, w)
    if h != w:
        sq = np.zeros((n, n), dtype=np.float32)
        top, left = (n - h) // 2, (n - w) // 2
        sq[top:top + h, left:left + w] = img
        img = sq
    if n != size:
        img = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def preprocess(img: np.ndarray, size: int, pixel_spacing=None) -> np.ndarray:
    """Decoded pixels -> model input: percentile normalisation, square pad, resize. float32 (size, size)."""
    return pad_and_resize(normalise_intensity(img), size, pixel_spacing)

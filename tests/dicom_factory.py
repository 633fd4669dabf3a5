"""Small, valid MR DICOM files made on the fly for tests (no downloads, no private data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

IOP = {  # ImageOrientationPatient (row cosines, column cosines) in LPS
    "axial": [1, 0, 0, 0, 1, 0],
    "sagittal": [0, 1, 0, 0, 0, -1],
    "coronal": [1, 0, 0, 0, 0, -1],
}


def knee_like(size: int = 32, seed: int = 0) -> np.ndarray:
    """A blob with texture: uint16 (size, size), never constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    img = 1000 * np.exp(-(xx**2 + yy**2) / 0.05) + rng.normal(50, 10, (size, size))
    return np.clip(img, 0, 4000).astype(np.uint16)


def write_mr(path: str | Path, pixels: np.ndarray | None = None, plane: str = "axial", **tags) -> Path:
    """Write a single-frame MONOCHROME2 MR Image Storage file; ``tags`` override dataset elements."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    px = knee_like() if pixels is None else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientID = "TEST"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series"])
    ds.ImageOrientationPatient = IOP[plane]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelSpacing = [0.86, 0.86]
    ds.set_pixel_data(px, photometric_interpretation="MONOCHROME2", bits_stored=16)
    for k, v in tags.items():
        setattr(ds, k, v)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_manifest(path: str | Path, rows: list[dict]) -> Path:
    import pandas as pd

    path = Path(path)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def make_dataset_dir(root: Path, n_patients: int = 6, per_patient: int = 2) -> Path:
    """root/img/*.dcm + root/data_manifest.csv: a small valid study (all planes, both labels, 3 splits)."""
    rows = []
    planes = ("axial", "sagittal", "coronal")
    splits = ("train", "train", "train", "train", "val", "test")
    for p in range(n_patients):
        for k in range(per_patient):
            plane = planes[(p + k) % 3]
            rel = f"img/p{p}_{k}.dcm"
            write_mr(root / rel, knee_like(32, seed=p * 10 + k), plane=plane)
            rows.append(dict(image_id=f"p{p}_{k}", patient_id=f"P{p}", exam_id=f"E{p}", path=rel, plane=plane,
                             label=("relevant", "irrelevant")[k % 2], split=splits[p % len(splits)],
                             site=f"site{p % 2}"))
    return write_manifest(root / "data_manifest.csv", rows)


def encode_jpeg_lossless_sv1(pixels: np.ndarray) -> bytes:
    """A minimal JPEG Lossless codestream (process 14, first-order prediction, ITU T.81 annex H).

    GE writes knee localizers in this transfer syntax (1.2.840.10008.1.2.4.70). No Python package
    here encodes it, so the tests carry this small encoder: uint16 (rows, cols) -> bytes.
    Huffman table: the 17 difference categories (0..16) get canonical 5-bit codes.
    """
    import struct

    px = np.asarray(pixels, dtype=np.int64)
    rows, cols = px.shape
    pred = np.empty_like(px)
    pred[0, 0] = 1 << 15
    pred[0, 1:] = px[0, :-1]  # first row: left neighbour
    pred[1:, 0] = px[:-1, 0]  # first column: the pixel above
    pred[1:, 1:] = px[1:, :-1]  # predictor 1 (left) elsewhere
    diff = (px - pred) % 65536
    diff = np.where(diff > 32768, diff - 65536, diff).ravel()

    bits: list[str] = []
    for d in diff.tolist():
        ssss = 16 if d == 32768 else abs(d).bit_length()
        bits.append(format(ssss, "05b"))  # canonical code of category ssss (all length 5)
        if 0 < ssss < 16:
            bits.append(format(d if d > 0 else d - 1 + (1 << ssss), f"0{ssss}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for k in range(0, len(stream), 8):
        byte = int(stream[k:k + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0x00)  # byte stuffing

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    sof3 = struct.pack(">BHHB", 16, rows, cols, 1) + bytes([1, 0x11, 0])
    dht = bytes([0x00]) + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # 1 component, table 0, predictor 1, Se 0, Ah/Al 0
    return (b"\xff\xd8" + segment(0xFFC3, sof3) + segment(0xFFC4, dht) + segment(0xFFDA, sos)
            + bytes(data) + b"\xff\xd9")


def write_mr_jpeg_lossless(path: str | Path, pixels: np.ndarray, plane: str = "axial") -> Path:
    """Like :func:`write_mr`, but stored as GE does: JPEG Lossless, non-hierarchical, SV1."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1

    path = write_mr(path, pixels, plane=plane)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([encode_jpeg_lossless_sv1(pixels)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path

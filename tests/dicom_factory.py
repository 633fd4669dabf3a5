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

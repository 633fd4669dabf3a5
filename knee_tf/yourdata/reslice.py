"""3D knee volumes -> tri-plane pseudo-localizer slices (DICOM + manifest rows).

A volume comes from a DICOM series (a folder), a NIfTI file (nibabel) or a NumPy ``.npy`` stack in
the layout of public knee sets such as MRNet (one volume per plane, slices first, no header: the
orientation and spacing come from explicit arguments). Every volume is held as intensities plus a
4x4 affine from voxel indices to patient coordinates in DICOM's LPS millimetres.

Pseudo-localizer geometry (:class:`LocalizerPlan`), like a scanner's three-plane localizer: for each
of axial, sagittal and coronal, ``count`` slices centred on the volume's centre, ``spacing_mm``
apart along the plane's normal, each a slab ``thickness_mm`` thick (the mean of sub-planes across
the slab, at most one voxel apart), on a square ``matrix`` x ``matrix`` grid whose field of view
covers the volume's extent in that plane. The defaults (7 slices, 8 mm thick, 13 mm apart) lie in
the ranges of the synthetic sites' localizer protocols (``knee_tf.phantom.sites``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage, generate_uid
from scipy.ndimage import map_coordinates
from tqdm.auto import tqdm

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv
from knee_tf.core.vocab import PLANES
from knee_tf.data.dicom_read import ORIENTATIONS, DicomError, read_dicom_image
from knee_tf.data.dicom_write import write_image
from knee_tf.data.layout import DATA_MANIFEST

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """data: float32 (I, J, K); affine: float64 (4, 4), voxel index (i, j, k, 1) -> LPS mm."""

    data: np.ndarray
    affine: np.ndarray
    source: str

    def corners_mm(self) -> np.ndarray:
        """float64 (8, 3): patient coordinates of the corner voxel centres."""
        ext = np.array(self.data.shape) - 1
        idx = np.array([[a, b, c] for a in (0, ext[0]) for b in (0, ext[1]) for c in (0, ext[2])], float)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]

    def centre_mm(self) -> np.ndarray:
        return self.corners_mm().mean(0)

    def voxel_mm(self) -> np.ndarray:
        """float64 (3,): voxel edge lengths along i, j, k."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)


@dataclass(frozen=True)
class LocalizerPlan:
    count: int = 7  # slices per plane
    thickness_mm: float = 8.0
    spacing_mm: float = 13.0  # centre to centre
    matrix: int = 256

    def check(self) -> None:
        if self.count < 1 or self.matrix < 8:
            raise InputError(f"reslice: count must be >= 1 and matrix >= 8, got {self.count}, {self.matrix}")
        if not (self.thickness_mm > 0 and self.spacing_mm > 0):
            raise InputError("reslice: thickness and spacing must be positive millimetres")


def stack_affine(plane: str, pixel_spacing: tuple[float, float], slice_spacing: float) -> np.ndarray:
    """Affine of a (slices, rows, cols) stack acquired in ``plane`` with no header.

    Rows run along the plane's column direction and columns along its row direction (DICOM's
    convention); slices along the normal (row x column). Origin: the first voxel at (0, 0, 0).
    """
    if plane not in PLANES:
        raise InputError(f"unknown orientation {plane!r} (expected {'|'.join(PLANES)})")
    r, c = (np.array(v) for v in ORIENTATIONS[plane])
    a = np.eye(4)
    a[:3, 0] = np.cross(r, c) * slice_spacing
    a[:3, 1] = c * pixel_spacing[0]
    a[:3, 2] = r * pixel_spacing[1]
    return a


def load_npy(path: str | Path, plane: str | None, spacing: tuple[float, float, float] | None) -> Volume:
    """An MRNet-style stack: ``.npy`` of shape (slices, rows, cols). ``plane`` (the acquisition
    plane) and ``spacing`` (row, column, slice mm) must be given: a bare array has no header."""
    path = Path(path)
    if plane is None or spacing is None:
        raise InputError(f"{path}: a .npy stack has no header; give --orientation (axial|sagittal|coronal) "
                         "and --spacing ROW,COL,SLICE in mm")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read as a NumPy array: {e}") from None
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(f"{path}: expected a 3D stack (slices, rows, cols), got shape {data.shape}")
    return Volume(np.asarray(data, np.float32), stack_affine(plane, spacing[:2], spacing[2]), path.name)


def load_nifti(path: str | Path) -> Volume:
    """A NIfTI volume; its RAS affine (qform/sform, as nibabel reads it) is turned into LPS."""
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - nibabel raises several types on bad files
        raise InputError(f"{path}: cannot read as NIfTI: {e}") from None
    data = np.squeeze(data)
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return Volume(data, _LPS_FROM_RAS @ img.affine, path.name)


def load_dicom_series(folder: str | Path, series_uid: str | None = None) -> Volume:
    """One single-frame, single-orientation DICOM series under ``folder`` as a volume.

    Slices are sorted along the normal by ImagePositionPatient; the slice vector is the step between
    the first and last positions, so gaps and overlaps are honoured. Several series in the folder
    need ``series_uid``. Raises InputError naming the file or the inconsistency.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    heads = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: not part of the series
            continue
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "PixelSpacing" in ds:
            heads.append((f, ds))
    uids = sorted({str(ds.SeriesInstanceUID) for _, ds in heads})
    if not uids:
        raise InputError(f"{folder}: no DICOM image with position, orientation and spacing")
    if series_uid is None and len(uids) > 1:
        raise InputError(f"{folder}: {len(uids)} series; choose one with --series-uid ({', '.join(uids[:3])}...)")
    uid = series_uid or uids[0]
    heads = [(f, ds) for f, ds in heads if str(ds.SeriesInstanceUID) == uid]
    if len(heads) < 2:
        raise InputError(f"{folder}: series {uid} has {len(heads)} slice(s); a volume needs at least 2")
    iop = np.array([float(v) for v in heads[0][1].ImageOrientationPatient])
    for f, ds in heads:
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], iop, atol=1e-4):
            raise InputError(f"{f}: orientation differs from the rest of series {uid}: not one volume")
    r, c = iop[:3], iop[3:]
    n = np.cross(r, c)
    heads.sort(key=lambda h: float(np.array([float(v) for v in h[1].ImagePositionPatient]) @ n))
    slices = []
    for f, _ in heads:
        try:
            slices.append(read_dicom_image(f).pixels)
        except DicomError as e:
            raise InputError(f"{f}: {e}") from None
    if len({s.shape for s in slices}) != 1:
        raise InputError(f"{folder}: slices of series {uid} differ in size")
    p0 = np.array([float(v) for v in heads[0][1].ImagePositionPatient])
    p1 = np.array([float(v) for v in heads[-1][1].ImagePositionPatient])
    step = (p1 - p0) / (len(heads) - 1)
    if np.linalg.norm(step) < 1e-6:
        raise InputError(f"{folder}: every slice of series {uid} has the same position")
    dr, dc = (float(v) for v in heads[0][1].PixelSpacing)
    a = np.eye(4)
    a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = step, c * dr, r * dc, p0
    return Volume(np.stack(slices).astype(np.float32), a, f"{folder.name} series {uid}")


def load_volume(path: str | Path, orientation: str | None = None,
                spacing: tuple[float, float, float] | None = None, series_uid: str | None = None) -> Volume:
    """Dispatch on the input: a folder (DICOM series), ``.nii``/``.nii.gz`` or ``.npy``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    if path.is_dir():
        return load_dicom_series(path, series_uid)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return load_nifti(path)
    if name.endswith(".npy"):
        return load_npy(path, orientation, spacing)
    raise InputError(f"{path}: unknown volume format (a DICOM series folder, .nii, .nii.gz or .npy)")


@dataclass(frozen=True)
class PseudoSlice:
    """One pseudo-localizer slice: pixels float32 (matrix, matrix); geometry in LPS mm."""

    plane: str
    index: int
    pixels: np.ndarray
    top_left: np.ndarray  # ImagePositionPatient (centre of the first pixel)
    row_dir: np.ndarray
    col_dir: np.ndarray
    pixel_mm: float
    position_mm: float  # offset of the slice centre from the volume centre along the normal
    thickness_mm: float


def reslice(volume: Volume, plan: LocalizerPlan = LocalizerPlan()) -> list[PseudoSlice]:
    """``plan.count`` slices per plane (axial, sagittal, coronal order; positions ascending).

    Trilinear sampling (scipy ``map_coordinates``, order 1); outside the volume is 0. Each slab is
    the mean of ``ceil(thickness / smallest voxel)`` equally spaced sub-planes (a boxcar profile).
    """
    plan.check()
    inv = np.linalg.inv(volume.affine)
    centre = volume.centre_mm()
    corners = volume.corners_mm() - centre
    n_sub = max(1, int(np.ceil(plan.thickness_mm / max(volume.voxel_mm().min(), 1e-3))))
    sub = (np.arange(n_sub) - (n_sub - 1) / 2) * (plan.thickness_mm / n_sub)
    out = []
    m = plan.matrix
    for plane in PLANES:
        r, c = (np.array(v) for v in ORIENTATIONS[plane])
        normal = np.cross(r, c)
        fov = max(np.ptp(corners @ r), np.ptp(corners @ c))
        d = fov / (m - 1) if fov > 0 else 1.0
        grid = (np.arange(m) - (m - 1) / 2) * d
        plane_pts = centre + grid[None, :, None] * r + grid[:, None, None] * c  # (m, m, 3)
        for k in range(plan.count):
            pos = (k - (plan.count - 1) / 2) * plan.spacing_mm
            acc = np.zeros((m, m), np.float64)
            for s in sub:
                pts = plane_pts + (pos + s) * normal
                ijk = pts.reshape(-1, 3) @ inv[:3, :3].T + inv[:3, 3]
                acc += map_coordinates(volume.data, ijk.T, order=1, mode="constant", cval=0.0).reshape(m, m)
            out.append(PseudoSlice(plane, k, (acc / n_sub).astype(np.float32), plane_pts[0, 0] + pos * normal,
                                   r, c, d, pos, plan.thickness_mm))
    return out


def write_pseudo_localizer(slices: list[PseudoSlice], out_dir: str | Path, patient_id: str, exam_id: str,
                           source: str) -> pd.DataFrame:
    """Write ``slices`` as one MR series (ImageType DERIVED\\SECONDARY\\LOCALIZER, 16-bit, 0..4095
    for the 0.1..99.9th percentile of the whole series) under ``out_dir/exam_id/`` and return the
    manifest rows (label and split empty). PatientID is ``patient_id``: nothing is copied from the
    source's patient. UIDs are deterministic in (exam_id, source), so a re-run rewrites the same files.
    """
    out_dir = Path(out_dir)
    allpix = np.concatenate([s.pixels.ravel() for s in slices])
    lo, hi = np.percentile(allpix, [0.1, 99.9])
    scale = 4095.0 / max(hi - lo, 1e-12)
    study = generate_uid(entropy_srcs=["knee_tf.yourdata.reslice", exam_id, source, "study"])
    series = generate_uid(entropy_srcs=["knee_tf.yourdata.reslice", exam_id, source, "series"])
    frame = generate_uid(entropy_srcs=["knee_tf.yourdata.reslice", exam_id, source, "frame"])
    rows = []
    for n, s in enumerate(slices, start=1):
        ds = Dataset()
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["knee_tf.yourdata.reslice", series, str(n)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "MR"
        ds.ImageType = ["DERIVED", "SECONDARY", "LOCALIZER"]
        ds.PatientID = patient_id
        ds.PatientName = f"PSEUDO^{patient_id}"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = exam_id[-16:], 900, n
        ds.StudyDate = ds.SeriesDate = ds.PatientBirthDate = ds.PatientSex = ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.BodyPartExamined = "KNEE"
        ds.SeriesDescription = "Pseudo-localizer (resliced volume)"
        ds.DerivationDescription = f"knee_tf.yourdata.reslice from {source}"[:1024]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([s.row_dir, s.col_dir])]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in s.top_left]
        ds.PixelSpacing = [f"{s.pixel_mm:.6f}", f"{s.pixel_mm:.6f}"]
        ds.SliceThickness = f"{s.thickness_mm:.2f}"
        ds.SliceLocation = f"{s.position_mm:.4f}"
        px = np.clip(np.rint((s.pixels - lo) * scale), 0, 4095).astype(np.uint16)
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        rel = f"{exam_id}/{s.plane[:3]}{s.index:02d}.dcm"
        write_image(out_dir / rel, ds, px, bits_stored=12)
        rows.append(dict(image_id=f"{exam_id}_{s.plane[:3]}{s.index:02d}", patient_id=patient_id, exam_id=exam_id,
                         path=rel, plane=s.plane, label="", split="", slice_location_mm=f"{s.position_mm:.2f}",
                         slice_thickness_mm=f"{s.thickness_mm:.2f}", source=source, sop_uid=ds.SOPInstanceUID))
    return pd.DataFrame(rows)


def reslice_to_manifest(inputs, out_dir: str | Path, orientation: str | None = None,
                        spacing: tuple[float, float, float] | None = None, series_uid: str | None = None,
                        count: int = 7, thickness_mm: float = 8.0, spacing_mm: float = 13.0,
                        matrix: int = 256, progress: bool = True) -> pd.DataFrame:
    """Reslice every input volume and write ``out_dir/data_manifest.csv`` (paths relative to
    ``out_dir``). One exam per input; its patient_id and exam_id are the input's name (no real
    patient identifier is copied from a DICOM source)."""
    plan = LocalizerPlan(count, thickness_mm, spacing_mm, matrix)
    plan.check()
    out_dir = Path(out_dir)
    frames = []
    for path in tqdm([Path(p) for p in inputs], desc="reslice", unit="volume", disable=not progress):
        vol = load_volume(path, orientation, spacing, series_uid)
        name = path.name.split(".")[0] or "volume"
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        frames.append(write_pseudo_localizer(reslice(vol, plan), out_dir, safe, safe, vol.source))
    df = pd.concat(frames, ignore_index=True)
    dup = df["image_id"][df["image_id"].duplicated()]
    if len(dup):
        raise InputError(f"two inputs share the name {dup.iloc[0].split('_')[0]!r}: rename one")
    atomic_write_csv(out_dir / DATA_MANIFEST, df)
    return df

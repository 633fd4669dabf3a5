"""Write one localizer slice as a GE-like single-frame MR Image Storage DICOM file.

Explicit VR Little Endian, preamble + file meta, 16-bit unsigned pixels without rescale (as GE
stores localizers). UIDs are derived deterministically from the synthesis seed and the exam/slice
identifiers (``pydicom.uid.generate_uid(entropy_srcs=...)``); dates are a fixed synthetic date per
exam, never the current time. Patient identifiers are synthetic (``SYNTH^...``): no real person.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import MRImageStorage, generate_uid

from knee_tf.data.dicom_write import SeriesEncoder
from knee_tf.phantom.render import SliceGeometry
from knee_tf.phantom.sites import CoilProfile, SiteProfile


def uid(seed: int, *parts: object) -> str:
    """A deterministic DICOM UID from the seed and identifying parts."""
    return generate_uid(entropy_srcs=["knee-tf-phantom", str(seed)] + [str(p) for p in parts])


@dataclass(frozen=True)
class ExamHeader:
    """Per-exam header values shared by every slice of the exam."""

    seed: int
    patient_id: str
    exam_id: str
    side: str  # "right" | "left"
    sex: str  # "M" | "F"
    age_years: int
    weight_kg: float
    study_date: str  # YYYYMMDD, synthetic
    study_time: str  # HHMMSS, synthetic
    site: SiteProfile
    coil: CoilProfile
    spacing_mm: dict  # plane -> spacing between slices


_ENCODER: dict = {}  # exam key -> SeriesEncoder of the exam-constant elements; current exam only


def _exam_encoder(hdr: ExamHeader, geom: SliceGeometry) -> SeriesEncoder:
    """The elements shared by every slice of an exam, encoded once per exam."""
    key = (hdr.seed, hdr.exam_id, geom.matrix, geom.thickness_mm, geom.fov_mm)
    if key in _ENCODER:
        return _ENCODER[key]
    site = hdr.site
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = hdr.study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = hdr.study_time
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.InstitutionName = f"SYNTHETIC SITE {site.code}"
    ds.ReferringPhysicianName = ""
    ds.StationName = f"SYN{site.code}MR"
    ds.StudyDescription = "KNEE"
    ds.SeriesDescription = f"Loc ({hdr.side.capitalize()})"
    ds.ManufacturerModelName = site.scanner
    ds.PatientName = f"SYNTH^{hdr.patient_id}"
    ds.PatientID = hdr.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = hdr.sex
    ds.PatientAge = f"{hdr.age_years:03d}Y"
    ds.PatientWeight = f"{hdr.weight_kg:.1f}"
    ds.BodyPartExamined = "KNEE"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SS", "SP"]
    ds.ScanOptions = "FAST_GEMS"
    ds.MRAcquisitionType = "2D"
    ds.SequenceName = "fgre"
    ds.SliceThickness = f"{geom.thickness_mm:.1f}"
    ds.RepetitionTime = f"{site.tr_ms:.3f}"
    ds.EchoTime = f"{site.te_ms:.3f}"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = f"{42.577478 * site.field_strength_t:.6f}"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = f"{site.field_strength_t:.1f}"
    ds.EchoTrainLength = "1"
    ds.PixelBandwidth = f"{site.pixel_bandwidth_hz:.3f}"
    ds.DeviceSerialNumber = f"0000SYN{site.code}"
    ds.SoftwareVersions = "SYNTHETIC"
    ds.ProtocolName = "KNEE LOC"
    ds.TransmitCoilName = hdr.coil.name if hdr.coil.kind == "tr_knee" else "BODY"
    ds.ReceiveCoilName = hdr.coil.name
    ds.AcquisitionMatrix = [0, geom.matrix, geom.matrix, 0]
    ds.InPlanePhaseEncodingDirection = "COL"
    ds.FlipAngle = f"{site.flip_deg:.0f}"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = uid(hdr.seed, hdr.exam_id, "study")
    ds.SeriesInstanceUID = uid(hdr.seed, hdr.exam_id, "series")
    ds.StudyID = hdr.exam_id[-8:]
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = uid(hdr.seed, hdr.exam_id, "frame")
    ds.Laterality = "R" if hdr.side == "right" else "L"
    ds.PositionReferenceIndicator = ""
    ds.PixelSpacing = [f"{geom.spacing_mm:.4f}", f"{geom.spacing_mm:.4f}"]
    _ENCODER.clear()
    _ENCODER[key] = SeriesEncoder(ds, bits_stored=16, implementation_version="KNEE_TF_PHANTOM")
    return _ENCODER[key]


def write_slice(path: str | Path, pixels: np.ndarray, hdr: ExamHeader, geom: SliceGeometry,
                instance_number: int, phase_direction: str | None = None) -> None:
    """Write ``pixels`` (uint16 (rows, cols)) as one DICOM file at ``path`` (atomically; the
    bytes :func:`knee_tf.data.dicom_write.write_image` writes, through a per-exam
    :class:`~knee_tf.data.dicom_write.SeriesEncoder`). ``phase_direction`` ("ROW" / "COL"):
    the slice's InPlanePhaseEncodingDirection where it differs per plane (None: the exam's "COL")."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError(f"pixels must be uint16 2D, got {pixels.dtype} {pixels.shape}")
    encoder = _exam_encoder(hdr, geom)
    hi = int(pixels.max())
    own = {  # the slice's own elements
        "SOPInstanceUID": uid(hdr.seed, hdr.exam_id, "image", instance_number),
        "SpacingBetweenSlices": f"{hdr.spacing_mm[geom.plane]:.1f}",
        "InstanceNumber": instance_number,
        "ImagePositionPatient": [f"{v:.4f}" for v in geom.top_left],
        "ImageOrientationPatient": [f"{v:.6f}"
                                    for v in np.concatenate([geom.row_dir, geom.col_dir])],
        "SliceLocation": f"{float(geom.centre @ geom.normal):.4f}",
        "WindowCenter": str(max(hi // 2, 1)),
        "WindowWidth": str(max(hi, 2)),
    }
    if phase_direction is not None:
        own["InPlanePhaseEncodingDirection"] = phase_direction
    encoder.write(path, own, pixels)

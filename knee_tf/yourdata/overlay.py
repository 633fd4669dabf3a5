"""Derived DICOM objects that carry a model's output back to the PACS (built with highdicom).

- :func:`blend` colours a Grad-CAM map over its image (RGB, what a viewer shows as is);
- :func:`overlay_secondary_capture` wraps it as a Secondary Capture image in the source's study,
  referencing the source image (SourceImageSequence) and stating the prediction;
- :func:`relevant_slices_kos` lists the slices a model called relevant in a Key Object Selection.

UIDs are derived from their inputs (:func:`derived_uid`), so storing again stores the same objects.
"""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

MANUFACTURER = "knee-tf"


def derived_uid(*parts: object) -> str:
    """A deterministic UID from identifying parts (source UIDs, model digest, role)."""
    return generate_uid(entropy_srcs=["knee_tf.yourdata.overlay"] + [str(p) for p in parts])


def blend(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """image: float (H, W) in [0, 1]; cam: float (H, W) in [0, 1] -> uint8 (H, W, 3) RGB.

    The map is coloured with matplotlib's ``jet`` and mixed in with weight ``alpha * cam`` per
    pixel, so where the map is 0 the image shows unchanged (an all-zero map gives the plain image).
    """
    from matplotlib import colormaps  # lazy: plotting only

    img = np.clip(np.asarray(image, np.float32), 0, 1)
    m = np.clip(np.asarray(cam, np.float32), 0, 1)
    if img.shape != m.shape or img.ndim != 2:
        raise ValueError(f"image and cam must be the same 2D shape, got {img.shape} and {m.shape}")
    colour = colormaps["jet"](m)[..., :3].astype(np.float32)
    w = (alpha * m)[..., None]
    rgb = (1 - w) * img[..., None] + w * colour
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def patient_orientation(iop) -> tuple[str, str] | None:
    """ImageOrientationPatient -> PatientOrientation letters of the row and column directions
    (the dominant axis: L/R, P/A, H/F), or None without an orientation."""
    if iop is None or len(iop) != 6:
        return None
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    out = []
    for v in (np.asarray(iop[:3], float), np.asarray(iop[3:], float)):
        ax = int(np.argmax(np.abs(v)))
        out.append(letters[ax][0 if v[ax] > 0 else 1])
    return out[0], out[1]


def overlay_secondary_capture(source: Dataset, rgb: np.ndarray, series_uid: str, series_number: int,
                              series_description: str, p_relevant: float, predicted: str,
                              model_name: str) -> Dataset:
    """A Secondary Capture image (RGB) of ``rgb`` in ``source``'s patient and study.

    source: the header of the source image (pixels not needed); rgb: uint8 (H, W, 3).
    SOPInstanceUID = derived_uid(series_uid, source SOPInstanceUID); InstanceNumber = the source's;
    SourceImageSequence names the source; ImageComments and DerivationDescription give the prediction.
    """
    from highdicom.sc import SCImage  # lazy: optional: only to write derived DICOM

    sop = derived_uid(series_uid, source.SOPInstanceUID)
    orient = patient_orientation(source.get("ImageOrientationPatient")) or ("L", "P")
    # SCImage(...) with the source's patient and study (from_ref_dataset does the same, plus an
    # IOD lookup that costs ~0.1 s per image)
    g = source.get
    sc = SCImage(
        pixel_array=np.ascontiguousarray(rgb), photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", study_instance_uid=source.StudyInstanceUID, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop, instance_number=int(g("InstanceNumber", 1) or 1),
        manufacturer=MANUFACTURER, patient_id=g("PatientID"), patient_name=g("PatientName"),
        patient_birth_date=g("PatientBirthDate"), patient_sex=g("PatientSex") or None,
        accession_number=g("AccessionNumber"), study_id=g("StudyID"), study_date=g("StudyDate") or None,
        study_time=g("StudyTime") or None, referring_physician_name=g("ReferringPhysicianName"),
        patient_orientation=orient, laterality=g("Laterality") or None,
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
        specific_character_set=g("SpecificCharacterSet"))
    sc.SeriesDescription = series_description[:64]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.DerivationDescription = f"Grad-CAM of {model_name} blended over the source localizer slice"[:1024]
    sc.ImageComments = f"{model_name}: p_relevant={p_relevant:.4f} predicted={predicted}"[:10240]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = DicomSequence([ref])
    if "FrameOfReferenceUID" in source:
        sc.FrameOfReferenceUID = source.FrameOfReferenceUID
    return sc


def relevant_slices_kos(sources: list[Dataset], relevant: list[bool], series_uid: str, series_number: int,
                        model_name: str) -> Dataset:
    """A Key Object Selection document in the sources' study listing the slices called relevant.

    sources: headers of the study's source images; relevant: bool per source (at least one True).
    """
    from highdicom.ko import (  # lazy: optional: only to write derived DICOM
        KeyObjectSelection,
        KeyObjectSelectionDocument,
    )

    chosen = [s for s, r in zip(sources, relevant, strict=True) if r]
    if not chosen:
        raise ValueError("relevant_slices_kos needs at least one relevant slice")
    content = KeyObjectSelection(document_title=codes.DCM.Manifest, referenced_objects=chosen,
                                 description=f"{model_name}: slices predicted relevant"[:1024])
    kos = KeyObjectSelectionDocument(evidence=chosen, content=content, series_instance_uid=series_uid,
                                     series_number=series_number, sop_instance_uid=derived_uid(series_uid, "kos"),
                                     instance_number=1, manufacturer=MANUFACTURER)
    kos.SeriesDescription = f"{model_name}: {len(chosen)} relevant slices"[:64]
    return kos

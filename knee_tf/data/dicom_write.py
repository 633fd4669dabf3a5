"""Writing DICOM: one writer for every file the study creates, original or derived.

* :func:`write_image` — file meta, 16-bit unsigned MONOCHROME2 pixels, Explicit VR Little Endian,
  an atomic write. Every derived image below is written through it.
* :class:`SeriesEncoder` — the same files, byte for byte, for many images that share most of their
  elements: the shared elements are encoded once. The phantom
  (:mod:`knee_tf.phantom.dicom_export`) writes its original slices through it.
* :func:`source_header` / :func:`header_from_json` — the attributes of a source image that a
  derived image copies, as DICOM JSON. Ingest stores them in its cache, so derived images can be
  written long after the raw DICOM is gone.
* :func:`derived_image` — a derived MR image (``DERIVED\\SECONDARY``) of a source header: patient,
  study, frame of reference, equipment and acquisition copied; new series and instance UIDs; the
  source referenced in SourceImageSequence; the field of view kept when the matrix changed.
* :func:`export_augmented_dicom` — the augmented training images of :mod:`knee_tf.core.augment` as
  derived images (notebook 04). Grad-CAM overlays (issue 12) are one more caller of
  :func:`derived_image`.

``highdicom`` was considered for the derived objects: its legacy-converted and secondary-capture
builders target enhanced/multi-frame and colour objects; a single-frame greyscale MR image that
opens beside its source series is plain pydicom, so no extra dependency is used here.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom import Dataset, FileMetaDataset, dcmwrite
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from knee_tf.core.io import atomic_path
from knee_tf.core.vocab import CAM_METHODS, METHOD_NAMES, TRANSFORMS

#: Attributes a derived image copies from its source: patient, study, frame of reference, equipment
#: and the MR acquisition parameters (the derived image was acquired the same way, then altered).
COPIED_KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "StationName",
    "MagneticFieldStrength", "ReceiveCoilName", "BodyPartExamined", "PatientPosition",
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
    "RepetitionTime", "EchoTime", "EchoTrainLength", "InversionTime", "FlipAngle",
    "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
    "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime",
)
#: What :func:`source_header` keeps: the copied attributes plus what a reference and the field of
#: view need.
SOURCE_KEYWORDS: tuple[str, ...] = COPIED_KEYWORDS + (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "PixelSpacing",
)
#: MR Image module attributes of type 2 (must be present, may be empty) if the source lacks them.
_TYPE2_MR = ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType",
             "EchoTime", "EchoTrainLength", "PatientName", "PatientID", "PatientBirthDate",
             "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
             "ReferringPhysicianName", "PositionReferenceIndicator", "Manufacturer")
#: Series numbers of the augmented series: 9000 + 10 * method index + transform index + 1.
_AUG_SERIES_BASE = 9000


def write_image(path: str | Path, ds: Dataset, pixels: np.ndarray, bits_stored: int = 16,
                implementation_version: str = "KNEE_TF") -> Path:
    """Write ``ds`` with ``pixels`` (uint16 (rows, cols), MONOCHROME2) to ``path``, atomically.

    ``ds`` must hold SOPClassUID and SOPInstanceUID; the file meta (Explicit VR Little Endian,
    pydicom's implementation UID, ``implementation_version``) is made here. Returns ``path``.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError(f"pixels must be uint16 2D, got {pixels.dtype} {pixels.shape}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = implementation_version
    ds.file_meta = meta
    ds.set_pixel_data(np.ascontiguousarray(pixels), "MONOCHROME2", bits_stored,
                      generate_instance_uid=False)  # keep the caller's deterministic UID
    path = Path(path)
    with atomic_path(path, suffix=".dcm") as tmp:
        dcmwrite(tmp, ds, enforce_file_format=True)
    return path


#: value representations :class:`SeriesEncoder` encodes per image (text with a 2-byte length)
_SHORT_TEXT_VRS = ("AE", "AS", "CS", "DA", "DS", "IS", "LO", "SH", "TM", "UI")


def _short_text_element(tag: int, vr: str, value) -> bytes:
    """One Explicit VR Little Endian element of a short text VR: ``value`` a str, int or a list
    of them (joined by backslashes), ASCII, padded to an even length (UI with a NUL)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    raw = "\\".join(str(v) for v in values).encode("ascii")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw)) + raw


class SeriesEncoder:
    """:func:`write_image` for many images that share most elements: the shared ones are encoded once.

    ``shared``: the elements common to every image (it must hold SOPClassUID; not SOPInstanceUID,
    which is per image). :meth:`write` gives the bytes :func:`write_image` writes for ``shared``
    plus the image's own elements (tests/data/test_dicom_write.py checks the equality): the shared
    elements, the pixel module and the file meta are encoded by pydicom once per pixel shape; an
    image's own elements are short ASCII text (:data:`_SHORT_TEXT_VRS`: UIDs, numbers as strings)
    and encoded here.
    """

    def __init__(self, shared: Dataset, bits_stored: int = 16, implementation_version: str = "KNEE_TF"):
        if "SOPInstanceUID" in shared:
            raise ValueError("SeriesEncoder: SOPInstanceUID is per image, not shared")
        self.shared = shared
        self.bits_stored = int(bits_stored)
        self.implementation_version = implementation_version
        self.encodings = shared.get("SpecificCharacterSet", None)
        self._shape = None  # pixel shape the cached parts below were made for
        self._body: dict[int, bytes] = {}
        self._meta_fixed = (b"", b"")
        self._tags: dict[str, tuple[int, str]] = {}  # keyword -> (tag, VR)

    def _encode(self, elem) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_data_element(fp, elem, self.encodings)
        return fp.getvalue()

    def _prepare(self, shape: tuple[int, int]) -> None:
        """Encode the shared elements, the pixel module of ``shape`` and the fixed file meta."""
        ds = copy.deepcopy(self.shared)
        ds.file_meta = FileMetaDataset()
        ds.set_pixel_data(np.zeros(shape, np.uint16), "MONOCHROME2", self.bits_stored,
                          generate_instance_uid=False)
        del ds.PixelData
        correct_ambiguous_vr(ds, True)
        self._body = {int(tag): self._encode(ds[tag]) for tag in ds.keys()
                      if not (tag.element == 0 and tag.group > 6)}
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.shared.SOPClassUID
        meta.MediaStorageSOPInstanceUID = "1"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = self.implementation_version
        validate_file_meta(meta, enforce_standard=True)  # adds what dcmwrite adds
        tags = [int(tag) for tag in sorted(meta.keys()) if tag > 0x00020000]
        k = tags.index(0x00020003)  # MediaStorageSOPInstanceUID: the one per-image meta element
        parts = [self._encode(meta[tag]) for tag in tags]
        self._meta_fixed = (b"".join(parts[:k]), b"".join(parts[k + 1:]))
        self._shape = shape

    def _tag(self, keyword: str) -> tuple[int, str]:
        if keyword not in self._tags:
            tag = tag_for_keyword(keyword)
            vr = dictionary_VR(tag) if tag is not None else None
            if vr not in _SHORT_TEXT_VRS:
                raise ValueError(f"SeriesEncoder: {keyword} ({vr}) is not a per-image element "
                                 f"it encodes (VRs {', '.join(_SHORT_TEXT_VRS)})")
            self._tags[keyword] = (int(tag), vr)
        return self._tags[keyword]

    def encode(self, own: Mapping[str, object], pixels: np.ndarray) -> bytes:
        """The whole file (preamble, file meta, data set) of one image. ``own``: keyword -> value
        of the image's own elements (SOPInstanceUID among them; they replace shared ones)."""
        if pixels.dtype != np.uint16 or pixels.ndim != 2:
            raise ValueError(f"pixels must be uint16 2D, got {pixels.dtype} {pixels.shape}")
        if self.bits_stored < 16 and int(pixels.max(initial=0)) >= 2 ** self.bits_stored:
            raise ValueError(f"pixel values exceed bits_stored={self.bits_stored}")
        if pixels.shape != self._shape:
            self._prepare(pixels.shape)
        body = dict(self._body)
        for keyword, value in own.items():
            tag, vr = self._tag(keyword)
            body[tag] = _short_text_element(tag, vr, value)
        data = np.ascontiguousarray(pixels).astype("<u2", copy=False).tobytes()
        body[0x7FE00010] = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(data)) + data
        meta = (self._meta_fixed[0]
                + _short_text_element(0x00020003, "UI", own["SOPInstanceUID"])
                + self._meta_fixed[1])
        length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
        return b"".join([b"\x00" * 128, b"DICM", length, meta]
                        + [body[tag] for tag in sorted(body)])

    def write(self, path: str | Path, own: Mapping[str, object], pixels: np.ndarray) -> Path:
        """Write :meth:`encode`'s bytes to ``path``, atomically. Returns ``path``."""
        data = self.encode(own, pixels)
        path = Path(path)
        with atomic_path(path, suffix=".dcm") as tmp:
            tmp.write_bytes(data)
        return path


def source_header(ds: Dataset) -> dict:
    """The :data:`SOURCE_KEYWORDS` of ``ds`` that it has, as a DICOM JSON dict (``Dataset.to_json_dict``)."""
    sub = Dataset()
    for kw in SOURCE_KEYWORDS:
        if kw in ds:
            sub[kw] = ds[kw]
    return sub.to_json_dict()


def header_from_json(header: Mapping) -> Dataset:
    """The Dataset :func:`source_header` stored."""
    return Dataset.from_json(dict(header))


def derived_image(src: Dataset, pixels01: np.ndarray, *, series_uid: str, sop_uid: str, series_number: int,
                  instance_number: int, series_description: str, derivation_description: str,
                  image_comments: str = "") -> tuple[Dataset, np.ndarray]:
    """A derived MR image of the source header ``src`` (from :func:`header_from_json` or a file).

    pixels01: float (H, W) in [0, 1] (clipped), stored as 12 bits (0..4095) in 16-bit words;
    PixelSpacing is scaled so the image covers the source's field of view, and ImagePositionPatient
    moves by half the spacing change (the first pixel's centre). Returns (dataset, uint16 pixels)
    for :func:`write_image` (``bits_stored=12``).
    """
    img = np.asarray(pixels01, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"pixels must be (H, W), got {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("pixels contain NaN or inf")
    sid = str(src.get("SOPInstanceUID", "")) or sop_uid
    ds = Dataset()
    for kw in COPIED_KEYWORDS:
        if kw in src and src[kw].value not in (None, ""):
            setattr(ds, kw, src[kw].value)
    for kw in _TYPE2_MR:
        if kw not in ds:
            setattr(ds, kw, None)
    ds.StudyInstanceUID = str(src.get("StudyInstanceUID", "")) or generate_uid(entropy_srcs=[sid])
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = int(instance_number)
    ds.SeriesDescription = series_description[:64]
    ds.DerivationDescription = derivation_description[:1024]
    if image_comments:
        ds.ImageComments = image_comments[:10240]
    ref = Dataset()
    ref.ReferencedSOPClassUID = src.get("SOPClassUID", MRImageStorage)
    ref.ReferencedSOPInstanceUID = sid
    ds.SourceImageSequence = DicomSequence([ref])
    if "PixelSpacing" in src and "Rows" in src and "Columns" in src:
        sr, sc = (float(v) for v in src.PixelSpacing)
        nr, nc = sr * int(src.Rows) / img.shape[0], sc * int(src.Columns) / img.shape[1]
        ds.PixelSpacing = [round(nr, 6), round(nc, 6)]
        if "ImagePositionPatient" in src and "ImageOrientationPatient" in src:
            iop = np.asarray([float(v) for v in src.ImageOrientationPatient])
            ipp = np.asarray([float(v) for v in src.ImagePositionPatient])
            ipp = ipp + 0.5 * (nc - sc) * iop[:3] + 0.5 * (nr - sr) * iop[3:]
            ds.ImagePositionPatient = [round(float(v), 4) for v in ipp]
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    return ds, np.round(np.clip(img, 0.0, 1.0) * 4095.0).astype(np.uint16)


def export_augmented_dicom(aug_images: np.ndarray, provenance: pd.DataFrame, source_headers: Mapping[str, Dataset],
                           out_dir: str | Path) -> list[Path]:
    """Write each augmented image as a derived MR image a DICOM viewer opens beside its source.

    aug_images: float32 (M, H, W, 1) or (M, H, W) in [0, 1]; provenance: the matching DataFrame from
    :func:`knee_tf.core.augment.build_augmented_pool`; source_headers: {source_image_id: its header}
    (:meth:`knee_tf.data.ingest.IngestResult.source_headers`). One series per (study, method, transform,
    layer), the transform named in SeriesDescription, the weight in DerivationDescription. UIDs are
    a deterministic function of the source UIDs and the provenance row, so a re-export gives
    identical files. Files are ``out_dir/<aug_id>.dcm``. Returns the paths in provenance order.
    """
    x = np.asarray(aug_images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"aug_images must be (M, H, W, 1) or (M, H, W); got {np.shape(aug_images)}")
    need = {"aug_id", "source_image_id", "method", "transform", "layer", "weight"}
    missing = sorted(need - set(provenance.columns))
    if missing:
        raise ValueError(f"provenance lacks column(s) {missing}")
    if len(provenance) != x.shape[0]:
        raise ValueError(f"provenance has {len(provenance)} rows for {x.shape[0]} images")
    headers = {str(k): v for k, v in source_headers.items()}
    absent = sorted(set(provenance["source_image_id"].astype(str)) - set(headers))
    if absent:
        raise ValueError(f"no source DICOM header for image id(s) {absent[:5]}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, instance_in_series = [], {}
    for i, row in enumerate(provenance.itertuples(index=False)):
        src = headers[str(row.source_image_id)]
        method, transform, layer, w = str(row.method), str(row.transform), str(row.layer), float(row.weight)
        if method not in CAM_METHODS or transform not in TRANSFORMS:
            raise ValueError(f"provenance row {i}: unknown method/transform {method!r}/{transform!r}")
        study_uid = str(src.get("StudyInstanceUID", "")) or generate_uid(entropy_srcs=[str(row.source_image_id)])
        series_uid = generate_uid(entropy_srcs=["knee_tf.core.augment", study_uid, method, transform, layer])
        instance_in_series[series_uid] = instance_in_series.get(series_uid, 0) + 1
        ds, pixels = derived_image(
            src, x[i], series_uid=series_uid,
            sop_uid=generate_uid(entropy_srcs=["knee_tf.core.augment", series_uid, str(row.aug_id)]),
            series_number=_AUG_SERIES_BASE + 10 * CAM_METHODS.index(method) + TRANSFORMS.index(transform) + 1,
            instance_number=instance_in_series[series_uid],
            series_description=f"AUG {transform} {METHOD_NAMES[method]} {layer}",
            derivation_description=(f"knee_tf.core.augment {transform}: image * (1 - {w:.3f} * M), M = Model A "
                                    f"{METHOD_NAMES[method]} map at {layer}"),
            image_comments=f"aug_id={row.aug_id} source={row.source_image_id} weight={w:.4f}")
        written.append(write_image(out_dir / f"{_safe_name(str(row.aug_id))}.dcm", ds, pixels, bits_stored=12,
                                   implementation_version="KNEE_TF_DERIVED"))
    return written


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)

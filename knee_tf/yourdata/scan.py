"""Find the knee localizer slices in a DICOM export, reading headers only, and write a manifest.

``scan_folder(root, out_csv)`` walks ``root`` (nested folders, DICOMDIR or loose files, any file
names), reads every file's header (never its pixels), groups MR images by patient, study and
series, and decides per series whether it is a knee localizer from what the headers say:

- **localizer evidence**: ``LOCALIZER`` in ImageType, or several orientations in one series (the
  tri-plane localizer most scanners write as one series);
- **geometry**: a localizer has few slices per plane; a single-plane series with many slices and
  no ``LOCALIZER`` is a diagnostic series;
- **body part** (supporting): BodyPartExamined, or a description naming another body part, rules a
  series out; ``KNEE`` in them is recorded as support.

Each slice gets its plane from ImageOrientationPatient. Every file not taken is listed in
``scan_report.csv`` with a reason (:data:`REASONS`); files in = taken + reported, always.

Patient identifiers never reach the manifest: ``patient_id`` and ``exam_id`` are salted hashes
(HMAC-SHA256) of PatientID and StudyInstanceUID. The salt and the map back to the real ids live in
files the user names and keeps (:class:`Pseudonymizer`); a re-scan with the same salt gives the
same pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from tqdm.auto import tqdm

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv, atomic_write_text
from knee_tf.core.vocab import PLANES
from knee_tf.data.dicom_read import plane_from_orientation
from knee_tf.data.manifest import read_manifest
from knee_tf.yourdata.predict import predict_manifest

#: Why a file was not taken (the ``reason`` column of scan_report.csv).
REASONS: tuple[str, ...] = (
    "unreadable",            # empty, truncated, or not DICOM (file-level reasons: first match wins)
    "dicomdir",              # a media index; the files it lists are scanned themselves
    "non-image object",      # SR, KOS, presentation state, RT plan, waveform ...
    "colour image",          # RGB / YBR / palette
    "multi-frame object",    # enhanced multi-frame storage: export as single frames
    "another modality",      # CT, CR, NM ... (localizers here are MR)
    "no orientation",        # no ImageOrientationPatient: the plane cannot be known
    "duplicate instance",    # the same SOPInstanceUID seen in an earlier file
    "another body part",     # BodyPartExamined or a description names another body part
    "diagnostic series",     # one plane, many slices, no LOCALIZER in ImageType
    "not a localizer",       # no localizer evidence (e.g. a lone slice)
)

#: Manifest columns written by scan (label and split stay empty until labelled and split).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id", "patient_id", "exam_id", "path", "plane", "label", "split", "site", "scanner",
    "field_strength_t", "coil", "series_description", "series_number", "instance_number",
    "slice_location_mm", "slice_thickness_mm", "localizer_evidence", "study_uid", "series_uid", "sop_uid",
)
REPORT_COLUMNS: tuple[str, ...] = ("path", "reason", "detail")

MEDIA_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # the SOP class of a DICOMDIR
NON_IMAGE_MODALITIES = {"SR", "KO", "PR", "RTPLAN", "RTSTRUCT", "RTRECORD", "REG", "SEG", "ECG", "HD", "AU",
                        "DOC", "PLAN", "FID"}
OTHER_BODY_PARTS = ("BRAIN", "HEAD", "SPINE", "NECK", "SHOULDER", "ELBOW", "WRIST", "HAND", "HIP", "PELVIS",
                    "ANKLE", "FOOT", "CHEST", "THORAX", "ABDOMEN", "LIVER", "PROSTATE", "BREAST", "HEART",
                    "CARDIAC", "CSPINE", "LSPINE", "TSPINE")
KNEE_WORDS = ("KNEE", "GENU", "KNIE", "GENOU", "RODILLA", "GINOCCHIO")
#: A localizer plane holds at most this many slices; a single-plane series with more is diagnostic.
MAX_LOCALIZER_SLICES_PER_PLANE = 15
_DEFER = 512  # bytes: longer values (pixel data) are never read, only their length and offset noted
_PIXEL_DATA = 0x7FE00010
_HEADER_TAGS = ("SOPClassUID", "SOPInstanceUID", "Modality", "PatientID", "StudyInstanceUID",
                "SeriesInstanceUID", "SeriesNumber", "InstanceNumber", "ImageType", "ImageOrientationPatient",
                "ImagePositionPatient", "SliceThickness", "SliceLocation", "BodyPartExamined",
                "SeriesDescription", "StudyDescription", "ProtocolName", "PhotometricInterpretation",
                "SamplesPerPixel", "NumberOfFrames", "Rows", "Columns", "InstitutionName", "StationName",
                "ManufacturerModelName", "MagneticFieldStrength", "ReceiveCoilName")


@dataclass
class ScanResult:
    """manifest: one row per taken slice (:data:`MANIFEST_COLUMNS`); report: one row per file not
    taken (:data:`REPORT_COLUMNS`); n_files: files found (= len(manifest) + len(report))."""

    manifest: pd.DataFrame
    report: pd.DataFrame
    n_files: int
    series: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per MR series and the decision
    report_path: Path | None = None
    id_map_path: Path | None = None


class Pseudonymizer:
    """Salted-hash pseudonyms, with the map back kept in a file the user controls.

    salt_file: a secret (created with 32 random bytes if missing; keep it to get the same
    pseudonyms on a re-scan). id_map: CSV ``kind,pseudonym,original`` (rows added, never removed).
    Neither file belongs next to data you share.
    """

    def __init__(self, salt_file: str | Path, id_map: str | Path):
        self.salt_file, self.id_map = Path(salt_file), Path(id_map)
        if self.salt_file.exists():
            self.salt = self.salt_file.read_text().strip().encode()
            if not self.salt:
                raise InputError(f"{self.salt_file}: salt file is empty")
        else:
            self.salt = secrets.token_hex(32).encode()
            atomic_write_text(self.salt_file, self.salt.decode() + "\n")
            os.chmod(self.salt_file, 0o600)
        self.rows: dict[tuple[str, str], str] = {}
        if self.id_map.exists():
            old = pd.read_csv(self.id_map, dtype=str, keep_default_na=False)
            self.rows = {(k, p): o for k, p, o in zip(old["kind"], old["pseudonym"], old["original"], strict=True)}

    def __call__(self, kind: str, original: str) -> str:
        """``kind`` 'patient' -> 'P' + 12 hex digits; 'study' -> 'E' + 12 hex digits."""
        digest = hmac.new(self.salt, f"{kind}:{original}".encode(), hashlib.sha256).hexdigest()[:12]
        pseudo = ("P" if kind == "patient" else "E") + digest
        self.rows[(kind, pseudo)] = original
        return pseudo

    def save(self) -> None:
        df = pd.DataFrame([(k, p, o) for (k, p), o in sorted(self.rows.items())],
                          columns=["kind", "pseudonym", "original"])
        atomic_write_csv(self.id_map, df)
        os.chmod(self.id_map, 0o600)


def _read_header(path: Path) -> tuple[pydicom.Dataset | None, str, str]:
    """(dataset, '', '') or (None, reason, detail) for a file that cannot be used at all."""
    try:
        if path.stat().st_size == 0:
            return None, "unreadable", "empty file (0 bytes)"
    except OSError as e:
        return None, "unreadable", f"cannot read file: {e.strerror}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, defer_size=_DEFER)
        except InvalidDicomError:
            try:
                ds = pydicom.dcmread(path, defer_size=_DEFER, force=True)
            except Exception as e:  # noqa: BLE001 - pydicom raises many types on junk
                return None, "unreadable", f"not a DICOM file ({type(e).__name__})"
            if not any(t.group in (0x0008, 0x0010, 0x0020, 0x0028) for t in ds.keys()):
                return None, "unreadable", "not a DICOM file (no DICM prefix, no DICOM elements)"
        except Exception as e:  # noqa: BLE001
            return None, "unreadable", f"truncated or corrupt DICOM header ({type(e).__name__})"
        try:  # touch every element we use: a truncated header fails here, not later
            for tag in _HEADER_TAGS:
                ds.get(tag)
        except Exception as e:  # noqa: BLE001
            return None, "unreadable", f"truncated or corrupt DICOM header ({type(e).__name__})"
    return ds, "", ""


def _text(ds, tag: str) -> str:
    v = ds.get(tag, "")
    return "" if v is None else str(v).strip()


def _file_verdict(ds: pydicom.Dataset, size_bytes: int) -> tuple[str, str]:
    """('', '') for an MR greyscale single-frame image with an orientation, else (reason, detail)."""
    meta_sop = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
    if "DirectoryRecordSequence" in ds or meta_sop == MEDIA_DIRECTORY_STORAGE:
        return "dicomdir", "DICOMDIR media index (the files it lists are scanned on their own)"
    modality = _text(ds, "Modality").upper()
    if modality in NON_IMAGE_MODALITIES or "Rows" not in ds:
        sop = ds.get("SOPClassUID")
        name = getattr(sop, "name", "") if sop is not None else ""
        return "non-image object", f"Modality {modality or '?'}{f' ({name})' if name else ''}: no image"
    photometric = _text(ds, "PhotometricInterpretation").upper() or "MONOCHROME2"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        return "colour image", f"PhotometricInterpretation {photometric} (Modality {modality or '?'})"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return "multi-frame object", (f"{frames} frames in one file (Modality {modality or '?'}); "
                                      "export the series as single-frame images")
    if modality != "MR":
        return "another modality", f"Modality {modality or 'missing'}: knee localizers are MR images"
    iop = ds.get("ImageOrientationPatient")
    if iop is None or plane_from_orientation(list(iop)) is None:
        return "no orientation", "no usable ImageOrientationPatient: the plane cannot be known"
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    if raw is None:
        return "non-image object", "no PixelData element: the file holds no image"
    length, offset = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length is not None and offset is not None and length != 0xFFFFFFFF and offset + length > size_bytes:
        return "unreadable", (f"truncated: pixel data needs {length} bytes from byte {offset}, "
                              f"the file ends at {size_bytes}")
    return "", ""


def _position(ds, plane_normal: np.ndarray) -> float | None:
    ipp = ds.get("ImagePositionPatient")
    if ipp is not None and len(ipp) == 3:
        return float(np.asarray(ipp, float) @ plane_normal)
    loc = ds.get("SliceLocation")
    return float(loc) if loc not in (None, "") else None


def _normal(iop) -> np.ndarray:
    r, c = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    n = np.cross(r, c)
    return n / np.linalg.norm(n)


def _body_part_verdict(series: pd.DataFrame) -> tuple[str, str]:
    """('another body part', why) | ('', 'KNEE in ...' or 'no body part given')."""
    first = series.iloc[0]
    part = first["body_part"].upper()
    words = " ".join(str(first[k]) for k in ("series_description", "study_description", "protocol")).upper()
    if part and not any(k in part for k in KNEE_WORDS) and part not in ("EXTREMITY", "LEG", "LOWER LIMB"):
        return "another body part", f"BodyPartExamined {part}"
    if not any(k in part or k in words for k in KNEE_WORDS):
        other = [b for b in OTHER_BODY_PARTS if re.search(rf"\b{b}\b", words)]
        if other:
            return "another body part", f"description names {other[0]}"
        return "", "no body part given"
    return "", "KNEE in " + ("BodyPartExamined" if any(k in part for k in KNEE_WORDS) else "description")


def classify_series(series: pd.DataFrame) -> tuple[str, str]:
    """Decide one series (rows of taken-so-far MR files): ('', evidence) to take it, else (reason, why).

    Evidence, strongest first: ImageType LOCALIZER; several planes in one series; few slices per
    plane. Body part and description only rule out (another body part) or support (knee).
    """
    part_reason, part_detail = _body_part_verdict(series)
    if part_reason:
        return part_reason, part_detail
    planes = series["plane"].value_counts()
    per_plane = ", ".join(f"{planes.get(p, 0)} {p}" for p in PLANES if planes.get(p, 0))
    localizer_type = series["image_type"].str.upper().str.contains("LOCALIZER").any()
    most = int(planes.max())
    thick = pd.to_numeric(series["slice_thickness_mm"], errors="coerce").median()
    thick_s = f", {thick:g} mm thick" if np.isfinite(thick) else ""
    evidence = []
    if localizer_type:
        evidence.append("ImageType LOCALIZER")
    if len(planes) >= 2:
        evidence.append(f"{len(planes)} planes in one series")
    if not evidence:
        if most > MAX_LOCALIZER_SLICES_PER_PLANE:
            return "diagnostic series", f"1 plane, {most} slices{thick_s}, no LOCALIZER in ImageType"
        return "not a localizer", f"1 plane, {most} slice(s){thick_s}, no LOCALIZER in ImageType"
    if most > MAX_LOCALIZER_SLICES_PER_PLANE and not localizer_type:
        return "diagnostic series", (f"{per_plane} slices: more than {MAX_LOCALIZER_SLICES_PER_PLANE} per plane "
                                     "and no LOCALIZER in ImageType")
    evidence.append(f"{per_plane} slices{thick_s}")
    evidence.append(part_detail)
    return "", "; ".join(evidence)


def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (any name, hidden files included), sorted."""
    out = []
    for d, _dirs, files in os.walk(root):
        out.extend(Path(d) / f for f in files)
    return sorted(p for p in out if p.is_file())


def scan_folder(root: str | Path, out_csv: str | Path, report_csv: str | Path | None = None,
                salt_file: str | Path | None = None, id_map: str | Path | None = None,
                progress: bool = True) -> ScanResult:
    """Scan ``root`` and write ``out_csv`` (the manifest) and ``report_csv`` (default:
    ``scan_report.csv`` beside it). ``salt_file``/``id_map`` default to ``pseudonym_salt.txt`` and
    ``patient_id_map.csv`` beside the manifest: move them somewhere private before sharing anything.

    Paths in the manifest are relative to ``root`` (use it as the data root). Raises InputError when
    ``root`` is not a folder or holds no files.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    out_csv = Path(out_csv)
    report_csv = Path(report_csv) if report_csv else out_csv.parent / "scan_report.csv"
    pseudo = Pseudonymizer(salt_file or out_csv.parent / "pseudonym_salt.txt",
                           id_map or out_csv.parent / "patient_id_map.csv")
    own = {p.resolve() for p in (out_csv, report_csv, pseudo.salt_file, pseudo.id_map)}
    files = [f for f in list_files(root) if f.resolve() not in own]
    if not files:
        raise InputError(f"{root}: no files to scan")

    report, images, seen = [], [], {}
    for f in tqdm(files, desc="scan headers", unit="file", disable=not progress):
        rel = f.relative_to(root).as_posix()
        ds, reason, detail = _read_header(f)
        if ds is not None:
            reason, detail = _file_verdict(ds, f.stat().st_size)
        if not reason:
            sop = _text(ds, "SOPInstanceUID")
            if sop and sop in seen:
                reason, detail = "duplicate instance", f"SOPInstanceUID already in {seen[sop]}"
            else:
                seen[sop] = rel
        if reason:
            report.append((rel, reason, detail))
            continue
        iop = [float(v) for v in ds.ImageOrientationPatient]
        images.append(dict(
            path=rel, patient=_text(ds, "PatientID"), study_uid=_text(ds, "StudyInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"), sop_uid=_text(ds, "SOPInstanceUID"),
            series_number=_text(ds, "SeriesNumber"), instance_number=_text(ds, "InstanceNumber"),
            image_type="\\".join(str(v) for v in (ds.get("ImageType") or [])),
            plane=plane_from_orientation(iop), slice_location_mm=_position(ds, _normal(iop)),
            slice_thickness_mm=_text(ds, "SliceThickness"), body_part=_text(ds, "BodyPartExamined"),
            series_description=_text(ds, "SeriesDescription"), study_description=_text(ds, "StudyDescription"),
            protocol=_text(ds, "ProtocolName"),
            site=" ".join(x for x in (_text(ds, "InstitutionName"), _text(ds, "StationName")) if x),
            scanner=_text(ds, "ManufacturerModelName"), field_strength_t=_text(ds, "MagneticFieldStrength"),
            coil=_text(ds, "ReceiveCoilName")))

    img = pd.DataFrame(images)
    decisions, taken = [], []
    if len(img):
        for (_pat, _study, _series), grp in img.groupby(["patient", "study_uid", "series_uid"], sort=True):
            reason, detail = classify_series(grp)
            decisions.append(dict(patient=_pat, study_uid=_study, series_uid=_series, n_files=len(grp),
                                  taken=not reason, reason=reason, detail=detail))
            if reason:
                report.extend((p, reason, detail) for p in grp["path"])
            else:
                taken.append(grp.assign(localizer_evidence=detail))
    manifest = _manifest_rows(pd.concat(taken) if taken else img.iloc[0:0], pseudo)
    rep = pd.DataFrame(sorted(report), columns=list(REPORT_COLUMNS))
    assert len(manifest) + len(rep) == len(files), "scan lost a file"  # files in = taken + reported
    pseudo.save()
    atomic_write_csv(out_csv, manifest)
    atomic_write_csv(report_csv, rep)
    return ScanResult(manifest, rep, len(files), pd.DataFrame(decisions), report_csv, pseudo.id_map)


def _manifest_rows(taken: pd.DataFrame, pseudo: Pseudonymizer) -> pd.DataFrame:
    if len(taken) == 0:
        return pd.DataFrame(columns=list(MANIFEST_COLUMNS))
    df = taken.copy()
    df["patient_id"] = [pseudo("patient", p or "(no PatientID)") for p in df["patient"]]
    df["exam_id"] = [pseudo("study", s) for s in df["study_uid"]]
    df["label"] = ""
    df["split"] = ""
    order = {p: i for i, p in enumerate(PLANES)}
    df["_plane"] = df["plane"].map(order)
    df["_loc"] = df["slice_location_mm"].astype(float)
    df = df.sort_values(["patient_id", "exam_id", "series_number", "series_uid", "_plane", "_loc", "path"])
    n = df.groupby(["exam_id", "series_uid"]).cumcount() + 1
    series_no = df["series_number"].where(df["series_number"] != "", "0")
    df["image_id"] = df["exam_id"] + "_s" + series_no + "_" + n.map("{:03d}".format)
    dup = df["image_id"].duplicated(keep=False)  # two series sharing a SeriesNumber
    if dup.any():
        df.loc[dup, "image_id"] = df.loc[dup, "image_id"] + "_" + df.loc[dup, "series_uid"].str[-6:]
    df["slice_location_mm"] = df["slice_location_mm"].map(lambda v: "" if v is None or not np.isfinite(v)
                                                          else f"{v:.2f}")
    return df[list(MANIFEST_COLUMNS)].reset_index(drop=True).astype(str)


def add_predictions(manifest: str | Path, root: str | Path, model, cache_dir: str | Path = "data/cache",
                    workers: int | None = None) -> pd.DataFrame:
    """Add a model's ``p_relevant`` and predicted class to a scanned manifest (rewritten atomically).

    ``label`` stays as it is: a prediction is a suggestion for the labelling notebook, never a
    label. The per-image predictions are also kept in ``scan_predicted.csv`` beside the manifest.
    """
    manifest = Path(manifest)
    preds = predict_manifest(model, manifest, root, manifest.parent / "scan_predicted.csv",
                             cache_dir=cache_dir, workers=workers)
    df = read_manifest(manifest).drop(columns=["p_relevant", "predicted"], errors="ignore")
    df = df.merge(preds[["image_id", "p_relevant", "predicted"]].astype(str), on="image_id", how="left",
                  validate="one_to_one").fillna("")
    atomic_write_csv(manifest, df)
    return df


def summarise(res: ScanResult) -> str:
    """A few lines for the terminal: files in, taken (per plane), reported (per reason)."""
    planes = Counter(res.manifest["plane"]) if len(res.manifest) else Counter()
    reasons = Counter(res.report["reason"]) if len(res.report) else Counter()
    lines = [f"{res.n_files} files: {len(res.manifest)} localizer slices taken, {len(res.report)} reported"]
    if planes:
        lines.append("taken: " + ", ".join(f"{planes[p]} {p}" for p in PLANES if planes[p]))
    if reasons:
        lines.append("reported: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    return "\n".join(lines)

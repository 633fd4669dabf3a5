"""The data contract: ``data_manifest.csv``, one row per 2D image, validated before any decoding.

Required columns::

    image_id    unique id of the 2D image
    patient_id  patient (splits must not share a patient)
    exam_id     exam / study
    path        DICOM file, relative to the data root (absolute paths must also lie inside it)
    plane       axial | sagittal | coronal
    label       relevant | irrelevant       (use "train" only)
    split       train | val | test          (use "train" only)

A manifest serves one *use* (:data:`USES`): ``train`` (the study) needs every row labelled and
split; ``predict`` and ``scan`` (a manifest written by ``knee-tf scan``, not yet labelled) accept
``label``/``split`` missing or empty, and check them only where they are filled in.

Optional columns (:data:`knee_tf.core.vocab.OPTIONAL_COLUMNS`) are kept as they are: site, scanner,
field_strength_t, coil, cohort (normal|metal|new_site), frame (0-based frame of a multi-frame file),
slice_index, anatomy, and any others. The names live in :mod:`knee_tf.core.vocab`.

Every problem is reported (not only the first), each as one line naming the manifest line (the CSV
line number, header = line 1, which is also the spreadsheet row), the image_id and the path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from knee_tf.core.errors import InputError
from knee_tf.core.vocab import CLASSES, MANIFEST_COHORTS, PLANES, REQUIRED_COLUMNS, SPLITS
from knee_tf.data.layout import DATA_MANIFEST

#: use -> the columns it requires (``label``/``split`` only for training)
USES: dict[str, tuple[str, ...]] = {
    "train": REQUIRED_COLUMNS,
    "predict": tuple(c for c in REQUIRED_COLUMNS if c not in ("label", "split")),
    "scan": tuple(c for c in REQUIRED_COLUMNS if c not in ("label", "split")),
}
ALLOWED = {"plane": PLANES, "label": CLASSES, "split": SPLITS}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one manifest row (``row`` = 0-based position in the table)."""

    manifest: str
    row: int | None
    image_id: str | None
    path: str | None
    message: str

    @property
    def line(self) -> int | None:
        return None if self.row is None else self.row + 2  # header is line 1

    def __str__(self) -> str:
        where = self.manifest if self.line is None else f"{self.manifest} line {self.line}"
        ids = []
        if self.image_id:
            ids.append(f"image_id={self.image_id}")
        if self.path:
            ids.append(f"path={self.path}")
        return f"{where}{' (' + ', '.join(ids) + ')' if ids else ''}: {self.message}"


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest as strings (no type guessing, empty cells stay ''); raise InputError if unreadable."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise InputError(f"{path}: manifest not found")
    if path.is_dir():
        raise InputError(f"{path}: manifest path is a directory, expected a CSV file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read manifest: {e.strerror}") from None
    if not raw.strip():
        raise InputError(f"{name}: manifest is empty (no header, no rows)")
    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"{name}: not a readable CSV manifest: {msg}") from None
    df.columns = [c.strip() for c in df.columns]
    if len(df) == 0:
        raise InputError(f"{name}: manifest has a header but no rows")
    return df


def validate_manifest(df: pd.DataFrame, root: str | Path, manifest_name: str = DATA_MANIFEST,
                      check_files: bool = True, use: str = "train") -> list[Problem]:
    """Every violation of the contract, in row order (file-level problems first).

    Checks: required columns; empty/unknown plane, label, split (and cohort when present); empty
    image_id/patient_id/exam_id/path; duplicate image_id (later rows flagged, naming the first);
    a patient in more than one split (every row of that patient); a frame that is not a
    non-negative integer; and, with ``check_files``, a path outside the data root, missing, or a
    directory.
    """
    if use not in USES:
        raise ValueError(f"use must be one of {', '.join(USES)}, got {use!r}")
    root = Path(root).resolve()
    required = USES[use]
    missing = [c for c in required if c not in df.columns]
    if missing:
        why = f"{use} needs {', '.join(required)}"
        if use == "train":
            why += "; label and split are needed only for training"
        return [Problem(manifest_name, None, None, None, f"missing required column(s): {', '.join(missing)} ({why})")]
    per_row: dict[int, list[str]] = {}

    def add(i: int, msg: str) -> None:
        per_row.setdefault(i, []).append(msg)

    for col in ("image_id", "patient_id", "exam_id", "path"):
        for i in df.index[df[col].str.strip() == ""]:
            add(i, f"empty {col}")
    for col, allowed in ALLOWED.items():
        if col not in df.columns:
            continue
        for i, v in df[col].items():
            if v.strip() == "":
                if col in required:
                    add(i, f"empty {col} (expected {'|'.join(allowed)}; {use} needs every row's {col})")
            elif v not in allowed:
                add(i, f"unknown {col} {v!r} (expected {'|'.join(allowed)})")
    if "cohort" in df.columns:
        for i, v in df["cohort"].items():
            if v not in MANIFEST_COHORTS:
                add(i, f"unknown cohort {v!r} (expected {'|'.join(MANIFEST_COHORTS)})")
    if "frame" in df.columns:
        for i, v in df["frame"].items():
            if v.strip() != "" and not (v.strip().isdigit()):
                add(i, f"frame {v!r} is not a non-negative integer")

    ids = df["image_id"]
    first_seen: dict[str, int] = {}
    for i, v in ids.items():
        if v == "":
            continue
        if v in first_seen:
            add(i, f"duplicate image_id {v!r} (first at line {first_seen[v] + 2})")
        else:
            first_seen[v] = i

    if "split" in df.columns:
        valid_split = df["split"].isin(SPLITS) & (df["patient_id"] != "")
        splits_per_patient = df[valid_split].groupby("patient_id")["split"].agg(lambda s: sorted(set(s)))
        leaking = splits_per_patient[splits_per_patient.map(len) > 1]
        for pid, splits in leaking.items():
            for i in df.index[(df["patient_id"] == pid) & valid_split]:
                add(i, f"patient {pid!r} appears in more than one split ({', '.join(splits)}): leakage")

    if check_files:
        files = {i: file_problem(p, root) for i, p in df["path"].items() if p.strip() != ""}
        if len(files) > 1 and all(m == FILE_NOT_FOUND for m in files.values()):
            first = df.at[next(iter(files)), "path"]
            return [Problem(manifest_name, None, None, None,
                            f"none of its {len(files)} paths exists under the data root {root} (first: {first}); "
                            "is --root the folder the manifest's paths are relative to?")]
        for i, msg in files.items():
            if msg:
                add(i, msg)

    return [
        Problem(manifest_name, i, df.at[i, "image_id"] or None, df.at[i, "path"] or None, m)
        for i in sorted(per_row) for m in per_row[i]
    ]


FILE_NOT_FOUND = "file not found"


def resolve_image_path(path: str, root: Path) -> Path:
    """The absolute file a manifest ``path`` names (relative paths are under ``root``)."""
    p = Path(path)
    return (p if p.is_absolute() else root / p).resolve()


def file_problem(path: str, root: Path) -> str | None:
    """Why a manifest path cannot be used, or None."""
    full = resolve_image_path(path, root)
    if not full.is_relative_to(root):
        return f"path resolves outside the data root {root}"
    if not full.exists():
        return FILE_NOT_FOUND
    if full.is_dir():
        return "path is a directory, expected a DICOM file"
    return None


def load_manifest(path: str | Path, root: str | Path, use: str = "train") -> tuple[pd.DataFrame, list[Problem]]:
    """Read and validate for ``use``; an unusable manifest (unreadable, missing columns) raises InputError."""
    df = read_manifest(path)
    problems = validate_manifest(df, root, Path(path).name, use=use)
    if problems and problems[0].row is None:
        raise InputError([str(p) for p in problems])
    return df, problems

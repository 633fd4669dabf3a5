"""From localizer slices to a prescription: the first and last relevant slice of each exam and plane.

``prescribe(source, out_dir, model)`` scans a folder (:func:`knee_tf.yourdata.scan.scan_folder`) or reads a
manifest, predicts every slice through the ingest path (:func:`knee_tf.yourdata.predict.predict_manifest`),
reads each slice's geometry from its DICOM header and writes, in ``out_dir``:

* the ranges (:data:`PRESCRIPTION_COLUMNS`): one row per exam, localizer series and plane;
* every slice's p_relevant, as ``knee-tf predict`` writes it;
* the slices (:data:`SLICE_COLUMNS`) in range order, with their positions and p_relevant;
* a PNG per exam: the three planes, the other planes' ranges drawn as lines
  (:mod:`knee_tf.yourdata.prescribe_plot`);
* from a folder also the scanned manifest and ``scan_report.csv`` (every file not taken, with its reason).

Their names: :data:`knee_tf.data.layout.PRESCRIBE_FILES`.

Slice order and positions. A slice's position is ``ImagePositionPatient . n`` in mm, where ``n`` is the unit
normal ``row x column`` of its ImageOrientationPatient (DICOM LPS patient coordinates: +x left, +y posterior,
+z superior). Within a series and plane, ``index`` 0 is the slice with the lowest position; the range's
ends are given as index, image_id, SOPInstanceUID and position.

Range, gaps, confidence (per exam, series and plane; a slice is relevant where p_relevant > 0.5,
:func:`knee_tf.core.vocab.predicted_class`):

* ``first_index``/``last_index``: the first and last relevant slice; every slice between them is inside the
  range. ``gap_indices``: the slices inside the range predicted irrelevant (``n_gaps`` of them): the
  relevant slices are not contiguous there.
* ``p_inside_mean``: mean p_relevant of the slices inside the range (gaps included): high when the
  range holds no doubtful slice.
* ``boundary_margin``: the smallest ``|p_relevant - 0.5|`` over the four slices that decide the ends (the
  first and last relevant slice and their outer neighbours, where they exist); 0 means an end was a coin
  toss, 0.5 that both ends are certain. Without a relevant slice it is the margin of the most
  relevant-looking slice.
* ``edge_warning``: the range includes the localizer's first or last slice, so the joint may extend beyond
  the localizer's coverage on that side (named as a patient direction, e.g. superior).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv
from knee_tf.core.vocab import PLANES, RELEVANT, predicted_class
from knee_tf.data.ingest import default_cache_dir
from knee_tf.data.layout import PRESCRIBE_FILES
from knee_tf.data.manifest import read_manifest, resolve_image_path
from knee_tf.yourdata.predict import predict_manifest
from knee_tf.yourdata.scan import scan_folder

#: The files prescribe writes in its output folder (named in knee_tf.data.layout).
PRESCRIPTION_CSV, SLICES_CSV, PREDICTIONS_CSV, SCANNED_MANIFEST, EXAM_FIGURES = (
    PRESCRIBE_FILES[k] for k in ("ranges", "slices", "predictions", "manifest", "figures"))
#: status of a prescription row
FOUND, NOT_FOUND = "range", "no relevant slice"

PRESCRIPTION_COLUMNS: tuple[str, ...] = (
    "exam_id", "patient_id", "series_uid", "plane", "status", "n_slices", "first_index", "last_index",
    "first_image_id", "last_image_id", "first_sop_uid", "last_sop_uid", "first_pos_mm", "last_pos_mm",
    "normal_lps", "n_relevant", "n_gaps", "gap_indices", "p_inside_mean", "boundary_margin", "edge_warning",
)
SLICE_COLUMNS: tuple[str, ...] = ("exam_id", "patient_id", "series_uid", "plane", "index", "image_id", "sop_uid",
                                  "path", "pos_mm", "p_relevant")
#: the DICOM attributes each slice's geometry comes from
GEOMETRY_TAGS = ("SOPInstanceUID", "SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient",
                 "PixelSpacing", "Rows", "Columns")
#: LPS axis -> (name of the negative end, name of the positive end)
DIRECTIONS = (("right", "left"), ("anterior", "posterior"), ("inferior", "superior"))


@dataclass(frozen=True)
class SliceRange:
    """The relevant range of one ordered stack: first/last index (None when no slice is relevant) and the
    indices inside it that are not relevant (the gaps)."""

    first: int | None
    last: int | None
    gaps: tuple[int, ...]


def relevant_range(flags) -> SliceRange:
    """flags: bool (N,), the slices of one stack in position order -> its :class:`SliceRange`."""
    idx = np.flatnonzero(np.asarray(flags, dtype=bool))
    if len(idx) == 0:
        return SliceRange(None, None, ())
    first, last = int(idx[0]), int(idx[-1])
    inside = set(range(first, last + 1)) - {int(i) for i in idx}
    return SliceRange(first, last, tuple(sorted(inside)))


def edge_direction(normal, low_end: bool) -> str:
    """The patient direction (e.g. 'superior') that the low (or high) end of a stack along ``normal`` faces."""
    n = np.asarray(normal, dtype=float)
    axis = int(np.argmax(np.abs(n)))
    positive = (n[axis] > 0) != low_end
    return DIRECTIONS[axis][int(positive)]


def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if len(arr) == n and np.all(np.isfinite(arr)) else None


def read_geometry(manifest: pd.DataFrame, root: str | Path, manifest_name: str = "manifest") -> pd.DataFrame:
    """Header geometry of every manifest row, in its order: image_id, series_uid, sop_uid, pos_mm (float),
    and object columns ipp, row_dir, col_dir, normal (float (3,) each, LPS mm / unit vectors), spacing
    (float (2,): row spacing, column spacing mm), shape ((rows, columns)).

    A file without usable ImagePositionPatient, ImageOrientationPatient or PixelSpacing is an
    :class:`InputError` listing every such row (manifest line, image_id, path, what is missing)."""
    rows, problems = [], []
    for i, r in enumerate(manifest.itertuples(index=False)):
        path = resolve_image_path(r.path, Path(root))
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(GEOMETRY_TAGS))
        ipp = _floats(ds.get("ImagePositionPatient"), 3)
        iop = _floats(ds.get("ImageOrientationPatient"), 6)
        spacing = _floats(ds.get("PixelSpacing"), 2)
        normal = None if iop is None else np.cross(iop[:3], iop[3:])
        missing = [name for name, v in (("ImagePositionPatient", ipp), ("ImageOrientationPatient", iop),
                                        ("PixelSpacing", spacing)) if v is None]
        if normal is not None and np.linalg.norm(normal) < 1e-6:
            missing.append("ImageOrientationPatient (row and column parallel)")
        if missing:
            problems.append(f"{manifest_name} line {i + 2} (image_id={r.image_id}, path={r.path}): no usable "
                            f"{', '.join(missing)}: the slice's position cannot be known")
            continue
        normal = normal / np.linalg.norm(normal)
        rows.append(dict(image_id=r.image_id, series_uid=str(ds.get("SeriesInstanceUID", "")),
                         sop_uid=str(ds.get("SOPInstanceUID", "")), pos_mm=float(ipp @ normal), ipp=ipp,
                         row_dir=iop[:3], col_dir=iop[3:], normal=normal, spacing=spacing,
                         shape=(int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))))
    if problems:
        raise InputError(problems, summary=f"{len(problems)} slice(s) without geometry; prescribe needs "
                                           "each slice's position and orientation")
    return pd.DataFrame(rows)


def slice_table(manifest: pd.DataFrame, geometry: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Every slice with its geometry and p_relevant, sorted by exam, series, plane and position, with
    ``index`` (0-based rank along the normal within its exam, series and plane). ``label`` is kept where
    the manifest has it (for comparisons with the truth)."""
    keep = [c for c in ("image_id", "patient_id", "exam_id", "path", "plane", "label") if c in manifest]
    df = manifest[keep].merge(geometry, on="image_id", how="inner", validate="one_to_one")
    df = df.merge(predictions[["image_id", "p_relevant"]], on="image_id", how="inner", validate="one_to_one")
    df["p_relevant"] = df["p_relevant"].astype(float)
    df["_plane"] = df["plane"].map({p: i for i, p in enumerate(PLANES)})
    df = df.sort_values(["exam_id", "series_uid", "_plane", "pos_mm", "image_id"], kind="stable")
    df["index"] = df.groupby(["exam_id", "series_uid", "plane"]).cumcount()
    return df.drop(columns="_plane").reset_index(drop=True)


def _margin(p: np.ndarray, rng: SliceRange) -> float:
    if rng.first is None:
        return float(0.5 - p.max())
    ends = {rng.first, rng.last, rng.first - 1, rng.last + 1} & set(range(len(p)))
    return float(min(abs(p[i] - 0.5) for i in ends))


def stack_row(stack: pd.DataFrame, flags) -> dict:
    """The prescription row (:data:`PRESCRIPTION_COLUMNS`) of one exam/series/plane stack in index order;
    ``flags`` bool (N,) says which slices count as relevant (the prediction, or labels for the truth)."""
    rng = relevant_range(flags)
    p = stack["p_relevant"].to_numpy(dtype=float)
    normal = stack["normal"].iloc[0]
    row = dict(exam_id=stack["exam_id"].iloc[0], patient_id=stack["patient_id"].iloc[0],
               series_uid=stack["series_uid"].iloc[0], plane=stack["plane"].iloc[0], n_slices=len(stack),
               normal_lps=";".join(f"{round(float(v), 4) + 0.0:.4f}" for v in normal),  # no "-0.0000"
               n_relevant=int(np.sum(flags)), boundary_margin=round(_margin(p, rng), 4))
    if rng.first is None:
        return {**row, "status": NOT_FOUND, "n_gaps": 0, "gap_indices": "", "edge_warning": ""}
    first, last = stack.iloc[rng.first], stack.iloc[rng.last]
    edges = [edge_direction(normal, low) for low, hit in ((True, rng.first == 0), (False, rng.last == len(stack) - 1))
             if hit]
    warning = (f"range reaches the localizer's {' and '.join(edges)} edge: the joint may extend beyond "
               "its coverage") if edges else ""
    return {**row, "status": FOUND, "first_index": rng.first, "last_index": rng.last,
            "first_image_id": first["image_id"], "last_image_id": last["image_id"],
            "first_sop_uid": first["sop_uid"], "last_sop_uid": last["sop_uid"],
            "first_pos_mm": round(float(first["pos_mm"]), 2), "last_pos_mm": round(float(last["pos_mm"]), 2),
            "n_gaps": len(rng.gaps), "gap_indices": ";".join(map(str, rng.gaps)),
            "p_inside_mean": round(float(p[rng.first:rng.last + 1].mean()), 4), "edge_warning": warning}


def stacks(slices: pd.DataFrame):
    """(exam_id, series_uid, plane), stack: each stack's slices in index order, planes in vocabulary order."""
    order = slices.assign(_plane=slices["plane"].map({p: i for i, p in enumerate(PLANES)}))
    order = order.sort_values(["exam_id", "series_uid", "_plane", "index"], kind="stable").drop(columns="_plane")
    yield from order.groupby(["exam_id", "series_uid", "plane"], sort=False)


def prescription(slices: pd.DataFrame, truth: bool = False) -> pd.DataFrame:
    """One row per stack (:data:`PRESCRIPTION_COLUMNS`): the predicted range, or with ``truth`` the range of
    the ``label`` column (slices labelled relevant; p_relevant still gives the confidence columns)."""
    rows = []
    for _key, stack in stacks(slices):
        flags = (stack["label"] == RELEVANT).to_numpy() if truth else predicted_class(stack["p_relevant"]) == 1
        rows.append(stack_row(stack, flags))
    out = pd.DataFrame(rows, columns=list(PRESCRIPTION_COLUMNS))
    for col in ("first_index", "last_index"):
        out[col] = out[col].astype("Int64")
    return out


@dataclass
class Prescribed:
    """What :func:`prescribe` wrote: the prescription table, the slice table, the paths and, from a
    folder, the scan's result (its report lists every file not taken, with the reason)."""

    table: pd.DataFrame
    slices: pd.DataFrame
    csv: Path
    figures: list[Path]
    scan: object | None = None


def prescribe(source: str | Path, out_dir: str | Path, model, root: str | Path | None = None,
              cache_dir: str | Path | None = None, workers: int | None = None, salt_file=None, id_map=None,
              figures: bool = True, progress: bool = True) -> Prescribed:
    """Prescribe every exam of ``source`` (a folder to scan, or a manifest CSV with paths relative to
    ``root``, default the manifest's folder) with ``model`` (a loaded model or an
    :func:`knee_tf.yourdata.models.open_model` spec); write the files of the module docstring in ``out_dir``."""
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise InputError(f"{source}: no such folder or manifest (pass a DICOM folder or a manifest CSV)")
    if source.is_dir() and root is not None:
        raise InputError(f"--root {root}: only for a manifest; {source} is a folder (its own root)")
    if isinstance(model, (str, Path)):
        from knee_tf.yourdata.models import open_model  # lazy: only a spec needs loading

        model = open_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    scanned = None
    if source.is_dir():
        scanned = scan_folder(source, out_dir / SCANNED_MANIFEST, salt_file=salt_file, id_map=id_map,
                              progress=progress)
        if len(scanned.manifest) == 0:
            raise InputError(f"{source}: no knee localizer slices found ({scanned.n_files} files, every one "
                             f"listed with its reason in {scanned.report_path})")
        manifest_path, root = out_dir / SCANNED_MANIFEST, source
    else:
        manifest_path, root = source, Path(root) if root is not None else source.parent
    manifest = read_manifest(manifest_path)
    preds = predict_manifest(model, manifest_path, root, out_dir / PREDICTIONS_CSV, cache_dir=cache_dir or default_cache_dir(),
                             workers=workers)
    geometry = read_geometry(manifest, root, manifest_path.name)
    slices = slice_table(manifest, geometry, preds)
    table = prescription(slices)
    atomic_write_csv(out_dir / PRESCRIPTION_CSV, table)
    atomic_write_csv(out_dir / SLICES_CSV, slices[list(SLICE_COLUMNS)])
    paths = []
    if figures:
        from knee_tf.yourdata.prescribe_plot import (
            plot_exam,  # lazy: matplotlib only when figures are drawn
        )

        for exam in sorted(slices["exam_id"].unique()):
            paths.append(plot_exam(slices[slices["exam_id"] == exam], table[table["exam_id"] == exam], root,
                                   out_dir / EXAM_FIGURES / f"{exam}.png"))
    return Prescribed(table, slices, out_dir / PRESCRIPTION_CSV, paths, scanned)


def summarise(res: Prescribed) -> str:
    """A few lines for the terminal: stacks with a range, without one, with gaps, with an edge warning."""
    t = res.table
    lines = [f"{t['exam_id'].nunique()} exam(s), {len(t)} plane stack(s): {int((t['status'] == FOUND).sum())} "
             f"with a relevant range, {int((t['status'] == NOT_FOUND).sum())} without one, "
             f"{int((t['n_gaps'] > 0).sum())} with gaps, {int((t['edge_warning'] != '').sum())} reaching an edge"]
    if res.scan is not None and len(res.scan.report):
        counts = res.scan.report["reason"].value_counts()
        lines.append(f"not taken by scan: {len(res.scan.report)} file(s) ("
                     + ", ".join(f"{n} {r}" for r, n in counts.items()) + f"), listed in {res.scan.report_path}")
    return "\n".join(lines)

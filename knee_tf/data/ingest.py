"""Manifest -> validated, decoded, preprocessed arrays on disk (the cache every later step reads).

``ingest()`` validates the manifest (every problem, not only the first), decodes the good rows in
parallel processes, checks each file's orientation against the manifest plane, and writes

    <cache_dir>/<key>/images.npy   float32 (N, S, S, 1) in [0, 1], rows in manifest order
    <cache_dir>/<key>/index.csv    the N ingested manifest rows (+ row, line, dicom_plane)
    <cache_dir>/<key>/skipped.csv  image_id, path, line, reason  (rows not ingested)
    <cache_dir>/<key>/headers.jsonl  one line per ingested row: the source header a derived image
                                   copies (DICOM JSON, :func:`knee_tf.data.dicom_write.source_header`)
    <cache_dir>/<key>/meta.json    written last: its presence marks a complete cache

Later steps open the cache folder directly (:func:`open_cache`), without the manifest or the
DICOM files: the cache is the hand-off from notebook 01 to notebooks 02-06.

The key hashes the manifest bytes, the data root, each file's size and mtime, and the
preprocessing parameters, so any change re-ingests. The cache is built in a temporary folder and
renamed into place, so an interrupted ingest never leaves a cache that is later trusted.
Invariant: rows in the manifest = rows ingested + rows skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from knee_tf.core.errors import InputError
from knee_tf.core.vocab import encode_labels
from knee_tf.data.dicom_read import DicomError, preprocess, read_dicom_image
from knee_tf.data.dicom_write import header_from_json
from knee_tf.data.manifest import Problem, load_manifest, resolve_image_path

PREPROCESS_VERSION = 2  # bump when the cache's content changes (2: headers.jsonl)
ON_ERROR = ("fail", "skip")
#: The cache files whose bytes are the ingested data (images and index rows): what
#: :func:`knee_tf.controls.publish.data_digest` hashes.
CONTENT_FILES: tuple[str, ...] = ("images.npy", "index.csv")
#: The environment variable naming the user cache folder (:func:`default_cache_dir`).
CACHE_ENV = "KNEE_TF_CACHE"


def default_cache_dir() -> Path:
    """Where an ingest cache goes when no run folder or ``--cache`` names one: ``$KNEE_TF_CACHE``, else
    ``$XDG_CACHE_HOME/knee-tf``, else ``~/.cache/knee-tf``; never the current folder (docs/cli.md)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "knee-tf"


@dataclass
class IngestResult:
    images: np.ndarray  # float32 (N, S, S, 1) in [0, 1]; memory-mapped from the cache
    index: pd.DataFrame  # the N ingested rows, aligned with images
    skipped: pd.DataFrame  # image_id, path, line, reason
    cache_dir: Path
    from_cache: bool

    @property
    def n_rows(self) -> int:
        return len(self.index) + len(self.skipped)

    def select(self, mask) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """(images float32 (n, S, S, 1), labels int32 (n,), index rows) for a boolean row mask."""
        m = np.asarray(mask, dtype=bool)
        idx = self.index[m].reset_index(drop=True)
        return read_rows(self.images, np.flatnonzero(m)), encode_labels(idx["label"]), idx

    def split(self, name: str, cohort: str | None = None):
        """Images, labels and rows of one split (optionally one cohort, e.g. 'normal' or 'metal')."""
        m = self.index["split"] == name
        if cohort is not None and "cohort" in self.index:
            m &= self.index["cohort"] == cohort
        return self.select(m)

    def source_headers(self, image_ids) -> dict:
        """{image_id: pydicom Dataset} of the source headers cached for ``image_ids`` (no DICOM file is read)."""
        wanted = {str(i) for i in image_ids}
        out = {}
        with open(self.cache_dir / "headers.jsonl", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                if rec["image_id"] in wanted:
                    out[rec["image_id"]] = header_from_json(rec["header"])
        missing = sorted(wanted - set(out))
        if missing:
            raise InputError(f"{self.cache_dir}: no cached header for image id(s) {', '.join(missing[:5])}")
        return out


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` as an in-memory array.

    For a memory-mapped cache the rows are read with plain file reads, one per contiguous run, so
    the process does not also keep the mapped pages resident (with memory mapping, RSS counted each
    selected image twice: the page cache mapping and the copy).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if not isinstance(images, np.memmap) or images.filename is None or len(rows) == 0:
        return np.asarray(images[rows])
    out = np.empty((len(rows),) + images.shape[1:], dtype=images.dtype)
    row_bytes = int(np.prod(images.shape[1:])) * images.dtype.itemsize
    flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), row_bytes)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    with open(images.filename, "rb") as f:
        for run in np.split(np.arange(len(rows)), breaks):
            if run.size:
                f.seek(images.offset + int(rows[run[0]]) * row_bytes)
                f.readinto(memoryview(flat[run[0]:run[-1] + 1]).cast("B"))
    return out


def _decode_row(args: tuple) -> tuple[int, np.ndarray | None, str | None, str | None, dict | None]:
    """Worker: (row, path, frame, size) -> (row, image (S, S) or None, error or None, dicom plane,
    source header (DICOM JSON) or None)."""
    i, path, frame, size = args
    try:
        im = read_dicom_image(path, frame)
        return i, preprocess(im.pixels, size, im.pixel_spacing), None, im.plane, im.source
    except DicomError as e:
        return i, None, str(e), None, None
    except Exception as e:  # noqa: BLE001 - any decoder crash becomes a per-row report, never a lost row
        return i, None, f"cannot decode ({type(e).__name__}: {e})".splitlines()[0], None, None


def cache_key(manifest_bytes: bytes, root: Path, df: pd.DataFrame, image_size: int) -> str:
    h = hashlib.sha256()
    h.update(manifest_bytes)
    h.update(f"\0root={root}\0size={image_size}\0v={PREPROCESS_VERSION}\0".encode())
    for p in df["path"]:
        full = resolve_image_path(p, root) if p else None
        try:
            st = full.stat() if full else None
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode() if st else f"{p}:-\n".encode())
        except OSError:
            h.update(f"{p}:-\n".encode())
    return h.hexdigest()[:20]


def _frame(df: pd.DataFrame, i: int) -> int | None:
    if "frame" not in df.columns:
        return None
    v = str(df.at[i, "frame"]).strip()
    return int(v) if v.isdigit() else None


def open_cache(cache_dir: str | Path) -> IngestResult:
    """The IngestResult of a finished ingest, read from its cache folder (``<cache_dir>/<key>``) alone.

    Raises InputError when the folder is not a complete cache (e.g. deleted, or written by an older
    version of knee_tf: run notebook 01 / ``knee-tf ingest`` again).
    """
    d = Path(cache_dir)
    meta = d / "meta.json"
    if not meta.exists():
        raise InputError(f"{d}: not a complete ingest cache (no meta.json); run notebook 01 again")
    if json.loads(meta.read_text()).get("preprocess_version") != PREPROCESS_VERSION:
        raise InputError(f"{d}: ingest cache of another knee_tf version; run notebook 01 again")
    return _load_cache(d)


def _load_cache(d: Path) -> IngestResult:
    images = np.load(d / "images.npy", mmap_mode="r")
    index = pd.read_csv(d / "index.csv", dtype=str, keep_default_na=False)
    skipped = pd.read_csv(d / "skipped.csv", dtype=str, keep_default_na=False)
    return IngestResult(images, index, skipped, d, from_cache=True)


def _raise_if_failing(problems: list[str], n_rows: int) -> None:
    if problems:
        raise InputError(problems, summary=f"{len(problems)} problem(s) in {n_rows} manifest rows "
                                           "(use --on-error skip to ingest the good rows)")


def ingest(manifest: str | Path, root: str | Path, cache_dir: str | Path | None = None, image_size: int = 128,
           on_error: str = "fail", workers: int | None = None, progress: bool = True,
           use: str = "train") -> IngestResult:
    """Validate, decode and cache every row of ``manifest`` (paths relative to ``root``).

    on_error='fail' raises :class:`InputError` listing every bad row (nothing cached);
    on_error='skip' ingests the good rows and records the others in ``skipped.csv``.
    workers: decoding processes (None or 0 = all cores; 1 = in this process).
    use: what the manifest is for (:data:`knee_tf.data.manifest.USES`; ``predict`` needs no label/split).
    cache_dir None: :func:`default_cache_dir`.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    manifest, root = Path(manifest), Path(root).resolve()
    if not root.is_dir():
        raise InputError(f"{root}: data root is not a directory")
    df, problems = load_manifest(manifest, root, use=use)
    key = cache_key(manifest.read_bytes(), root, df, image_size)
    if use != "train":  # validation differs per use, and so may the skipped rows
        key = f"{key}-{use}"
    final = Path(cache_dir if cache_dir is not None else default_cache_dir()).resolve() / key
    if (final / "meta.json").exists():
        res = _load_cache(final)
        if on_error == "fail" and len(res.skipped):
            _raise_if_failing([f"{manifest.name} line {r.line} (image_id={r.image_id}, path={r.path}): {r.reason}"
                               for r in res.skipped.itertuples()], len(df))
        return res

    bad: dict[int, list[str]] = {}
    for p in problems:
        bad.setdefault(p.row, []).append(str(p))
    todo = [(i, str(resolve_image_path(df.at[i, "path"], root)), _frame(df, i), image_size)
            for i in df.index if i not in bad]
    images = np.zeros((len(df), image_size, image_size), dtype=np.float32)
    dicom_plane = [""] * len(df)
    headers: list[dict | None] = [None] * len(df)
    n_workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(todo), desc="decode DICOM", unit="img", disable=not progress)
    if n_workers == 1 or len(todo) < 2 * n_workers:
        results = map(_decode_row, todo)
        pool = None
    else:
        pool = ProcessPoolExecutor(n_workers, mp_context=get_context("spawn"))
        results = pool.map(_decode_row, todo, chunksize=max(1, min(64, len(todo) // (8 * n_workers))))
    try:
        for i, img, err, plane, header in results:
            bar.update()
            row = df.loc[i]
            if err is None and plane is not None and plane != row["plane"]:
                err = f"manifest plane {row['plane']!r} but ImageOrientationPatient says {plane!r}"
            if err is not None:
                bad.setdefault(i, []).append(str(Problem(manifest.name, i, row["image_id"], row["path"], err)))
            else:
                images[i] = img
                dicom_plane[i] = plane or ""
                headers[i] = header
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()

    lines = [m for i in sorted(bad) for m in bad[i]]
    if on_error == "fail":
        _raise_if_failing(lines, len(df))
    ok = np.array([i not in bad for i in df.index])
    index = df[ok].copy()
    index.insert(0, "line", (index.index + 2).astype(str))
    index["dicom_plane"] = [dicom_plane[i] for i in index.index]
    skipped = pd.DataFrame(
        [{"image_id": df.at[i, "image_id"], "path": df.at[i, "path"], "line": i + 2,
          "reason": "; ".join(m.split(": ", 1)[1] if ": " in m else m for m in bad[i])} for i in sorted(bad)],
        columns=["image_id", "path", "line", "reason"])
    kept = images if ok.all() else images[ok]  # no copy of the decoded images when every row is kept
    del images
    _write_cache(final, kept[..., None], index.reset_index(drop=True), skipped,
                 [{"image_id": df.at[i, "image_id"], "header": headers[i]} for i in index.index],
                 {"manifest": str(manifest.resolve()), "root": str(root), "image_size": image_size,
                  "n_rows": len(df), "n_ingested": int(ok.sum()), "n_skipped": len(skipped),
                  "preprocess_version": PREPROCESS_VERSION})
    res = _load_cache(final)
    res.from_cache = False
    return res


def _write_cache(final: Path, images: np.ndarray, index: pd.DataFrame, skipped: pd.DataFrame, headers: list[dict],
                 meta: dict) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        np.save(tmp / "images.npy", np.asarray(images, dtype=np.float32), allow_pickle=False)  # no float32 copy
        index.to_csv(tmp / "index.csv", index=False, lineterminator="\n")
        skipped.to_csv(tmp / "skipped.csv", index=False, lineterminator="\n")
        with open(tmp / "headers.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(h, separators=(",", ":")) + "\n" for h in headers)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: marks completeness
        if final.exists():  # an incomplete folder from another run; replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def summary_table(index: pd.DataFrame, by=("split", "plane", "label", "site")) -> pd.DataFrame:
    """Row counts by split x plane x label (x site when the manifest has it), with totals."""
    cols = [c for c in by if c in index.columns]
    rows = [c for c in cols if c != "site"]
    if "site" in cols:
        t = pd.crosstab([index[c] for c in rows], index["site"], margins=True, margins_name="total")
    else:
        t = index.groupby(rows).size().to_frame("n")
    return t

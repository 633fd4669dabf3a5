"""The PACS round trip over DICOMweb (``dicomweb-client``): pull studies in, push results back.

- :func:`pull` finds studies with QIDO-RS (by StudyInstanceUID, PatientID or a StudyDate range) and
  retrieves every instance with WADO-RS into ``out/<study>/<series>/<instance>.dcm`` (atomically;
  files already there are not fetched again, so an interrupted pull resumes);
- :func:`push_model` predicts with one model, computes its Grad-CAM maps, and stores with STOW-RS,
  per source study, one new Secondary Capture series (the map blended over each slice, each
  referencing its source image, the relevance in the series description and per image) plus a Key
  Object Selection listing the slices called relevant. UIDs are deterministic and instances already
  in the PACS are skipped, so a retry never stores anything twice.

Every network failure (bad URL, refused connection, HTTP error, partial transfer) becomes one
:class:`~knee_tf.core.errors.InputError` line naming the URL and what was being done.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pydicom
from tqdm.auto import tqdm

from knee_tf.core.cam import compute_cams, upsample_align_corners
from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_path
from knee_tf.core.model import load_model
from knee_tf.core.vocab import CLASSES, RELEVANT, STUDY_MODELS, predicted_class
from knee_tf.data.dicom_read import preprocess, read_dicom_image
from knee_tf.data.ingest import ingest, read_rows
from knee_tf.data.layout import RunLayout
from knee_tf.data.manifest import resolve_image_path
from knee_tf.study.config import resolve
from knee_tf.study.pipeline import open_run
from knee_tf.yourdata.overlay import (
    blend,
    derived_uid,
    overlay_secondary_capture,
    relevant_slices_kos,
)

SOP_INSTANCE_UID, SERIES_INSTANCE_UID, STUDY_INSTANCE_UID = "00080018", "0020000E", "0020000D"
STOW_BATCH = 16  # instances per STOW-RS request
SC_SERIES_NUMBER = 9900  # overlay series numbers: 9900 + model index (after the source series)
KOS_SERIES_OFFSET = 100  # its KOS: 10000 + model index


def _value(item: dict, tag: str) -> str:
    v = item.get(tag, {}).get("Value", [""])
    return str(v[0]) if v else ""


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


@contextmanager
def _network(url: str, what: str):
    """Turn requests' exceptions into one-line InputErrors naming ``url`` and ``what``."""
    import requests  # lazy: PACS only

    try:
        yield
    except requests.exceptions.HTTPError as e:
        resp = e.response
        code = f"HTTP {resp.status_code} {resp.reason}" if resp is not None else _short(e)
        raise InputError(f"{url}: {what} failed: {code}") from None
    except requests.exceptions.ConnectionError as e:
        reason = "connection refused" if "refused" in str(e).lower() else _short(e)
        raise InputError(f"{url}: cannot connect while trying to {what} ({reason}); is the PACS running "
                         "and the URL right?") from None
    except requests.exceptions.Timeout:
        raise InputError(f"{url}: no answer in time while trying to {what}") from None
    except requests.exceptions.RequestException as e:
        raise InputError(f"{url}: {what} failed: {_short(e)}") from None


def connect(url: str, timeout: float = 30.0):
    """A ``DICOMwebClient`` for ``url`` (the DICOMweb root, e.g. http://host:8042/dicom-web)."""
    from dicomweb_client.api import DICOMwebClient  # lazy: optional: only to talk to a PACS

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{url!r}: not a DICOMweb URL (expected http(s)://host[:port]/path)")
    client = DICOMwebClient(url.rstrip("/"), timeout=timeout)
    # dicomweb-client retries every failed request 5 times with exponential back-off (~30 s before a
    # refused connection is reported); 3 tries 0.5 s and 1 s apart still ride out a busy PACS
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
    return client


def _date_filter(since: str) -> str:
    digits = since.replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise InputError(f"--since {since!r}: expected a date YYYY-MM-DD or YYYYMMDD")
    return f"{digits}-"


@dataclass
class PullStats:
    studies: int
    instances: int  # retrieved now
    skipped: int  # already in the folder


def pull(url: str, out_dir: str | Path, study: str | None = None, patient: str | None = None,
         since: str | None = None, progress: bool = True) -> PullStats:
    """Retrieve the matching studies' instances into ``out_dir`` (exactly one of study/patient/since).

    Files are ``out_dir/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``, written atomically; an
    instance whose file exists is not fetched again. Raises InputError when nothing matches or a
    transfer fails (the message says how far it got; re-running continues from there).
    """
    if sum(x is not None for x in (study, patient, since)) != 1:
        raise InputError("pull: give exactly one of --study, --patient, --since")
    client = connect(url)
    filters = ({"StudyInstanceUID": study} if study else {"PatientID": patient} if patient
               else {"StudyDate": _date_filter(since)})
    with _network(url, "query studies (QIDO-RS)"):
        studies = [_value(s, STUDY_INSTANCE_UID) for s in client.search_for_studies(search_filters=filters,
                                                                                   get_remaining=True)]
    if not studies:
        raise InputError(f"{url}: no study matches {filters}")
    out = Path(out_dir)
    got = skipped = 0
    for s in studies:
        with _network(url, f"list the instances of study {s} (QIDO-RS)"):
            items = client.search_for_instances(study_instance_uid=s, get_remaining=True)
        todo = []
        for it in items:
            series, sop = _value(it, SERIES_INSTANCE_UID), _value(it, SOP_INSTANCE_UID)
            target = out / s / series / f"{sop}.dcm"
            if target.exists():
                skipped += 1
            else:
                todo.append((series, sop, target))
        for k, (series, sop, target) in enumerate(tqdm(todo, desc=f"retrieve {s[-12:]}", unit="file",
                                                       disable=not progress)):
            try:
                with _network(url, f"retrieve instance {sop} (WADO-RS)"):
                    ds = client.retrieve_instance(s, series, sop)
            except InputError as e:
                raise InputError(f"{e.problems[0]}; transfer stopped after {k} of {len(todo)} new instances of "
                                 f"study {s}: run the same pull again to fetch the rest") from None
            with atomic_path(target) as tmp:
                ds.save_as(tmp, enforce_file_format=True)
            got += 1
    return PullStats(len(studies), got, skipped)


def _stored_sops(client, url: str, study: str, series: str) -> set[str]:
    with _network(url, f"query series {series} (QIDO-RS)"):
        items = client.search_for_instances(study_instance_uid=study, series_instance_uid=series, get_remaining=True)
    return {_value(i, SOP_INSTANCE_UID) for i in items}


def store_new(client, url: str, study: str, datasets: list) -> tuple[int, int]:
    """STOW-RS the datasets (one series each call's worth) that the PACS does not hold yet.

    Returns (stored now, already there). A response listing failed instances raises InputError.
    """
    stored, there = 0, 0
    by_series: dict[str, list] = {}
    for ds in datasets:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    for series, group in by_series.items():
        have = _stored_sops(client, url, study, series)
        new = [d for d in group if str(d.SOPInstanceUID) not in have]
        there += len(group) - len(new)
        for i in range(0, len(new), STOW_BATCH):
            batch = new[i:i + STOW_BATCH]
            with _network(url, f"store {len(batch)} instances in study {study} (STOW-RS)"):
                resp = client.store_instances(batch, study_instance_uid=study)
            failed = resp.get("FailedSOPSequence") if resp is not None else None
            if failed:
                raise InputError(f"{url}: the PACS refused {len(failed)} of {len(batch)} instances in study {study} "
                                 f"(stored before: {stored}); re-run to retry, stored ones are skipped")
            stored += len(batch)
    return stored, there


def model_digest(path: str | Path) -> str:
    """First 16 hex digits of the model file's SHA-256: a retrained model gets new series UIDs."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def push_model(client, url: str, model_path: str | Path, manifest: str | Path, root: str | Path, name: str,
               series_number: int = SC_SERIES_NUMBER, layer: str = "pool4", cache_dir: str | Path = "data/cache",
               progress: bool = True) -> list[str]:
    """Predict the manifest's images with one model and push overlays + a KOS per source study.

    The Grad-CAM (``layer``) explains the predicted class. The overlay shows the slice as the model
    saw it (intensity-normalised, padded to a square) at the source's resolution (at least 256
    pixels), with the map upsampled onto it. Returns one summary line per study.
    """
    model = load_model(model_path)
    size = int(model.input_shape[1])
    data = ingest(manifest, root, cache_dir=cache_dir, image_size=size, use="predict", progress=progress)
    images = read_rows(data.images, np.arange(len(data.index)))
    cams = compute_cams(model, images, layers=(layer,), methods=("gradcam",), progress=progress)
    p_rel = cams.probabilities[:, CLASSES.index(RELEVANT)]
    predicted = np.asarray(CLASSES)[predicted_class(p_rel)]
    maps = cams.select("gradcam", layer)
    digest = model_digest(model_path)
    root = Path(root).resolve()
    files = [resolve_image_path(p, root) for p in data.index["path"]]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]

    def overlay(i: int) -> np.ndarray:
        src = read_dicom_image(files[i])
        n = max(256, *src.pixels.shape)
        return blend(preprocess(src.pixels, n, src.pixel_spacing), upsample_align_corners(maps[i][None], (n, n))[0])

    lines = []
    for study in sorted({str(h.StudyInstanceUID) for h in headers}):
        rows = [i for i, h in enumerate(headers) if str(h.StudyInstanceUID) == study]
        n_rel = int(sum(predicted[i] == RELEVANT for i in rows))
        series = derived_uid("overlay", study, digest)
        desc = f"{name} Grad-CAM: {n_rel}/{len(rows)} relevant"
        objs = [overlay_secondary_capture(headers[i], overlay(i), series, series_number, desc,
                                          float(p_rel[i]), str(predicted[i]), name) for i in rows]
        if n_rel:
            objs.append(relevant_slices_kos([headers[i] for i in rows], [predicted[i] == RELEVANT for i in rows],
                                            derived_uid("kos", study, digest), series_number + KOS_SERIES_OFFSET,
                                            name))
        stored, there = store_new(client, url, study, objs)
        lines.append(f"{name}: study {study}: {len(rows)} overlays{' + KOS' if n_rel else ''}, "
                     f"{n_rel} relevant; stored {stored} new, {there} already there")
    return lines


def push_run(url: str, run_dir: str | Path, manifest: str | Path | None = None, root: str | Path | None = None,
             models: tuple[str, ...] = STUDY_MODELS, progress: bool = True) -> list[str]:
    """Push every (model, seed) of a study run: the run's config names the manifest and data root
    unless ``manifest``/``root`` are given. Models are found through the run folder's layout."""
    run_dir = Path(run_dir)
    if not RunLayout(run_dir).config.exists():
        raise InputError(f"{run_dir}: not a run folder (no {RunLayout(run_dir).config.name}); give the folder `knee-tf study` wrote")
    run = open_run(run_dir)
    manifest = Path(manifest) if manifest else run.config.manifest_path
    root = Path(root) if root else resolve(run.config.data_root)
    client = connect(url)
    lines, k = [], 0
    for which in models:
        for seed in run.seeds:
            try:
                path = run.layout.model(which, seed)
            except ValueError as e:
                raise InputError(f"--models {which!r}: {e}") from None
            if not path.exists():
                raise InputError(f"{path}: model missing from the run; finish `knee-tf study` first")
            lines += push_model(client, url, path, manifest, root, f"Model {which} seed {seed}",
                                series_number=SC_SERIES_NUMBER + k, layer=run.config.aug_layer,
                                cache_dir=resolve(run.config.cache_dir), progress=progress)
            k += 1
    return lines

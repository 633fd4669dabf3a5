"""The PACS round trip over DICOMweb (``dicomweb-client``): pull studies in, push results back.

- :func:`pull` finds studies with QIDO-RS (by StudyInstanceUID, PatientID or a StudyDate range) and
  retrieves every instance with WADO-RS into ``out/<study>/<series>/<instance>.dcm`` (atomically;
  files already there are not fetched again, so an interrupted pull resumes), a few at a time from
  a small pool of threads, with a progress bar over studies;
- :func:`push_run` predicts with each model of a run, computes its Grad-CAM maps
  (:mod:`knee_tf.yourdata.run_overlays`), and stores with STOW-RS, per source study, one new Secondary Capture series (the map blended over each slice, each
  referencing its source image, the relevance in the series description and per image) plus a Key
  Object Selection listing the slices called relevant. UIDs are deterministic and instances already
  in the PACS are skipped, so a retry never stores anything twice.

Credentials and TLS come with a :class:`~knee_tf.yourdata.pacs_auth.PacsAuth`. Every network failure
(bad URL, wrong password, untrusted certificate, refused connection, HTTP error, partial transfer)
becomes one :class:`~knee_tf.core.errors.InputError` line naming the URL and what to fix, never a secret.
"""

from __future__ import annotations

import threading
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm.auto import tqdm

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_path
from knee_tf.core.vocab import STUDY_MODELS
from knee_tf.yourdata.pacs_auth import PacsAuth
from knee_tf.yourdata.run_overlays import open_study_run, run_inputs, run_models, study_objects

SOP_INSTANCE_UID, SERIES_INSTANCE_UID, STUDY_INSTANCE_UID = "00080018", "0020000E", "0020000D"
STOW_BATCH = 16  # instances per STOW-RS request
PULL_WORKERS = 4  # WADO-RS retrievals at once: a few overlap the round trips without crowding a PACS
IN_FLIGHT_PER_WORKER = 4  # retrievals queued per worker, so a failure stops the pull soon


def _value(item: dict, tag: str) -> str:
    v = item.get(tag, {}).get("Value", [""])
    return str(v[0]) if v else ""


@contextmanager
def _network(pacs: PacsAuth, what: str):
    """Turn requests' exceptions into one-line InputErrors naming the URL and ``what`` (never a secret)."""
    try:
        yield
    except requests.exceptions.RequestException as e:
        raise InputError(pacs.explain(e, what)) from None


def as_pacs(pacs: str | PacsAuth) -> PacsAuth:
    """``pacs`` itself, or a URL's settings without credentials."""
    return pacs if isinstance(pacs, PacsAuth) else PacsAuth(pacs)


def connect(pacs: str | PacsAuth, timeout: float = 30.0, session: requests.Session | None = None):
    """A ``DICOMwebClient`` for the DICOMweb root (e.g. https://host/dicom-web) with ``pacs``'s
    credentials and TLS settings, on ``session`` (default: a new one; one per thread)."""
    from dicomweb_client.api import DICOMwebClient  # lazy: optional: only to talk to a PACS

    pacs = as_pacs(pacs)
    client = DICOMwebClient(pacs.url.rstrip("/"), session=session or pacs.session(), timeout=timeout)
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


class _Retriever:
    """WADO-RS retrievals into files: in the calling thread (``workers`` 0) or in a pool of
    ``workers`` threads, each with its own client, at most ``IN_FLIGHT_PER_WORKER * workers``
    queued. ``on_study_done`` is called (in the calling thread) as each study's last file lands."""

    def __init__(self, pacs: PacsAuth, workers: int, on_study_done):
        self.pacs, self.on_study_done = pacs, on_study_done
        self.got = 0
        self._local = threading.local()
        self._sessions: list = []
        self._left: dict[str, int] = {}
        self._pending: dict[Future, str] = {}
        self._limit = IN_FLIGHT_PER_WORKER * workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="knee-tf-pull") if workers else None

    def _fetch(self, study: str, series: str, sop: str, target: Path) -> None:
        client = getattr(self._local, "client", None)
        if client is None:
            session = self.pacs.session()
            self._sessions.append(session)  # list.append is atomic; closed in close()
            client = self._local.client = connect(self.pacs, session=session)
        with _network(self.pacs, f"retrieve instance {sop} (WADO-RS)"):
            ds = client.retrieve_instance(study, series, sop)
        with atomic_path(target) as tmp:
            ds.save_as(tmp, enforce_file_format=True)

    def _landed(self, study: str) -> None:
        self.got += 1
        self._left[study] -= 1
        if not self._left[study]:
            self.on_study_done()

    def add(self, study: str, todo: list[tuple[str, str, Path]]) -> None:
        """Retrieve ``todo`` (series, sop, target) of ``study``; raises the first failure."""
        self._left[study] = len(todo)
        if not todo:
            self.on_study_done()
        for job in todo:
            if self._pool is None:
                self._fetch(study, *job)
                self._landed(study)
                continue
            while len(self._pending) >= self._limit:
                self._settle(FIRST_COMPLETED)
            self._pending[self._pool.submit(self._fetch, study, *job)] = study

    def _settle(self, until) -> None:
        done, _ = wait(self._pending, return_when=until)
        error = None
        for f in done:
            study = self._pending.pop(f)
            if f.exception() is None:
                self._landed(study)
            elif error is None:
                error = f.exception()
        if error is not None:
            self._stop()
            raise error

    def _stop(self) -> None:
        """Drop what has not started; let the running retrievals finish (and count them)."""
        for f in list(self._pending):
            if f.cancel():
                del self._pending[f]
        done, _ = wait(self._pending)
        for f in done:
            study = self._pending.pop(f)
            if f.exception() is None:
                self._landed(study)

    def finish(self) -> None:
        if self._pending:
            self._settle(ALL_COMPLETED)

    def close(self) -> None:
        if self._pool is not None:
            self._stop()  # an interrupt (Ctrl-C) lands here with retrievals in flight
            self._pool.shutdown()
        for s in self._sessions:
            s.close()


def pull(pacs: str | PacsAuth, out_dir: str | Path, study: str | None = None, patient: str | None = None,
         since: str | None = None, progress: bool = True, workers: int = PULL_WORKERS) -> PullStats:
    """Retrieve the matching studies' instances into ``out_dir`` (exactly one of study/patient/since).

    ``pacs``: a DICOMweb root URL (no credentials) or a :class:`PacsAuth`. Files are
    ``out_dir/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``, written atomically; an instance whose
    file exists is not fetched again. ``workers`` threads retrieve at once (0: one at a time, in
    this thread); the progress bar counts studies. Raises InputError when nothing matches or a
    transfer fails (the message says how far it got; re-running continues from there).
    """
    if sum(x is not None for x in (study, patient, since)) != 1:
        raise InputError("pull: give exactly one of --study, --patient, --since")
    if workers < 0:
        raise InputError(f"--workers {workers}: expected 0 (one retrieval at a time) or more")
    filters = ({"StudyInstanceUID": study} if study else {"PatientID": patient} if patient
               else {"StudyDate": _date_filter(since)})
    pacs = as_pacs(pacs)
    with pacs.session() as session:
        return _retrieve_matching(connect(pacs, session=session), pacs, filters, Path(out_dir), progress, workers)


def _retrieve_matching(client, pacs: PacsAuth, filters: dict, out: Path, progress: bool, workers: int) -> PullStats:
    with _network(pacs, "query studies (QIDO-RS)"):
        studies = [_value(s, STUDY_INSTANCE_UID) for s in client.search_for_studies(search_filters=filters,
                                                                                   get_remaining=True)]
    if not studies:
        raise InputError(f"{pacs.url}: no study matches {filters}")
    skipped = 0
    bar = tqdm(total=len(studies), desc="pull", unit="study", disable=not progress)
    retriever = _Retriever(pacs, workers, on_study_done=lambda: bar.update(1))
    try:
        for s in studies:
            with _network(pacs, f"list the instances of study {s} (QIDO-RS)"):
                items = client.search_for_instances(study_instance_uid=s, get_remaining=True)
            todo = []
            for it in items:
                series, sop = _value(it, SERIES_INSTANCE_UID), _value(it, SOP_INSTANCE_UID)
                target = out / s / series / f"{sop}.dcm"
                if target.exists():
                    skipped += 1
                else:
                    todo.append((series, sop, target))
            retriever.add(s, todo)
        retriever.finish()
    except InputError as e:
        raise InputError(f"{e.problems[0]}; stopped after retrieving {retriever.got} new instances "
                         f"({skipped} were already there): run the same pull again to fetch the rest") from None
    finally:
        retriever.close()
        bar.close()
    return PullStats(len(studies), retriever.got, skipped)


def _stored_sops(client, pacs: PacsAuth, study: str, series: str) -> set[str]:
    with _network(pacs, f"query series {series} (QIDO-RS)"):
        items = client.search_for_instances(study_instance_uid=study, series_instance_uid=series, get_remaining=True)
    return {_value(i, SOP_INSTANCE_UID) for i in items}


def store_new(client, pacs: PacsAuth, study: str, datasets: list) -> tuple[int, int]:
    """STOW-RS the datasets (one series each call's worth) that the PACS does not hold yet.

    Returns (stored now, already there). A response listing failed instances raises InputError.
    """
    stored, there = 0, 0
    by_series: dict[str, list] = {}
    for ds in datasets:
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    for series, group in by_series.items():
        have = _stored_sops(client, pacs, study, series)
        new = [d for d in group if str(d.SOPInstanceUID) not in have]
        there += len(group) - len(new)
        for i in range(0, len(new), STOW_BATCH):
            batch = new[i:i + STOW_BATCH]
            with _network(pacs, f"store {len(batch)} instances in study {study} (STOW-RS)"):
                resp = client.store_instances(batch, study_instance_uid=study)
            failed = resp.get("FailedSOPSequence") if resp is not None else None
            if failed:
                raise InputError(f"{pacs.url}: the PACS refused {len(failed)} of {len(batch)} instances in study {study} "
                                 f"(stored before: {stored}); re-run to retry, stored ones are skipped")
            stored += len(batch)
    return stored, there


def push_run(pacs: str | PacsAuth, run_dir: str | Path, manifest: str | Path | None = None, root: str | Path | None = None,
             models: tuple[str, ...] = STUDY_MODELS, progress: bool = True, cache_dir: str | Path | None = None) -> list[str]:
    """Push every (arm, seed) model of a study run (``models``: its arms): per source study, the
    overlays and KOS of :func:`knee_tf.yourdata.run_overlays.study_objects`. The run's config names the
    manifest, data root and ingest cache unless given. The run's models are checked, and the PACS
    asked once, before any prediction or Grad-CAM is computed. Returns one line per model and study."""
    run = open_study_run(run_dir)
    todo = run_models(run, models)
    manifest, root, cache_dir = run_inputs(run, manifest, root, cache_dir)
    pacs = as_pacs(pacs)
    client = connect(pacs)
    with _network(pacs, "query studies (QIDO-RS)"):  # a wrong URL or password fails now, not after the predictions
        client.search_for_studies(limit=1)
    lines = []
    for model in todo:
        for group in study_objects(model, manifest, root, cache_dir, layer=run.config.aug_layer, progress=progress):
            stored, there = store_new(client, pacs, group.study, group.objects)
            lines.append(f"{model.name}: study {group.study}: {group.n_images} overlays"
                         f"{' + KOS' if group.n_relevant else ''}, {group.n_relevant} relevant; "
                         f"stored {stored} new, {there} already there")
    return lines

"""Publishing grid jobs into the repository as they finish, so that a grid advances across sessions.

A session's run folder does not survive it; what is committed does. ``run_grid(..., publish_to=...)``
(``knee-tf grid --publish``) copies each finished job's compact results from its complete run-folder
copy into the published grid (:class:`knee_tf.data.layout.PublishedGrid`, ``results/grid/``), one
folder per job moved into place whole (:func:`knee_tf.core.io.atomic_dir`):

* ``predictions.parquet``: the job's rows in the prediction store's schema
  (:data:`knee_tf.controls.prediction_store.STORE_COLUMNS`: every cohort the job scores, held-out corruption
  rows included; zstd, categorical strings, float32 probabilities);
* ``training_log.csv``: its per-epoch log;
* ``job.json``: the run folder's record plus :func:`provenance`: the job's result-relevant settings and
  their digest, the digest of the ingested data's content, the ingest cache key and the code commit.

No model file is published: a default ``model.keras`` (saved with the optimizer's state) is about
20 times one job's published predictions (``bench/published_size.py``, ``bench/logs/published_size.txt``),
and the full grid has 31 Model A jobs. A later session retrains the Model A a pending job needs,
with the same seed and therefore the same weights, and :func:`check_retrained` requires its
predictions to equal the published ones byte for byte.

A later grid skips every job published with the same settings digest and data digest
(:func:`published_status`), and refuses, in one line naming the job and what differs, one published
with other settings or data (``--republish`` retrains and replaces it). A job trained from a tree with
uncommitted changes (its record's code commit ends with ``+dirty``) is never published
(:func:`dirty_error`): the grid refuses before training, and :func:`publish_job` refuses such a
record. Jobs published before that rule keep their records; :func:`published_jobs` flags them.

Two cohorts need other jobs' models: ``cam_transfer`` (the maps of the independently trained Model A)
and ``cam_b`` (the maps of the plain B of the job's seed). Once a job's model, B of its seed and the
transfer Model A are in one run folder, each of them the published one (:func:`check_retrained`), the
job's predictions on those cohorts are added to its folder (:func:`publish_cross`, ``cross_predictions.parquet`` and
``cross.json``, which names the jobs whose maps made the cohorts and their settings digests). The
grid does this as the models come together (:mod:`knee_tf.controls.grid_publisher`); a seed whose models were lost
with an earlier session's run folder is trained again into a run folder without ``--publish``, and a
later ``--publish`` checks each model against its published predictions before adding the cohorts.

The prediction store is rebuilt from the published jobs at any time (:func:`rebuild_store`), and the
tables from a partial grid say how many seeds each arm has against how many the plan asks for
(:func:`completeness`; :mod:`knee_tf.controls.summary` puts ``n_seeds_planned`` beside ``n_seeds``).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from knee_tf.controls.prediction_store import STORE_COLUMNS, store_frame, write_store
from knee_tf.core.io import atomic_dir, atomic_write_bytes, atomic_write_text
from knee_tf.core.precision import resolve_precision
from knee_tf.data.ingest import CONTENT_FILES
from knee_tf.data.layout import PublishedGrid, RunLayout
from knee_tf.study.config import REPO_ROOT, StudyConfig

#: StudyConfig fields that cannot change one job's results: paths, where and how the grid runs, what
#: the plan and the later analysis do, and the synthetic data's knobs (the data digest covers the data).
#: Every other field (the job's resolved precision, its training, map, cohort and corruption settings
#: and its overrides) is in the settings digest.
NON_RESULT_FIELDS: frozenset[str] = frozenset({
    "name", "data_root", "manifest", "cache_dir", "workers", "on_error", "scheduler", "grid_workers",
    "n_exams", "synth_seed", "synth_matrix", "metal_fraction", "synth_texture", "synth_snr_scale",
    "synth_hard_share", "synth_annotator_spread", "synth_quality_shift_mm", "synth_ghost_probability", "synth_appearance",
    "seed", "n_seeds", "n_seeds_other", "grid_arms", "learning_curve_exams", "transfer_seed",
    "reveal_answers", "n_bootstrap", "n_bootstrap_effects", "ece_bins", "n_figure3_per_cohort", "n_faithfulness",
    "faithfulness_steps", "n_premise", "n_dicom_export", "cam_layers", "publish_grid_as",
})
#: Fields that change a job's results only while the first is set (non-zero): the cam_hard cohort's mask,
#: made only when ``cam_hard_weight`` > 0. Left out of the settings digest while it is 0, so a config that
#: makes no cam_hard cohort digests as before the cohort existed.
WHILE_SET: dict[str, tuple[str, ...]] = {"cam_hard_weight": ("cam_hard_weight", "cam_hard_smooth_sigma",
                                                             "cam_hard_threshold")}


def job_settings(settings: StudyConfig) -> dict:
    """The fields of a job's settings (``job.settings(cfg)``) that can change its results, as JSON
    values; ``precision`` resolved on this machine (``auto`` may mean bfloat16 here, float32 there)."""
    d = {k: v for k, v in settings.to_dict().items() if k not in NON_RESULT_FIELDS}
    for switch, fields in WHILE_SET.items():
        if not d[switch]:
            for k in fields:
                del d[k]
    d["precision"] = resolve_precision(settings.precision)
    return json.loads(json.dumps(d))  # tuples -> lists, as job.json holds them


def digest(obj) -> str:
    """A short SHA-256 of a JSON value (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def data_digest(cache_dir) -> str:
    """A short SHA-256 of an ingest cache's content (:data:`knee_tf.data.ingest.CONTENT_FILES`' bytes).

    Unlike the cache key (which hashes file sizes and modification times), the same images and
    index give the same digest after the data is generated again in a new session."""
    h = hashlib.sha256()
    for name in CONTENT_FILES:
        path = Path(cache_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; the data digest needs a complete ingest cache")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


#: Folders of the repository that hold what runs publish, not code: a change there (e.g. the jobs a
#: grid has just published into results/grid) does not make the tree dirty for :func:`code_commit`.
PUBLISHED_OUTPUTS: tuple[str, ...] = ("results", "figures")


def code_commit(repo: Path = REPO_ROOT) -> str:
    """The git commit of ``repo`` (``+dirty`` when tracked files outside :data:`PUBLISHED_OUTPUTS`
    differ from it); ``""`` outside git."""
    exclude = [f":(exclude){name}" for name in PUBLISHED_OUTPUTS]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30)
        if head.returncode:
            return ""
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
                                "--", ".", *exclude], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return head.stdout.strip() + (DIRTY_SUFFIX if dirty else "")


#: What :func:`code_commit` appends when tracked files differ from the commit.
DIRTY_SUFFIX = "+dirty"


def is_dirty(commit) -> bool:
    """Whether a recorded code commit says the tree had uncommitted changes (``<sha>+dirty``)."""
    return isinstance(commit, str) and commit.endswith(DIRTY_SUFFIX)


def dirty_error(job, commit: str, where: str = "", planned: bool = False) -> str:
    """The one-line refusal to publish ``job``, trained (``planned``: to be trained) from a tree with
    uncommitted changes (``commit``): its results could not be traced to a commit."""
    if planned:
        return (f"{job.label} would be trained from a tree with uncommitted changes (code commit {commit}) and could "
                "not be published; commit the changes first")
    return (f"{job.label}{f' ({where})' if where else ''} was trained from a tree with uncommitted changes (code "
            f"commit {commit}), so it is not published; commit the changes and train it again")


def provenance(settings: StudyConfig, data: str, ingest_key: str, commit: str) -> dict:
    """What a job record carries to be compared later: {settings, settings_digest, data_digest,
    ingest_key, code_commit}. settings: the job's settings; data: :func:`data_digest`."""
    s = job_settings(settings)
    return {"settings": s, "settings_digest": digest(s), "data_digest": data, "ingest_key": ingest_key,
            "code_commit": commit}


def differences(record: dict, expected: dict) -> str:
    """What differs between a published record and the current :func:`provenance` ("" when nothing
    that matters does: the settings digest and the data digest). One line."""
    out = []
    if record.get("settings_digest") != expected["settings_digest"]:
        old, new = record.get("settings") or {}, expected["settings"]
        fields = [k for k in sorted(set(old) | set(new)) if old.get(k, "<absent>") != new.get(k, "<absent>")]
        shown = [f"{k} {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in fields[:3]]
        more = f" (+{len(fields) - 3} more)" if len(fields) > 3 else ""
        out.append("settings " + (", ".join(shown) + more if shown else
                                  f"digest {record.get('settings_digest')} -> {expected['settings_digest']}"))
    if record.get("data_digest") != expected["data_digest"]:
        out.append(f"data digest {record.get('data_digest')} -> {expected['data_digest']} "
                   "(the ingested images or index differ)")
    return "; ".join(out)


def published_record(pub: PublishedGrid, job) -> dict | None:
    """The published job record of ``job``, or None when the job is not published."""
    path = pub.job_record(job.name, job.seed)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the published job record: {e}") from None


def published_status(pub: PublishedGrid, job, expected: dict) -> tuple[bool, str]:
    """(published, what differs): (False, "") not published; (True, "") published with the current
    settings and data; (True, text) published with other settings or data."""
    record = published_record(pub, job)
    return (False, "") if record is None else (True, differences(record, expected))


def mismatch_error(pub: PublishedGrid, mismatched: dict) -> str:
    """The one-line refusal for published jobs ({job: differences}) that differ from the current run."""
    job, what = next(iter(mismatched.items()))
    more = f" (and {len(mismatched) - 1} more job(s))" if len(mismatched) > 1 else ""
    return (f"published job {job.label} ({pub.job_dir(job.name, job.seed)}) differs from this run: {what}{more}; "
            "use --republish to retrain and replace it, or publish to another folder")


# ----------------------------------------------------------------------------- writing


def compact_predictions(predictions: pd.DataFrame, index: pd.DataFrame) -> bytes:
    """A run folder's ``predictions.parquet`` table as the published file's bytes: the store's schema
    (:func:`knee_tf.controls.prediction_store.store_frame` with the ingest ``index``), Parquet zstd. The same
    predictions give the same bytes."""
    buf = io.BytesIO()
    store_frame(predictions, index).to_parquet(buf, engine="pyarrow", compression="zstd", index=False)
    return buf.getvalue()


def publish_job(pub: PublishedGrid, layout: RunLayout, job, index: pd.DataFrame) -> Path:
    """Publish one job from its complete run-folder copy; returns the published folder.

    Raises FileNotFoundError naming the folder when the run-folder copy is not complete (no job.json),
    and ValueError naming the job when its record's code commit ends with ``+dirty`` (:func:`dirty_error`).
    """
    record_path = layout.job_record(job.name, job.seed)
    if not record_path.exists():
        raise FileNotFoundError(f"{layout.model_dir(job.name, job.seed)}: not a finished grid job (no job.json); "
                                "nothing to publish")
    record = json.loads(record_path.read_text())
    if "settings_digest" not in record:
        raise ValueError(f"{record_path}: no settings digest (written by an older knee_tf)")
    if is_dirty(record.get("code_commit")):
        raise ValueError(dirty_error(job, record["code_commit"], str(record_path)))
    blob = compact_predictions(pd.read_parquet(layout.grid_predictions(job.name, job.seed)), index)
    final = pub.job_dir(job.name, job.seed)
    with atomic_dir(final) as tmp:
        (tmp / pub.predictions(job.name, job.seed).name).write_bytes(blob)
        (tmp / pub.training_log(job.name, job.seed).name).write_bytes(
            layout.training_log(job.name, job.seed).read_bytes())
        (tmp / pub.job_record(job.name, job.seed).name).write_text(json.dumps(record, indent=2) + "\n")
    return final


def check_retrained(pub: PublishedGrid, layout: RunLayout, job, index: pd.DataFrame) -> None:
    """A published job trained again (a Model A a pending job needs) must give the published
    predictions byte for byte; RuntimeError naming the job and the first differing row otherwise."""
    new = compact_predictions(pd.read_parquet(layout.grid_predictions(job.name, job.seed)), index)
    path = pub.predictions(job.name, job.seed)
    if new == path.read_bytes():
        return
    a, b = pd.read_parquet(path), pd.read_parquet(io.BytesIO(new))
    where = ""
    if len(a) == len(b):
        bad = (a["p_relevant"].to_numpy() != b["p_relevant"].to_numpy()).nonzero()[0]
        if len(bad):
            r = a.iloc[bad[0]]
            where = (f"; first differing row: cohort {r['cohort']}, image {r['image_id']}, published "
                     f"p_relevant {a['p_relevant'].iloc[bad[0]]!r}, retrained {b['p_relevant'].iloc[bad[0]]!r}")
    else:
        where = f"; {len(a)} published rows, {len(b)} retrained"
    raise RuntimeError(f"{job.label} trained again does not reproduce its published predictions ({path}){where}: "
                       "the machine, thread count or code differs from the published run's; retrain its dependents "
                       "with --republish")


def reproduction_gap(pub: PublishedGrid, layout: RunLayout, job, index: pd.DataFrame) -> tuple[str, str]:
    """(what differs in the predictions, what differs in the training log) between a job trained again
    in ``layout`` and its published copy: ``""`` each where they are equal byte for byte (the
    predictions compacted as published, :func:`check_retrained`)."""
    try:
        check_retrained(pub, layout, job, index)
        predictions = ""
    except RuntimeError as e:
        predictions = str(e)
    same_log = layout.training_log(job.name, job.seed).read_bytes() == pub.training_log(job.name, job.seed).read_bytes()
    return predictions, "" if same_log else f"{job.label}: the training log differs"


def replace_record(pub: PublishedGrid, layout: RunLayout, job, training_log: bool = False) -> Path:
    """Replace the published ``job.json`` of ``job`` (and, with ``training_log``, its training log) with
    the run folder's: for a published job from a tree with uncommitted changes that a clean checkout
    trained again to the same predictions byte for byte (:func:`reproduction_gap`), so its predictions
    and cross cohorts, those of the same model, stay. ValueError when the new record is itself from a
    dirty tree (:func:`dirty_error`). Returns the record's path."""
    record_path = layout.job_record(job.name, job.seed)
    record = json.loads(record_path.read_text())
    if is_dirty(record.get("code_commit")):
        raise ValueError(dirty_error(job, record["code_commit"], str(record_path)))
    if training_log:
        atomic_write_bytes(pub.training_log(job.name, job.seed), layout.training_log(job.name, job.seed).read_bytes())
    target = pub.job_record(job.name, job.seed)
    atomic_write_text(target, json.dumps(record, indent=2) + "\n")
    return target


def cross_sources(record: dict) -> dict:
    """{cohort: [job label, settings digest, data digest]} of the maps that made a published cross record."""
    return record.get("maps", {})


def publish_cross(pub: PublishedGrid, job, predictions: pd.DataFrame, index: pd.DataFrame, maps: dict) -> None:
    """Add one published job's rows on the cross cohorts (``cam_transfer``, ``cam_b``) to its folder.

    predictions: the job's rows on those cohorts (:func:`knee_tf.controls.cross.cross_cohort_predictions`);
    maps: {cohort: [job label, settings digest, data digest]} of the jobs whose maps made them. The
    record is written first and the predictions last, each atomically, so the predictions file exists
    only beside its record. FileNotFoundError when the job is not published."""
    if not pub.job_record(job.name, job.seed).exists():
        raise FileNotFoundError(f"{pub.job_dir(job.name, job.seed)}: {job.label} is not published")
    cohorts = sorted(set(predictions["cohort"].astype(str)))
    record = {"job": job.name, "seed": job.seed, "cohorts": cohorts, "maps": maps, "code_commit": code_commit()}
    # replacing stale ones: the old predictions go first, so that they never sit beside the new record
    pub.cross_predictions(job.name, job.seed).unlink(missing_ok=True)
    atomic_write_text(pub.cross_record(job.name, job.seed), json.dumps(record, indent=2) + "\n")
    atomic_write_bytes(pub.cross_predictions(job.name, job.seed), compact_predictions(predictions, index))


# ----------------------------------------------------------------------------- reading


def published_jobs(pub: PublishedGrid) -> pd.DataFrame:
    """One row per published job: job (model name), arm, variant, seed, and the record's settings
    digest, data digest, code commit, precision, seconds and epochs_run; dirty: whether the code commit
    says the tree had uncommitted changes (:func:`is_dirty`; published before such jobs were refused);
    cross_dirty: whether its cross cohorts' record (:func:`publish_cross`) says so."""
    cols = ["job", "arm", "variant", "seed", "settings_digest", "data_digest", "code_commit", "precision",
            "seconds", "epochs_run"]
    rows = []
    for path in pub.records():
        rec = json.loads(path.read_text())
        cross = pub.cross_record(rec.get("job"), rec.get("seed")) if rec.get("job") else None
        cross_commit = json.loads(cross.read_text()).get("code_commit") if cross and cross.exists() else None
        rows.append({c: rec.get(c) for c in cols}
                    | {"dirty": is_dirty(rec.get("code_commit")), "cross_dirty": is_dirty(cross_commit)})
    return pd.DataFrame(rows, columns=[*cols, "dirty", "cross_dirty"])


def read_published(pub: PublishedGrid, jobs: Iterable | None = None) -> pd.DataFrame:
    """The published predictions of ``jobs`` (default: every published job) in the store's schema: each
    job's own cohorts and, where published (:func:`publish_cross`), its cross cohorts.
    FileNotFoundError naming the folder when none (or a requested job) is published."""
    paths = ([p.parent / pub.predictions("x", 0).name for p in pub.records()] if jobs is None
             else [pub.predictions(j.name, j.seed) for j in jobs])
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: not published")
    if not paths:
        raise FileNotFoundError(f"{pub.root}: no published grid job")
    cross_name = pub.cross_predictions("x", 0).name
    paths += [c for c in (p.parent / cross_name for p in paths) if c.exists()]  # as a run's store: own rows first
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)[list(STORE_COLUMNS)]


def rebuild_store(pub: PublishedGrid, path, jobs: Iterable | None = None) -> Path:
    """Write the prediction store (:func:`knee_tf.controls.prediction_store.write_store`) from the published jobs."""
    return write_store(path, read_published(pub, jobs))


def completeness(store: pd.DataFrame, plan: Iterable) -> pd.DataFrame:
    """Per model name of ``plan`` (jobs): n_seeds_planned, n_seeds (in ``store``), complete (bool).
    A model the store lacks has n_seeds 0."""
    planned = pd.DataFrame([{"arm": j.name, "seed": j.seed} for j in dict.fromkeys(plan)])
    have = store[["arm", "seed"]].astype({"arm": str}).drop_duplicates()
    done = planned.merge(have, on=["arm", "seed"], how="inner").groupby("arm").size()
    out = planned.groupby("arm", sort=False).size().rename("n_seeds_planned").reset_index()
    out["n_seeds"] = out["arm"].map(done).fillna(0).astype(int)
    out["complete"] = out["n_seeds"] == out["n_seeds_planned"]
    return out


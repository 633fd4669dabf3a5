"""A notebook's one setup call: its run folder, config, seed and decoded images, as one :class:`Study`.

* :func:`open_study` (notebooks 02-07): the run folder notebook 01 made, seeded, with the images 01
  decoded into the cache (opened from there: no manifest, no DICOM).
* :func:`ingest_study` (notebooks 00 and 01): a new run folder; the data generated when missing,
  decoded into the cache, and recorded in the run for the notebooks after it.

Seeding is a step of the call, never of an import; its result is part of what the call returns
(``Study.seed``) and of the summary it prints (``str(study)``: run folder, config, seed, images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from knee_tf.core.vocab import NORMAL
from knee_tf.data.ingest import IngestResult, ingest
from knee_tf.study.config import StudyConfig, resolve
from knee_tf.study.pipeline import Run, ensure_dataset, newest_run, open_run


@dataclass(frozen=True)
class Study:
    """What a study notebook works with.

    run: the run folder (paths in ``run.layout``, atomic writes); config: its StudyConfig;
    data: the ingested images (float32 (N, S, S, 1) in [0, 1]) and their manifest rows;
    seed: what Python, NumPy and TensorFlow were seeded with (TensorFlow ops made deterministic),
    None when the notebook was not seeded; manifest, data_root: what was ingested (ingest_study only).
    """

    run: Run
    config: StudyConfig
    data: IngestResult
    seed: int | None
    manifest: Path | None = None
    data_root: Path | None = None

    def normal(self, split: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """(images, labels int32, rows) of the normal images (no metal implant, no new site) of ``split``."""
        return self.data.split(split, cohort=NORMAL)

    def __str__(self) -> str:
        seeded = (f"{self.seed} (Python, NumPy, TensorFlow; deterministic TensorFlow ops)" if self.seed is not None
                  else "no (no TensorFlow here; each random draw is given the config's seed)")
        lines = [f"run folder: {self.run.root}", f"config:     {self.config.name} (training seeds {self.run.seeds})",
                 f"seeded:     {seeded}"]
        if self.manifest is not None:
            lines += [f"manifest:   {self.manifest}", f"data root:  {self.data_root}"]
        how = "read from cache" if self.data.from_cache else "decoded"
        lines.append(f"images:     {len(self.data.index)} ingested, {len(self.data.skipped)} skipped "
                     f"({how}: {self.data.cache_dir})")
        return "\n".join(lines)


def _seed(seed: int) -> int:
    # lazy: loads TensorFlow (~10 s), which notebook 01 never needs
    from knee_tf.core.model import seed_everything

    seed_everything(seed)
    return seed


def open_study(run_dir: str | Path = "", config: str | StudyConfig = "default", log=print,
               ingest_if_missing: bool = False) -> Study:
    """Notebooks 02-07: the run (:func:`knee_tf.study.pipeline.open_run`; empty ``run_dir``: the newest),
    seeded with its config's ``seed``, and the images notebook 01 recorded (:meth:`Run.load_ingest`).
    ``log`` gets the study's summary. ingest_if_missing (notebooks 03 and 04, which can explain the
    shipped model): with an empty ``run_dir`` and no run folder yet, do what notebook 01 does
    (:func:`ingest_study`: a new run, the data generated when missing, decoded) instead of failing."""
    if ingest_if_missing and not run_dir and newest_run() is None:
        log("no run folder under runs/ yet: ingesting the data as notebook 01 does")
        return ingest_study("", config, log=log)
    run = open_run(run_dir, config)
    seed = _seed(run.config.seed)
    study = Study(run, run.config, run.load_ingest(), seed)
    log(str(study))
    return study


def ingest_study(run_dir: str | Path = "", config: str | StudyConfig = "default", seed: bool = True,
                 log=print) -> Study:
    """Notebooks 00 and 01: a new run folder (or ``run_dir``), seeded unless ``seed`` is False, its
    dataset generated when missing (:func:`~knee_tf.study.pipeline.ensure_dataset`), validated and
    decoded into the cache with the config's ``on_error`` and workers, and recorded in the run
    (:meth:`Run.record_ingest`) for the notebooks after it. ``log`` gets the study's summary."""
    run = open_run(run_dir, config, create=True)
    cfg = run.config
    seeded = _seed(cfg.seed) if seed else None
    manifest = ensure_dataset(cfg)  # the synthetic default dataset is generated on first use
    data_root = resolve(cfg.data_root)
    data = ingest(manifest, data_root, cache_dir=resolve(cfg.cache_dir), image_size=cfg.image_size,
                  on_error=cfg.on_error, workers=cfg.n_workers)
    run.record_ingest(data, manifest, data_root)
    study = Study(run, cfg, data, seeded, manifest, data_root)
    log(str(study))
    return study

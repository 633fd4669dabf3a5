"""A study run's models applied to a manifest, as derived DICOM: the objects ``push`` stores and ``overlays`` writes.

:func:`run_models` finds every (arm, seed) model of a run folder; :func:`study_objects` predicts the
manifest's images with one model, computes the Grad-CAM of the predicted class, and yields per
source study the Secondary Capture overlays (and a Key Object Selection of the slices called
relevant) built by :mod:`knee_tf.yourdata.overlay`; :func:`write_overlays` writes them as files
(``knee-tf overlays RUN --out DIR``), without a PACS. UIDs are deterministic, so writing again
writes the same objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from knee_tf.core.cam import compute_cams, upsample_align_corners
from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_path
from knee_tf.core.model import load_model
from knee_tf.core.vocab import CLASSES, GRADCAM, RELEVANT, STUDY_MODELS, predicted_class
from knee_tf.data.dicom_read import preprocess, read_dicom_image
from knee_tf.data.ingest import ingest, read_rows
from knee_tf.data.layout import RunLayout
from knee_tf.data.manifest import resolve_image_path
from knee_tf.study.config import resolve
from knee_tf.study.pipeline import Run, open_run
from knee_tf.yourdata.overlay import (
    blend,
    derived_uid,
    overlay_secondary_capture,
    relevant_slices_kos,
)

SC_SERIES_NUMBER = 9900  # overlay series numbers: 9900 + model index (after the source series)
KOS_SERIES_OFFSET = 100  # its KOS: 10000 + model index


@dataclass(frozen=True)
class RunModel:
    path: Path  # the .keras file
    name: str  # "Model A seed 0": series descriptions and comments
    series_number: int


@dataclass
class StudyObjects:
    study: str  # StudyInstanceUID
    objects: list  # pydicom Datasets: overlays, then the KOS when any slice is relevant
    n_images: int
    n_relevant: int


def open_study_run(run_dir: str | Path) -> Run:
    """The run of a study folder, or a one-line InputError when ``run_dir`` is not one."""
    run_dir = Path(run_dir)
    if not RunLayout(run_dir).config.exists():
        raise InputError(f"{run_dir}: not a run folder (no {RunLayout(run_dir).config.name}); give the folder "
                         "`knee-tf study` wrote")
    return open_run(run_dir)


def run_models(run: Run, arms: tuple[str, ...] = STUDY_MODELS) -> list[RunModel]:
    """Every (arm, seed) model of ``run`` for ``arms``, checked to exist, numbered for their series."""
    out = []
    for which in arms:
        for seed in run.seeds:
            try:
                path = run.layout.model(which, seed)
            except ValueError as e:
                raise InputError(f"--arms {which!r}: {e}") from None
            if not path.exists():
                raise InputError(f"{path}: model missing from the run; finish `knee-tf study` first")
            out.append(RunModel(path, f"Model {which} seed {seed}", SC_SERIES_NUMBER + len(out)))
    return out


def model_digest(path: str | Path) -> str:
    """First 16 hex digits of the model file's SHA-256: a retrained model gets new series UIDs."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def study_objects(model: RunModel, manifest: str | Path, root: str | Path, cache_dir: str | Path,
                  layer: str = "pool4", progress: bool = True) -> Iterator[StudyObjects]:
    """Predict the manifest's images with one model; yield each source study's derived objects.

    The Grad-CAM (``layer``) explains the predicted class. The overlay shows the slice as the model
    saw it (intensity-normalised, padded to a square) at the source's resolution (at least 256
    pixels), with the map upsampled onto it.
    """
    keras_model = load_model(model.path)
    size = int(keras_model.input_shape[1])
    data = ingest(manifest, root, cache_dir=cache_dir, image_size=size, use="predict", progress=progress)
    images = read_rows(data.images, np.arange(len(data.index)))
    cams = compute_cams(keras_model, images, layers=(layer,), methods=(GRADCAM,), progress=progress)
    p_rel = cams.probabilities[:, CLASSES.index(RELEVANT)]
    predicted = np.asarray(CLASSES)[predicted_class(p_rel)]
    maps = cams.select(GRADCAM, layer)
    digest = model_digest(model.path)
    root = Path(root).resolve()
    files = [resolve_image_path(p, root) for p in data.index["path"]]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]

    def overlay(i: int) -> np.ndarray:
        src = read_dicom_image(files[i])
        n = max(256, *src.pixels.shape)
        return blend(preprocess(src.pixels, n, src.pixel_spacing), upsample_align_corners(maps[i][None], (n, n))[0])

    for study in sorted({str(h.StudyInstanceUID) for h in headers}):
        rows = [i for i, h in enumerate(headers) if str(h.StudyInstanceUID) == study]
        n_rel = int(sum(predicted[i] == RELEVANT for i in rows))
        series = derived_uid("overlay", study, digest)
        desc = f"{model.name} Grad-CAM: {n_rel}/{len(rows)} relevant"
        objs = [overlay_secondary_capture(headers[i], overlay(i), series, model.series_number, desc,
                                          float(p_rel[i]), str(predicted[i]), model.name) for i in rows]
        if n_rel:
            objs.append(relevant_slices_kos([headers[i] for i in rows], [predicted[i] == RELEVANT for i in rows],
                                            derived_uid("kos", study, digest),
                                            model.series_number + KOS_SERIES_OFFSET, model.name))
        yield StudyObjects(study, objs, len(rows), n_rel)


def run_inputs(run: Run, manifest: str | Path | None, root: str | Path | None,
               cache_dir: str | Path | None) -> tuple[Path, Path, Path]:
    """(manifest, data root, ingest cache): as given, else the run config's (the cache the study used)."""
    return (Path(manifest) if manifest else run.config.manifest_path,
            Path(root) if root else resolve(run.config.data_root),
            Path(cache_dir) if cache_dir else resolve(run.config.cache_dir))


def write_overlays(run_dir: str | Path, out: str | Path, manifest: str | Path | None = None,
                   root: str | Path | None = None, arms: tuple[str, ...] = STUDY_MODELS,
                   cache_dir: str | Path | None = None, progress: bool = True) -> list[str]:
    """Write every (arm, seed) model's overlays and KOS of a run as DICOM files, without a PACS.

    Files: ``out/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` (the layout ``pull`` writes), each
    written atomically. manifest/root/cache_dir default to the run config's. Returns one line per
    model and study.
    """
    run = open_study_run(run_dir)
    models = run_models(run, arms)
    manifest, root, cache_dir = run_inputs(run, manifest, root, cache_dir)
    out = Path(out)
    lines = []
    for model in models:
        for group in study_objects(model, manifest, root, cache_dir, layer=run.config.aug_layer, progress=progress):
            for ds in group.objects:
                target = out / group.study / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
                with atomic_path(target) as tmp:
                    ds.save_as(tmp, enforce_file_format=True)
            lines.append(f"{model.name}: study {group.study}: {group.n_images} overlays"
                         f"{' + KOS' if group.n_relevant else ''}, {group.n_relevant} relevant; "
                         f"written to {out / group.study}")
    return lines

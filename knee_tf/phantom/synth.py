"""The exam loop: plan patients/sites/splits, render every exam in parallel, write the manifest.

Randomness is keyed, never sequential across exams: the plan (sites, cohorts, patients, splits) uses
``SeedSequence([seed, 0])``; a patient's body uses ``[seed, 1, patient]``; an exam's pose,
acquisition, noise and labels use independent streams spawned from ``[seed, 2, exam]``. So the same
seed gives byte-identical files and manifest for any number of workers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from knee_tf.core.io import atomic_write_csv, atomic_write_text
from knee_tf.core.vocab import (
    ANNOTATOR_COLUMN,
    AXIAL,
    CORONAL,
    LABEL_NOISE_COLUMN,
    METAL,
    NEW_SITE,
    NORMAL,
    PLANES,
    REQUIRED_COLUMNS,
    RULE_LABEL_COLUMN,
    SAGITTAL,
)
from knee_tf.data.layout import DATA_MANIFEST, SYNTH_RECORD
from knee_tf.phantom import appearance as look
from knee_tf.phantom.acquisition import element_sensitivities_3d, sum_of_squares
from knee_tf.phantom.anatomy import Ellipsoid, Structure, build_knee, sample_pose
from knee_tf.phantom.dicom_export import ExamHeader, write_slice
from knee_tf.phantom.difficulty import Difficulty
from knee_tf.phantom.labels import (
    N_ANNOTATORS,
    PLANE_AXES,
    annotator_label,
    annotator_offsets,
    rule_label,
    structures_cut,
)
from knee_tf.phantom.metal import sample_implant
from knee_tf.phantom.render import (
    ORIENTATIONS,
    Acquisition,
    Series,
    SliceGeometry,
    placed_elements,
    render_slice,
)
from knee_tf.phantom.shapes import build_knee_v3, patient_shape
from knee_tf.phantom.sites import COILS, NEW_SITE_CODE, SITES, choose, tissue_channels

SITE_COLUMNS = ("site", "scanner", "field_strength_t", "coil", "cohort", "slice_index", "anatomy")
EXTRA_COLUMNS = ("slice_location_mm", RULE_LABEL_COLUMN, LABEL_NOISE_COLUMN, ANNOTATOR_COLUMN,
                 "annotator_offset_mm", "boundary_distance_mm", "implant", "hard", "side",
                 "flexion_deg", "fov_mm", "matrix", "thickness_mm", "spacing_mm", "wrap",
                 "phase_resolution", "partial_fourier", "ghosts")
MANIFEST_COLUMNS = REQUIRED_COLUMNS + SITE_COLUMNS + EXTRA_COLUMNS
#: direction in which slices are numbered along PLANE_AXES (GE: axial I->S, coronal P->A)
SLICE_DIRECTION = {AXIAL: 1.0, SAGITTAL: 1.0, CORONAL: -1.0}
SPLIT_FRACTIONS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
REPEAT_EXAM_RATE = 0.1  # share of normal exams that are a patient's second exam
CENTRING_SD_MM = {AXIAL: 16.0, SAGITTAL: 24.0, CORONAL: 14.0}
HARD_CENTRING_FACTOR = 1.5  # hard exams: a sloppier centring, so more slices just miss the joint


def plan_exams(n_exams: int, seed: int, metal_fraction: float) -> pd.DataFrame:
    """One row per exam: exam_index, exam_id, patient_index, patient_id, site, cohort, split,
    repeat (second exam of the patient). Deterministic in (n_exams, seed, metal_fraction)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    n_metal = int(round(metal_fraction * n_exams))
    metal = np.zeros(n_exams, dtype=bool)
    metal[rng.choice(n_exams, size=n_metal, replace=False)] = True
    weights = np.array([s.weight for s in SITES])
    rows, patients, single = [], [], []  # patients: site index; single: normal, one exam so far
    for e in range(n_exams):
        repeat = (not metal[e]) and single and rng.random() < REPEAT_EXAM_RATE
        if repeat:
            p = single.pop(int(rng.integers(len(single))))
        else:
            p = len(patients)
            patients.append(int(rng.choice(len(SITES), p=weights / weights.sum())))
            if not metal[e]:
                single.append(p)
        rows.append((e, f"E{e + 1:04d}", p, f"P{p + 1:04d}", SITES[patients[p]].code,
                     METAL if metal[e] else NORMAL, bool(repeat)))
    df = pd.DataFrame(rows, columns=["exam_index", "exam_id", "patient_index", "patient_id",
                                     "site", "cohort", "repeat"])
    # the held-out site: its normal exams form the new_site cohort (test only). A small study
    # without any exam there gets one (a seeded single-exam normal patient moves there).
    if n_exams >= 2 and not (df.site == NEW_SITE_CODE).any():
        counts = df.groupby("patient_index").size()
        cand = sorted(set(df.loc[df.cohort == NORMAL, "patient_index"])
                      & set(counts[counts == 1].index))
        if len(cand) > 1:
            df.loc[df.patient_index == cand[int(rng.integers(len(cand)))], "site"] = NEW_SITE_CODE
    df.loc[(df.site == NEW_SITE_CODE) & (df.cohort == NORMAL), "cohort"] = NEW_SITE
    split = pd.Series("test", index=df.index)
    normal = df[df.cohort == NORMAL]
    for site in sorted(normal.site.unique()):
        pats = np.array(sorted(normal.loc[normal.site == site, "patient_index"].unique()))
        pats = pats[rng.permutation(len(pats))]
        n_train = int(round(SPLIT_FRACTIONS[0][1] * len(pats)))
        n_val = int(round(SPLIT_FRACTIONS[1][1] * len(pats)))
        for name, chunk in (("train", pats[:n_train]), ("val", pats[n_train:n_train + n_val]),
                            ("test", pats[n_train + n_val:])):
            split[df.patient_index.isin(chunk)] = name
    # Small studies (a smoke run): per-site rounding can leave val or test without any patient.
    # Then move one seeded train patient there, so every split exists (never triggers at 513 exams).
    for name in ("val", "test"):
        if not (split[df.cohort == NORMAL] == name).any():
            train_pats = np.array(sorted(df.loc[split == "train", "patient_index"].unique()))
            if len(train_pats) > 1:
                split[df.patient_index == train_pats[rng.integers(len(train_pats))]] = name
    df["split"] = split
    # one annotator labels each exam (a seeded draw, independent of everything above)
    r_ann = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    df["annotator"] = [f"R{a + 1}" for a in r_ann.integers(0, N_ANNOTATORS, size=len(df))]
    return df


def _exam_rngs(seed: int, exam_index: int):
    ss = np.random.SeedSequence([seed, 2, exam_index])
    return [np.random.default_rng(s) for s in ss.spawn(5)]  # pose, acq, noise, labels, hard


def _pads(coil, coil_centre: np.ndarray, knee_centre: np.ndarray) -> list[Structure]:
    """What the coil puts around the knee and shows (weakly): gel positioning pads between the
    knee and a rigid knee coil's wall, and the cushion under the leg (posterior, +y). The coil's
    plastic housing and foam pads have no MR signal (solid, microsecond T2*), so they are air."""
    out = []
    if coil.kind == "tr_knee":
        for side in (-1.0, 1.0):
            out.append(Structure("pad", "pad", Ellipsoid((7.0, 26.0, 45.0)),
                                 coil_centre + np.array([side * 80.0, 5.0, 0.0]), np.eye(3), 1.0,
                                 report=False))
    out.append(Structure("cushion", "pad", Ellipsoid((110.0, 7.0, 260.0)),
                         np.array([knee_centre[0], knee_centre[1] + 84.0, knee_centre[2]]),
                         np.eye(3), 1.0, report=False))
    return out


def prepare_exam(task: dict) -> dict:
    """Everything about one exam except its pixels: posed knee, implant, acquisition, header and
    the slice geometries (plane order, then slice order). Cheap; deterministic in ``task``."""
    seed, base_matrix = task["seed"], task["base_matrix"]
    diff = Difficulty(**task["difficulty"])
    r_pose, r_acq, r_noise, r_label, r_hard = _exam_rngs(seed, task["exam_index"])
    body = np.random.default_rng(np.random.SeedSequence([seed, 1, task["patient_index"]]))
    pose = sample_pose(r_pose)
    pose = replace(pose, scale=float(body.uniform(0.85, 1.15)), fat_mm=float(body.uniform(3, 20)),
                   muscle=float(body.uniform(0.85, 1.15)),
                   patella_height=float(body.uniform(-8, 8)),
                   condyle_scale=(float(body.uniform(0.88, 1.12)), float(body.uniform(0.88, 1.12))),
                   plateau_scale=float(body.uniform(0.9, 1.1)), fibula_height=float(body.uniform(-7, 7)),
                   patella_scale=float(body.uniform(0.85, 1.15)),
                   tibial_slope_deg=float(body.uniform(0.0, 12.0)))
    v3 = task.get("appearance", look.V2) == look.V3
    if v3:  # thin subcutaneous fat (the same draw, mapped)
        pose = replace(pose, fat_mm=look.fat_mm(pose.fat_mm))
    hard = bool(r_hard.random() < diff.hard_share)
    hard_draws = (r_hard.uniform(125, 160), r_hard.uniform(1.0, 1.25), r_hard.integers(2),
                  r_hard.choice([-1.0, 1.0]), r_hard.uniform(35, 55))
    if hard:  # close, bigger contralateral knee; the field of view mis-centred on the knee
        off = list(pose.offset_mm)
        off[int(hard_draws[2])] = float(hard_draws[3] * hard_draws[4])
        pose = replace(pose, other_leg_mm=float(hard_draws[0]),
                       other_leg_scale=float(hard_draws[1]), offset_mm=tuple(off))
    site = next(s for s in SITES if s.code == task["site"])
    if v3:  # the coil first (r_acq's first draw either way): a knee coil's other leg is outside it
        coil = COILS[choose(r_acq, site.coils)]
        site = look.site_protocol(site)
        if coil.kind == "tr_knee":
            pose = replace(pose, other_leg_mm=look.other_leg_mm(pose, coil))
        knee = (build_knee_v3(pose, patient_shape(seed, task["patient_index"]))
                if "shapes" in look.ENABLED else build_knee(pose))
    else:
        knee = build_knee(pose)
        coil = COILS[choose(r_acq, site.coils)]
    implant = sample_implant(knee, r_acq) if task["cohort"] == METAL else None

    if coil.kind == "tr_knee":
        coil_centre, rot, loose = np.zeros(3), 0.0, 0.0
        if v3:
            coil_centre = look.tr_coil_centre(knee.centre)
    else:
        coil_centre = knee.centre + r_acq.uniform(-10, 10, size=3)
        rot = float(r_acq.uniform(-20, 20) if "TDI" in coil.name else r_acq.uniform(-180, 180))
        loose = float(r_acq.uniform(0, coil.looseness_mm))
    pads = _pads(coil, coil_centre, knee.centre)
    if v3:
        pads = look.visible_pads(pads)
    structures = pads + list(knee) + (implant.structures() if implant is not None else [])
    signals = look.tissue_channels(site) if v3 else tissue_channels(site)
    sens_knee = float(_sensitivity_at(coil, coil_centre, rot, loose, knee.centre))
    acq = Acquisition(site, coil, signals, coil_centre, rot, loose,
                      float(r_acq.uniform(0, 2 * np.pi)),
                      (signals["muscle"][0] + signals["muscle"][1]) * sens_knee,
                      float(r_acq.uniform(*site.max_stored)), diff.texture, diff.snr_scale)
    fov = float(r_acq.uniform(*site.fov_mm))
    matrix = int(round(base_matrix * choose(r_acq, site.matrix_scale) / 2.0) * 2)
    thickness = float(r_acq.uniform(*site.thickness_mm))
    protocol = {}
    for plane in PLANES:
        n = int(r_acq.choice(site.slices))
        spacing = max(float(r_acq.uniform(*site.spacing_mm)), thickness)
        sd = CENTRING_SD_MM[plane] * (HARD_CENTRING_FACTOR if hard else 1.0)
        centre = float(knee.centre @ np.array(PLANE_AXES[plane]) + r_acq.normal(0.0, sd))
        wrap = bool(r_acq.random() < site.wrap_probability)
        pr = float(r_acq.uniform(*site.phase_resolution))
        pf = float(r_acq.uniform(0.56, 0.75)) if r_acq.random() < site.partial_fourier else 1.0
        g = r_acq.random() < diff.ghost_probability
        ghost = (float(r_acq.uniform(0.5, 2.0)), float(r_acq.uniform(6, 30)),
                 float(r_acq.uniform(0, 2 * np.pi)))
        pulse = float(r_acq.uniform(0.3, 1.0)) if r_acq.random() < diff.ghost_probability else 0.0
        series = Series(wrap, pr, pf, ghost[0] if g else 0.0, ghost[1], ghost[2], pulse)
        protocol[plane] = (n, spacing, centre, series)
    header = ExamHeader(seed, task["patient_id"], task["exam_id"], pose.side,
                        "F" if r_acq.random() < 0.5 else "M", int(r_acq.integers(18, 80)),
                        float(np.round(75 * pose.scale ** 3 + pose.fat_mm, 1)),
                        f"{2019 + task['exam_index'] % 2}{1 + task['exam_index'] % 12:02d}"
                        f"{1 + task['exam_index'] % 28:02d}",
                        f"{8 + task['exam_index'] % 10:02d}{task['exam_index'] % 60:02d}00",
                        site, coil, {p: v[1] for p, v in protocol.items()})

    annotator = task.get("annotator", "R1")
    offsets = annotator_offsets(seed, diff.annotator_spread)[annotator]
    # image quality of the series as an annotator sees it: low SNR, ghosts, wrap (0 good, 1 poor)
    snr_exam = site.snr * diff.snr_scale * coil.snr_factor
    slices = []
    for plane in PLANES:
        n, spacing, centre, series = protocol[plane]
        poor = min(1.0, max(0.0, (30.0 - snr_exam) / 20.0) + 0.5 * (series.ghost_px > 0)
                   + 0.3 * series.wrap + 0.3 * (series.phase_resolution < 0.7))
        offset_mm = offsets[plane] * spacing
        nrm_sign = float(np.cross(*[np.array(v) for v in ORIENTATIONS[plane]])
                         @ np.array(PLANE_AXES[plane]))
        for k in range(n):
            s_axis = centre + SLICE_DIRECTION[plane] * (k - (n - 1) / 2) * spacing
            geom = SliceGeometry(plane, s_axis * nrm_sign, fov, matrix, thickness, (0.0, 0.0, 0.0))
            rule, dist = rule_label(knee, geom)
            label = annotator_label(dist, offset_mm, diff.quality_shift_mm * poor, r_label)
            slices.append(dict(plane=plane, k=k, s_axis=s_axis, geom=geom, series=series,
                               rule=rule, dist=dist, label=label, flipped=label != rule,
                               spacing=spacing, offset_mm=offset_mm))
    return dict(task=task, knee=knee, pose=pose, site=site, coil=coil, implant=implant,
                structures=structures, acq=acq, header=header, slices=slices, fov=fov,
                matrix=matrix, thickness=thickness, r_noise=r_noise, hard=hard,
                annotator=annotator, appearance=look.V3 if v3 else look.V2)


def _slice_path(task: dict, instance: int) -> str:
    """A slice's DICOM file, relative to the data folder (the manifest's ``path``)."""
    return f"dicom/{task['site']}/{task['exam_id']}/IM{instance:04d}.dcm"


def render_exam(task: dict) -> list[dict]:
    """Render and write one exam's DICOM files; return its manifest rows (plane, slice order)."""
    ex = prepare_exam(task)
    out_dir = Path(task["out_dir"])
    for instance, sl in enumerate(ex["slices"], start=1):
        geom, series, rel = sl["geom"], sl["series"], _slice_path(task, instance)
        if ex["appearance"] == look.V3:
            pixels = look.render_slice(ex["structures"], ex["acq"], geom, ex["r_noise"], series, ex["implant"])
            write_slice(out_dir / rel, pixels, ex["header"], geom, instance,
                        phase_direction=look.phase_direction(sl["plane"]))
        else:
            pixels = render_slice(ex["structures"], ex["acq"], geom, ex["r_noise"], series=series,
                                  implant=ex["implant"])
            write_slice(out_dir / rel, pixels, ex["header"], geom, instance)
    return exam_rows(task, ex)


def exam_rows(task: dict, ex: dict | None = None) -> list[dict]:
    """One exam's manifest rows (plane, slice order) without rendering a pixel: every column comes
    from the exam's plan and geometry (:func:`prepare_exam`, computed here when ``ex`` is None), none
    from the images, so they are the rows :func:`render_exam` returns."""
    ex = prepare_exam(task) if ex is None else ex
    site, coil, implant, pose = ex["site"], ex["coil"], ex["implant"], ex["pose"]
    fov, matrix, thickness = ex["fov"], ex["matrix"], ex["thickness"]
    rows = []
    for instance, sl in enumerate(ex["slices"], start=1):
        plane, k, s_axis, geom, series = sl["plane"], sl["k"], sl["s_axis"], sl["geom"], sl["series"]
        rel = _slice_path(task, instance)
        rows.append({
            "image_id": f"{task['exam_id']}_{instance:02d}",
            "patient_id": task["patient_id"], "exam_id": task["exam_id"], "path": rel,
            "plane": plane, "label": sl["label"], "split": task["split"], "site": site.code,
            "scanner": site.scanner, "field_strength_t": site.field_strength_t,
            "coil": coil.name, "cohort": task["cohort"], "slice_index": k,
            "anatomy": ";".join(structures_cut(ex["structures"], geom)),
            "slice_location_mm": round(s_axis, 2), RULE_LABEL_COLUMN: sl["rule"],
            LABEL_NOISE_COLUMN: bool(sl["flipped"]), ANNOTATOR_COLUMN: ex["annotator"],
            "annotator_offset_mm": round(sl["offset_mm"], 2),
            "boundary_distance_mm": round(sl["dist"], 2),
            "implant": implant.kind if implant is not None else "", "hard": ex["hard"],
            "side": pose.side, "flexion_deg": round(pose.flexion_deg, 1),
            "fov_mm": round(fov, 1), "matrix": matrix, "thickness_mm": round(thickness, 1),
            "spacing_mm": round(sl["spacing"], 1), "wrap": series.wrap,
            "phase_resolution": round(series.phase_resolution, 3),
            "partial_fourier": round(series.partial_fourier, 3),
            "ghosts": bool(series.ghost_px > 0 or series.pulsation > 0),
        })
    return rows


def _sensitivity_at(coil, centre, rot_deg, loose, point) -> float:
    e = placed_elements(coil, centre, rot_deg, loose)
    return float(sum_of_squares(element_sensitivities_3d(np.asarray(point)[None], e,
                                                         coil.loop_radius_mm))[0])


def _tasks(out_dir, n_exams, seed, matrix, metal_fraction, difficulty, appearance) -> list[dict]:
    """The per-exam tasks of :func:`synthesize` and :func:`plan_manifest`, after checking the arguments."""
    if int(n_exams) < 1:
        raise ValueError(f"n_exams must be >= 1, got {n_exams}")
    if int(matrix) < 32:
        raise ValueError(f"matrix must be >= 32, got {matrix}")
    if not 0.0 <= float(metal_fraction) <= 1.0:
        raise ValueError(f"metal_fraction must be in [0, 1], got {metal_fraction}")
    look.check(appearance)
    plan = plan_exams(int(n_exams), int(seed), float(metal_fraction))
    return [dict(row, seed=int(seed), out_dir=str(out_dir), base_matrix=int(matrix),
                 difficulty=asdict(difficulty), appearance=appearance)
            for row in plan.to_dict("records")]


def plan_manifest(n_exams: int = 513, seed: int = 0, matrix: int = 256, metal_fraction: float = 0.10,
                  progress: bool = True, *, difficulty: Difficulty, appearance: str = look.V2) -> pd.DataFrame:
    """The manifest :func:`synthesize` writes for these arguments, without rendering or writing an
    image (:func:`exam_rows`; seconds for the default 513 exams, where rendering takes minutes)."""
    tasks = _tasks("", n_exams, seed, matrix, metal_fraction, difficulty, appearance)
    rows = [row for t in tqdm(tasks, desc="plan exams", unit="exam", disable=not progress) for row in exam_rows(t)]
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


def synthesize(out_dir, n_exams: int = 513, seed: int = 0, matrix: int = 256,
               metal_fraction: float = 0.10, workers: int | None = None,
               progress: bool = True, *, difficulty: Difficulty,
               appearance: str = look.V2) -> pd.DataFrame:
    """Generate the default dataset: DICOM files under ``out_dir`` and ``out_dir/data_manifest.csv``.

    n_exams >= 1; matrix: base acquisition matrix (>= 32; some sites use 0.75x or 2x);
    metal_fraction in [0, 1]; workers: processes (None or 0 = all cores); difficulty: the
    :class:`~knee_tf.phantom.difficulty.Difficulty` knobs (the study's calibrated ones are
    ``StudyConfig.synth_difficulty()``: the phantom takes them as an argument); appearance: one of
    :data:`knee_tf.phantom.appearance.APPEARANCES` (v2, the published default). Returns the manifest
    (one row per 2D image, columns :data:`MANIFEST_COLUMNS`). Byte-identical for any ``workers``.
    """
    if workers is not None and int(workers) < 0:
        raise ValueError(f"workers must be >= 0 or None, got {workers}")
    out = Path(out_dir)
    tasks = _tasks(out, n_exams, seed, matrix, metal_fraction, difficulty, appearance)
    out.mkdir(parents=True, exist_ok=True)
    n_workers = int(workers) if workers else (os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(tasks)))

    bar = tqdm(total=len(tasks), desc="synth exams", unit="exam", disable=not progress)
    results = []
    if n_workers == 1:
        for t in tasks:
            results.append(render_exam(t))
            bar.update()
    else:
        with mp.get_context("spawn").Pool(n_workers) as pool:
            for r in pool.imap(render_exam, tasks, chunksize=1):
                results.append(r)
                bar.update()
    bar.close()
    manifest = pd.DataFrame([row for rows in results for row in rows],
                            columns=list(MANIFEST_COLUMNS))
    atomic_write_csv(out / DATA_MANIFEST, manifest, index=False, lineterminator="\n")
    record = synth_record(n_exams, seed, matrix, metal_fraction, difficulty, appearance)
    atomic_write_text(out / SYNTH_RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return manifest


#: the source files whose code decides what :func:`synthesize` writes (the phantom package and the
#: modules it draws on); their digest goes into the folder's record
_SYNTH_SOURCES = ("phantom/*.py", "core/io.py", "core/vocab.py")


def synth_record(n_exams: int, seed: int, matrix: int, metal_fraction: float,
                 difficulty: Difficulty, appearance: str = look.V2) -> dict:
    """What a synthetic data folder is made of: the arguments of :func:`synthesize`, the difficulty
    knobs and a digest of the phantom's source code. Written to ``SYNTH_RECORD`` after the manifest;
    :func:`knee_tf.study.pipeline.ensure_dataset` generates a folder again when its record differs."""
    pkg = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pattern in _SYNTH_SOURCES:
        for path in sorted(pkg.glob(pattern)):
            h.update(f"{path.relative_to(pkg).as_posix()}\n".encode() + path.read_bytes())
    return {"n_exams": int(n_exams), "seed": int(seed), "matrix": int(matrix),
            "metal_fraction": float(metal_fraction), "difficulty": asdict(difficulty),
            "appearance": appearance,
            "phantom_code": h.hexdigest()[:16]}

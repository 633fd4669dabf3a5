"""The exam loop: plan patients/sites/splits, render every exam in parallel, write the manifest.

Randomness is keyed, never sequential across exams: the plan (sites, cohorts, patients, splits) uses
``SeedSequence([seed, 0])``; a patient's body uses ``[seed, 1, patient]``; an exam's pose,
acquisition, noise and labels use independent streams spawned from ``[seed, 2, exam]``. So the same
seed gives byte-identical files and manifest for any number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from knee_tf.acquisition import element_sensitivities_3d, sum_of_squares
from knee_tf.io import atomic_write_csv
from knee_tf.phantom.anatomy import build_knee, sample_pose
from knee_tf.phantom.dicom_writer import ExamHeader, write_slice
from knee_tf.phantom.labels import (
    PLANE_AXES,
    noisy_label,
    rule_label,
    structures_cut,
)
from knee_tf.phantom.metal import sample_implant
from knee_tf.phantom.render import (
    ORIENTATIONS,
    Acquisition,
    SliceGeometry,
    placed_elements,
    render_slice,
)
from knee_tf.phantom.sites import COILS, SITES, choose, tissue_signals
from knee_tf.vocab import AXIAL, CORONAL, PLANES, REQUIRED_COLUMNS, SAGITTAL

SITE_COLUMNS = ("site", "scanner", "field_strength_t", "coil", "cohort", "slice_index", "anatomy")
EXTRA_COLUMNS = ("slice_location_mm", "rule_label", "label_flipped", "boundary_distance_mm",
                 "implant", "side", "flexion_deg", "fov_mm", "matrix", "thickness_mm",
                 "spacing_mm", "wrap")
MANIFEST_COLUMNS = REQUIRED_COLUMNS + SITE_COLUMNS + EXTRA_COLUMNS
#: direction in which slices are numbered along PLANE_AXES (GE: axial I->S, coronal P->A)
SLICE_DIRECTION = {AXIAL: 1.0, SAGITTAL: 1.0, CORONAL: -1.0}
SPLIT_FRACTIONS = (("train", 0.7), ("val", 0.1), ("test", 0.2))
REPEAT_EXAM_RATE = 0.1  # share of normal exams that are a patient's second exam
CENTRING_SD_MM = {AXIAL: 16.0, SAGITTAL: 24.0, CORONAL: 14.0}


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
                     "metal" if metal[e] else "normal", bool(repeat)))
    df = pd.DataFrame(rows, columns=["exam_index", "exam_id", "patient_index", "patient_id",
                                     "site", "cohort", "repeat"])
    split = pd.Series("test", index=df.index)
    normal = df[df.cohort == "normal"]
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
        if not (split[df.cohort == "normal"] == name).any():
            train_pats = np.array(sorted(df.loc[split == "train", "patient_index"].unique()))
            if len(train_pats) > 1:
                split[df.patient_index == train_pats[rng.integers(len(train_pats))]] = name
    df["split"] = split
    return df


def _exam_rngs(seed: int, exam_index: int):
    ss = np.random.SeedSequence([seed, 2, exam_index])
    return [np.random.default_rng(s) for s in ss.spawn(4)]  # pose, acquisition, noise, labels


def prepare_exam(task: dict) -> dict:
    """Everything about one exam except its pixels: posed knee, implant, acquisition, header and
    the slice geometries (plane order, then slice order). Cheap; deterministic in ``task``."""
    seed, base_matrix = task["seed"], task["base_matrix"]
    r_pose, r_acq, r_noise, r_label = _exam_rngs(seed, task["exam_index"])
    body = np.random.default_rng(np.random.SeedSequence([seed, 1, task["patient_index"]]))
    pose = sample_pose(r_pose)
    pose = replace(pose, scale=float(body.uniform(0.85, 1.15)), fat_mm=float(body.uniform(3, 20)),
                   muscle=float(body.uniform(0.85, 1.15)),
                   patella_height=float(body.uniform(-8, 8)))
    knee = build_knee(pose)
    site = next(s for s in SITES if s.code == task["site"])
    coil = COILS[choose(r_acq, site.coils)]
    implant = sample_implant(knee, r_acq) if task["cohort"] == "metal" else None
    structures = list(knee) + (implant.structures() if implant is not None else [])

    if coil.kind == "tr_knee":
        coil_centre, rot, loose = np.zeros(3), 0.0, 0.0
    else:
        coil_centre = knee.centre + r_acq.uniform(-10, 10, size=3)
        rot = float(r_acq.uniform(-20, 20) if "TDI" in coil.name else r_acq.uniform(-180, 180))
        loose = float(r_acq.uniform(0, coil.looseness_mm))
    signals = tissue_signals(site)
    sens_knee = float(_sensitivity_at(coil, coil_centre, rot, loose, knee.centre))
    acq = Acquisition(site, coil, signals, coil_centre, rot, loose,
                      float(r_acq.uniform(0, 2 * np.pi)),
                      (signals["muscle"][0] + signals["muscle"][1]) * sens_knee,
                      float(r_acq.uniform(*site.max_stored)))
    fov = float(r_acq.uniform(*site.fov_mm))
    matrix = int(round(base_matrix * choose(r_acq, site.matrix_scale) / 2.0) * 2)
    thickness = float(r_acq.uniform(*site.thickness_mm))
    protocol = {}
    for plane in PLANES:
        n = int(r_acq.choice(site.slices))
        spacing = max(float(r_acq.uniform(*site.spacing_mm)), thickness)
        centre = float(knee.centre @ np.array(PLANE_AXES[plane])
                       + r_acq.normal(0.0, CENTRING_SD_MM[plane]))
        wrap = bool(r_acq.random() < site.wrap_probability)
        protocol[plane] = (n, spacing, centre, wrap)
    header = ExamHeader(seed, task["patient_id"], task["exam_id"], pose.side,
                        "F" if r_acq.random() < 0.5 else "M", int(r_acq.integers(18, 80)),
                        float(np.round(75 * pose.scale ** 3 + pose.fat_mm, 1)),
                        f"{2019 + task['exam_index'] % 2}{1 + task['exam_index'] % 12:02d}"
                        f"{1 + task['exam_index'] % 28:02d}",
                        f"{8 + task['exam_index'] % 10:02d}{task['exam_index'] % 60:02d}00",
                        site, coil, {p: v[1] for p, v in protocol.items()})

    slices = []
    for plane in PLANES:
        n, spacing, centre, wrap = protocol[plane]
        nrm_sign = float(np.cross(*[np.array(v) for v in ORIENTATIONS[plane]])
                         @ np.array(PLANE_AXES[plane]))
        for k in range(n):
            s_axis = centre + SLICE_DIRECTION[plane] * (k - (n - 1) / 2) * spacing
            geom = SliceGeometry(plane, s_axis * nrm_sign, fov, matrix, thickness, (0.0, 0.0, 0.0))
            rule, dist = rule_label(knee, geom)
            label, flipped = noisy_label(rule, dist, r_label)
            slices.append(dict(plane=plane, k=k, s_axis=s_axis, geom=geom, wrap=wrap, rule=rule,
                               dist=dist, label=label, flipped=flipped, spacing=spacing))
    return dict(task=task, knee=knee, pose=pose, site=site, coil=coil, implant=implant,
                structures=structures, acq=acq, header=header, slices=slices, fov=fov,
                matrix=matrix, thickness=thickness, r_noise=r_noise)


def render_exam(task: dict) -> list[dict]:
    """Render and write one exam's DICOM files; return its manifest rows (plane, slice order)."""
    ex = prepare_exam(task)
    out_dir = Path(task["out_dir"])
    site, coil, implant, pose = ex["site"], ex["coil"], ex["implant"], ex["pose"]
    fov, matrix, thickness = ex["fov"], ex["matrix"], ex["thickness"]
    rows = []
    for instance, sl in enumerate(ex["slices"], start=1):
        plane, k, s_axis, geom = sl["plane"], sl["k"], sl["s_axis"], sl["geom"]
        rule, dist, label, flipped, spacing, wrap = (sl[n] for n in ("rule", "dist", "label",
                                                                    "flipped", "spacing", "wrap"))
        pixels = render_slice(ex["structures"], ex["acq"], geom, ex["r_noise"], wrap=wrap,
                              implant=implant)
        rel = f"dicom/{task['site']}/{task['exam_id']}/IM{instance:04d}.dcm"
        write_slice(out_dir / rel, pixels, ex["header"], geom, instance)
        rows.append({
            "image_id": f"{task['exam_id']}_{instance:02d}",
            "patient_id": task["patient_id"], "exam_id": task["exam_id"], "path": rel,
            "plane": plane, "label": label, "split": task["split"], "site": site.code,
            "scanner": site.scanner, "field_strength_t": site.field_strength_t,
            "coil": coil.name, "cohort": task["cohort"], "slice_index": k,
            "anatomy": ";".join(structures_cut(ex["structures"], geom)),
            "slice_location_mm": round(s_axis, 2), "rule_label": rule,
            "label_flipped": flipped, "boundary_distance_mm": round(dist, 2),
            "implant": implant.kind if implant is not None else "",
            "side": pose.side, "flexion_deg": round(pose.flexion_deg, 1),
            "fov_mm": round(fov, 1), "matrix": matrix, "thickness_mm": round(thickness, 1),
            "spacing_mm": round(spacing, 1), "wrap": wrap,
        })
    return rows


def _sensitivity_at(coil, centre, rot_deg, loose, point) -> float:
    e = placed_elements(coil, centre, rot_deg, loose)
    return float(sum_of_squares(element_sensitivities_3d(np.asarray(point)[None], e,
                                                         coil.loop_radius_mm))[0])


def synthesize(out_dir, n_exams: int = 513, seed: int = 0, matrix: int = 256,
               metal_fraction: float = 0.10, workers: int | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Generate the default dataset: DICOM files under ``out_dir`` and ``out_dir/data_manifest.csv``.

    n_exams >= 1; matrix: base acquisition matrix (>= 32; some sites use 0.75x or 2x);
    metal_fraction in [0, 1]; workers: processes (None or 0 = all cores). Returns the manifest
    (one row per 2D image, columns :data:`MANIFEST_COLUMNS`). Byte-identical for any ``workers``.
    """
    if int(n_exams) < 1:
        raise ValueError(f"n_exams must be >= 1, got {n_exams}")
    if int(matrix) < 32:
        raise ValueError(f"matrix must be >= 32, got {matrix}")
    if not 0.0 <= float(metal_fraction) <= 1.0:
        raise ValueError(f"metal_fraction must be in [0, 1], got {metal_fraction}")
    if workers is not None and int(workers) < 0:
        raise ValueError(f"workers must be >= 0 or None, got {workers}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_exams(int(n_exams), int(seed), float(metal_fraction))
    tasks = [dict(row, seed=int(seed), out_dir=str(out), base_matrix=int(matrix))
             for row in plan.to_dict("records")]
    n_workers = int(workers) if workers else (os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(tasks)))
    from tqdm.auto import tqdm

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
    atomic_write_csv(out / "data_manifest.csv", manifest, index=False, lineterminator="\n")
    return manifest

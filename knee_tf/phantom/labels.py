"""Labels from geometry: one rule per plane, evaluated on the posed 3D anatomy, never on pixels.

A slice is its centre plane at position ``s`` along the plane's axis (patient z for axial, x for
sagittal, y for coronal). Extents are exact for the convex primitives (:mod:`.anatomy`).

* **axial**: relevant iff the plane lies between the superior pole of the patella and the apex (top)
  of the fibular head (the patellofemoral and tibiofemoral joints);
* **sagittal**: relevant iff the plane cuts the tibial plateau and a femoral condyle or the
  intercondylar notch (outer slices with only collateral soft tissue are irrelevant);
* **coronal**: relevant iff the plane cuts a femoral condyle and the tibial plateau (not only the
  patella/tendons in front, not only the popliteal fossa behind).

Each rule's relevant set is an interval ``[lo, hi]`` of ``s``; ``boundary_distance_mm`` is the
distance of ``s`` to the nearer end (> 0 inside).

**Annotators** (:func:`annotator_label`): the label of an exam is what one of
:data:`N_ANNOTATORS` annotators assigned. Each annotator has a consistent boundary offset per
plane, in slice spacings (drawn once per dataset seed; positive: generous, the interval widened),
so the same annotator is biased the same way on every exam. A poor-quality series pulls the
boundary inwards by up to ``quality_shift_mm`` (a doubtful slice is called irrelevant), and each
slice adds a small jitter (:data:`JITTER_MM`): the annotator calls a slice relevant iff
``boundary_distance_mm + offset - quality_shift + jitter >= 0``. The manifest keeps the rule label,
the annotator and whether the two labels differ.
"""

from __future__ import annotations

import numpy as np

from knee_tf.core.vocab import AXIAL, CORONAL, IRRELEVANT, RELEVANT, SAGITTAL
from knee_tf.phantom.anatomy import CONDYLES, Knee
from knee_tf.phantom.render import SliceGeometry

N_ANNOTATORS = 4
JITTER_MM = 1.0  # sd of an annotator's slice-to-slice inconsistency

#: plane -> unit axis along which slices are positioned (sign chosen so s grows L, P, S)
PLANE_AXES = {AXIAL: (0.0, 0.0, 1.0), SAGITTAL: (1.0, 0.0, 0.0), CORONAL: (0.0, 1.0, 0.0)}


def _extent(knee: Knee, names, n) -> tuple[float, float]:
    """Union extent (min, max) along n of all structures with one of ``names`` (first shape each
    structure is painted with, i.e. the bone including cortex)."""
    lo, hi = np.inf, -np.inf
    for s in knee:
        if s.name in names and s.tissue in ("cortex", "fat"):
            a, b = s.extent(n)
            lo, hi = min(lo, a), max(hi, b)
    if not np.isfinite(lo):
        raise ValueError(f"knee has no structure named {names}")
    return lo, hi


def relevant_interval(knee: Knee, plane: str) -> tuple[float, float]:
    """The interval of slice positions (mm along :data:`PLANE_AXES`) that the rule calls relevant."""
    if plane not in PLANE_AXES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {tuple(PLANE_AXES)}")
    n = np.array(PLANE_AXES[plane])
    if plane == AXIAL:
        return _extent(knee, ("fibular head",), n)[1], _extent(knee, ("patella",), n)[1]
    femoral = CONDYLES + (("intercondylar notch",) if plane == SAGITTAL else ())
    f_lo, f_hi = _extent(knee, femoral, n)
    t_lo, t_hi = _extent(knee, ("tibial plateau",), n)
    return max(f_lo, t_lo), min(f_hi, t_hi)


def slice_position(geom: SliceGeometry) -> float:
    """The slice centre's coordinate along :data:`PLANE_AXES` of its plane."""
    return float(geom.centre @ np.array(PLANE_AXES[geom.plane]))


def rule_label(knee: Knee, geom: SliceGeometry) -> tuple[str, float]:
    """(label from the rule, signed distance to the rule boundary in mm; > 0 inside)."""
    lo, hi = relevant_interval(knee, geom.plane)
    s = slice_position(geom)
    dist = min(s - lo, hi - s)
    return (RELEVANT if dist >= 0 else IRRELEVANT), float(dist)


def annotator_offsets(seed: int, spread: float) -> dict[str, dict[str, float]]:
    """{annotator id: {plane: boundary offset in slice spacings}}, uniform in +- ``spread``;
    deterministic in ``seed`` (one panel of annotators per dataset)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    return {f"R{a + 1}": {p: float(rng.uniform(-spread, spread)) for p in PLANE_AXES}
            for a in range(N_ANNOTATORS)}


def annotator_label(distance_mm: float, offset_mm: float, quality_shift_mm: float,
                    rng: np.random.Generator) -> str:
    """The label an annotator assigns: relevant iff the slice lies inside the rule interval
    widened by ``offset_mm``, narrowed by ``quality_shift_mm``, plus a jitter (sd
    :data:`JITTER_MM`). Draws one normal number always, so the stream does not depend on the
    geometry."""
    j = rng.normal(0.0, JITTER_MM)
    return RELEVANT if distance_mm + offset_mm - quality_shift_mm + j >= 0 else IRRELEVANT


def structures_cut(structures, geom: SliceGeometry) -> list[str]:
    """Names of reportable structures that the slice's centre plane cuts inside the field of view,
    in painting order, without repeats."""
    nrm, pos = geom.normal, float(geom.centre @ geom.normal)
    half = geom.fov_mm / 2.0
    c_r, c_c = float(geom.centre @ geom.row_dir), float(geom.centre @ geom.col_dir)
    names: list[str] = []
    for s in structures:
        if not s.report or s.name in names:
            continue
        lo, hi = s.axis_extent(nrm)
        if not lo <= pos <= hi:
            continue
        lo_r, hi_r = s.axis_extent(geom.row_dir)
        lo_c, hi_c = s.axis_extent(geom.col_dir)
        if hi_r < c_r - half or lo_r > c_r + half or hi_c < c_c - half or lo_c > c_c + half:
            continue
        names.append(s.name)
        names += [n for _, _, n in s.layers if n and n not in names]
    return names

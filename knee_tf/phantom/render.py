"""Render one localizer slice of a posed knee as a scanner would show it.

Pipeline per slice (all in patient LPS mm):

1. **tissue painting** on three sub-planes across the slice thickness (slice profile weights
   0.25 / 0.5 / 0.25 at -t/3, 0, +t/3): the centre sub-plane at full matrix, the outer two at half
   resolution and upsampled (partial volume at a third of the cost). Each structure is evaluated only
   on the pixels inside its footprint (from its exact extents along the row/column directions) and
   only when the sub-plane crosses it; edges are anti-aliased over one pixel from the signed
   distance. Water and fat signals are painted separately;
2. **chemical shift**: complex sum ``water + fat * exp(i phi_fat)`` (dark fat/water boundary voxels
   at opposed-phase echoes);
3. **metal** (metal exams): :func:`knee_tf.phantom.metal.susceptibility_artifact`;
4. **receive coil**: root-sum-of-squares of the coil's element sensitivities (3D loop law, evaluated
   on a coarse grid and upsampled), times a smooth transmit (B1+) variation at 3 T;
5. **phase wrap-around** (some series): the field of view along the phase direction (image rows)
   does not cover the leg, and what lies beyond folds back in;
6. **Rician noise** with sigma set by the site's SNR, the coil, and the voxel volume;
7. **scanner scaling** to 16-bit integers (the 99.9th percentile to a site-typical maximum).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from knee_tf.acquisition import add_rician_noise_f32, element_sensitivities_3d, sum_of_squares
from knee_tf.dicom import ORIENTATIONS
from knee_tf.phantom.metal import Implant, off_resonance_hz, susceptibility_artifact
from knee_tf.phantom.sites import CoilProfile, SiteProfile, fat_phase


@dataclass(frozen=True)
class SliceGeometry:
    """One slice: pixel (i, j) centre = ``top_left + j * spacing * row_dir + i * spacing * col_dir``.

    position_mm: the slice's offset along ``normal`` (= row_dir x col_dir); matrix: rows = cols.
    """

    plane: str
    position_mm: float
    fov_mm: float
    matrix: int
    thickness_mm: float
    fov_centre: tuple[float, float, float]

    @cached_property
    def row_dir(self) -> np.ndarray:
        return np.array(ORIENTATIONS[self.plane][0])

    @cached_property
    def col_dir(self) -> np.ndarray:
        return np.array(ORIENTATIONS[self.plane][1])

    @cached_property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    @cached_property
    def spacing_mm(self) -> float:
        return self.fov_mm / self.matrix

    @cached_property
    def centre(self) -> np.ndarray:
        c = np.asarray(self.fov_centre, dtype=np.float64)
        n = self.normal
        return c - (c @ n) * n + self.position_mm * n

    @cached_property
    def top_left(self) -> np.ndarray:
        half = (self.matrix - 1) / 2.0 * self.spacing_mm
        return self.centre - half * self.row_dir - half * self.col_dir

    def points(self, rows: np.ndarray, cols: np.ndarray, offset_mm: float = 0.0) -> np.ndarray:
        """Patient coordinates (len(rows), len(cols), 3) of (fractional) pixel indices."""
        d = self.spacing_mm
        p = self.top_left + offset_mm * self.normal
        return (p + np.asarray(cols, np.float64)[None, :, None] * d * self.row_dir
                + np.asarray(rows, np.float64)[:, None, None] * d * self.col_dir)


def paint(structures, signals: dict[str, tuple[float, float]], geom: SliceGeometry,
          offsets_mm, step: int, row_start: int, n_rows: int):
    """Water and fat signal maps of sub-planes at ``offsets_mm`` (mm along the normal).

    Samples every ``step`` pixels starting at row ``row_start`` (may be negative: wrap padding).
    Returns two float32 arrays (len(offsets_mm), ceil(n_rows / step), ceil(matrix / step)).
    All sub-planes are evaluated together (one pass over the structures)."""
    offs = np.asarray(offsets_mm, dtype=np.float64).reshape(-1)
    d = geom.spacing_mm * step
    ncols = int(np.ceil(geom.matrix / step))
    nrows = int(np.ceil(n_rows / step))
    r_dir, c_dir, nrm = geom.row_dir, geom.col_dir, geom.normal
    origin = geom.top_left + row_start * geom.spacing_mm * c_dir
    if step > 1:  # sample at the centre of each step x step block
        origin = origin + (step - 1) / 2 * geom.spacing_mm * (r_dir + c_dir)
    pos0 = float(origin @ nrm)
    water = np.zeros((len(offs), nrows, ncols), np.float32)
    fat = np.zeros((len(offs), nrows, ncols), np.float32)
    o_r, o_c = float(origin @ r_dir), float(origin @ c_dir)
    # vectorised culling: footprint of every structure along normal, rows and columns
    bbox = np.array([st.bbox for st in structures])  # (S, 3, 2)

    def axis_range(vec):
        k = int(np.argmax(np.abs(vec)))
        return (bbox[:, k, 0], bbox[:, k, 1]) if vec[k] > 0 else (-bbox[:, k, 1], -bbox[:, k, 0])

    lo_n, hi_n = axis_range(nrm)
    lo_r, hi_r = axis_range(r_dir)
    lo_c, hi_c = axis_range(c_dir)
    j0s = np.maximum(np.floor((lo_r - o_r) / d).astype(int) - 1, 0)
    j1s = np.minimum(np.ceil((hi_r - o_r) / d).astype(int) + 2, ncols)
    i0s = np.maximum(np.floor((lo_c - o_c) / d).astype(int) - 1, 0)
    i1s = np.minimum(np.ceil((hi_c - o_c) / d).astype(int) + 2, nrows)
    crosses = ((pos0 + offs[None, :] >= lo_n[:, None] - d)
               & (pos0 + offs[None, :] <= hi_n[:, None] + d))  # (S, P)
    live = crosses.any(axis=1) & (j0s < j1s) & (i0s < i1s)
    single = len(offs) == 1
    for idx in np.flatnonzero(live):
        s = structures[idx]
        j0, j1, i0, i1 = int(j0s[idx]), int(j1s[idx]), int(i0s[idx]), int(i1s[idx])
        inv = s.inverse
        base = inv @ (origin - s.origin)
        a = (inv @ (r_dir * d)).astype(np.float32)
        b = (inv @ (c_dir * d)).astype(np.float32)
        jj = np.arange(j0, j1, dtype=np.float32)[None, :]
        ii = np.arange(i0, i1, dtype=np.float32)[:, None]
        if single:
            b0 = (base + offs[0] * (inv @ nrm)).astype(np.float32)
            q = [b0[k] + jj * a[k] + ii * b[k] for k in range(3)]
        else:
            b0 = (base[None, :] + offs[:, None] * (inv @ nrm)[None, :]).astype(np.float32)
            q = [b0[:, k, None, None] + (jj * a[k] + ii * b[k])[None] for k in range(3)]
        edge = 0.5 - s.shape.sdf_mm(*q) * np.float32(s.scale / d)  # > 0.5: inside by half a pixel
        sub_w, sub_f = water[:, i0:i1, j0:j1], fat[:, i0:i1, j0:j1]
        for depth, tissue in ((0.0, s.tissue),) + tuple((t, n) for t, n, _ in s.layers):
            occ = np.minimum(np.maximum(edge - np.float32(depth / d), 0.0), 1.0)
            w_t, f_t = signals[tissue]
            sub_w += occ * (np.float32(w_t) - sub_w)
            sub_f += occ * (np.float32(f_t) - sub_f)
    return water, fat


def _upsample2(img: np.ndarray) -> np.ndarray:
    """2x bilinear upsampling (pixel-centre aligned, edges clamped): (h, w) -> (2h, 2w)."""
    out = img
    for axis in (0, 1):
        first = np.take(out, [0], axis=axis)
        last = np.take(out, [-1], axis=axis)
        n = out.shape[axis]
        prev = np.concatenate([first, np.take(out, range(n - 1), axis=axis)], axis=axis)
        nxt = np.concatenate([np.take(out, range(1, n), axis=axis), last], axis=axis)
        even = 0.75 * out + 0.25 * prev
        odd = 0.75 * out + 0.25 * nxt
        shape = list(out.shape)
        shape[axis] *= 2
        out = np.stack([even, odd], axis=axis + 1).reshape(shape)
    return out.astype(np.float32)


def placed_elements(coil: CoilProfile, centre: np.ndarray, rotation_deg: float,
                    looseness_mm: float) -> np.ndarray:
    """Coil element centres in patient mm, float64 (E, 3): the profile's layout moved outwards by
    ``looseness_mm`` (a loosely wrapped coil), rotated about z by ``rotation_deg``, then centred."""
    e = coil.elements.astype(np.float64).copy()
    radial = np.hypot(e[:, 0], e[:, 1])
    grow = np.where(radial > 0, (radial + looseness_mm) / np.maximum(radial, 1e-9), 1.0)
    e[:, :2] *= grow[:, None]
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    return e @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + centre


def coil_sensitivity(geom: SliceGeometry, coil: CoilProfile, coil_centre: np.ndarray,
                     coil_rotation_deg: float, looseness_mm: float, b1_inhomogeneity: float,
                     b1_phase: float, row_start: int, n_rows: int) -> np.ndarray:
    """Receive sensitivity (root-sum-of-squares of the elements) times the transmit (B1+) pattern,
    float32 (n_rows, matrix). Absolute (not normalised per slice): a slice far from the coil is
    darker. Evaluated on 8x8-pixel blocks and upsampled (coil maps are smooth)."""
    rows = row_start + 3.5 + 8 * np.arange(int(np.ceil(n_rows / 8)))
    cols = 3.5 + 8 * np.arange(int(np.ceil(geom.matrix / 8)))
    pts = geom.points(rows, cols)
    e = placed_elements(coil, coil_centre, coil_rotation_deg, looseness_mm)
    sens = sum_of_squares(element_sensitivities_3d(pts, e, coil.loop_radius_mm))
    if b1_inhomogeneity > 0:  # central brightening / dielectric pattern at 3 T
        r = np.hypot(pts[..., 0] - coil_centre[0], pts[..., 1] - coil_centre[1]) / 120.0
        sens = sens * (1.0 + 0.5 * b1_inhomogeneity * np.cos(np.pi * r + b1_phase))
    return _upsample2(_upsample2(_upsample2(sens.astype(np.float32))))[:n_rows, : geom.matrix]


@dataclass(frozen=True)
class Acquisition:
    """Per-exam acquisition state shared by all slices of the exam."""

    site: SiteProfile
    coil: CoilProfile
    signals: dict
    coil_centre: np.ndarray
    coil_rotation_deg: float
    looseness_mm: float
    b1_phase: float
    reference_signal: float  # muscle signal x coil sensitivity at the knee centre
    max_stored: float


def render_slice(structures, acq: Acquisition, geom: SliceGeometry, rng: np.random.Generator,
                 wrap: bool = False, implant: Implant | None = None) -> np.ndarray:
    """One slice as the scanner stores it: uint16 (matrix, matrix)."""
    n = geom.matrix
    pad = n // 4 if wrap else 0
    row_start, n_rows = -pad, n + 2 * pad
    third = geom.thickness_mm / 3.0
    w_c, f_c = paint(structures, acq.signals, geom, (0.0,), 1, row_start, n_rows)
    w_o, f_o = paint(structures, acq.signals, geom, (-third, third), 2, row_start, n_rows)
    water = 0.5 * w_c[0] + 0.25 * _upsample2(w_o[0] + w_o[1])[:n_rows, :n]
    fat = 0.5 * f_c[0] + 0.25 * _upsample2(f_o[0] + f_o[1])[:n_rows, :n]
    signal = water + fat * np.complex64(np.exp(1j * fat_phase(acq.site)))
    if implant is not None:
        rows = np.arange(row_start, row_start + n_rows)
        cols = np.arange(n)
        b0 = acq.site.field_strength_t
        df = off_resonance_hz(geom.points(rows, cols), implant, b0)
        half = geom.thickness_mm / 2.0
        spread = (off_resonance_hz(geom.points(rows, cols, half), implant, b0)
                  - off_resonance_hz(geom.points(rows, cols, -half), implant, b0))
        signal = susceptibility_artifact(signal, df, acq.site.pixel_bandwidth_hz, acq.site.te_ms,
                                         spread, readout_axis=1)
    mag = np.abs(signal).astype(np.float32)
    mag *= coil_sensitivity(geom, acq.coil, acq.coil_centre, acq.coil_rotation_deg,
                            acq.looseness_mm, acq.site.b1_inhomogeneity, acq.b1_phase,
                            row_start, n_rows)
    if wrap:  # fold rows outside the phase FOV back in
        folded = mag[pad: pad + n].copy()
        folded[n - pad:] += mag[:pad]
        folded[:pad] += mag[pad + n:]
        mag = folded
    voxel = geom.spacing_mm ** 2 * geom.thickness_mm / (0.8594 ** 2 * 8.0)
    bw = np.sqrt(244.1 / acq.site.pixel_bandwidth_hz)
    snr = acq.site.snr * acq.coil.snr_factor * voxel * bw
    sigma = acq.reference_signal / max(snr, 1.0)
    noisy = add_rician_noise_f32(mag, sigma, rng)
    p999 = float(np.percentile(noisy, 99.9))
    gain = acq.max_stored * float(rng.uniform(0.9, 1.1)) / max(p999, 1e-12)
    return np.clip(np.rint(noisy * gain), 0, 65535).astype(np.uint16)

"""Render one localizer slice of a posed knee as a scanner would show it.

Pipeline per slice (all in patient LPS mm):

1. **tissue painting** on three sub-planes across the slice thickness (slice profile weights
   0.25 / 0.5 / 0.25 at -t/2, 0, +t/2: samples of a triangular profile whose full width at half
   maximum is the nominal thickness t, as DICOM SliceThickness is defined; a short localizer RF
   pulse does not excite a sharper slab): the centre sub-plane at full matrix, the outer two at half
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

from knee_tf.core.vocab import AXIAL
from knee_tf.data.dicom_read import ORIENTATIONS
from knee_tf.phantom import texture as tx
from knee_tf.phantom.acquisition import (
    add_rician_noise_f32,
    element_sensitivities_3d,
    sum_of_squares,
)
from knee_tf.phantom.metal import Implant, field_map_hz, susceptibility_artifact
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


def paint(structures, signals: dict[str, tuple[float, ...]], geom: SliceGeometry,
          offsets_mm, step: int, row_start: int, n_rows: int) -> np.ndarray:
    """Channel maps of sub-planes at ``offsets_mm`` (mm along the normal).

    ``signals``: tissue -> one value per channel (water signal, fat signal, then the texture
    occupancies, see :func:`knee_tf.phantom.sites.tissue_channels`). Samples every ``step`` pixels
    starting at row ``row_start`` (may be negative: wrap padding). Returns float32
    (channels, len(offsets_mm), ceil(n_rows / step), ceil(matrix / step)). All sub-planes are
    evaluated together (one pass over the structures)."""
    offs = np.asarray(offsets_mm, dtype=np.float64).reshape(-1)
    d = geom.spacing_mm * step
    ncols = int(np.ceil(geom.matrix / step))
    nrows = int(np.ceil(n_rows / step))
    r_dir, c_dir, nrm = geom.row_dir, geom.col_dir, geom.normal
    origin = geom.top_left + row_start * geom.spacing_mm * c_dir
    if step > 1:  # sample at the centre of each step x step block
        origin = origin + (step - 1) / 2 * geom.spacing_mm * (r_dir + c_dir)
    pos0 = float(origin @ nrm)
    n_ch = len(next(iter(signals.values())))
    acc = np.zeros((n_ch, len(offs), nrows, ncols), np.float32)
    vals = {t: np.asarray(v, np.float32)[:, None, None, None] for t, v in signals.items()}
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
    # per-structure steps of the grid in canonical coordinates, one batch for all structures
    live_idx = np.flatnonzero(live)
    inv = np.stack([structures[i].inverse for i in live_idx]) if len(live_idx) else None
    if inv is not None:
        a_all = (inv @ (r_dir * d)).astype(np.float32)[:, :, None, None]  # (S, 3, 1, 1)
        b_all = (inv @ (c_dir * d)).astype(np.float32)[:, :, None, None]
        n_all = inv @ nrm
    cols_f = np.arange(ncols, dtype=np.float32)
    rows_f = np.arange(nrows, dtype=np.float32)[:, None]
    for m, idx in enumerate(live_idx):
        s = structures[idx]
        j0, j1, i0, i1 = int(j0s[idx]), int(j1s[idx]), int(i0s[idx]), int(i1s[idx])
        base = s.inverse @ (origin - s.origin)
        jj, ii = cols_f[j0:j1], rows_f[i0:i1]
        # q: canonical points (3, [P,] h, w), summed in the order (b0 + j a) + i b (one plane)
        # or b0 + (j a + i b) (several)
        if single:
            b0 = (base + offs[0] * n_all[m]).astype(np.float32)[:, None, None]
            q = b0 + jj * a_all[m]
            q = q + ii * b_all[m]
        else:
            b0 = (base[None, :] + offs[:, None] * n_all[m][None, :]).astype(np.float32)
            q = jj * a_all[m] + ii * b_all[m]
            q = b0.T[:, :, None, None] + q[:, None]
        edge = s.shape.sdf_mm(q)
        edge *= np.float32(s.scale / d)
        np.subtract(0.5, edge, out=edge)  # > 0.5: inside by half a pixel
        if single:
            edge = edge[None]
        sub = acc[:, :, i0:i1, j0:j1]
        for depth, tissue in ((0.0, s.tissue),) + tuple((t, n) for t, n, _ in s.layers):
            if depth:
                occ = edge - np.float32(depth / d)
            else:  # the outer surface: edge itself is clipped unless inner layers still need it
                occ = edge.copy() if s.layers else edge
            np.maximum(occ, 0.0, out=occ)
            np.minimum(occ, 1.0, out=occ)
            step_ = vals[tissue] - sub
            step_ *= occ
            sub += step_
    return acc


def _upsample2(img: np.ndarray) -> np.ndarray:
    """2x bilinear upsampling of the last two axes (pixel-centre aligned, edges clamped):
    (..., h, w) -> (..., 2h, 2w). Each output is ``0.75 * x[i] + 0.25 * x[i -+ 1]`` in float32,
    rows first, then columns."""
    x = np.asarray(img, dtype=np.float32)
    h, w = x.shape[-2:]
    near, far = np.float32(0.75) * x, np.float32(0.25) * x
    rows = np.empty(x.shape[:-2] + (2 * h, w), np.float32)
    _interleave(near, far, rows[..., 0::2, :], rows[..., 1::2, :], -2)
    near, far = np.float32(0.75) * rows, np.float32(0.25) * rows
    res = np.empty(x.shape[:-2] + (2 * h, 2 * w), np.float32)
    _interleave(near, far, res[..., 0::2], res[..., 1::2], -1)
    return res


def _interleave(near: np.ndarray, far: np.ndarray, even: np.ndarray, odd: np.ndarray,
                axis: int) -> None:
    """even[i] = near[i] + far[max(i - 1, 0)], odd[i] = near[i] + far[min(i + 1, n - 1)] along
    ``axis`` (-2 or -1), written in place."""
    def sl(a, lo, hi):
        return a[..., lo:hi, :] if axis == -2 else a[..., lo:hi]
    np.add(sl(near, 1, None), sl(far, None, -1), out=sl(even, 1, None))
    np.add(sl(near, None, 1), sl(far, None, 1), out=sl(even, None, 1))
    np.add(sl(near, None, -1), sl(far, 1, None), out=sl(odd, None, -1))
    np.add(sl(near, -1, None), sl(far, -1, None), out=sl(odd, -1, None))


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
    signals: dict  # tissue -> channel values (knee_tf.phantom.sites.tissue_channels)
    coil_centre: np.ndarray
    coil_rotation_deg: float
    looseness_mm: float
    b1_phase: float
    reference_signal: float  # muscle signal x coil sensitivity at the knee centre
    max_stored: float
    texture: float = 1.0  # texture strength (knee_tf.phantom.difficulty.Difficulty.texture)
    snr_scale: float = 1.0


@dataclass(frozen=True)
class Series:
    """Per-series-plane k-space settings (drawn per exam and plane in :mod:`.synth`).

    phase_resolution: acquired phase-encoding lines / matrix (GE localizers: 0.5-1.0; the image is
    zero-filled to the matrix, so edges ring along the phase direction: Gibbs); partial_fourier:
    share of the phase lines acquired when fewer than all are (0.5 < pf <= 1; zero-filled, as GE's
    fractional NEX); ghost_px: amplitude of a periodic translation during the acquisition (pixels,
    0 = none), ghost_period: its period in phase-encoding lines; pulsation: strength of the
    arterial pulsation ghosts (0 = none).
    """

    wrap: bool = False
    phase_resolution: float = 1.0
    partial_fourier: float = 1.0
    ghost_px: float = 0.0
    ghost_period: float = 16.0
    ghost_phase: float = 0.0
    pulsation: float = 0.0


#: slice-selection RF bandwidth (Hz) assumed for the localizer excitation (a short sinc pulse:
#: 1-2 kHz is typical; not in the DICOM header). Sets the through-plane shift near metal.
RF_BANDWIDTH_HZ = 1500.0
#: texture contrast at strength 1: fraction of muscle water replaced by fat on a septum, marrow
#: mottle amplitude, darkening of fat on a lobule septum (docs/phantom.md, "Texture")
SEPTUM_FAT, TRABECULAR_AMPLITUDE, LOBULE_SEPTUM = 0.3, 0.12, 0.25


def _texture(ch: np.ndarray, plane: str, strength: float, fat_level: float,
             rng: np.random.Generator):
    """Apply the tissue textures to painted channels (C, H, W) -> (water, fat) float32 (H, W).
    fat_level: the fat signal of pure fat (what a septum adds inside muscle)."""
    water, fat = ch[0], ch[1]
    if strength <= 0:
        return water, fat
    mus, mar = ch[2], ch[3]
    # fat tissue outside the marrow: where the fat signal is that of pure fat
    fatt = np.clip(fat / np.float32(max(fat_level, 1e-12)), 0, 1) * (1 - mar)
    shape = water.shape
    septa = tx.crop("fascicle_cross" if plane == AXIAL else "fascicle_long", shape, rng)
    s = np.float32(SEPTUM_FAT * strength) * mus * septa
    fat_level = np.float32(fat_level)
    water = water * (1 - s)
    fat = fat + s * fat_level
    trab = 1 + np.float32(TRABECULAR_AMPLITUDE * strength) * mar * tx.crop("trabecular", shape, rng)
    lob = 1 - np.float32(LOBULE_SEPTUM * strength) * fatt * tx.crop("lobule", shape, rng)
    m = trab * lob
    return water * m, fat * m


def _kspace(img: np.ndarray, series: Series, vessels: np.ndarray | None,
            rng: np.random.Generator) -> np.ndarray:
    """Phase-direction (axis 0) k-space effects on a complex image: reduced phase resolution and
    partial Fourier (zero-filled: blur and Gibbs ringing), periodic motion ghosts (a translation
    that oscillates during the acquisition), arterial pulsation ghosts."""
    n = img.shape[0]
    k = np.fft.fftfreq(n) * n  # phase-encoding line index, -n/2 .. n/2
    keep = np.abs(k) <= series.phase_resolution * n / 2
    if series.partial_fourier < 1.0:
        half = series.phase_resolution * n / 2
        keep &= k >= -(2 * series.partial_fourier - 1) * half
    ghost = series.ghost_px > 0 or (series.pulsation > 0 and vessels is not None)
    if keep.all() and not ghost:
        return img
    f = np.fft.fft(img, axis=0)
    if series.ghost_px > 0:  # line ky acquired at time ~ its index: shift(t) = a sin(2 pi t / P)
        order = np.argsort(np.argsort(k))
        shift = series.ghost_px * np.sin(2 * np.pi * order / series.ghost_period + series.ghost_phase)
        f *= np.exp(-2j * np.pi * k * shift / n).astype(np.complex64)[:, None]
    if series.pulsation > 0 and vessels is not None:  # flowing blood: signal phase varies per line
        fv = np.fft.fft(vessels, axis=0)
        jitter = rng.uniform(-np.pi, np.pi, n) * series.pulsation
        f += fv * (np.exp(1j * jitter) - 1).astype(np.complex64)[:, None]
    f *= keep[:, None]
    return np.fft.ifft(f, axis=0).astype(np.complex64)


#: Positions of the three painted sub-planes across the slab, in units of the slice thickness.
SUBPLANE_OFFSETS = (-0.5, 0.0, 0.5)


def slab_weights(delta_mm: np.ndarray, thickness_mm: float) -> tuple[np.ndarray, ...]:
    """Weights of the three painted sub-planes (:data:`SUBPLANE_OFFSETS` x t) when the excited slab
    is displaced by ``delta_mm`` (through-plane distortion near metal: delta = df / G_ss).
    Triangular profile of half-width t (full width at half maximum = t, the nominal thickness),
    normalised so an undisplaced slab gives (0.25, 0.5, 0.25)."""
    hw = thickness_mm
    return tuple(np.maximum(0.0, 1.0 - np.abs(o * thickness_mm - delta_mm) / hw).astype(np.float32) / 2.0
                 for o in SUBPLANE_OFFSETS)


def render_slice(structures, acq: Acquisition, geom: SliceGeometry, rng: np.random.Generator,
                 series: Series | None = None, implant: Implant | None = None) -> np.ndarray:
    """One slice as the scanner stores it: uint16 (matrix, matrix)."""
    series = series or Series()
    n = geom.matrix
    pad = n // 4 if series.wrap else 0
    row_start, n_rows = -pad, n + 2 * pad
    outer = SUBPLANE_OFFSETS[2] * geom.thickness_mm
    c_c = paint(structures, acq.signals, geom, (0.0,), 1, row_start, n_rows)[:, 0]
    c_o = paint(structures, acq.signals, geom, (-outer, outer), 2, row_start, n_rows)
    up = _upsample2(c_o)  # (channels, 2, rows, cols): both outer sub-planes at once
    lo, hi = up[:, 0, :n_rows, :n], up[:, 1, :n_rows, :n]
    df = None
    if implant is not None:
        rows = np.arange(row_start, row_start + n_rows)
        cols = np.arange(n)
        b0 = acq.site.field_strength_t
        df = field_map_hz(geom.points, rows, cols, implant, b0)
        delta = df * (geom.thickness_mm / RF_BANDWIDTH_HZ)  # slab displacement (mm)
        w_lo, w_c, w_hi = slab_weights(delta, geom.thickness_mm)
        ch = w_c * c_c + w_lo * lo + w_hi * hi
    else:
        ch = 0.5 * c_c + 0.25 * (lo + hi)
    water, fat = _texture(ch, geom.plane, acq.texture, acq.signals["fat"][1], rng)
    signal = water + fat * np.complex64(np.exp(1j * fat_phase(acq.site)))
    if implant is not None:
        half = geom.thickness_mm / 2.0
        spread = (field_map_hz(geom.points, rows, cols, implant, b0, half)
                  - field_map_hz(geom.points, rows, cols, implant, b0, -half))
        signal = susceptibility_artifact(signal, df, acq.site.pixel_bandwidth_hz, acq.site.te_ms,
                                         spread, readout_axis=1)
    sens = coil_sensitivity(geom, acq.coil, acq.coil_centre, acq.coil_rotation_deg,
                            acq.looseness_mm, acq.site.b1_inhomogeneity, acq.b1_phase,
                            row_start, n_rows)
    signal = signal * sens
    vessels = None
    if series.pulsation > 0:  # the flowing arterial signal alone (small structures: cheap)
        art = [st for st in structures if st.tissue == "artery"]
        if art:
            w_art = float(acq.signals["artery"][0])
            vessels = paint(art, {"artery": (w_art,)}, geom, (0.0,), 1, row_start, n_rows)[0, 0]
            vessels = vessels * sens
    if series.wrap:  # fold rows outside the phase FOV back in (complex: folded signals interfere)
        def fold(a):
            out = a[pad: pad + n].copy()
            out[n - pad:] += a[:pad]
            out[:pad] += a[pad + n:]
            return out
        signal = fold(signal)
        vessels = fold(vessels) if vessels is not None else None
    signal = _kspace(signal.astype(np.complex64), series, vessels, rng)
    mag = np.abs(signal).astype(np.float32)
    voxel = geom.spacing_mm ** 2 * geom.thickness_mm / (0.8594 ** 2 * 8.0)
    bw = np.sqrt(244.1 / acq.site.pixel_bandwidth_hz)
    # fewer phase lines: less signal averaged (SNR ~ sqrt(lines acquired))
    lines = np.sqrt(series.phase_resolution * (series.partial_fourier
                                               if series.partial_fourier < 1 else 1.0))
    snr = acq.site.snr * acq.snr_scale * acq.coil.snr_factor * voxel * bw * lines
    sigma = acq.reference_signal / max(snr, 1.0)
    noisy = add_rician_noise_f32(mag, sigma, rng)
    p999 = float(np.percentile(noisy, 99.9))
    gain = acq.max_stored * float(rng.uniform(0.9, 1.1)) / max(p999, 1e-12)
    return np.clip(np.rint(noisy * gain), 0, 65535).astype(np.uint16)

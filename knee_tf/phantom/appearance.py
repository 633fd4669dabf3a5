"""Versions of the phantom's appearance. ``v2`` is the published default (calibration trial 6) and
goes through :func:`knee_tf.phantom.render.render_slice` unchanged; ``v3`` is the candidate of issue
28, changed only where the physics of the real localizer and the statistics of
``bench/realism.py`` agree (``docs/phantom.md``, *Appearance v3*):

* **contrast**: the localizer's own flip angle (30 degrees, GE's three-plane FSPGR; the measured
  header) instead of the flip chosen to make muscle half of fat; marrow is trabecular: bone takes
  :data:`TRABECULAR_BONE_FRACTION` of its volume, and the trabeculae shorten T2* of both its water
  and its fat (:data:`MARROW_T2S_MS`, susceptibility dephasing scales with B0);
* **coil coverage**: a transmit-receive knee coil is a short volume coil: its sensitivity falls
  along its axis (:func:`volume_coil_coverage`, about 0.3 at +-95 mm) and outside its cylinder;
* **the contralateral leg** of an exam in a transmit-receive knee coil lies outside the coil's
  housing (it cannot be inside it), so outside its sensitivity;
* **noise in k-space**: complex noise is added to the acquired k-space lines, which are then
  apodized (a Fermi filter, as scanners reconstruct by default) and zero-filled, so the noise and the
  anatomy share one point-spread function;
* **phase direction per plane**: along image columns in axial slices, along image rows in sagittal
  and coronal slices (as the real GE localizer; the readout, and so the metal displacement, is the
  other axis);
* **subcutaneous fat** 3-10 mm, skewed thin; **septa** of 0.1-1 mm seen through an 8 mm slice at a
  fraction of the contrast.
* **outlines** (:mod:`knee_tf.phantom.shapes`): an oval, patient-variable limb section, muscle
  filling the thigh and calf with thin fat planes between the bellies, flared metaphyses;
* **a rigid knee coil's receive loops** sized by its ring (:func:`ring_loop_radius`), the coil
  following the knee from front to back (:func:`tr_coil_centre`);
* **the foam cushion** under the leg gives no signal (:func:`visible_pads`).
* **fat as a spectrum** of six peaks (:func:`fat_factor`): at the echo its peaks are at different
  chemical-shift phases, so fat dephases against itself (0.80-0.89 of its proton-density signal).
* **the slice profile** (:func:`profile_gain`): a short pulse excites a profile with flanks at lower
  flip angles; above the Ernst angle they give more signal, more for long-T1 water than for fat.

Labels never depend on the appearance: they come from the geometry and the annotators.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from knee_tf.core.vocab import AXIAL
from knee_tf.phantom import texture as tx
from knee_tf.phantom.acquisition import element_sensitivities_3d, sum_of_squares
from knee_tf.phantom.metal import field_map_hz, susceptibility_artifact
from knee_tf.phantom.render import (
    LOBULE_SEPTUM,
    RF_BANDWIDTH_HZ,
    SEPTUM_FAT,
    SUBPLANE_OFFSETS,
    TRABECULAR_AMPLITUDE,
    SliceGeometry,
    _upsample2,
    paint,
    placed_elements,
    slab_weights,
)
from knee_tf.phantom.sites import (
    FAT_SHIFT_PPM,
    FAT_T1_MS,
    TEXTURE_CHANNELS,
    TISSUES,
    fat_phase,
    spgr_signal,
)

V2, V3 = "v2", "v3"
APPEARANCES = (V2, V3)  # V2: the published default; a new version is added, never edited
#: v3's changes, each switchable for bench/realism_render.py (which measures them one at a time);
#: v3 is all of them
CHANGES = ("flip", "marrow", "coverage", "other_leg", "kspace_noise", "phase_direction", "fat", "septa",
           "shapes", "tr_elements", "foam", "fat_spectrum",
           "slice_profile")
ENABLED: frozenset = frozenset(CHANGES)

LOCALIZER_FLIP_DEG = 30.0  # the measured GE localizer's FlipAngle (REAL_LOCALIZER_FACTS.md)
TRABECULAR_BONE_FRACTION = 0.15  # share of a marrow voxel that is bone (no signal)
MARROW_T2S_MS = {1.5: 8.0, 3.0: 4.0}  # trabecular marrow T2* (water and fat), ~ 1 / B0
FAT_T2S_MS = 40.0
COVERAGE_HALF_MM, COVERAGE_POWER = 80.0, 5.0  # axial coverage: 1 / (1 + (|z| / half)^power)
RADIAL_POWER = 3.0  # outside the coil cylinder the field falls as (R / r)^3
HOUSING_MM = 20.0  # coil housing beyond the element ring
LEG_HALF_WIDTH_MM = 60.0  # contralateral leg's half-width at scale 1
#: texture contrast of v3 (render.py's constants are v2's): septum fat, marrow mottle, lobule septum
SEPTUM_FAT_V3, TRABECULAR_V3, LOBULE_SEPTUM_V3 = 0.1, 0.06, 0.08
TR_AP_FREEDOM = 0.3  # share of v2's antero-posterior offset left in a rigid knee coil
#: the fat spectrum: its peaks' shifts below water (ppm) and shares of the fat protons (the six-peak
#: model of triglycerides used for fat-water separation: CH3, CH2, the two allylic/carbonyl-adjacent
#: groups, glycerol and the olefinic CH=CH, the last above water)
FAT_PEAKS_PPM = (3.80, 3.40, 2.60, 1.94, 0.39, -0.60)
FAT_PEAK_SHARES = (0.087, 0.693, 0.128, 0.004, 0.039, 0.048)
FERMI_RADIUS, FERMI_WIDTH = 0.85, 0.07  # apodization: 1 / (1 + exp((|k| / kmax - radius) / width))
#: the localizer's excitation: a Hann-windowed sinc of time-bandwidth 2; at TE 1.24 ms the pulse
#: must be well under a millisecond, and such short slice-selective pulses have a low
#: time-bandwidth product, so a broad profile with flanks beyond the nominal thickness
SLICE_PULSE_TBW = 2.0


def fat_factor(site) -> complex:
    """Complex signal of fat relative to its proton density at the site's echo time: with
    ``fat_spectrum`` the sum over the peaks of :data:`FAT_PEAKS_PPM` (each at its own chemical-shift
    phase, so fat also dephases against itself: magnitude 0.80-0.89 at v3's sites), otherwise the
    single 3.4 ppm peak of v2 (magnitude 1)."""
    if "fat_spectrum" not in ENABLED:
        return complex(np.exp(1j * fat_phase(site)))
    scale = fat_phase(site) / FAT_SHIFT_PPM  # radians per ppm below water at this TE and field
    return complex(sum(a * np.exp(1j * scale * ppm)
                       for ppm, a in zip(FAT_PEAKS_PPM, FAT_PEAK_SHARES, strict=True)))


def check(appearance: str) -> str:
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {', '.join(APPEARANCES)}, got {appearance!r}")
    return appearance


def site_protocol(site):
    """The site as v3 scans it: the localizer's flip angle."""
    return replace(site, flip_deg=LOCALIZER_FLIP_DEG) if "flip" in ENABLED else site


@functools.lru_cache(maxsize=1)
def slice_profile(tbw: float = SLICE_PULSE_TBW, n: int = 1201) -> np.ndarray:
    """Relative flip angle across the slice, float64 (n,), sampled uniformly over +-3 slice
    thicknesses (FWHM): the small-tip profile (the magnitude of the Fourier transform) of a
    Hann-windowed sinc pulse of time-bandwidth product ``tbw``; 1 at the centre, 1/2 at the
    nominal edges."""
    t = np.linspace(-1.0, 1.0, 801)
    pulse = np.sinc(tbw / 2 * t) * (0.5 + 0.5 * np.cos(np.pi * t))
    f = np.linspace(-3.0 * tbw, 3.0 * tbw, 2401)  # cycles over the pulse: frequency across the slice
    prof = np.abs(np.exp(-2j * np.pi * np.outer(f, t)) @ pulse)
    prof /= prof.max()
    above = f[prof >= 0.5]
    return np.interp(np.linspace(-3.0, 3.0, n), f / (above.max() - above.min()), prof)


def profile_gain(site, t1: float) -> float:
    """Signal of a slice excited with :func:`slice_profile` against the small-tip model (signal in
    proportion to the profile, what the 3 sub-planes of the slab assume), in the spoiled steady state
    at the site's flip angle and TR for longitudinal relaxation ``t1`` (ms). Above the Ernst angle
    the profile's flanks, at a lower flip, give more than their share, and more for long T1: about
    3.6 for muscle and 2.3 for fat at 30 degrees, TR 4.7 ms (1 without ``slice_profile``)."""
    if "slice_profile" not in ENABLED:
        return 1.0
    prof = slice_profile()
    alpha = np.radians(site.flip_deg)
    e1 = np.exp(-site.tr_ms / t1)

    def ss(a):  # the steady state's flip dependence (its (1 - E1) cancels)
        return np.sin(a) / (1.0 - np.cos(a) * e1)

    return float(np.mean(ss(alpha * prof)) / (ss(alpha) * np.mean(prof)))


def tissue_channels(site) -> dict[str, tuple[float, ...]]:
    """v3's tissue -> (water, fat, texture occupancies): the spoiled GRE steady state of
    :func:`knee_tf.phantom.sites.tissue_signals` with trabecular marrow (bone volume fraction,
    T2* of both components shortened), each component scaled by :func:`profile_gain` for its T1
    (the slice profile)."""
    b0 = site.field_strength_t

    def spgr(t1, t2s):
        return spgr_signal(site, t1, t2s) * profile_gain(site, t1)

    fat_t1 = FAT_T1_MS[1.5] if b0 < 2 else FAT_T1_MS[3.0]
    out = {}
    for name, (pd, ff, t1_15, t1_3, t2s) in TISSUES.items():
        t1 = t1_15 if b0 < 2 else t1_3
        fat_t2s = FAT_T2S_MS
        if name == "marrow" and "marrow" in ENABLED:
            pd = pd * (1 - TRABECULAR_BONE_FRACTION)
            t2s = fat_t2s = MARROW_T2S_MS[1.5 if b0 < 2 else 3.0]
        water = pd * (1 - ff) * spgr(t1, t2s) * {"artery": 2.6, "vein": 1.5}.get(name, 1.0)
        out[name] = (float(water), float(pd * ff * spgr(fat_t1, fat_t2s)))
    return {t: (w, f) + tuple(1.0 if t == c else 0.0 for c in TEXTURE_CHANNELS)
            for t, (w, f) in out.items()}


def fat_mm(v2_fat_mm: float) -> float:
    """v3's subcutaneous fat from v2's draw (uniform 3-20 mm): 3-10 mm, skewed thin (3 + 7 u^2)."""
    u = (v2_fat_mm - 3.0) / 17.0
    return 3.0 + 7.0 * u * u if "fat" in ENABLED else v2_fat_mm


def tr_coil_centre(knee_centre) -> np.ndarray:
    """Where a rigid transmit-receive knee coil sits in v3, float64 (3,): the leg rests in the coil's
    lower shell on its posterior pad and the upper shell closes over it, so the knee's
    antero-posterior offset from the coil's axis is a fraction (:data:`TR_AP_FREEDOM`) of its offset
    from the isocentre; from side to side and along the leg it keeps v2's (the coil at the
    isocentre). The knee, the slices and the labels do not move."""
    c = np.zeros(3)
    if "tr_elements" in ENABLED:
        c[1] = float(knee_centre[1]) * (1.0 - TR_AP_FREEDOM)
    return c


def visible_pads(pads: list) -> list:
    """What of v2's pads v3 shows: the gel pads beside the knee in a rigid coil, not the cushion
    under the leg. A positioning cushion is polyurethane foam: a solid whose protons relax in
    microseconds, so it gives no signal at a 1.2 ms echo (the real localizer shows nothing under the
    leg); v2 drew it as a weak gel band."""
    return [p for p in pads if p.name != "cushion"] if "foam" in ENABLED else list(pads)


def other_leg_mm(pose, coil) -> float:
    """The contralateral knee's distance in a transmit-receive knee coil: outside the housing."""
    ring = float(np.max(np.hypot(coil.elements[:, 0], coil.elements[:, 1])))
    clear = (ring + HOUSING_MM + LEG_HALF_WIDTH_MM * pose.scale * pose.other_leg_scale
             + abs(pose.offset_mm[0]))
    return max(pose.other_leg_mm, clear) if "other_leg" in ENABLED else pose.other_leg_mm


def phase_axis(plane: str) -> int:
    """Image axis of phase encoding in v3: 0 (along columns) in axial, 1 (along rows) otherwise."""
    return 0 if plane == AXIAL or "phase_direction" not in ENABLED else 1


def phase_direction(plane: str) -> str:
    """DICOM InPlanePhaseEncodingDirection of v3."""
    return "COL" if phase_axis(plane) == 0 else "ROW"


def volume_coil_coverage(points: np.ndarray, centre: np.ndarray, ring_mm: float) -> np.ndarray:
    """Sensitivity of a short transmit-receive volume coil relative to its centre, float64 (...):
    along its axis (patient z) ``1 / (1 + (|z| / 80 mm)^5)`` (0.91 at 50 mm, 0.3 at 95 mm, 0.17 at
    110 mm), outside its cylinder ``(R / r)^3``."""
    d = points - centre
    axial = 1.0 / (1.0 + (np.abs(d[..., 2]) / COVERAGE_HALF_MM) ** COVERAGE_POWER)
    r = np.hypot(d[..., 0], d[..., 1])
    radial = np.where(r <= ring_mm, 1.0, (ring_mm / np.maximum(r, 1e-9)) ** RADIAL_POWER)
    return axial * radial


def ring_loop_radius(coil) -> float:
    """Loop radius (mm) of a rigid knee coil's receive elements in v3: the elements of one ring
    share its circumference, so each loop spans an arc of 2 pi R / n and its radius is about
    pi R / n (about 37-39 mm for the 8-9 element rings of 95-105 mm). v2's 70-80 mm loops would
    overlap their neighbours by half and see the whole knee alike (too little receive shading)."""
    e = coil.elements
    ring = float(np.max(np.hypot(e[:, 0], e[:, 1])))
    per_ring = int(np.max(np.unique(np.round(e[:, 2], 3), return_counts=True)[1]))
    return float(np.pi * ring / per_ring)


def coil_map(geom: SliceGeometry, acq, row_start: int, n_rows: int) -> np.ndarray:
    """Receive sensitivity float32 (n_rows, matrix) as :func:`knee_tf.phantom.render.coil_sensitivity`,
    times :func:`volume_coil_coverage` for a transmit-receive knee coil, whose receive loops are
    sized by :func:`ring_loop_radius` (scaled so that the coil's centre keeps v2's sensitivity and so
    the SNR model)."""
    rows = row_start + 3.5 + 8 * np.arange(int(np.ceil(n_rows / 8)))
    cols = 3.5 + 8 * np.arange(int(np.ceil(geom.matrix / 8)))
    pts = geom.points(rows, cols)
    e = placed_elements(acq.coil, acq.coil_centre, acq.coil_rotation_deg, acq.looseness_mm)
    sens = sum_of_squares(element_sensitivities_3d(pts, e, acq.coil.loop_radius_mm))
    if acq.coil.kind == "tr_knee" and "tr_elements" in ENABLED:
        loop = ring_loop_radius(acq.coil)
        centre = acq.coil_centre[None]
        keep = (sum_of_squares(element_sensitivities_3d(centre, e, acq.coil.loop_radius_mm))
                / sum_of_squares(element_sensitivities_3d(centre, e, loop)))
        sens = sum_of_squares(element_sensitivities_3d(pts, e, loop)) * keep
    if acq.site.b1_inhomogeneity > 0:
        r = np.hypot(pts[..., 0] - acq.coil_centre[0], pts[..., 1] - acq.coil_centre[1]) / 120.0
        sens = sens * (1.0 + 0.5 * acq.site.b1_inhomogeneity * np.cos(np.pi * r + acq.b1_phase))
    if acq.coil.kind == "tr_knee" and "coverage" in ENABLED:
        ring = float(np.max(np.hypot(acq.coil.elements[:, 0], acq.coil.elements[:, 1])))
        sens = sens * volume_coil_coverage(pts, acq.coil_centre, ring)
    return _upsample2(_upsample2(_upsample2(sens.astype(np.float32))))[:n_rows, : geom.matrix]


def texture(ch: np.ndarray, plane: str, strength: float, fat_level: float, rng: np.random.Generator):
    """v3's textures: :func:`knee_tf.phantom.render._texture` at v3's lower contrasts."""
    water, fat = ch[0], ch[1]
    if strength <= 0:
        return water, fat
    mus, mar = ch[2], ch[3]
    fatt = np.clip(fat / np.float32(max(fat_level, 1e-12)), 0, 1) * (1 - mar)
    shape = water.shape
    septa = tx.crop("fascicle_cross" if plane == AXIAL else "fascicle_long", shape, rng)
    sf, tb, lb = ((SEPTUM_FAT_V3, TRABECULAR_V3, LOBULE_SEPTUM_V3) if "septa" in ENABLED
                  else (SEPTUM_FAT, TRABECULAR_AMPLITUDE, LOBULE_SEPTUM))
    s = np.float32(sf * strength) * mus * septa
    water = water * (1 - s)
    fat = fat + s * np.float32(fat_level)
    trab = 1 + np.float32(tb * strength) * mar * tx.crop("trabecular", shape, rng)
    lob = 1 - np.float32(lb * strength) * fatt * tx.crop("lobule", shape, rng)
    m = trab * lob
    return water * m, fat * m


def fermi(n: int, kmax: float) -> np.ndarray:
    """Fermi apodization over FFT line indices (n,), float64: 1 at the centre, 1/2 at
    ``FERMI_RADIUS * kmax``."""
    k = np.abs(np.fft.fftfreq(n) * n)
    return 1.0 / (1.0 + np.exp((k / max(kmax, 1e-9) - FERMI_RADIUS) / FERMI_WIDTH))


def kspace_with_noise(img: np.ndarray, series, vessels, sigma: float, rng: np.random.Generator,
                      axis: int) -> np.ndarray:
    """Magnitude image float32 (H, W) of a complex image acquired in k-space with phase encoding
    along ``axis``: motion and pulsation ghosts as :func:`knee_tf.phantom.render._kspace`, complex
    Gaussian noise added to the k-space samples, only the acquired phase lines kept (phase
    resolution, partial Fourier), a Fermi filter along both axes, zero-filled. The noise is scaled so
    that its standard deviation per image pixel is ``sigma`` (the SNR model of v2 holds)."""
    x = np.moveaxis(img, axis, 0)
    v = None if vessels is None else np.moveaxis(vessels, axis, 0)
    n, m = x.shape
    k = np.fft.fftfreq(n) * n
    keep = np.abs(k) <= series.phase_resolution * n / 2
    if series.partial_fourier < 1.0:
        keep &= k >= -(2 * series.partial_fourier - 1) * series.phase_resolution * n / 2
    in_k = "kspace_noise" in ENABLED
    filt = (keep * fermi(n, series.phase_resolution * n / 2))[:, None] * fermi(m, m / 2)[None, :]
    if not in_k:  # v2's way: truncation only, white noise added to the image afterwards
        filt = np.broadcast_to(keep[:, None], (n, m)).astype(np.float64)
    noise = (rng.standard_normal((n, m), dtype=np.float32)
             + 1j * rng.standard_normal((n, m), dtype=np.float32))
    noise *= np.float32(sigma / np.sqrt(np.mean(filt ** 2)) if in_k else 0.0)  # sigma per component
    f = np.fft.fft(x + noise, axis=0)  # white noise in the image = white noise in k-space
    if series.ghost_px > 0:
        order = np.argsort(np.argsort(k))
        shift = series.ghost_px * np.sin(2 * np.pi * order / series.ghost_period + series.ghost_phase)
        f *= np.exp(-2j * np.pi * k * shift / n).astype(np.complex64)[:, None]
    if series.pulsation > 0 and v is not None:
        jitter = rng.uniform(-np.pi, np.pi, n) * series.pulsation
        f += np.fft.fft(v, axis=0) * (np.exp(1j * jitter) - 1).astype(np.complex64)[:, None]
    f = np.fft.fft(f, axis=1) * filt.astype(np.float32)
    out = np.fft.ifft2(f)
    if not in_k:
        out = out + np.float32(sigma) * (rng.standard_normal((n, m), dtype=np.float32)
                                         + 1j * rng.standard_normal((n, m), dtype=np.float32))
    return np.moveaxis(np.abs(out).astype(np.float32), 0, axis)


def _fold(a: np.ndarray, pad: int, axis: int) -> np.ndarray:
    """Fold ``pad`` pixels beyond each end of ``axis`` back in (phase wrap-around)."""
    x = np.moveaxis(a, axis, 0)
    n = x.shape[0] - 2 * pad
    out = x[pad: pad + n].copy()
    out[n - pad:] += x[:pad]
    out[:pad] += x[pad + n:]
    return np.moveaxis(out, 0, axis)


def render_slice(structures, acq, geom: SliceGeometry, rng: np.random.Generator, series,
                 implant=None) -> np.ndarray:
    """v3's :func:`knee_tf.phantom.render.render_slice`: uint16 (matrix, matrix). The same steps, with
    the phase (and wrap) along :func:`phase_axis`, the readout the other axis, the coil map of
    :func:`coil_map`, v3's textures and the noise of :func:`kspace_with_noise`."""
    n = geom.matrix
    axis = phase_axis(geom.plane)
    pad = n // 4 if series.wrap else 0
    if axis == 1 and pad:  # wrap along rows: paint a wider field (same pixels), keep n rows
        g = SliceGeometry(geom.plane, geom.position_mm, geom.fov_mm * (n + 2 * pad) / n, n + 2 * pad,
                          geom.thickness_mm, geom.fov_centre)
        row_start, n_rows = pad, n
    else:
        g, row_start, n_rows = geom, -pad, n + 2 * pad
    width = g.matrix
    outer = SUBPLANE_OFFSETS[2] * geom.thickness_mm
    c_c = paint(structures, acq.signals, g, (0.0,), 1, row_start, n_rows)[:, 0]
    up = _upsample2(paint(structures, acq.signals, g, (-outer, outer), 2, row_start, n_rows))
    lo, hi = up[:, 0, :n_rows, :width], up[:, 1, :n_rows, :width]
    rows, cols = np.arange(row_start, row_start + n_rows), np.arange(width)
    b0 = acq.site.field_strength_t
    if implant is not None:
        df = field_map_hz(g.points, rows, cols, implant, b0)
        w_lo, w_c, w_hi = slab_weights(df * (geom.thickness_mm / RF_BANDWIDTH_HZ), geom.thickness_mm)
        ch = w_c * c_c + w_lo * lo + w_hi * hi
    else:
        ch = 0.5 * c_c + 0.25 * (lo + hi)
    water, fat = texture(ch, geom.plane, acq.texture, acq.signals["fat"][1], rng)
    signal = water + fat * np.complex64(fat_factor(acq.site))
    if implant is not None:
        half = geom.thickness_mm / 2.0
        spread = (field_map_hz(g.points, rows, cols, implant, b0, half)
                  - field_map_hz(g.points, rows, cols, implant, b0, -half))
        signal = susceptibility_artifact(signal, df, acq.site.pixel_bandwidth_hz, acq.site.te_ms,
                                         spread, readout_axis=1 - axis)
    sens = coil_map(g, acq, row_start, n_rows)
    signal = signal * sens
    vessels = None
    if series.pulsation > 0:
        art = [st for st in structures if st.tissue == "artery"]
        if art:
            w_art = float(acq.signals["artery"][0])
            vessels = paint(art, {"artery": (w_art,)}, g, (0.0,), 1, row_start, n_rows)[0, 0] * sens
    if pad:
        signal = _fold(signal, pad, axis)
        vessels = _fold(vessels, pad, axis) if vessels is not None else None
    voxel = geom.spacing_mm ** 2 * geom.thickness_mm / (0.8594 ** 2 * 8.0)
    bw = np.sqrt(244.1 / acq.site.pixel_bandwidth_hz)
    lines = np.sqrt(series.phase_resolution * (series.partial_fourier
                                               if series.partial_fourier < 1 else 1.0))
    snr = acq.site.snr * acq.snr_scale * acq.coil.snr_factor * voxel * bw * lines
    sigma = acq.reference_signal / max(snr, 1.0)
    noisy = kspace_with_noise(signal.astype(np.complex64), series, vessels, sigma, rng, axis)
    p999 = float(np.percentile(noisy, 99.9))
    gain = acq.max_stored * float(rng.uniform(0.9, 1.1)) / max(p999, 1e-12)
    return np.clip(np.rint(noisy * gain), 0, 65535).astype(np.uint16)

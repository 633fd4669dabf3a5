"""Metal implants and their susceptibility artifact on a gradient-echo localizer.

An implant is a set of small spheres (centre, radius, susceptibility difference to tissue ``dchi``
in ppm). Outside a sphere the field offset is the exact dipole field of a magnetised sphere, summed
over spheres (linear superposition, valid for the small ``dchi`` of paramagnetic metals)::

    df(r) = gamma/2pi * B0 * dchi/3 * (a/r)^3 * (3 cos^2(theta) - 1)     [Hz]

with ``theta`` the angle between ``r`` and B0 (patient z, the bore axis). It scales with B0, so the
same implant is twice as bad at 3 T as at 1.5 T (for the same bandwidth per pixel).

What the scanner makes of it (:func:`susceptibility_artifact`):

* **readout displacement**: spins at ``x`` are encoded at ``x + df / BW`` pixels along the readout
  (BW = receiver bandwidth per pixel). Signal is forward-mapped ("splatted") onto the displaced
  positions, so where the mapping compresses (Jacobian < 1) signal piles up into a bright rim and
  where it stretches it leaves a dark gap;
* **intra-voxel dephasing** (gradient echo has no refocusing pulse): a field gradient across a voxel
  spreads the phase at TE and the voxel's signal falls by ``|sinc(spread * TE)|``, in-plane (pixel)
  and through-plane (slice thickness, usually the larger);
* **phase** ``2 pi df TE`` carried by every spin, so displaced signals that land together interfere;
* the metal itself has no MR signal (a void, painted by the renderer as tissue ``metal``).

Not modelled: slice-selection distortion (the slab bends; we keep it flat), ferromagnetic
saturation (we use an effective linear ``dchi`` for stainless steel), RF shielding by the implant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knee_tf.phantom.anatomy import Ellipsoid, Knee, Structure
from knee_tf.phantom.sites import GAMMA_MHZ_PER_T

#: susceptibility difference to tissue (ppm, effective)
MATERIALS = {"titanium": 180.0, "cobalt-chromium": 900.0, "stainless steel": 2000.0}


@dataclass(frozen=True)
class Implant:
    """kind: manifest ``implant`` value; spheres: (K, 5) rows (x, y, z, radius_mm, dchi_ppm)."""

    kind: str
    spheres: np.ndarray

    def structures(self) -> list[Structure]:
        """The metal itself as painted structures (signal void), one per sphere."""
        out = []
        for x, y, z, r, _ in self.spheres:
            out.append(Structure("implant", "metal", Ellipsoid((r, r, r)), np.array([x, y, z]),
                                 np.eye(3), 1.0, report=False))
        return out


def _line(knee: Knee, seg: str, p0, p1, n: int, radius: float, dchi: float) -> list:
    pts = knee.to_patient(seg, np.linspace(np.asarray(p0, float), np.asarray(p1, float), n))
    r = radius * knee.pose.scale
    return [(x, y, z, r, dchi) for x, y, z in pts]


def sample_implant(knee: Knee, rng: np.random.Generator) -> Implant:
    """Draw one implant for a posed knee: ACL interference screws (titanium, 45 %), a staple
    (stainless steel, 20 %) or a total knee arthroplasty (cobalt-chromium femoral component on a
    titanium tibial tray, 35 %)."""
    u = rng.random()
    ti, cocr, ss = (MATERIALS[m] for m in ("titanium", "cobalt-chromium", "stainless steel"))
    if u < 0.45:
        sph = _line(knee, "femur", (-12, 20, 20), (-22, 30, 42), 6, 3.8, ti)
        sph += _line(knee, "tibia", (-2, -4, -8), (6, -20, -38), 6, 3.8, ti)
        return Implant("acl_screws", np.array(sph))
    if u < 0.65:
        side = 1.0 if rng.random() < 0.7 else -1.0
        zc = float(rng.uniform(-55, -30))
        sph = _line(knee, "tibia", (side * 34, -12, zc + 8), (side * 34, 12, zc + 8), 5, 1.6, ss)
        sph += _line(knee, "tibia", (side * 34, -12, zc + 8), (side * 26, -12, zc - 6), 3, 1.4,
                     ss)
        sph += _line(knee, "tibia", (side * 34, 12, zc + 8), (side * 26, 12, zc - 6), 3, 1.4, ss)
        return Implant("staple", np.array(sph))
    sph = []
    for x in (-21.0, 21.0):
        for ang in np.radians(np.linspace(-100, 80, 9)):  # shell over the distal/posterior condyle
            y, z = 8 + 28 * np.sin(ang), 24 - 21 * np.cos(ang)
            sph += _line(knee, "femur", (x, y, z), (x, y, z), 1, 4.5, cocr)
    for x in np.linspace(-30, 30, 6):
        for y in (-10.0, 14.0):
            sph += _line(knee, "tibia", (x, y, -6), (x, y, -6), 1, 4.0, ti)
    sph += _line(knee, "tibia", (0, 4, -10), (0, 4, -40), 4, 5.0, ti)  # tray keel
    return Implant("arthroplasty", np.array(sph))


def off_resonance_hz(points_mm: np.ndarray, implant: Implant, b0_t: float) -> np.ndarray:
    """Field offset (Hz) at patient points (..., 3); 0 inside the metal. float32 (...)."""
    pts = np.asarray(points_mm, dtype=np.float64)
    out = np.zeros(pts.shape[:-1], dtype=np.float64)
    for x, y, z, a, dchi in implant.spheres:
        d = pts - np.array([x, y, z])
        r2 = np.maximum(np.sum(d * d, axis=-1), 1e-6)
        cos2 = d[..., 2] ** 2 / r2
        val = (a * a / r2) ** 1.5 * (3 * cos2 - 1)
        out += np.where(r2 > a * a, val, 0.0) * dchi / 3.0
    return (out * GAMMA_MHZ_PER_T * b0_t).astype(np.float32)


def susceptibility_artifact(signal: np.ndarray, df_hz: np.ndarray, bandwidth_hz_per_pixel: float,
                            te_ms: float, through_plane_spread_hz: np.ndarray | None = None,
                            readout_axis: int = 1) -> np.ndarray:
    """Apply readout displacement, pile-up/gaps, phase and intra-voxel dephasing.

    signal: complex or real (H, W) image before the artifact; df_hz: float (H, W) field offset at
    each pixel centre; through_plane_spread_hz: float (H, W) offset difference across the slice
    thickness (None: no through-plane dephasing); readout_axis: 1 = along rows (columns index),
    0 = along columns. Returns complex64 (H, W).
    """
    sig = np.asarray(signal)
    df = np.asarray(df_hz, dtype=np.float64)
    if sig.ndim != 2 or df.shape != sig.shape:
        raise ValueError(f"signal and df_hz must be the same 2D shape, got {sig.shape} and "
                         f"{df.shape}")
    if bandwidth_hz_per_pixel <= 0:
        raise ValueError(f"bandwidth_hz_per_pixel must be > 0, got {bandwidth_hz_per_pixel}")
    if readout_axis == 0:
        tp = None if through_plane_spread_hz is None else np.asarray(through_plane_spread_hz).T
        return susceptibility_artifact(sig.T, df.T, bandwidth_hz_per_pixel, te_ms, tp, 1).T
    te = te_ms * 1e-3
    gy, gx = np.gradient(df)  # Hz per pixel
    loss = np.abs(np.sinc(gx * te)) * np.abs(np.sinc(gy * te))
    if through_plane_spread_hz is not None:
        loss = loss * np.abs(np.sinc(np.asarray(through_plane_spread_hz) * te))
    c = sig.astype(np.complex128) * loss * np.exp(2j * np.pi * df * te)
    h, w = sig.shape
    pos = np.arange(w)[None, :] + df / bandwidth_hz_per_pixel
    j0 = np.floor(pos).astype(np.int64)
    frac = pos - j0
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    out = np.zeros(h * w, dtype=np.complex128)
    for jj, wt in ((j0, 1.0 - frac), (j0 + 1, frac)):
        ok = (jj >= 0) & (jj < w)
        idx = (rows * w + jj)[ok]
        val = (c * wt)[ok]
        out += np.bincount(idx, weights=val.real, minlength=h * w)
        out += 1j * np.bincount(idx, weights=val.imag, minlength=h * w)
    return out.reshape(h, w).astype(np.complex64)

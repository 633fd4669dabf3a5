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

* **through-plane distortion** (done by the renderer, :func:`knee_tf.phantom.render.slab_weights`):
  the slice-selection gradient maps ``df`` to a slab displacement ``df / G_ss`` with
  ``G_ss = RF bandwidth / thickness``, so near metal the excited slab bends out of the slice and
  the signal there is lost or comes from elsewhere.

Not modelled: ferromagnetic saturation (316L is austenitic, so linear), RF shielding by the
implant, signal that the bent slab picks up beyond the painted slice thickness (it is lost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knee_tf.phantom.anatomy import Ellipsoid, Knee, Structure
from knee_tf.phantom.sites import GAMMA_MHZ_PER_T

#: volume susceptibility (SI, ppm) of implant materials, Schenck 1996 (Med Phys 23:815) and the
#: values collected there: commercially pure titanium / Ti-6Al-4V about +182, cobalt-chromium
#: alloys about +900, austenitic stainless steel 316L +3520 to +6700 (we take the low end: the
#: annealed state; cold-worked 316L is higher). Soft tissue is about -9 ppm (water -9.05).
CHI_PPM = {"titanium": 182.0, "cobalt-chromium": 900.0, "stainless steel": 3520.0}
TISSUE_CHI_PPM = -9.05
#: susceptibility difference to tissue (ppm), what the dipole field uses
MATERIALS = {m: chi - TISSUE_CHI_PPM for m, chi in CHI_PPM.items()}
#: implant kinds and their shares among metal exams
KINDS = (("acl_screws", 0.30), ("staple", 0.12), ("plate", 0.13), ("arthroplasty", 0.30),
         ("stemmed_arthroplasty", 0.15))


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


def _arthroplasty(knee: Knee, cocr: float, ti: float) -> list:
    """Femoral component (cobalt-chromium shell over both condyles and the trochlea), titanium
    tibial tray with keel."""
    sph = []
    for x in (-21.0, 21.0):
        for ang in np.radians(np.linspace(-110, 80, 11)):  # shell over the distal/posterior condyle
            y, z = 8 + 28 * np.sin(ang), 24 - 21 * np.cos(ang)
            sph += _line(knee, "femur", (x, y, z), (x, y, z), 1, 4.5, cocr)
    sph += _line(knee, "femur", (-14, -14, 36), (14, -14, 36), 3, 4.5, cocr)  # anterior flange
    for x in np.linspace(-30, 30, 6):
        for y in (-10.0, 14.0):
            sph += _line(knee, "tibia", (x, y, -6), (x, y, -6), 1, 4.0, ti)
    sph += _line(knee, "tibia", (0, 4, -10), (0, 4, -40), 4, 5.0, ti)  # tray keel
    return sph


def sample_implant(knee: Knee, rng: np.random.Generator) -> Implant:
    """Draw one implant for a posed knee (shares :data:`KINDS`): titanium ACL interference screws;
    a stainless-steel staple or a stainless-steel plate with screws on the proximal tibia (high
    tibial osteotomy); a total knee arthroplasty (cobalt-chromium femoral component on a titanium
    tibial tray), or a stemmed (revision) arthroplasty with a cobalt-chromium femoral and a
    titanium tibial stem several centimetres long."""
    kinds = [k for k, _ in KINDS]
    kind = kinds[int(rng.choice(len(KINDS), p=np.array([w for _, w in KINDS])))]
    side = 1.0 if rng.random() < 0.7 else -1.0
    zc = float(rng.uniform(-55, -30))
    ti, cocr, ss = (MATERIALS[m] for m in ("titanium", "cobalt-chromium", "stainless steel"))
    if kind == "acl_screws":
        sph = _line(knee, "femur", (-12, 20, 20), (-22, 30, 42), 6, 3.8, ti)
        sph += _line(knee, "tibia", (-2, -4, -8), (6, -20, -38), 6, 3.8, ti)
    elif kind == "staple":
        sph = _line(knee, "tibia", (side * 34, -12, zc + 8), (side * 34, 12, zc + 8), 5, 1.6, ss)
        sph += _line(knee, "tibia", (side * 34, -12, zc + 8), (side * 26, -12, zc - 6), 3, 1.4,
                     ss)
        sph += _line(knee, "tibia", (side * 34, 12, zc + 8), (side * 26, 12, zc - 6), 3, 1.4, ss)
    elif kind == "plate":  # plate on the medial/lateral tibial cortex, three screws across
        sph = _line(knee, "tibia", (side * 37, -4, -18), (side * 22, -6, -95), 9, 2.2, ss)
        for z in (-25.0, -45.0, -75.0):
            sph += _line(knee, "tibia", (side * 36, -4, z), (side * 2, -2, z), 4, 1.6, ss)
    elif kind == "arthroplasty":
        sph = _arthroplasty(knee, cocr, ti)
    else:
        sph = _arthroplasty(knee, cocr, ti)
        sph += _line(knee, "femur", (0, -2, 45), (0, -4, 150), 8, 6.0, cocr)
        sph += _line(knee, "tibia", (0, 6, -45), (0, 7, -120), 6, 5.5, ti)
    return Implant(kind, np.array(sph))


def off_resonance_hz(points_mm: np.ndarray, implant: Implant, b0_t: float) -> np.ndarray:
    """Field offset (Hz) at patient points (..., 3); 0 inside the metal. float32 (...)."""
    pts = np.asarray(points_mm, dtype=np.float32)
    out = np.zeros(pts.shape[:-1], dtype=np.float32)
    px, py, pz = pts[..., 0], pts[..., 1], pts[..., 2]
    for x, y, z, a, dchi in implant.spheres:
        dx, dy, dz = px - np.float32(x), py - np.float32(y), pz - np.float32(z)
        r2 = dx * dx + dy * dy + dz * dz
        np.maximum(r2, np.float32(a * a), out=r2)  # inside the sphere: clamp (zeroed below)
        inv = np.float32(a * a) / r2
        val = inv * np.sqrt(inv) * (3 * dz * dz / r2 - 1)
        out += np.float32(dchi / 3.0) * np.where(inv < 1, val, 0)
    return out * np.float32(GAMMA_MHZ_PER_T * b0_t)


def field_map_hz(geom_points, rows: np.ndarray, cols: np.ndarray, implant: Implant, b0_t: float,
                 offset_mm: float = 0.0) -> np.ndarray:
    """:func:`off_resonance_hz` on a slice's pixel grid (len(rows), len(cols)), evaluated on every
    second pixel and bilinearly interpolated (the dipole field is smooth outside the metal; a
    quarter of the cost). ``geom_points``: ``SliceGeometry.points``."""
    r2 = rows[0] + 0.5 + 2 * np.arange((len(rows) + 1) // 2)
    c2 = cols[0] + 0.5 + 2 * np.arange((len(cols) + 1) // 2)
    coarse = off_resonance_hz(geom_points(r2, c2, offset_mm), implant, b0_t)
    fi = (np.asarray(rows, np.float64) - r2[0]) / 2.0
    fj = (np.asarray(cols, np.float64) - c2[0]) / 2.0
    i0 = np.clip(np.floor(fi).astype(int), 0, len(r2) - 2 if len(r2) > 1 else 0)
    j0 = np.clip(np.floor(fj).astype(int), 0, len(c2) - 2 if len(c2) > 1 else 0)
    i1, j1 = np.minimum(i0 + 1, len(r2) - 1), np.minimum(j0 + 1, len(c2) - 1)
    wi = np.clip(fi - i0, 0, 1).astype(np.float32)[:, None]
    wj = np.clip(fj - j0, 0, 1).astype(np.float32)[None, :]
    top = coarse[i0][:, j0] * (1 - wj) + coarse[i0][:, j1] * wj
    bot = coarse[i1][:, j0] * (1 - wj) + coarse[i1][:, j1] * wj
    return (top * (1 - wi) + bot * wi).astype(np.float32)


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

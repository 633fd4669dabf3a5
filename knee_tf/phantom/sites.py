"""The six GE site profiles (scanner, field strength, coils, localizer protocol) and tissue contrast.

Tissue signal is the spoiled gradient-echo steady state, per water and fat component::

    S = PD * sin(a) * (1 - E1) / (1 - cos(a) * E1) * exp(-TE / T2*),   E1 = exp(-TR / T1)

with T1 at the site's field strength. Fat and water are kept apart so the renderer can add them as
complex numbers with the chemical-shift phase ``2 pi * 3.4 ppm * gamma * B0 * TE``: at an opposed-
phase echo a fat/water boundary voxel cancels (the dark "India ink" rim), which makes TE and B0
visibly change the image. Flip angles are those at which this model reproduces the contrast of the
measured GE localizer (muscle about half of fat); the real sequence is not a perfect spoiled steady
state, so the flip angle written to DICOM is this model's, not a vendor default.

Coil layouts are explicit element centres (mm, relative to the coil centre, coil axis along patient z)
with a loop radius; the renderer combines them with root-sum-of-squares
(:mod:`knee_tf.phantom.acquisition`). A transmit-receive knee coil is a rigid birdcage-like cylinder around
the knee (mild shading); flex and AIR coils are wrapped loosely around part of the leg (strong
shading, a dark side where the wrap is open).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAMMA_MHZ_PER_T = 42.577  # 1H gyromagnetic ratio / 2 pi
FAT_SHIFT_PPM = 3.4

#: tissue -> (proton density, fat fraction, T1 at 1.5 T (ms), T1 at 3 T (ms), T2* (ms)).
#: Water and fat components: fat has T1 260/370 ms and T2* 40 ms; the T1/T2* here are the water's.
TISSUES: dict[str, tuple[float, float, float, float, float]] = {
    "air": (0.0, 0.0, 1000.0, 1000.0, 1.0),
    "skin": (0.75, 0.1, 700.0, 900.0, 15.0),
    "fat": (0.95, 0.92, 1000.0, 1300.0, 30.0),
    "muscle": (0.85, 0.03, 1000.0, 1420.0, 25.0),
    "cartilage": (0.75, 0.0, 1050.0, 1240.0, 18.0),
    "fluid": (1.0, 0.0, 3000.0, 3500.0, 250.0),
    "tendon": (0.45, 0.0, 600.0, 800.0, 0.8),
    "ligament": (0.5, 0.02, 700.0, 900.0, 1.6),
    "meniscus": (0.45, 0.0, 700.0, 900.0, 1.2),
    "cortex": (0.18, 0.0, 250.0, 300.0, 0.5),
    "marrow": (0.92, 0.82, 600.0, 800.0, 12.0),
    "artery": (0.9, 0.0, 1350.0, 1900.0, 50.0),
    "vein": (0.9, 0.0, 1350.0, 1900.0, 30.0),
    "metal": (0.0, 0.0, 1000.0, 1000.0, 1.0),
    # positioning gel pad (silicone/polymer gel: weak, short-T2* signal; foam pads show nothing)
    "pad": (0.12, 0.0, 900.0, 1100.0, 6.0),
}
#: texture channels after (water, fat): tissue -> the channel it marks (see knee_tf.phantom.texture)
TEXTURE_CHANNELS: tuple[str, ...] = ("muscle", "marrow")
FAT_T1_MS = {1.5: 260.0, 3.0: 370.0}
FAT_T2S_MS = 40.0


@dataclass(frozen=True)
class CoilProfile:
    """A receive coil: name (DICOM ReceiveCoilName), kind, elements (E, 3) mm, loop radius mm.

    kind: "tr_knee" (rigid, around the knee, centred at the isocentre) or "wrap" (follows the knee,
    wrapped loosely: each exam adds 0-``looseness_mm`` to the radius and a random wrap angle).
    """

    name: str
    channels: int
    kind: str
    elements: np.ndarray
    loop_radius_mm: float
    looseness_mm: float = 0.0
    snr_factor: float = 1.0


def _ring_layout(per_ring: int, rings: int, radius: float, length: float, arc_deg: float):
    """Element centres on ``rings`` rings over an arc of ``arc_deg`` (open side at +x local)."""
    arc = np.radians(arc_deg)
    ang = np.pi + (np.arange(per_ring) - (per_ring - 1) / 2) * (arc / max(per_ring, 1))
    zs = np.linspace(-length / 2, length / 2, rings) if rings > 1 else np.zeros(1)
    return np.array([[radius * np.cos(a), radius * np.sin(a), z] for z in zs for a in ang])


def _planar_layout(nx: int, nz: int, y: float, width: float, length: float):
    xs = np.linspace(-width / 2, width / 2, nx)
    zs = np.linspace(-length / 2, length / 2, nz)
    return np.array([[x, y, z] for z in zs for x in xs])


COILS: dict[str, CoilProfile] = {
    "HD TRknee 16ch": CoilProfile("HD TRknee 16ch", 16, "tr_knee",
                                     _ring_layout(8, 2, 100.0, 80.0, 360.0), 70.0, 0.0, 1.0),
    "TR Knee 18ch": CoilProfile("TR Knee 18ch", 18, "tr_knee",
                                _ring_layout(9, 2, 105.0, 90.0, 360.0), 75.0, 0.0, 1.1),
    "HD TRknee PA": CoilProfile("HD TRknee PA", 8, "tr_knee",
                                _ring_layout(8, 1, 95.0, 0.0, 360.0), 80.0, 0.0, 0.95),
    "16ch TDI AA": CoilProfile("16ch TDI AA", 16, "wrap",
                               np.concatenate([_planar_layout(4, 2, -105.0, 160.0, 110.0),
                                               _planar_layout(4, 2, 115.0, 160.0, 110.0)]),
                               45.0, 20.0, 0.85),
    "GEM Flex 16ch": CoilProfile("GEM Flex 16ch", 16, "wrap",
                                        _ring_layout(4, 2, 115.0, 110.0, 220.0), 60.0, 30.0,
                                        0.8),
    "30ch AIR AA": CoilProfile("30ch AIR AA", 30, "wrap", _ring_layout(10, 3, 110.0, 140.0, 300.0),
                               40.0, 25.0, 1.05),
    "20ch MP AIR": CoilProfile("20ch MP AIR", 20, "wrap", _ring_layout(7, 3, 115.0, 150.0, 260.0),
                               45.0, 30.0, 0.9),
    "21ch MP AIR": CoilProfile("21ch MP AIR", 21, "wrap", _ring_layout(7, 3, 112.0, 150.0, 280.0),
                               44.0, 30.0, 0.92),
}


@dataclass(frozen=True)
class SiteProfile:
    """One scanner site and its localizer protocol (ranges are sampled per exam)."""

    code: str  # short id used in paths and the manifest's ``site`` column
    scanner: str  # DICOM ManufacturerModelName
    field_strength_t: float
    coils: tuple[tuple[str, float], ...]  # (coil name, probability)
    tr_ms: float
    te_ms: float
    flip_deg: float
    pixel_bandwidth_hz: float  # per pixel (readout)
    fov_mm: tuple[float, float]  # sampled uniformly
    thickness_mm: tuple[float, float]
    spacing_mm: tuple[float, float]  # centre-to-centre, >= thickness
    slices: tuple[int, ...]  # slices per plane, sampled per plane
    matrix_scale: tuple[tuple[float, float], ...]  # (matrix / base matrix, probability)
    snr: float  # SNR of muscle at the coil's sweet spot, reference voxel (0.86^2 x 8 mm)
    wrap_probability: float  # per series plane: phase FOV 70-85 % -> wrap-around
    b1_inhomogeneity: float  # transmit flip-angle variation across the FOV (3 T dielectric)
    max_stored: tuple[float, float]  # scanner auto-scaling: 99.9th percentile -> this value
    weight: float = 1.0  # share of exams
    phase_resolution: tuple[float, float] = (0.6, 1.0)  # acquired phase lines / matrix, uniform
    partial_fourier: float = 0.3  # probability that a series plane uses partial Fourier (0.56-0.75)


SITES: tuple[SiteProfile, ...] = (
    SiteProfile("S1", "DISCOVERY MR750w", 3.0, (("TR Knee 18ch", 0.8), ("16ch TDI AA", 0.2)),
                5.2, 1.4, 10.0, 325.5, (180, 260), (6, 10), (11, 15), (7, 9), ((1.0, 1.0),),
                55.0, 0.08, 0.12, (1400, 3200), 1.1),
    SiteProfile("S2", "SIGNA HDxt", 1.5, (("HD TRknee 16ch", 0.85), ("GEM Flex 16ch", 0.15)),
                4.7, 1.25, 12.0, 244.1, (200, 280), (8, 10), (12, 15), (7, 9),
                ((1.0, 0.85), (0.75, 0.15)), 30.0, 0.10, 0.0, (1200, 2600), 1.0),
    SiteProfile("S3", "Optima MR450w", 1.5, (("GEM Flex 16ch", 0.7), ("HD TRknee 16ch", 0.3)),
                6.0, 2.2, 14.0, 195.3, (240, 350), (7, 10), (13, 15), (5, 7, 9),
                ((1.0, 0.8), (0.75, 0.2)), 26.0, 0.12, 0.0, (1200, 2400), 0.9),
    SiteProfile("S4", "SIGNA Premier", 3.0, (("30ch AIR AA", 0.8), ("21ch MP AIR", 0.2)),
                5.8, 1.1, 9.0, 390.6, (160, 240), (5, 8), (10, 14), (7, 9), ((1.0, 0.9), (2.0, 0.1)),
                60.0, 0.05, 0.18, (1600, 3200), 0.9),
    SiteProfile("S5", "SIGNA Architect", 3.0, (("16ch TDI AA", 0.6), ("30ch AIR AA", 0.4)),
                5.0, 2.3, 10.0, 292.9, (200, 300), (6, 10), (11, 15), (5, 7, 9), ((1.0, 1.0),),
                48.0, 0.08, 0.15, (1400, 3000), 1.0),
    SiteProfile("S6", "SIGNA Pioneer", 3.0, (("20ch MP AIR", 0.5), ("21ch MP AIR", 0.5)),
                6.4, 1.7, 11.0, 244.1, (220, 320), (6, 10), (12, 15), (3, 5, 7, 9),
                ((1.0, 0.85), (0.75, 0.15)), 42.0, 0.15, 0.2, (1200, 2800), 1.1),
    # the held-out site (cohort new_site): never in train or val. Modelled on the measured GE
    # localizer (../shared/REAL_LOCALIZER_FACTS.md): SIGNA EXCITE 1.5 T, HD TRknee PA, 244 Hz,
    # 220 mm FOV, 8 mm slices 10 mm apart, 9 per plane.
    SiteProfile("S7", "SIGNA EXCITE", 1.5, (("HD TRknee PA", 1.0),),
                4.744, 1.244, 12.0, 244.141, (200, 240), (7, 8), (10, 11), (9,), ((1.0, 1.0),),
                32.0, 0.06, 0.0, (1200, 3200), 0.6, (0.5, 1.0), 0.4),
)
#: the site whose exams form the new_site test cohort (scanner and coil never seen in training)
NEW_SITE_CODE = "S7"


def spgr_signal(site, t1, t2s):
    """Spoiled gradient-echo steady state of one component (T1 and T2* in ms) at ``site``'s flip angle,
    TR and TE (relative units: proton density 1)."""
    alpha = np.radians(site.flip_deg)
    e1 = np.exp(-site.tr_ms / t1)
    return np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1) * np.exp(-site.te_ms / t2s)


def tissue_signals(site: SiteProfile) -> dict[str, tuple[float, float]]:
    """tissue -> (water signal, fat signal) for the site's TR/TE/flip/B0 (arbitrary units).

    Inflow makes the popliteal artery bright on every plane of this short-TR sequence; the slower
    vein is intermediate.
    """
    b0 = site.field_strength_t

    def spgr(t1, t2s):
        return spgr_signal(site, t1, t2s)

    fat_t1 = FAT_T1_MS[1.5] if b0 < 2 else FAT_T1_MS[3.0]
    out = {}
    for name, (pd, ff, t1_15, t1_3, t2s) in TISSUES.items():
        t1 = t1_15 if b0 < 2 else t1_3
        water = pd * (1 - ff) * spgr(t1, t2s)
        fatv = pd * ff * spgr(fat_t1, FAT_T2S_MS)
        out[name] = (float(water), float(fatv))
    inflow = {"artery": 2.6, "vein": 1.5}
    for name, f in inflow.items():
        out[name] = (out[name][0] * f, out[name][1])
    return out


def tissue_channels(site: SiteProfile) -> dict[str, tuple[float, ...]]:
    """tissue -> (water signal, fat signal, then 1/0 for each of :data:`TEXTURE_CHANNELS`): what
    :func:`knee_tf.phantom.render.paint` paints, so the renderer knows where each texture goes."""
    sig = tissue_signals(site)
    return {t: (w, f) + tuple(1.0 if t == c else 0.0 for c in TEXTURE_CHANNELS)
            for t, (w, f) in sig.items()}


def fat_phase(site: SiteProfile) -> float:
    """Chemical-shift phase of fat relative to water at the echo (radians)."""
    df_hz = FAT_SHIFT_PPM * GAMMA_MHZ_PER_T * site.field_strength_t
    return float(-2 * np.pi * df_hz * site.te_ms * 1e-3)


def choose(rng: np.random.Generator, options: tuple[tuple[object, float], ...]):
    """Pick one value from ``((value, probability), ...)``."""
    p = np.array([w for _, w in options], dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))][0]

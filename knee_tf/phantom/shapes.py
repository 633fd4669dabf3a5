"""Appearance v3's soft-tissue and metaphyseal outlines (issue 28): smooth, patient-variable shapes in
place of v2's circular limb, fat-filled interior and straight cones.

What changes, and why (``docs/phantom.md``, *Appearance v3*):

* **oval limb section**: at the knee the section is wider medio-laterally than deep (the femoral
  condyles span about 75-80 mm from side to side but 60-65 mm front to back, and the soft tissue
  wraps them); v2's skin is nearly a circle. v3 widens the skin medio-laterally by a per-patient
  factor (:data:`ML_WIDEN`) at the joint, fading linearly to none at the far ends of the thigh and
  calf pieces, so it stays a leg;
* **a smooth, patient-variable outline**: the radius of the skin varies with the angle around the
  limb by a few smooth harmonics (2nd-4th) of random phase, only outwards (:class:`LobedCylinder`),
  so nothing that lay inside v2's skin pokes out;
* **muscle-filled limb**: in a real thigh and calf the muscle compartments are packed edge to edge
  and fat lies between them only as thin fascial planes; v2 filled the limb with fat and floated
  muscle islands in it. v3 fills the inside of the subcutaneous fat with muscle and wraps every muscle
  belly in a thin fat plane (:data:`FASCIA_MM`, per patient), drawn where one belly meets another;
* **flared metaphyses**: the cortex widens from the shaft towards the condyles and the plateau along a
  concave curve (a power of the distance along the bone, :data:`FLARE_POWER`), not a straight cone.

Nothing here touches the structures that define the labels (:mod:`knee_tf.phantom.labels`: condyles,
notch, plateau, fibular head, patella): v3's labels are v2's. The draws come from their own stream
(``SeedSequence([seed, 5, patient])``), so v2's streams are unchanged and a patient keeps one shape
in all of their exams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knee_tf.phantom.anatomy import Knee, Pose, Structure, TaperedCylinder, build_knee

ML_WIDEN = (1.06, 1.22)  # medio-lateral / antero-posterior widening of the skin at the joint
LOBE_AMPLITUDE = (0.02, 0.07)  # outward bulge of the skin's harmonics, share of the radius
HARMONICS = (2, 3, 4)
FASCIA_MM = (1.0, 2.0)  # intermuscular fat plane around a muscle belly
FLARE_POWER = 2.0  # metaphyseal semi-axes: narrow + (wide - narrow) * t ** power
METAPHYSES = ("femoral metaphysis", "tibial metaphysis")
#: muscle fills the limb above THIGH_FILL_MM and below CALF_FILL_MM (knee-local z): the vasti end
#: at the upper pole of the patella and the gastrocnemius and soleus bellies below the plateau;
#: around the joint line lie tendons, capsule, retinacula and fat (v2's interior, with its muscles)
THIGH_FILL_MM, CALF_FILL_MM = 20.0, -20.0
FILL_DOME_MM, FILL_TIP, FILL_DOME_POWER = 20.0, 0.3, 0.5  # the fill's rounded end towards the joint
JOINT_HALF_MM, LEG_END_MM = 15.0, 260.0  # full widening within 15 mm of the joint, none at 260 mm


@dataclass(frozen=True)
class LobedCylinder:
    """A tapered elliptic cylinder along canonical z whose radius is modulated around its axis.

    ``z0``/``z1``, ``semi0``/``semi1`` (a along x, b along y, mm) and ``open_caps`` as
    :class:`knee_tf.phantom.anatomy.TaperedCylinder`; the semi-axes run from ``semi0`` to ``semi1``
    as ``t ** power`` (t = 0 at ``z0``, 1 at ``z1``; power 1 is the linear taper, > 1 a concave
    flare). ``lobes``: (k, amplitude, phase) harmonics; the radius at elliptic angle theta is
    ``1 + sum(amplitude * (cos(k theta - phase) + 1) / 2)``, always >= 1 (it only bulges out);
    k >= 1.
    """

    z0: float
    z1: float
    semi0: tuple[float, float]
    semi1: tuple[float, float]
    open_caps: bool = False
    power: float = 1.0
    lobes: tuple[tuple[int, float, float], ...] = ()

    def radius(self, u, v):
        """The modulation (>= 1) at the elliptic coordinates (u, v) = (x / a, y / b), whose angle
        is theta; cos(k theta) and sin(k theta) come from powers of (u + i v) / |u + i v| (no
        trigonometric calls: this runs on every pixel of the skin)."""
        rho = np.sqrt(u * u + v * v)
        np.maximum(rho, np.asarray(1e-12, rho.dtype), out=rho)
        c1, s1 = u / rho, v / rho
        ck, sk, k_now = c1, s1, 1
        r = np.ones_like(u)
        for k, amp, phase in sorted(self.lobes):
            while k_now < k:
                ck, sk, k_now = ck * c1 - sk * s1, sk * c1 + ck * s1, k_now + 1
            half = np.asarray(0.5 * amp, u.dtype)
            r += half * (ck * np.asarray(np.cos(phase), u.dtype) + sk * np.asarray(np.sin(phase), u.dtype)) + half
        return r

    def sdf_mm(self, q):
        """Approximate signed distance (mm, < 0 inside) at canonical points q (3, ...), q's dtype:
        the elliptic cylinder's distance, computed on the point scaled radially by the modulation and
        scaled back (exact for no lobes; within a few per cent for bulges of a few per cent)."""
        dt = q.dtype
        qz = q[2]
        if self.semi0 == self.semi1:
            a, b = (np.asarray(v, dt) for v in self.semi0)
        else:
            t = (qz - np.asarray(self.z0, dt)) * np.asarray(1.0 / (self.z1 - self.z0), dt)
            np.clip(t, 0.0, 1.0, out=t)
            if self.power != 1.0:
                t **= np.asarray(self.power, dt)
            a = np.asarray(self.semi0[0], dt) + t * np.asarray(self.semi1[0] - self.semi0[0], dt)
            b = np.asarray(self.semi0[1], dt) + t * np.asarray(self.semi1[1] - self.semi0[1], dt)
        u, v = q[0] / a, q[1] / b
        r = None
        if self.lobes:
            r = self.radius(u, v)
            u /= r
            v /= r
        k0 = np.sqrt(u * u + v * v)
        u /= a
        v /= b
        k1 = np.sqrt(u * u + v * v)
        np.maximum(k1, np.asarray(1e-9, dt), out=k1)
        d = k0 - np.asarray(1.0, dt)
        d *= k0
        d /= k1
        if r is not None:
            d *= r
        d_z = np.maximum(np.asarray(self.z0, dt) - qz, qz - np.asarray(self.z1, dt))
        if self.open_caps:
            return np.where(d_z > 0, np.asarray(1e4, dt), d)
        return np.maximum(d, d_z, out=d)

    def bulge(self) -> float:
        """The largest radial modulation (>= 1)."""
        return 1.0 + sum(amp for _, amp, _ in self.lobes)

    def support(self, m: np.ndarray) -> float:
        """Support of a bounding cylinder: the wider end's section grown by :meth:`bulge`, over the
        whole z range (exact for a constant section without lobes)."""
        a, b = max(self.semi0[0], self.semi1[0]), max(self.semi0[1], self.semi1[1])
        return float(max(m[2] * self.z0, m[2] * self.z1) + self.bulge() * np.hypot(a * m[0], b * m[1]))


@dataclass(frozen=True)
class ShapeDraw:
    """One patient's v3 outline parameters: medio-lateral widening of the skin at the joint,
    the skin's harmonics ((k, amplitude, phase), ...) and the intermuscular fat plane (mm)."""

    ml_widen: float
    lobes: tuple[tuple[int, float, float], ...]
    fascia_mm: float


def sample_shape(rng: np.random.Generator) -> ShapeDraw:
    """Draw one patient's :class:`ShapeDraw` (always the same number of draws)."""
    ml = float(rng.uniform(*ML_WIDEN))
    amps = rng.uniform(0.0, 1.0, len(HARMONICS))
    total = float(rng.uniform(*LOBE_AMPLITUDE))
    phases = rng.uniform(0.0, 2 * np.pi, len(HARMONICS))
    amps = amps / max(float(amps.sum()), 1e-9) * total
    lobes = tuple((int(k), float(a), float(p)) for k, a, p in zip(HARMONICS, amps, phases, strict=True))
    return ShapeDraw(ml, lobes, float(rng.uniform(*FASCIA_MM)))


def patient_shape(seed: int, patient_index: int) -> ShapeDraw:
    """The patient's :class:`ShapeDraw` from its own stream ``SeedSequence([seed, 5, patient])``."""
    return sample_shape(np.random.default_rng(np.random.SeedSequence([seed, 5, patient_index])))


def widening(z: float, ml_widen: float) -> float:
    """The skin's medio-lateral factor at knee-local height ``z`` (mm): ``ml_widen`` within
    :data:`JOINT_HALF_MM` of the joint line, falling linearly to 1 at :data:`LEG_END_MM`."""
    u = np.clip(1.0 - (abs(z) - JOINT_HALF_MM) / (LEG_END_MM - JOINT_HALF_MM), 0.0, 1.0)
    return float(1.0 + (ml_widen - 1.0) * u)


def _skin(s: Structure, shape: ShapeDraw) -> Structure:
    """v2's skin piece as an oval, lobed outline (the same layers: skin, subcutaneous fat, fat).
    Its semi-axes are linear in z, so the widening is set at the piece's two ends
    (:func:`widening`: the pieces meet with equal semi-axes)."""
    c = s.shape
    w0, w1 = widening(c.z0, shape.ml_widen), widening(c.z1, shape.ml_widen)
    lobed = LobedCylinder(c.z0, c.z1, (c.semi0[0] * w0, c.semi0[1]), (c.semi1[0] * w1, c.semi1[1]),
                          c.open_caps, 1.0, shape.lobes)
    return Structure(s.name, s.tissue, lobed, s.origin, s.linear, s.scale, s.report, s.layers)


def _fills(skin: Structure, shape: ShapeDraw, pose: Pose) -> list[Structure]:
    """Muscle filling the skin piece's inside below the subcutaneous fat where the thigh's and the
    calf's muscle bellies lie (:data:`THIGH_FILL_MM` up, :data:`CALF_FILL_MM` down), each starting
    with a rounded end (:data:`FILL_DOME_MM` long) towards the joint. Knee-local z, canonical mm."""
    c = skin.shape
    inset = pose.fat_mm / pose.scale + 1.5 / pose.scale

    def semi(z):
        t = (z - c.z0) / (c.z1 - c.z0)
        return tuple(max(c.semi0[i] + t * (c.semi1[i] - c.semi0[i]) - inset, 1.0) for i in (0, 1))

    out = []
    for lo, hi, start, sign in ((THIGH_FILL_MM, 1e9, THIGH_FILL_MM, 1), (-1e9, CALF_FILL_MM, CALF_FILL_MM, -1)):
        z0, z1 = max(c.z0, lo), min(c.z1, hi)
        if z1 - z0 < 1.0:
            continue
        dome_end = start + sign * FILL_DOME_MM
        pieces = []
        if lo <= dome_end <= hi and c.z0 <= start <= c.z1:  # the rounded end: narrow at the joint side
            a, b = sorted((start, dome_end))
            tip = tuple(FILL_TIP * v for v in semi(start))
            pieces.append(LobedCylinder(a, b, tip if sign > 0 else semi(a), semi(b) if sign > 0 else tip,
                                        False, FILL_DOME_POWER if sign > 0 else 1 / FILL_DOME_POWER,
                                        c.lobes))
            z0, z1 = (max(z0, dome_end), z1) if sign > 0 else (z0, min(z1, dome_end))
        if z1 - z0 >= 1.0:
            pieces.append(LobedCylinder(z0, z1, semi(z0), semi(z1), True, 1.0, c.lobes))
        out += [Structure("muscle fill", "muscle", sh, skin.origin, skin.linear, skin.scale, False)
                for sh in pieces]
    return out


def _belly(s: Structure, shape: ShapeDraw) -> Structure:
    """A muscle belly wrapped in its intermuscular fat plane: painted as fat, muscle inside."""
    return Structure(s.name, "fat", s.shape, s.origin, s.linear, s.scale, s.report,
                     ((shape.fascia_mm, "muscle", None),))


def _flared(s: Structure) -> Structure:
    """A metaphysis (cortex or its marrow) with a concave flare instead of a straight cone."""
    c = s.shape
    if c.semi0[0] > c.semi1[0]:  # wide end at z0 (the femur's): flare measured from z1 downwards
        flare = LobedCylinder(-c.z1, -c.z0, c.semi1, c.semi0, c.open_caps, FLARE_POWER)
        lin = s.linear @ np.diag([1.0, -1.0, -1.0])  # canonical z (and y, to stay a rotation) flipped
        return Structure(s.name, s.tissue, flare, s.origin, lin, s.scale, s.report, s.layers)
    flare = LobedCylinder(c.z0, c.z1, c.semi0, c.semi1, c.open_caps, FLARE_POWER)
    return Structure(s.name, s.tissue, flare, s.origin, s.linear, s.scale, s.report, s.layers)


def build_knee_v3(pose: Pose, shape: ShapeDraw) -> Knee:
    """:func:`knee_tf.phantom.anatomy.build_knee` with v3's outlines: the same structures in the same
    order, the index leg's skin, muscle bellies and metaphyses replaced (module docstring)."""
    knee = build_knee(pose)
    out = []
    for s in knee.structures:
        if s.name == "skin" and isinstance(s.shape, TaperedCylinder):
            s = _skin(s, shape)
            out += [s] + _fills(s, shape, pose)
            continue
        if s.tissue == "muscle":
            s = _belly(s, shape)
        elif s.name in METAPHYSES and isinstance(s.shape, TaperedCylinder):
            s = _flared(s)
        out.append(s)
    knee.structures = out
    return knee

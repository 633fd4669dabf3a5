"""A 3D knee as analytic convex primitives, posed per patient in LPS patient coordinates (mm).

Knee-local frame (a right knee, before pose): ``x`` medial (+), ``y`` posterior (+), ``z`` superior
(+), origin at the centre of the tibiofemoral joint line. The femur segment (femur, patella, thigh
soft tissue) and the tibia segment (tibia, fibula, calf soft tissue) each get half the flexion angle,
so a flexed knee bends at the joint; then the whole leg gets varus/valgus, internal/external
rotation, size scaling, left/right mirroring and an offset in the coil.

Every structure is one convex primitive (ellipsoid, tapered elliptic cylinder, meniscal wedge) with

* ``sdf_mm(q)``: an approximate signed distance (mm, < 0 inside) at canonical points ``q``;
* ``support(m)``: the support function ``max_{q in shape} m . q`` (exact for ellipsoids and tapered
  elliptic cylinders; a bounding cylinder for the menisci), which gives the exact extent of a posed
  structure along any patient direction. Extents drive the label rules, the ``anatomy`` column and
  the culling of pixels outside a structure's footprint in a slice.

Structures are painted in list order (later ones cover earlier ones), so a shape lists its tissue and
the painter builds unions and cut-outs (marrow inside cortex, fat in the intercondylar notch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ----------------------------------------------------------------------------------------------
# canonical primitives: ``sdf_mm(q)`` takes canonical points stacked on axis 0, (3, ...) float32


def _column(values, q: np.ndarray) -> np.ndarray:
    """Python numbers as a (len(values), 1, ...) array of ``q``'s dtype, to broadcast against
    ``q[:len(values)]`` (each rounded once, as a Python scalar in an operation with ``q`` is)."""
    return np.asarray(values, dtype=q.dtype).reshape((len(values),) + (1,) * (q.ndim - 1))


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid centred at the canonical origin with semi-axes ``semi`` (mm, (3,))."""

    semi: tuple[float, float, float]

    def sdf_mm(self, q):
        # float32 q stays float32 (Python-float semi-axes); in-place steps, same rounding as
        # x = qx / a, k0 = sqrt(x * x + y * y + z * z), x = x / a again, k1 likewise
        a = _column(self.semi, q)
        u = q / a
        sq = u * u
        k0 = sq[0] + sq[1]
        k0 += sq[2]
        np.sqrt(k0, out=k0)
        u /= a
        np.multiply(u, u, out=sq)
        k1 = sq[0] + sq[1]
        k1 += sq[2]
        np.sqrt(k1, out=k1)
        np.maximum(k1, 1e-9, out=k1)
        d = k0 - 1.0
        d *= k0
        d /= k1
        return d

    def support(self, m: np.ndarray) -> float:
        return float(np.sqrt(np.sum((np.asarray(self.semi) * m) ** 2)))


@dataclass(frozen=True)
class TaperedCylinder:
    """Elliptic cylinder along canonical z from ``z0`` to ``z1`` (mm), semi-axes linear in z.

    ``semi0``/``semi1``: (a, b) semi-axes along canonical x and y at ``z0`` and ``z1``.
    ``open_caps``: the distance ignores the end caps (a cut, not a surface), so inner layers of a
    layered structure (skin -> fat) do not draw a line across a limb where two pieces meet.
    """

    z0: float
    z1: float
    semi0: tuple[float, float]
    semi1: tuple[float, float]
    open_caps: bool = False

    def sdf_mm(self, q):
        qz = q[2]
        t = (qz - self.z0) / (self.z1 - self.z0)
        np.maximum(t, 0.0, out=t)  # clip to [0, 1] (no NaN here; a zero's sign does not matter)
        np.minimum(t, 1.0, out=t)
        ab = _column(self.semi0, q)  # (2, ...) semi-axes at t: a along x, b along y
        ab = ab + t * _column([self.semi1[i] - self.semi0[i] for i in (0, 1)], q)
        u = q[:2] / ab
        np.square(u, out=u)
        k0 = u[0] + u[1]
        np.sqrt(k0, out=k0)
        np.multiply(ab, ab, out=ab)
        np.divide(q[:2], ab, out=u)
        np.square(u, out=u)
        k1 = u[0] + u[1]
        np.sqrt(k1, out=k1)
        np.maximum(k1, 1e-9, out=k1)
        d_r = k0 - 1.0
        d_r *= k0
        d_r /= k1
        d_z = np.maximum(self.z0 - qz, qz - self.z1)
        if self.open_caps:
            return np.where(d_z > 0, np.float32(1e4), d_r)
        return np.maximum(d_r, d_z, out=d_r)

    def support(self, m: np.ndarray) -> float:
        ends = ((self.z0, self.semi0), (self.z1, self.semi1))
        return float(max(m[2] * z + np.hypot(s[0] * m[0], s[1] * m[1]) for z, s in ends))


@dataclass(frozen=True)
class MeniscusWedge:
    """C-shaped wedge: an elliptic ring (outer semi-axes ``rx``, ``ry``; inner edge at ``inner``
    times the outer ellipse), thickness growing from 0 at the inner edge to ``height`` at the rim,
    centred on z = 0; ``gap`` opens the ring towards canonical -y (medial meniscus: wider C)."""

    rx: float
    ry: float
    height: float
    inner: float = 0.5
    gap: float = 0.0

    def sdf_mm(self, q):
        qx, qy, qz = q[0], q[1], q[2]
        rho = np.sqrt((qx / self.rx) ** 2 + (qy / self.ry) ** 2)
        rmin = min(self.rx, self.ry)
        h = 0.5 * self.height * np.clip((rho - self.inner) / (1.0 - self.inner), 0.0, 1.0)
        d = np.maximum((rho - 1.0) * rmin, (self.inner - rho) * rmin)
        d = np.maximum(d, np.abs(qz) - h)
        if self.gap > 0:
            d = np.maximum(d, -(qy / self.ry + 1.0 - self.gap) * rmin)
        return d

    def support(self, m: np.ndarray) -> float:
        return float(abs(m[2]) * 0.5 * self.height + np.hypot(self.rx * m[0], self.ry * m[1]))


# ----------------------------------------------------------------------------------------------
# posed structures


@dataclass(frozen=True)
class Structure:
    """One posed primitive. ``patient = origin + linear @ q`` for canonical points ``q``.

    name: anatomical name (used in the manifest ``anatomy`` column); tissue: key into the site's
    tissue table; linear: (3, 3) = scale * orthogonal (may include a mirror); scale: the uniform
    scale inside ``linear`` (sdf in patient mm = scale * canonical sdf); report: whether the
    structure is listed in ``anatomy`` when a slice cuts it.
    """

    name: str
    tissue: str
    shape: object
    origin: np.ndarray
    linear: np.ndarray
    scale: float
    report: bool = True
    layers: tuple = ()  # ((depth_mm, tissue, name or None), ...): inner shells, e.g. skin -> fat
    inverse: np.ndarray = field(init=False, repr=False, compare=False)
    bbox: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "inverse", np.linalg.inv(self.linear))
        object.__setattr__(self, "bbox", np.array([self.extent(e) for e in np.eye(3)]))

    def axis_extent(self, direction) -> tuple[float, float]:
        """Like :meth:`extent` for ``direction`` = +- a patient axis, from the cached bbox."""
        k = int(np.argmax(np.abs(direction)))
        lo, hi = self.bbox[k]
        return (lo, hi) if direction[k] > 0 else (-hi, -lo)

    def extent(self, n: np.ndarray) -> tuple[float, float]:
        """(min, max) of ``n . p`` over the posed shape; ``n``: (3,) unit patient direction."""
        m = self.linear.T @ n
        c = float(n @ self.origin)
        return c - self.shape.support(-m), c + self.shape.support(m)


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _frame_along(direction: np.ndarray) -> np.ndarray:
    """Orthonormal (3, 3) with third column along ``direction``; first column kept near local x."""
    w = direction / np.linalg.norm(direction)
    ref = np.array([1.0, 0.0, 0.0]) if abs(w[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = ref - (ref @ w) * w
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(w, u), w], axis=1)


@dataclass(frozen=True)
class Pose:
    """Per-patient anatomy and positioning (angles in degrees, lengths in mm)."""

    side: str  # "right" | "left"
    scale: float  # overall size, 0.85-1.15
    flexion_deg: float  # 0-25
    rotation_deg: float  # internal/external rotation about the leg axis, +-15
    varus_deg: float  # varus/valgus, +-5
    offset_mm: tuple[float, float, float]  # knee centre in the coil (patient LPS), +-25 each
    fat_mm: float  # subcutaneous fat thickness, 3-20
    muscle: float  # muscle bulk factor, 0.85-1.15
    patella_height: float  # patella alta/baja shift along the femur (mm), +-8
    other_leg_mm: float  # distance of the contralateral knee centre, 160-230 (hard exams 125-160)
    other_leg_scale: float = 1.0  # contralateral leg size relative to this one (hard exams 1-1.25)
    # per-patient shape, independent of the overall size (1 / 0 = the template): the rule
    # boundaries sit on these structures, so their positions cannot be read off a template
    condyle_scale: tuple[float, float] = (1.0, 1.0)  # medial, lateral condyle size, 0.88-1.12 each
    plateau_scale: float = 1.0  # tibial plateau width and depth, 0.9-1.1
    fibula_height: float = 0.0  # fibular head up (+) or down along the tibia (mm), +-7
    patella_scale: float = 1.0  # patella size, 0.85-1.15
    tibial_slope_deg: float = 0.0  # posterior slope of the tibial plateau, 0-12


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draw one patient's pose from the ranges documented in :class:`Pose`."""
    return Pose(
        side="right" if rng.random() < 0.55 else "left",
        scale=float(rng.uniform(0.85, 1.15)),
        flexion_deg=float(rng.uniform(0.0, 25.0)),
        rotation_deg=float(rng.uniform(-15.0, 15.0)),
        varus_deg=float(rng.uniform(-5.0, 5.0)),
        offset_mm=tuple(float(v) for v in rng.uniform(-25.0, 25.0, size=3)),
        fat_mm=float(rng.uniform(3.0, 20.0)),
        muscle=float(rng.uniform(0.85, 1.15)),
        patella_height=float(rng.uniform(-8.0, 8.0)),
        other_leg_mm=float(rng.uniform(160.0, 230.0)),
    )


class Knee:
    """A posed knee: ``structures`` in painting order, plus the segment transforms.

    Build with :func:`build_knee`. ``centre`` is the joint-line centre in patient mm.
    """

    def __init__(self, pose: Pose):
        self.pose = pose
        s = pose.scale
        mirror = np.diag([-1.0 if pose.side == "left" else 1.0, 1.0, 1.0])
        # right knee: medial is patient left (+x in LPS); a left knee mirrors x.
        glob = _rot_z(np.radians(pose.rotation_deg)) @ _rot_y(np.radians(pose.varus_deg))
        half = np.radians(pose.flexion_deg) / 2.0
        self.centre = np.asarray(pose.offset_mm, dtype=np.float64)
        self.segments = {
            "femur": s * glob @ _rot_x(-half) @ mirror,
            "tibia": s * glob @ _rot_x(+half) @ mirror,
        }
        self.structures: list[Structure] = []

    def to_patient(self, segment: str, local) -> np.ndarray:
        """Knee-local point(s) (..., 3) of a segment -> patient mm."""
        return self.centre + np.asarray(local, dtype=np.float64) @ self.segments[segment].T

    def add(self, name, tissue, shape, segment, centre=(0, 0, 0), axes=None, report=True,
            layers=()):
        """Place a canonical shape at knee-local ``centre`` of ``segment``; ``axes``: (3, 3)
        local frame of the shape (columns = canonical axes); default the segment axes."""
        lin = self.segments[segment] @ (np.eye(3) if axes is None else np.asarray(axes))
        origin = self.to_patient(segment, centre)
        self.structures.append(Structure(name, tissue, shape, origin, lin, self.pose.scale, report,
                                         tuple(layers)))

    def add_between(self, name, tissue, p0, seg0, p1, seg1, semi0, semi1, report=True):
        """A tapered cylinder from local point ``p0`` (segment ``seg0``) to ``p1`` (``seg1``),
        e.g. a ligament or tendon that crosses the joint."""
        a, b = self.to_patient(seg0, p0), self.to_patient(seg1, p1)
        length = float(np.linalg.norm(b - a))
        frame = _frame_along(b - a)
        s = self.pose.scale
        shape = TaperedCylinder(0.0, length / s, tuple(semi0), tuple(semi1))
        self.structures.append(Structure(name, tissue, shape, a, s * frame, s, report))

    def __iter__(self):
        return iter(self.structures)


def build_knee(pose: Pose) -> Knee:
    """All structures of one posed knee, in painting order (see module docstring for the frame)."""
    k = Knee(pose)
    fat, mus = pose.fat_mm / pose.scale, pose.muscle
    cyl = TaperedCylinder
    along_y = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # canonical z -> local y

    # contralateral leg (soft tissue, shafts and its own knee joint), medial to this knee, mostly
    # outside a small FOV; in hard exams close and bigger (a knee-like irrelevant neighbour)
    ox = pose.other_leg_mm / pose.scale
    g = pose.other_leg_scale
    for seg, z0, z1, s0, s1 in (("femur", -20, 260, (50, 46), (68, 64)),
                                ("tibia", -260, 20, (40, 42), (48, 46))):
        k.add("contralateral leg", "skin", cyl(z0, z1, (g * s0[0] + fat, g * s0[1] + fat),
                                               (g * s1[0] + fat, g * s1[1] + fat), True), seg,
              (ox, 4, 0), report=False,
              layers=((1.5, "fat", None), (pose.fat_mm, "muscle", None)))
    other_bones = [("femur", cyl(40, 260, (15 * g, 15 * g), (15 * g, 15 * g)), (ox, 2, 0), 4.0),
                   ("femur", cyl(14, 44, (34 * g, 25 * g), (16 * g, 16 * g)), (ox, 2, 0), 1.5),
                   ("femur", Ellipsoid((14 * g, 28 * g, 20 * g)), (ox + 20 * g, 8, 22 * g), 1.5),
                   ("femur", Ellipsoid((14 * g, 26 * g, 20 * g)), (ox - 20 * g, 7, 22 * g), 1.5),
                   ("tibia", cyl(-26 * g, -3, (36 * g, 25 * g), (36 * g, 25 * g)), (ox, 4, 0), 1.5),
                   ("tibia", cyl(-260, -24 * g, (14 * g, 14 * g), (30 * g, 22 * g)), (ox, 5, 0),
                    3.0)]
    for seg, shape, c, _t in other_bones:
        k.add("contralateral leg", "cortex", shape, seg, c, report=False)
    for seg, shape, c, t in other_bones:
        k.add("contralateral leg", "marrow", _shrunk(shape, t), seg, c, report=False)

    # leg outline: skin, subcutaneous fat, then intermuscular fat as the default interior
    thigh = ((-15, (48, 46)), (260, (66, 64)))
    calf_up = ((-110, (48, 56)), (15, (47, 44)))
    calf_lo = ((-260, (34, 36)), (-110, (48, 56)))
    for seg, ((z0, s0), (z1, s1)) in (("femur", thigh), ("tibia", calf_up), ("tibia", calf_lo)):
        k.add("skin", "skin", cyl(z0, z1, (s0[0] + fat, s0[1] + fat), (s1[0] + fat, s1[1] + fat),
                                  True), seg, (0, 4, 0), layers=((1.5, "fat", "subcutaneous fat"), (pose.fat_mm, "fat", None)))

    # muscles
    k.add("quadriceps", "muscle", cyl(34, 260, (40 * mus, 20 * mus), (60 * mus, 44 * mus)),
          "femur", (0, -8, 0))
    k.add("vastus medialis", "muscle", Ellipsoid((20 * mus, 24 * mus, 55)), "femur", (30, -4, 62))
    k.add("vastus lateralis", "muscle", Ellipsoid((16 * mus, 22 * mus, 60)), "femur", (-32, -2, 80))
    k.add("hamstrings", "muscle", cyl(10, 260, (13 * mus, 13 * mus), (24 * mus, 24 * mus)),
          "femur", (30, 30, 0))
    k.add("hamstrings", "muscle", cyl(5, 260, (11 * mus, 12 * mus), (22 * mus, 22 * mus)),
          "femur", (-31, 27, 0))
    k.add("gastrocnemius medial head", "muscle",
          cyl(-200, 26, (20 * mus, 16 * mus), (13 * mus, 11 * mus)), "tibia", (18, 34, 0))
    k.add("gastrocnemius medial head", "muscle", Ellipsoid((22 * mus, 20 * mus, 70)), "tibia",
          (17, 38, -95))
    k.add("gastrocnemius lateral head", "muscle",
          cyl(-180, 24, (17 * mus, 14 * mus), (12 * mus, 10 * mus)), "tibia", (-18, 34, 0))
    k.add("soleus", "muscle", cyl(-260, -40, (30 * mus, 15 * mus), (33 * mus, 14 * mus)),
          "tibia", (0, 24, 0))
    k.add("tibialis anterior", "muscle", cyl(-260, -28, (11 * mus, 11 * mus), (15 * mus, 13 * mus)),
          "tibia", (-22, -8, 0))
    k.add("peroneus", "muscle", cyl(-260, -35, (10 * mus, 10 * mus), (12 * mus, 11 * mus)),
          "tibia", (-42, 8, 0))
    k.add("popliteus", "muscle", Ellipsoid((26, 7, 12)), "tibia", (0, 24, -30))

    # fat pads and vessels
    k.add("popliteal fat", "fat", Ellipsoid((18, 14, 38)), "femur", (0, 34, 15))
    k.add("Hoffa fat pad", "fat", Ellipsoid((20, 10, 13)), "tibia", (0, -24, 0))
    k.add("prefemoral fat", "fat", Ellipsoid((16, 6, 16)), "femur", (0, -30, 58))
    for seg, z0, z1 in (("femur", -5, 260), ("tibia", -260, 5)):
        k.add("popliteal artery", "artery", cyl(z0, z1, (3.5, 3.5), (3.5, 3.5)), seg, (-3, 38, 0))
        k.add("popliteal vein", "vein", cyl(z0, z1, (5, 4.5), (5, 4.5)), seg, (5, 42, 0))
    # geniculate arteries branching off the popliteal artery around the condyles, and fat strands
    # that branch from the popliteal fat along them
    for name, p0, p1, seg in (("superior genicular artery", (-3, 38, 22), (30, 20, 34), "femur"),
                              ("superior genicular artery", (-3, 38, 22), (-32, 22, 36), "femur"),
                              ("inferior genicular artery", (-3, 38, -14), (28, 18, -30), "tibia"),
                              ("inferior genicular artery", (-3, 38, -14), (-30, 20, -10), "tibia"),
                              ("sural artery", (-3, 38, -6), (16, 44, -60), "tibia")):
        k.add_between(name, "fat", p0, seg, p1, seg, (3.0, 3.0), (1.8, 1.8), report=False)
        k.add_between(name, "artery", p0, seg, p1, seg, (1.3, 1.3), (0.9, 0.9), report=False)
    # joint fluid: suprapatellar bursa and a thin joint recess
    k.add("suprapatellar bursa", "fluid", Ellipsoid((24, 3.5, 20)), "femur", (0, -25, 52))
    k.add("joint fluid", "fluid", Ellipsoid((40, 30, 4)), "tibia", (0, 4, 0), report=False)

    # femur: cartilage, cortex, marrow; notch cut-out
    # a bigger or smaller condyle keeps its articular (distal) surface on the joint line
    condyles = tuple((name, (c[0], c[1], c[2] + a[2] * (f - 1.0)), tuple(v * f for v in a))
                     for (name, c, a), f in zip((("medial femoral condyle", (21, 9, 24), (15, 30, 21)),
                                                 ("lateral femoral condyle", (-21, 7, 24), (15, 28, 21))),
                                                pose.condyle_scale, strict=True))
    trochlea = (((-13, -13, 33), (16, 15, 19)), ((13, -11, 31), (14, 13, 17)))
    for _name, c, a in condyles:
        k.add("femoral cartilage", "cartilage", Ellipsoid(tuple(v + 2.5 for v in a)), "femur", c,
              report=False)
    for c, a in trochlea:
        k.add("trochlear groove", "cartilage", Ellipsoid(tuple(v + 2.5 for v in a)), "femur", c)
    femur_parts = [("femoral shaft", cyl(60, 270, (14, 14), (14, 14)), (0, -4, 0), 4.5),
                   ("femoral metaphysis", cyl(18, 66, (37, 27), (15, 15)), (0, 0, 0), 1.5)]
    femur_parts += [(n, Ellipsoid(a), c, 1.5) for n, c, a in condyles]
    femur_parts += [("trochlear groove", Ellipsoid(a), c, 1.5) for c, a in trochlea]
    for name, shape, c, _ in femur_parts:
        k.add(name, "cortex", shape, "femur", c)
    for name, shape, c, t in femur_parts:
        k.add(name, "marrow", _shrunk(shape, t), "femur", c, report=False)
    # physeal scar: a thin low-signal line across the metaphyseal marrow (the closed growth plate);
    # it makes a slice 2-4 cm from the joint look joint-like
    k.add("femoral physeal scar", "cortex", Ellipsoid((30, 22, 0.9)), "femur", (0, 2, 40),
          report=False)
    k.add("intercondylar notch", "fat", cyl(-2, 40, (7.5, 13), (8.5, 15)), "femur", (0, 0, 12),
          axes=along_y)

    # patella (rides in the trochlea; with flexion it moves down and back with the femur)
    flex = np.radians(pose.flexion_deg) * 0.8
    rel = np.array([0.0, -46.0, 14.0 + pose.patella_height])
    pc = np.array([0.0, 6.0, 22.0]) + _rot_x(-flex) @ rel
    pax = _rot_x(-flex)
    ps = pose.patella_scale
    k.add("patellar cartilage", "cartilage", Ellipsoid((21 * ps, 11.5 * ps, 19 * ps)), "femur",
          pc + [0, 2, 0], axes=pax, report=False)
    k.add("patella", "cortex", Ellipsoid((22 * ps, 10 * ps, 20 * ps)), "femur", pc, axes=pax)
    k.add("patella", "marrow", Ellipsoid((22 * ps - 1.5, 10 * ps - 1.5, 20 * ps - 1.5)), "femur", pc,
          axes=pax, report=False)
    top = pc + pax @ np.array([0, -2.0, 19.0 * ps])
    k.add_between("quadriceps tendon", "tendon", top, "femur", top + [0, 10, 60], "femur",
                  (16, 4), (22, 6))
    bottom = pc + pax @ np.array([0, -3.0, -18.0 * ps])
    k.add_between("patellar tendon", "tendon", bottom, "femur", (0, -26, -34), "tibia",
                  (12, 3.5), (13, 3.5))

    # tibia: cartilage, cortex, marrow (plateau with two compartments + eminence)
    slope = _rot_x(-np.radians(pose.tibial_slope_deg))
    k.add("tibial cartilage", "cartilage", cyl(-6, -0.5, (36 * pose.plateau_scale, 24 * pose.plateau_scale),
                                               (36 * pose.plateau_scale, 24 * pose.plateau_scale)), "tibia", (0, 4, 0), axes=slope,
          report=False)
    pl = pose.plateau_scale
    tibia_parts = [("tibial plateau", cyl(-28, -3, (38 * pl, 26 * pl), (38 * pl, 26 * pl)), (0, 4, 0), 1.5),
                   ("intercondylar eminence", Ellipsoid((6, 11, 6)), (0, 3, -3), 1.0),
                   ("tibial metaphysis", cyl(-78, -26, (16, 16), (36, 25)), (0, 5, 0), 1.5),
                   ("tibial shaft", cyl(-270, -70, (13, 13), (15.5, 15.5)), (0, 7, 0), 4.5),
                   ("tibial tuberosity", Ellipsoid((10, 6, 14)), (0, -22, -34), 1.5),
                   ("fibular head", Ellipsoid((10, 10, 11)), (-38 * pl, 18, -22 + pose.fibula_height), 1.5),
                   ("fibular shaft", cyl(-270, -28, (7, 7), (7, 7)), (-37, 20, 0), 2.0)]
    # the plateau slopes down towards the back (the posterior tibial slope), about its top centre
    sloped = ("tibial plateau", "intercondylar eminence")
    for name, shape, c, _ in tibia_parts:
        k.add(name, "cortex", shape, "tibia", c, axes=slope if name in sloped else None)
    for name, shape, c, t in tibia_parts:
        k.add(name, "marrow", _shrunk(shape, t), "tibia", c, report=False,
              axes=slope if name in sloped else None)
    k.add("tibial physeal scar", "cortex", Ellipsoid((28, 20, 0.9)), "tibia", (0, 5, -22),
          report=False)

    # menisci (in the tibial frame, on the cartilage), cruciate and collateral ligaments
    k.add("medial meniscus", "meniscus", MeniscusWedge(15, 22, 7, 0.5, 0.35), "tibia",
          (20, 5, 2.5))
    k.add("lateral meniscus", "meniscus", MeniscusWedge(14, 16, 7, 0.45, 0.0), "tibia",
          (-20, 4, 2.5))
    k.add_between("anterior cruciate ligament", "ligament", (-10, 18, 16), "femur", (-2, -6, 0),
                  "tibia", (4, 4), (5, 5))
    k.add_between("posterior cruciate ligament", "ligament", (9, 4, 16), "femur", (0, 24, -8),
                  "tibia", (5.5, 5.5), (6, 6))
    k.add_between("medial collateral ligament", "ligament", (36, 6, 30), "femur", (38, 4, -50),
                  "tibia", (2.5, 9), (2.5, 8))
    k.add_between("lateral collateral ligament", "ligament", (-37, 10, 26), "femur",
                  (-40, 18, -18), "tibia", (3, 3), (3, 3))
    return k


def _shrunk(shape, t: float):
    """The same primitive shrunk inwards by ``t`` mm (marrow inside a cortex)."""
    if isinstance(shape, Ellipsoid):
        return Ellipsoid(tuple(max(v - t, 0.5) for v in shape.semi))
    return TaperedCylinder(shape.z0 + t, shape.z1 - t,
                           tuple(max(v - t, 0.5) for v in shape.semi0),
                           tuple(max(v - t, 0.5) for v in shape.semi1))


#: structures whose extents define the label rules (see :mod:`knee_tf.phantom.labels`)
CONDYLES = ("medial femoral condyle", "lateral femoral condyle")

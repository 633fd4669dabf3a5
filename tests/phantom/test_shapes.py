"""Appearance v3's outlines (knee_tf/phantom/shapes.py): the lobed primitive is a closed, smooth
outline that only bulges outwards; the patient's shape is deterministic per seed; the label-defining
structures are v2's; the rigid knee coil's loops and position."""

import numpy as np
import pytest

from knee_tf.phantom import appearance as look
from knee_tf.phantom import shapes
from knee_tf.phantom.anatomy import TaperedCylinder, build_knee, sample_pose
from knee_tf.phantom.labels import relevant_interval
from knee_tf.phantom.sites import COILS


def _outline(shape, z=0.0, n=720):
    """Zero crossing of sdf along rays from the axis: radius (n,) at angles 0..2pi (mm)."""
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.linspace(0.0, 120.0, 4801)
    q = np.stack([np.cos(ang)[:, None] * rad, np.sin(ang)[:, None] * rad,
                  np.full((n, len(rad)), z)]).astype(np.float32)
    d = shape.sdf_mm(q)
    first_out = np.argmax(d > 0, axis=1)
    assert (d[np.arange(n), first_out] > 0).all() and (first_out > 0).all()  # closed: every ray leaves
    return ang, rad[first_out]


def test_without_lobes_the_lobed_cylinder_is_the_tapered_cylinder():
    q = np.random.default_rng(0).uniform(-80, 80, (3, 50, 40)).astype(np.float32)
    a = TaperedCylinder(-10, 60, (40, 30), (50, 45)).sdf_mm(q)
    b = shapes.LobedCylinder(-10, 60, (40, 30), (50, 45)).sdf_mm(q)
    assert b.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_a_lobed_outline_is_closed_smooth_and_only_bulges_outwards():
    lobes = ((2, 0.03, 0.4), (3, 0.02, 2.0), (4, 0.015, 5.0))
    base = shapes.LobedCylinder(-50, 50, (50, 44), (50, 44))
    lobed = shapes.LobedCylinder(-50, 50, (50, 44), (50, 44), lobes=lobes)
    ang, r0 = _outline(base)
    _, r1 = _outline(lobed)
    assert (r1 >= r0 - 0.05).all()  # never inside the ellipse
    assert (r1 <= r0 * lobed.bulge() + 0.05).all()
    assert (r1 - r0).max() > 1.0  # and it does bulge
    # smooth: the radius changes by well under a pixel between rays half a degree apart
    assert np.abs(np.diff(np.r_[r1, r1[0]])).max() < 0.5
    # the approximate distance is metric near the outline (layers at depth keep their thickness)
    inside = np.stack([np.cos(ang) * (r1 - 5), np.sin(ang) * (r1 - 5), np.zeros_like(ang)]).astype(np.float32)
    assert np.median(lobed.sdf_mm(inside)) == pytest.approx(-5.0, abs=0.6)


def test_the_support_bounds_the_shape():
    sh = shapes.LobedCylinder(-20, 80, (30, 25), (10, 12), power=2.0, lobes=((3, 0.05, 1.0),))
    rng = np.random.default_rng(1)
    q = rng.uniform(-60, 100, (3, 200000)).astype(np.float32)
    inside = q[:, sh.sdf_mm(q) < 0]
    for m in rng.normal(size=(20, 3)):
        m /= np.linalg.norm(m)
        assert (m @ inside).max() <= sh.support(m) + 1e-3


def test_the_patient_shape_is_deterministic_per_seed_and_within_its_ranges():
    a, b, c = shapes.patient_shape(0, 7), shapes.patient_shape(0, 7), shapes.patient_shape(0, 8)
    assert a == b and a != c
    for s in (shapes.patient_shape(0, i) for i in range(50)):
        assert shapes.ML_WIDEN[0] <= s.ml_widen <= shapes.ML_WIDEN[1]
        assert shapes.FASCIA_MM[0] <= s.fascia_mm <= shapes.FASCIA_MM[1]
        assert shapes.LOBE_AMPLITUDE[0] <= sum(x for _, x, _ in s.lobes) <= shapes.LOBE_AMPLITUDE[1]


def test_the_widening_is_full_at_the_joint_and_continuous_along_the_leg():
    assert shapes.widening(0.0, 1.2) == shapes.widening(15.0, 1.2) == pytest.approx(1.2)
    assert shapes.widening(260.0, 1.2) == shapes.widening(-300.0, 1.2) == 1.0
    assert 1.0 < shapes.widening(-110.0, 1.2) < 1.2


@pytest.mark.parametrize("i", range(6))
def test_v3_outlines_keep_the_label_structures_and_the_rule_intervals(i):
    pose = sample_pose(np.random.default_rng(i))
    v2, v3 = build_knee(pose), shapes.build_knee_v3(pose, shapes.patient_shape(0, i))
    for plane in ("axial", "sagittal", "coronal"):
        assert relevant_interval(v2, plane) == relevant_interval(v3, plane)
    names = [s.name for s in v2.structures]
    assert [s.name for s in v3.structures if s.name != "muscle fill"] == names
    label_names = {"medial femoral condyle", "lateral femoral condyle", "intercondylar notch",
                   "tibial plateau", "fibular head", "patella"}
    for a, b in zip(v2.structures, [s for s in v3.structures if s.name != "muscle fill"], strict=True):
        if a.name in label_names:
            assert a.shape == b.shape and np.array_equal(a.linear, b.linear)
    # muscle fills the thigh and calf inside the skin; the bellies carry a fat plane
    assert sum(s.name == "muscle fill" for s in v3.structures) >= 3
    bellies = [s for s in v3.structures if s.name == "quadriceps"]
    assert bellies[0].tissue == "fat" and bellies[0].layers[0][1] == "muscle"


def test_a_rigid_knee_coils_loops_share_its_ring():
    for name in ("HD TRknee PA", "HD TRknee 16ch", "TR Knee 18ch"):
        loop = look.ring_loop_radius(COILS[name])
        assert 30 < loop < 45 < COILS[name].loop_radius_mm
    c = look.tr_coil_centre(np.array([20.0, -10.0, 5.0]))
    assert c[0] == 0 and c[2] == 0 and c[1] == pytest.approx(-10.0 * (1 - look.TR_AP_FREEDOM))


def test_the_modulation_is_the_sum_of_cosines_of_the_elliptic_angle():
    lobes = ((2, 0.03, 0.4), (4, 0.015, 5.0), (3, 0.02, 2.0))
    sh = shapes.LobedCylinder(0, 1, (50, 40), (50, 40), lobes=lobes)
    theta = np.linspace(-np.pi, np.pi, 97)
    want = 1 + sum(a * (np.cos(k * theta - p) + 1) / 2 for k, a, p in lobes)
    np.testing.assert_allclose(sh.radius(2.0 * np.cos(theta), 2.0 * np.sin(theta)), want, atol=1e-12)


def test_v3_shows_no_foam_cushion_under_the_leg():
    from knee_tf.phantom.synth import _pads
    pads = _pads(COILS["HD TRknee PA"], np.zeros(3), np.zeros(3))
    assert {p.name for p in pads} == {"pad", "cushion"}
    assert {p.name for p in look.visible_pads(pads)} == {"pad"}  # gel pads stay, the foam goes

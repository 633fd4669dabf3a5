"""The phantom's appearance versions (issue 28): v2 stays the default; v3's physics pieces on
constructed inputs; v3 keeps the labels and is byte-identical across worker counts."""

import hashlib

import numpy as np
import pandas as pd
import pydicom
import pytest

from knee_tf.phantom import appearance as look
from knee_tf.phantom import synthesize
from knee_tf.phantom.render import Series
from knee_tf.phantom.sites import COILS, SITES
from knee_tf.phantom.synth import synth_record
from knee_tf.study.config import StudyConfig


def _acorr(x, axis):
    a, b = np.moveaxis(x, axis, 0)[:-1].ravel(), np.moveaxis(x, axis, 0)[1:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_the_default_is_v2_and_an_unknown_appearance_is_refused():
    assert StudyConfig().synth_appearance == look.V2 == look.APPEARANCES[0]
    with pytest.raises(ValueError, match="appearance must be one of"):
        StudyConfig(synth_appearance="v9")
    d = StudyConfig().synth_difficulty()
    assert synth_record(3, 0, 64, 0.1, d)["appearance"] == "v2"
    assert synth_record(3, 0, 64, 0.1, d, "v3")["appearance"] == "v3"


def test_noise_added_in_kspace_is_correlated_along_the_phase_direction_only():
    rng = np.random.default_rng(0)
    zero = np.zeros((256, 256), np.complex64)
    half = Series(phase_resolution=0.5)
    for axis in (0, 1):
        mag = look.kspace_with_noise(zero, half, None, 10.0, rng, axis)
        c = look.kspace_with_noise(zero + 1000, half, None, 10.0, rng, axis) - 1000  # ~ Gaussian
        assert _acorr(c, axis) > 0.5 > 0.35 > _acorr(c, 1 - axis)  # phase: sinc of 128 lines
        assert c.std() == pytest.approx(10.0, rel=0.05)  # sigma per pixel, as v2's Rician model
        assert mag.mean() == pytest.approx(10.0 * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh in air


def test_phase_runs_along_columns_in_axial_and_along_rows_otherwise():
    assert [look.phase_direction(p) for p in ("axial", "sagittal", "coronal")] == ["COL", "ROW", "ROW"]


def test_a_transmit_receive_coil_covers_about_plus_minus_95_mm():
    pts = np.array([[0, 0, 0], [0, 0, 50], [0, 0, 95], [0, 0, -110], [190, 0, 0]], float)
    c = look.volume_coil_coverage(pts, np.zeros(3), 95.0)
    assert c[0] == 1 and c[1] > 0.9 and c[2] == pytest.approx(0.3, abs=0.02) and c[3] < 0.2
    assert c[4] == pytest.approx(1 / 8)  # twice the coil radius: (R / r)^3


def test_v3_contrast_at_the_localizer_flip_angle(monkeypatch):
    s7 = look.site_protocol(next(s for s in SITES if s.code == "S7"))
    phase = np.exp(-2j * np.pi * 3.4 * 42.577 * 1.5 * 1.244e-3)

    def ratios():
        sig = look.tissue_channels(s7)
        mag = {t: abs(sig[t][0] + sig[t][1] * phase) for t in ("fat", "muscle", "marrow")}
        return mag["muscle"] / mag["fat"], mag["marrow"] / mag["fat"]

    assert s7.flip_deg == 30
    muscle, marrow = ratios()  # with the slice profile: muscle's flanks at a lower flip count more
    monkeypatch.setattr(look, "ENABLED", frozenset(look.CHANGES) - {"slice_profile"})
    muscle_flat, marrow_flat = ratios()
    assert 0.2 < muscle_flat < 0.35 and marrow_flat < 0.7  # the nominal flip alone (real: muscle 0.16-0.25)
    assert 1.4 < muscle / muscle_flat < 1.7  # long-T1 water gains more from the flanks than fat
    assert marrow == pytest.approx(marrow_flat, rel=0.05)  # marrow is mostly fat


def test_the_slice_profile_is_half_the_flip_at_the_nominal_edges_and_gains_more_for_long_t1(monkeypatch):
    prof = look.slice_profile()
    z = np.linspace(-3, 3, len(prof))
    assert np.interp([-0.5, 0.0, 0.5], z, prof) == pytest.approx([0.5, 1.0, 0.5], abs=0.01)
    s7 = look.site_protocol(next(s for s in SITES if s.code == "S7"))
    gains = [look.profile_gain(s7, t1) for t1 in (260.0, 1000.0, 3000.0)]
    assert 1 < gains[0] < gains[1] < gains[2]  # above the Ernst angle: the flanks give more signal
    monkeypatch.setattr(look, "ENABLED", frozenset(look.CHANGES) - {"slice_profile"})
    assert look.profile_gain(s7, 1000.0) == 1.0


def test_fat_dephases_against_itself_with_its_spectrum_of_peaks(monkeypatch):
    assert sum(look.FAT_PEAK_SHARES) == pytest.approx(1.0, abs=0.002)
    s7 = next(s for s in SITES if s.code == "S7")  # 1.5 T, TE 1.244 ms
    single = complex(np.exp(-2j * np.pi * 3.4 * 42.577 * 1.5 * 1.244e-3))  # main peak at ~97 deg
    assert abs(look.fat_factor(s7) - single) > 0.05
    for site in SITES:  # the peaks spread over 4.4 ppm: never the single peak's magnitude 1
        assert 0.75 < abs(look.fat_factor(site)) < 0.95
    monkeypatch.setattr(look, "ENABLED", frozenset(look.CHANGES) - {"fat_spectrum"})
    assert look.fat_factor(s7) == pytest.approx(single)  # without the change: v2's single peak


def test_thin_fat_and_the_other_leg_outside_a_knee_coil():
    assert look.fat_mm(3.0) == 3.0 and look.fat_mm(20.0) == 10.0 and look.fat_mm(11.5) == 4.75

    class P:
        scale, other_leg_scale, other_leg_mm, offset_mm = 1.0, 1.2, 130.0, (20.0, 0.0, 0.0)
    ring = float(np.max(np.hypot(*COILS["HD TRknee PA"].elements[:, :2].T)))
    assert look.other_leg_mm(P, COILS["HD TRknee PA"]) == pytest.approx(ring + 20 + 72 + 20)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.dcm")):
        h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_v3_keeps_the_labels_and_is_byte_identical_across_worker_counts(tmp_path):
    d = StudyConfig().synth_difficulty()
    kw = dict(n_exams=4, seed=3, matrix=64, metal_fraction=0.25, progress=False, difficulty=d)
    v2 = synthesize(tmp_path / "v2", workers=1, **kw)
    one = synthesize(tmp_path / "one", workers=1, appearance="v3", **kw)
    synthesize(tmp_path / "two", workers=2, appearance="v3", **kw)
    assert (tmp_path / "one" / "data_manifest.csv").read_bytes() == (tmp_path / "two" / "data_manifest.csv").read_bytes()
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    same = ["image_id", "plane", "label", "split", "cohort", "slice_location_mm", "boundary_distance_mm"]
    pd.testing.assert_frame_equal(v2[same], one[same])
    ds = {p: pydicom.dcmread(tmp_path / "one" / one[one.plane == p].path.iloc[0])
          for p in ("axial", "sagittal")}
    assert ds["axial"].InPlanePhaseEncodingDirection == "COL"
    assert ds["sagittal"].InPlanePhaseEncodingDirection == "ROW" and float(ds["sagittal"].FlipAngle) == 30

"""bench/realism.py and its statistics (issue 28) on constructed images whose answer is known, and
the table in docs/phantom.md against the committed CSVs it was written from."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rs = _load("realism_stats")
realism = _load("realism")


def _ellipse(a_rows, b_cols, n=256, centre=None):
    yy, xx = np.mgrid[:n, :n]
    cy, cx = centre or ((n - 1) / 2, (n - 1) / 2)
    return ((yy - cy) / a_rows) ** 2 + ((xx - cx) / b_cols) ** 2 < 1


def _limb(noise=10.0, seed=0):
    """An elliptical 'limb' (semi-axes 90 x 50 px) of signal 1000 with a darker core, in noisy air."""
    rng = np.random.default_rng(seed)
    img = np.where(_ellipse(90, 50), 1000.0, 0.0)
    img[_ellipse(70, 30)] = 250.0
    return np.abs(img + rng.normal(0, noise, img.shape))


def test_eccentricity_of_an_ellipse_is_sqrt_1_minus_b2_over_a2():
    assert rs.eccentricity(_ellipse(100, 60)) == pytest.approx(0.8, abs=0.01)
    assert rs.eccentricity(_ellipse(70, 70)) == pytest.approx(0.0, abs=0.05)


def test_convexity_of_an_ellipse_and_of_an_l_shape():
    assert rs.convexity(_ellipse(90, 50)) > 0.97
    sq = np.zeros((200, 200), bool)
    sq[50:150, 50:150] = True
    sq[50:100, 100:150] = False  # an L: area 7500 of a hull of 10000 - 1250
    assert rs.convexity(sq) == pytest.approx(7500 / 8750, abs=0.01)


def test_two_level_otsu_separates_three_classes():
    rng = np.random.default_rng(1)
    c1, c2, c3 = rng.normal(10, 2, 5000), rng.normal(100, 5, 3000), rng.normal(300, 10, 2000)
    lo, hi = rs.otsu2(np.concatenate([c1, c2, c3]))
    assert (c1 < lo).mean() > 0.999 and ((c2 > lo) & (c2 < hi)).mean() > 0.999 and (c3 > hi).mean() > 0.999


def test_white_noise_has_no_lag1_autocorrelation_and_column_filtered_noise_has_it_along_columns():
    rng = np.random.default_rng(2)
    white = rng.normal(size=(256, 256))
    ok = np.ones_like(white, bool)
    assert abs(rs.lag1_autocorrelation(white, ok, 0)) < 0.02
    assert abs(rs.lag1_autocorrelation(white, ok, 1)) < 0.02
    cols = white + np.roll(white, 1, axis=0)  # each pixel shares noise with the one above it
    assert rs.lag1_autocorrelation(cols, ok, 0) == pytest.approx(0.5, abs=0.03)
    assert abs(rs.lag1_autocorrelation(cols, ok, 1)) < 0.02


def test_blur_along_columns_lowers_vertical_high_frequency_power():
    rng = np.random.default_rng(3)
    img = 1000.0 + 50 * rng.normal(size=(256, 256))
    limb = np.ones_like(img, bool)
    blurred_v = ndimage.uniform_filter1d(img, 3, axis=0)  # blur along columns (phase along columns)
    assert rs.psd_stats(blurred_v, limb)["psd_hf_aniso_db"] < -6
    assert rs.psd_stats(blurred_v.T, limb)["psd_hf_aniso_db"] > 6
    assert abs(rs.psd_stats(img, limb)["psd_hf_aniso_db"]) < 1.5


def test_intensity_shares_of_a_two_tissue_limb():
    st = rs.slice_stats(_limb(), 0.86)
    core = _ellipse(70, 30).sum() / _ellipse(90, 50).sum()  # the dark core's share of the limb
    assert st["dark_share"] == pytest.approx(core, abs=0.01)
    assert st["bright_share"] == pytest.approx(1 - core, abs=0.01)
    assert 0.93 < st["p50"] < 0.99  # the bright rim is just over half the limb; p99 = 1000 + 2.3 sd
    assert st["p5"] == pytest.approx(250 / 1023, abs=0.02)
    assert st["area_cm2"] == pytest.approx(np.pi * 90 * 50 * 0.86 ** 2 / 100, rel=0.02)
    assert st["n_obj"] == 1 and st["second_obj_10pct"] == 0
    assert st["eccentricity"] == pytest.approx(np.sqrt(1 - (50 / 90) ** 2), abs=0.01)
    assert st["air_med_over_p50"] < 0.02


def test_a_second_leg_is_counted():
    img = _limb()
    img[_ellipse(60, 25, centre=(128, 225))] = 900.0
    st = rs.slice_stats(img, 0.86)
    assert st["n_obj"] == 2 and st["second_obj_10pct"] == 1
    assert st["second_over_first"] == pytest.approx((np.pi * 60 * 25) / (np.pi * 90 * 50), rel=0.05)


def test_signal_that_fades_towards_the_ends_of_the_field_reads_as_a_low_end_over_centre():
    img = _limb(noise=1.0)
    flat = rs.slice_stats(img, 0.86)["end_over_centre_min"]
    rows = np.arange(256)[:, None]
    fade = np.exp(-0.5 * ((rows - 127.5) / 60.0) ** 2)  # a coil that covers +- 60 px
    faded = rs.slice_stats(img * fade, 0.86)["end_over_centre_min"]
    assert faded < 0.5 * flat
    shade = np.linspace(0.5, 1.0, 256)[None, :]  # left-right shading
    st = rs.slice_stats(img * shade, 0.86)
    assert st["shade_cols"] > 1.3 > st["shade_rows"]


def test_septa_thin_dark_lines_in_bright_tissue_are_counted():
    img = np.where(_ellipse(90, 50), 1000.0, 0.0) + 1.0
    clean = rs.slice_stats(img, 0.86)["septa_in_bright"]
    lined = img.copy()
    lined[::12, :][_ellipse(90, 50)[::12, :]] = 400.0  # a dark line every 12 rows
    assert clean == 0 and rs.slice_stats(lined, 0.86)["septa_in_bright"] > 0.05


def test_resampling_keeps_the_field_of_view():
    img = np.ones((256, 256))
    assert rs.resample_to(img, 0.43).shape == (128, 128)
    assert rs.resample_to(img, 1.29).shape == (384, 384)


def test_sample_takes_150_normal_slices_per_plane_with_pandas_seed_0():
    rows = [{"plane": p, "cohort": c, "path": f"{p}{c}{i}"} for p in realism.PLANES
            for c in ("normal", "metal") for i in range(300)]
    m = pd.DataFrame(rows)
    s = realism.sample(m)
    assert (s.cohort == "normal").all() and s.groupby("plane").size().eq(150).all()
    assert s.path.tolist() == realism.sample(m.sample(frac=1, random_state=5).sort_index()).path.tolist()


def test_summary_marks_values_inside_the_real_quartiles():
    real = pd.DataFrame([{"plane": "axial", "statistic": "p50", "median": 0.35, "q25": 0.3, "q75": 0.4},
                         {"plane": "axial", "statistic": "second_obj_10pct", "median": 0, "q25": 0, "q75": 0}])
    per_slice = pd.DataFrame({"plane": ["axial"] * 4, "p50": [0.31, 0.36, 0.37, 0.9],
                              "second_obj_10pct": [0, 0, 1, 0]})
    s = realism.summarise(per_slice, real)
    assert s.value.tolist() == [0.365, 0.25] and s.inside.tolist() == [True, False]


def test_the_table_in_docs_phantom_md_is_the_committed_csvs():
    text = (ROOT / "docs" / "phantom.md").read_text()
    block = text.split(realism.BEGIN, 1)[1].split(realism.END, 1)[0].strip()
    labelled = [(label, pd.read_csv(ROOT / "bench" / "logs" / f"realism_{key}.csv"))
                for label, key in (("today (v2)", "v2"), ("v3 at 6873b9b", "v3_6873b9b"),
                                   ("v3 at 401b7ce", "v3_401b7ce"), ("candidate (v3)", "v3"))]
    assert block == realism.doc_table(labelled)


def _summary(values):
    """Summary rows for the gate: (plane, statistic, value) with real quartiles [0.3, 0.4]."""
    return pd.DataFrame([{"plane": p, "statistic": st, "value": v, "real_q25": 0.3, "real_q75": 0.4,
                          "real_median": 0.35, "inside": 0.3 <= v <= 0.4} for p, st, v in values])


def test_the_gate_wants_twice_the_count_more_per_plane_and_nothing_further_out():
    far = [(p, f"other{i}", 0.9) for p in realism.PLANES for i in (2, 3)]  # outside in both
    base = _summary([(p, "p50", 0.5) for p in realism.PLANES] + [("axial", "other0", 0.35)]
                    + [(p, "other0", 0.9) for p in realism.PLANES[1:]]
                    + [(p, "other1", 0.9) for p in realism.PLANES] + far)
    good_rows = ([(p, "p50", 0.45) for p in realism.PLANES]
                 + [(p, f"other{i}", 0.35) for p in realism.PLANES for i in (0, 1)] + far)
    good = _summary(good_rows)
    assert realism.gate(base, good)[0]
    worse = _summary([("axial", "p50", 0.55)] + good_rows[1:])  # p50 further out in one plane
    ok, text = realism.gate(base, worse)
    assert not ok and "FURTHER OUT" in text
    few = _summary([(p, "p50", 0.45) for p in realism.PLANES] + [("axial", "other0", 0.35)]
                   + [(p, "other0", 0.9) for p in realism.PLANES[1:]]
                   + [(p, "other1", 0.9) for p in realism.PLANES] + far)
    assert not realism.gate(base, few)[0]  # 1 -> 1 inside: not twice, not more per plane


def test_second_objects_are_told_apart_by_where_they_lie():
    """bench/realism_objects.py: a second leg beside the limb lies apart from it; the limb cut across by
    a dark band leaves its piece next to the largest one (split)."""
    ro = _load("realism_objects")
    rng = np.random.default_rng(0)
    limb = _ellipse(90, 40, centre=(127.5, 90))

    def noisy(img):
        return np.abs(img + rng.normal(0, 10, img.shape))

    apart = ro.second_object(noisy(np.where(limb | _ellipse(60, 25, centre=(127.5, 200)), 1000.0, 0.0)), 0.86)
    assert apart["second"] and not apart["split"] and 0.3 < apart["second_over_first"] < 0.5
    cut = np.where(limb, 1000.0, 0.0)
    cut[150:156] = 0.0  # a 6-px dark band across the limb (thinner ones fill with the air noise above the mask level)
    split = ro.second_object(noisy(cut), 0.86)
    assert split["second"] and split["split"]
    one = ro.second_object(noisy(np.where(limb, 1000.0, 0.0)), 0.86)
    assert not one["second"] and one["second_over_first"] == 0.0
    # the sites whose echo puts fat within 60 degrees of opposite phase, from the site table
    assert ro.opposed_sites() == {"S1", "S3", "S4"}


def test_the_second_object_table_in_docs_phantom_md_is_the_committed_csv():
    ro = _load("realism_objects")
    text = (ROOT / "docs" / "phantom.md").read_text()
    block = text.split(ro.BEGIN, 1)[1].split(ro.END, 1)[0].strip()
    tables = pd.read_csv(ROOT / "bench" / "logs" / "realism_objects.csv")
    assert list(dict.fromkeys(tables.phantom)) == ["v2", "v3"]
    assert block == ro.doc_table(tables)
    # the groups partition each plane's 150 sampled slices
    for (_, plane), g in tables[tables.group != "all"].groupby(["phantom", "plane"]):
        assert g.slices.sum() == 150, plane
    assert np.allclose(tables.split + tables.apart, tables.second)

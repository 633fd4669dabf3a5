"""The one table of test cohorts (knee_tf.study.cohorts): its entries and checks, the orders derived from it,
and that one more entry with its builder is all a cohort needs to be built, ordered and reported."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knee_tf.core.model import build_lenet
from knee_tf.core.vocab import (
    MANIFEST_COHORTS,
    METAL,
    MODEL_A,
    MODEL_B,
    NEW_SITE,
    NORMAL,
    TEST,
    TRAIN,
)
from knee_tf.study import evaluate
from knee_tf.study.cohorts import (
    CAM,
    CAM_B,
    CAM_HARD,
    CAM_TRANSFER,
    COHORTS,
    FROM_MANIFEST,
    OTHER_MODEL_A,
    OWN_MODEL_A,
    Cohort,
    build_test_cohorts,
    cam_cohort_images,
    cohort_order,
    cross_cohort_names,
    get_cohort,
    listed_cohorts,
    maps_cohort,
    register_cohort,
)
from knee_tf.study.config import StudyConfig
from knee_tf.study.report import paper_comparison_markdown

SIZE = 32


class Data:
    """The part of knee_tf.data.ingest.IngestResult the cohorts use: 4 normal and 2 metal test images, 2
    training images; without the ``cohort`` column (a manifest without it) every test image is normal."""

    def __init__(self, cohort_column: bool = True):
        self.x = np.random.default_rng(0).uniform(0.2, 1, size=(8, SIZE, SIZE, 1)).astype(np.float32)
        self.index = pd.DataFrame({"image_id": [f"i{k}" for k in range(8)], "split": [TEST] * 6 + [TRAIN] * 2,
                                   "cohort": [NORMAL] * 4 + [METAL] * 2 + [NORMAL] * 2})
        if not cohort_column:
            self.index = self.index.drop(columns="cohort")

    def split(self, name, cohort=None):
        m = (self.index["split"] == name).to_numpy()
        if cohort is not None and "cohort" in self.index:
            m = m & (self.index["cohort"] == cohort).to_numpy()
        return self.x[m], np.zeros(m.sum(), np.int32), self.index[m].reset_index(drop=True)


@pytest.fixture(scope="module")
def setup():
    cfg = StudyConfig.smoke(image_size=SIZE, conv_filters=(4, 4, 4, 4), dense_units=(8,))
    return cfg, build_lenet((SIZE, SIZE, 1), 2, cfg.conv_filters, cfg.dense_units, seed=3)


def test_the_table_holds_the_papers_cohorts_and_ours_in_order():
    assert cohort_order() == (NORMAL, METAL, CAM, NEW_SITE, CAM_TRANSFER, CAM_B, CAM_HARD)  # the paper's 1-3, then ours
    assert cohort_order(own_only=True) == (NORMAL, METAL, CAM, NEW_SITE, CAM_HARD)  # what one job builds
    assert listed_cohorts([]) == [NORMAL, METAL, CAM, NEW_SITE]  # cam_hard only where a config makes it
    assert listed_cohorts([CAM_HARD, NORMAL]) == [NORMAL, METAL, CAM, NEW_SITE, CAM_HARD]
    assert {n for n, c in COHORTS.items() if c.optional} == {CAM_HARD}
    assert cross_cohort_names() == (CAM_TRANSFER, CAM_B)
    assert tuple(COHORTS)[:4] == (NORMAL, METAL, NEW_SITE, CAM)  # a job's prediction rows follow this order
    assert {c.paper_number: n for n, c in COHORTS.items() if c.paper_number} == {1: NORMAL, 2: METAL, 3: CAM}
    assert {n for n, c in COHORTS.items() if c.paper_accuracy} == {NORMAL, METAL, CAM}
    assert tuple(n for n, c in COHORTS.items() if c.maps_of == FROM_MANIFEST) == MANIFEST_COHORTS
    assert {n for n, c in COHORTS.items() if c.in_distribution_for == (MODEL_B,)} == {CAM, CAM_TRANSFER, CAM_B}


def test_the_table_refuses_a_bad_entry_in_one_line():
    for entry, match in ((Cohort(NORMAL, maps_cohort, OWN_MODEL_A, "twice"), "already registered"),
                         (Cohort("c1", maps_cohort, "Model C", "x"), "maps_of 'Model C' is not one"),
                         (Cohort("c2", maps_cohort, FROM_MANIFEST, "x"), "only the manifest's cohorts"),
                         (Cohort(METAL + "2", maps_cohort, OWN_MODEL_A, "x", paper_number=2), "paper cohort 2 is 'metal'")):
        with pytest.raises(ValueError, match=match):
            register_cohort(entry)
    assert not {"c1", "c2", "metal2"} & set(COHORTS)
    with pytest.raises(ValueError, match="unknown cohort 'c9'; known cohorts: normal, metal"):
        get_cohort("c9")


def test_a_job_builds_the_manifests_cohorts_it_has_and_its_own_maps(setup):
    cfg, model = setup
    data = Data()
    built = build_test_cohorts(data, model, cfg, progress=False)
    assert list(built) == [NORMAL, METAL, CAM]  # no new_site exams in this data
    assert built[METAL][1]["image_id"].tolist() == ["i4", "i5"]
    np.testing.assert_array_equal(built[CAM][0], cam_cohort_images(model, data.x[:4], cfg, progress=False))
    assert built[CAM][1] is built[NORMAL][1]  # the same normal test rows: one read of the split
    assert list(build_test_cohorts(Data(cohort_column=False), model, cfg, progress=False)) == [NORMAL, CAM]
    assert cfg.cam_hard_weight == 0  # the default: no cam_hard cohort


def test_cam_hard_is_cohort_3_with_the_declared_mask_where_the_config_asks(setup):
    """cam_hard (docs/analysis_plan.md, amendment 1): the job's own Model A's maps, smoothed and thresholded,
    at cam_hard_weight; built only when that weight is set (paper_point), after the other own cohorts."""
    cfg, model = setup
    data = Data()
    hard = cfg.replace(cam_hard_weight=1.0, cam_hard_smooth_sigma=2.0, cam_hard_threshold=0.4)
    built = build_test_cohorts(data, model, hard, progress=False)
    assert list(built) == [NORMAL, METAL, CAM, CAM_HARD]
    expected = cam_cohort_images(model, data.x[:4], cfg, progress=False, mask=(1.0, 2.0, 0.4))
    np.testing.assert_array_equal(built[CAM_HARD][0], expected)
    np.testing.assert_array_equal(built[CAM][0], cam_cohort_images(model, data.x[:4], cfg, progress=False))
    assert not np.array_equal(expected, built[CAM][0])  # another mask than cohort 3's
    assert built[CAM_HARD][1] is built[NORMAL][1]
    # the threshold zeroes the map below 0.4: pixels there keep their value, the rest are darkened (w = 1)
    x = data.x[:4]
    kept = np.isclose(expected, x)
    assert kept.any() and (~kept).any() and (expected <= x + 1e-7).all()
    with pytest.raises(ValueError, match="needs the job's Model A"):
        build_test_cohorts(data, None, cfg)


@pytest.fixture
def flipped_cohort():
    """A cohort of the job's own (the normal test images flipped left-right), registered for one test and
    removed afterwards."""

    def flipped(data, normal, model, cfg, progress):
        x, rows = normal
        return x[:, :, ::-1], rows

    register_cohort(Cohort("flipped", flipped, OWN_MODEL_A, "the normal test images flipped left-right"))
    register_cohort(Cohort("cam_other", maps_cohort, OTHER_MODEL_A, "maps of yet another Model A"))
    try:
        yield "flipped"
    finally:
        COHORTS.pop("flipped")
        COHORTS.pop("cam_other")


def test_one_entry_is_all_a_cohort_needs(setup, flipped_cohort):
    """A registered cohort is built by every job, ordered in every table and reported beside the paper's,
    with no other code changed; a cohort of another model's maps joins the cross cohorts."""
    cfg, model = setup
    data = Data()
    built = build_test_cohorts(data, model, cfg, progress=False)
    assert list(built) == [NORMAL, METAL, CAM, flipped_cohort]
    np.testing.assert_array_equal(built[flipped_cohort][0], data.x[:4, :, ::-1])
    assert cohort_order()[-2:] == (flipped_cohort, "cam_other") and cross_cohort_names()[-1] == "cam_other"
    assert cohort_order(own_only=True)[-1] == flipped_cohort and listed_cohorts([])[-1] == flipped_cohort

    rows = pd.DataFrame({"image_id": ["i0", "i1"], "y_true": [0, 1]})
    pred = pd.concat([evaluate.prediction_frame(np.array([0.2, 0.7]), rows, m, 0, cohort=c)
                      for c in ("zz_site", flipped_cohort, CAM, NORMAL) for m in (MODEL_A, MODEL_B)], ignore_index=True)
    metrics = evaluate.cohort_metrics(pred, n_boot=20, ece_bins=5)
    assert list(dict.fromkeys(metrics["cohort"])) == [NORMAL, CAM, flipped_cohort, "zz_site"]
    table = paper_comparison_markdown(evaluate.summarize_seeds(metrics))
    listed = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert listed == [NORMAL, METAL, CAM, NEW_SITE, flipped_cohort, "zz_site"]

"""knee_tf.controls.control_masks: the control arms' masks keep what they claim to keep and change what they claim to change."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from knee_tf.controls import control_masks
from knee_tf.core import augment
from knee_tf.study.corrupt import CORRUPTIONS

H = 32


def blob_maps(n: int, seed: int = 0, size: int = H) -> np.ndarray:
    """Seeded min-max-normalised Gaussian blobs of random centre and width: float32 (n, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = rng.uniform(0.2 * size, 0.8 * size, size=(n, 2))
    s = rng.uniform(0.06 * size, 0.2 * size, size=n)
    m = np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / (2 * s[:, None, None] ** 2))
    m = (m - m.min(axis=(1, 2), keepdims=True)) / np.ptp(m, axis=(1, 2), keepdims=True)
    return m.astype(np.float32)


def _peak(m: np.ndarray) -> np.ndarray:
    return np.stack(np.unravel_index(m.reshape(len(m), -1).argmax(1), m.shape[1:]), axis=1)


# ----------------------------------------------------------------------------- B_random


def test_random_placement_permutes_pixels_so_area_is_exactly_preserved():
    maps = blob_maps(40)
    placed = control_masks.random_placement(maps, np.random.default_rng(0))
    assert placed.shape == maps.shape and placed.dtype == np.float32
    for a, b in zip(maps, placed, strict=True):
        np.testing.assert_array_equal(np.sort(a, axis=None), np.sort(b, axis=None))  # same values
    for t in (0.1, 0.5, 0.9):  # so the same area above any threshold
        np.testing.assert_array_equal((maps >= t).sum(axis=(1, 2)), (placed >= t).sum(axis=(1, 2)))
    np.testing.assert_allclose(control_masks.mask_areas(placed), control_masks.mask_areas(maps), rtol=1e-5)
    # ... but not the same place: the peaks move by a third of the image on average
    shift = np.abs(_peak(placed) - _peak(maps))
    torus = np.minimum(shift, H - shift)
    assert np.hypot(*torus.T).mean() > H / 4
    np.testing.assert_array_equal(placed, control_masks.random_placement(maps, np.random.default_rng(0)))
    assert not np.array_equal(placed, control_masks.random_placement(maps, np.random.default_rng(1)))


def test_random_placement_of_one_map_and_of_a_non_square_map():
    m = blob_maps(1)[0]
    one = control_masks.random_placement(m, np.random.default_rng(3))
    assert one.shape == m.shape
    wide = np.zeros((8, 12), np.float32)
    wide[1:3, 2:7] = 1.0  # a 2 x 5 bar stays a 2 x 5 bar (rotations by 0 or 180 degrees only)
    for seed in range(10):
        out = control_masks.random_placement(wide, np.random.default_rng(seed))
        rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
        assert out.sum() == 10 and len(rows) == 2 and len(cols) == 5  # never turned by 90 degrees


@pytest.mark.parametrize("bad, match", [(np.full((4, 4), 1.5), "lie in"), (np.full((2, 2, 2, 2), 0.5), "must be"),
                                        (np.full((4, 4), np.nan), "NaN")])
def test_control_masks_reject_bad_maps(bad, match):
    for fn in (control_masks.random_placement, control_masks.matched_rectangles, control_masks.keep_salient):
        with pytest.raises(ValueError, match=match):
            fn(bad, np.random.default_rng(0))


# ----------------------------------------------------------------------------- erasing


def test_matched_rectangles_have_the_area_distribution_of_the_masks():
    maps = blob_maps(300, seed=1)
    rects = control_masks.matched_rectangles(maps, np.random.default_rng(0))
    assert set(np.unique(rects)) <= {0.0, 1.0}
    target = np.rint(control_masks.mask_areas(maps))
    got = rects.sum(axis=(1, 2))
    for r, t, g in zip(rects, target, got, strict=True):
        rows, cols = np.flatnonzero(r.any(1)), np.flatnonzero(r.any(0))
        assert r[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one solid rectangle
        assert abs(g - t) <= max(len(rows), len(cols)) / 2 + 0.5  # rounding of one side only
    assert np.abs(got - target).mean() / target.mean() < 0.03
    assert ks_2samp(got, target).pvalue > 0.5  # the same area distribution
    aspect = np.array([np.flatnonzero(r.any(1)).size / np.flatnonzero(r.any(0)).size for r in rects])
    ok = (target > 20) & (target < 0.25 * H * H)  # where neither side is capped by the image
    assert aspect[ok].min() >= 0.25 and aspect[ok].max() <= 4.0 and aspect[ok].std() > 0.3


def test_matched_rectangles_edge_cases():
    empty = control_masks.matched_rectangles(np.zeros((2, 8, 8), np.float32), np.random.default_rng(0))
    assert not empty.any()  # no mass, no rectangle
    full = control_masks.matched_rectangles(np.ones((8, 8), np.float32), np.random.default_rng(0))
    assert full.all()  # the whole image
    with pytest.raises(ValueError, match="aspect_range"):
        control_masks.matched_rectangles(np.ones((8, 8), np.float32), np.random.default_rng(0), aspect_range=(0, 1))


# ----------------------------------------------------------------------------- B_keep


def test_keep_salient_never_touches_the_top_saliency_region():
    maps = blob_maps(60, seed=2)
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 1.0, size=(60, H, H, 1)).astype(np.float32)
    keep = control_masks.salient_region(maps)
    assert np.allclose(keep.mean(axis=(1, 2)), control_masks.KEEP_FRACTION, atol=0.02)
    masks = control_masks.keep_salient(maps, np.random.default_rng(0))
    assert masks.shape == maps.shape and masks.min() >= 0 and masks.max() <= 1
    assert not masks[keep].any()
    out = augment.inverted_obfuscation(images, masks)  # the harshest transform, w = 1
    np.testing.assert_array_equal(out[..., 0][keep], images[..., 0][keep])
    assert (out[..., 0][~keep] < images[..., 0][~keep]).mean() > 0.3  # it does occlude elsewhere
    # placed away from the salient region: far less of its mass had to be cut than for a random placement
    lost_keep = 1 - control_masks.mask_areas(masks) / control_masks.mask_areas(maps)
    rand = control_masks.random_placement(maps, np.random.default_rng(0))
    lost_rand = (rand * keep).sum(axis=(1, 2)) / control_masks.mask_areas(maps)
    assert lost_keep.mean() < 0.5 * lost_rand.mean()
    np.testing.assert_array_equal(masks, control_masks.keep_salient(maps, np.random.default_rng(0)))


def test_salient_region_of_a_zero_map_is_empty_and_keep_fraction_is_checked():
    assert not control_masks.salient_region(np.zeros((8, 8), np.float32)).any()
    assert not control_masks.keep_salient(np.zeros((8, 8), np.float32), np.random.default_rng(0)).any()
    with pytest.raises(ValueError, match="keep_fraction"):
        control_masks.salient_region(np.zeros((8, 8), np.float32), 1.5)


# ----------------------------------------------------------------------------- same budget as B


def test_control_masks_go_through_bs_recipe_unchanged():
    """Same seed, same labels: B and a control get the same methods, transforms and weights per copy."""
    n = 24
    rng = np.random.default_rng(0)
    images = rng.uniform(0.2, 1.0, size=(n, H, H, 1)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.int32)
    ids = [f"i{k}" for k in range(n)]
    maps = {"gradcam": blob_maps(n, 3), "gradcam++": blob_maps(n, 4)}
    kw = dict(variants=1, weight_range=(0.5, 1.0), layer="pool4", seed=7)
    _, yb, prov_b = augment.build_augmented_pool(images, labels, ids, maps, **kw)
    moved = {m: control_masks.random_placement(v, np.random.default_rng(1)) for m, v in maps.items()}
    xr, yr, prov_r = augment.build_augmented_pool(images, labels, ids, moved, **kw)
    np.testing.assert_array_equal(yb, yr)
    assert prov_b.equals(prov_r)
    assert xr.shape == images.shape


# ----------------------------------------------------------------------------- B_untrained


def test_untrained_network_gives_seeded_maps_b_can_use():
    from knee_tf.core.cam import compute_cams

    x = np.random.default_rng(0).uniform(0, 1, size=(6, 32, 32, 1)).astype(np.float32)
    kw = dict(input_shape=(32, 32, 1), conv_filters=(4, 4, 4, 4), dense_units=(8,))
    maps = [compute_cams(control_masks.untrained_network(seed=s, **kw), x, layers=("pool4",), progress=False)
            .select("gradcam", "pool4") for s in (0, 0, 1)]
    np.testing.assert_array_equal(maps[0], maps[1])  # the same seed, the same weights, the same maps
    assert not np.array_equal(maps[0], maps[2])
    assert maps[0].shape == (6, 32, 32) and maps[0].min() >= 0 and maps[0].max() <= 1
    pool, _, _ = augment.build_augmented_pool(x, np.zeros(6, np.int32), [str(i) for i in range(6)],
                                              {"gradcam": maps[0]}, variants=1, weight_range=(0.5, 1.0),
                                              layer="pool4", seed=0)
    assert pool.shape == x.shape


# ----------------------------------------------------------------------------- mri_aug


def test_mri_aug_trains_on_receive_chain_corruptions_and_keeps_ghosting_held_out():
    assert set(control_masks.MRI_AUG_CORRUPTIONS) < set(CORRUPTIONS)
    assert "motion_ghosting" not in control_masks.MRI_AUG_CORRUPTIONS


def test_mri_augment_balances_corruptions_within_classes_and_is_seeded():
    n = 30
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 1.0, size=(n, H, H, 1)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int32)
    ids = [f"i{k}" for k in range(n)]
    out, yo, prov = control_masks.mri_augment(x, y, ids, np.random.default_rng(5))
    assert out.shape == x.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(yo, y)
    assert list(prov.columns) == list(control_masks.MRI_AUG_PROVENANCE_COLUMNS)
    counts = prov.groupby(["label", "corruption"]).size()
    assert counts.min() == counts.max() == 5  # 15 per class, 3 corruptions
    assert set(prov["severity"]) <= set(range(1, 6))
    assert np.abs(out - x).max(axis=(1, 2, 3)).min() > 0  # every copy changed
    again, _, prov2 = control_masks.mri_augment(x, y, ids, np.random.default_rng(5))
    np.testing.assert_array_equal(out, again)
    assert prov.equals(prov2)
    with pytest.raises(ValueError, match="corruptions"):
        control_masks.mri_augment(x, y, ids, np.random.default_rng(0), corruptions=["ghosts"])


# ----------------------------------------------------------------------------- the arms' pools


def test_control_pools_share_bs_recipe_and_differ_only_in_the_mask():
    from knee_tf.controls.control_masks import control_pool
    from knee_tf.core.vocab import B_KEEP, B_RANDOM, B_UNTRAINED, ERASING, MRI_AUG
    from knee_tf.study.config import StudyConfig
    from knee_tf.study.experiment import augmented_pool

    cfg = StudyConfig.smoke(image_size=32, conv_filters=(4, 4, 4, 4), dense_units=(8,))
    n = 12
    x = np.random.default_rng(0).uniform(0.2, 1, size=(n, 32, 32, 1)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int32)
    ids = [f"i{k}" for k in range(n)]
    stand_in_a = control_masks.untrained_network((32, 32, 1), cfg.conv_filters, cfg.dense_units, seed=5)  # no training
    bx, _, bprov = augmented_pool(stand_in_a, x, y, ids, cfg, seed=3, progress=False)
    for arm in (B_RANDOM, ERASING, B_KEEP, B_UNTRAINED):
        px, py, prov = control_pool(arm, stand_in_a, x, y, ids, cfg, seed=3, progress=False)
        assert px.shape == bx.shape and prov.equals(bprov), arm  # same methods, transforms, weights
        np.testing.assert_array_equal(py, y)
        assert not np.array_equal(px, bx), arm
    again, _, _ = control_pool(B_RANDOM, stand_in_a, x, y, ids, cfg, seed=3, progress=False)
    np.testing.assert_array_equal(again, control_pool(B_RANDOM, stand_in_a, x, y, ids, cfg, seed=3,
                                                      progress=False)[0])
    mx, _, mprov = control_pool(MRI_AUG, None, x, y, ids, cfg, seed=3, progress=False)
    assert mx.shape == x.shape and set(mprov["corruption"]) <= set(control_masks.MRI_AUG_CORRUPTIONS)
    with pytest.raises(ValueError, match="model_a is required"):
        control_pool(B_RANDOM, None, x, y, ids, cfg, seed=3, progress=False)
    with pytest.raises(ValueError, match="unknown control arm"):
        control_pool("B", stand_in_a, x, y, ids, cfg, seed=3, progress=False)


def test_learning_curve_subsets_are_whole_exams_nested_and_fixed():
    import pandas as pd

    from knee_tf.study.experiment import training_exam_subset

    index = pd.DataFrame({"exam_id": np.repeat([f"E{k:03d}" for k in range(40)], 7)}).sample(frac=1, random_state=1)
    chosen = {n: set(index.loc[training_exam_subset(index, n), "exam_id"]) for n in (5, 10, 20, 0)}
    assert [len(chosen[n]) for n in (5, 10, 20, 0)] == [5, 10, 20, 40]
    assert chosen[5] < chosen[10] < chosen[20] < chosen[0]
    assert training_exam_subset(index, 10).sum() == 70  # every slice of each exam
    np.testing.assert_array_equal(training_exam_subset(index, 10), training_exam_subset(index, 10))
    assert set(index.loc[training_exam_subset(index, 10, order_seed=1), "exam_id"]) != chosen[10]
    assert training_exam_subset(index, 99).all()


def test_label_maps_and_a_smaller_augmented_share():
    from knee_tf.study.config import StudyConfig
    from knee_tf.study.experiment import augmented_pool, subsample_pool

    cfg = StudyConfig.smoke(image_size=32, conv_filters=(4, 4, 4, 4), dense_units=(8,))
    n = 16
    x = np.random.default_rng(1).uniform(0.2, 1, size=(n, 32, 32, 1)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int32)
    ids = [f"i{k}" for k in range(n)]
    net = control_masks.untrained_network((32, 32, 1), cfg.conv_filters, cfg.dense_units, seed=2)
    pred_x, _, _ = augmented_pool(net, x, y, ids, cfg, seed=0, progress=False)
    label_x, _, _ = augmented_pool(net, x, y, ids, cfg, seed=0, progress=False, label_maps=True)
    from knee_tf.core.model import predict_proba
    from knee_tf.core.vocab import predicted_class

    differs = predicted_class(predict_proba(net, x)[:, 1]) != y
    assert differs.any()  # an untrained net is wrong on some: there its label maps explain the other class
    assert not np.array_equal(pred_x[differs], label_x[differs])
    np.testing.assert_array_equal(pred_x[~differs], label_x[~differs])
    px, py, prov = augmented_pool(net, x, y, ids, cfg, seed=0, progress=False)
    sx, sy, sprov = subsample_pool(px, py, prov, 0.25, n, seed=0)
    assert len(sx) == 4 and (sy == 0).sum() == (sy == 1).sum() == 2
    assert set(sprov["aug_id"]) < set(prov["aug_id"])
    with pytest.raises(ValueError, match="share"):
        subsample_pool(px, py, prov, 1.5, n, seed=0)


def test_cross_cohorts_corrupt_the_normal_test_images_with_another_models_maps():
    import pandas as pd

    from knee_tf.core.vocab import NORMAL, TEST, TRAIN
    from knee_tf.study.cohorts import CAM_B, CAM_TRANSFER, cam_cohort_images, cross_cohorts
    from knee_tf.study.config import StudyConfig

    class Data:  # the part of knee_tf.data.ingest.IngestResult the cohorts use
        def __init__(self):
            self.x = np.random.default_rng(0).uniform(0.2, 1, size=(10, 32, 32, 1)).astype(np.float32)
            self.index = pd.DataFrame({"image_id": [f"i{k}" for k in range(10)], "split": [TEST] * 6 + [TRAIN] * 4,
                                       "cohort": NORMAL, "label": "irrelevant"})

        def split(self, name, cohort=None):
            m = (self.index["split"] == name).to_numpy()
            return self.x[m], np.zeros(m.sum(), np.int32), self.index[m].reset_index(drop=True)

    cfg = StudyConfig.smoke(image_size=32, conv_filters=(4, 4, 4, 4), dense_units=(8,))
    a2, b = (control_masks.untrained_network((32, 32, 1), cfg.conv_filters, cfg.dense_units, seed=s) for s in (7, 8))
    out = cross_cohorts(Data(), a2, b, cfg, progress=False)
    assert list(out) == [CAM_TRANSFER, CAM_B]
    x_test = Data().x[:6]
    np.testing.assert_array_equal(out[CAM_TRANSFER][0], cam_cohort_images(a2, x_test, cfg, progress=False))
    assert out[CAM_B][1]["image_id"].tolist() == [f"i{k}" for k in range(6)]
    assert (out[CAM_B][0] <= x_test + 1e-7).all() and not np.array_equal(out[CAM_B][0], out[CAM_TRANSFER][0])
    assert list(cross_cohorts(Data(), None, b, cfg, progress=False)) == [CAM_B]


# ----------------------------------------------------------------------------- masks as read


@pytest.mark.parametrize("arm,whole", [("B_random", control_masks.random_placement),
                                       ("erasing", control_masks.matched_rectangles),
                                       ("B_keep", control_masks.keep_salient)])
def test_masks_made_as_read_are_the_whole_array_masks_and_only_the_last_blocks_are_kept(arm, whole):
    """control_pool reads masks by rows (MasksAsRead) to keep N x H x W maps out of memory: every mask
    must be the one the function gives on all maps at once, bit for bit, whatever the read pattern."""
    maps = blob_maps(600, seed=4)  # 600 = two blocks of 256 and a partial third
    expected = whole(maps, np.random.default_rng(9))
    lazy = control_masks.MasksAsRead(arm, maps, np.random.default_rng(9))
    assert lazy.shape == maps.shape and len(lazy) == 600 and lazy.reads_rows
    got = np.concatenate([lazy[a:a + 100] for a in range(0, 600, 100)])
    np.testing.assert_array_equal(got, expected)
    assert sorted(lazy._blocks._kept) == [1, 2]  # the blocks of the last read (rows 500-599) only
    rows = np.array([3, 255, 256, 599, 300])
    np.testing.assert_array_equal(lazy[rows], expected[rows])
    np.testing.assert_array_equal(lazy[7], expected[7])
    with pytest.raises(ValueError, match="makes no mask"):
        control_masks.MasksAsRead("mri_aug", maps, np.random.default_rng(0))


def test_masks_made_as_read_check_the_maps_of_each_block():
    maps = blob_maps(300, seed=1)
    maps[280, 0, 0] = np.nan
    lazy = control_masks.MasksAsRead("B_random", maps, np.random.default_rng(0))
    assert lazy[:256].shape == (256, H, H)
    with pytest.raises(ValueError, match="NaN"):
        lazy[256:]


def test_cam_cohort_made_batch_by_batch_is_the_whole_array_corruption():
    """cam_cohort_images makes the maps and images one CAM batch at a time (memory); each image must be
    what corrupting all N at once with all N maps gives, bit for bit, with a batch that does not divide N."""
    from knee_tf.study.cohorts import cam_cohort_images
    from knee_tf.study.config import StudyConfig
    from knee_tf.study.corrupt import cam_corruption
    from knee_tf.study.experiment import augmentation_maps

    cfg = StudyConfig.smoke(image_size=32, conv_filters=(4, 4, 4, 4), dense_units=(8,), cam_batch_size=4,
                            aug_smooth_sigma=1.5, aug_threshold=0.1)
    model = control_masks.untrained_network((32, 32, 1), cfg.conv_filters, cfg.dense_units, seed=3)
    x = np.random.default_rng(2).uniform(0.1, 1, size=(10, 32, 32, 1)).astype(np.float32)
    maps = augmentation_maps(model, x, cfg, methods=(cfg.cohort3_method,), progress=False)[cfg.cohort3_method]
    whole = cam_corruption(x, maps, cfg.cohort3_weight, cfg.aug_smooth_sigma, cfg.aug_threshold)
    got = cam_cohort_images(model, x, cfg, progress=False)
    assert got.dtype == np.float32 and got.shape == x.shape and not np.array_equal(got, x)
    np.testing.assert_array_equal(got, whole)

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Activation-map augmentation (Figure 2)
#
# The paper's idea: take the regions Model A relies on — its Grad-CAM / Grad-CAM++ map M at max-pool
# layer 4 — and degrade them, keeping the label:
#
# * **inverted** map: `image × (1 − M)`, the salient anatomy blacked out in proportion to M;
# * **weighted** (reduced intensity): `image × (1 − w·M)`, with w drawn from a severity range.
#
# The result looks like RF intensity bias or a failed coil element exactly where the model looks: an
# adversarial-like example that can fool Model A (how often, is measured below). Model B
# (notebook 05) trains on these.
#
# This notebook builds the augmented training pool from each seed's Model A (with provenance: source
# image, method, transform, layer, weight), measures how often the augmentation flips Model A's
# call (every seed), draws Figure 2 (first seed), and exports a few augmented images of the first
# seed's pool as derived DICOM for a viewer. An explorer at the end turns the knobs by hand: pick an
# image, a method and a weight, and watch Model A's (and, once trained, Model B's) call change.

# %%
import numpy as np
import pandas as pd
from IPython.display import display

from knee_tf.core.arrays import pick_examples, shows_anatomy
from knee_tf.core.augment import inverted_obfuscation
from knee_tf.core.cam import compute_cams
from knee_tf.core.model import load_model, predict_proba
from knee_tf.core.vocab import CAM_METHODS, GRADCAM, METHOD_NAMES, MODEL_A, MODEL_B, TEST, TRAIN, predicted_class
from knee_tf.data.dicom_write import export_augmented_dicom
from knee_tf.study import plots, premise, premise_report
from knee_tf.study.experiment import augmentation_maps, load_pool, pools_per_seed
from knee_tf.study.session import open_study
from knee_tf.teach.explore import augmentation_explorer, pick_flippable

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/

# %%
study = open_study(run_dir, config)  # the run folder, seeded, with notebook 01's images
run, cfg, data = study.run, study.config, study.data
x_train, y_train, train_index = study.normal(TRAIN)
print(f"{len(x_train)} training images; {cfg.aug_variants} variant(s) each; layer {cfg.aug_layer}; "
      f"weights {cfg.aug_weight_range}; seeds {run.seeds}")

# %% [markdown]
# ## The augmented pool, one per Model A seed
# Maps explain Model A's predicted class. Each seed's pool is saved in the run folder; notebook 05
# trains that seed's Model B on it. `pools_per_seed` holds one pool in memory at a time and keeps
# only per-seed tables (recipe and flips, with a `seed` column), so every table below covers
# **all seeds**.

# %%
recipe, flips = pools_per_seed(run.layout, x_train, y_train, train_index["image_id"], cfg, run.seeds)
display(recipe.groupby(["seed", "method", "transform"]).agg(n=("aug_id", "size"), mean_weight=("weight", "mean")))

# %% [markdown]
# ## How often does the augmentation fool Model A?
# Among training images Model A classifies correctly, the share whose augmented copy it gets wrong —
# the "weak spots" the paper describes — per seed and over all seeds. Higher means the augmentation
# removes what A relies on.

# %%
per_seed = flips.groupby(["method", "transform", "seed"])["flipped"].mean().unstack("seed")
per_seed.columns = [f"A flipped, seed {s}" for s in per_seed.columns]
per_seed["A flipped, all seeds"] = flips.groupby(["method", "transform"])["flipped"].mean()
per_seed.assign(n=flips.groupby(["method", "transform"]).size()).style.format("{:.1%}", subset=list(per_seed.columns))

# %% [markdown]
# ## Figure 2: map → inverted mask → augmented image → Model A's call (first seed)
# Test images the first seed's Model A classifies correctly, one per plane and label, among slices
# that cut some anatomy (seeded draw, not chosen by outcome). Under each image: Model A's call and
# probability of *relevant*. Notebook 06 redraws the same rows with Model B's calls.

# %%
x_test, y_test, test_index = study.normal(TEST)
model_a = load_model(run.layout.model(MODEL_A, run.seeds[0]))
p_test = predict_proba(model_a, x_test, cfg.predict_batch_size)[:, 1]
rows = pick_examples(test_index, seed=cfg.seed, mask=(predicted_class(p_test) == y_test) & shows_anatomy(test_index))
cam = augmentation_maps(model_a, x_test[rows], cfg, methods=(GRADCAM,))[GRADCAM]
augmented = inverted_obfuscation(x_test[rows], cam)
preds = {MODEL_A: (p_test[rows], predict_proba(model_a, augmented, cfg.predict_batch_size)[:, 1])}
labels = [f"{p} · {lab}" for p, lab in zip(test_index["plane"].iloc[rows], test_index["label"].iloc[rows],
                                          strict=True)]
run.savefig(plots.plot_augmentation(x_test[rows], cam, augmented, preds, labels), run.layout.figure_augmentation)
run.save_arrays(run.layout.fig2_examples, images=x_test[rows], cam=cam, augmented=augmented,
                labels=labels, image_ids=test_index["image_id"].iloc[rows].to_numpy(str))

# %% [markdown]
# Read across a row: where the map is red, the inverted mask is dark and the augmented image loses
# signal, much like coil fall-off. When the map covers the joint, so does the dark patch; when it
# covers skin, air or the other leg, the anatomy survives. Whether Model A's call changes is written
# under each row's images (original, augmented) for this run, and the flip rate above counts it over
# the whole test split.
#
# ## The premise, as a dose-response: how much do its own masks fool Model A?
# The method rests on one premise: masking what Model A looks at should fool A. The paper's Model A
# fell from 83.1 % to 67.5 % on its own Grad-CAM corruptions (cohort 3). Here every knob of the mask is
# turned, on a seeded subset of the held-out normal test images (`n_premise`) and the first seed's Model A only
# (`knee_tf.study.premise`): layer, method (LayerCAM too), weight w (w = 1 is the *inverted*
# transform, w < 1 *weighted*), and at the augmentation layer a smoothing and a threshold. A **flip**
# is a change of A's own call; the **dose** is how much of the image, of the limb and of its signal
# the mask removes. The full-data measurement, with a finer sweep, is [docs/premise.md](../docs/premise.md).

# %%
sub = np.sort(np.random.default_rng(cfg.seed).choice(len(x_test), min(cfg.n_premise, len(x_test)), replace=False))
x_p, index_p = x_test[sub], test_index.iloc[sub].reset_index(drop=True)  # a seeded subset (cfg.n_premise)
layers = tuple(cfg.cam_layers)
cams_p = compute_cams(model_a, x_p, layers, CAM_METHODS, batch_size=cfg.cam_batch_size, progress=False)
limb = premise.limb_mask(x_p)  # threshold + largest component: the limb (see the module docstring)
specs = premise.mask_design(layers, CAM_METHODS, weights=(0.25, 0.5, 0.75, 0.9, 1.0), smooth_sigmas=(0.0, 4.0),
                            thresholds=(0.0, 0.4), sweep_layer=cfg.aug_layer, sweep_weights=(0.9, 1.0))
outcomes = premise.dose_response(model_a, x_p, index_p, cams_p, layers, specs, limb, cfg.predict_batch_size)
dose = premise.summarise_outcomes(outcomes)
run.write_csv(run.layout.premise_dose_response, dose)
run.savefig(premise_report.plot_dose_response(dose), run.layout.figure_premise_dose_response)

# %% [markdown]
# Each panel is one layer; the dashed line is the paper's drop. The table below shows the study's
# cohort-3 condition and the strongest condition of all, over every image, per class and per plane.

# %%
cohort3, top = premise.cohort3_spec(cfg), premise_report.spec_of(premise_report.strongest(dose))
cols = ["layer", "method", "weight", "smooth_sigma", "threshold", "group", "n", "base_accuracy", "accuracy",
        "accuracy_drop", "flip_rate", "area_limb", "signal_removed"]
per_group = [premise_report.condition(dose, spec, g) for spec in (cohort3, top) for g in premise.GROUPINGS]
display(pd.concat(per_group)[cols].style.format("{:.1%}", subset=cols[-6:]).hide(axis="index"))

# %% [markdown]
# **Why is A fooled or not?** Two checks. Deleting (to black) the top-k % of the map's pixels
# against as many random pixels and the top of the *inverse* map: if A's call survives the map's
# deletion about as well as the others, A relies on evidence outside its map. And how much of the
# limb does the map cover: an upsampled 8 × 8 pool4 map is coarse; where it is near 1 over most of the
# limb, the inverted mask is a global dimming rather than a targeted removal.

# %%
k = layers.index(cfg.aug_layer)
deletion = premise.deletion_comparison(model_a, x_p, cams_p[cfg.cohort3_method][:, k], cfg.cohort3_method,
                                       steps=10, seed=cfg.seed, batch_size=cfg.predict_batch_size)
deletion.insert(0, "map", f"{METHOD_NAMES[cfg.cohort3_method]} {cfg.aug_layer}")
run.savefig(premise_report.plot_deletion(deletion), run.layout.figure_premise_deletion)
coverage = premise.summarise_coverage(premise.map_coverage(cams_p, layers, limb), index_p["plane"])
shares = ["limb_covered", "limb_removed", "mass_on_limb", "image_area"]
display(coverage[coverage["grouping"] == "all"].style.format("{:.1%}", subset=shares).hide(axis="index"))

# %% [markdown]
# How to read them together. If the masked accuracy barely drops while deleting the map's top pixels
# flips more calls than deleting random or inverse-map pixels, the map does point at A's evidence, but
# the soft mask removes too little of it; if the map's deletion is no worse than the others, A's
# evidence also lies outside its map. Coverage says how targeted the mask is: a map near 1 over most of
# the limb dims the whole limb rather than one structure. On the smoke data these numbers are noise (a
# few images, a barely trained model); the full-data answer is [docs/premise.md](../docs/premise.md).

# %% [markdown]
# ## Augmented images as DICOM (first seed's pool)
# Derived MR images (ImageType `DERIVED\SECONDARY`, the transform in SeriesDescription) that open in
# any DICOM viewer next to their source series. Their headers come from the ingest cache, so this
# needs no raw DICOM.

# %%
pool_x, provenance = load_pool(run.layout, run.seeds[0])
pool_x, provenance = pool_x[:cfg.n_dicom_export], provenance.iloc[:cfg.n_dicom_export]
headers = data.source_headers(provenance["source_image_id"])
paths = export_augmented_dicom(pool_x, provenance, headers, run.layout.aug_dicom)
print(f"wrote {len(paths)} derived DICOM files to {run.layout.aug_dicom}")

# %% [markdown]
# ## Explore: what does it take to fool Model A?
# Pick a test image (the first shown is one that some w flips, when the test split has one), a method, inverted or weighted, the weight w
# and an optional Gaussian smoothing of the map (σ in pixels). Left to right: the image, the mask M
# (Model A's map at the augmentation layer, for its own call), and the augmented image
# `image × (1 − w·M)`. Below: each model's probability of *relevant* on the augmented image, beside
# its value on the original. The button finds the **smallest w that flips Model A** on this image: a
# scan of w in steps of 0.01 (the probability need not fall steadily as w grows, so bisection alone
# could miss the first flip), then bisection inside the first step that flips. A small w means a
# faint shadow over the anatomy is enough: that is what "adversarial-like" means here.
# Model B appears once notebook 05 has trained it (re-run this cell then); a rendered page shows
# the explorer as it was left.

# %%
model_b_path = run.layout.model(MODEL_B, run.seeds[0])
models = {MODEL_A: model_a, MODEL_B: load_model(model_b_path) if model_b_path.exists() else None}
flippable = pick_flippable(model_a, x_test, y_test, cfg.aug_layer, seed=cfg.seed)  # (row, mask, w) or None
start = flippable[0] if flippable else int(rows[0])
display(augmentation_explorer(models, x_test, test_index, cfg.aug_layer, cfg.cam_methods, start=start))

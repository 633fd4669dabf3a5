# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# call, draws Figure 2, and exports a few augmented images as derived DICOM for a viewer.

# %%
import pandas as pd
from IPython.display import display

from knee_tf import plots
from knee_tf.augment import build_augmented_pool, export_augmented_dicom, inverted_obfuscation
from knee_tf.cohorts import augmentation_flips, augmentation_maps, save_pool
from knee_tf.config import seed_everything
from knee_tf.data import pick_examples, shows_anatomy
from knee_tf.model import load_model, predict_proba
from knee_tf.study import open_run

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/
n_dicom_export = 12  # augmented images written as derived DICOM (artifacts/aug_dicom/)

# %%
run = open_run(run_dir, config)
cfg = run.config
seed_everything(cfg.seed)
data = run.load_ingest()
x_train, y_train, train_index = data.split("train", cohort="normal")
print(f"{len(x_train)} training images; {cfg.aug_variants} variant(s) each; layer {cfg.aug_layer}; "
      f"weights {cfg.aug_weight_range}")

# %% [markdown]
# ## The augmented pool, one per Model A seed
# Maps explain Model A's predicted class. Each seed's pool is saved in `artifacts/`; notebook 05
# trains that seed's Model B on it.

# %%
flips = []
for seed in run.seeds:
    model_a = load_model(run.model_path("a", seed))
    maps = augmentation_maps(model_a, x_train, cfg)
    pool_x, pool_y, provenance = build_augmented_pool(x_train, y_train, train_index["image_id"], maps,
                                                      seed=seed, config=cfg)
    del maps  # the pool holds what is needed; free the maps before the next seed
    save_pool(run, seed, pool_x, provenance)
    flips.append(augmentation_flips(model_a, x_train, y_train, pool_x, provenance).assign(seed=seed))
flips = pd.concat(flips)
display(provenance.groupby(["method", "transform"]).agg(n=("aug_id", "size"), mean_weight=("weight", "mean")))

# %% [markdown]
# ## How often does the augmentation fool Model A?
# Among training images Model A classifies correctly, the share whose augmented copy it gets wrong —
# the "weak spots" the paper describes. Higher means the augmentation removes what A relies on.

# %%
flips.groupby(["method", "transform"])["flipped"].agg(["mean", "size"]).rename(
    columns={"mean": "A flipped", "size": "n"}).style.format({"A flipped": "{:.1%}"})

# %% [markdown]
# ## Figure 2: map → inverted mask → augmented image → Model A's call
# Test images Model A classifies correctly, one per plane and label, among slices that cut some
# anatomy (seeded draw, not chosen by outcome). Under each image: Model A's call and probability of
# *relevant*. Notebook 06 redraws the same rows with Model B's calls (`fig2_augmentation_a_vs_b.png`).

# %%
x_test, y_test, test_index = data.split("test", cohort="normal")
model_a = load_model(run.model_path("a", run.seeds[0]))
p_test = predict_proba(model_a, x_test)[:, 1]
correct = (p_test >= 0.5) == y_test.astype(bool)
rows = pick_examples(test_index, seed=cfg.seed, mask=correct & shows_anatomy(test_index))
cam = augmentation_maps(model_a, x_test[rows], cfg, methods=("gradcam",))["gradcam"]
augmented = inverted_obfuscation(x_test[rows], cam)
preds = {"A": (p_test[rows], predict_proba(model_a, augmented)[:, 1])}
labels = [f"{p} · {lab}" for p, lab in zip(test_index["plane"].iloc[rows], test_index["label"].iloc[rows],
                                          strict=True)]
run.savefig(plots.plot_augmentation(x_test[rows], cam, augmented, preds, labels), "fig2_augmentation")
run.save_arrays("artifacts/fig2_examples.npz", images=x_test[rows], cam=cam, augmented=augmented,
                labels=labels, image_ids=test_index["image_id"].iloc[rows].to_numpy(str))

# %% [markdown]
# Read across a row: where the map is red, the inverted mask is dark and the augmented image loses
# signal, much like coil fall-off. When the map covers the joint, so does the dark patch; when it
# covers skin, air or the other leg, the anatomy survives and Model A's call rarely changes.
#
# ## Augmented images as DICOM
# Derived MR images (ImageType `DERIVED\SECONDARY`, the transform in SeriesDescription) that open in
# any DICOM viewer next to their source series.

# %%
pool_x, provenance = pool_x[:n_dicom_export], provenance.iloc[:n_dicom_export]
paths = export_augmented_dicom(pool_x, provenance, data.source_paths(), run.artifacts / "aug_dicom")
print(f"wrote {len(paths)} derived DICOM files to {run.artifacts / 'aug_dicom'}")

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
# # 03 · Grad-CAM at every max-pool layer (Figure 1)
#
# Grad-CAM weights a layer's feature maps by the gradient of the class score and keeps the positive
# part: a heatmap of where that layer's evidence for the class lies. Grad-CAM++ weights each
# location's gradient so that several separate regions can all count. The paper showed both at each
# max-pool layer of Model A and chose **layer 4** by eye, because its maps covered the anatomy a
# radiologist uses (the femoral condyles, the tibial plateau).
#
# Here `knee_tf.core.cam.compute_cams` computes every layer and both methods in one forward + backward
# pass per batch, taking the score as the target class's *logit* (the softmax bypassed, so a
# saturated softmax cannot flatten the maps) without touching the trained model. Then the choice of
# layer is **measured**: deletion and insertion curves ask whether removing the pixels a map ranks
# highest really lowers the model's confidence (and restoring them raises it).
#
# Outputs: Figure 1, the faithfulness table and its curves (paths: `knee_tf.data.layout.RunLayout`).
# At the end, an explorer lets you pick any test image, layer and method and watch the maps and
# that image's deletion curve change.
#
# On a fresh clone you can open this notebook first: with no run yet it ingests the default data as
# notebook 01 does (a few minutes the first time) and explains the shipped Model A (`published:A`,
# see `docs/model_card.md`) instead of one trained here.

# %%
import numpy as np
from IPython.display import display

from knee_tf.core.arrays import pick_examples, shows_anatomy
from knee_tf.core.cam import compute_cams
from knee_tf.core.faithfulness import faithfulness_curves
from knee_tf.core.model import predict_proba
from knee_tf.core.vocab import MODEL_A, TEST, predicted_class
from knee_tf.study import plots
from knee_tf.study.session import open_study
from knee_tf.teach.explore import cam_explorer
from knee_tf.yourdata.models import study_model

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/ (none yet: the data are ingested as in notebook 01)

# %%
study = open_study(run_dir, config, ingest_if_missing=True)  # the run folder, seeded, with notebook 01's images
run, cfg, data = study.run, study.config, study.data
x_test, y_test, test_index = study.normal(TEST)
model_a, source = study_model(study, MODEL_A)  # the run's first-seed Model A, else the shipped published:A
correct = predicted_class(predict_proba(model_a, x_test, cfg.predict_batch_size)[:, 1]) == y_test
print(f"Model A: {source}; right on {correct.mean():.1%} of {len(x_test)} normal test images")

# %% [markdown]
# ## Figure 1: maps per layer, for a relevant and an irrelevant slice of each plane
# Examples are correctly classified test slices that cut some anatomy (not empty outer slices),
# picked by a seeded draw, not by looking at the maps.
# Each map explains the predicted class and is min-max normalised per image; red is high.

# %%
rows = pick_examples(test_index, by=("plane", "label"), seed=cfg.seed, mask=correct & shows_anatomy(test_index))
cams = compute_cams(model_a, x_test[rows], layers=cfg.cam_layers, methods=cfg.cam_methods,
                    batch_size=cfg.cam_batch_size)
labels = [f"{p}\n{lab}" for p, lab in zip(test_index["plane"].iloc[rows], test_index["label"].iloc[rows],
                                          strict=True)]
fig = plots.plot_cam_layers(x_test[rows], cams, cfg.cam_layers, labels, methods=cfg.cam_methods)
run.savefig(fig, run.layout.figure_gradcam_layers)

# %% [markdown]
# What to look for: whether the shallow layers' maps (`pool1`, `pool2`) follow edges everywhere
# (skin, coil shading, the field's border) and the deeper layers' fewer, larger regions, in this run's
# figure above. Whether those regions are the anatomy is what the next table measures rather than
# asserts.
#
# ## Which layer's map is most faithful?
# Deletion AUC (lower is better): the class probability as the top-ranked pixels are blacked out.
# Insertion AUC (higher is better): the probability as they are restored onto a blurred image.
# `random` is a seeded uniform map: the chance level every real map must beat.

# %%
rng = np.random.default_rng(cfg.seed)
sub = np.sort(rng.choice(len(x_test), size=min(cfg.n_faithfulness, len(x_test)), replace=False))
sub_cams = compute_cams(model_a, x_test[sub], layers=cfg.cam_layers, methods=cfg.cam_methods,
                        batch_size=cfg.cam_batch_size)
curves = faithfulness_curves(model_a, x_test[sub], sub_cams, steps=cfg.faithfulness_steps, seed=cfg.seed,
                             batch_size=cfg.predict_batch_size)
table = curves.table().sort_values(["method", "layer"])
run.write_csv(run.layout.faithfulness, table)
display(table.round(3))
display(sub_cams.zero_counts())

# %%
run.savefig(plots.plot_faithfulness(curves.frame()), run.layout.figure_faithfulness_curves)

# %% [markdown]
# The curves behind the table: a map whose deletion curve drops fastest (and insertion curve rises
# fastest) points at what the model actually uses. All-zero maps (counted above) carry no ranking and
# behave like the random reference.

# %% [markdown]
# ## Explore: any test image, any layer, either method
# Filter the normal test images by plane, label and whether Model A gets them right, then pick one,
# a layer and a method. Left to right: the image; the map for Model A's call; the map for the
# *other* class (where the evidence against the call lies); and this image's deletion curve — Model
# A's probability of its call as the pixels this map ranks highest are blacked out, 10% at a time.
# A curve that falls at once means the map found what the model uses; the table above is the mean
# of such curves over many images. Open the notebook in JupyterLab to use the controls; a rendered
# page shows the explorer as it was left.

# %%
display(cam_explorer(model_a, x_test, test_index, cfg.cam_layers, cfg.cam_methods, steps=cfg.faithfulness_steps,
                     seed=cfg.seed))

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
# # 00 · A classroom tour of activation-map augmentation
#
# The whole method of the ISMRM 2021 abstract in one notebook, on settings small enough to run in
# about two minutes on a laptop (`StudyConfig.tour()`: 48 synthetic exams at 64 × 64 pixels, a small
# LeNet). The numbers it prints are a demonstration, not results; the study's notebooks 01–06 do the
# real thing.
#
# 1. **Ingest** synthetic knee localizer DICOM into arrays.
# 2. **Model A** learns to call a slice *relevant* (it shows the knee joint) or *irrelevant*.
# 3. **Maps**: Grad-CAM at each max-pool layer, and how faithful each layer's map is.
# 4. **Augmentation**: darken what Model A looks at, and watch it change its mind.
# 5. **Model B** trains on normal and augmented images.
# 6. **Cohorts**: A and B on normal, metal-implant and map-corrupted test images.
#
# Each section ends with an exercise. Write your answer into `answer = ...` and run the cell: it says
# whether you are right, with a hint if not. The answers are computed from this run, so they change
# with the settings. A teacher can see them with `reveal_answers=True` in the config.

# %%
import numpy as np
import pandas as pd
from IPython.display import display

from knee_tf.core.augment import weighted_obfuscation
from knee_tf.core.cam import compute_cams
from knee_tf.core.faithfulness import faithfulness_curves
from knee_tf.core.model import predict_proba, train_classifier
from knee_tf.core.vocab import GRADCAM, MODEL_A, MODEL_B, PLANES, TEST, TRAIN, VAL, predicted_class
from knee_tf.study import evaluate, experiment, plots
from knee_tf.study.cohorts import build_test_cohorts
from knee_tf.study.session import ingest_study
from knee_tf.teach import exercises
from knee_tf.teach.explore import pick_flippable

# %% tags=["parameters"]
config = "tour"  # "tour" | path to a StudyConfig JSON
run_dir = ""  # empty: start a new run folder under runs/

# %% [markdown]
# ## 1 · Ingest
# The synthetic exams are written as real DICOM files (generated on first use), then decoded,
# normalised to [0, 1] and resized to the model input. Splits are by patient.

# %%
study = ingest_study(run_dir, config)  # a new run folder, seeded; the data generated, decoded, recorded
run, cfg, data = study.run, study.config, study.data
x_train, y_train, train_index = study.normal(TRAIN)
x_val, y_val, _ = study.normal(VAL)
x_test, y_test, test_index = study.normal(TEST)
print(f"{len(data.index)} slices: train {len(x_train)}, val {len(x_val)}, test {len(x_test)} (normal exams)")

# %%
plots.plane_label_montage(data.images, data.index, per_cell=3, seed=cfg.seed);

# %% [markdown]
# **Exercise 1.** What share of the *training* slices is labelled relevant? (a number between 0 and
# 1; two decimals are enough). Why does it matter for reading an accuracy?

# %%
answer = None  # e.g. 0.5
exercises.check_answer(answer, exercises.relevant_share(y_train), tolerance=0.01, reveal=cfg.reveal_answers,
                       hint="count y_train == 1 and divide by len(y_train)")

# %% [markdown]
# ## 2 · Model A
# A LeNet: four blocks of convolution + max-pool (`pool1` … `pool4`), two dense layers, softmax.
# Trained on normal images only, with early stopping on the validation loss. One line per epoch.

# %%
result_a = train_classifier(x_train, y_train, x_val, y_val, run.layout.model(MODEL_A, cfg.seed), seed=cfg.seed,
                            **cfg.training_settings())
model_a = result_a.model
p_test = predict_proba(model_a, x_test)[:, 1]
correct = predicted_class(p_test) == y_test
print(f"Model A is right on {correct.mean():.1%} of {len(x_test)} normal test slices")

# %% [markdown]
# **Exercise 2.** Is Model A better than a "model" that always answers the most common class of the
# test slices? Answer `"yes"` or `"no"`.

# %%
answer = None  # "yes" or "no"
exercises.check_answer(answer, exercises.beats_majority(correct.mean(), y_test), reveal=cfg.reveal_answers,
                       hint="compare the accuracy with max(share relevant, 1 - share relevant) of y_test")

# %% [markdown]
# ## 3 · Maps: where does Model A look?
# Grad-CAM weights a layer's feature maps by the gradient of the class score: red is where that
# layer's evidence for the call lies. Below, one relevant slice per plane at every layer. Then the
# **deletion** test on 100 test slices: black out the pixels a map ranks highest, 10% at a time,
# and follow Model A's probability of its call. A low area under that curve (deletion AUC) means
# the map points at what the model really uses; `random` is the chance level.

# %%
rows = [int(np.flatnonzero(correct & (test_index["plane"].to_numpy() == p) & (y_test == 1))[0]) for p in PLANES]
cams = compute_cams(model_a, x_test[rows], layers=cfg.cam_layers, methods=(GRADCAM,), progress=False)
plots.plot_cam_layers(x_test[rows], cams, cfg.cam_layers, list(PLANES), methods=(GRADCAM,));

# %%
sub = np.sort(np.random.default_rng(cfg.seed).choice(len(x_test), min(cfg.n_faithfulness, len(x_test)), replace=False))
curves = faithfulness_curves(model_a, x_test[sub], compute_cams(model_a, x_test[sub], layers=cfg.cam_layers,
                                                                progress=False),
                             steps=cfg.faithfulness_steps, seed=cfg.seed, progress=False)
table = curves.table()
display(table.pivot_table(index="layer", columns="method", values="deletion_auc").round(3))

# %% [markdown]
# **Exercise 3.** Which layer's Grad-CAM map has the lowest deletion AUC — is it `pool4`, the
# paper's choice? Answer with the layer name.

# %%
answer = None  # e.g. "pool1"
exercises.check_answer(answer, exercises.lowest_deletion_layer(table, GRADCAM), reveal=cfg.reveal_answers,
                       hint="read the gradcam column of the table above: lowest is best")

# %% [markdown]
# ## 4 · Augmentation: darken what Model A looks at
# The paper's augmentation multiplies the image by `1 − w·M`, where M is Model A's map at `pool4`
# and w a weight (w = 1: the inverted map). Below, one correctly classified test slice darkened with
# growing w, with Model A's probability of *relevant* under each. Somewhere along the row it changes
# its mind: the image still shows the same knee, the model no longer sees it. That is what
# "adversarial-like" means.

# %%
row, mask, flip_w = pick_flippable(model_a, x_test, y_test, cfg.aug_layer, seed=cfg.seed)
weights = np.linspace(0, 1, 6)
darkened = np.stack([weighted_obfuscation(x_test[row], mask, w) for w in weights])
p_dark = predict_proba(model_a, darkened)[:, 1]
labels = [f"w = {w:.1f}\np(relevant) = {p:.2f}" for w, p in zip(weights, p_dark, strict=True)]
plots.montage(darkened, pd.DataFrame({"w": labels, "row": "image"}), rows="row", cols="w", per_cell=1,
              col_order=labels);

# %% [markdown]
# **Exercise 4.** At what weight w does Model A first change its call on this slice? Look at the row
# above, guess to one decimal, then try values with `weighted_obfuscation(x_test[row], mask, w)` and
# `predict_proba`. (Right within 0.05.)

# %%
answer = None  # e.g. 0.7
exercises.check_answer(answer, flip_w, tolerance=0.05, reveal=cfg.reveal_answers,
                       hint="the call changes between the last w with p on one side of 0.5 and the first on the other")

# %% [markdown]
# Now the training pool: one augmented copy of every training image, the four combinations of
# {Grad-CAM, Grad-CAM++} × {inverted, weighted} in equal shares, w ~ U(0.5, 1) where weighted. How
# often does each combination flip Model A's (correct) call?

# %%
pool_x, pool_y, provenance = experiment.augmented_pool(model_a, x_train, y_train, train_index["image_id"], cfg,
                                                       cfg.seed, progress=False)
flips = experiment.augmentation_flips(model_a, x_train, y_train, pool_x, provenance, cfg.predict_batch_size)
display(flips.groupby(["method", "transform"])["flipped"].mean().rename("share flipped").to_frame().round(3))

# %% [markdown]
# **Exercise 5.** Which transform flips Model A more often, `inverted` or `weighted`? Why would that be?

# %%
answer = None  # "inverted" or "weighted"
exercises.check_answer(answer, flips.groupby("transform")["flipped"].mean().idxmax(), reveal=cfg.reveal_answers,
                       hint="inverted is w = 1, the largest weight")

# %% [markdown]
# ## 5 · Model B: train on normal + augmented images
# Same architecture, settings, validation set and seed as Model A; twice the training images.

# %%
result_b = train_classifier(np.concatenate([x_train, pool_x]), np.concatenate([y_train, pool_y]), x_val, y_val,
                            run.layout.model(MODEL_B, cfg.seed), seed=cfg.seed, **cfg.training_settings())
model_b = result_b.model
plots.plot_history({"A": result_a.history, "B": result_b.history});

# %% [markdown]
# ## 6 · Cohorts: A and B on the paper's three test cohorts
# *normal*: the normal test slices; *metal*: exams with a metal implant (never seen in training);
# *cam*: the normal test slices corrupted with Model A's own inverted Grad-CAM at w = 0.9.
# Accuracy with a 95% bootstrap interval over slices.

# %%
cohorts = build_test_cohorts(data, model_a, cfg, progress=False)
predictions = experiment.predict_cohorts({MODEL_A: model_a, MODEL_B: model_b}, cohorts, cfg.seed,
                                         cfg.predict_batch_size)
metrics = evaluate.cohort_metrics(predictions, n_boot=cfg.n_bootstrap, ece_bins=cfg.ece_bins)
display(metrics[["model", "cohort", "n", "accuracy", "ci_low", "ci_high"]].round(3))

# %% [markdown]
# **Exercise 6.** On which cohort does Model B gain most over Model A? Is that gain a fair test of
# the method? (Think about who made cohort 3's corruptions, and what B trained on.)

# %%
answer = None  # "normal", "metal" or "cam"
exercises.check_answer(answer, exercises.largest_gain_cohort(metrics, MODEL_A, MODEL_B), reveal=cfg.reveal_answers,
                       hint="subtract A's accuracy from B's, cohort by cohort")

# %% [markdown]
# ## Where next
# * Notebooks **03** and **04** end with live explorers: any image, layer and method; any weight,
#   and the button that finds the smallest w that flips Model A.
# * `make study` runs the real study (513 exams, 128 × 128, the paper's LeNet) in about 9 minutes;
#   its results, with confidence intervals and significance tests, are in docs/results.md.

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
# # 05 · Model B: the same network, trained on normal + activation-map-augmented images
#
# Model B differs from Model A in its training data only: the normal training images plus the
# augmented pool that notebook 04 built from Model A's Grad-CAM / Grad-CAM++ maps. Architecture,
# hyper-parameters, epoch budget, early stopping, validation set (normal images) and seed protocol
# are identical, so any difference in notebook 06 comes from the augmentation. Each seed's Model B
# is trained on the pool made from the same seed's Model A.
#
# Each Model B is a job of the experiment grid (`knee_tf.controls.grid`, as in notebook 02): it rebuilds its
# seed's augmented pool from that seed's Model A (the pool notebook 04 stored, float16 and all) and
# trains on normal + augmented images.
#
# Output: one Model B folder per seed (model, logs, per-image predictions on every cohort), and
# learning curves beside Model A's.

# %%
import json

from knee_tf.controls.grid import run_grid
from knee_tf.controls.jobs import plan_jobs
from knee_tf.core.model import read_training_log
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.study import plots
from knee_tf.study.session import open_study

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/

# %%
study = open_study(run_dir, config)  # the run folder, seeded, with notebook 01's images
run, cfg, data = study.run, study.config, study.data

# %% [markdown]
# ## Train one Model B per seed
# The training set doubles (with one variant per image); the validation set stays normal, as for A.

# %%
jobs = plan_jobs([MODEL_B], run.seeds)  # the A jobs of notebook 02 are finished: skipped
run_grid(jobs, cfg, run.root, data.cache_dir, scheduler=cfg.scheduler, workers=cfg.grid_workers).raise_failed()
histories = {}
for seed in run.seeds:
    record = json.loads(run.layout.job_record(MODEL_B, seed).read_text())
    print(f"seed {seed}: {record['n_train'] - record['n_augmented']} normal + {record['n_augmented']} augmented "
          f"training images, {record['epochs_run']} epochs, {record['seconds']} s")
    histories[f"B, seed {seed}"] = read_training_log(run.layout.training_log(MODEL_B, seed))
    histories[f"A, seed {seed}"] = read_training_log(run.layout.training_log(MODEL_A, seed))

# %% [markdown]
# ## Learning curves, A vs B
# An epoch of B holds twice as many images (and steps) as an epoch of A, so B's curves move further
# per epoch and early stopping comes sooner. Whether the degraded copies make B's training loss
# higher (are the obfuscated regions learnable?) is printed below the curves from this run's logs.
# What matters is the validation curve (dashed) on normal images, and notebook 06's test cohorts.

# %%
run.savefig(plots.plot_history(histories), run.layout.figure_learning_curves_a_vs_b)
for seed in run.seeds:  # lowest loss of each model, train and validation, from the training logs
    a, b = histories[f"A, seed {seed}"], histories[f"B, seed {seed}"]
    print(f"seed {seed}: lowest training loss A {a['loss'].min():.3f}, B {b['loss'].min():.3f} "
          f"(B {'higher' if b['loss'].min() > a['loss'].min() else 'not higher'}); lowest validation loss "
          f"A {a['val_loss'].min():.3f}, B {b['val_loss'].min():.3f}")

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Model A: a LeNet trained on normal images
#
# The paper's baseline classifier (Model A): a LeNet-style CNN — four convolution blocks, each ending
# in a max-pool layer (`pool1` … `pool4`, the layers whose Grad-CAM maps Figure 1 shows), then dense
# layers of 120 and 84 units and a softmax — trained with cross-entropy to call a localizer slice
# *relevant* or *irrelevant* for scan-plane prescription. It sees only normal training images.
#
# Training is seeded (same seed, same weights), class-weighted, and stops early on validation loss;
# the best checkpoint is kept. With `n_seeds > 1` in the config one model is trained per seed, so the
# later comparison with Model B can report the spread that seeds alone cause. The trainings are
# jobs of the experiment grid (`knee_tf.controls.grid`, the same function as `knee-tf grid`): in this process,
# on a local Dask cluster or on a remote one, as the config's `grid_workers` and `scheduler` say,
# with the same results; the config's `precision` says float32 or bfloat16.
#
# Outputs in the run folder (named by `knee_tf.data.layout.RunLayout`): one model folder per seed (model,
# training logs, per-image predictions on every test cohort), the normal-test predictions and the figures below.

# %%
import pandas as pd
from IPython.display import display

from knee_tf.controls.grid import run_grid
from knee_tf.controls.jobs import plan_jobs
from knee_tf.controls.training_job import read_predictions
from knee_tf.core.model import read_training_log
from knee_tf.core.vocab import MODEL_A, NORMAL, TEST, TRAIN, VAL
from knee_tf.study import evaluate, plots
from knee_tf.study.session import open_study

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/

# %%
study = open_study(run_dir, config)  # the run folder, seeded, with notebook 01's images
run, cfg, data = study.run, study.config, study.data
normal = data.index[data.index["cohort"] == NORMAL] if "cohort" in data.index else data.index
print(f"normal images: train {(normal['split'] == TRAIN).sum()}, val {(normal['split'] == VAL).sum()}, "
      f"test {(normal['split'] == TEST).sum()}, each {data.images.shape[1:]}; seeds {run.seeds}")

# %% [markdown]
# ## Train
# One grid job per seed (a progress bar over jobs); early stopping restores the epoch with the lowest
# validation loss. A re-run skips the seeds whose model folder is complete.

# %%
jobs = plan_jobs([MODEL_A], run.seeds)
run_grid(jobs, cfg, run.root, data.cache_dir, scheduler=cfg.scheduler, workers=cfg.grid_workers).raise_failed()
histories = {f"seed {seed}": read_training_log(run.layout.training_log(MODEL_A, seed)) for seed in run.seeds}
predictions = read_predictions(run.root, jobs)
predictions = predictions[predictions["cohort"] == NORMAL][list(evaluate.PREDICTION_COLUMNS)].reset_index(drop=True)
run.write_csv(run.layout.model_a_test, predictions)

# %% [markdown]
# ## Learning curves
# Solid lines are training, dashed validation. A widening gap is overfitting; the saved model is the
# one at the lowest dashed loss.

# %%
run.savefig(plots.plot_history(histories), run.layout.figure_learning_curves_a)

# %% [markdown]
# ## Test accuracy (normal test split), overall, per plane and per site
# The 95% intervals are bootstrap intervals over test images. Beside it, the linear baseline from
# notebook 01: the gap between the two is what the CNN gets from anatomy.

# %%
stats = {"n_boot": cfg.n_bootstrap, "ece_bins": cfg.ece_bins}
for breakdown in (None, "plane", "site"):
    display(evaluate.cohort_metrics(predictions, breakdown=breakdown, **stats))
pd.Series(run.read_json(run.layout.linear_baseline), name="linear baseline")

# %% [markdown]
# ## Confusion matrix (first seed)
# Rows are the radiologist-style labels, columns Model A's calls; the off-diagonal cells are the slices
# a prescription tool would get wrong.

# %%
first = predictions[predictions["seed"] == run.seeds[0]]
run.savefig(plots.plot_confusion(first["y_true"], first["y_pred"], title=f"Model A, normal test, seed {run.seeds[0]}"),
            run.layout.figure_confusion_a)

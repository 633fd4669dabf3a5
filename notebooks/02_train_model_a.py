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
# # 02 · Model A: a LeNet trained on normal images
#
# The paper's baseline classifier (Model A): a LeNet-style CNN — four convolution blocks, each ending
# in a max-pool layer (`pool1` … `pool4`, the layers whose Grad-CAM maps Figure 1 shows), then dense
# layers of 120 and 84 units and a softmax — trained with cross-entropy to call a localizer slice
# *relevant* or *irrelevant* for scan-plane prescription. It sees only normal training images.
#
# Training is seeded (same seed, same weights), class-weighted, and stops early on validation loss;
# the best checkpoint is kept. With `n_seeds > 1` in the config one model is trained per seed, so the
# later comparison with Model B can report the spread that seeds alone cause.
#
# Outputs in the run folder: `models/model_a_seed<S>.keras`, training logs (CSV, TensorBoard),
# `results/model_a_test.csv` (per-image test predictions) and the figures below.

# %%
import pandas as pd
from IPython.display import display

from knee_tf import evaluate, plots
from knee_tf.config import seed_everything
from knee_tf.model import predict_proba, train_classifier
from knee_tf.study import open_run

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/

# %%
run = open_run(run_dir, config)
cfg = run.config
seed_everything(cfg.seed)
data = run.load_ingest()
x_train, y_train, _ = data.split("train", cohort="normal")
x_val, y_val, _ = data.split("val", cohort="normal")
x_test, y_test, test_index = data.split("test", cohort="normal")
print(f"train {len(x_train)}, val {len(x_val)}, test {len(x_test)} images of {x_train.shape[1:]}; "
      f"seeds {run.seeds}")

# %% [markdown]
# ## Train
# One Keras progress bar per epoch; early stopping restores the epoch with the lowest validation loss.

# %%
histories, predictions = {}, []
for seed in run.seeds:
    result = train_classifier(x_train, y_train, x_val, y_val, cfg, run.models, seed=seed,
                              name=f"model_a_seed{seed}", verbose=2)
    histories[f"seed {seed}"] = result.history
    probs = predict_proba(result.model, x_test, batch_size=cfg.cam_batch_size)
    predictions.append(evaluate.prediction_frame(probs, test_index, "A", seed, cohort="normal"))
predictions = pd.concat(predictions, ignore_index=True)
run.write_csv("results/model_a_test.csv", predictions)

# %% [markdown]
# ## Learning curves
# Solid lines are training, dashed validation. A widening gap is overfitting; the saved model is the
# one at the lowest dashed loss.

# %%
run.savefig(plots.plot_history(histories), "02_learning_curves")

# %% [markdown]
# ## Test accuracy (normal test split), overall, per plane and per site
# The 95% intervals are bootstrap intervals over test images. Beside it, the linear baseline from
# notebook 01: the gap between the two is what the CNN gets from anatomy.

# %%
display(evaluate.cohort_metrics(predictions, config=cfg))
display(evaluate.cohort_metrics(predictions, breakdown="plane", config=cfg))
display(evaluate.cohort_metrics(predictions, breakdown="site", config=cfg))
pd.Series(run.read_json("results/linear_baseline.json"), name="linear baseline")

# %% [markdown]
# ## Confusion matrix (first seed)
# Rows are the radiologist-style labels, columns Model A's calls; the off-diagonal cells are the slices
# a prescription tool would get wrong.

# %%
first = predictions[predictions["seed"] == run.seeds[0]]
run.savefig(plots.plot_confusion(first["y_true"], first["y_pred"], title="Model A, normal test"),
            "02_confusion_model_a")

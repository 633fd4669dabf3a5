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
# # 05 · Model B: the same network, trained on normal + activation-map-augmented images
#
# Model B differs from Model A in its training data only: the normal training images plus the
# augmented pool that notebook 04 built from Model A's Grad-CAM / Grad-CAM++ maps. Architecture,
# hyper-parameters, epoch budget, early stopping, validation set (normal images) and seed protocol
# are identical, so any difference in notebook 06 comes from the augmentation. Each seed's Model B
# is trained on the pool made from the same seed's Model A.
#
# Output: one Model B per seed with its logs, and learning curves beside Model A's.

# %%
import numpy as np

from knee_tf import plots
from knee_tf.cohorts import load_pool
from knee_tf.config import seed_everything
from knee_tf.model import read_training_log, train_classifier
from knee_tf.study import open_run
from knee_tf.vocab import MODEL_A, MODEL_B, NORMAL, TRAIN, VAL

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/

# %%
run = open_run(run_dir, config)
cfg = run.config
seed_everything(cfg.seed)
data = run.load_ingest()
x_train, y_train, _ = data.split(TRAIN, cohort=NORMAL)
x_val, y_val, _ = data.split(VAL, cohort=NORMAL)

# %% [markdown]
# ## Train one Model B per seed
# The training set doubles (with one variant per image); the validation set stays normal, as for A.

# %%
histories = {}
for seed in run.seeds:
    pool_x, provenance = load_pool(run.layout, seed, dtype=np.float16)
    x_b = np.concatenate([x_train, pool_x], dtype=np.float32)
    y_b = np.concatenate([y_train, provenance["label"].to_numpy(np.int32)])
    print(f"seed {seed}: {len(x_train)} normal + {len(pool_x)} augmented training images")
    result = train_classifier(x_b, y_b, x_val, y_val, run.layout.model(MODEL_B, seed), seed=seed,
                              log_path=run.layout.training_log(MODEL_B, seed),
                              tensorboard_dir=run.layout.tensorboard(MODEL_B, seed),
                              **cfg.training_settings())
    histories[f"B, seed {seed}"] = result.history
    histories[f"A, seed {seed}"] = read_training_log(run.layout.training_log(MODEL_A, seed))

# %% [markdown]
# ## Learning curves, A vs B
# An epoch of B holds twice as many images (and steps) as an epoch of A, so B's curves move further
# per epoch and early stopping comes sooner. The degraded copies do not make B's training loss
# higher: the obfuscated regions are learnable. What matters is the validation curve (dashed) on
# normal images, and notebook 06's test cohorts.

# %%
run.savefig(plots.plot_history(histories), run.layout.figure_learning_curves_a_vs_b)

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
# # 06 · Model A vs Model B on the test cohorts (the results table, Figure 3)
#
# The paper reports accuracy on three test cohorts — (1) normal images, (2) exams with metal-implant
# artifacts, (3) images corrupted with Model A's own inverted Grad-CAM maps — and finds Model B better
# on all three (83.1 → 86.6%, 70.6 → 80.3%, 67.5 → 85.5%). It gives no intervals or tests.
# A fourth cohort, `new_site`, is not in the paper: the normal exams of one site (scanner and coil)
# that never appears in training or validation, so it measures what a site shift costs each model.
#
# Here each accuracy gets a 95% bootstrap interval, each A-vs-B difference an exact McNemar test on
# the same images, calibration (ECE, 15 bins) and breakdowns per plane and site; with several seeds,
# mean ± sd across seeds. Cohort 3 comes from the same generator Model B was trained on, so it
# favours B by construction; the **held-out corruptions** (bias field, coil-element dropout, Rician
# noise, motion ghosting — no model trains on them) test whether the robustness carries over.
#
# Outputs (paths: `knee_tf.data.layout.RunLayout`): the per-image predictions, the cohort, McNemar,
# severity and breakdown tables, the Markdown results table, Figure 3, Figure 2 with Model B's
# calls, and the severity curves.

# %%
import pandas as pd
from IPython.display import Markdown, display

from knee_tf.core.model import load_model, predict_proba
from knee_tf.core.vocab import GRADCAM, MODEL_A, MODEL_B, STUDY_MODELS, TEST
from knee_tf.study import evaluate, plots, report
from knee_tf.study.cohorts import build_test_cohorts
from knee_tf.study.experiment import (
    a_wrong_b_right,
    augmentation_maps,
    cohort_images,
    predict_cohorts,
    predict_corruptions,
)
from knee_tf.study.session import open_study

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: the newest run folder under runs/

# %%
study = open_study(run_dir, config)  # the run folder, seeded, with notebook 01's images
run, cfg, data = study.run, study.config, study.data
x_test, _, test_index = study.normal(TEST)
stats = {"n_boot": cfg.n_bootstrap, "ece_bins": cfg.ece_bins}

# %% [markdown]
# ## Predictions of A and B on every cohort and every held-out corruption, per seed

# %%
predictions, corrupted, cohorts = [], [], {}
for seed in run.seeds:
    models = {arm: load_model(run.layout.model(arm, seed)) for arm in STUDY_MODELS}
    cohorts[seed] = build_test_cohorts(data, models[MODEL_A], cfg)
    predictions.append(predict_cohorts(models, cohorts[seed], seed, cfg.predict_batch_size))
    corrupted.append(predict_corruptions(models, x_test, test_index, cfg, seed))
predictions = pd.concat(predictions, ignore_index=True)
corrupted = pd.concat(corrupted, ignore_index=True)
run.write_csv(run.layout.predictions, predictions)
print({c: len(x) for c, (x, _) in cohorts[run.seeds[0]].items()})

# %% [markdown]
# ## The results table
# Measured cells: mean ± sd across seeds [mean per-seed 95% bootstrap CI]. "significant?" is the exact
# McNemar test of A vs B on the same images.

# %%
metrics = evaluate.cohort_metrics(predictions, **stats)
mcnemar = evaluate.mcnemar_table(predictions)
run.write_csv(run.layout.cohorts, metrics)
run.write_csv(run.layout.mcnemar, mcnemar)
table = report.paper_comparison_markdown(evaluate.summarize_seeds(metrics), mcnemar)
run.write_text(run.layout.results_table, table + "\n")
display(Markdown(table))

# %%
display(mcnemar.round(4))

# %% [markdown]
# ## Per plane and per site (mean across seeds)
# Where does each model fail? A gain that comes from one plane or one site says more about the data
# than about the method.

# %%
for key, path in (("plane", run.layout.breakdown_plane), ("site", run.layout.breakdown_site)):
    part = evaluate.cohort_metrics(predictions, breakdown=key, **stats)
    run.write_csv(path, part)
    display(evaluate.summarize_seeds(part).pivot_table(index=["cohort", key], columns="model",
                                                       values="accuracy_mean").round(3))

# %% [markdown]
# ## Held-out corruptions: accuracy against severity
# Lines are the mean over seeds, bands the mean 95% bootstrap interval. Curves that fall together mean
# the augmentation did not buy robustness to that kind of degradation.

# %%
severity = evaluate.severity_table(corrupted, **stats)
run.write_csv(run.layout.severity_table, severity)
run.savefig(plots.plot_severity(severity), run.layout.figure_severity)

# %% [markdown]
# ## Figure 3: test images that Model A gets wrong and Model B gets right
# A seeded draw of up to `n_figure3_per_cohort` per cohort (first seed), with each model's Grad-CAM at the augmentation
# layer for its own call (so A's map explains its wrong answer). B's maps show what it looks at
# instead; a blank map means the layer holds no positive evidence for that call.

# %%
seed = run.seeds[0]
models = {arm: load_model(run.layout.model(arm, seed)) for arm in STUDY_MODELS}
rows = a_wrong_b_right(predictions, seed, per_cohort=cfg.n_figure3_per_cohort, rng_seed=cfg.seed)
images = cohort_images(cohorts[seed], rows)
cams = {m: augmentation_maps(models[m], images, cfg, methods=(GRADCAM,))[GRADCAM] for m in models}
run.savefig(plots.plot_a_wrong_b_right(images, cams[MODEL_A], cams[MODEL_B], rows), run.layout.figure_a_wrong_b_right)
display(rows)

# %% [markdown]
# ## Figure 2, completed: the augmentation examples of notebook 04 with Model B's calls
# The same test images, maps and augmented copies (Model A's inverted Grad-CAM), read from the run.

# %%
ex = run.load_arrays(run.layout.fig2_examples)
preds = {m: (predict_proba(models[m], ex["images"], cfg.predict_batch_size)[:, 1],
             predict_proba(models[m], ex["augmented"], cfg.predict_batch_size)[:, 1]) for m in models}
run.savefig(plots.plot_augmentation(ex["images"], ex["cam"], ex["augmented"], preds, list(ex["labels"])),
            run.layout.figure_augmentation_a_vs_b)

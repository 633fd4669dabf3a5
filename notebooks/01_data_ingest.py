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
# # 01 · Data ingest: from DICOM files to model-ready arrays
#
# The paper trained on 513 knee exams from six GE scanners (1.5T and 3T) and many receive coils, each
# localizer slice labelled *relevant* or *irrelevant* for scan-plane prescription. That data is
# private, so by default this repository uses a **synthetic multi-site knee localizer dataset written
# as real DICOM** (see `docs/phantom.md`); your own data enters the same way, through a manifest.
#
# This notebook
# 1. validates the manifest (every bad row reported, with its line number),
# 2. decodes each DICOM file (Modality LUT, MONOCHROME1, compressed transfer syntaxes), checks its
#    orientation against the manifest plane, normalises intensities (1st–99th percentile → [0, 1]) and
#    resizes to the model input, caching the arrays so later steps never decode again,
# 3. shows what the data looks like: counts, example images, intensities per site, and a difficulty
#    check (a linear classifier on downsampled pixels: if it could solve the task, a CNN study would
#    say nothing about anatomy).
#
# It regenerates no paper figure. It records in the run folder where the decoded arrays live
# (`run.layout.ingest_record`); notebooks 02–06 open that cache directly and never read a DICOM file.

# %%
import pandas as pd
from IPython.display import display

from knee_tf.core.vocab import PLANES, RELEVANT, TEST, TRAIN
from knee_tf.data.ingest import summary_table
from knee_tf.study import plots
from knee_tf.study.pipeline import environment_report
from knee_tf.study.session import ingest_study

pd.DataFrame([environment_report()]).T.rename(columns={0: "version"})

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (your data: set manifest, data_root)
run_dir = ""  # empty: start a new run folder under runs/

# %% [markdown]
# ## Validate and decode
# A new run folder; the synthetic default dataset is generated on first use. Validation runs before
# any decoding. With `on_error="fail"` (a config field) any bad row stops the study with the full
# list; with `"skip"` the good rows go on and the rest are listed below (rows in = ingested +
# skipped). The run records where the decoded arrays are, for notebooks 02–07. Nothing here draws
# at random but the example montages, which are given the config's seed: the notebook is not seeded
# and loads no TensorFlow.

# %%
study = ingest_study(run_dir, config, seed=False)
run, cfg, data = study.run, study.config, study.data
display(data.skipped.head(20))

# %% [markdown]
# ## What is in the data
# Rows by split × plane × label, per site. Splits are by patient, so no patient's slices are on both
# sides of a train/test comparison. The metal-implant exams (the paper's cohort 2) are test-only.

# %%
display(summary_table(data.index))
run.savefig(plots.plot_counts(data.index), run.layout.figure_counts)

# %% [markdown]
# The bars show class balance per plane: neither class should dominate, or accuracy would say little.

# %%
fraction = data.index.assign(share=data.index["label"].eq(RELEVANT)).pivot_table(
    index="plane", values="share", aggfunc="mean")
fraction.rename(columns={"share": f"share {RELEVANT}"}).style.format("{:.0%}")

# %% [markdown]
# ## Example images per plane and label
# Relevant slices cut the femoral condyles and the tibial plateau (the anatomy a technician places the
# scan planes on); irrelevant ones miss the joint (shaft, soft tissue only, patella/tendon alone).

# %%
fig = plots.plane_label_montage(data.images, data.index, per_cell=4, seed=cfg.seed)  # relevant first
run.savefig(fig, run.layout.figure_montage)

# %% [markdown]
# ## Sites, coils and field strengths
# The same plane looks different per scanner and coil: receive-coil shading, SNR (3T vs 1.5T) and
# contrast. A classifier has to see through this; so does Grad-CAM. (A manifest without a `site`
# column shows one column, "all".)

# %%
sites = data.index if "site" in data.index else data.index.assign(site="all")
fig = plots.montage(data.images, sites, rows="plane", cols="site", per_cell=1, seed=cfg.seed, row_order=list(PLANES))
run.savefig(fig, run.layout.figure_montage_sites)
run.savefig(plots.intensity_histograms(data.images, sites, by="site"), run.layout.figure_intensity_per_site)

# %% [markdown]
# The histograms are of normalised foreground intensity; their shift between sites is the site effect
# the augmentation later has to be robust to.
#
# ## Difficulty check: a linear classifier on 32×32 pixels
# Reported beside the CNN later (notebook 02). Far below the CNN means the task needs anatomy, not a
# global intensity cue.

# %%
from knee_tf.study.baseline import linear_baseline  # noqa: E402

xtr, ytr, itr = study.normal(TRAIN)
xte, yte, ite = study.normal(TEST)
baseline = linear_baseline(xtr, ytr, xte, yte, train_planes=itr["plane"].to_numpy(),
                           test_planes=ite["plane"].to_numpy())
run.write_json(run.layout.linear_baseline, baseline)
pd.Series(baseline)

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
# It regenerates no paper figure; every later step reads the cache recorded here in the run folder.

# %%
import pandas as pd
from IPython.display import display

from knee_tf import plots
from knee_tf.config import resolve
from knee_tf.ingest import ingest, summary_table
from knee_tf.study import ensure_dataset, environment_report, open_run

pd.DataFrame([environment_report()]).T.rename(columns={0: "version"})

# %% tags=["parameters"]
config = "default"  # "default" | "smoke" | path to a StudyConfig JSON (run folders hold one)
run_dir = ""  # empty: start a new run folder under runs/
manifest = ""  # empty: the synthetic default dataset (generated on first use)
root = ""  # data root the manifest paths are relative to (empty: the config data_root)
on_error = "fail"  # "fail": stop and list every bad row; "skip": ingest the good rows, report the rest
smoke = False  # True: tiny settings for a quick check, the same as config smoke

# %%
run = open_run(run_dir, "smoke" if smoke and config == "default" else config, create=True)
cfg = run.config if not manifest else run.config.replace(manifest=manifest)
manifest_path = ensure_dataset(cfg)
data_root = resolve(root or cfg.data_root)
print(f"run folder: {run.root}\nmanifest:   {manifest_path}\ndata root:  {data_root}")

# %% [markdown]
# ## Validate and decode
# Validation runs before any decoding. With `on_error="fail"` any bad row stops the study with the
# full list; with `"skip"` the good rows go on and the rest are listed below (rows in = ingested + skipped).

# %%
data = ingest(manifest_path, data_root, cache_dir=resolve(cfg.cache_dir), image_size=cfg.image_size,
              on_error=on_error, workers=cfg.n_workers)
print(f"{len(data.index)} ingested, {len(data.skipped)} skipped "
      f"({'read from cache' if data.from_cache else 'decoded'}: {data.cache_dir})")
display(data.skipped.head(20))
run.write_json("artifacts/ingest.json", {
    "manifest": str(manifest_path), "root": str(data_root), "cache_dir": str(resolve(cfg.cache_dir)),
    "image_size": cfg.image_size, "on_error": on_error, "n_ingested": len(data.index),
    "n_skipped": len(data.skipped)})

# %% [markdown]
# ## What is in the data
# Rows by split × plane × label, per site. Splits are by patient, so no patient's slices are on both
# sides of a train/test comparison. The metal-implant exams (the paper's cohort 2) are test-only.

# %%
display(summary_table(data.index))
fig = plots.plot_counts(data.index)
run.savefig(fig, "01_counts")

# %% [markdown]
# The bars show class balance per plane: neither class should dominate, or accuracy would say little.

# %%
fraction = data.index.assign(relevant=data.index["label"].eq("relevant")).pivot_table(
    index="plane", values="relevant", aggfunc="mean")
fraction.style.format("{:.0%}")

# %% [markdown]
# ## Example images per plane and label
# Relevant slices cut the femoral condyles and the tibial plateau (the anatomy a technician places the
# scan planes on); irrelevant ones miss the joint (shaft, soft tissue only, patella/tendon alone).

# %%
fig = plots.montage(data.images, data.index, rows="plane", cols="label", per_cell=4, seed=cfg.seed,
                    row_order=["axial", "sagittal", "coronal"], col_order=["relevant", "irrelevant"])
run.savefig(fig, "01_montage")

# %% [markdown]
# ## Sites, coils and field strengths
# The same plane looks different per scanner and coil: receive-coil shading, SNR (3T vs 1.5T) and
# contrast. A classifier has to see through this; so does Grad-CAM.

# %%
if "site" in data.index:
    fig = plots.montage(data.images, data.index, rows="plane", cols="site", per_cell=1, seed=cfg.seed,
                        row_order=["axial", "sagittal", "coronal"])
    run.savefig(fig, "01_montage_sites")
    fig = plots.intensity_histograms(data.images, data.index, by="site")
    run.savefig(fig, "01_intensity_per_site")

# %% [markdown]
# The histograms are of normalised foreground intensity; their shift between sites is the site effect
# the augmentation later has to be robust to.
#
# ## Difficulty check: a linear classifier on 32×32 pixels
# Reported beside the CNN later (notebook 02). Far below the CNN means the task needs anatomy, not a
# global intensity cue.

# %%
from knee_tf.baseline import linear_baseline  # noqa: E402

xtr, ytr, itr = data.split("train", cohort="normal")
xte, yte, ite = data.split("test", cohort="normal")
baseline = linear_baseline(xtr, ytr, xte, yte, train_planes=itr["plane"].to_numpy(),
                           test_planes=ite["plane"].to_numpy())
run.write_json("results/linear_baseline.json", baseline)
pd.Series(baseline)

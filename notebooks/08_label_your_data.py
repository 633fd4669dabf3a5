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
# # 08 · Label your data: one localizer slice at a time
#
# `knee-tf scan` finds the localizer slices of your DICOM export and writes a manifest with `label`
# empty. Training needs every slice labelled *relevant* (it shows the knee joint a scan plane should
# be prescribed through) or *irrelevant*. This notebook shows one slice at a time, with its plane and
# its neighbours in the same series, and takes keys:
#
# | key | does |
# |---|---|
# | `r` | relevant, next slice |
# | `i` | irrelevant, next slice |
# | `s` | skip (no label), next slice |
# | `backspace` | undo the last key and go back to that slice |
#
# Click the *keys* field first (the buttons do the same with a mouse). When the manifest comes from
# `knee-tf scan --model PATH`, the model's prediction is shown as a suggestion; it is never written as
# a label unless you press its key. After **every** label the manifest file is rewritten atomically,
# so closing the browser or a crash loses nothing; reopening resumes at the first unlabelled slice.
#
# Run headlessly (papermill, nbmake) nobody presses a key, so the manifest is read and never written.

# %%

from IPython.display import display

from knee_tf.study.config import get_config, resolve
from knee_tf.yourdata.label import LabelSession, label_widget

# %% tags=["parameters"]
config = "default"  # a StudyConfig JSON whose `manifest` is the CSV `knee-tf scan` wrote, `data_root` the scanned folder
# (`knee-tf label MANIFEST --root FOLDER` writes one and opens this notebook with it)
run_dir = ""  # not used: labelling comes before a study run

# %%
cfg = get_config(config)
session = None
if not cfg.manifest_path.exists():
    print(f"No manifest at {cfg.manifest_path}: nothing to label. Run `knee-tf label MANIFEST --root FOLDER` (the CSV "
          "`knee-tf scan` wrote and the folder it scanned), or give a config whose `manifest` and `data_root` name them.")
else:
    data_root = resolve(cfg.data_root)
    session = LabelSession(cfg.manifest_path)
    print(f"{len(session.order)} slices in {session.path}; images under {data_root}.\n"
          "The manifest is written only when a key changes a label: a headless run writes nothing.")

# %% [markdown]
# ## Progress per plane
#
# Slices labelled so far, per plane. Re-run this cell at any time; the widget below also shows it.

# %%
if session is not None:
    display(session.progress())

# %% [markdown]
# ## Label
#
# The middle image is the slice to label; left and right are its neighbours in the same series and
# plane (empty at the ends of the stack). The line above names the plane, the slice and, when there
# is one, the model's suggestion.

# %%
if session is not None:
    display(label_widget(session, data_root))

# %% [markdown]
# ## Next
#
# Split by patient, then run the study on your data (see docs/yourdata.md):
#
# ```bash
# knee-tf split --manifest manifest.csv --by patient --ratios 0.7,0.1,0.2 --seed 0
# ```

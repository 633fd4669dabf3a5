"""knee-tf: activation-map (Grad-CAM) guided augmentation for knee MRI localizer classification.

The package is a house with wings. Each wing has one job and imports only from the wings listed
before it (``tests/core/test_contract.py`` enforces the order):

* :mod:`knee_tf.core` the thin helper a reader copies: vocabulary, LeNet and its training, the CAM
  methods, faithfulness, map-guided augmentation, atomic writes, one-line errors. Imports no other wing.
* :mod:`knee_tf.data` the data contract: the manifest, DICOM reading and writing, ingest into a cache,
  the patient split, the run folder's layout.
* :mod:`knee_tf.phantom` the synthetic default data: anatomy, acquisition physics, labels, DICOM export.
* :mod:`knee_tf.study` the experiment of the paper: ``StudyConfig``, training pools and test cohorts,
  corruptions, statistics, reports, figures, the notebook pipeline, HTML pages.
* :mod:`knee_tf.controls` what the result is compared with: control arms and masks, the grid, publishing,
  the prediction store, effects with two-level intervals, the prescription endpoint.
* :mod:`knee_tf.yourdata` your own DICOM: scan an export, label, reslice volumes, predict, DICOMweb
  pull/push, overlays for the PACS.
* :mod:`knee_tf.teach` the tour, its exercises and the live explorers.

:mod:`knee_tf.cli` (the ``knee-tf`` command) sits above every wing.
"""

from knee_tf.core import startup  # noqa: F401  (first: before any module imports TensorFlow)

__version__ = "0.1.0"

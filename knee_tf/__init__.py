"""knee-tf: activation-map (Grad-CAM) guided augmentation for knee MRI localizer classification.

Modules, one job each (lower layers first; imports only go downwards):

* ``startup`` imported first: TensorFlow's start-up lines, Keras progress verbosity, inline figure size
* ``vocab`` class, plane, split, cohort, method and column names; the decision rule; the CAM target check
* ``errors``, ``io`` one-line input errors; atomic writes
* ``config`` ``StudyConfig``, the one source of settings (read by notebooks, ``cohorts``, ``study``, ``cli``)
* ``layout`` ``RunLayout``: the name of every file in a run folder
* ``manifest``, ``dicom``, ``dicom_write``, ``ingest``, ``data`` the data contract; DICOM decoding; the one DICOM
  writer (phantom and derived images); the parallel cached ingest; ``tf.data`` and example picking
* ``acquisition``, ``phantom`` coil/noise physics; the synthetic multi-site DICOM dataset
* ``model``, ``predict`` LeNet and seeded training; predictions for any manifest
* ``cam``, ``faithfulness`` Grad-CAM / Grad-CAM++ at every layer; deletion/insertion curves
* ``augment``, ``corrupt`` activation-map augmentation; held-out corruptions and cohort 3
* ``baseline``, ``evaluate``, ``report`` linear difficulty check; statistics; Markdown tables beside the paper
* ``cohorts`` the experiment's steps (maps, pools, cohorts, predictions) from a ``StudyConfig``
* ``plots`` figures as PNG
* ``study``, ``cli`` the resumable notebook pipeline and publishing; the ``knee-tf`` command
* ``explore``, ``exercises``, ``tour``, ``html_pages`` teaching: the live explorers of notebooks 03/04, the
  tour's self-check cells, running the tour, a run's notebooks as static HTML pages
"""

from knee_tf import startup  # noqa: F401  (first: before any module imports TensorFlow)

__version__ = "0.1.0"

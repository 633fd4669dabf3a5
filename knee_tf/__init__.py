"""knee-tf: activation-map (Grad-CAM) guided augmentation for knee MRI localizer classification.

Modules (one job each): config, manifest, dicom, ingest, data, phantom, model, cam, faithfulness,
augment, corrupt, evaluate, plots, study, cli.
"""

__version__ = "0.1.0"

"""Your own DICOM: from a PACS or an export folder to a labelled manifest, predictions and overlays.

* ``scan`` find knee localizer slices in an export and write a manifest
* ``label`` label a manifest one slice at a time
* ``reslice`` 3D volumes -> tri-plane pseudo-localizer slices
* ``predict`` apply a trained model to any manifest
* ``dicomweb`` pull studies from, and push results to, a DICOMweb server
* ``pacs_auth`` reaching a PACS: credentials, TLS, redaction and one-line failures
* ``overlay`` Grad-CAM overlays and results as derived DICOM
"""

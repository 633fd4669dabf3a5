"""The data contract: a manifest of 2D DICOM images in, validated preprocessed arrays out.

* ``manifest`` the manifest's columns and their validation
* ``dicom_read``, ``dicom_write`` reading and preprocessing one image; the one DICOM writer
* ``ingest`` manifest -> decoded, preprocessed arrays in an on-disk cache
* ``split`` train/val/test by patient
* ``layout`` the name of every file in a run folder and in the published results
"""

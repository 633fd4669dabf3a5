"""Synthetic default dataset: an anatomical knee phantom rendered as multi-site tri-plane GE
localizer DICOM, with metal-implant exams. See ``docs/phantom.md``.

Modules: ``anatomy`` (3D knee, pose), ``sites`` (six GE site/coil profiles, tissue contrast),
``acquisition`` (coil and noise physics, shared with the corruptions), ``texture`` (tissue texture),
``render`` (slice planes, partial volume, coil, noise, wrap), ``metal`` (susceptibility artifact),
``labels`` (geometric label rules, boundary noise), ``difficulty`` (the calibrated knobs, passed in by the
caller), ``dicom_export`` (GE-like headers), ``synth`` (exam loop).
"""

from knee_tf.phantom.synth import (
    MANIFEST_COLUMNS,
    plan_exams,
    plan_manifest,
    render_exam,
    synthesize,
)

__all__ = ["MANIFEST_COLUMNS", "plan_exams", "plan_manifest", "render_exam", "synthesize"]

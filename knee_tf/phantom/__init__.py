"""Synthetic default dataset: an anatomical knee phantom rendered as multi-site tri-plane GE
localizer DICOM, with metal-implant exams. See ``docs/phantom.md``.

Modules: ``anatomy`` (3D knee, pose), ``sites`` (six GE site/coil profiles, tissue contrast),
``render`` (slice planes, partial volume, coil, noise, wrap), ``metal`` (susceptibility artifact),
``labels`` (geometric label rules, boundary noise), ``dicom_writer``, ``synth`` (exam loop).
"""

from knee_tf.phantom.synth import MANIFEST_COLUMNS, plan_exams, render_exam, synthesize

__all__ = ["MANIFEST_COLUMNS", "plan_exams", "render_exam", "synthesize"]

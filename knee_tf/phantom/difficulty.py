"""The phantom's difficulty knobs, in one place (held by :class:`knee_tf.study.config.StudyConfig` as its
``synth_*`` fields; see ``docs/calibration.md`` for how the defaults were chosen with Model A alone).

Every knob scales a physically described effect; none is a label or an accuracy:

* ``texture``: strength of the tissue textures (trabecular marrow, muscle fascicles with fat septa,
  fat lobules), 0 = piecewise-constant tissues, 1 = the documented default contrast of septa and
  trabeculae (``docs/phantom.md``);
* ``snr_scale``: multiplies every site's reference SNR (1 = the site table);
* ``hard_share``: share of exams drawn with a hard configuration (contralateral knee close to and
  bigger than the scanned one, the knee off-centre so that the field cuts it, a wider centring
  error so more slices just miss the plateau);
* ``annotator_spread``: the annotators' consistent boundary offsets are drawn uniformly in
  ``+- annotator_spread x slice spacing`` (the issue: "up to about one slice spacing");
* ``quality_shift_mm``: how far a poor-quality series (low SNR, ghosting, wrap) pulls an
  annotator's boundary inwards (a doubtful slice is called irrelevant);
* ``ghost_probability``: share of series planes with motion / pulsation ghosts.

The knobs have no defaults here: the calibrated setting (``docs/calibration.md``) lives once, as
``StudyConfig``'s ``synth_*`` defaults, and :meth:`knee_tf.study.config.StudyConfig.synth_difficulty`
makes a :class:`Difficulty` of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difficulty:
    texture: float
    snr_scale: float
    hard_share: float
    annotator_spread: float
    quality_shift_mm: float
    ghost_probability: float

    def __post_init__(self):
        for name in ("texture", "snr_scale", "annotator_spread", "quality_shift_mm"):
            if getattr(self, name) < 0:
                raise ValueError(f"Difficulty.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("hard_share", "ghost_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Difficulty.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.snr_scale == 0:
            raise ValueError("Difficulty.snr_scale must be > 0")

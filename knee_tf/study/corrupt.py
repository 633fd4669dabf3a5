"""Test-time corruptions: held-out acquisition artefacts that no model trains on, and cohort 3.

Cohort 3 (``cam``) degrades test images with Model A's own maps, through the very transform Model
B trains on (:func:`cam_corruption`); so it favours B by construction. The held-out types below
come from a different generator -- MR physics -- and test whether B's robustness carries over.

Each held-out corruption is a pure function ``(image, severity, rng) -> image``: image float32
(H, W) or (H, W, 1) in [0, 1], severity an int 1..5, output float32 of the same shape in [0, 1].
The random draws (field shape, failing element, noise, motion pattern) never depend on the
severity, so for one rng seed the severity only strengthens the effect: severity 5 is the same
artefact as severity 1, stronger. The severity schedules are the module constants below.

* ``bias_field``: smooth multiplicative receive bias ``exp(a * p(x, y))``, ``p`` a random
  polynomial of total order 3 scaled to ``max |p| = 1``; the result is rescaled to the input's
  maximum (as the per-image intensity normalisation would), so it stays in [0, 1].
* ``coil_dropout``: a ring of receive loops around the field of view
  (:func:`knee_tf.phantom.acquisition.ring_positions` / ``element_sensitivities``); one element's gain drops
  to ``g`` (``g = 0`` at severity 5: removed from the sum of squares). The image is multiplied by
  ``SoS(failed) / SoS(all)``, so the shading of the missing element shows as a dark sector.
* ``rician_noise``: :func:`knee_tf.phantom.acquisition.add_rician_noise` with sigma a fraction of full
  scale; a Rician noise floor appears in air.
* ``motion_ghosting``: the object shifts along the phase-encode axis (image rows, axis 0) while some
  phase-encode lines are acquired; line ``k`` acquired at displacement ``d`` picks up the phase
  ``exp(-2 pi i k d / N)``. The moved lines are periodic (discrete ghosts) or random (a smear),
  chosen by the rng; severity adds lines (nested sets), so the k-space error only grows.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from knee_tf.core.augment import prepare_mask, weighted_obfuscation
from knee_tf.phantom.acquisition import (
    add_rician_noise,
    element_sensitivities,
    ring_positions,
    sum_of_squares,
)

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: bias_field: amplitude ``a`` of the log field (severity 5: the field varies up to e^2 = 7.4-fold).
BIAS_LOG_AMPLITUDE: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
#: coil_dropout: remaining gain of the failing element (0: removed from the combination).
COIL_REMAINING_GAIN: tuple[float, ...] = (0.8, 0.6, 0.4, 0.2, 0.0)
#: coil_dropout geometry, in units of the field of view (FOV = 1, centred at 0).
COIL_ELEMENTS = 8
COIL_RING_RADIUS = 0.6
COIL_LOOP_RADIUS = 0.22
#: rician_noise: sigma as a fraction of full scale (1.0).
RICIAN_SIGMA: tuple[float, ...] = (0.02, 0.04, 0.07, 0.10, 0.14)
#: motion_ghosting: range of the displacement during the moved lines, as a fraction of the FOV.
GHOST_DISPLACEMENT: tuple[float, float] = (0.03, 0.08)
#: motion_ghosting, periodic pattern: moved lines are 1 + p*Z (nested: each set holds the last).
GHOST_PERIODS: tuple[int, ...] = (32, 16, 8, 4, 2)
#: motion_ghosting, random pattern: share of moved lines (nested random sets).
GHOST_RANDOM_FRACTION: tuple[float, ...] = (0.04, 0.08, 0.16, 0.28, 0.45)


# ----------------------------------------------------------------------------- shared checks


def _check_severity(severity) -> int:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise ValueError(f"severity must be an int in {SEVERITIES}; got {severity!r}")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be an int in {SEVERITIES}; got {severity}")
    return int(severity)


def _as_batch(images) -> tuple[np.ndarray, tuple[int, ...]]:
    """float32 (N, H, W) view of a batch (N, H, W, 1) or (N, H, W); returns it and the input shape."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        b = x[..., 0]
    elif x.ndim == 3:
        b = x
    else:
        raise ValueError(f"images must be (N, H, W, 1) or (N, H, W); got {x.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("images contain NaN or inf")
    return b, x.shape


def _as_single(image) -> tuple[np.ndarray, tuple[int, ...]]:
    """float32 (1, H, W) batch of one image given as (H, W) or (H, W, 1)."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        b = x[None, ..., 0]
    elif x.ndim == 2:
        b = x[None]
    else:
        raise ValueError(f"image must be (H, W) or (H, W, 1); got {x.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("image contains NaN or inf")
    return b, x.shape


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the field of view, (H, W) each, spanning (-0.5, 0.5)."""
    y = (np.arange(h) + 0.5) / h - 0.5
    x = (np.arange(w) + 0.5) / w - 0.5
    return np.meshgrid(x, y)  # xx, yy


# ----------------------------------------------------------------------------- bias field


def _draw_bias(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Normalised log-field shape p: float32 (H, W), zero mean, max |p| = 1."""
    xx, yy = _grid(h, w)
    xx, yy = 2 * xx, 2 * yy
    powers = [(i, j) for i in range(4) for j in range(4 - i) if i + j > 0]  # 9 terms, order <= 3
    coeffs = rng.normal(size=len(powers))
    p = sum(c * xx**i * yy**j for c, (i, j) in zip(coeffs, powers, strict=True))
    p = p - p.mean()
    return (p / max(np.abs(p).max(), 1e-12)).astype(np.float32)


def _apply_bias(b: np.ndarray, shapes: np.ndarray, severity: int) -> np.ndarray:
    a = BIAS_LOG_AMPLITUDE[severity - 1]
    out = b * np.exp(a * shapes)
    peak_in = b.max(axis=(1, 2), keepdims=True)
    peak_out = out.max(axis=(1, 2), keepdims=True)
    out = np.where(peak_out > 0, out * peak_in / np.maximum(peak_out, 1e-12), 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def bias_field(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative bias field (random order-3 polynomial in the log).

    image: float32 (H, W) or (H, W, 1) in [0, 1]; severity 1..5 (:data:`BIAS_LOG_AMPLITUDE`).
    Returns float32, same shape, in [0, 1], rescaled to the input's maximum.
    """
    s = _check_severity(severity)
    b, shape = _as_single(image)
    return _apply_bias(b, _draw_bias(rng, *b.shape[1:])[None], s).reshape(shape)


# ----------------------------------------------------------------------------- coil dropout


def _draw_coil(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Share of the failing element in the sum of squares, S_k^2 / sum_j S_j^2: float32 (H, W)."""
    phase = rng.uniform(0.0, 2 * np.pi)
    failing = int(rng.integers(COIL_ELEMENTS))
    xx, yy = _grid(h, w)
    pos = ring_positions(COIL_ELEMENTS, COIL_RING_RADIUS, phase=phase)
    sens = element_sensitivities(xx, yy, pos, COIL_LOOP_RADIUS)
    full = sum_of_squares(sens)
    return (np.square(sens[failing]) / np.maximum(np.square(full), 1e-12)).astype(np.float32)


def _apply_coil(b: np.ndarray, shares: np.ndarray, severity: int) -> np.ndarray:
    g = COIL_REMAINING_GAIN[severity - 1]
    # SoS with the element's gain at g, over the full SoS: sqrt(1 - (1 - g^2) * share).
    ratio = np.sqrt(np.clip(1.0 - (1.0 - g * g) * shares, 0.0, 1.0))
    return np.clip(b * ratio, 0.0, 1.0).astype(np.float32)


def coil_dropout(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One receive element of an 8-element ring fails; the image shows its missing sector.

    image: float32 (H, W) or (H, W, 1) in [0, 1]; severity 1..5 (:data:`COIL_REMAINING_GAIN`: the
    failing element's gain; removed from the combination at 5). The rng picks the ring's rotation
    and the element. Returns float32, same shape, in [0, 1] (only darker, never brighter).
    """
    s = _check_severity(severity)
    b, shape = _as_single(image)
    return _apply_coil(b, _draw_coil(rng, *b.shape[1:])[None], s).reshape(shape)


# ----------------------------------------------------------------------------- Rician noise


def _draw_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The two standard-normal channels of a unit-sigma complex noise: float64 (2, H, W)."""
    # add_rician_noise on a zero image with sigma 1 would give only the magnitude; we need the
    # channels themselves to scale them by severity, so draw them here in the same order it does.
    re = rng.normal(0.0, 1.0, size=(h, w))
    im = rng.normal(0.0, 1.0, size=(h, w))
    return np.stack([re, im])


def _apply_noise(b: np.ndarray, noise: np.ndarray, severity: int) -> np.ndarray:
    sigma = RICIAN_SIGMA[severity - 1]
    out = np.hypot(b + sigma * noise[:, 0], sigma * noise[:, 1])
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def rician_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rician noise: the magnitude of (image + complex Gaussian noise), clipped to [0, 1].

    image: float32 (H, W) or (H, W, 1) in [0, 1]; severity 1..5 (:data:`RICIAN_SIGMA`, sigma as a
    fraction of full scale). Uses :func:`knee_tf.phantom.acquisition.add_rician_noise`; the rng's first
    two draws are the real and imaginary noise, so one seed gives the same noise pattern, scaled,
    at every severity. Returns float32, same shape, in [0, 1].
    """
    s = _check_severity(severity)
    b, shape = _as_single(image)
    out = add_rician_noise(b[0], RICIAN_SIGMA[s - 1], rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32).reshape(shape)


# ----------------------------------------------------------------------------- motion ghosting


def _draw_motion(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Per-line thresholds and the displacement: float64 (H + 2,) = [line key (H), pattern, shift].

    A line is displaced at severity s when its key is below the severity's cut (the sets grow with
    s). Periodic pattern: key = index of the first period p in :data:`GHOST_PERIODS` with
    ``(k - 1) % p == 0`` (inf if none), cut ``s - 0.5``; random pattern: key = the line's place in
    a random permutation, cut ``max(s, round(H * GHOST_RANDOM_FRACTION[s - 1]))`` (at least one
    more line per severity).
    """
    periodic = bool(rng.random() < 0.5)
    shift = rng.uniform(*GHOST_DISPLACEMENT) * (1.0 if rng.random() < 0.5 else -1.0)
    key = rng.permutation(h).astype(np.float64)  # random pattern: lines in the order they move
    if periodic:
        k = np.rint(np.fft.fftfreq(h) * h).astype(np.int64)
        key = np.full(h, np.inf)  # never moved
        for rank, p in enumerate(GHOST_PERIODS):  # the longest period (severity 1) first
            key[((k - 1) % p == 0) & np.isinf(key)] = rank
    return np.concatenate([key, [1.0 if periodic else 0.0, shift]])


def _apply_motion(b: np.ndarray, params: np.ndarray, severity: int) -> np.ndarray:
    h = b.shape[1]
    key, periodic, shift = params[:, :h], params[:, h:h + 1], params[:, h + 1:h + 2]
    n_random = max(severity, round(h * GHOST_RANDOM_FRACTION[severity - 1]))
    cut = np.where(periodic > 0.5, severity - 0.5, n_random)
    moved = key < cut  # (N, H) phase-encode lines acquired while displaced
    k = np.fft.fftfreq(h) * h
    phase = np.exp(-2j * np.pi * k[None, :] * shift * moved)  # shift is a fraction of the FOV
    kspace = np.fft.fft(b, axis=1)  # phase encode along image rows (axis 1 of the batch)
    out = np.abs(np.fft.ifft(kspace * phase[:, :, None], axis=1))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def motion_ghosting(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """k-space motion ghosting along the phase-encode axis (image rows, axis 0).

    image: float32 (H, W) or (H, W, 1) in [0, 1]; severity 1..5 sets which phase-encode lines are
    acquired with the object displaced: periodic lines ``1 + p Z`` with p from
    :data:`GHOST_PERIODS` (discrete ghosts ``H / p`` apart), or a random share
    :data:`GHOST_RANDOM_FRACTION` of lines (a smear). The sets grow with severity (each contains
    the last), so the k-space error grows too. The rng picks the pattern and the displacement
    (a fraction of the FOV in :data:`GHOST_DISPLACEMENT`, either direction).
    Returns float32, same shape, in [0, 1].
    """
    s = _check_severity(severity)
    b, shape = _as_single(image)
    return _apply_motion(b, _draw_motion(rng, *b.shape[1:])[None], s).reshape(shape)


# ----------------------------------------------------------------------------- registry, batches

#: Held-out corruption name -> ``fn(image, severity, rng) -> image``.
CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "bias_field": bias_field,
    "coil_dropout": coil_dropout,
    "rician_noise": rician_noise,
    "motion_ghosting": motion_ghosting,
}
# name -> (draw(rng, h, w) -> per-image parameters, apply(batch, stacked parameters, severity)).
_BATCHED = {
    "bias_field": (_draw_bias, _apply_bias),
    "coil_dropout": (_draw_coil, _apply_coil),
    "rician_noise": (_draw_noise, _apply_noise),
    "motion_ghosting": (_draw_motion, _apply_motion),
}


def image_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """The generator :func:`corrupt_batch` uses for image ``index`` of a batch under ``name``."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(index)])


def corrupt_batch(images: np.ndarray, name: str, severities, seed: int = 0,
                  chunk: int = 256, first_index: int = 0) -> dict[int, np.ndarray]:
    """Held-out corruption ``name`` of every image at every severity; deterministic for ``seed``.

    images: float32 (N, H, W, 1) or (N, H, W) in [0, 1]; severities: one int or a sequence of ints
    in :data:`SEVERITIES`. Image ``i`` draws its parameters once, from :func:`image_rng`
    ``(seed, name, i)``, so its corruption depends neither on the other images nor on the severity:
    ``corrupt_batch(x, n, [s], seed)[s][i]`` equals ``CORRUPTIONS[n](x[i], s, image_rng(seed, n, i))``.
    The transform runs vectorised over chunks of ``chunk`` images. ``first_index``: the position of
    ``images[0]`` in a larger set corrupted piece by piece, so that
    ``corrupt_batch(x[k:], n, s, seed, first_index=k)`` equals ``corrupt_batch(x, n, s, seed)`` from row k on.
    Returns {severity: float32 array shaped like ``images``, in [0, 1]}.
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {sorted(CORRUPTIONS)}")
    sev = [_check_severity(s) for s in (severities if np.ndim(severities) else [severities])]
    b, shape = _as_batch(images)
    draw, apply = _BATCHED[name]
    h, w = b.shape[1:]
    out = {s: np.empty_like(b) for s in sev}
    step = max(int(chunk), 1)
    for start in range(0, b.shape[0], step):
        stop = min(start + step, b.shape[0])
        params = np.stack([draw(image_rng(seed, name, first_index + i), h, w) for i in range(start, stop)])
        for s in sev:
            out[s][start:stop] = apply(b[start:stop], params, s)
    return {s: v.reshape(shape) for s, v in out.items()}


def cam_corruption(images: np.ndarray, maps: np.ndarray, weight: float,
                   smooth_sigma: float = 0.0, threshold: float = 0.0) -> np.ndarray:
    """Cohort 3: ``images * (1 - weight * M)`` with M Model A's maps of these images.

    The transform is :func:`knee_tf.core.augment.weighted_obfuscation`, the one Model B trains on, with
    the same mask preparation (:func:`knee_tf.core.augment.prepare_mask`); the test uses fresh maps of
    the test images at one fixed weight (``StudyConfig.cohort3_weight``), not training-pool draws.
    images: float32 (N, H, W, 1) or (N, H, W) in [0, 1]; maps: (N, H, W) or (N, H, W, 1) in [0, 1]
    at the augmentation layer; weight in [0, 1]. Returns float32, the images' shape, in [0, 1].
    """
    b, shape = _as_batch(images)
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != b.shape:
        raise ValueError(f"maps must be (N, H, W) matching images {b.shape}; got {np.shape(maps)}")
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"weight must lie in [0, 1]; got {weight}")
    return weighted_obfuscation(b, prepare_mask(m, smooth_sigma, threshold), w).reshape(shape)

"""MR acquisition physics shared by the phantom (to render exams) and the corruptions (to degrade them).

Small, explicit models, good enough to make site, coil and field strength *matter*:

* receive coil elements as circular loops; an element at ``p`` with radius ``a`` sees a point at
  distance ``d`` with the on-axis loop law ``(a^2 / (a^2 + d^2))^(3/2)``;
* channels combined by root-sum-of-squares, which is what a scanner shows for a magnitude localizer;
* thermal noise: complex Gaussian in each channel, so the magnitude image is Rician (one channel) —
  we use the one-channel Rician model on the combined image, as usual for SoS at moderate SNR.
"""

from __future__ import annotations

import numpy as np


def element_sensitivities(
    x_mm: np.ndarray, y_mm: np.ndarray, positions_mm: np.ndarray, radius_mm: float | np.ndarray
) -> np.ndarray:
    """Receive sensitivity of each coil element on a grid.

    x_mm, y_mm: float arrays (H, W) of in-plane coordinates in mm.
    positions_mm: (E, 2) element centres (x, y) in the same frame (elements may lie off the grid).
    radius_mm: loop radius, scalar or (E,).
    Returns float32 (E, H, W), each element's peak normalised to <= 1.
    """
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 2)
    a = np.broadcast_to(np.asarray(radius_mm, dtype=np.float64), (p.shape[0],))
    out = np.empty((p.shape[0],) + np.shape(x_mm), dtype=np.float32)
    for i, ((px, py), ai) in enumerate(zip(p, a, strict=True)):
        d2 = (x_mm - px) ** 2 + (y_mm - py) ** 2
        out[i] = (ai * ai / (ai * ai + d2)) ** 1.5
    return out


def sum_of_squares(sensitivities: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Root-sum-of-squares combination over axis 0; ``keep`` (E,) bool drops failed elements."""
    s = sensitivities if keep is None else sensitivities[np.asarray(keep, dtype=bool)]
    return np.sqrt(np.sum(np.square(s, dtype=np.float32), axis=0))


def ring_positions(n_elements: int, radius_mm: float, centre_mm=(0.0, 0.0), phase: float = 0.0) -> np.ndarray:
    """(E, 2) element centres evenly spaced on a circle (a wrap-around knee or flex coil)."""
    ang = phase + 2 * np.pi * np.arange(n_elements) / n_elements
    return np.stack([centre_mm[0] + radius_mm * np.cos(ang), centre_mm[1] + radius_mm * np.sin(ang)], 1)


def add_rician_noise(magnitude: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of (signal + complex Gaussian noise): Rician, positive, a noise floor in air.

    magnitude: float array, any shape; sigma in the same units. Returns float32, same shape.
    """
    re = magnitude + rng.normal(0.0, sigma, size=np.shape(magnitude))
    im = rng.normal(0.0, sigma, size=np.shape(magnitude))
    return np.hypot(re, im).astype(np.float32)


def element_sensitivities_3d(points_mm: np.ndarray, positions_mm: np.ndarray,
                             radius_mm: float | np.ndarray) -> np.ndarray:
    """Receive sensitivity of each coil element at 3D points (same loop law as
    :func:`element_sensitivities`, with the full 3D distance, so a slice far from an element
    sees it weakly).

    points_mm: float (..., 3) patient coordinates; positions_mm: (E, 3) element centres;
    radius_mm: loop radius, scalar or (E,). Returns float32 (E, ...), each <= 1.
    """
    pts = np.asarray(points_mm, dtype=np.float64)
    if pts.shape[-1] != 3:
        raise ValueError(f"points_mm must have a last axis of 3, got shape {pts.shape}")
    p = np.asarray(positions_mm, dtype=np.float64).reshape(-1, 3)
    a = np.broadcast_to(np.asarray(radius_mm, dtype=np.float64), (p.shape[0],))
    d2 = np.sum((pts[None, ...] - p.reshape((-1,) + (1,) * (pts.ndim - 1) + (3,))) ** 2, axis=-1)
    a2 = (a * a).reshape((-1,) + (1,) * (pts.ndim - 1))
    return ((a2 / (a2 + d2)) ** 1.5).astype(np.float32)


def add_rician_noise_f32(magnitude: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Float32 variant of :func:`add_rician_noise` (half the memory traffic; a different random
    stream): ``|magnitude + sigma * (n1 + i n2)|`` with standard normal float32 ``n1``, ``n2``.

    magnitude: float array, any shape. Returns float32, same shape.
    """
    m = np.asarray(magnitude, dtype=np.float32)
    re = rng.standard_normal(m.shape, dtype=np.float32)
    re *= np.float32(sigma)
    re += m
    im = rng.standard_normal(m.shape, dtype=np.float32)
    im *= np.float32(sigma)
    return np.hypot(re, im)

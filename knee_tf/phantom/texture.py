"""Tissue texture from a bank of band-limited random fields, made once per process and reused.

Real localizer tissue is not piecewise-constant. Three textures, each the zero-crossing network or
the amplitude of a band-limited Gaussian random field (made by filtering white noise in k-space):

* **trabecular marrow**: fine isotropic field (wavelength about 2-3 pixels, i.e. 2 mm at 0.86 mm
  pixels: trabecular spacing is 0.5-2 mm, an 8 mm thick slice averages several, so the visible
  pattern is a coarse mottle of a few percent to ~15 % of the marrow signal) applied to the marrow;
* **muscle fascicles with fat septa**: the zero-crossing lines of an *anisotropic* field, long along
  the leg axis (fascicle bundles run roughly along the limb; perimysial fat septa are 0.1-1 mm thick,
  so a localizer voxel shows them as faint bright lines); in an axial slice the same bundles are cut
  across and the field is isotropic (a polygonal net);
* **fat lobules**: the zero-crossing net of a medium isotropic field (lobules of subcutaneous fat
  are 5-10 mm across, bounded by thin fibrous septa that are dark on a localizer).

The bank is deterministic (a fixed seed, not the study seed), so textures never depend on the
worker that renders an exam; each slice takes seeded crops (an offset and a flip drawn from the
exam's noise stream). Band-limited fields are pixel-scaled, not mm-scaled: a coarser matrix shows
the same number of pixels per lobule (a documented approximation).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BANK_SIZE = 1024  # the largest matrix the phantom writes is 512; crops need room to move


def _field(rng: np.random.Generator, n: int, wavelength: tuple[float, float],
           bandwidth: float = 0.5) -> np.ndarray:
    """A unit-variance Gaussian random field (n, n) with a ring spectrum at spatial frequency
    1 / wavelength (pixels; (rows, cols) may differ: an anisotropic field)."""
    ky = np.fft.fftfreq(n)[:, None] * wavelength[0]
    kx = np.fft.fftfreq(n)[None, :] * wavelength[1]
    k = np.hypot(ky, kx)
    spec = np.exp(-0.5 * ((k - 1.0) / bandwidth) ** 2)
    spec[0, 0] = 0.0
    white = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    f = np.fft.ifft2(white * spec).real
    return (f / f.std()).astype(np.float32)


def _net(field: np.ndarray, width: float) -> np.ndarray:
    """Thin lines where the field crosses zero: 1 on a line, falling to 0 within ``width`` sd."""
    return np.exp(-0.5 * (field / width) ** 2).astype(np.float32)


@lru_cache(maxsize=1)
def bank() -> dict[str, np.ndarray]:
    """The texture bank of this process: name -> float32 (BANK_SIZE, BANK_SIZE)."""
    rng = np.random.default_rng(20211)
    n = BANK_SIZE
    return {
        "trabecular": _field(rng, n, (2.6, 2.6), 0.6),
        "fascicle_long": _net(_field(rng, n, (40.0, 5.0), 0.5), 0.12),  # lines along image rows
        "fascicle_cross": _net(_field(rng, n, (7.0, 7.0), 0.5), 0.15),
        "lobule": _net(_field(rng, n, (14.0, 14.0), 0.4), 0.18),
    }


def crop(name: str, shape: tuple[int, int], rng: np.random.Generator,
         along_cols: bool = False) -> np.ndarray:
    """A seeded crop of the bank's ``name`` field, float32 ``shape``; ``along_cols`` transposes
    the field (anisotropic fields then run along image columns instead of rows)."""
    f = bank()[name]
    if along_cols:
        f = f.T
    h, w = shape
    i = int(rng.integers(0, BANK_SIZE - h + 1))
    j = int(rng.integers(0, BANK_SIZE - w + 1))
    out = f[i:i + h, j:j + w]
    if rng.random() < 0.5:
        out = out[::-1]
    return out

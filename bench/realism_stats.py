"""Per-slice image statistics of a knee localizer slice, as ``../shared/REALISM_STATS.md`` defines
them in words (our own implementation; the short names are those of
``../shared/real_localizer_stats.csv``). Used by ``bench/realism.py``; no state, no I/O.

Every function takes one slice ``img``: float (H, W), any intensity scale, and the pixel size in mm.

* **whole-limb mask** (:func:`limb_mask`): the lower of two Otsu levels (air against dark tissue),
  a 2-pixel opening, the largest connected component, holes filled;
* **convention foreground** (:func:`convention_stats`): the largest component above one Otsu level,
  holes filled;
* intensities are divided by the limb's 99th percentile; edges are Sobel gradients per pixel (the
  Sobel response / 8, so a ramp of slope 1 per pixel reads 1) inside the limb eroded by 3 px,
  divided by the limb's p50.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BINS = 256
REAL_PIXEL_MM = 0.86
MIN_LIMB_CM2 = 10.0  # slices with less limb count only for the object statistics
OBJECT_STATS = ("area_cm2", "area_fov", "n_obj", "second_obj_10pct", "second_over_first")
#: statistics set by the pixel-scale grain: measured on native-pixel slices only (never resampled)
GRAIN_STATS = ("air_acorr_rows", "air_acorr_cols", "local_cv", "local_cv_flat", "psd_hf_db",
               "psd_hf_aniso_db", "septa_in_bright", "dark_blobs", "edge_axis_aligned", "grad_med")


def _hist(x: np.ndarray):
    hist, edges = np.histogram(x, bins=BINS)
    return hist.astype(np.float64), 0.5 * (edges[:-1] + edges[1:])


def otsu(x: np.ndarray) -> tuple[float, float]:
    """One Otsu level of the values ``x`` and its separability eta = between-class / total
    variance (0..1). Returns (threshold, eta)."""
    hist, c = _hist(np.asarray(x, np.float64).ravel())
    p = hist / hist.sum()
    w = np.cumsum(p)
    mu = np.cumsum(p * c)
    between = (mu[-1] * w - mu) ** 2 / np.maximum(w * (1 - w), 1e-12)
    k = int(np.argmax(between))
    total = float(np.sum(p * (c - mu[-1]) ** 2))
    return float(0.5 * (c[k] + c[min(k + 1, BINS - 1)])), float(between[k] / max(total, 1e-12))


def otsu2(x: np.ndarray) -> tuple[float, float]:
    """The two levels of a three-class Otsu (exhaustive search on a 256-bin histogram)."""
    hist, c = _hist(np.asarray(x, np.float64).ravel())
    p = hist / hist.sum()
    w = np.concatenate([[0.0], np.cumsum(p)])  # w[k] = mass of bins < k
    m = np.concatenate([[0.0], np.cumsum(p * c)])
    best, arg = -1.0, (1, 2)
    ks = np.arange(1, BINS)
    for i in range(1, BINS - 1):
        j = ks[ks > i]
        w0, m0 = w[i], m[i]
        w1, m1 = w[j] - w[i], m[j] - m[i]
        w2, m2 = w[-1] - w[j], m[-1] - m[j]
        s = (m0 ** 2 / max(w0, 1e-12) + m1 ** 2 / np.maximum(w1, 1e-12)
             + m2 ** 2 / np.maximum(w2, 1e-12))
        k = int(np.argmax(s))
        if s[k] > best:
            best, arg = float(s[k]), (i, int(j[k]))
    return float(c[arg[0]] - 0.5 * (c[1] - c[0])), float(c[arg[1]] - 0.5 * (c[1] - c[0]))


def _largest(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(largest component, label image, component sizes in px sorted descending)."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask), lab, np.zeros(0)
    sizes = np.bincount(lab.ravel())[1:]
    return lab == 1 + int(np.argmax(sizes)), lab, np.sort(sizes)[::-1]


def limb_mask(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole-limb mask (bool (H, W)) and the opened object mask of all components (bool (H, W))."""
    t_low, _ = otsu2(img)
    objects = ndimage.binary_opening(img > t_low, iterations=2)
    big, _, _ = _largest(objects)
    return ndimage.binary_fill_holes(big), objects


def sobel_per_px(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient magnitude per pixel (Sobel / 8) and its orientation (radians), float64 (H, W)."""
    x = np.asarray(img, np.float64)
    gy = ndimage.sobel(x, axis=0) / 8.0
    gx = ndimage.sobel(x, axis=1) / 8.0
    return np.hypot(gx, gy), np.arctan2(gy, gx)


def local_cv(img: np.ndarray, size: int) -> np.ndarray:
    """Local coefficient of variation (std / mean) in size x size windows, float64 (H, W)."""
    x = np.asarray(img, np.float64)
    m = ndimage.uniform_filter(x, size)
    v = np.maximum(ndimage.uniform_filter(x * x, size) - m * m, 0.0)
    return np.sqrt(v) / np.maximum(m, 1e-12)


def lag1_autocorrelation(field: np.ndarray, valid: np.ndarray, axis: int) -> float:
    """Lag-1 autocorrelation of ``field`` along ``axis`` (1: neighbours along a row, i.e.
    horizontally; 0: along a column), over pairs of pixels both in ``valid``. NaN if < 50 pairs."""
    a = np.moveaxis(field, axis, -1)
    v = np.moveaxis(valid, axis, -1)
    pair = v[..., :-1] & v[..., 1:]
    if pair.sum() < 50:
        return float("nan")
    x, y = a[..., :-1][pair], a[..., 1:][pair]
    x, y = x - x.mean(), y - y.mean()
    return float(np.sum(x * y) / np.sqrt(max(np.sum(x * x) * np.sum(y * y), 1e-30)))


def eccentricity(mask: np.ndarray) -> float:
    """Eccentricity of the ellipse with the mask's second moments (0 circle, -> 1 a line)."""
    r, c = np.nonzero(mask)
    if len(r) < 3:
        return float("nan")
    cov = np.cov(np.stack([r, c]).astype(np.float64)) + np.eye(2) / 12.0  # pixel extent
    lo, hi = np.linalg.eigvalsh(cov)
    return float(np.sqrt(max(0.0, 1.0 - lo / max(hi, 1e-12))))


def convexity(mask: np.ndarray) -> float:
    """Mask area / area of the convex hull of its pixel squares."""
    from scipy.spatial import ConvexHull  # lazy: only this statistic needs it
    r, c = np.nonzero(mask)
    if len(r) < 3:
        return float("nan")
    edge = mask & ~ndimage.binary_erosion(mask)
    r, c = np.nonzero(edge)
    corners = np.concatenate([np.stack([r + dr, c + dc], 1) for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)])
    return float(mask.sum() / ConvexHull(corners).volume)


def radial_psd(img: np.ndarray, centre: tuple[int, int], size: int):
    """Power spectrum of a Hann-windowed ``size`` crop around ``centre``: (power (size, size),
    fy, fx) with frequencies in cycles/px (fftshift-free)."""
    h = size // 2
    r0, c0 = centre
    crop = np.asarray(img[r0 - h:r0 + h, c0 - h:c0 + h], np.float64)
    win = np.outer(np.hanning(size), np.hanning(size))
    f = np.fft.fft2((crop - crop.mean()) * win)
    fy = np.fft.fftfreq(size)[:, None] * np.ones((1, size))
    fx = np.fft.fftfreq(size)[None, :] * np.ones((size, 1))
    return np.abs(f) ** 2, fy, fx


def psd_stats(img: np.ndarray, limb: np.ndarray) -> dict:
    """psd_hf_db, psd_slope, psd_hf_aniso_db from a 64-px crop (48 or 32 where the limb is thin)
    at the limb's deepest point."""
    depth = ndimage.distance_transform_edt(limb)
    r0, c0 = np.unravel_index(int(np.argmax(depth)), depth.shape)
    size = next((s for s in (64, 48, 32) if depth[r0, c0] >= s / 2), 32)
    h = size // 2
    r0 = int(np.clip(r0, h, img.shape[0] - h))
    c0 = int(np.clip(c0, h, img.shape[1] - h))
    if img.shape[0] < size or img.shape[1] < size:
        return {"psd_hf_db": np.nan, "psd_slope": np.nan, "psd_hf_aniso_db": np.nan}
    p, fy, fx = radial_psd(img, (r0, c0), size)
    f = np.hypot(fy, fx)
    hf, lf = (f >= 0.30) & (f <= 0.48), (f >= 0.04) & (f <= 0.10)
    mid = (f >= 0.04) & (f <= 0.25)
    slope = np.polyfit(np.log10(f[mid]), np.log10(p[mid] + 1e-30), 1)[0]
    vert = (np.abs(fy) >= 0.30) & (np.abs(fy) <= 0.48) & (np.abs(fx) <= 0.15)
    horiz = (np.abs(fx) >= 0.30) & (np.abs(fx) <= 0.48) & (np.abs(fy) <= 0.15)
    def db(num, den):
        return float(10 * np.log10(num / den)) if num > 0 and den > 0 else float("nan")

    return {"psd_hf_db": db(p[hf].mean(), p[lf].mean()), "psd_slope": float(slope),
            "psd_hf_aniso_db": db(p[vert].mean(), p[horiz].mean())}


def shading(img: np.ndarray, limb: np.ndarray, axis: int) -> float:
    """Brightest / darkest third of the limb: its extent along ``axis`` (0: rows, i.e. top /
    middle / bottom; 1: columns) cut in three, mean limb signal in each."""
    idx = np.flatnonzero(limb.any(axis=1 - axis))
    means = []
    for part in np.array_split(idx, 3):
        sel = np.zeros_like(limb)
        if axis == 0:
            sel[part] = True
        else:
            sel[:, part] = True
        if (sel & limb).any():
            means.append(img[sel & limb].mean())
    return float(max(means) / max(min(means), 1e-12)) if len(means) == 3 else float("nan")


def end_over_centre(img: np.ndarray, limb: np.ndarray) -> float:
    """Signal at the field's ends (outer eighth of the rows at the top and at the bottom) over the
    central quarter of rows, the worse end. Row signal: the mean over the limb's pixels in the band;
    where the limb mask does not reach the band (the tissue has faded below the air level), the band's
    mean over the limb's column range."""
    n = img.shape[0]
    cols = np.flatnonzero(limb.any(0))
    if len(cols) == 0:
        return float("nan")

    def band(lo, hi):
        m = limb[lo:hi]
        if m.sum() >= 20:
            return float(img[lo:hi][m].mean())
        return float(img[lo:hi, cols[0]:cols[-1] + 1].mean())

    e = max(1, n // 8)
    centre = band(3 * n // 8, 5 * n // 8)
    return float(min(band(0, e), band(n - e, n)) / max(centre, 1e-12))


def _rings(depth_in: np.ndarray, depth_out: np.ndarray):
    """Pixel rings by Euclidean distance: inside the mask at depth d (1..), outside at distance d."""
    return (lambda d: (depth_in >= d - 0.5) & (depth_in < d + 0.5),
            lambda d: (depth_out >= d - 0.5) & (depth_out < d + 0.5))


def convention_stats(img: np.ndarray, limb: np.ndarray, px_mm: float) -> dict:
    """The project's convention: the largest component above one Otsu level, holes filled."""
    t, _ = otsu(img)
    above = img > t
    fg, lab, sizes = _largest(above)
    fg = ndimage.binary_fill_holes(fg)
    if not fg.any():
        return {}
    v = img[fg]
    p99 = np.percentile(v, 99)
    return {"conv_area_fov": fg.mean(), "conv_p5": np.percentile(v, 5) / p99,
            "conv_p50": np.percentile(v, 50) / p99, "conv_p95": np.percentile(v, 95) / p99,
            "conv_n_comp": float(np.sum(sizes * px_mm ** 2 >= 75.0)),
            "conv_share_of_limb": float((fg & limb).sum() / max(limb.sum(), 1))}


def object_stats(limb: np.ndarray, objects: np.ndarray, px_mm: float) -> dict:
    """Section 1: limb area, separate objects >= 2 cm2 and the second-largest object."""
    _, _, sizes = _largest(objects)
    a = limb.sum() * px_mm ** 2 / 100.0
    second = sizes[1] / sizes[0] if len(sizes) > 1 else 0.0
    return {"area_cm2": a, "area_fov": limb.mean(),
            "n_obj": float(np.sum(sizes * px_mm ** 2 >= 200.0)),
            "second_over_first": float(second), "second_obj_10pct": float(second >= 0.10)}


def model_input_stats(raw: np.ndarray, size: int = 128) -> dict:
    """What the CNN sees: the project's preprocessing (1-99 % normalisation, square pad, bilinear
    resize to ``size``), then the limb mask, mean, edges and 3 x 3 local CV on that input."""
    from knee_tf.data.dicom_read import preprocess  # lazy: bench is run from the repository root
    x = preprocess(np.asarray(raw, np.float32), size).astype(np.float64)
    limb, _ = limb_mask(x)
    if limb.sum() < 50:
        return {}
    inner = ndimage.binary_erosion(limb, iterations=3)
    if inner.sum() < 20:
        return {"mv_mean_in_fg": x[limb].mean()}
    p50 = np.percentile(x[limb], 50)
    g, _ = sobel_per_px(x)
    g = g / max(p50, 1e-12)
    cv = local_cv(x, 3)
    return {"mv_mean_in_fg": x[limb].mean(), "mv_edge_frac": float((g[inner] > 0.25).mean()),
            "mv_grad_p95": np.percentile(g[inner], 95), "mv_local_cv3": np.median(cv[inner])}


def slice_stats(img: np.ndarray, px_mm: float, raw: np.ndarray | None = None) -> dict:
    """Every statistic of one slice (``img`` float (H, W) at ``px_mm`` mm pixels; ``raw``: the
    slice as stored, for the model-input statistics; default ``img``). Returns name -> float; a
    slice with under :data:`MIN_LIMB_CM2` of limb gets only the object statistics."""
    img = np.asarray(img, np.float64)
    limb, objects = limb_mask(img)
    out = object_stats(limb, objects, px_mm)
    if out["area_cm2"] < MIN_LIMB_CM2:
        return out
    v = img[limb]
    p99, p50 = np.percentile(v, 99), np.percentile(v, 50)
    rel = v / p99
    _, eta = otsu(rel)
    out.update({"p5": np.percentile(rel, 5), "p50": p50 / p99, "p95": np.percentile(rel, 95),
                "bright_share": float((rel > 0.8).mean()), "dark_share": float((rel < 0.3).mean()),
                "bimodality_eta": eta, "eccentricity": eccentricity(limb),
                "convexity": convexity(limb)})
    out.update(convention_stats(img, limb, px_mm))
    # edges and texture inside the limb eroded by 3 px (no skin-air step)
    inner = ndimage.binary_erosion(limb, iterations=3)
    g, theta = sobel_per_px(img)
    gn = g / max(p50, 1e-12)
    edge = (gn > 0.25) & inner
    if inner.sum() >= 50:
        ang = np.degrees(np.abs(theta[edge])) % 90.0
        out.update({"edge_frac": float(edge.sum() / inner.sum()), "grad_med": np.median(gn[inner]),
                    "grad_p95": np.percentile(gn[inner], 95),
                    "edge_axis_aligned": float(np.mean((ang <= 10) | (ang >= 80))) if edge.any() else np.nan})
        cv = local_cv(img, 5)
        flat = inner & ~ndimage.maximum_filter(edge, size=5)
        out["local_cv"] = float(np.median(cv[inner & ~edge]))
        out["local_cv_flat"] = float(np.median(cv[flat])) if flat.any() else np.nan
        out.update(psd_stats(img, limb))
        # septa: thin dark lines inside bright tissue (black top-hat 5 x 5 > 0.2 p99)
        closed = ndimage.grey_closing(img, size=(5, 5))
        bright = inner & (closed > 0.6 * p99)  # bright tissue, a thin dark line through it included
        tophat = closed - img
        out["septa_in_bright"] = float((tophat[bright] > 0.2 * p99).mean()) if bright.any() else np.nan
    # dark blobs (< 0.3 p99 inside the limb, over 20 px)
    lab, n = ndimage.label(limb & (img < 0.3 * p99))
    sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(0)
    sizes = sizes[sizes > 20]
    out["dark_blobs"] = float(len(sizes))
    out["dark_blob_med_area_mm2"] = float(np.median(sizes) * px_mm ** 2) if len(sizes) else np.nan
    # depth below the skin, rings inside and outside
    d_in = ndimage.distance_transform_edt(limb)
    d_out = ndimage.distance_transform_edt(~limb)
    ring_in, ring_out = _rings(d_in, d_out)
    bright_px = limb & (img > 0.8 * p99)
    depth_mm = d_in[bright_px] * px_mm
    out["bright_depth_mm"] = float(np.median(depth_mm)) if len(depth_mm) else np.nan
    out["bright_in_outer5mm"] = float(np.mean(depth_mm <= 5.0)) if len(depth_mm) else np.nan
    out["rim_peak"] = max(img[ring_in(d)].mean() for d in range(1, 11) if ring_in(d).any()) / p50
    others = ndimage.binary_dilation(objects & ~limb, iterations=3)
    for d in (3, 8):
        r = ring_out(d) & ~others
        out[f"halo_{d}"] = float(img[r].mean() / p50) if r.any() else np.nan
    skin = (d_out > 0) & (d_out <= 1.5) | (d_in > 0) & (d_in <= 1.5)
    just_in = (d_in >= 2) & (d_in <= 4)
    out["skin_sharpness"] = float(np.percentile(g[skin], 90) / max(img[just_in].mean(), 1e-12))
    out["shade_rows"] = shading(img, limb, 0)
    out["shade_cols"] = shading(img, limb, 1)
    out["end_over_centre_min"] = end_over_centre(img, limb)
    # air: more than 10 px from every object; its noise grain high-passed (minus a Gaussian, sd 4 px)
    air = ndimage.distance_transform_edt(~(objects | limb)) > 10
    if air.sum() >= 100:
        a = img[air]
        out.update({"air_med_over_p50": np.median(a) / p50, "air_p99_over_p50": np.percentile(a, 99) / p50,
                    "air_zero_share": float(np.mean(a <= img.min()))})
        hp = img - ndimage.gaussian_filter(img, 4.0)
        core = ndimage.binary_erosion(air, iterations=3)
        out["air_acorr_rows"] = lag1_autocorrelation(hp, core, axis=1)
        out["air_acorr_cols"] = lag1_autocorrelation(hp, core, axis=0)
    out.update(model_input_stats(img if raw is None else raw))
    return {k: float(v) for k, v in out.items()}


def resample_to(img: np.ndarray, px_mm: float, target_mm: float = REAL_PIXEL_MM) -> np.ndarray:
    """Resample to ``target_mm`` pixels (linear), with Gaussian anti-aliasing when shrinking
    (sd = (factor - 1) / 2 px, the usual choice). float64 (H', W')."""
    f = target_mm / px_mm  # > 1: coarser pixels, fewer of them
    x = np.asarray(img, np.float64)
    if f > 1:
        x = ndimage.gaussian_filter(x, (f - 1) / 2)
    return ndimage.zoom(x, 1.0 / f, order=1, grid_mode=True, mode="nearest")

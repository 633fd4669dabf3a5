"""Difficulty check for the dataset: an L2-regularised logistic regression on downsampled pixels.

If a linear model on a 32 x 32 thumbnail reaches >= 95 % test accuracy, the classes are separable by
global intensity layout and the data is too easy to need anatomy. The model (numpy + scipy only):

* features: each image block-averaged (area interpolation) to ``size x size``, flattened, then
  standardised with the training mean/std; a bias term (not penalised);
* loss: mean binary cross-entropy + ``l2 / 2 * ||w||^2``, minimised with L-BFGS-B (exact gradient);
* prediction: :func:`knee_tf.core.vocab.predicted_class` of p.

``per_plane=True`` fits one model per plane (stronger, since the planes look different).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from knee_tf.core.vocab import encode_labels, predicted_class


def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Area-average ``images`` float (N, H, W) or (N, H, W, 1) to float32 (N, size * size).

    Rows/columns are split into ``size`` nearly equal bins (H, W >= size)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, H, W, 1), got shape {x.shape}")
    n, h, w = x.shape
    if h < size or w < size:
        raise ValueError(f"images ({h}x{w}) are smaller than size={size}")
    rb = np.linspace(0, h, size + 1).astype(int)
    cb = np.linspace(0, w, size + 1).astype(int)
    rows = np.add.reduceat(x, rb[:-1], axis=1) / np.diff(rb)[None, :, None]
    out = np.add.reduceat(rows, cb[:-1], axis=2) / np.diff(cb)[None, None, :]
    return out.reshape(n, size * size).astype(np.float32)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1.0,
                 max_iter: int = 500) -> tuple[np.ndarray, float]:
    """Fit L2 logistic regression. features: float (N, D); labels: int (N,) in {0, 1}.

    Returns (weights (D,) float64, bias float)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features must be (N, D) and labels (N,), got {x.shape} and {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    n, d = x.shape

    def loss_grad(theta):
        w, b = theta[:d], theta[d]
        z = x @ w + b
        loss = -np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)) + 0.5 * l2 * w @ w
        r = (expit(z) - y) / n
        return loss, np.concatenate([x.T @ r + l2 * w, [r.sum()]])

    res = minimize(loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    return res.x[:d], float(res.x[d])


def _encode(labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind in "US O".replace(" ", ""):
        return encode_labels(arr)
    return arr.astype(np.int32)


def linear_baseline(train_images, train_labels, test_images, test_labels, size: int = 32,
                    l2: float = 1e-2, train_planes=None, test_planes=None,
                    per_plane: bool = False) -> dict:
    """Train on (train_images, train_labels), report accuracy on the test set.

    images: float (N, H, W[, 1]) (any fixed range per image; e.g. [0, 1] after 1-99 % scaling);
    labels: int (N,) 0/1 or class names (:data:`knee_tf.core.vocab.CLASSES`); planes: optional str (N,) arrays
    (needed for per-plane accuracy and ``per_plane``). Returns a dict: ``accuracy`` (test),
    ``train_accuracy``, ``n_train``, ``n_test``, ``size``, ``l2``, ``per_plane`` (bool) and
    ``accuracy_<plane>`` for each test plane when planes are given.
    """
    y_tr, y_te = _encode(train_labels), _encode(test_labels)
    x_tr, x_te = downsample(train_images, size), downsample(test_images, size)
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError("images and labels differ in length")
    if per_plane and (train_planes is None or test_planes is None):
        raise ValueError("per_plane=True needs train_planes and test_planes")
    p_tr = np.asarray(train_planes) if train_planes is not None else np.full(len(y_tr), "all")
    p_te = np.asarray(test_planes) if test_planes is not None else np.full(len(y_te), "all")
    groups = sorted(set(p_tr)) if per_plane else [None]
    pred_tr = np.zeros(len(y_tr), dtype=np.int32)
    pred_te = np.zeros(len(y_te), dtype=np.int32)
    for g in groups:
        m_tr = np.ones(len(y_tr), bool) if g is None else p_tr == g
        m_te = np.ones(len(y_te), bool) if g is None else p_te == g
        mu = x_tr[m_tr].mean(axis=0)
        sd = x_tr[m_tr].std(axis=0) + 1e-6
        w, b = fit_logistic((x_tr[m_tr] - mu) / sd, y_tr[m_tr], l2=l2)
        pred_tr[m_tr] = predicted_class(expit((x_tr[m_tr] - mu) / sd @ w + b))
        if m_te.any():
            pred_te[m_te] = predicted_class(expit((x_te[m_te] - mu) / sd @ w + b))
    out = {"accuracy": float(np.mean(pred_te == y_te)),
           "train_accuracy": float(np.mean(pred_tr == y_tr)),
           "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "size": int(size),
           "l2": float(l2), "per_plane": bool(per_plane)}
    if test_planes is not None:
        for plane in sorted(set(p_te)):
            m = p_te == plane
            out[f"accuracy_{plane}"] = float(np.mean(pred_te[m] == y_te[m]))
    return out

"""Mutual information under a joint-Gaussian assumption (exact for Gaussian data).

For jointly Gaussian X, Y with canonical correlations rho_i,
I(X;Y) = -1/2 sum_i log(1 - rho_i^2) = 1/2 (log det S_xx + log det S_yy - log det S) nats.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import COMMON_PARAMS, register, reject_unknown

GAUSSIAN_PARAMS = ("max_rho",) + COMMON_PARAMS


def _one_hot(codes: np.ndarray) -> np.ndarray:
    k = int(codes.max()) + 1
    out = np.zeros((codes.shape[0], max(k - 1, 1)))
    rows = codes < k - 1
    out[np.nonzero(rows)[0], codes[rows]] = 1.0
    return out


def canonical_correlations(x: np.ndarray, y: np.ndarray, ridge: float = 1e-10) -> np.ndarray:
    """Canonical correlations between the columns of x (n, dx) and y (n, dy), descending."""
    xc = x - x.mean(0)
    yc = y - y.mean(0)

    def whiten(a):
        # orthonormal basis of the column space (drops constant/collinear columns)
        u, s, _ = np.linalg.svd(a, full_matrices=False)
        keep = s > max(s.max(initial=0.0), ridge) * 1e-10
        return u[:, keep]

    ux, uy = whiten(xc), whiten(yc)
    if ux.shape[1] == 0 or uy.shape[1] == 0:
        return np.zeros(0)
    rho = np.linalg.svd(ux.T @ uy, compute_uv=False)
    return np.clip(rho, 0.0, 1.0)


@register("gaussian", symmetric=True, resampling="bootstrap", min_samples=3,
          description="closed form under a joint-Gaussian assumption (canonical correlations)")
def gaussian_mi(x: np.ndarray, y: np.ndarray, *, max_rho: float = 1 - 1e-12, seed: Any = None, device: Any = None,
                **unknown: Any) -> float:
    """I = -1/2 sum log(1 - rho_i^2) nats over the sample canonical correlations.

    Integer labels y are one-hot encoded (one column dropped) and treated as Gaussian, which
    gives a lower-quality estimate; prefer ``ksg`` (Ross's mixed estimator) for labels. Such an
    estimate is not bounded by H(Y): it grows with the class separation and can exceed log(k).
    ``max_rho`` caps each correlation so that a deterministic relation gives a large finite value.
    ``seed`` and ``device`` are accepted for a uniform interface (a closed form on the CPU).
    """
    reject_unknown("gaussian", unknown, GAUSSIAN_PARAMS)
    if y.ndim == 1:
        y = _one_hot(y)
    if x.shape[0] <= x.shape[1] + y.shape[1]:
        raise ValueError(
            f"gaussian needs more samples than dimensions: x {x.shape}, y {y.shape}"
        )
    rho = np.minimum(canonical_correlations(x, y), max_rho)
    return float(-0.5 * np.sum(np.log1p(-rho**2)))

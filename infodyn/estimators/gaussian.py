"""Mutual information under a joint-Gaussian assumption (exact for Gaussian data).

For jointly Gaussian X, Y with canonical correlations rho_i,
I(X;Y) = -1/2 sum_i log(1 - rho_i^2) = 1/2 (log det S_xx + log det S_yy - log det S) nats.

Information plane (``information_plane(t, y, method="gaussian")``): a deterministic layer T = f(X)
made noisy, T + Z with Z ~ N(0, noise_var I), as in the kde plane. Among all distributions of a
given covariance the Gaussian has the largest entropy, and H(T + Z | X) = H(Z), so

    I(X; T + Z) <= 1/2 log det(I + Cov(T) / noise_var)          (the Gaussian channel bound)

(Cover and Thomas, ch. 9); with X uniform over n samples it is also the "coding rate" of the
samples at distortion noise_var (Ma et al. 2007; Yu et al. 2020, MCR^2). It depends on the spectrum
of Cov(T) only: it falls when variance collapses onto few directions, and, with
``scale="relative"`` (noise_var a fraction of the mean per-dimension variance tr Cov(T) / d), it is
unchanged by any rescaling of the features. I(T;Y) is the Gaussian approximation
1/2 log det(I + Cov(T)/v) - sum_c p_c 1/2 log det(I + Cov(T | Y=c)/v) (the rate reduction of
MCR^2), >= 0 by concavity of log det. Both are upper-bound-type approximations, not consistent
estimators of the noisy MI for non-Gaussian T (unlike ``kde`` with ``bound="mc"``); they are cheap
(one d x d eigendecomposition per class) and need no pairwise distances.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from .base import (RawEstimate, accepted_params, check_noise_scale, check_noise_var, identify_rows, noise_rescale,
                   register, register_plane, reject_unknown)


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


def gaussian_channel_rate(t: np.ndarray, noise_var: float) -> float:
    """1/2 log det(I + Cov(t) / noise_var) in nats for samples ``t`` (n, d) (population covariance).

    Computed from the singular values of the centred samples (no d x d matrix when n < d).
    """
    c = t - t.mean(axis=0)
    sv = np.linalg.svd(c, compute_uv=False)
    lam = sv * sv / t.shape[0]  # the non-zero eigenvalues of Cov(t)
    return float(0.5 * np.sum(np.log1p(lam / noise_var)))


@register_plane("gaussian")
def gaussian_plane(t: np.ndarray, y: np.ndarray, *, x: Any = None, noise_var: float = 0.1,
                   scale: str = "absolute", seed: Any = None, device: Any = None, **unknown: Any):
    """(I(X;T), I(T;Y)) in nats of the noisy layer T + N(0, noise_var I) under the Gaussian
    (maximum-entropy) bound; see the module docstring.

    Args:
        t: (n, d) layer output.
        y: (n,) int labels, or a 2-D array whose distinct rows are the classes.
        x: not needed (H(T + Z | X) = H(Z) for a deterministic layer); ignored.
        noise_var: noise variance, in t's units squared (``scale="absolute"``) or as a fraction of
            t's mean per-dimension variance tr Cov(t) / d at this call (``scale="relative"``).
        scale: "absolute", "relative" or "relative_total" (noise_var a fraction of the total
            variance tr Cov(t)); both relative settings are invariant to the overall scale of t.
        seed, device: accepted for a uniform interface (deterministic, on the CPU).
    """
    reject_unknown("gaussian", unknown, GAUSSIAN_PLANE_PARAMS, what="information plane")
    check_noise_scale(scale)
    v = check_noise_var(noise_var)
    params: Dict[str, Any] = {"noise_var": v, "scale": scale}
    t = noise_rescale(t, scale, v, params)
    if y.ndim == 2:
        y = identify_rows(y)
    n = t.shape[0]
    i_xt = gaussian_channel_rate(t, v)
    cond = 0.0
    for c in np.unique(y):
        rows = y == c
        cond += rows.sum() / n * gaussian_channel_rate(t[rows], v)
    return RawEstimate(i_xt, None, dict(params)), RawEstimate(max(i_xt - cond, 0.0), None, dict(params))


#: the keyword parameters of the gaussian estimator and plane, read off their signatures
GAUSSIAN_PARAMS = accepted_params(gaussian_mi)
GAUSSIAN_PLANE_PARAMS = accepted_params(gaussian_plane)

"""Matrix-based Renyi alpha-order entropy and mutual information (Giraldo, Rao and Principe 2015;
Yu et al. 2019).

For n samples, the Gram matrix K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) (or, for integer labels,
the delta kernel K_ij = [y_i = y_j]) normalised to unit trace, A = K / tr(K), has eigenvalues
lambda_i >= 0 summing to 1, and

    S_alpha(A) = 1 / (1 - alpha) log(sum_i lambda_i^alpha)       (nats; log2 gives bits)
    S_1(A)     = -sum_i lambda_i log lambda_i                    (the alpha -> 1 limit)
    I_alpha(X;Y) = S_alpha(A) + S_alpha(B) - S_alpha(A o B / tr(A o B))

with o the elementwise (Hadamard) product. The default alpha is 1.01, close to Shannon. Exact small
cases: identical points give S = 0; n points much further apart than sigma give S = log n; for
alpha = 2, S = -log tr(A^2) = -log sum_ij A_ij^2.

This is a functional of the Gram matrix, not a consistent estimator of Shannon MI: its value depends
on sigma and on n (with a fixed sigma and spread-out points it tends to log n). Compare values at the
same n, alpha and width rule.

Kernel width (``sigma`` or ``width_rule``, recorded in ``params`` as ``sigma_x``, ``sigma_y``):

* ``"silverman"`` (default): sigma = gamma * n^(-1/(4 + d)) (Yu et al.'s Silverman-like rule) with
  gamma = sqrt(trace of the sample covariance), i.e. the data's overall scale, so the rule behaves in
  high dimension (where per-coordinate std would make every kernel value vanish);
* ``"median"``: sigma = median pairwise distance (over at most 1000 seeded samples);
* a number ``sigma=`` used for both variables, or ``sigma_x=`` / ``sigma_y=`` separately.

Paths (``params["path"]``):

* ``alpha == 2``: exact at any n, as -log of the sum of squared Gram entries accumulated over row
  blocks in torch (no n x n matrix held, no eigendecomposition; ``"alpha2_blocked"``);
* any other alpha: the n x n eigenvalues (``"eigvalsh"``, O(n^3)), exact while n <= ``max_samples``
  (default 1000). Beyond that the estimator is computed on a seeded random subsample of ``max_samples`` rows
  (``params["n_used"]``, ``params["subsampled"] = True``), with the width rule applied at that n.
  This is the estimator at n = max_samples, not at the full n.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ._blocks import DEFAULT_BLOCK_MB, log_kernel_row_sums, pairwise_sq_dists_blocks
from .base import RawEstimate, accepted_params, register, reject_unknown, resolve_device

WIDTH_RULES = ("silverman", "median")


def kernel_width(a: np.ndarray, rule: str = "silverman", seed: int = 0) -> float:
    """Gaussian kernel width sigma for samples ``a`` (n, d) by ``rule`` (see the module docstring)."""
    n, d = a.shape
    if rule == "silverman":
        gamma = math.sqrt(float(np.var(a, axis=0).sum()))
        sigma = gamma * n ** (-1.0 / (4 + d))
    elif rule == "median":
        sub = a if n <= 1000 else a[np.random.default_rng(seed).choice(n, 1000, replace=False)]
        from scipy.spatial.distance import pdist

        dist = pdist(sub)  # the n(n-1)/2 distances, no (n, n, d) temporary
        sigma = float(np.median(dist)) if dist.size else 0.0
    else:
        raise ValueError(f"width_rule must be one of {WIDTH_RULES} or give sigma=, got {rule!r}")
    if not sigma > 0:  # constant data: any width gives entropy 0
        sigma = 1.0
    return float(sigma)


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    return alpha


def entropy_of_eigenvalues(lam, alpha: float) -> float:
    """S_alpha in nats of a spectrum ``lam`` (non-negative, summing to 1; clipped at 0)."""
    import torch

    # eigenvalues below the numerical rank cut-off are rounding noise; with alpha < 1 their powers
    # (1e-16 ** 0.5 = 1e-8 each) would add up, so they are set to exactly 0
    cut = lam.max() * lam.numel() * torch.finfo(lam.dtype).eps
    lam = torch.where(lam > cut, lam, torch.zeros_like(lam))
    lam = lam / lam.sum()
    if abs(alpha - 1.0) < 1e-12:
        nz = lam[lam > 0]
        return float(-(nz * torch.log(nz)).sum())
    return float(torch.log(torch.sum(lam**alpha)) / (1.0 - alpha))


def _gram(a: Optional[np.ndarray], labels: Optional[np.ndarray], sigma: float, dev):
    """Full normalised Gram matrix (trace 1) of a (n, d) Gaussian kernel or (n,) delta kernel."""
    import torch

    if labels is not None:
        g = torch.as_tensor(labels, device=dev)
        k = (g[:, None] == g[None, :]).to(torch.float64)
    else:
        (_, _, d2), = list(pairwise_sq_dists_blocks(a, None, a.shape[0], dev))
        k = torch.exp(d2 / (-2.0 * sigma**2))
    return k / k.shape[0]


def _spectra_entropies(mats, alpha: float):
    import torch

    out = []
    for m in mats:
        lam = torch.linalg.eigvalsh(m)
        out.append(entropy_of_eigenvalues(lam, alpha))
    return out


def _alpha2_blocked(x, y_cont, y_lab, sx, sy, dev, memory_mb) -> Tuple[float, float, float]:
    """(S_2(A), S_2(B), S_2(A o B / tr)) from sums of squared Gram entries over row blocks.

    K_ij^2 = exp(-||x_i - x_j||^2 / sigma^2), so the sums are kernel row sums of x / sigma.
    A = K/n, so tr(A^2) = sum K^2 / n^2; A o B normalised by its trace (1/n) is (K_a o K_b)/n.
    """
    n = x.shape[0]
    if y_lab is None:
        (la, lb, lab), _ = log_kernel_row_sums([x / sx, y_cont / sy], [(0,), (1,), (0, 1)], None, dev,
                                               memory_mb=memory_mb)
        sa, sb, sab = (float(np.exp(v).sum()) for v in (la, lb, lab))
    else:
        (la,), (lg,) = log_kernel_row_sums([x / sx], [(0,)], y_lab, dev, memory_mb=memory_mb)
        sa, sab = float(np.exp(la).sum()), float(np.exp(lg).sum())
        sb = float((np.bincount(y_lab).astype(np.float64) ** 2).sum())
    return -math.log(sa / n**2), -math.log(sb / n**2), -math.log(sab / n**2)


def renyi_entropy(a: Any, alpha: float = 1.01, *, sigma: Optional[float] = None, width_rule: str = "silverman",
                  device: Any = "auto") -> float:
    """Matrix-based Renyi alpha-entropy (nats) of samples ``a`` (n, d), or of labels if ``a`` is 1-D int."""
    alpha = _check_alpha(alpha)
    dev = resolve_device(device)
    arr = np.asarray(a)
    if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        return _spectra_entropies([_gram(None, arr, 0.0, dev)], alpha)[0]
    arr = arr.astype(np.float64).reshape(arr.shape[0], -1)
    s = float(sigma) if sigma is not None else kernel_width(arr, width_rule)
    return _spectra_entropies([_gram(arr, None, s, dev)], alpha)[0]


@register("renyi", symmetric=True, min_samples=2, discrete_y=True,
          description="matrix-based Renyi alpha-entropy MI (Giraldo et al.; Yu et al.), Gaussian/delta kernels")
def renyi_mi(x: np.ndarray, y: np.ndarray, *, alpha: float = 1.01, sigma: Optional[float] = None,
             sigma_x: Optional[float] = None, sigma_y: Optional[float] = None, width_rule: str = "silverman",
             max_samples: int = 1000, seed: int = 0, device: Any = "auto", memory_mb: float = DEFAULT_BLOCK_MB,
             **unknown: Any) -> RawEstimate:
    """Matrix-based Renyi I_alpha(X;Y) in nats (see the module docstring).

    Args:
        x: (n, dx) float64.
        y: (n, dy) float64, or (n,) int64 labels (delta kernel).
        alpha: the order (> 0; 1 gives the von Neumann/Shannon form).
        sigma, sigma_x, sigma_y: Gaussian kernel widths (in the data's units); default by ``width_rule``.
        width_rule: "silverman" or "median".
        max_samples: largest n computed exactly by eigendecomposition (alpha != 2); above it a
            seeded subsample of this size is used (see the module docstring).
        seed: seeds the subsample (and the median rule's subsample).
        device: "auto", "cpu", "cuda", ...
    """
    reject_unknown("renyi", unknown, RENYI_PARAMS)
    alpha = _check_alpha(alpha)
    if int(max_samples) < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    dev = resolve_device(device)
    n = x.shape[0]
    labels = y if y.ndim == 1 else None
    params: Dict[str, Any] = {"alpha": alpha, "width_rule": width_rule, "n_used": n, "subsampled": False}
    exact_blocked = abs(alpha - 2.0) < 1e-12
    if n > max_samples and not exact_blocked:
        idx = np.sort(np.random.default_rng(seed).choice(n, int(max_samples), replace=False))
        x, y = x[idx], y[idx]
        labels = y if y.ndim == 1 else None
        params.update(n_used=int(max_samples), subsampled=True, seed=seed)
    sx = float(sigma_x if sigma_x is not None else sigma if sigma is not None else kernel_width(x, width_rule, seed))
    params["sigma_x"] = sx
    sy = None
    if labels is None:
        sy = float(sigma_y if sigma_y is not None else sigma if sigma is not None else kernel_width(y, width_rule, seed))
        params["sigma_y"] = sy
    for name, s in (("sigma_x", sx), ("sigma_y", sy)):
        if s is not None and not (math.isfinite(s) and s > 0):
            raise ValueError(f"{name} must be a positive number, got {s}")
    if exact_blocked:
        params["path"] = "alpha2_blocked"
        ha, hb, hab = _alpha2_blocked(x, None if labels is not None else y, labels, sx, sy, dev, memory_mb)
    else:
        params["path"] = "eigvalsh"
        a = _gram(x, None, sx, dev)
        b = _gram(None, labels, 0.0, dev) if labels is not None else _gram(y, None, sy, dev)
        ab = a * b
        ab = ab / ab.trace()
        ha, hb, hab = _spectra_entropies([a, b, ab], alpha)
    return RawEstimate(ha + hb - hab, None, params)


#: the keyword parameters of :func:`renyi_mi`, read off its signature
RENYI_PARAMS = accepted_params(renyi_mi)

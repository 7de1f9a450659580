"""Kernel (KDE) estimates: the pairwise-distance entropy bounds of Kolchinsky and Tracey.

A deterministic layer output T is made stochastic by adding Gaussian noise of variance
``noise_var`` per dimension (Saxe et al. 2018, following Kolchinsky and Tracey 2017). Over n
samples t_i (X uniform over them), T + noise is a mixture of n Gaussians N(t_i, noise_var I), whose
entropy is bounded by pairwise distances between the components:

* upper bound (KL divergence between components, "kde", ``bound="upper"``)::

      H_up(T) = d/2 (log(2 pi noise_var) + 1) - 1/n sum_i log( 1/n sum_j exp(-||t_i - t_j||^2 / (2 noise_var)) )

* lower bound (Bhattacharyya distance, "kde_lower" or ``bound="lower"``): the same with the
  exponent's denominator 8 noise_var instead of 2 noise_var (the Bhattacharyya distance between two
  such components is ||t_i - t_j||^2 / (8 noise_var)); this equals Saxe et al.'s
  ``entropy_estimator_kl(x, 4 var) + d/2 log(1/4)``.

The conditional entropy given X is the noise entropy, H(T|X) = d/2 (log(2 pi noise_var) + 1), so
I(X;T) = H(T) - H(T|X) = -1/n sum_i log(1/n sum_j K_ij), between 0 and log n nats. For labels,
I(T;Y) = H(T) - sum_c p_c H(T | Y = c), each term bounded the same way on the samples of class c.

As an estimator of I(X;Y) (``estimate_mi(x, y, method="kde")``):

* y integer labels: I(X;Y) = H(X) - sum_c p_c H(X | Y = c) with X + noise as above (not symmetric:
  X is the noisy continuous variable);
* y continuous: I(X;Y) = H(X) + H(Y) - H(X, Y), each the bound for the variable plus noise of
  variance ``noise_var`` on every coordinate (the Gaussian constants cancel). Symmetric.

The value estimated is the MI of the *noisy* variables, which is below that of the clean ones:
choose ``noise_var`` small against the data's scale when estimating I(X;Y) itself.

Large n: the log-sum-exp over j is accumulated over row blocks of the distance matrix in torch
(``device="auto"``), each block about ``memory_mb`` MiB; no n x n matrix is held whole.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._blocks import DEFAULT_BLOCK_MB, log_kernel_row_sums
from .base import RawEstimate, register, register_plane, resolve_device

BOUNDS = ("upper", "lower")


def _scale(noise_var: float, bound: str) -> float:
    """Denominator of the exponent: 2 var (KL, upper bound) or 8 var (Bhattacharyya, lower bound)."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be 'upper' or 'lower', got {bound!r}")
    try:
        v = float(noise_var)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"noise_var must be a positive number, got {noise_var!r}")
    return (2.0 if bound == "upper" else 8.0) * v


def _log_kernel_sums(
    parts: Sequence[np.ndarray],
    combos: Sequence[Tuple[int, ...]],
    scale: float,
    groups: Optional[np.ndarray] = None,
    device: Any = "auto",
    memory_mb: float = DEFAULT_BLOCK_MB,
) -> Tuple[List[np.ndarray], List[Optional[np.ndarray]]]:
    """Per-row log sum_j exp(-D_ij / scale), over all j and (with ``groups``) over the row's group.

    D for a combo is the sum of the squared distances of its parts; see
    :func:`infodyn.estimators._blocks.log_kernel_row_sums`.
    """
    inv = 1.0 / math.sqrt(scale)
    return log_kernel_row_sums([p * inv for p in parts], combos, groups, device, memory_mb=memory_mb)


def gaussian_noise_entropy(d: int, noise_var: float) -> float:
    """Entropy of N(0, noise_var I_d) in nats: d/2 (log(2 pi noise_var) + 1)."""
    return 0.5 * d * (math.log(2 * math.pi * noise_var) + 1.0)


def kde_entropy(t: Any, noise_var: float = 0.1, bound: str = "upper", *, device: Any = "auto",
                memory_mb: float = DEFAULT_BLOCK_MB) -> float:
    """Pairwise-distance bound on the entropy (nats) of T + N(0, noise_var I), T uniform over rows of t.

    Args:
        t: (n, d) samples.
        noise_var: variance of the added Gaussian noise per dimension (in t's units squared).
        bound: "upper" (KL) or "lower" (Bhattacharyya).
    """
    t = np.asarray(t, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    scale = _scale(noise_var, bound)
    (lse,), _ = _log_kernel_sums([t], [(0,)], scale, None, device, memory_mb)
    n, d = t.shape
    return gaussian_noise_entropy(d, noise_var) - float(np.mean(lse - math.log(n)))


def _label_terms(lse: np.ndarray, lse_grp: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(I(X;T), I(T;Y)) from the per-row log kernel sums over all rows and over the row's class."""
    n = labels.shape[0]
    counts = np.bincount(labels)
    i_xt = math.log(n) - float(np.mean(lse))
    i_ty = float(np.mean((lse_grp - np.log(counts[labels])) - (lse - math.log(n))))
    return i_xt, i_ty


def _identify_rows(y: np.ndarray) -> np.ndarray:
    """Integer codes of the distinct rows of a 2-D array (one-hot labels -> class codes)."""
    _, codes = np.unique(y, axis=0, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


@register("kde", symmetric=True, min_samples=2, discrete_y=True,
          description="Kolchinsky-Tracey pairwise-distance bound with Gaussian noise (Saxe et al.)")
def kde_mi(x: np.ndarray, y: np.ndarray, *, noise_var: float = 0.1, bound: str = "upper",
           device: Any = "auto", memory_mb: float = DEFAULT_BLOCK_MB, **_ignored) -> RawEstimate:
    """KDE-bound estimate of I(X;Y) in nats (see the module docstring for the definition).

    Args:
        x: (n, dx) float64.
        y: (n,) int64 labels, or (n, dy) float64.
        noise_var: variance of the Gaussian noise added to each coordinate (default 0.1, as Saxe
            et al. on MNIST; they use 1e-3 on the 12-bit task).
        bound: "upper" (KL, the default) or "lower" (Bhattacharyya).
        device: "auto", "cpu", "cuda", ...
        memory_mb: memory budget in MiB of one block of the distance matrix.
    """
    scale = _scale(noise_var, bound)
    params: Dict[str, Any] = {"noise_var": float(noise_var), "bound": bound}
    if y.ndim == 1:
        (lse,), (lse_g,) = _log_kernel_sums([x], [(0,)], scale, y, device, memory_mb)
        _, mi = _label_terms(lse, lse_g, y)
        params["y_mode"] = "labels"
    else:
        (lx, ly, lxy), _ = _log_kernel_sums([x, y], [(0,), (1,), (0, 1)], scale, None, device, memory_mb)
        n = x.shape[0]
        # H(X)+H(Y)-H(X,Y): the Gaussian constants cancel, one log n remains
        mi = float(np.mean(lxy) - np.mean(lx) - np.mean(ly)) + math.log(n)
        params["y_mode"] = "continuous"
    return RawEstimate(mi, None, params)


@register("kde_lower", symmetric=True, min_samples=2, discrete_y=True,
          description="Kolchinsky-Tracey Bhattacharyya lower bound (kde with bound='lower')")
def kde_lower_mi(x: np.ndarray, y: np.ndarray, *, noise_var: float = 0.1, device: Any = "auto",
                 memory_mb: float = DEFAULT_BLOCK_MB, **_ignored) -> RawEstimate:
    """Same as ``kde`` with ``bound="lower"``."""
    return kde_mi(x, y, noise_var=noise_var, bound="lower", device=device, memory_mb=memory_mb)


@register_plane("kde")
def kde_plane(t: np.ndarray, y: np.ndarray, *, x: Optional[np.ndarray] = None, noise_var: float = 0.1,
              bound: str = "upper", device: Any = "auto", memory_mb: float = DEFAULT_BLOCK_MB,
              **_ignored) -> Tuple[RawEstimate, RawEstimate]:
    """(I(X;T), I(T;Y)) in nats with T + N(0, noise_var I), X uniform over the n rows of t.

    ``y`` is int labels (n,) or a 2-D array whose distinct rows are taken as the classes (one-hot).
    ``x`` is not needed (H(T|X) is the noise entropy for a deterministic network) and is ignored.
    """
    scale = _scale(noise_var, bound)
    labels = y if y.ndim == 1 else _identify_rows(y)
    (lse,), (lse_g,) = _log_kernel_sums([t], [(0,)], scale, labels, device, memory_mb)
    i_xt, i_ty = _label_terms(lse, lse_g, labels)
    params = {"noise_var": float(noise_var), "bound": bound}
    return RawEstimate(i_xt, None, dict(params)), RawEstimate(i_ty, None, dict(params))

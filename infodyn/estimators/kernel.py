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

Scale (``scale``, recorded in ``params``): with ``scale="absolute"`` (the default, the classic
setting of Saxe et al. 2018) ``noise_var`` is in the features' units squared, so the estimate
moves with the overall scale of the features: the ReLU features of a training network grow, and a
fixed noise becomes small against them, which drives I(X;T) towards log n whatever the network
does (Goldfeld et al. 2019). With ``scale="relative"`` each variable is first divided by its RMS
spread s = sqrt(tr Cov / d) (the square root of its mean per-dimension variance, taken on the very
samples given, so at each checkpoint) and ``noise_var`` is a fraction of that mean per-dimension
variance: the absolute noise variance is ``noise_var * s**2`` (``params["noise_var_abs"]``). The
estimate is then unchanged when the features are multiplied by any c != 0, while it still sees
changes of shape (clustering, collapse of directions). The mean per-dimension variance, rather than
each coordinate's own, keeps the geometry: a per-coordinate z-score would blow dead or nearly
constant ReLU units up to unit variance. Constant features (s = 0) keep s = 1 (any noise gives 0).
``scale="relative_total"`` takes the total variance tr Cov = d s^2 as the unit instead (half the mean
squared distance between two samples): the kernel exp(-||t_i - t_j||^2 / (2 noise_var tr Cov)) then
sees distances relative to the typical distance whatever the layer's width d, so one setting suits
layers of different widths (with "relative", a wide layer needs a proportionally larger noise_var
not to saturate at log n).

``bound="mc"`` estimates the mixture entropy itself instead of bounding it: the sample-propagated
estimator of Goldfeld et al. (2019, "Estimating information flow in deep neural networks"), a
Monte Carlo average of -log p(t_i + z) over ``n_mc`` seeded noise draws z ~ N(0, noise_var I) per
sample. The ||z||^2 term of each log-density, whose mean is known (d/2), is replaced by that mean
(a control variate), so I(X;T) = log n - mean_ik log sum_j exp(-(||t_i + z_ik - t_j||^2 - ||z_ik||^2)
/ (2 noise_var)): exactly 0 for identical points and log 2 for two far points, as the bounds, and
unbiased for the noisy I(X;T) otherwise (up to the Monte Carlo error, which shrinks as 1/sqrt(n n_mc)).

Large n: the log-sum-exp over j is accumulated over row blocks of the distance matrix in torch
(``device="auto"``), each block about ``memory_mb`` MiB; no n x n matrix is held whole.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._blocks import DEFAULT_BLOCK_MB, log_kernel_row_sums, pairwise_sq_dists_blocks
from .base import (NOISE_SCALES, RawEstimate, accepted_params, check_noise_scale, check_noise_var, identify_rows,
                   noise_rescale, register, register_plane, reject_unknown)

BOUNDS = ("upper", "lower", "mc")
SCALES = NOISE_SCALES
def _check_n_mc(n_mc: Any) -> int:
    if isinstance(n_mc, bool) or not isinstance(n_mc, (int, np.integer)) or n_mc < 1:
        raise ValueError(f"n_mc (noise draws per sample of the 'mc' bound) must be an integer >= 1, got {n_mc!r}")
    return int(n_mc)


def _scale(noise_var: float, bound: str) -> float:
    """Denominator of the exponent: 2 var (KL, upper bound) or 8 var (Bhattacharyya, lower bound)."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be 'upper', 'lower' or 'mc', got {bound!r}")
    return (8.0 if bound == "lower" else 2.0) * check_noise_var(noise_var)


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


def _mc_log_sums(
    parts: Sequence[np.ndarray],
    combos: Sequence[Tuple[int, ...]],
    noise_var: float,
    n_mc: int,
    seed: Any,
    groups: Optional[np.ndarray] = None,
    device: Any = "auto",
    memory_mb: float = DEFAULT_BLOCK_MB,
) -> Tuple[List[np.ndarray], List[Optional[np.ndarray]]]:
    """Monte Carlo counterpart of :func:`_log_kernel_sums` for the ``"mc"`` bound.

    For each of the n rows and each of ``n_mc`` seeded draws z ~ N(0, noise_var I) (one draw per
    part, shared by the combos), the query q = row + z gets
    log sum_j exp(-(||q - row_j||^2 - ||z||^2) / (2 noise_var)) over all rows j and (with ``groups``)
    over the rows of its own group. Returns (n_mc * n,) arrays, query k * n + i for draw k of row i.
    """
    import torch

    rng = np.random.default_rng(None if seed is None else int(seed))
    n = parts[0].shape[0]
    sd = math.sqrt(noise_var)
    noise = [rng.standard_normal((n_mc, n, p.shape[1])) * sd for p in parts]
    q_groups = None if groups is None else np.tile(groups, n_mc)

    def lse_rows(q: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = np.empty(q.shape[0])
        for s, e, d2 in pairwise_sq_dists_blocks(q, c, device=device, memory_mb=memory_mb):
            out[s:e] = torch.logsumexp(d2.mul_(-0.5 / noise_var), dim=1).cpu().numpy()
        return out

    out_all: List[np.ndarray] = []
    out_grp: List[Optional[np.ndarray]] = []
    for combo in combos:
        centres = np.hstack([parts[p] for p in combo])
        z = np.concatenate([noise[p] for p in combo], axis=2)  # (n_mc, n, d)
        queries = (centres[None] + z).reshape(n_mc * n, -1)
        zz = (z * z).sum(axis=2).reshape(-1) * (0.5 / noise_var)
        out_all.append(lse_rows(queries, centres) + zz)
        if groups is None:
            out_grp.append(None)
            continue
        grp = np.empty(n_mc * n)
        for g in np.unique(groups):
            qi = q_groups == g
            grp[qi] = lse_rows(queries[qi], centres[groups == g]) + zz[qi]
        out_grp.append(grp)
    return out_all, out_grp


def _sums(parts, combos, noise_var: float, bound: str, groups=None, device: Any = "auto",
          memory_mb: float = DEFAULT_BLOCK_MB, n_mc: int = 4, seed: Any = 0):
    """Per-row (bounds) or per-query ("mc") log kernel sums; see the module docstring."""
    if bound == "mc":
        return _mc_log_sums(parts, combos, noise_var, n_mc, seed, groups, device, memory_mb)
    return _log_kernel_sums(parts, combos, _scale(noise_var, bound), groups, device, memory_mb)


def gaussian_noise_entropy(d: int, noise_var: float) -> float:
    """Entropy of N(0, noise_var I_d) in nats: d/2 (log(2 pi noise_var) + 1)."""
    return 0.5 * d * (math.log(2 * math.pi * noise_var) + 1.0)


def kde_entropy(t: Any, noise_var: float = 0.1, bound: str = "upper", *, device: Any = "auto",
                memory_mb: float = DEFAULT_BLOCK_MB, n_mc: int = 4, seed: Any = 0) -> float:
    """Entropy (nats) of T + N(0, noise_var I), T uniform over the rows of t: a pairwise-distance
    bound ("upper": KL, "lower": Bhattacharyya) or the Monte Carlo estimate ("mc", ``n_mc`` seeded
    noise draws per row).

    Args:
        t: (n, d) samples.
        noise_var: variance of the added Gaussian noise per dimension (in t's units squared).
        bound: "upper", "lower" or "mc".
    """
    t = np.asarray(t, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    _scale(noise_var, bound)
    (lse,), _ = _sums([t], [(0,)], float(noise_var), bound, None, device, memory_mb, _check_n_mc(n_mc), seed)
    n, d = t.shape
    return gaussian_noise_entropy(d, noise_var) - float(np.mean(lse - math.log(n)))


def _label_terms(lse: np.ndarray, lse_grp: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(I(X;T), I(T;Y)) from the log kernel sums over all rows and over the row's class.

    ``lse`` and ``lse_grp`` hold one value per row, or (the "mc" bound) per query: n_mc blocks of
    the n rows, in the rows' order; ``labels`` are the n rows' classes.
    """
    n = labels.shape[0]
    reps = lse.shape[0] // n
    counts = np.bincount(labels)
    q_labels = np.tile(labels, reps)
    i_xt = math.log(n) - float(np.mean(lse))
    i_ty = float(np.mean((lse_grp - np.log(counts[q_labels])) - (lse - math.log(n))))
    return i_xt, i_ty


def _resolve(noise_var: Any, bound: str, scale: str, n_mc: Any, seed: Any) -> Dict[str, Any]:
    """Checked settings as the ``params`` every kde result records."""
    _scale(noise_var, bound)
    params: Dict[str, Any] = {"noise_var": float(noise_var), "bound": bound, "scale": check_noise_scale(scale)}
    if bound == "mc":
        params.update(n_mc=_check_n_mc(n_mc), seed=seed)
    return params


@register("kde", symmetric=True, min_samples=2, discrete_y=True,
          description="Kolchinsky-Tracey pairwise-distance bound with Gaussian noise (Saxe et al.)")
def kde_mi(x: np.ndarray, y: np.ndarray, *, noise_var: float = 0.1, bound: str = "upper",
           scale: str = "absolute", n_mc: int = 4, seed: Any = 0, device: Any = "auto",
           memory_mb: float = DEFAULT_BLOCK_MB, **unknown: Any) -> RawEstimate:
    """KDE estimate of I(X;Y) in nats (see the module docstring for the definition).

    Args:
        x: (n, dx) float64.
        y: (n,) int64 labels, or (n, dy) float64.
        noise_var: variance of the Gaussian noise added to each coordinate: in the data's units
            squared with ``scale="absolute"`` (default 0.1, as Saxe et al. on MNIST; they use 1e-3
            on the 12-bit task), a fraction of each variable's mean per-dimension variance with
            ``scale="relative"``.
        bound: "upper" (KL, the default), "lower" (Bhattacharyya) or "mc" (Monte Carlo estimate
            of the noisy MI itself, Goldfeld et al. 2019).
        scale: "absolute", "relative" or "relative_total" (both scale-invariant; see the module docstring).
        n_mc: noise draws per sample for ``bound="mc"``.
        seed: seeds the noise draws of ``bound="mc"`` (unused by the bounds).
        device: "auto", "cpu", "cuda", ...
        memory_mb: memory budget in MiB of one block of the distance matrix.
    """
    reject_unknown("kde", unknown, KDE_PARAMS)
    params = _resolve(noise_var, bound, scale, n_mc, seed)
    v, nm = params["noise_var"], params.get("n_mc", 1)
    x = noise_rescale(x, scale, v, params, "_x" if y.ndim == 2 else "")
    if y.ndim == 1:
        (lse,), (lse_g,) = _sums([x], [(0,)], v, bound, y, device, memory_mb, nm, seed)
        _, mi = _label_terms(lse, lse_g, y)
        params["y_mode"] = "labels"
    else:
        y = noise_rescale(y, scale, v, params, "_y")
        (lx, ly, lxy), _ = _sums([x, y], [(0,), (1,), (0, 1)], v, bound, None, device, memory_mb, nm, seed)
        n = x.shape[0]
        # H(X)+H(Y)-H(X,Y): the Gaussian constants cancel, one log n remains
        mi = float(np.mean(lxy) - np.mean(lx) - np.mean(ly)) + math.log(n)
        params["y_mode"] = "continuous"
    return RawEstimate(mi, None, params)


@register("kde_lower", symmetric=True, min_samples=2, discrete_y=True,
          description="Kolchinsky-Tracey Bhattacharyya lower bound (kde with bound='lower')")
def kde_lower_mi(x: np.ndarray, y: np.ndarray, *, noise_var: float = 0.1, scale: str = "absolute",
                 seed: Any = 0, device: Any = "auto", memory_mb: float = DEFAULT_BLOCK_MB,
                 **unknown: Any) -> RawEstimate:
    """Same as ``kde`` with ``bound="lower"``."""
    reject_unknown("kde_lower", unknown, KDE_LOWER_PARAMS)
    return kde_mi(x, y, noise_var=noise_var, bound="lower", scale=scale, seed=seed, device=device,
                  memory_mb=memory_mb)


@register_plane("kde")
def kde_plane(t: np.ndarray, y: np.ndarray, *, x: Optional[np.ndarray] = None, noise_var: float = 0.1,
              bound: str = "upper", scale: str = "absolute", n_mc: int = 4, seed: Any = 0,
              device: Any = "auto", memory_mb: float = DEFAULT_BLOCK_MB,
              **unknown: Any) -> Tuple[RawEstimate, RawEstimate]:
    """(I(X;T), I(T;Y)) in nats with T + N(0, noise_var I), X uniform over the n rows of t.

    ``y`` is int labels (n,) or a 2-D array whose distinct rows are taken as the classes (one-hot).
    ``x`` is not needed (H(T|X) is the noise entropy for a deterministic network) and is ignored.
    ``scale="relative"`` makes ``noise_var`` a fraction of t's mean per-dimension variance at this
    very call (checkpoint), so the plane does not move when the features are rescaled; the
    parameters are those of :func:`kde_mi`.
    """
    reject_unknown("kde", unknown, KDE_PLANE_PARAMS, what="information plane")
    params = _resolve(noise_var, bound, scale, n_mc, seed)
    v = params["noise_var"]
    t = noise_rescale(t, scale, v, params)
    labels = y if y.ndim == 1 else identify_rows(y)
    (lse,), (lse_g,) = _sums([t], [(0,)], v, bound, labels, device, memory_mb, params.get("n_mc", 1), seed)
    i_xt, i_ty = _label_terms(lse, lse_g, labels)
    return RawEstimate(i_xt, None, dict(params)), RawEstimate(i_ty, None, dict(params))


#: the keyword parameters of the kde estimators and plane, read off their signatures (see :func:`kde_mi`)
KDE_PARAMS = accepted_params(kde_mi)
KDE_LOWER_PARAMS = accepted_params(kde_lower_mi)
KDE_PLANE_PARAMS = accepted_params(kde_plane)

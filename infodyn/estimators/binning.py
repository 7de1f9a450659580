"""Binning (plug-in) estimates: discretise, count distinct rows, take entropies.

Each continuous coordinate is mapped to an integer bin code by one of four rules (recorded in the
result's ``params["bin_rule"]``):

* ``"equal_width"`` (default): ``n_bins`` (default 30) equal bins over the observed range;
* ``"fixed_range"``: ``n_bins`` equal bins over ``bin_range=(lo, hi)``, e.g. (-1, 1) for tanh as
  in Shwartz-Ziv and Tishby; values outside are put in the end bins (their count is recorded as
  ``n_clipped``);
* ``"fixed_width"``: bins of width ``bin_width`` on a grid anchored at 0 (code = floor(v / width)),
  so codes are comparable across checkpoints and unbounded activations (ReLU) are fine;
* ``"quantile"``: ``n_bins`` equal-mass bins (edges at the quantiles; tied edges merged).

``scale`` (recorded in ``params``): ``"absolute"`` (default) bins the values as they are;
``"relative"`` first divides each variable by its RMS spread sqrt(tr Cov / d) (the square root of
its mean per-dimension variance, taken on the samples given, so at each checkpoint; not centred, so
0 stays 0 and a dead ReLU unit stays in the bin of 0), which makes ``bin_width`` and ``bin_range``
fractions of that spread and every rule invariant to the overall scale of the features. The
equal-width and quantile rules are scale-invariant either way; the fixed-width rule (the one for
unbounded ReLU features, Saxe et al. 2018) and the fixed-range rule are not, unless relative.

``bin_scope`` says over what the range or quantiles are taken: ``"column"`` (each coordinate its
own; the default of :func:`estimate_mi`) or ``"array"`` (one grid for all coordinates, the
convention for a layer's units and the default of the information plane).

A row of codes is one symbol; MI = H(bX) + H(bY) - H(bX, bY) by plug-in (nats), integer labels
used as they are.

Counting distinct rows: each row of codes is hashed by two independent random 64-bit linear hashes
(fixed seeds), rows are sorted by the hash pair, and adjacent rows with equal hashes are compared
element-wise; a hash collision between distinct rows is thus detected (never silently merged) and
then the exact, slower ``np.unique(codes, axis=0)`` is used instead. The result is exact.
Binning runs on the CPU in numpy (chunked, about 0.2 s for 100k x 512 values; see
benchmarks/binning_speed.py); a ``device`` argument is accepted and ignored.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .base import RawEstimate, accepted_params, register, register_plane, reject_unknown, rms_scale

RULES = ("equal_width", "fixed_range", "fixed_width", "quantile")
SCOPES = ("column", "array")
SCALES = ("absolute", "relative")
_HASH_SEEDS = (0x1F2E3D4C, 0x5B6A7988)


def _parse_range(bin_range: Any) -> Tuple[float, float]:
    try:
        if isinstance(bin_range, str):  # from the command line: "lo,hi" or "(lo, hi)"
            lo, hi = (float(v) for v in bin_range.strip("()[] ").split(","))
        else:
            lo, hi = (float(v) for v in bin_range)
    except Exception:
        raise ValueError(f"bin_range must be a pair (lo, hi), got {bin_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"bin_range must satisfy lo < hi (finite), got {bin_range!r}")
    return lo, hi


def _smallest_uint(max_code: int):
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_code <= np.iinfo(dt).max:
            return dt
    return np.int64


def bin_codes(
    a: np.ndarray,
    *,
    n_bins: Optional[int] = None,
    bin_width: Optional[float] = None,
    bin_range: Any = None,
    bin_rule: Optional[str] = None,
    bin_scope: str = "column",
    name: str = "x",
) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Integer bin codes of ``a`` (n, d) and the resolved rule (a dict for ``params``).

    Args:
        a: (n, d) float array.
        n_bins: number of bins (default 30) for the equal-width, fixed-range and quantile rules.
        bin_width: fixed bin width (in a's units); selects the ``"fixed_width"`` rule.
        bin_range: (lo, hi); selects the ``"fixed_range"`` rule.
        bin_rule: one of :data:`RULES`; inferred from the other arguments when None.
        bin_scope: "column" or "array" (see the module docstring).
        name: the variable's name for error messages.

    Returns:
        (codes, info): codes (n, d) of the smallest unsigned dtype that fits (int64 for the
        fixed-width rule, whose codes may be negative); info with ``bin_rule``, ``n_bins`` or
        ``bin_width``, ``bin_scope`` and ``n_clipped`` where relevant.
    """
    if bin_rule is None:
        bin_rule = "fixed_width" if bin_width is not None else "fixed_range" if bin_range is not None else "equal_width"
    if bin_rule not in RULES:
        raise ValueError(f"bin_rule must be one of {RULES}, got {bin_rule!r}")
    if bin_scope not in SCOPES:
        raise ValueError(f"bin_scope must be one of {SCOPES}, got {bin_scope!r}")
    if bin_rule == "fixed_width":
        if bin_width is None or not (math.isfinite(float(bin_width)) and float(bin_width) > 0):
            raise ValueError(f"the fixed_width rule needs a positive bin_width, got {bin_width!r}")
        w = float(bin_width)
        if max(abs(a.min(initial=0.0)), abs(a.max(initial=0.0))) / w > 2**62:
            raise ValueError(f"bin_width {w} is too small for {name} of shape {a.shape}: bin codes overflow")
        return _affine_codes(a, 0.0, 1.0 / w, None, np.int64), {"bin_rule": "fixed_width", "bin_width": w}
    n_bins = 30 if n_bins is None else int(n_bins)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    info: Dict[str, Any] = {"bin_rule": bin_rule, "n_bins": n_bins, "bin_scope": bin_scope}
    axis = 0 if bin_scope == "column" else None
    if bin_rule == "quantile":
        qs = np.linspace(0, 1, n_bins + 1)[1:-1]
        if bin_scope == "column":
            codes = np.empty(a.shape, dtype=_smallest_uint(n_bins))
            for j in range(a.shape[1]):
                edges = np.unique(np.quantile(a[:, j], qs))
                codes[:, j] = np.searchsorted(edges, a[:, j], side="right")
        else:
            edges = np.unique(np.quantile(a, qs))
            codes = np.searchsorted(edges, a, side="right").astype(_smallest_uint(n_bins))
        return codes, info
    if bin_rule == "fixed_range":
        lo, hi = _parse_range(bin_range)
        info["bin_range"] = (lo, hi)
        info["n_clipped"] = int(np.count_nonzero((a < lo) | (a > hi)))
    else:
        lo, hi = a.min(axis=axis, keepdims=True), a.max(axis=axis, keepdims=True)
    width = (hi - lo) / n_bins
    width = np.where(width > 0, width, 1.0)  # a constant column: everything in bin 0
    return _affine_codes(a, lo, 1.0 / width, n_bins, _smallest_uint(n_bins - 1)), info


def _affine_codes(a: np.ndarray, lo, inv_width, n_bins: Optional[int], dtype, chunk_bytes: int = 2**22) -> np.ndarray:
    """floor((a - lo) * inv_width), clipped to [0, n_bins - 1] unless n_bins is None, as ``dtype``.

    Done over row chunks of about ``chunk_bytes`` with one reused buffer: on a large array this is
    some 20x faster than whole-array numpy expressions, which allocate and fault in big temporaries.
    """
    n, d = a.shape
    out = np.empty((n, d), dtype=dtype)
    rows = max(1, chunk_bytes // (8 * d))
    buf = np.empty((min(rows, n), d))
    for s in range(0, n, rows):
        blk = a[s:s + rows]
        b = buf[: blk.shape[0]]
        np.subtract(blk, lo, out=b)
        np.multiply(b, inv_width, out=b)
        np.floor(b, out=b)
        if n_bins is not None:
            np.clip(b, 0, n_bins - 1, out=b)  # the maximum itself goes in the last bin
        out[s:s + rows] = b
    return out


def _row_hashes(codes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit linear hashes of each row of integer ``codes`` (arithmetic mod 2^64).

    For distinct rows whose differences are not all divisible by 2^s, each hash collides with
    probability 2^(s-64) over the random odd multipliers; collisions are checked for anyway.
    """
    n, d = codes.shape
    mults = np.stack([np.random.default_rng(seed).integers(0, 2**63, size=d, dtype=np.uint64) * np.uint64(2)
                      + np.uint64(1) for seed in _HASH_SEEDS], axis=1)  # (d, 2) odd multipliers
    out = np.empty((n, 2), dtype=np.uint64)
    rows = max(1, 2**21 // (8 * d))
    with np.errstate(over="ignore"):  # wrap-around mod 2^64 is the point
        for s in range(0, n, rows):
            out[s:s + rows] = codes[s:s + rows].astype(np.uint64) @ mults
    return out[:, 0].copy(), out[:, 1].copy()


def row_ids(codes: np.ndarray) -> np.ndarray:
    """Integer ids 0..G-1 of the distinct rows of ``codes`` (n, d), integer or float; exact.

    Rows are grouped by a pair of 64-bit hashes, then adjacent rows with equal hashes are compared
    element-wise; on any collision between distinct rows the exact ``np.unique(axis=0)`` is used.
    """
    if codes.ndim == 1:
        codes = codes[:, None]
    if np.issubdtype(codes.dtype, np.floating):  # identify float rows by their bits (-0.0 -> 0.0)
        codes = (codes.astype(np.float64) + 0.0).view(np.int64)
    n = codes.shape[0]
    if codes.shape[1] == 1:
        _, ids = np.unique(codes[:, 0], return_inverse=True)
        return ids.reshape(-1).astype(np.int64)
    codes = np.ascontiguousarray(codes)
    h1, h2 = _row_hashes(codes)
    order = np.lexsort((h2, h1))
    s1, s2 = h1[order], h2[order]
    same_hash = (s1[1:] == s1[:-1]) & (s2[1:] == s2[:-1])
    idx = np.nonzero(same_hash)[0]
    if idx.size:
        a, b = codes[order[idx]], codes[order[idx + 1]]
        if not np.array_equal(a, b):  # a collision between distinct rows: fall back to exact
            _, ids = np.unique(codes, axis=0, return_inverse=True)
            return ids.reshape(-1).astype(np.int64)
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    new_group[1:] = ~same_hash
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(new_group) - 1
    return ids


def entropy_of_ids(ids: np.ndarray) -> float:
    """Plug-in entropy (nats) of integer symbols ``ids`` (n,)."""
    counts = np.bincount(ids) if ids.min(initial=0) >= 0 else np.unique(ids, return_counts=True)[1]
    counts = counts[counts > 0]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def joint_ids(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ids of the pairs (a_i, b_i) of two id arrays."""
    return a.astype(np.int64) * (int(b.max()) + 1) + b.astype(np.int64)


def mi_of_ids(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in I(A;B) = H(A) + H(B) - H(A,B) in nats of two id arrays; clipped at 0 against rounding."""
    _, ab = np.unique(joint_ids(a, b), return_inverse=True)
    return max(0.0, entropy_of_ids(a) + entropy_of_ids(b) - entropy_of_ids(ab.reshape(-1)))


def _rescaled(a: np.ndarray, scale: str, info: Dict[str, Any], key: str) -> np.ndarray:
    """``a`` divided by its RMS spread when ``scale="relative"`` (recorded as ``info[key]``)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (relative: bins in units of the features' RMS spread), "
                         f"got {scale!r}")
    if scale == "absolute":
        return a
    s = rms_scale(a)
    info[key] = s
    return a / s


@register("binning", symmetric=True, min_samples=2, discrete_y=True,
          description="plug-in MI of binned variables (equal-width, fixed range/width, quantile)")
def binning_mi(x: np.ndarray, y: np.ndarray, *, n_bins: Optional[int] = None, bin_width: Optional[float] = None,
               bin_range: Any = None, bin_rule: Optional[str] = None, bin_scope: str = "column",
               scale: str = "absolute", seed: Any = None, device: Any = None, **unknown: Any) -> RawEstimate:
    """Plug-in I(X;Y) in nats of the binned x (n, dx) and binned y (n, dy) or labels y (n,).

    The same rule bins x and (continuous) y; see the module docstring for the rules and ``scale``.
    ``params`` records the resolved rule and the number of distinct symbols of each variable.
    ``seed`` and ``device`` are accepted for a uniform interface (binning is deterministic, on CPU).
    """
    reject_unknown("binning", unknown, BINNING_PARAMS)
    opts = dict(n_bins=n_bins, bin_width=bin_width, bin_range=bin_range, bin_rule=bin_rule, bin_scope=bin_scope)
    extra: Dict[str, Any] = {"scale": scale}
    x = _rescaled(x, scale, extra, "feature_scale_x" if y.ndim == 2 else "feature_scale")
    cx, info = bin_codes(x, name="x", **opts)
    ix = row_ids(cx)
    if y.ndim == 1:
        iy = y
    else:
        cy, info_y = bin_codes(_rescaled(y, scale, extra, "feature_scale_y"), name="y", **opts)
        iy = row_ids(cy)
        if "n_clipped" in info_y:
            info["n_clipped"] += info_y["n_clipped"]
    info.update(extra)
    info["distinct_x"] = int(ix.max()) + 1
    info["distinct_y"] = int(iy.max()) + 1
    return RawEstimate(mi_of_ids(ix, iy), None, info)


@register_plane("binning")
def binning_plane(t: np.ndarray, y: np.ndarray, *, x: Optional[np.ndarray] = None, n_bins: Optional[int] = None,
                  bin_width: Optional[float] = None, bin_range: Any = None, bin_rule: Optional[str] = None,
                  bin_scope: str = "array", scale: str = "absolute", seed: Any = None, device: Any = None,
                  **unknown: Any) -> Tuple[RawEstimate, RawEstimate]:
    """(I(X;T), I(T;Y)) in nats of binned T, X uniform over the n rows.

    I(X;T) = H(bT) when ``x`` is None (n distinct inputs, deterministic network); with ``x``,
    H(bT) + H(X) - H(bT, X) over the distinct rows of x (equal to H(bT) when they are distinct).
    I(T;Y) = H(bT) - H(bT | Y); ``y`` is int labels (n,), or a 2-D array (one-hot or continuous)
    whose distinct rows are the symbols (not binned). Bins default to one grid over the whole
    array (``bin_scope="array"``), the convention for a layer's units. ``scale="relative"`` bins
    t / rms_scale(t) (see the module docstring): with ``bin_width`` the bins are then that fraction
    of the layer's RMS spread at this checkpoint.
    """
    reject_unknown("binning", unknown, BINNING_PLANE_PARAMS, what="information plane")
    extra: Dict[str, Any] = {"scale": scale}
    t = _rescaled(t, scale, extra, "feature_scale")
    codes, info = bin_codes(t, name="t", n_bins=n_bins, bin_width=bin_width, bin_range=bin_range,
                            bin_rule=bin_rule, bin_scope=bin_scope)
    info.update(extra)
    it = row_ids(codes)
    h_t = entropy_of_ids(it)
    i_xt = h_t if x is None else mi_of_ids(it, row_ids(x))
    iy = y if y.ndim == 1 else row_ids(y)
    i_ty = mi_of_ids(it, iy)
    info["distinct_t"] = int(it.max()) + 1
    return RawEstimate(i_xt, None, dict(info)), RawEstimate(i_ty, None, dict(info))


#: the keyword parameters of the binning estimator and plane, read off their signatures
BINNING_PARAMS = accepted_params(binning_mi)
BINNING_PLANE_PARAMS = accepted_params(binning_plane)

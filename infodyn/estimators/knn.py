"""k-nearest-neighbour mutual information: KSG (Kraskov, Stoegbauer, Grassberger 2004) and, for
integer labels, the mixed continuous/discrete estimator of Ross (2014).

Registered as ``"ksg"``::

    infodyn.estimate_mi(x, y, method="ksg", k=3)            # x (n, dx), y (n, dy): KSG
    infodyn.estimate_mi(x, labels, method="ksg", k=3)       # labels (n,) ints: Ross (2014)

Definitions (all values in nats, n samples, psi the digamma function). Distances are taken within
each space with ``norm`` ("max": the Chebyshev norm of the paper; "euclidean": the L2 norm), and in
the joint space as the larger of the two: d_z(i, j) = max(d_x(i, j), d_y(i, j)).

* variant 1:  I = psi(k) + psi(n) - < psi(n_x + 1) + psi(n_y + 1) >, with eps_i the distance to the
  k-th neighbour of i in the joint space and n_x(i) = #{j != i : d_x(i, j) < eps_i} (strict).
* variant 2:  I = psi(k) - 1/k + psi(n) - < psi(n_x) + psi(n_y) >, with eps_x(i) the largest x-distance
  from i to its k joint neighbours and n_x(i) = #{j != i : d_x(i, j) <= eps_x(i)}.
* Ross:       I = psi(n') + < psi(k_i) > - < psi(N_{y_i}) > - < psi(m_i) >, with r_i the distance to
  the k_i-th neighbour of i among the points of its own class, k_i = min(k, N_{y_i} - 1),
  m_i = 1 + #{j != i : d_x(i, j) < r_i} over all points; points whose class has a single sample are
  dropped and n' counts the rest (exactly as scikit-learn's ``mutual_info_classif``).

Preprocessing (recorded in the result's params): each coordinate is divided by its standard
deviation (``standardize=True``, as scikit-learn and ennemi do; KSG is not invariant to the relative
scale of x and y), then seeded Gaussian jitter of ``noise * max(1, mean |column|)`` is added to every
continuous coordinate (``noise=1e-10``, as scikit-learn does). The jitter breaks ties between
duplicated samples; with ``noise=0`` ties are kept and counted by the strict/non-strict rules above
(a sample with k or more exact duplicates gets eps = 0 and n_x = 0, which inflates the estimate:
KSG assumes continuous data).

Neighbour search is exact, by one of three backends chosen by ``algorithm``:

* ``"brute"``: blocks of query rows against all n points in torch on ``device`` ("auto" = CUDA when
  present), never an n x n matrix; blocks are sized from ``memory_mb`` (and kept cache-sized on CPU).
  Block distances are fast and approximate: float32 coordinate differences for the max norm, the
  float64 Gram identity |a|^2 + |b|^2 - 2 a.b (one GEMM) for the Euclidean norm in d > 1. Every
  count is taken with a proven rounding band around its threshold, the k neighbours' distances are
  recomputed in float64, and the rare rows where a count or the neighbour set could change within
  the band are recomputed from float64 coordinate differences: the result equals that of float64
  distances computed directly (tested to 1e-10 against a plain numpy implementation).
* ``"tree"``: scipy's cKDTree. For the Euclidean norm the joint distance max(|dx|_2, |dy|_2) is not a
  Minkowski norm: candidates come from the joint L2 ball of radius sqrt(2) times the k-th joint L2
  distance, which holds every point within the k-th joint distance, and are ranked exactly.
* ``"compiled"``: numba kernels on CPU (:mod:`infodyn.estimators._knn_compiled`), float64
  distances straight from the coordinates, tiled for the cache, ``workers`` threads.
* ``"auto"``: on CUDA brute force; on CPU the tree for a low joint dimension (see
  :func:`_choose`), else the compiled kernels (brute force when numba cannot be imported, and
  for the Euclidean norm above ``COMPILED_MAX_EUCLIDEAN_DIM`` per space, where the Gram GEMM wins).

All backends give the same number up to the choice among exactly tied neighbours (variant 2) and,
for the Euclidean tree, distances within 1e-12 (relative) of a threshold, where cKDTree's rounding
differs from ours. The default norm is Euclidean (:data:`DEFAULT_NORM`, chosen from
benchmarks/results/mi_accuracy.md); ``norm="max"`` gives the paper's estimator and the numbers of
scikit-learn and ennemi. torch's thread count is left as it is: on a machine shared with other jobs,
``torch.set_num_threads(1)`` is often several times faster than spin-waiting threads.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
from scipy.special import digamma

from .base import RawEstimate, accepted_params, register, reject_unknown, resolve_device

NORMS = ("max", "euclidean")
ALGORITHMS = ("auto", "brute", "tree", "compiled")
#: default norm within each space: Euclidean, from benchmarks/results/mi_accuracy.md (the same as
#: the max norm in one dimension; 15 % less bias at d = 4 and at d = 16 per side on Gaussian and
#: Student-t data, and less on the 12-bit task)
DEFAULT_NORM = "euclidean"
#: without numba, "auto" uses the tree on CPU when the joint dimension (dx + dy, or dx for labels)
#: is at most this, and torch brute force above it. Measured single-threaded at n = 20000: the tree
#: is 6x faster than torch brute force at joint dimension 4 (both norms), even at 8 (Euclidean) or
#: 1.2x faster (max), 2x slower at 10-12 (Euclidean); it gains with n (n log n against n^2).
TREE_MAX_DIM = 8
#: with numba, "auto" uses the tree up to this joint dimension (and up to 6 from n = 50000 on), the
#: compiled kernels above: benchmarks/results/ksg_backends.md, section 1 (single-threaded; at
#: n = 20000 the tree wins at 2+2 by 1.6x and loses at 3+3 by 1.5x; at n = 50000 and 100000 it
#: wins at 3+3; at 4+4 the compiled kernels win at n = 50000 and the tree, by a little, at 100000).
TREE_MAX_DIM_COMPILED = 4
#: the compiled kernels compute Euclidean distances coordinate by coordinate; above this many
#: dimensions per space the float64 Gram GEMM of the brute-force path is faster:
#: benchmarks/results/ksg_backends.md, section 2 (compiled faster up to 64, about equal at 96,
#: slower from 128)
COMPILED_MAX_EUCLIDEAN_DIM = 64
#: on CPU a block holds at most about this many distances per matrix (cache-sized)
CPU_BLOCK_ELEMS = 2**16


# ----------------------------------------------------------------------------------------------
# preprocessing


def preprocess(a: np.ndarray, *, standardize: bool, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Scales each column of ``a`` (n, d) to unit standard deviation (constant columns are left as
    they are) and adds seeded jitter ``noise * max(1, mean |column|)`` to it. Returns a new array."""
    out = np.array(a, dtype=np.float64, copy=True)
    if standardize:
        sd = out.std(axis=0)
        sd[sd == 0] = 1.0
        out /= sd
    if noise:
        scale = np.maximum(1.0, np.mean(np.abs(out), axis=0))
        out += noise * scale * rng.standard_normal(out.shape)
    return out


# ----------------------------------------------------------------------------------------------
# distances in one space, in torch


class _Space:
    """The points of one space and the distances between them, in "units": the distance itself for
    the max norm, its square for the Euclidean norm (monotone, so comparisons are unchanged).

    Blocks are computed fast and approximately (float32 differences for the max norm, the float64
    Gram identity for the Euclidean norm in d > 1) within a proven per-row bound :meth:`tol`;
    :meth:`pairs` and :meth:`exact_block` give the reference values, in float64 from coordinate
    differences. ``fast=False`` makes max-norm blocks float64 and exact.
    """

    def __init__(self, a: np.ndarray, norm: str, device, fast: bool = True):
        import torch

        self.torch = torch
        t = torch.as_tensor(a, dtype=torch.float64, device=device)
        t = t - t.mean(0)  # distances unchanged; smaller magnitudes -> smaller rounding bounds
        self.a = t
        self.d = t.shape[1]
        self.squared = norm == "euclidean"
        self.gram = self.squared and self.d > 1
        # float32 for max-norm blocks; the Gram identity stays in float64, as its float32 bound
        # (relative to |a|^2, not to the distance) would send most rows to the exact fallback
        f32 = fast and not self.gram
        self.approx_dtype = torch.float32 if f32 else torch.float64
        u = 2.0**-24 if f32 else 2.0**-53  # unit roundoff of the block arithmetic
        if self.gram:
            self.ap = t.to(self.approx_dtype)
            self.sq = (self.ap * self.ap).sum(1)
            self.mag = t.norm(dim=1)
            # |Gram value - sum of squared differences| <= (d + 3) u (|a| + |b|)^2 (+ the rounding
            # of the inputs), with a factor 8 of margin
            self.c = 8.0 * (self.d + 4) * u
        elif f32:
            self.ap = t.to(torch.float32)
            self.mag = t.abs().amax(1)
            # |fl32(a - b) - (a - b)| <= 2u (|a| + |b|) per coordinate; the max adds no error
            self.c = 8.0 * u
        else:
            self.ap = t
            self.c = None
        self.apt = self.ap.t().contiguous()

    def block(self, rows, cols=None):
        """Distances (B, m) from points ``rows`` to points ``cols`` (all when None), within
        :meth:`tol` of the reference."""
        torch = self.torch
        q = self.ap[rows]
        if self.gram:
            p = self.ap if cols is None else self.ap[cols]
            sp = self.sq if cols is None else self.sq[cols]
            out = torch.addmm(sp, q, p.t(), beta=1.0, alpha=-2.0)
            return out.add_(self.sq[rows].unsqueeze(1))
        out = _chebyshev(q, self.apt if cols is None else self.apt[:, cols])
        return out.square_() if self.squared else out

    def tol(self, rows, thr):
        """Bound (B,) float64 on |block - reference| for every pair of row i that could fall on
        the other side of the threshold ``thr`` (B,) (in units); None when blocks are exact.

        A pair (i, j) has error <= c (|a_i| + |a_j|)^2 (Gram) or c (|a_i| + |a_j|) (max norm),
        where |a| is the Euclidean or max norm of a centred point. A point with |a_j| > |a_i| + t*,
        t* = max(2 sqrt(thr), 10 sqrt(c) |a_i|) (Gram; 2 thr and 10 c |a_i| for the max norm) lies
        so far from point i that both its block value and its reference exceed thr + tol, so the
        bound needs only |a_j| <= |a_i| + t*.
        """
        if self.c is None:
            return None
        a = self.mag[rows]
        c = self.c
        thr = thr.clamp_min(0)
        if self.gram:
            far = (2.0 * thr.sqrt()).maximum(10.0 * math.sqrt(c) * a)
            return c * (2.0 * a + far) ** 2
        r = thr.sqrt() if self.squared else thr
        e = c * (2.0 * a + (2.0 * r).maximum(10.0 * c * a))
        return e * (2.0 * r + 3.0 * e) if self.squared else e

    def pairs(self, rows, idx):
        """Reference distances (B, m) from points ``rows`` (B,) to points ``idx`` (B, m)."""
        diff = self.a[idx] - self.a[rows].unsqueeze(1)
        if self.squared:
            return (diff * diff).sum(-1)
        return diff.abs_().amax(-1)

    def exact_block(self, rows, cols=None, max_elems: int = 1 << 22):
        """Reference distances (B, m) in float64, from coordinate differences in column chunks."""
        torch = self.torch
        q = self.a[rows]
        p = self.a if cols is None else self.a[cols]
        if not self.gram:
            out = _chebyshev(q, p.t().contiguous())
            return out.square_() if self.squared else out
        m = p.shape[0]
        out = torch.empty(q.shape[0], m, dtype=q.dtype, device=q.device)
        step = max(1, max_elems // max(1, q.shape[0] * self.d))
        for s in range(0, m, step):
            diff = q.unsqueeze(1) - p[s:s + step].unsqueeze(0)
            out[:, s:s + step] = (diff * diff).sum(-1)
        return out


def _chebyshev(q, pt):
    """max_c |q_ic - pt_cj|, (B, m), for q (B, d) and pt (d, m) contiguous; exact in the inputs'
    dtype. A loop over coordinates on a cache-sized block is several times faster on CPU than
    torch.cdist(p=inf)."""
    import torch

    out = (q[:, 0:1] - pt[0]).abs_()
    if q.shape[1] > 1:
        tmp = torch.empty_like(out)
        for c in range(1, q.shape[1]):
            torch.maximum(out, torch.sub(q[:, c:c + 1], pt[c], out=tmp).abs_(), out=out)
    return out


def _max_tol(tx, ty):
    if tx is None:
        return ty
    if ty is None:
        return tx
    return tx.maximum(ty)


def _thr(thr, tol, sign: float, dtype):
    """Threshold ``thr + sign * tol`` (float64, (B,)) as a (B, 1) column of the block's dtype,
    rounded outward so that the band stays conservative."""
    import torch

    if tol is not None:
        thr = thr + sign * (tol + thr.abs() * 2.0**-22)
    out = thr.to(dtype).unsqueeze(1)
    if dtype != thr.dtype and tol is not None:
        out = torch.nextafter(out, torch.full_like(out, sign * float("inf")))
    return out


def _count(d, thr, tol, *, strict: bool):
    """(#{j: d_ij < thr_i} (or <=), rows where that count could differ for the reference
    distances) given a per-row rounding bound ``tol`` (B,) float64 or None."""
    import torch

    op = d.lt if strict else d.le

    def cnt(t):  # summing bytes is about twice as fast as summing bools
        return op(t).view(torch.uint8).sum(1, dtype=torch.int64)

    if tol is None:
        return cnt(_thr(thr, None, 0.0, d.dtype)), _false(d)
    lo = cnt(_thr(thr, tol, -1.0, d.dtype))
    hi = cnt(_thr(thr, tol, 1.0, d.dtype))
    return lo, hi != lo


def _false(d):
    return d.new_zeros(d.shape[0]).bool()


def _block_rows(n: int, memory_mb: float, dev, n_mats: int = 6) -> int:
    """Query rows per block: ``n_mats`` (B, n) float64 matrices within ``memory_mb``; on CPU also
    at most ~2^19 elements per matrix, so that a block stays in cache (measured: a 32 x 20000 float32
    block is about twice as fast per element as a 512 x 20000 one)."""
    if not memory_mb > 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    rows = int((memory_mb * 2**20) // (8 * n_mats * max(n, 1)))
    if dev.type == "cpu":
        rows = min(rows, max(8, CPU_BLOCK_ELEMS // max(n, 1)))
    return max(1, min(rows, 4096))


# ----------------------------------------------------------------------------------------------
# KSG, brute force in blocks


def _below(vals, tol, ref):
    """Rows where an approximate value ``vals`` (B,) could be below ``ref`` (B,) float64 (or equal,
    which also matters for a neighbour set)."""
    v = vals.to(ref.dtype)
    if tol is not None:
        v = v - tol - v.abs() * 2.0**-22
    return v <= ref


def _ksg_brute(sx: _Space, sy: _Space, k: int, variant: int, memory_mb: float):
    """Counts (n_x, n_y) as int64 numpy arrays (n,), per the variant's definition.

    Each block: approximate distances, the k joint neighbours by topk, their reference distances,
    then counts over the other points from the block with a rounding band; rows where the band or
    the neighbour set is in doubt are recomputed from reference distances."""
    import torch

    n = sx.a.shape[0]
    dev = sx.a.device
    B = _block_rows(n, memory_mb, dev)
    nx_all = torch.empty(n, dtype=torch.int64, device=dev)
    ny_all = torch.empty(n, dtype=torch.int64, device=dev)
    inf = float("inf")
    kc = min(k + 1, n - 1)  # one spare candidate to check the neighbour set under rounding
    for s in range(0, n, B):
        rows = torch.arange(s, min(n, s + B), device=dev)
        b = rows.shape[0]
        ar = torch.arange(b, device=dev)
        dx = sx.block(rows)
        dy = sy.block(rows)
        dx[ar, rows] = inf
        dy[ar, rows] = inf
        vals, idx = torch.topk(torch.maximum(dx, dy), kc, dim=1, largest=False, sorted=True)
        mem = idx[:, :k]
        ex_x, ex_y = sx.pairs(rows, mem), sy.pairs(rows, mem)
        eps = torch.maximum(ex_x, ex_y).amax(1)  # k-th joint distance when the set is right
        tz = _max_tol(sx.tol(rows, eps), sy.tol(rows, eps))
        unsure = _below(vals[:, k], tz, eps) if kc > k else _false(eps)
        # the k neighbours are counted from their reference distances, the others from the block
        dx.scatter_(1, mem, inf)
        dy.scatter_(1, mem, inf)
        if variant == 1:
            nx, ux = _count(dx, eps, sx.tol(rows, eps), strict=True)
            ny, uy = _count(dy, eps, sy.tol(rows, eps), strict=True)
            nx += (ex_x < eps.unsqueeze(1)).sum(1)
            ny += (ex_y < eps.unsqueeze(1)).sum(1)
        else:
            thx, thy = ex_x.amax(1), ex_y.amax(1)
            nx, ux = _count(dx, thx, sx.tol(rows, thx), strict=False)
            ny, uy = _count(dy, thy, sy.tol(rows, thy), strict=False)
            nx += k
            ny += k
        del dx, dy
        nx_all[rows] = nx
        ny_all[rows] = ny
        unsure |= ux | uy
        if bool(unsure.any()):
            bad = rows[unsure]
            nx_all[bad], ny_all[bad] = _ksg_exact_rows(sx, sy, bad, k, variant)
    return nx_all.cpu().numpy(), ny_all.cpu().numpy()


def _ksg_exact_rows(sx: _Space, sy: _Space, rows, k: int, variant: int):
    """KSG counts for ``rows`` from reference distances (the fallback of the fast path)."""
    import torch

    inf = float("inf")
    ar = torch.arange(rows.shape[0], device=rows.device)
    dx = sx.exact_block(rows)
    dy = sy.exact_block(rows)
    dx[ar, rows] = inf
    dy[ar, rows] = inf
    z = torch.maximum(dx, dy)
    _, mem = torch.topk(z, k, dim=1, largest=False, sorted=True)
    if variant == 1:
        eps = z.gather(1, mem).amax(1, keepdim=True)
        return (dx < eps).sum(1), (dy < eps).sum(1)
    ex = dx.gather(1, mem).amax(1, keepdim=True)
    ey = dy.gather(1, mem).amax(1, keepdim=True)
    return (dx <= ex).sum(1), (dy <= ey).sum(1)


# ----------------------------------------------------------------------------------------------
# Ross (continuous x, discrete y), brute force in blocks


def _class_groups(labels: np.ndarray, k: int):
    """Yields (member indices, k_c) per class of at least two samples, k_c = min(k, size - 1):
    Ross (2014) as scikit-learn's mutual_info_classif does it (singleton classes are dropped)."""
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.shape[0] >= 2:
            yield members, min(k, members.shape[0] - 1)


def _ross_brute(sx: _Space, labels: np.ndarray, k: int, memory_mb: float):
    """(k_i, N_{y_i}, m_i) for the kept points (classes with >= 2 samples), as numpy arrays."""
    import torch

    dev = sx.a.device
    n = sx.a.shape[0]
    B = _block_rows(n, memory_mb, dev, n_mats=3)
    inf = float("inf")
    ks, ns, ms = [], [], []
    for members, kk in _class_groups(labels, k):
        nc = members.shape[0]
        kc = min(kk + 1, nc - 1)
        cols = torch.as_tensor(members, device=dev)
        for s in range(0, nc, B):
            rows = cols[s:s + B]
            b = rows.shape[0]
            ar = torch.arange(b, device=dev)
            dc = sx.block(rows, cols)
            dc[ar, ar + s] = inf
            vals, li = torch.topk(dc, kc, dim=1, largest=False, sorted=True)
            del dc
            mem = cols[li[:, :kk]]  # global indices of the kk within-class neighbours
            ex = sx.pairs(rows, mem)
            r = ex.amax(1)
            tol = sx.tol(rows, r)
            unsure = _below(vals[:, kk], tol, r) if kc > kk else _false(r)
            d = sx.block(rows)
            d[ar, rows] = inf
            d.scatter_(1, mem, inf)
            m, um = _count(d, r, tol, strict=True)
            del d
            m += (ex < r.unsqueeze(1)).sum(1) + 1  # the neighbours strictly inside, and itself
            unsure |= um
            if bool(unsure.any()):
                bad = unsure.nonzero().squeeze(1)
                m[bad] = _ross_exact_rows(sx, rows[bad], cols, kk)
            ks.append(np.full(b, kk))
            ns.append(np.full(b, nc))
            ms.append(m.cpu().numpy())
    if not ms:
        return None
    return np.concatenate(ks), np.concatenate(ns), np.concatenate(ms)


def _ross_exact_rows(sx: _Space, rows, cols, kk: int):
    import torch

    inf = float("inf")
    dc = sx.exact_block(rows, cols)
    dc[cols.unsqueeze(0) == rows.unsqueeze(1)] = inf
    r = torch.topk(dc, kk, dim=1, largest=False, sorted=True).values[:, -1:]
    d = sx.exact_block(rows)
    d[torch.arange(rows.shape[0], device=rows.device), rows] = inf
    return (d < r).sum(1) + 1


# ----------------------------------------------------------------------------------------------
# tree backend (scipy cKDTree)


def _p(norm: str, d: int) -> float:
    return np.inf if (norm == "max" or d == 1) else 2.0


def _strict(r: np.ndarray, p: float) -> np.ndarray:
    """Radius for cKDTree's "<=" counts that gives "<": the next float below for the max norm
    (exact); for p=2, whose tree distances round differently from ours, 1e-12 relative below."""
    return np.nextafter(r, 0.0) if p == np.inf else r * (1 - 1e-12)


def _upto(r: np.ndarray, p: float) -> np.ndarray:
    """Radius for cKDTree's "<=" counts that surely includes a point at distance r (see _strict)."""
    return r if p == np.inf else r * (1 + 1e-12)


def _joint_knn(x: np.ndarray, y: np.ndarray, k: int, norm: str, workers: int):
    """The k joint neighbours (n, k) of every point (itself excluded) and the k-th joint
    distance (n,), for d_z = max(d_x, d_y) with ``norm`` within each space.

    Max norm (or 1-D spaces): d_z is the Chebyshev distance in the joint space, one tree query.
    Euclidean: d_z <= |z_i - z_j|_2 <= sqrt(2) d_z, so the k-th d_z is at most the k-th joint L2
    distance r, and every point within it lies in the L2 ball of radius sqrt(2) r: those candidates
    are ranked by d_z exactly."""
    from scipy.spatial import cKDTree

    n = x.shape[0]
    xy = np.hstack([x, y])
    tz = cKDTree(xy)
    if norm == "max" or (x.shape[1] == 1 and y.shape[1] == 1):
        dist, idx = tz.query(xy, k=k + 1, p=np.inf, workers=workers)
        # drop the query point itself (among exact duplicates it may not come first)
        is_self = idx == np.arange(n)[:, None]
        keep = ~is_self
        keep[~is_self.any(1), k] = False
        return idx[keep].reshape(n, k), dist[:, k]
    r2 = tz.query(xy, k=k + 1, p=2, workers=workers)[0][:, k]
    cand = tz.query_ball_point(xy, r2 * math.sqrt(2) * (1 + 1e-9), p=2, workers=workers)
    lens = np.fromiter((len(c) for c in cand), dtype=np.int64, count=n)
    cols = np.fromiter(itertools.chain.from_iterable(cand), dtype=np.int64, count=int(lens.sum()))
    rows = np.repeat(np.arange(n), lens)
    other = cols != rows
    rows, cols = rows[other], cols[other]
    dz = np.maximum(_rowwise(x, rows, cols), _rowwise(y, rows, cols))
    order = np.lexsort((dz, rows))
    starts = np.searchsorted(rows[order], np.arange(n))
    pick = order[starts[:, None] + np.arange(k)]
    return cols[pick], dz[pick[:, -1]]


def _rowwise(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    diff = a[rows] - a[cols]
    return np.sqrt((diff * diff).sum(1))


def _ksg_tree(x: np.ndarray, y: np.ndarray, k: int, variant: int, norm: str, workers: int):
    from scipy.spatial import cKDTree

    nb, eps = _joint_knn(x, y, k, norm, workers)
    px, py = _p(norm, x.shape[1]), _p(norm, y.shape[1])
    tx, ty = cKDTree(x), cKDTree(y)
    if variant == 1:
        nx = tx.query_ball_point(x, _strict(eps, px), p=px, return_length=True, workers=workers) - 1
        ny = ty.query_ball_point(y, _strict(eps, py), p=py, return_length=True, workers=workers) - 1
        zero = eps == 0  # strict "< 0" counts nothing; the tree would count exact duplicates
        nx[zero] = 0
        ny[zero] = 0
        return nx, ny
    ex = _pair_dist(x, nb, px).max(1)
    ey = _pair_dist(y, nb, py).max(1)
    nx = tx.query_ball_point(x, _upto(ex, px), p=px, return_length=True, workers=workers) - 1
    ny = ty.query_ball_point(y, _upto(ey, py), p=py, return_length=True, workers=workers) - 1
    return nx, ny


def _pair_dist(a: np.ndarray, nb: np.ndarray, p: float) -> np.ndarray:
    diff = a[nb] - a[:, None, :]
    if p == np.inf:
        return np.abs(diff).max(-1)
    return np.sqrt((diff * diff).sum(-1))


def _ross_tree(x: np.ndarray, labels: np.ndarray, k: int, norm: str, workers: int):
    from scipy.spatial import cKDTree

    p = _p(norm, x.shape[1])
    full = cKDTree(x)
    ks, ns, ms = [], [], []
    for members, kk in _class_groups(labels, k):
        nc = members.shape[0]
        xc = x[members]
        r = cKDTree(xc).query(xc, k=kk + 1, p=p, workers=workers)[0][:, kk]
        m = full.query_ball_point(xc, _strict(r, p), p=p, return_length=True, workers=workers)
        m[r == 0] = 1
        ks.append(np.full(nc, kk))
        ns.append(np.full(nc, nc))
        ms.append(m)
    if not ms:
        return None
    return np.concatenate(ks), np.concatenate(ns), np.concatenate(ms)


# ----------------------------------------------------------------------------------------------
# the estimator


def _check_params(k, variant, norm, algorithm, noise, unknown: Dict[str, Any]) -> None:
    reject_unknown("ksg", unknown, KSG_PARAMS)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"ksg needs an integer k >= 1, got k={k!r}")
    if variant not in (1, 2):
        raise ValueError(f"ksg variant must be 1 or 2, got {variant!r}")
    if norm not in NORMS:
        raise ValueError(f"ksg norm must be one of {NORMS}, got {norm!r}")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"ksg algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"ksg noise must be a finite number >= 0, got {noise!r}")


def _compiled():
    """The numba kernels module, or None when it cannot be loaded (see :mod:`infodyn._numba`)."""
    from infodyn._numba import kernels

    return kernels("infodyn.estimators._knn_compiled")


def _choose(algorithm: str, dev, n: int, dims: Tuple[int, ...], norm: str) -> str:
    """The backend for ``algorithm`` on ``dev`` for n points with ``dims`` (per space)."""
    if algorithm == "compiled":
        if _compiled() is None:
            raise ValueError("ksg algorithm='compiled' needs numba: pip install numba")
        if dev.type != "cpu":
            raise ValueError(f"ksg algorithm='compiled' runs on CPU only, got device={dev}")
    if algorithm != "auto":
        return algorithm
    if dev.type != "cpu":
        return "brute"
    joint = sum(dims)
    if _compiled() is None:
        return "tree" if joint <= TREE_MAX_DIM else "brute"
    if joint <= TREE_MAX_DIM_COMPILED or (joint <= 6 and n >= 50_000):
        return "tree"
    if norm == "euclidean" and max(dims) > COMPILED_MAX_EUCLIDEAN_DIM:
        return "brute"
    return "compiled"


@register(
    "ksg",
    symmetric=True,
    min_samples=lambda p: int(p.get("k", 3)) + 1,
    discrete_y=True,
    description="Kraskov-Stoegbauer-Grassberger k-NN estimator (Ross 2014 for integer labels)",
)
def ksg(
    x: np.ndarray,
    y: np.ndarray,
    *,
    k: int = 3,
    variant: int = 1,
    norm: Optional[str] = None,
    standardize: bool = True,
    noise: float = 1e-10,
    seed: Optional[int] = 0,
    algorithm: str = "auto",
    device: Any = "auto",
    memory_mb: float = 256.0,
    workers: int = -1,
    **unknown: Any,
) -> RawEstimate:
    """KSG estimate of I(X;Y) in nats (Ross's mixed estimator when ``y`` is integer labels).

    Args:
        x: (n, dx) float64 samples.
        y: (n, dy) float64 samples, or (n,) int64 class labels (then Ross 2014; ``variant`` unused).
        k: neighbours (>= 1; n must exceed k).
        variant: 1 or 2 (KSG 2004, eqs. 8 and 9).
        norm: distance within each space, "max" (Chebyshev, the paper's) or "euclidean"; the joint
            distance is the larger of the two. Default :data:`DEFAULT_NORM`.
        standardize: divide each coordinate by its standard deviation first.
        noise: relative jitter added to continuous coordinates (0 for none), seeded by ``seed``.
        seed: seed of the jitter.
        algorithm: "auto", "brute" (torch, blocks, any device), "tree" (scipy cKDTree, CPU) or
            "compiled" (numba, CPU).
        device: torch device for "brute"; "auto" = CUDA when present, else CPU.
        memory_mb: memory budget (MiB) for one block of pairwise distances ("brute").
        workers: threads for the tree and compiled backends (-1: one per core).

    Returns:
        RawEstimate(nats, params) with the resolved norm, algorithm, device and preprocessing.
    """
    norm = DEFAULT_NORM if norm is None else norm
    _check_params(k, variant, norm, algorithm, noise, unknown)
    k = int(k)
    n = x.shape[0]
    discrete = y.ndim == 1
    if n <= k:
        raise ValueError(f"ksg needs more samples than k={k}: x has shape {x.shape}")
    rng = np.random.default_rng(seed)
    xs = preprocess(x, standardize=standardize, noise=noise, rng=rng)
    dev = resolve_device(device)
    params: Dict[str, Any] = {
        "k": k, "norm": norm, "standardize": bool(standardize), "noise": float(noise), "seed": seed,
    }
    if discrete:
        algo = _choose(algorithm, dev, n, (x.shape[1],), norm)
        if algo == "tree":
            out = _ross_tree(xs, y, k, norm, workers)
        elif algo == "compiled":
            out = _compiled().ross_counts(xs, y, k, norm == "euclidean", workers)
            out = out if out[0].shape[0] else None
        else:
            out = _ross_brute(_Space(xs, norm, dev), y, k, memory_mb)
        if out is None:
            raise ValueError(
                f"ksg with labels needs a class with at least 2 samples; y has shape {y.shape} and "
                f"{len(np.unique(y))} distinct labels, each seen once"
            )
        kk, ny, m = out
        value = digamma(kk.shape[0]) + np.mean(digamma(kk)) - np.mean(digamma(ny)) - np.mean(digamma(m))
        params.update(estimator="ross2014", algorithm=algo, n_used=int(kk.shape[0]))
    else:
        ys = preprocess(y, standardize=standardize, noise=noise, rng=rng)
        algo = _choose(algorithm, dev, n, (x.shape[1], y.shape[1]), norm)
        if algo == "tree":
            nx, ny = _ksg_tree(xs, ys, k, variant, norm, workers)
        elif algo == "compiled":
            nx, ny = _compiled().ksg_counts(xs, ys, k, variant, norm == "euclidean", workers)
        else:
            nx, ny = _ksg_brute(_Space(xs, norm, dev), _Space(ys, norm, dev), k, variant, memory_mb)
        if variant == 1:
            value = digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1))
        else:
            value = digamma(k) - 1.0 / k + digamma(n) - np.mean(digamma(nx) + digamma(ny))
        params.update(estimator=f"ksg{variant}", variant=variant, algorithm=algo)
    if algo == "brute":
        params.update(device=str(dev), memory_mb=memory_mb)
    return RawEstimate(float(value), None, params)


#: the keyword parameters of :func:`ksg`, read off its signature
KSG_PARAMS = accepted_params(ksg)

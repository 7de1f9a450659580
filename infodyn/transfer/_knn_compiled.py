"""Compiled (numba) first stage of the certified k-NN search on CPU.

:func:`settle` does, for every row of a bfloat16 similarity block, what the torch path of
:func:`infodyn.transfer.knn.knn_neighbours` does with ``topk``, ``index_select`` and one
matrix-vector product per row, in one pass per row and without gathering candidate rows into a
buffer:

1. the ``kk`` largest bfloat16 similarities: the maximum of every group of ``G`` columns
   (strided, so that the maxima are taken by elementwise vector operations), the kk-th largest
   group maximum ``T`` by a radix select (at least kk entries reach it, so it is a lower bound on
   the kk-th largest entry), then only the groups whose maximum reaches ``T`` are read;
2. the same rounding bound and the same pruning as the torch path: candidates whose upper bound
   lies below the k-th largest lower bound are not re-ranked;
3. float64 similarities (x_j . q) / ||x_j|| of the rest straight from the float64 rows, the k
   largest of them, and the certificate: the k-th float64 similarity must exceed the bound of the
   lowest candidate, above which no point left out can lie.

bfloat16 values arrive as their int16 bit patterns; ``_key`` maps them to int16 keys in the order
of the values, so that the group maxima are plain integer reductions.
"""
from __future__ import annotations

import functools

import numpy as np
from numba import njit

#: columns per group in step 1
G = 16


@njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _key(v):  # pragma: no cover - compiled
    """Order-preserving integer key of a bfloat16 bit pattern read as int16: negative patterns
    (sign bit set) have their other 15 bits flipped. The map is its own inverse."""
    return v ^ ((v >> 15) & 0x7FFF)


@functools.lru_cache(maxsize=1)
def bf16_table() -> np.ndarray:
    """float64 value (65536,) of every bfloat16 bit pattern, indexed by the pattern as uint16."""
    bits = np.arange(65536, dtype=np.uint32) << np.uint32(16)
    with np.errstate(invalid="ignore"):  # NaN patterns: never produced by a finite product
        return bits.view(np.float32).astype(np.float64)


@njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _value(key, table):  # pragma: no cover - compiled
    """The value of a bfloat16 from its key (inverse of :func:`_key`, then the table)."""
    return table[_key(key) & 0xFFFF]


@njit(nogil=True, cache=True, boundscheck=False)
def _kth_largest(v, kk, hist):  # pragma: no cover - compiled
    """The kk-th largest of the int16 values v (kk <= len(v)) by a two-digit radix select:
    a histogram of the high bytes finds the bucket, a second one of the low bytes within it the
    value. (Insertion into a sorted list took twice as long, for mispredicted branches.)"""
    hist[:] = 0
    for t in range(v.shape[0]):
        hist[(v[t] >> 8) + 128] += 1
    left = kk
    hi = 255
    while hist[hi] < left:
        left -= hist[hi]
        hi -= 1
    hist[:] = 0
    for t in range(v.shape[0]):
        if (v[t] >> 8) + 128 == hi:
            hist[v[t] & 0xFF] += 1
    lo = 255
    while hist[lo] < left:
        left -= hist[lo]
        lo -= 1
    return ((hi - 128) << 8) | lo


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "contract"})
def _dot(a, b):  # pragma: no cover - compiled
    """a . b in float64, summed in vector lanes (another order than BLAS, as any two BLAS are)."""
    acc = 0.0
    for e in range(a.shape[0]):
        acc += a[e] * b[e]
    return acc


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "contract"})
def _dot4(a0, a1, a2, a3, b):  # pragma: no cover - compiled
    """(a0 . b, a1 . b, a2 . b, a3 . b), each summed as :func:`_dot` sums."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for e in range(b.shape[0]):
        s0 += a0[e] * b[e]
        s1 += a1[e] * b[e]
        s2 += a2[e] * b[e]
        s3 += a3[e] * b[e]
    return s0, s1, s2, s3


@njit(nogil=True, cache=True, boundscheck=False)
def settle(low, table, q, x, nx, a_rows, b, k, kk, vals, idx, ok):  # pragma: no cover - compiled
    """Certified top-k for each row of ``low`` (rows, n) int16 (bfloat16 bits of q_i . x~_j),
    ``table`` from :func:`bf16_table`.

    q (rows, d) float64 unit queries; x (n, d) float64 training rows; nx (n,) their norms;
    a_rows (rows,) and b: the rounding bound a_i + b |l| of a bfloat16 similarity l. Writes the k
    float64 similarities (descending) and indices of each row to vals, idx (rows, k) and whether
    the row is certified to ok (rows,); rows with ok False are left for a wider search.
    """
    rows, n = low.shape
    ng = (n + G - 1) // G
    gmax = np.empty(ng, np.int16)
    hist = np.empty(256, np.int32)
    ckey = np.empty(ng * G, np.int32)
    cidx = np.empty(ng * G, np.int64)
    sims = np.empty(kk)
    for i in range(rows):
        li = low[i]
        gmax[:] = -32768
        for t0 in range(0, n, ng):  # group g holds columns g, g + ng, g + 2 ng, ...
            seg = li[t0:t0 + min(ng, n - t0)]  # a view: this form vectorises (5x faster)
            for g in range(seg.shape[0]):
                gmax[g] = max(gmax[g], _key(seg[g]))
        thr = -32768
        if ng > kk:
            thr = _kth_largest(gmax, kk, hist)
        c = 0
        for g in range(ng):
            if gmax[g] >= thr:
                for t in range(g, n, ng):
                    kt = _key(li[t])
                    if kt >= thr:
                        ckey[c] = kt
                        cidx[c] = t
                        c += 1
        order = np.argsort(-ckey[:c], kind="mergesort")[:kk]
        a = a_rows[i]
        lk = _value(ckey[order[k - 1]], table)
        lower_k = lk - (a + b * abs(lk))
        need = 0  # sorted: once a candidate's upper bound is below lower_k, all later ones are
        while need < kk:
            lv = _value(ckey[order[need]], table)
            if lv + a + b * abs(lv) < lower_k:
                break
            need += 1
        sims[:] = -np.inf
        qi = q[i]
        s = 0
        while s + 4 <= need:  # four rows at once: four memory streams in flight
            j0, j1, j2, j3 = cidx[order[s]], cidx[order[s + 1]], cidx[order[s + 2]], cidx[order[s + 3]]
            d0, d1, d2, d3 = _dot4(x[j0], x[j1], x[j2], x[j3], qi)
            sims[s] = d0 / nx[j0]
            sims[s + 1] = d1 / nx[j1]
            sims[s + 2] = d2 / nx[j2]
            sims[s + 3] = d3 / nx[j3]
            s += 4
        while s < need:
            j = cidx[order[s]]
            sims[s] = _dot(x[j], qi) / nx[j]
            s += 1
        top = np.argsort(-sims, kind="mergesort")[:k]
        for s in range(k):
            vals[i, s] = sims[top[s]]
            idx[i, s] = cidx[order[top[s]]]
        lmin = _value(ckey[order[kk - 1]], table)
        ok[i] = kk >= n or vals[i, k - 1] > lmin + a + b * abs(lmin)

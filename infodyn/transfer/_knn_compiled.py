"""Compiled (numba) first stage of the certified k-NN search on CPU.

:func:`settle` does, for every row of a bfloat16 similarity block, what the torch path of
:func:`infodyn.transfer.knn.knn_neighbours` does with ``topk``, ``index_select`` and one
matrix-vector product per row, in one pass per row and without gathering candidate rows into a
buffer:

1. the ``kk`` largest bfloat16 similarities: the maximum of every group of ``G`` columns
   (strided, so that the maxima are taken by elementwise vector operations), the kk-th largest group maximum ``T`` (at least kk entries reach it, so it is a lower
   bound on the kk-th largest entry), then only the groups whose maximum reaches ``T`` are read;
2. the same rounding bound and the same pruning as the torch path: candidates whose upper bound
   lies below the k-th largest lower bound are not re-ranked;
3. float64 similarities (x_j . q) / ||x_j|| of the rest straight from the float64 rows, the k
   largest of them, and the certificate: the k-th float64 similarity must exceed the bound of the
   lowest candidate, above which no point left out can lie.

bfloat16 values arrive as their int16 bit patterns; ``key`` maps them to integers in the order of
the values, so that the group maxima are plain integer reductions.
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: columns per group in step 1
G = 16


@njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _key(v):  # pragma: no cover - compiled
    """Order-preserving integer key of a bfloat16 bit pattern read as int16."""
    w = np.int32(v)
    return w if w >= 0 else np.int32(-32769) - w


def bf16_table() -> np.ndarray:
    """float64 value (65536,) of every bfloat16 bit pattern, indexed by the pattern as uint16."""
    bits = np.arange(65536, dtype=np.uint32) << np.uint32(16)
    with np.errstate(invalid="ignore"):  # NaN patterns: never produced by a finite product
        return bits.view(np.float32).astype(np.float64)


@njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _value(key, table):  # pragma: no cover - compiled
    """The value of a bfloat16 from its key (inverse of :func:`_key`, then the table)."""
    w = key if key >= 0 else np.int32(-32769) - key
    return table[w & 0xFFFF]


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "contract"})
def _dot(a, b):  # pragma: no cover - compiled
    """a . b in float64, summed in vector lanes (another order than BLAS, as any two BLAS are)."""
    acc = 0.0
    for e in range(a.shape[0]):
        acc += a[e] * b[e]
    return acc


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
    gmax = np.empty(ng, np.int32)
    best = np.empty(kk, np.int32)
    ckey = np.empty(ng * G, np.int32)
    cidx = np.empty(ng * G, np.int64)
    sims = np.empty(kk)
    for i in range(rows):
        li = low[i]
        gmax[:] = np.int32(-2147483647)
        for t0 in range(0, n, ng):  # group g holds columns g, g + ng, g + 2 ng, ...
            for g in range(min(ng, n - t0)):
                gmax[g] = max(gmax[g], _key(li[t0 + g]))
        thr = np.int32(-2147483647)
        if ng > kk:  # the kk-th largest group maximum, by insertion into an ascending list
            best[:] = np.int32(-2147483647)
            for g in range(ng):
                v = gmax[g]
                if v > best[0]:
                    p = 1
                    while p < kk and best[p] < v:
                        best[p - 1] = best[p]
                        p += 1
                    best[p - 1] = v
            thr = best[0]
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
        sims[:] = -np.inf
        for s in range(kk):
            lv = _value(ckey[order[s]], table)
            if lv + a + b * abs(lv) < lower_k:
                break  # sorted: every later candidate is below too
            j = cidx[order[s]]
            sims[s] = _dot(x[j], q[i]) / nx[j]
        top = np.argsort(-sims, kind="mergesort")[:k]
        for s in range(k):
            vals[i, s] = sims[top[s]]
            idx[i, s] = cidx[order[top[s]]]
        lmin = _value(ckey[order[kk - 1]], table)
        ok[i] = kk >= n or vals[i, k - 1] > lmin + a + b * abs(lmin)

"""Compiled (numba) exact neighbour counts for KSG and Ross (2014) on CPU.

Distances are computed in float64 straight from the coordinates, so they equal the reference
distances of :mod:`infodyn.estimators.knn` (the max norm bit for bit; squared Euclidean distances
to rounding of the sum's order). Work is organised so that a float64 kernel runs near the CPU's
arithmetic peak:

* query rows in blocks of ``R``, points in tiles of ``S`` columns: a tile of coordinates is copied
  once into a small workspace and reused by all ``R`` rows of the block;
* the distances of a block are written to row buffers ``DX``/``DY`` (R, n) (the counts need them
  after the k-th neighbour distance is known) and the k nearest are kept by insertion on the fly;
* tiles and row buffers live in one workspace that starts on a 4096-byte boundary, so the
  kernel's speed does not depend on where the caller's arrays sit (an early version that read the
  caller's arrays in place ran several times slower for some of their addresses, by 4K aliasing
  between the distance loop's stores and loads).

The kernels release the GIL; :func:`ksg_counts` and :func:`ross_counts` split row blocks over
``workers`` Python threads (numba's own threading layers are avoided: some of them abort when two
threads of the caller launch parallel kernels at once, as a Dask worker may).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

#: doubles per tile row: 4096 bytes
S = 512
#: query rows per block, at most; fewer when the row buffers (2 R n float64) would exceed
#: BUFFER_BYTES. benchmarks/results/ksg_backends.md, section 3: at n = 100000 the budget's 9 rows
#: are faster than 16 at 3 + 3 dimensions and slower at 8 + 8 (more arithmetic per pair, less
#: weight on memory)
R_MAX = 16
BUFFER_BYTES = 14 << 20


@njit(nogil=True, cache=True, boundscheck=False)
def _dist_into(q, tile, out, m, squared):  # pragma: no cover - compiled
    """out[:m] = distance (squared for the Euclidean norm) from point q (d,) to the m points in
    the columns of ``tile`` (d, >= m)."""
    d = q.shape[0]
    for j in range(m):
        out[j] = 0.0
    c = 0
    while c + 4 <= d:  # four coordinates per pass over out: fewer loads and stores per pair
        v0, v1, v2, v3 = q[c], q[c + 1], q[c + 2], q[c + 3]
        a0, a1, a2, a3 = tile[c], tile[c + 1], tile[c + 2], tile[c + 3]
        if squared:
            for j in range(m):
                t0 = v0 - a0[j]
                t1 = v1 - a1[j]
                t2 = v2 - a2[j]
                t3 = v3 - a3[j]
                out[j] += (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)
        else:
            for j in range(m):
                out[j] = max(max(out[j], max(abs(v0 - a0[j]), abs(v1 - a1[j]))),
                             max(abs(v2 - a2[j]), abs(v3 - a3[j])))
        c += 4
    while c < d:
        v = q[c]
        a = tile[c]
        if squared:
            for j in range(m):
                t = v - a[j]
                out[j] += t * t
        else:
            for j in range(m):
                out[j] = max(out[j], abs(v - a[j]))
        c += 1


@njit(nogil=True, cache=True, boundscheck=False)
def _insert(bv, bi, r, kr, z, j):  # pragma: no cover - compiled
    """Inserts distance z of point j into row r's ascending list of the kr smallest."""
    q = kr - 1
    while q > 0 and bv[r, q - 1] > z:
        bv[r, q] = bv[r, q - 1]
        bi[r, q] = bi[r, q - 1]
        q -= 1
    bv[r, q] = z
    bi[r, q] = j


@njit(nogil=True, cache=True, boundscheck=False)
def _counts(x, xt, y, yt, lab, kk, variant, squared, starts, R, ws, cx, cy):  # pragma: no cover
    """Counts for the blocks of ``R`` rows beginning at ``starts``, written to cx, cy (n,).

    Two spaces (``lab`` empty): the k = kk[i] nearest in the joint distance max(d_x, d_y); variant
    1 counts d_x < eps and d_y < eps (eps the k-th joint distance), variant 2 counts d_x <= the
    largest d_x among the k neighbours (and likewise for y). Labels: the kk[i] nearest among points
    of the same label; cx = #{j != i : d_x < that distance} (cy unused). Rows with kk[i] = 0 get -1.
    """
    n = xt.shape[1]
    ddx = xt.shape[0]
    ddy = yt.shape[0]
    use_lab = lab.shape[0] > 0
    ns = ((n + S - 1) // S) * S
    xtile = ws[:ddx * S].reshape((ddx, S))
    ytile = ws[ddx * S:(ddx + ddy) * S].reshape((ddy, S))
    o = (ddx + ddy) * S
    DX = ws[o:o + R * ns].reshape((R, ns))
    DY = ws[o + R * ns:o + 2 * R * ns].reshape((R, ns))
    kmax = max(1, kk.max())
    bv = np.empty((R, kmax))
    bi = np.empty((R, kmax), np.int64)
    inf = np.inf
    for r0 in starts:
        nr = min(n, r0 + R) - r0
        bv[:] = inf
        bi[:] = -1
        for j0 in range(0, n, S):
            m = min(n, j0 + S) - j0
            xtile[:, :m] = xt[:, j0:j0 + m]
            if not use_lab:
                ytile[:, :m] = yt[:, j0:j0 + m]
            for r in range(nr):
                i = r0 + r
                kr = kk[i]
                ox = DX[r, j0:j0 + m]
                _dist_into(x[i], xtile, ox, m, squared)
                if use_lab:
                    if j0 <= i < j0 + m:
                        ox[i - j0] = inf
                    if kr == 0:
                        continue
                    worst = bv[r, kr - 1]
                    li = lab[i]
                    for j in range(m):
                        if ox[j] < worst and lab[j0 + j] == li:
                            _insert(bv, bi, r, kr, ox[j], j0 + j)
                            worst = bv[r, kr - 1]
                else:
                    oy = DY[r, j0:j0 + m]
                    _dist_into(y[i], ytile, oy, m, squared)
                    if j0 <= i < j0 + m:
                        ox[i - j0] = inf
                        oy[i - j0] = inf
                    worst = bv[r, kr - 1]
                    for j in range(m):
                        z = max(ox[j], oy[j])
                        if z < worst:
                            _insert(bv, bi, r, kr, z, j0 + j)
                            worst = bv[r, kr - 1]
        for r in range(nr):
            i = r0 + r
            kr = kk[i]
            if kr == 0:
                cx[i] = -1
                cy[i] = -1
                continue
            rx = DX[r]
            ry = DY[r]
            a = 0
            b = 0
            if use_lab:
                e = bv[r, kr - 1]
                for j in range(n):
                    a += rx[j] < e
            elif variant == 1:
                e = bv[r, kr - 1]
                for j in range(n):
                    a += rx[j] < e
                    b += ry[j] < e
            else:
                ex = 0.0
                ey = 0.0
                for q in range(kr):
                    ex = max(ex, rx[bi[r, q]])
                    ey = max(ey, ry[bi[r, q]])
                for j in range(n):
                    a += rx[j] <= ex
                    b += ry[j] <= ey
            cx[i] = a
            cy[i] = b


def _rows_per_block(n: int) -> int:
    return int(max(1, min(R_MAX, BUFFER_BYTES // (16 * max(n, 1)))))


def _workspace(n: int, ddx: int, ddy: int, R: int) -> np.ndarray:
    """A float64 buffer for :func:`_counts` whose first element sits on a 4096-byte boundary."""
    ns = -(-n // S) * S
    size = (ddx + ddy) * S + 2 * R * ns
    raw = np.empty(size + S, dtype=np.float64)
    skip = (-raw.ctypes.data % 4096) // 8
    return raw[skip:skip + size]


def _run(x, y, lab, kk, variant: int, squared: bool, workers: int):
    n = x.shape[0]
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    xt, yt = np.ascontiguousarray(x.T), np.ascontiguousarray(y.T)
    cx = np.empty(n, dtype=np.int64)
    cy = np.empty(n, dtype=np.int64)
    R = _rows_per_block(n)
    blocks = np.arange(0, n, R, dtype=np.int64)
    workers = max(1, min(int(workers), blocks.shape[0]))

    def part(w: int) -> None:
        _counts(x, xt, y, yt, lab, kk, variant, squared, np.ascontiguousarray(blocks[w::workers]), R,
                _workspace(n, xt.shape[0], yt.shape[0], R), cx, cy)

    if workers == 1:
        part(0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(part, range(workers)))
    return cx, cy


def resolve_workers(workers: int) -> int:
    """``workers`` threads; -1 (or any value < 1) means one per available core."""
    if workers is None or workers < 1:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(workers)


def ksg_counts(x: np.ndarray, y: np.ndarray, k: int, variant: int, squared: bool, workers: int = 1):
    """KSG counts (n_x, n_y), int64 (n,), for x (n, dx), y (n, dy), as defined in
    :mod:`infodyn.estimators.knn` (variant 1: strict counts within the k-th joint distance; variant
    2: non-strict counts within each space's largest distance among the k joint neighbours)."""
    empty = np.empty(0, dtype=np.int64)
    kk = np.full(x.shape[0], k, dtype=np.int64)
    return _run(x, y, empty, kk, variant, squared, resolve_workers(workers))


def ross_counts(x: np.ndarray, labels: np.ndarray, k: int, squared: bool, workers: int = 1):
    """Ross (2014) per kept point (classes with >= 2 samples, in the order of the samples):
    (k_i, N_{y_i}, m_i) as int64 arrays, m_i = 1 + #{j != i : d_x(i, j) < r_i}."""
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.astype(np.int64)
    size = sizes[inverse]
    kk = np.minimum(k, size - 1).astype(np.int64)
    y = np.empty((x.shape[0], 0))
    m, _ = _run(x, y, inverse, kk, 1, squared, resolve_workers(workers))
    keep = kk > 0
    return kk[keep], size[keep], m[keep] + 1

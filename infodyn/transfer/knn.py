"""k-nearest-neighbour accuracy of frozen features (cosine similarity).

Weighted vote of DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", after Wu et al. 2018): features are L2-normalised, the k training rows with
the highest cosine similarity s_j to a test row vote for their class with weight
exp(s_j / T); the class with the largest summed weight is predicted. With ``weighted=False``
each neighbour has one vote (plain majority; ties go to the smallest class label, as in
scikit-learn's ``KNeighborsClassifier``). Higher is better.

The (test x train) similarity matrix is never held whole: test rows are processed in blocks.
Neighbours are found exactly (as a float64 computation would find them, ranking ties aside) but
fast, by a certified two-stage search: candidates come from a low-precision product (bfloat16
on CPUs that multiply it natively, else float32; float32/TF32 on CUDA), their similarities are
recomputed in float64 and re-ranked, and a row is accepted only when its k-th float64
similarity exceeds the lowest candidate's low-precision similarity by more than a rigorous
bound on the rounding error of that product (on CPU with bfloat16, from the measured input
rounding errors ||q - bf16(q)|| and max_j ||x_j - bf16(x_j)|| by Cauchy-Schwarz; otherwise the
worst case); other rows go to the next precision, and finally to a plain float64 search.
Candidates whose upper bound lies below the k-th largest lower bound are not re-ranked. On CPU
the first bfloat16 stage (selection, pruning, re-ranking, certificate) runs as one compiled numba
pass per row (:mod:`infodyn.transfer._knn_compiled`); later stages, CUDA, and machines without
numba use the torch operators.
Float64 similarities are computed as (x_j . q) / ||x_j|| with q normalised, so no normalised
float64 copy of the training set is made. Memory: a low-precision copy of the training features
plus one reused block of low-precision similarities (blocks of about 64 MiB of float64 work).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ._checks import resolve_device, check_train_test

_BUDGET = 1 << 28  # bytes of candidate re-ranking work per step (about 256 MiB)
_BLOCK_BYTES = 1 << 26  # float64 bytes per (test block x n_train) block: small enough to reuse
_U32 = 2.0 ** -24  # float32 unit roundoff (accumulation)


def _levels(device: torch.device):
    """(dtype, growing numbers of extra candidates, input unit roundoff) of each low-precision stage, fastest first."""
    levels = []
    # bfloat16 only on CPUs that multiply it natively (oneDNN accumulates in float32); CUDA may
    # reduce bfloat16 products in reduced precision, which the bound below does not cover
    if device.type == "cpu" and _cpu_has_bf16():
        levels.append((torch.bfloat16, (16, 128), 2.0 ** -8))
    # on CUDA a float32 product may run in TF32 (10-bit mantissa): bound it as such
    levels.append((torch.float32, (8, 64), 2.0 ** -11 if device.type == "cuda" else _U32))
    return levels


def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older or unusual builds: float32 only
        return False


def _error_bound(u: float, d: int):
    """Worst-case |low-precision dot - exact dot| for unit vectors in R^d, as (a, b): a + b |computed|.

    Rounding both inputs gives (2u + u^2) sum |q_i x_i| <= 2u + u^2; rounding the output gives
    u |exact| <= u (1 + u) |computed| + u^2 ...; float32 accumulation over d terms adds
    d * 2^-24 * (1 + 3u). A 10% safety factor covers the second-order terms.
    """
    a = 1.1 * ((2 * u + u * u) * (1 + u) + d * _U32 * (1 + 3 * u))
    b = 1.1 * u * (1 + 3 * u)
    return a, b


def _low_copy(x64: torch.Tensor, nx: torch.Tensor, dt, rows: int, measure: bool):
    """Normalised rows x_j / ||x_j|| rounded to ``dt``, built through one reused float64 block.

    Returns (copy (n, d) of ``dt``, max_j ||x_j / ||x_j|| - copy_j|| when ``measure`` else None).
    """
    rows = max(1, min(rows, x64.shape[0]))
    worst = 0.0
    out = torch.empty(x64.shape, dtype=dt, device=x64.device)
    tmp = torch.empty(rows, x64.shape[1], dtype=torch.float64, device=x64.device)
    for r in range(0, x64.shape[0], rows):
        t = tmp[:min(rows, x64.shape[0] - r)]
        torch.div(x64[r:r + rows], nx[r:r + rows, None], out=t)
        out[r:r + rows] = t
        if measure:
            worst = max(worst, float(t.sub_(out[r:r + rows].to(torch.float64)).norm(dim=1).max()))
    return out, (worst if measure else None)


def _measured(dt, device: torch.device) -> bool:
    # the measured bound needs the inputs rounded by us; a CUDA float32 product may round
    # them again internally (TF32), so there only the worst-case bound holds
    return dt == torch.bfloat16 and device.type == "cpu"


def _measured_bound(q64: torch.Tensor, ql: torch.Tensor, ex: float, u: float, d: int) -> torch.Tensor:
    """Per-row term a of the error bound from the actual input rounding errors, (rows,) float64.

    With q~ = q + e_q and x~ = x + e_x (unit q, x): q~.x~ - q.x = e_q.x + q.e_x + e_q.e_x, so by
    Cauchy-Schwarz |q~.x~ - q.x| <= ||e_q|| + ||e_x|| + ||e_q|| ||e_x||, never more than the
    worst case 2u + u^2 of :func:`_error_bound` and typically half of it. Accumulation over d
    terms in float32 adds d 2^-24 (1 + u)^2; the 10% safety factor is kept.
    """
    eq = (q64 - ql.to(torch.float64)).norm(dim=1)
    return 1.1 * ((eq + ex + eq * ex) * (1 + u) + d * _U32 * (1 + 3 * u))


@dataclass
class KNNResult:
    """Outcome of :func:`knn_accuracy`: ``accuracy`` in [0, 1] and the predicted labels."""

    accuracy: float
    k: int
    temperature: float
    weighted: bool
    n_train: int
    n_test: int
    predictions: np.ndarray = field(repr=False)
    seconds: float = 0.0
    higher_is_better: bool = True

    def __float__(self) -> float:
        return float(self.accuracy)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-30)  # zero rows stay zero


def knn_neighbours(
    xtr64: torch.Tensor, xte64: torch.Tensor, k: int, block_size: Optional[int] = None,
    stats: Optional[dict] = None,
):
    """Exact top-k cosine neighbours: (similarities (n_test, k) float64, indices (n_test, k)).

    ``xtr64`` (n_train, d) and ``xte64`` (n_test, d) are float64 tensors on one device. Rows
    are sorted by decreasing similarity. ``stats``, when given, receives the number of test
    rows settled at each stage, keyed ("bfloat16", extra), ("float32", extra) or "float64".
    """
    xtr64 = xtr64.contiguous()  # the compiled stage reads its rows in place
    n_train, d = xtr64.shape
    # train rows are never normalised as a whole float64 copy (a fresh 8 n_train d-byte array
    # costs more in page faults than the arithmetic): similarities are (x_j . q) / ||x_j||
    nx = xtr64.norm(dim=1).clamp_min(1e-30)  # zero rows stay zero
    levels = [(dt, extras, u, _error_bound(u, d)) for dt, extras, u in _levels(xtr64.device)]
    low_copies = {}  # low-precision training features, made when a stage first needs them
    kk_max = min(n_train, k + max([e for _, extras, _, _ in levels for e in extras], default=0))
    if block_size is None:  # the float64 fallback holds (block, n_train) similarities
        block_size = max(1, _BLOCK_BYTES // (8 * n_train))
    block_size = min(block_size, xte64.shape[0])
    # candidates are re-ranked a few rows at a time through one reused gather buffer
    sub = max(1, min(block_size, 8, (_BUDGET // 8) // (8 * kk_max * d)))
    buf = torch.empty(sub * kk_max, d, dtype=torch.float64, device=xtr64.device)

    def rerank(qp, cand, need=None):
        """float64 similarities of the candidates; with ``need`` (a list, one length per row) only
        the first need[i] candidates of row i, the rest -inf."""
        sims = torch.full(cand.shape, -torch.inf, dtype=torch.float64, device=qp.device)
        for r in range(0, cand.shape[0], sub):
            c = cand[r:r + sub]
            if need is not None:
                ms = need[r:r + sub]
                c = c[:, :max(ms)]
            g = torch.index_select(xtr64, 0, c.reshape(-1), out=buf[:c.numel()]).view(c.shape[0], -1, d)
            if need is None:
                sims[r:r + sub] = torch.einsum("bd,bkd->bk", qp[r:r + sub], g)
            else:  # on CPU one matrix-vector product per row beats batched forms (n = 1) by 3-5x
                for i in range(c.shape[0]):
                    torch.mv(g[i, :ms[i]], qp[r + i], out=sims[r + i, :ms[i]])
        return sims.div_(nx[cand])

    kernels = _compiled_kernels() if xtr64.device.type == "cpu" else None
    vals_out, idx_out = [], []
    for s in range(0, xte64.shape[0], block_size):
        q64 = _normalise(xte64[s:s + block_size])
        b = q64.shape[0]
        vals = torch.empty(b, k, dtype=torch.float64, device=q64.device)
        idx = torch.empty(b, k, dtype=torch.long, device=q64.device)
        pending = torch.arange(b, device=q64.device)
        for dt, extras, u, delta in levels:
            if pending.numel() == 0:
                break
            if dt not in low_copies:
                xl, ex = _low_copy(xtr64, nx, dt, block_size, _measured(dt, xtr64.device))
                # one reused output block: fresh memory for every block would page-fault
                out = torch.empty(block_size, n_train, dtype=dt, device=xl.device)
                low_copies[dt] = (xl, ex, out)
            xl, ex, out = low_copies[dt]
            whole = pending.numel() == b  # then no indexed copies of the block
            qpend = q64 if whole else q64[pending]
            ql = qpend.to(dt)
            low_all = torch.mm(ql, xl.T, out=out[:ql.shape[0]])
            a_rows = delta[0] if ex is None else _measured_bound(qpend, ql, ex, u, d)
            todo = torch.arange(pending.numel(), device=q64.device)  # rows of low_all
            for extra in extras:
                if todo.numel() == 0:
                    break
                kk = min(n_train, k + extra)
                rows = pending[todo]
                qp = qpend if todo.numel() == pending.numel() else qpend[todo]
                fused = kernels is not None and dt == torch.bfloat16 and todo.numel() == low_all.shape[0]
                if fused:  # the first pass over a bfloat16 block on CPU
                    top_v, top_i, ok = _settle_compiled(kernels, low_all, qp, xtr64, nx, a_rows, delta[1], k, kk)
                else:
                    top_v, top_i, ok = _settle_torch(low_all, todo, qp, a_rows, ex, delta, rerank, k, kk, n_train)
                if stats is not None:
                    key = (str(dt).replace("torch.", ""), extra)
                    stats[key] = stats.get(key, 0) + int(ok.sum())
                vals[rows[ok]] = top_v[ok]
                idx[rows[ok]] = top_i[ok]
                todo = todo[~ok]
            pending = pending[todo]
        if pending.numel():
            top = ((q64[pending] @ xtr64.T) / nx).topk(k, dim=1, largest=True, sorted=True)
            vals[pending], idx[pending] = top.values, top.indices
            if stats is not None:
                stats["float64"] = stats.get("float64", 0) + int(pending.numel())
        vals_out.append(vals)
        idx_out.append(idx)
    return torch.cat(vals_out), torch.cat(idx_out)


def _settle_torch(low_all, todo, qp, a_rows, ex, delta, rerank, k: int, kk: int, n_train: int):
    """One stage of the certified search in torch: (values (rows, k) float64, indices, ok (rows,))
    for the rows ``todo`` of the low-precision block ``low_all``."""
    # the first pass covers every row: no copy of the (rows, n_train) block
    src = low_all if todo.numel() == low_all.shape[0] else low_all[todo]
    low, cand = src.topk(kk, dim=1, largest=True, sorted=True)
    a_r = a_rows if ex is None else a_rows[todo, None]
    need = None
    if not cand.is_cuda:
        # true similarities lie in [l - e, l + e], e = a + b |l|, both ends increasing
        # in l: a candidate whose upper end is below the k-th largest lower end is
        # not among the k nearest and is not re-ranked (a prefix of the sorted row)
        lf = low.to(torch.float64)
        err = a_r + delta[1] * lf.abs()
        lower_k = (lf - err)[:, k - 1:k]
        need = ((lf + err) >= lower_k).sum(dim=1).tolist()
    top = rerank(qp, cand, need).topk(k, dim=1, largest=True, sorted=True)
    if kk == n_train:
        ok = torch.ones(qp.shape[0], dtype=torch.bool, device=qp.device)
    else:  # every point left out has true similarity <= l + a + b |l|, l = min(low)
        lmin = low[:, -1:].to(torch.float64)
        ok = (top.values[:, -1:] > lmin + a_r + delta[1] * lmin.abs())[:, 0]
    return top.values, cand.gather(1, top.indices), ok


def _compiled_kernels():
    """The numba module of the first search stage on CPU, or None when it cannot be loaded
    (see :mod:`infodyn._numba`)."""
    from infodyn._numba import kernels

    return kernels("infodyn.transfer._knn_compiled")


def _settle_compiled(kernels, low_all, qp, xtr64, nx, a_rows, b: float, k: int, kk: int):
    """The same stage as :func:`_settle_torch` for a whole bfloat16 block on CPU, by
    :func:`infodyn.transfer._knn_compiled.settle`, rows split over torch's thread count."""
    from concurrent.futures import ThreadPoolExecutor

    table = kernels.bf16_table()
    rows = low_all.shape[0]
    vals = np.empty((rows, k))
    idx = np.empty((rows, k), dtype=np.int64)
    ok = np.empty(rows, dtype=np.bool_)
    lo, q, x, n_, a = (t.numpy() for t in (low_all.view(torch.int16), qp, xtr64, nx, a_rows))

    def part(sl):
        kernels.settle(lo[sl], table, q[sl], x, n_, a[sl], float(b), k, kk, vals[sl], idx[sl], ok[sl])

    workers = max(1, min(torch.get_num_threads(), rows // 64))
    step = -(-rows // workers)
    parts = [slice(s, s + step) for s in range(0, rows, step)]
    with torch.profiler.record_function("infodyn::knn_settle_compiled"):  # visible to profilers
        if workers == 1:
            part(parts[0])
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(part, parts))
    return torch.from_numpy(vals), torch.from_numpy(idx), torch.from_numpy(ok)


def knn_predict_codes(
    xtr64: torch.Tensor, codes: torch.Tensor, xte64: torch.Tensor, n_classes: int, *,
    k: int, temperature: float, weighted: bool, block_size: Optional[int] = None,
) -> torch.Tensor:
    """Predicted class codes (n_test,) for float64 features already on one device."""
    sims, idx = knn_neighbours(xtr64, xte64, k, block_size)
    if weighted:  # shifting by the row maximum leaves the vote unchanged and cannot overflow
        weights = torch.exp((sims - sims[:, :1]) / temperature)
    else:
        weights = torch.ones_like(sims)
    votes = torch.zeros(idx.shape[0], n_classes, dtype=torch.float64, device=idx.device)
    votes.scatter_add_(1, codes[idx], weights)
    return votes.argmax(1)  # first maximum = smallest class code on ties


def knn_accuracy(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
    k: int = 20,
    temperature: float = 0.07,
    weighted: bool = True,
    device: Any = "auto",
    block_size: Optional[int] = None,
) -> KNNResult:
    """k-NN classification accuracy of frozen features under cosine similarity.

    Args:
        x_train: (n_train, d) features; numpy array or torch tensor. y_train: (n_train,) labels.
        x_test: (n_test, d) features. y_test: (n_test,) labels (a label unseen in training
            simply counts as an error).
        k: neighbours (DINO uses 20); must not exceed n_train.
        temperature: T in the vote weight exp(similarity / T) (DINO: 0.07).
        weighted: True for DINO's weighted vote, False for a plain majority vote.
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", or a torch.device.
        block_size: test rows per block; the default keeps a block's pairwise work near 256 MiB.

    Returns:
        :class:`KNNResult` with ``accuracy`` in [0, 1] (higher is better) and ``predictions``.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    xtr, codes, classes, xte, yte = check_train_test(x_train, y_train, x_test, y_test, dev)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= xtr.shape[0]):
        raise ValueError(f"k must be an integer in [1, n_train={xtr.shape[0]}] (x_train shape {tuple(xtr.shape)}), got {k!r}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
    if block_size is not None and int(block_size) < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}")
    pred_codes = knn_predict_codes(
        xtr, torch.from_numpy(codes).to(dev), xte, classes.shape[0], k=int(k),
        temperature=float(temperature), weighted=weighted,
        block_size=None if block_size is None else int(block_size),
    )
    pred = classes[pred_codes.cpu().numpy()]
    acc = float(np.mean(pred == yte))
    return KNNResult(acc, int(k), float(temperature), bool(weighted), int(xtr.shape[0]),
                     int(xte.shape[0]), pred, time.perf_counter() - t0)


knn_accuracy.higher_is_better = True

"""Blocked pairwise squared distances in torch, so that no n x m matrix is held whole.

    >>> import numpy as np
    >>> from infodyn.estimators._blocks import pairwise_sq_dists_blocks
    >>> a = np.arange(6.0).reshape(3, 2)
    >>> [tuple(d.shape) for _, _, d in pairwise_sq_dists_blocks(a, block_rows=2)]
    [(2, 3), (1, 3)]

Used by the kernel (KDE), Renyi and k-NN estimators. :func:`log_kernel_row_sums` gives per-row
log sums of Gaussian kernels (all rows, and the row's own group) for the KDE and Renyi estimators.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .base import resolve_device

#: default memory budget of one distance block, in MiB
DEFAULT_BLOCK_MB = 128


def to_tensor(a: Any, device=None, dtype=None):
    """A float64 (default) torch tensor on ``device`` from a numpy array or tensor (no copy when possible)."""
    import torch

    dtype = dtype or torch.float64
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=dtype)
    return torch.as_tensor(a, dtype=dtype, device=device)


def block_rows_for(n_cols: int, memory_mb: float = DEFAULT_BLOCK_MB, itemsize: int = 8,
                   copies: int = 3) -> int:
    """Rows per block so that ``copies`` blocks of (rows, n_cols) items fit in ``memory_mb`` MiB."""
    per_row = max(1, n_cols) * itemsize * copies
    return max(1, int(memory_mb * 2**20 // per_row))


def pairwise_sq_dists_blocks(
    a: Any,
    b: Any = None,
    block_rows: Optional[int] = None,
    device: Any = "auto",
    *,
    memory_mb: float = DEFAULT_BLOCK_MB,
    dtype=None,
) -> Iterator[Tuple[int, int, Any]]:
    """Yields ``(start, stop, D)`` with ``D[i, j] = ||a[start + i] - b[j]||^2``.

    Args:
        a: (n, d) array or tensor.
        b: (m, d) array or tensor; None means ``a`` itself, in which case the diagonal of each
            block is set to exactly 0.
        block_rows: rows of ``a`` per block; default sized so a block takes about ``memory_mb`` MiB.
        device: "auto" (CUDA when present, else CPU), or a torch device.
        memory_mb: memory budget per block in MiB when ``block_rows`` is None.
        dtype: torch dtype of the computation (default float64).

    Yields:
        (start, stop, D) with D a (stop - start, m) tensor on ``device``, clamped at 0.
        Both inputs are centred on a's mean first (distances do not change; rounding does).
    """
    import torch

    dev = resolve_device(device)
    ta = to_tensor(a, dev, dtype)
    if ta.ndim != 2:
        raise ValueError(f"pairwise distances need 2-D (n, d) arrays, got shape {tuple(ta.shape)}")
    same = b is None
    tb = ta if same else to_tensor(b, dev, dtype)
    if tb.ndim != 2 or tb.shape[1] != ta.shape[1]:
        raise ValueError(f"a and b must be (n, d) and (m, d): got {tuple(ta.shape)} and {tuple(tb.shape)}")
    mu = ta.mean(0, keepdim=True)
    ta = ta - mu
    tb = ta if same else tb - mu
    nb = tb.square().sum(1)
    n = ta.shape[0]
    rows = block_rows or block_rows_for(tb.shape[0], memory_mb, ta.element_size())
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        blk = ta[start:stop]
        d = torch.addmm(nb.unsqueeze(0), blk, tb.T, alpha=-2.0)
        d.add_(blk.square().sum(1, keepdim=True)).clamp_(min=0.0)
        if same:
            idx = torch.arange(stop - start, device=dev)
            d[idx, idx + start] = 0.0
        yield start, stop, d


def log_kernel_row_sums(
    parts: Sequence[Any],
    combos: Sequence[Tuple[int, ...]],
    groups: Optional[np.ndarray] = None,
    device: Any = "auto",
    *,
    memory_mb: float = DEFAULT_BLOCK_MB,
) -> Tuple[List[np.ndarray], List[Optional[np.ndarray]]]:
    """Per-row log sums of Gaussian kernels, over all rows and over the row's own group.

    For each combo c (a tuple of part indices) and each row i::

        all[c][i]   = log sum_j exp(-sum_{p in c} ||parts[p][i] - parts[p][j]||^2)
        group[c][i] = the same sum over j with groups[j] == groups[i]

    Scale each part by 1/sqrt(s) beforehand to get exp(-D/s). The j = i term is exactly 1, so
    every sum is >= 1: no max-shift is needed and underflow of far terms is harmless.

    Args:
        parts: arrays (n, d_p) sharing n.
        combos: e.g. [(0,)] or [(0,), (1,), (0, 1)].
        groups: (n,) int codes or None. Rows are processed sorted by group, so the group sum is
            over a contiguous column slice (no mask).
        device: "auto" (CUDA when present) or a torch device.
        memory_mb: budget for the blocks (about len(parts) + 2 blocks of (rows, n) float64).

    Returns:
        (all, group): lists over combos of (n,) float64 numpy arrays; group entries are None
        without groups.
    """
    import torch

    dev = resolve_device(device)
    n = np.asarray(parts[0]).shape[0] if not hasattr(parts[0], "shape") else parts[0].shape[0]
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        order = np.argsort(groups, kind="stable")
        sorted_groups = groups[order]
        cuts = np.flatnonzero(np.diff(sorted_groups)) + 1
        bounds = list(zip(np.r_[0, cuts], np.r_[cuts, n]))
    else:
        order = None
        bounds = [(0, n)]
    tens, norms = [], []
    for p in parts:
        t = to_tensor(p, dev)
        if t.ndim == 1:
            t = t[:, None]
        if order is not None:
            t = t[torch.as_tensor(order, device=dev)]
        t = t - t.mean(0, keepdim=True)
        tens.append(t)
        norms.append(t.square().sum(1))
    rows = block_rows_for(n, memory_mb, 8, copies=len(parts) + 2)
    out_all = [torch.empty(n, dtype=torch.float64, device=dev) for _ in combos]
    out_grp = [torch.empty(n, dtype=torch.float64, device=dev) if groups is not None else None for _ in combos]
    for gs, ge in bounds:
        gs, ge = int(gs), int(ge)
        for s in range(gs, ge, rows):
            e = min(ge, s + rows)
            idx = torch.arange(e - s, device=dev)
            ks = []
            for t, nb in zip(tens, norms):
                blk = t[s:e]
                d = torch.addmm(nb.unsqueeze(0), blk, t.T, alpha=-2.0)
                d.add_(blk.square().sum(1, keepdim=True)).clamp_(min=0.0)
                d[idx, idx + s] = 0.0
                ks.append(d.neg_().exp_())  # the kernel block, in place
            for c, combo in enumerate(combos):
                k = ks[combo[0]]
                if len(combo) > 1:
                    k = k.clone()
                    for p in combo[1:]:
                        k.mul_(ks[p])
                out_all[c][s:e] = k.sum(1).log_()
                if groups is not None:
                    out_grp[c][s:e] = k[:, gs:ge].sum(1).log_()
    inv = None
    if order is not None:
        inv = np.empty(n, dtype=np.int64)
        inv[order] = np.arange(n)

    def back(a):
        if a is None:
            return None
        a = a.cpu().numpy()
        return a if inv is None else a[inv]

    return [back(a) for a in out_all], [back(a) for a in out_grp]

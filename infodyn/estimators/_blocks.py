"""Blocked pairwise squared distances in torch, so that no n x m matrix is held whole.

    >>> import numpy as np
    >>> from infodyn.estimators._blocks import pairwise_sq_dists_blocks
    >>> a = np.arange(6.0).reshape(3, 2)
    >>> [tuple(d.shape) for _, _, d in pairwise_sq_dists_blocks(a, block_rows=2)]
    [(2, 3), (1, 3)]

Used by the kernel (KDE), Renyi and k-NN estimators.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

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

"""Memory banks and the other-class negative sampler used by Contrastive Temporal Coding.

A :class:`MemoryBank` holds one L2-normalised embedding per training sample (row ``i`` belongs
to the sample with index ``i``) and updates it as a moving average of that sample's embeddings:

    M_i <- normalise(m * M_i + (1 - m) * z_i)                      (m = momentum, in [0, 1))

Cost: ``num_samples x dim`` float32 values, i.e. 4 * N * dim bytes per bank (N = 50 000,
dim = 128: 25.6 MB). A bank lives on the model's device by default; pass ``device="cpu"`` to
keep a large one in host memory (only the rows a step needs then travel to the model's device).

:class:`NegativeSampler` draws, for each anchor of class c, negatives among the samples whose
recorded label differs from c (never the anchor's own class, hence never the anchor itself).
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def last_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """Positions (into ``idx``) of the last occurrence of each distinct value, in value order.

    Used so that a batch holding the same sample twice writes that sample's row once, from its
    last embedding, deterministically (``index_copy_`` with repeated indices is undefined).
    """
    n = idx.numel()
    order = torch.arange(n, device=idx.device)
    # Sort by (value, position); the last element of each run of equal values is the last one.
    key = idx.to(torch.int64) * (n + 1) + order
    sorted_key, perm = torch.sort(key)
    vals = sorted_key // (n + 1)
    is_last = torch.ones(n, dtype=torch.bool, device=idx.device)
    is_last[:-1] = vals[1:] != vals[:-1]
    return perm[is_last]


class MemoryBank:
    """``num_samples x dim`` table of unit vectors, one per training sample.

    Args:
        num_samples: N, rows (training-set size).
        dim: embedding size.
        momentum: m of the update rule in the module docstring, in [0, 1).
        device: where the table lives.
        generator: CPU ``torch.Generator`` for the random unit-vector initialisation.
    """

    def __init__(self, num_samples: int, dim: int, momentum: float, device="cpu",
                 generator: Optional[torch.Generator] = None):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        w = torch.randn(num_samples, dim, generator=generator)
        self.weight = F.normalize(w, dim=1).to(device)

    @property
    def num_samples(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def to(self, device) -> "MemoryBank":
        self.weight = self.weight.to(device)
        return self

    def rows(self, idx: torch.Tensor, device=None) -> torch.Tensor:
        """Rows ``idx`` (any shape of int64 indices) -> ``idx.shape + (dim,)`` on ``device``."""
        out = self.weight[idx.to(self.device).reshape(-1)]
        out = out.reshape(*idx.shape, self.dim)
        return out if device is None else out.to(device)

    @torch.no_grad()
    def update(self, idx: torch.Tensor, z: torch.Tensor) -> None:
        """Moving-average update of rows ``idx`` (B,) with embeddings ``z`` (B, dim), detached.

        A sample that appears more than once in the batch is updated once, from its last row.
        """
        keep = last_occurrence(idx)
        i = idx[keep].to(self.device)
        z = z.detach()[keep].to(self.device, self.weight.dtype)
        new = self.momentum * self.weight[i] + (1.0 - self.momentum) * z
        self.weight.index_copy_(0, i, F.normalize(new, dim=1))

    @torch.no_grad()
    def fill(self, idx: torch.Tensor, z: torch.Tensor) -> None:
        """Overwrites rows ``idx`` with ``normalise(z)`` (no moving average)."""
        keep = last_occurrence(idx)
        i = idx[keep].to(self.device)
        z = z.detach()[keep].to(self.device, self.weight.dtype)
        self.weight.index_copy_(0, i, F.normalize(z, dim=1))


class NegativeSampler:
    """Draws negatives of other classes from the samples whose labels have been recorded.

    Labels are recorded per sample index (``record``); an index whose label is not yet known
    (-1) is never drawn. For an anchor of class c the pool is every recorded sample of another
    class (size P_c). With ``P_c >= K`` it draws K indices uniformly **with replacement** (as the
    reference code's ``np.random.choice``); with ``P_c < K`` it takes the whole pool, each index
    once, and warns once per sampler.

    Args:
        labels: (N,) int64 tensor, -1 for unknown; kept on the CPU.
        num_negatives: K.
    """

    def __init__(self, labels: torch.Tensor, num_negatives: int):
        self.labels = labels.to("cpu", torch.int64).clone()
        self.num_negatives = int(num_negatives)
        self.warned = False
        self._pools = None

    def record(self, idx: torch.Tensor, y: torch.Tensor) -> None:
        """Stores labels ``y`` of samples ``idx``. A sample seen before with another label is an
        inconsistent index -> ValueError."""
        idx = idx.to("cpu", torch.int64)
        y = y.to("cpu", torch.int64)
        old = self.labels[idx]
        clash = (old >= 0) & (old != y)
        if bool(clash.any()):
            j = int(torch.nonzero(clash)[0])
            raise ValueError(
                f"sample index {int(idx[j])} was seen before with label {int(old[j])} and now "
                f"with label {int(y[j])}: idx must be each sample's fixed index in the training set")
        new = old < 0
        if bool(new.any()):
            self.labels[idx[new]] = y[new]
            self._pools = None

    def pools(self):
        """{class: 1-D int64 tensor of indices of every recorded sample of another class}."""
        if self._pools is None:
            known = torch.nonzero(self.labels >= 0).reshape(-1)
            classes = torch.unique(self.labels[known]).tolist()
            self._pools = {c: known[self.labels[known] != c] for c in classes}
        return self._pools

    def sample(self, y: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Negatives for anchors of classes ``y`` (B,).

        Returns:
            idx: (B, K') int64 sample indices on the CPU, K' = min(K, max_c P_c) over the batch's
                classes; padded positions hold 0.
            mask: (B, K') bool, True where ``idx`` is a real negative.
        """
        y = y.to("cpu", torch.int64)
        pools = self.pools()
        classes = torch.unique(y).tolist()
        K = self.num_negatives
        sizes = {}
        for c in classes:
            pool = pools.get(c)
            if pool is None:  # class not recorded yet: every recorded sample is of another class
                pool = torch.nonzero(self.labels >= 0).reshape(-1)
                pools[c] = pool
            if pool.numel() == 0:
                raise ValueError(f"no recorded sample of a class other than {c} to draw negatives from")
            sizes[c] = pool.numel()
        width = min(K, max(sizes.values()))
        short = [c for c in classes if sizes[c] < K]
        if short and not self.warned:
            self.warned = True
            warnings.warn(
                f"num_negatives={K} but only {min(sizes[c] for c in short)} samples of other classes "
                f"exist for class {min(short, key=lambda c: sizes[c])}: using all other-class samples "
                f"as negatives (fewer than num_negatives)", RuntimeWarning, stacklevel=3)
        idx = torch.zeros(y.numel(), width, dtype=torch.int64)
        mask = torch.zeros(y.numel(), width, dtype=torch.bool)
        for c in classes:
            rows = torch.nonzero(y == c).reshape(-1)
            pool = pools[c]
            if sizes[c] >= K:
                pick = torch.randint(pool.numel(), (rows.numel(), K), generator=generator)
                idx[rows] = pool[pick]
                mask[rows] = True
            else:
                idx[rows, :sizes[c]] = pool
                mask[rows, :sizes[c]] = True
        return idx, mask

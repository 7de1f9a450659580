"""Gradient measures of a checkpoint: the gradient norm, and how much of the gradient's variance
across minibatches lies in one direction (the "principal component of the gradient" of Liu,
Wang, Jordan & Long 2019, who find it suppressed when a network starts from pretrained weights).

The gradients are with respect to every trainable parameter, flattened; one gradient is taken
per batch (so the batches are the minibatches), and the full-data gradient is their
batch-size-weighted mean. Units: loss per parameter unit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ._common import (as_batch_source, cpu_threads, batch_size, checked_loss, flat, grads, model_device, no_batches,
                      to_device, trainable, warn_if_training)


@dataclass(frozen=True)
class GradientStats:
    """Per-batch gradients summarised.

    Attributes:
        norm: ||g|| of the full-data gradient g = sum_b w_b g_b / sum_b w_b (w_b = batch size).
        batch_norms: (B,) norms of the minibatch gradients g_b.
        gram: (B, B) Gram matrix g_b . g_c of the minibatch gradients (float64).
        weights: (B,) batch sizes.
        n: samples; dim: trainable parameters; seconds.
    """

    norm: float
    batch_norms: np.ndarray
    gram: np.ndarray
    weights: np.ndarray
    n: int
    dim: int
    seconds: float


@dataclass(frozen=True)
class PrincipalShare:
    """Share of the minibatch gradients' variance along their first principal direction.

    ``value`` in [1/(B-1), 1] for centred gradients (1: every minibatch gradient differs from
    the mean along one line); ``ci`` a 95 % jackknife interval over batches (or None);
    ``top`` the first principal variance and ``total`` the total variance (loss^2 per
    parameter unit^2); ``batches`` B; ``method``, ``params``, ``n``, ``seconds``.
    """

    value: float
    ci: Optional[Tuple[float, float]]
    top: float
    total: float
    batches: int
    method: str
    params: Dict[str, Any]
    n: int
    seconds: float

    def __float__(self) -> float:
        return float(self.value)


def gradient_stats(model: nn.Module, loss_fn: Callable, batches: Any, *, device: Any = None,
                   num_threads: Any = "auto") -> GradientStats:
    """One gradient per batch: their norms, Gram matrix and the full-data gradient norm.

    Memory: the (B, P) minibatch gradients are held on the model's device (B batches, P parameters).
    ``device``/``num_threads`` as :func:`infodyn.landscape.hessian_top_eigenvalue`.
    """
    with cpu_threads(model, num_threads):
        return _gradient_stats(model, loss_fn, batches, device)


def _gradient_stats(model, loss_fn, batches, device) -> GradientStats:
    warn_if_training(model, "gradient measures")
    t0 = time.perf_counter()
    source = as_batch_source(batches)
    dev = model_device(model, device)
    _, params = trainable(model)
    rows, ws = [], []
    for i, batch in enumerate(source()):
        batch = to_device(batch, dev)
        ws.append(batch_size(batch))
        loss = checked_loss(model, loss_fn, batch, i)
        rows.append(flat(grads(loss, params, create_graph=False, index=i)).detach().double())
    if not rows:
        raise no_batches("gradient measures")
    g = torch.stack(rows)
    w = torch.tensor(ws, dtype=torch.float64, device=g.device)
    mean = (w[:, None] * g).sum(0) / w.sum()
    gram = (g @ g.T).cpu().numpy()
    return GradientStats(norm=float(mean.norm()), batch_norms=np.sqrt(np.clip(np.diag(gram), 0, None)),
                         gram=gram, weights=w.cpu().numpy(), n=int(sum(ws)), dim=int(g.shape[1]),
                         seconds=time.perf_counter() - t0)


def gradient_norm(model: nn.Module, loss_fn: Callable, batches: Any, *, device: Any = None,
                  num_threads: Any = "auto") -> float:
    """||grad L|| of the full-data loss (batch-size-weighted mean over ``batches``)."""
    return gradient_stats(model, loss_fn, batches, device=device, num_threads=num_threads).norm


def _share(gram: np.ndarray, center: bool) -> Tuple[float, float, float]:
    """(top/total, top, total) from a Gram matrix of B vectors; centring by the plain mean."""
    b = gram.shape[0]
    if center:
        h = np.eye(b) - 1.0 / b
        gram = h @ gram @ h
    ev = np.linalg.eigvalsh((gram + gram.T) / 2)
    total = float(np.clip(ev, 0, None).sum())
    top = float(max(ev[-1], 0.0))
    return (top / total if total > 0 else float("nan")), top / max(b - 1, 1), total / max(b - 1, 1)


def principal_share_from_gram(gram: np.ndarray, *, center: bool = True, interval: bool = True,
                              level: float = 0.95) -> Tuple[float, Optional[Tuple[float, float]], float, float]:
    """(share, ci, top, total) from the (B, B) Gram matrix of B minibatch gradients.

    The principal variances are the eigenvalues of the (double-centred) Gram matrix over B - 1,
    so the P x P covariance is never formed. The interval is a normal one from the delete-one
    jackknife over batches (needs B >= 4), clipped to [0, 1]; a bootstrap would resample
    batches with repeats, which lowers the rank and biases the share upwards. None when
    ``interval`` is False or B < 4.
    """
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square (B, B) matrix, got shape {gram.shape}")
    b = gram.shape[0]
    if b < 3:
        raise ValueError(f"the principal share needs at least 3 minibatch gradients, got {b} batches "
                         "(two centred gradients always lie on one line)")
    share, top, total = _share(gram, center)
    if not np.isfinite(share):
        raise ValueError(f"all {b} minibatch gradients are identical (zero variance): the principal share is undefined")
    ci = None
    if interval and b >= 4:
        from scipy import stats

        keep = np.ones(b, dtype=bool)
        jack = []
        for i in range(b):
            keep[i] = False
            jack.append(_share(gram[np.ix_(keep, keep)], center)[0])
            keep[i] = True
        jack = np.asarray(jack)
        if np.all(np.isfinite(jack)):
            se = math.sqrt((b - 1) / b * float(np.sum((jack - jack.mean()) ** 2)))
            z = float(stats.norm.ppf((1 + level) / 2))
            ci = (max(0.0, share - z * se), min(1.0, share + z * se))
    return share, ci, top, total


def gradient_principal_share(model: nn.Module, loss_fn: Callable, batches: Any, *, center: bool = True,
                             interval: bool = True, device: Any = None,
                             num_threads: Any = "auto") -> PrincipalShare:
    """Share of the variance of the minibatch gradients in their first principal direction.

    Args:
        model, loss_fn, batches: as :func:`infodyn.landscape.hessian_top_eigenvalue`; each batch
            gives one gradient, so pass at least 3 minibatches (e.g. 16 of 64 samples).
        center: subtract the mean gradient first (variance, the default); False gives the share
            of the second moment, where the mean gradient itself counts.
        interval: add a 95 % jackknife interval over batches (``principal_share_from_gram``).
    """
    stats = gradient_stats(model, loss_fn, batches, device=device, num_threads=num_threads)
    share, ci, top, total = principal_share_from_gram(stats.gram, center=center, interval=interval)
    return PrincipalShare(value=share, ci=ci, top=top, total=total, batches=stats.gram.shape[0],
                          method="gradient_pca", params={"center": center, "interval": "jackknife" if interval else None,
                                                         "batches": stats.gram.shape[0], "dim": stats.dim},
                          n=stats.n, seconds=stats.seconds)

"""The loss along the straight line between two checkpoints, and the barrier on it.

theta(alpha) = (1 - alpha) theta_a + alpha theta_b for every floating-point tensor of the state
dicts (batch-norm running statistics included, so an eval-mode network is interpolated as a
whole); integer tensors (``num_batches_tracked``) are taken from ``state_a``. The barrier is the
largest excess of the loss over the chord between the end points (Frankle et al. 2020, linear
mode connectivity): max_alpha L(theta(alpha)) - ((1 - alpha) L(theta_a) + alpha L(theta_b)).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._common import (as_batch_source, batch_size, checked_loss, cpu_threads, model_device, no_batches, to_device,
                      warn_if_training)
from .weights import State, _as_state


def _interpolate(a, b, alpha: float):
    out = {}
    for k, ta in a.items():
        tb = b[k]
        if ta.is_floating_point():
            out[k] = ta + float(alpha) * (tb.to(ta.dtype) - ta)
        else:
            out[k] = ta
    return out


def mean_loss(model: nn.Module, loss_fn: Callable, batches: Any, device: Any = None) -> float:
    """The batch-size-weighted mean of ``loss_fn(model, batch)`` under ``torch.no_grad()``."""
    source = as_batch_source(batches)
    dev = model_device(model, device)
    total, w = 0.0, 0
    with torch.no_grad():
        for i, batch in enumerate(source()):
            batch = to_device(batch, dev)
            n = batch_size(batch)
            total += n * float(checked_loss(model, loss_fn, batch, i, need_grad=False))
            w += n
    if w == 0:
        raise no_batches("loss")
    return total / w


def loss_path(model: nn.Module, state_a: State, state_b: State, loss_fn: Callable, batches: Any,
              points: int = 11, *, alphas: Optional[Sequence[float]] = None, device: Any = None,
              num_threads: Any = "auto") -> pd.DataFrame:
    """Loss at ``points`` evenly spaced alphas in [0, 1] between two checkpoints.

    The model is not changed: a copy of it is loaded with each interpolated state (so ``model``
    only supplies the architecture and the mode; put it in eval mode).

    Args:
        model: a module of the checkpoints' architecture.
        state_a, state_b: state dicts (or modules) with the same tensors and shapes.
        loss_fn, batches: as :func:`infodyn.landscape.hessian_top_eigenvalue`.
        points: number of alphas (>= 2), ends included; ``alphas`` overrides them (values outside
            [0, 1] extrapolate along the line; 0 and 1 must be among them for the chord).
        device: None = the model's device, or "auto"/a device for the copy.
        num_threads: CPU threads ("auto": 1 for small models), restored after.

    Returns:
        DataFrame with ``alpha``, ``loss``, ``chord`` (the straight line between the end losses)
        and ``excess`` (loss - chord); ``df.attrs["barrier"]`` is :func:`barrier_height`.
    """
    if alphas is None:
        if not isinstance(points, int) or points < 2:
            raise ValueError(f"points must be an integer >= 2, got {points!r}")
        alphas = np.linspace(0.0, 1.0, points)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if alphas.size < 2 or not np.all(np.isfinite(alphas)):
        raise ValueError(f"alphas must hold at least two finite values, got {alphas.tolist()}")
    if not (np.isclose(alphas, 0.0).any() and np.isclose(alphas, 1.0).any()):
        raise ValueError("alphas must include 0 and 1 (the two checkpoints) for the chord and the barrier")
    warn_if_training(model, "loss_path")
    a, b = _as_state(state_a, "state_a"), _as_state(state_b, "state_b")
    if set(a) != set(b):
        raise ValueError(f"the two checkpoints hold different tensors: only in state_a {sorted(set(a) - set(b))[:5]}, "
                         f"only in state_b {sorted(set(b) - set(a))[:5]}")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ValueError(f"tensor {k!r} has shape {tuple(a[k].shape)} in state_a but {tuple(b[k].shape)} in state_b")
    work = copy.deepcopy(model)
    dev = model_device(work, device)
    a = {k: v.detach().to(dev) for k, v in a.items()}
    b = {k: v.detach().to(dev) for k, v in b.items()}
    losses = []
    with cpu_threads(work, num_threads):
        for alpha in alphas:
            try:
                work.load_state_dict(_interpolate(a, b, alpha), strict=True)
            except RuntimeError as exc:
                raise ValueError(f"the checkpoints do not fit the model {type(model).__name__}: {exc}") from exc
            losses.append(mean_loss(work, loss_fn, batches))
    losses = np.asarray(losses)
    la = losses[int(np.argmin(np.abs(alphas)))]
    lb = losses[int(np.argmin(np.abs(alphas - 1.0)))]
    chord = (1 - alphas) * la + alphas * lb
    df = pd.DataFrame({"alpha": alphas, "loss": losses, "chord": chord, "excess": losses - chord})
    df.attrs["barrier"] = barrier_height(df)
    return df


def barrier_height(path: pd.DataFrame) -> float:
    """max over alpha in [0, 1] of loss - chord (0 when the path never rises above the chord)."""
    if not {"alpha", "loss"} <= set(path.columns):
        raise ValueError(f"path must have columns alpha and loss (from loss_path), got {list(path.columns)}")
    alpha = path["alpha"].to_numpy(float)
    loss = path["loss"].to_numpy(float)
    i0, i1 = np.flatnonzero(np.isclose(alpha, 0.0)), np.flatnonzero(np.isclose(alpha, 1.0))
    if not len(i0) or not len(i1):
        raise ValueError("path must include alpha 0 and alpha 1")
    chord = (1 - alpha) * loss[i0[0]] + alpha * loss[i1[0]]
    inside = (alpha >= -1e-12) & (alpha <= 1 + 1e-12)
    return float(max(0.0, np.max((loss - chord)[inside])))

"""Curvature of the loss from Hessian-vector products (never the Hessian itself).

* :func:`hessian_top_eigenvalue` -- the largest Hessian eigenvalue ("sharpness") by the locally
  optimal block-1 LOBPCG iteration (``method="lobpcg"``, the default: power iteration whose
  step is chosen by Rayleigh-Ritz on span{x, residual, previous step}; one product per step, a
  conjugate-gradient-like rate) or by plain power iteration (``method="power"``, which needs
  hundreds of products when the top two eigenvalues are within a few per cent, common on
  trained networks).
* :func:`hessian_trace` -- Hutchinson's estimator of the trace, with its standard error.

The loss is the batch-size-weighted mean of ``loss_fn(model, batch)`` over ``batches`` (see
:mod:`infodyn.landscape._common`); ``batches`` is a list of batches, any re-iterable such as a
``DataLoader``, or a callable returning a fresh iterator, because every product passes over all
of them. One Hessian-vector product costs one forward pass and a double backward per batch
(memory of one batch's graph at a time, plus a few copies of the parameter vector).
Eigenvalues and the trace are in units of loss per squared parameter unit.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from ._common import (as_batch_source, batch_size, checked_loss, flat, grads, model_device, no_batches,
                      cpu_threads, seeded_normal, seeded_rademacher, to_device, trainable, unflat, warn_if_training)


class HessianOperator:
    """v -> H v for the loss over all batches; v and H v are flat vectors over the trainable
    parameters (in ``model.named_parameters()`` order, length :attr:`dim`).

    Args:
        model: the network; its parameters that require gradients span the Hessian.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``.
        batches: list / re-iterable / callable returning an iterator (module doc).
        device: None = where the model is; otherwise the model is moved there ("auto": CUDA when present).
        retain_graph: keep each batch's gradient graph between products, so a product costs only
            the double backward (no forward pass, no first backward). It holds every batch's
            graph at once: ``"auto"`` retains only when there is a single batch (then it costs
            no extra memory); True for several batches when memory allows.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, batches: Any, device: Any = None,
                 retain_graph: Any = "auto"):
        if retain_graph not in (True, False, "auto"):
            raise ValueError(f"retain_graph must be True, False or 'auto', got {retain_graph!r}")
        self.model, self.loss_fn = model, loss_fn
        self.source = as_batch_source(batches)
        self.device = model_device(model, device)
        self.names, self.params = trainable(model)
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.retain = retain_graph
        self.n_hvp = 0
        self.n_samples = 0
        self._graphs: Optional[List[Tuple[int, List[torch.Tensor], List[int]]]] = None

    def _first_order(self):
        """Yields (batch size, gradient tensors with a graph, their parameter indices) per batch."""
        if self._graphs is not None:
            yield from self._graphs
            return
        kept, count = [], 0
        for i, batch in enumerate(self.source()):
            batch = to_device(batch, self.device)
            w = batch_size(batch)
            loss = checked_loss(self.model, self.loss_fn, batch, i)
            g = grads(loss, self.params, create_graph=True, index=i)
            idx = [j for j, gj in enumerate(g) if gj.requires_grad]  # others: linear in the loss, H = 0
            item = (w, [g[j] for j in idx], idx)
            count += 1
            if self.retain is True or (self.retain == "auto" and count == 1):
                kept.append(item)
            elif kept:
                kept = []  # "auto" with several batches: hold one graph at a time
            yield item
        if count == 0:
            raise no_batches("Hessian-vector product")
        if self.retain is True or (self.retain == "auto" and count == 1):
            self._graphs = kept

    def gradient(self) -> torch.Tensor:
        """The full-data gradient (flat); with a retained graph the products after it reuse this pass."""
        acc = [torch.zeros_like(p) for p in self.params]
        total = 0
        for w, g, idx in self._first_order():
            total += w
            for gi, j in zip(g, idx):
                acc[j].add_(gi.detach(), alpha=float(w))
        return flat(acc) / total

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if v.shape != (self.dim,):
            raise ValueError(f"vector has shape {tuple(v.shape)}, expected ({self.dim},) (one entry per trainable parameter)")
        vs = unflat(v.to(device=self.device, dtype=self.dtype), self.params)
        acc = [torch.zeros_like(p) for p in self.params]
        total = 0
        keep = self.retain is not False
        for w, g, idx in self._first_order():
            total += w
            if not g:
                continue
            hv = torch.autograd.grad(g, self.params, grad_outputs=[vs[j] for j in idx], retain_graph=keep,
                                     allow_unused=True)
            for a, h in zip(acc, hv):
                if h is not None:
                    a.add_(h, alpha=float(w))
        out = flat(acc) / total
        if not bool(torch.isfinite(out).all()):
            raise ValueError("a Hessian-vector product is not finite (the loss's second derivatives overflow "
                             f"at these weights; {self.dim} parameters)")
        self.n_hvp += 1
        self.n_samples = total
        return out


@dataclass(frozen=True)
class EigenResult:
    """The top Hessian eigenvalue.

    Attributes:
        value: the Ritz value (Rayleigh quotient v.Hv of the final unit vector v), loss units.
        residual: ||H v - value v|| (same units): some eigenvalue of H lies within
            ``value +- residual`` (for a symmetric matrix); also the stopping certificate.
        iters: iterations taken; n_hvp: Hessian-vector products spent (the cost unit).
        converged: whether the relative change of ``value`` fell below ``tol`` within ``iters``.
        vector: the final unit vector (flat, on the model's device).
        method, params, n (samples in the loss), seconds.
    """

    value: float
    residual: float
    iters: int
    n_hvp: int
    converged: bool
    method: str
    params: Dict[str, Any]
    n: int
    seconds: float
    vector: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)

    @property
    def ci(self) -> Tuple[float, float]:
        """(value - residual, value + residual): holds an eigenvalue of H."""
        return (self.value - self.residual, self.value + self.residual)

    def __float__(self) -> float:
        return float(self.value)


@dataclass(frozen=True)
class TraceResult:
    """Hutchinson's trace estimate: ``value`` (mean of z.Hz), ``stderr`` (standard error of that
    mean over the ``samples`` probe vectors), ``n_hvp``, ``method``, ``params``, ``n``, ``seconds``."""

    value: float
    stderr: float
    samples: int
    n_hvp: int
    method: str
    params: Dict[str, Any]
    n: int
    seconds: float

    @property
    def ci(self) -> Tuple[float, float]:
        """A normal 95 % interval, value +- 1.96 stderr."""
        return (self.value - 1.96 * self.stderr, self.value + 1.96 * self.stderr)

    def __float__(self) -> float:
        return float(self.value)


def _check_counts(iters: int, tol: float) -> None:
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


class _Stop:
    """Stopping rule for a relative tolerance ``tol`` on the eigenvalue; both must hold:

    * the relative residual ||Hx - lam x|| / |lam| is at most sqrt(tol) / 10 (1e-3 for the default
      1e-4). For a Ritz value the error is at most residual^2 / gap, so this alone guarantees
      ``tol`` whenever the top eigenvalue is separated from the next by 1 % of its size; above all
      it refuses the plateaus where the estimate stalls near the second eigenvalue while the first
      one is still growing in (seen on MLP checkpoints with lambda2/lambda1 = 0.97, where a
      change-only test stopped 3 % low);
    * the estimated remaining error is at most ``tol`` relative: after changes d_{k-1}, d_k the
      rate is about q = d_k / d_{k-1} and the remaining error d_k q / (1 - q) (Aitken).

    A residual at working precision (1e-3 tol) stops at once.
    """

    def __init__(self, tol: float):
        self.tol, self.rtol, self.prev, self.delta = tol, math.sqrt(tol) / 10, None, None

    def __call__(self, lam: float, res: float, hnorm: float) -> bool:
        if hnorm == 0.0 or res <= 1e-3 * self.tol * abs(lam):
            return True
        done = False
        if self.prev is not None:
            d = abs(lam - self.prev)
            bound = self.tol * abs(lam)
            if d <= bound and res <= self.rtol * abs(lam):
                if d == 0.0:
                    done = True
                elif self.delta is not None and self.delta > 0:
                    q = d / self.delta
                    done = q < 1 and d * q / (1 - q) <= bound
            self.delta = d
        self.prev = lam
        return done


def _power(op: HessianOperator, x: torch.Tensor, iters: int, tol: float):
    stop, converged = _Stop(tol), False
    for k in range(1, iters + 1):
        hx = op(x)
        lam = _dot(x, hx)
        res = float((hx.double() - lam * x.double()).norm())
        nh = float(hx.double().norm())
        if stop(lam, res, nh):
            converged = True
            break
        x = hx / nh
    return lam, res, k, converged, x


def _orthonormal(vecs: List[torch.Tensor], hvecs: List[torch.Tensor]):
    """Gram-Schmidt (twice) on ``vecs``, applying the same combinations to their H-images;
    near-dependent vectors are dropped."""
    qs, hqs = [], []
    for v, hv in zip(vecs, hvecs):
        v, hv = v.double().clone(), hv.double().clone()
        n0 = float(v.norm())
        for _ in range(2):
            for q, hq in zip(qs, hqs):
                c = float(torch.dot(q, v))
                v -= c * q
                hv -= c * hq
        n = float(v.norm())
        if n0 == 0.0 or n <= 1e-10 * n0:
            continue
        qs.append(v / n)
        hqs.append(hv / n)
    return qs, hqs


def _lobpcg(op: HessianOperator, x: torch.Tensor, iters: int, tol: float):
    """Block-1 LOBPCG for the algebraically largest eigenvalue: Rayleigh-Ritz on span{x, r, p}
    with H p kept by linearity, so each step costs one product (H r)."""
    x = x.double()
    hx = op(x.to(op.dtype)).double()
    p = hp = None
    lam = float(torch.dot(x, hx))
    stop, converged, k = _Stop(tol), False, 1
    for k in range(1, iters + 1):
        r = hx - lam * x
        res = float(r.norm())
        if stop(lam, res, float(hx.norm())):
            converged = True
            break
        if k == iters:
            break
        # orthogonalise r against x before the product (better conditioned Rayleigh-Ritz)
        r = r - torch.dot(x, r) * x
        r = r / r.norm()
        hr = op(r.to(op.dtype)).double()
        vecs, hvecs = [x, r], [hx, hr]
        if p is not None:
            vecs.append(p)
            hvecs.append(hp)
        qs, hqs = _orthonormal(vecs, hvecs)
        q, hq = torch.stack(qs, 1), torch.stack(hqs, 1)
        t = q.T @ hq
        t = (t + t.T) / 2
        evals, evecs = torch.linalg.eigh(t)
        c = evecs[:, -1]
        x_new, hx_new = q @ c, hq @ c
        # the new search direction: the part of the step outside the old x
        p = q[:, 1:] @ c[1:] if q.shape[1] > 1 else None
        hp = hq[:, 1:] @ c[1:] if q.shape[1] > 1 else None
        nx = float(x_new.norm())
        x, hx = x_new / nx, hx_new / nx
        lam = float(torch.dot(x, hx))
    return lam, res, k, converged, x.to(op.dtype)


def hessian_top_eigenvalue(model: nn.Module, loss_fn: Callable, batches: Any, iters: int = 100,
                           tol: float = 1e-4, seed: int = 0, *, method: str = "lobpcg",
                           device: Any = None, num_threads: Any = "auto",
                           retain_graph: Any = "auto", start: str = "gradient") -> EigenResult:
    """The largest eigenvalue of the Hessian of the loss with respect to the trainable parameters.

    Args:
        model: the network (use ``model.eval()``: dropout in train mode makes every product a
            different random function, and a warning says so).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor`` (e.g. mean cross-entropy of ``model(x)``).
        batches: a list of batches, a re-iterable (``DataLoader``) or a callable returning a
            fresh iterator; the loss is their batch-size-weighted mean.
        iters: at most this many iterations (one Hessian-vector product each).
        tol: relative tolerance on the eigenvalue: stop when the last change and its
            extrapolation at the observed rate are at most ``tol`` relative and the relative
            residual is at most sqrt(tol)/10 (see ``_Stop``).
        seed: seeds the random part of the start vector (drawn on the CPU: the same on every device).
        method: ``"lobpcg"`` (default: power iteration accelerated by Rayleigh-Ritz on
            span{x, residual, previous step}; the algebraically largest eigenvalue, at a
            conjugate-gradient rate) or ``"power"`` (plain power iteration: the eigenvalue largest
            in *magnitude*, which is the top one near a minimum; rate lambda2/lambda1, so
            hundreds of products when the top two are close -- it then warns).
        device: None = the model's device; else the model is moved there ("auto": CUDA if present).
        num_threads: CPU threads while computing ("auto": 1 for small models, see
            :class:`infodyn.landscape._common.cpu_threads`); restored after.
        retain_graph: reuse the batches' gradient graphs between products (see
            :class:`HessianOperator`; "auto": only for a single batch).
        start: ``"gradient"`` (default): the unit gradient plus 0.3 times a seeded random unit
            vector -- the gradient lies mostly in the top Hessian eigenspace (Gur-Ari et al.
            2018), which saved 20-50 % of the products on MLP checkpoints; one gradient pass,
            free when the graph is retained. ``"random"``: the seeded random vector alone.

    Returns:
        :class:`EigenResult` with ``.value``, ``.residual``, ``.iters``, ``.n_hvp``, ``.converged``.
        A ``RuntimeWarning`` is raised when it did not converge within ``iters``.
    """
    _check_counts(iters, tol)
    if method not in ("power", "lobpcg"):
        raise ValueError(f"method must be 'power' or 'lobpcg', got {method!r}")
    if start not in ("gradient", "random"):
        raise ValueError(f"start must be 'gradient' or 'random', got {start!r}")
    warn_if_training(model, "hessian_top_eigenvalue")
    t0 = time.perf_counter()
    with cpu_threads(model, num_threads):
        op = HessianOperator(model, loss_fn, batches, device, retain_graph)
        x = seeded_normal(op.dim, seed, op.device, op.dtype)
        x = x / x.norm()
        if start == "gradient":
            g = op.gradient()
            gn = float(g.norm())
            if gn > 0 and math.isfinite(gn):
                x = g / gn + 0.3 * x
                x = x / x.norm()
        run = _power if method == "power" else _lobpcg
        lam, res, k, converged, vec = run(op, x, iters, tol)
    if not converged:
        warnings.warn(f"hessian_top_eigenvalue ({method}) did not converge to tol={tol} in {iters} iterations "
                      f"(value {lam:.6g}, residual {res:.3g}); raise iters or use method='lobpcg'",
                      RuntimeWarning, stacklevel=2)
    return EigenResult(value=lam, residual=res, iters=k, n_hvp=op.n_hvp, converged=converged, method=method,
                       params={"iters": iters, "tol": tol, "seed": seed, "method": method, "start": start,
                               "dim": op.dim},
                       n=op.n_samples, seconds=time.perf_counter() - t0, vector=vec)


def hessian_trace(model: nn.Module, loss_fn: Callable, batches: Any, samples: int = 64, seed: int = 0, *,
                  distribution: str = "rademacher", device: Any = None, num_threads: Any = "auto",
                  retain_graph: Any = "auto") -> TraceResult:
    """Hutchinson's estimate of tr(H): the mean of z.Hz over ``samples`` random probe vectors z
    with E[z z^T] = I (Rademacher +-1 by default, which has the least variance; or ``"gaussian"``).

    The standard error is the sample standard deviation of z.Hz over sqrt(samples); for Rademacher
    probes Var(z.Hz) = 2 sum_{i != j} H_ij^2, so a diagonal Hessian gives the exact trace.

    Args: as :func:`hessian_top_eigenvalue` (``device``, ``num_threads``, ``retain_graph``);
        ``samples`` >= 2 probe vectors (one product each),
        drawn on the CPU from ``seed``.
    """
    if not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2 (the standard error needs two), got {samples!r}")
    if distribution not in ("rademacher", "gaussian"):
        raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")
    warn_if_training(model, "hessian_trace")
    t0 = time.perf_counter()
    with cpu_threads(model, num_threads):
        op = HessianOperator(model, loss_fn, batches, device, retain_graph)
        gen = torch.Generator().manual_seed(int(seed))
        vals = []
        for _ in range(samples):
            if distribution == "rademacher":
                z = seeded_rademacher(op.dim, seed, op.device, op.dtype, generator=gen)
            else:
                z = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.device, op.dtype)
            vals.append(_dot(z, op(z)))
    v = torch.tensor(vals, dtype=torch.float64)
    return TraceResult(value=float(v.mean()), stderr=float(v.std(unbiased=True) / math.sqrt(samples)),
                       samples=samples, n_hvp=op.n_hvp, method="hutchinson",
                       params={"samples": samples, "seed": seed, "distribution": distribution, "dim": op.dim},
                       n=op.n_samples, seconds=time.perf_counter() - t0)


def hessian_vector_product(model: nn.Module, loss_fn: Callable, batches: Any, vector: torch.Tensor,
                           device: Any = None, num_threads: Any = "auto") -> torch.Tensor:
    """H v for one flat vector ``v`` of length (number of trainable parameters,)."""
    with cpu_threads(model, num_threads):
        return HessianOperator(model, loss_fn, batches, device)(vector)

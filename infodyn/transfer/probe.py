"""Linear probe: multinomial logistic regression on frozen, standardised features.

Protocol (Kornblith, Shlens and Le 2019, "Do Better ImageNet Models Transfer Better?";
Radford et al. 2021, CLIP): standardise the features with statistics fitted on the training
rows only; carve a stratified, seeded validation split from the training data; fit one model
per L2 strength of a log-spaced grid with full-batch L-BFGS (strong-Wolfe line search), going
from the strongest to the weakest penalty, each fit warm-started from the previous solution;
choose the strength with the best validation accuracy; refit on all training data at that
strength and report the test accuracy. Higher is better.

Objective (per fit, n training rows, W (d, C), bias b (C,)):

    mean_i [ -log softmax(x_i W + b)_{y_i} ] + (l2 / 2) * ||W||_F^2      (the bias is not penalised)

This is scikit-learn's ``LogisticRegression`` objective ``C * sum_i logloss_i + 1/2 ||W||^2``
divided by ``C * n``, so ``l2 = 1 / (C * n)``. Because the loss is a mean, a strength chosen
on the validation split keeps its meaning when the model is refit on all training rows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ._checks import resolve_device, check_train_test

DEFAULT_L2_GRID = tuple(np.logspace(-6, 1, 10).tolist())


@dataclass
class ProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        accuracy: test accuracy in [0, 1] of the model refit on all training rows.
        l2: the chosen L2 strength (per-sample scale, see the module docstring).
        sweep: one row per grid value: ``l2``, ``C_sklearn`` (the equivalent scikit-learn C on
            the sweep's training rows), ``val_accuracy``, ``val_loss`` (mean cross-entropy,
            nats), ``iterations`` (L-BFGS iterations), ``seconds``. With a single strength
            there is no validation split: one row, on all training rows, with NaN validation.
        n_train, n_test: rows used. n_classes: classes seen in training.
        predictions: predicted test labels (original label values), shape (n_test,).
        train_accuracy: accuracy of the final model on its own training rows.
        seconds: wall-clock time of the whole protocol.
        coef, intercept: the final model, (d, n_classes) and (n_classes,), acting on features
            standardised with ``mean`` and ``scale`` (each (d,), fitted on all training rows).
        classes: (n_classes,) the label value of each column.
    """

    accuracy: float
    l2: float
    sweep: pd.DataFrame
    n_train: int
    n_test: int
    n_classes: int
    predictions: np.ndarray = field(repr=False)
    train_accuracy: float = float("nan")
    seconds: float = 0.0
    coef: Optional[np.ndarray] = field(default=None, repr=False)
    intercept: Optional[np.ndarray] = field(default=None, repr=False)
    mean: Optional[np.ndarray] = field(default=None, repr=False)
    scale: Optional[np.ndarray] = field(default=None, repr=False)
    classes: Optional[np.ndarray] = field(default=None, repr=False)
    higher_is_better: bool = True

    def __float__(self) -> float:
        return float(self.accuracy)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities (n, n_classes) of the final model for raw (unstandardised) features."""
        xa = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
        if xa.ndim != 2 or xa.shape[1] != self.coef.shape[0]:
            raise ValueError(f"x must have shape (n, {self.coef.shape[0]}), got {xa.shape}")
        z = ((xa - self.mean) / self.scale) @ self.coef + self.intercept
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)


def stratified_split(codes: np.ndarray, val_fraction: float, seed: int):
    """Seeded stratified split of row indices into (train_idx, val_idx), both sorted.

    Each class gives ``round(val_fraction * n_c)`` rows to validation but keeps at least one
    for training; a class with one row stays entirely in training.
    """
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(int(codes.max()) + 1):
        idx = np.flatnonzero(codes == c)
        idx = idx[rng.permutation(idx.shape[0])]
        n_val = min(int(round(val_fraction * idx.shape[0])), idx.shape[0] - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _moments(x_fit: torch.Tensor, dim: int = 0):
    """Mean and population std of ``x_fit`` along ``dim`` (kept as a size-1 dim); a std of 0 -> 1."""
    mean = x_fit.mean(dim, keepdim=True)
    # two passes by hand: torch's column std is several times slower on CPU
    # (benchmarks/results/transfer_speed.md, "Building blocks")
    std = (x_fit - mean).square_().mean(dim, keepdim=True).sqrt_()
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant columns: centre only
    return mean, std


def _standardise(x_fit: torch.Tensor, *others: torch.Tensor):
    mean, std = _moments(x_fit)
    return [(a - mean) / std for a in (x_fit, *others)]


class _Softmax:
    """Full-batch multinomial logistic regression fitted with torch's L-BFGS (analytic gradient).

    The weights are stored transposed, (C, d): both products then run as x @ W^T and
    P^T @ x, which on CPU are 2-5x faster than x @ W and x^T @ P for a few classes.
    """

    def __init__(self, d: int, c: int, device, dtype):
        self.wt = torch.zeros(c, d, device=device, dtype=dtype)
        self.b = torch.zeros(c, device=device, dtype=dtype)
        self._opt = None  # kept between fits on the same rows (the sweep)
        self._rows = None
        self._l2 = None

    def _shift_history(self, dl: float) -> None:
        """Re-expresses the L-BFGS memory for a penalty changed by ``dl``.

        The penalty's gradient is linear in W, so every stored gradient difference y_i moves
        by exactly dl * s_i (W part) and the last gradient by dl * W at that point: the
        curvature learnt at the previous strength stays exact for the new one, and the next
        fit of the sweep starts with a good inverse-Hessian model instead of a gradient step.
        """
        st = self._opt.state[self._opt._params[0]]
        if st.get("n_iter", 0) == 0 or st.get("prev_flat_grad") is None or st.get("d") is None:
            return
        nw = self.wt.numel()
        w_prev = self.wt.reshape(-1) - st["d"][:nw] * st["t"]
        st["prev_flat_grad"][:nw].add_(w_prev, alpha=dl)
        for i, (y, s) in enumerate(zip(st["old_dirs"], st["old_stps"])):
            y[:nw].add_(s[:nw], alpha=dl)
            ys = float(y.dot(s))
            if ys <= 1e-10:  # cannot happen for a convex penalty change; start afresh if it does
                self._opt = None
                return
            st["ro"][i] = 1.0 / ys

    def fit(self, x: torch.Tensor, y: torch.Tensor, l2: float, max_iter: int, tol: float) -> int:
        n = x.shape[0]
        onehot = torch.nn.functional.one_hot(y, self.b.shape[0]).to(x.dtype)
        wt, b = self.wt, self.b
        if self._opt is not None and self._rows is x:
            self._shift_history(l2 - self._l2)
        else:
            self._opt = None
        if self._opt is None:
            self._opt = torch.optim.LBFGS(
                [wt, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                tolerance_grad=tol, tolerance_change=1e-12,
            )
        self._rows, self._l2 = x, l2
        opt = self._opt
        before = int(opt.state[opt._params[0]].get("n_iter", 0))

        def closure():
            logits = torch.addmm(b, x, wt.T)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            loss = (lse[:, 0] - (logits * onehot).sum(1)).mean() + 0.5 * l2 * (wt * wt).sum()
            p = torch.exp(logits - lse).sub_(onehot).div_(n)  # d loss / d logits
            wt.grad = torch.mm(p.T, x).add_(wt, alpha=l2)
            b.grad = p.sum(0)
            return loss

        with torch.no_grad():
            opt.step(closure)
        return int(opt.state[opt._params[0]].get("n_iter", 0)) - before

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b, x, self.wt.T)

    def copy(self) -> "_Softmax":
        out = _Softmax(self.wt.shape[1], self.wt.shape[0], self.wt.device, self.wt.dtype)
        out.wt.copy_(self.wt)
        out.b.copy_(self.b)
        return out


def _accuracy_loss(model: _Softmax, x: torch.Tensor, y: torch.Tensor):
    logits = model.logits(x)
    acc = float((logits.argmax(1) == y).double().mean())
    loss = float(torch.nn.functional.cross_entropy(logits.double(), y))
    return acc, loss


def linear_probe(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, *,
    l2_grid: Optional[Sequence[float]] = None,
    val_fraction: float = 0.2,
    max_iter: int = 500,
    tol: float = 1e-4,
    dtype: str = "float32",
    device: Any = "auto",
    seed: int = 0,
) -> ProbeResult:
    """Linear-probe accuracy of frozen features (multinomial logistic regression, L-BFGS).

    Args:
        x_train: (n_train, d) features; numpy array or torch tensor (kept on its device's copy).
        y_train: (n_train,) class labels (any sortable values).
        x_test: (n_test, d) features. y_test: (n_test,) labels, each seen in ``y_train``.
        l2_grid: L2 strengths to sweep (per-sample scale: ``l2 = 1 / (C n)`` in scikit-learn
            terms). Default: 10 values log-spaced from 1e-6 to 10. A single value skips the
            validation split and fits that strength directly.
        val_fraction: share of each training class held out to choose the strength.
        max_iter: L-BFGS iteration cap per fit.
        tol: stop when the largest absolute gradient entry is below this (scikit-learn's
            lbfgs criterion on the same, mean-scaled objective; its default is 1e-4 too).
        dtype: "float32" (default; fast, also on GPUs) or "float64".
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda", or a torch.device.
        seed: seeds the validation split (the fits themselves are deterministic).

    Returns:
        :class:`ProbeResult` (``accuracy`` in [0, 1], higher is better).

    Raises:
        ValueError: NaN/inf features, mismatched rows or feature widths, a single class,
            no more samples than classes, test labels unseen in training, a bad grid.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    xtr, codes, classes, xte, yte_raw = check_train_test(x_train, y_train, x_test, y_test, dev, tdtype)
    pos = np.searchsorted(classes, yte_raw)
    pos = np.clip(pos, 0, classes.shape[0] - 1)
    unseen = classes[pos] != yte_raw
    if unseen.any():
        raise ValueError(
            f"y_test (shape {yte_raw.shape}) has labels never seen in y_train: "
            f"{np.unique(yte_raw[unseen])[:10].tolist()}"
        )
    grid = DEFAULT_L2_GRID if l2_grid is None else tuple(float(v) for v in np.atleast_1d(l2_grid))
    if len(grid) == 0 or not all(np.isfinite(v) and v >= 0 for v in grid):
        raise ValueError(f"l2_grid must hold finite non-negative strengths, got {list(grid)}")
    if len(grid) > 1 and not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")

    n_classes = classes.shape[0]
    y_all = torch.from_numpy(codes).to(dev)
    y_te = torch.from_numpy(pos.astype(np.int64)).to(dev)
    sweep_rows = []
    start: Optional[_Softmax] = None
    if len(grid) == 1:
        best_l2 = grid[0]
    else:
        tr_idx, va_idx = stratified_split(codes, val_fraction, seed)
        if va_idx.shape[0] == 0:
            raise ValueError(
                f"too few training rows to carve a validation split (y_train has {codes.shape[0]} "
                f"samples in {n_classes} classes, val_fraction={val_fraction}); pass a single "
                f"l2_grid value to skip the sweep"
            )
        tr_i = torch.from_numpy(tr_idx).to(dev)
        va_i = torch.from_numpy(va_idx).to(dev)
        xs_tr, xs_va = _standardise(xtr[tr_i], xtr[va_i])
        ys_tr, ys_va = y_all[tr_i], y_all[va_i]
        model = _Softmax(xtr.shape[1], n_classes, dev, tdtype)
        fitted = {}
        for l2 in sorted(grid, reverse=True):  # strongest penalty first: each warm start is close
            ts = time.perf_counter()
            iters = model.fit(xs_tr, ys_tr, l2, max_iter, tol)
            acc, loss = _accuracy_loss(model, xs_va, ys_va)
            fitted[l2] = model.copy()
            sweep_rows.append({
                "l2": l2, "C_sklearn": (1.0 / (l2 * tr_idx.shape[0])) if l2 > 0 else float("inf"),
                "val_accuracy": acc, "val_loss": loss, "iterations": iters,
                "seconds": time.perf_counter() - ts,
            })
        # best validation accuracy; ties go to the stronger penalty (the simpler model)
        best = max(sweep_rows, key=lambda r: (r["val_accuracy"], r["l2"]))
        best_l2 = best["l2"]
        start = fitted[best_l2]

    mean, std = _moments(xtr)
    xs_all, xs_te = (xtr - mean) / std, (xte - mean) / std
    final = start if start is not None else _Softmax(xtr.shape[1], n_classes, dev, tdtype)
    ts = time.perf_counter()
    final_iters = final.fit(xs_all, y_all, best_l2, max_iter, tol)
    if len(grid) == 1:  # no sweep: one row for the single fit, without validation numbers
        sweep_rows.append({
            "l2": best_l2, "C_sklearn": (1.0 / (best_l2 * xtr.shape[0])) if best_l2 > 0 else float("inf"),
            "val_accuracy": float("nan"), "val_loss": float("nan"), "iterations": final_iters,
            "seconds": time.perf_counter() - ts,
        })
    test_acc, _ = _accuracy_loss(final, xs_te, y_te)
    train_acc, _ = _accuracy_loss(final, xs_all, y_all)
    pred = classes[final.logits(xs_te).argmax(1).cpu().numpy()]
    sweep = pd.DataFrame(sweep_rows, columns=["l2", "C_sklearn", "val_accuracy", "val_loss",
                                              "iterations", "seconds"])
    sweep = sweep.sort_values("l2").reset_index(drop=True)
    return ProbeResult(
        accuracy=test_acc, l2=float(best_l2), sweep=sweep, n_train=int(xtr.shape[0]),
        n_test=int(xte.shape[0]), n_classes=int(n_classes), predictions=pred,
        train_accuracy=train_acc, seconds=time.perf_counter() - t0,
        coef=final.wt.T.double().cpu().numpy(), intercept=final.b.double().cpu().numpy(),
        mean=mean[0].double().cpu().numpy(), scale=std[0].double().cpu().numpy(), classes=classes,
    )


linear_probe.higher_is_better = True

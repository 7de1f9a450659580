"""Few-shot probe: a fixed-strength ridge classifier fitted on k labelled examples per class.

Protocol (the "linear few-shot evaluation" of frozen features, e.g. Kolesnikov et al. 2020, BiT;
Dosovitskiy et al. 2021, ViT, which also use a closed-form regularised least-squares classifier):
for each of ``draws`` seeded draws, take ``shots`` training rows of every class (without
replacement), standardise the features with the mean and standard deviation of those
``shots * C`` rows only (a column that is constant on them is centred, not scaled), fit a ridge
classifier on one-vs-rest targets in {-1, +1} with an unpenalised intercept, and score it on the
*whole* test split. The result is the mean test accuracy over the draws. Higher is better.

Objective per draw (n = shots * C support rows, standardised features X (n, d), targets Y (n, C)):

    (1 / n) * ||Y - X W - 1 b^T||_F^2 + l2 * ||W||_F^2

which is scikit-learn's ``RidgeClassifier(alpha=l2 * n)`` on the same standardised rows (its
objective is the sum, not the mean). Solved in closed form: the intercept is the mean target after
centring, and W = X^T (X X^T + n l2 I)^-1 Y when n <= d (the dual form), else
(X^T X + n l2 I)^-1 X^T Y, all draws batched in one solve.

Why a fixed strength (``l2 = 1`` by default) and not a tuned one: with k examples per class there
is no validation split worth the name, and a tuned probe recovers information from low-variance
directions that a learner with few labels cannot use (this is what makes it a different protocol
from :func:`infodyn.transfer.linear_probe`). On standardised features ``l2 = 1`` weighs the
penalty like the data term of one unit-variance direction. Measured on the fc2 checkpoints of
benchmarks/known_runs.py (5 shots, 20 draws, digits 5-9): over l2 = 0.01 ... 100 the accuracies
move by up to 0.1 but every strength shows the same shape over training (seed 0: the trade-off
run falls from 0.65-0.73 to 0.47-0.56, the holds run stays within 0.73-0.83); l2 = 1 was the best
of that grid on the holds run and mid-range on the trade-off run. A closed form keeps the probe
cheap (about 4-8 ms for 20 draws of 25 rows on one CPU thread), since it runs for every
checkpoint and layer.

Interval: ``ci_low``/``ci_high`` is the Student-t 95 % interval of the mean over the draws
(t quantile with draws - 1 degrees of freedom on the per-draw accuracies). It measures the
variability due to which k examples were labelled, on this fixed test split; the sampling error
of the test split itself (binomial, about sqrt(p (1 - p) / n_test)) is not in it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._stats import t_interval
from ._checks import check_train_test, resolve_device
from .probe import _moments

#: Default ridge strength (mean-scaled objective on standardised features; see the module doc).
DEFAULT_FEWSHOT_L2 = 1.0

__all__ = ["FewShotResult", "fewshot_probe", "fewshot_draws", "DEFAULT_FEWSHOT_L2"]


@dataclass
class FewShotResult:
    """Outcome of :func:`fewshot_probe`.

    Attributes:
        accuracy: mean test accuracy over the draws, in [0, 1].
        ci_low, ci_high: Student-t 95 % interval of that mean over the draws (equal to
            ``accuracy`` with one draw).
        shots: labelled training rows per class in each draw. draws: number of draws.
        per_draw: (draws,) test accuracy of each draw.
        n_test: test rows scored in each draw. n_classes: classes.
        l2: the ridge strength. seed: seed of the draws. seconds: wall-clock time.
    """

    accuracy: float
    ci_low: float
    ci_high: float
    shots: int
    draws: int
    per_draw: np.ndarray = field(repr=False)
    n_test: int = 0
    n_classes: int = 0
    l2: float = DEFAULT_FEWSHOT_L2
    seed: int = 0
    seconds: float = 0.0
    higher_is_better: bool = True

    def __float__(self) -> float:
        return float(self.accuracy)


def _positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def fewshot_draws(codes: np.ndarray, shots: int, draws: int, seed: int) -> np.ndarray:
    """Row indices of each draw: (draws, shots * C), class by class (class 0's rows first).

    ``codes`` are class codes 0..C-1; every class must have at least ``shots`` rows (checked by
    the caller). Draw i uses ``numpy.random.default_rng([seed, i])`` so that draw i is the same
    whatever the number of draws.
    """
    classes = int(codes.max()) + 1
    members = [np.flatnonzero(codes == c) for c in range(classes)]
    out = np.empty((draws, shots * classes), dtype=np.int64)
    for i in range(draws):
        rng = np.random.default_rng([seed, i])
        out[i] = np.concatenate([m[rng.choice(m.shape[0], shots, replace=False)] for m in members])
    return out


def fewshot_probe(train_x: Any, train_y: Any, test_x: Any, test_y: Any, *, shots: int = 5, draws: int = 20,
                  l2: float = DEFAULT_FEWSHOT_L2, seed: int = 0, device: Any = "auto",
                  level: float = 0.95) -> FewShotResult:
    """Few-shot accuracy of frozen features: ``shots`` labelled examples per class, ``draws`` draws.

    Args:
        train_x: (n_train, d) features to draw the labelled examples from (numpy or torch).
        train_y: (n_train,) labels (any sortable values); every class needs >= ``shots`` rows.
        test_x: (n_test, d) features, all scored in every draw. test_y: (n_test,) labels, each a
            class of ``train_y``.
        shots: labelled examples per class in each draw (k).
        draws: number of seeded draws (>= 1; the interval needs >= 2).
        l2: ridge strength > 0 of the mean-scaled objective on standardised features
            (scikit-learn ``RidgeClassifier(alpha=l2 * shots * C)``); fixed, not tuned.
        seed: seeds the draws; the same inputs and seed give the same result.
        device: "auto" (CUDA when present, else CPU), "cpu", "cuda" or a torch.device.
        level: confidence level of the interval over draws.

    Returns:
        :class:`FewShotResult` (``accuracy`` in [0, 1], higher is better).

    Raises:
        ValueError: mismatched rows or feature widths (naming the shapes), NaN/inf features, a
            single class, a class with fewer than ``shots`` training rows, test labels not in
            the training labels, a bad ``shots``/``draws``/``l2``.
    """
    t0 = time.perf_counter()
    shots = _positive_int(shots, "shots")
    draws = _positive_int(draws, "draws")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not (isinstance(l2, (int, float, np.floating)) and math.isfinite(float(l2)) and float(l2) > 0):
        raise ValueError(f"l2 must be a finite number > 0, got {l2!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    l2 = float(l2)
    dev = resolve_device(device)
    xtr, codes, classes, xte, yte_raw = check_train_test(train_x, train_y, test_x, test_y, dev, torch.float64)
    counts = np.bincount(codes, minlength=classes.shape[0])
    short = np.flatnonzero(counts < shots)
    if short.size:
        bad = ", ".join(f"{classes[c]!r}: {counts[c]}" for c in short[:10])
        raise ValueError(f"train_y (shape {codes.shape}) has fewer than shots={shots} rows in class(es) {bad}; "
                         f"lower shots or give more training rows")
    pos = np.clip(np.searchsorted(classes, yte_raw), 0, classes.shape[0] - 1)
    unseen = classes[pos] != yte_raw
    if unseen.any():
        raise ValueError(f"test_y (shape {yte_raw.shape}) has labels never seen in train_y: "
                         f"{np.unique(yte_raw[unseen])[:10].tolist()}")
    c = classes.shape[0]
    n = shots * c
    d = xtr.shape[1]
    idx = torch.from_numpy(fewshot_draws(codes, shots, draws, int(seed))).to(dev)
    xs = xtr[idx]  # (draws, n, d)
    ys = torch.full((draws, n, c), -1.0, dtype=torch.float64, device=dev)
    ys.scatter_(2, torch.from_numpy(codes).to(dev)[idx].unsqueeze(2), 1.0)
    mu, sd = _moments(xs, dim=1)  # per draw, over its support rows; constant columns: centre only
    z = (xs - mu) / sd
    ym = ys.mean(1, keepdim=True)
    yc = ys - ym
    eye = torch.eye(min(n, d), dtype=torch.float64, device=dev)
    if n <= d:  # dual: W = Z^T (Z Z^T + n l2 I)^-1 Yc
        gram = z @ z.transpose(1, 2) + n * l2 * eye
        w = z.transpose(1, 2) @ torch.linalg.solve(gram, yc)
    else:
        gram = z.transpose(1, 2) @ z + n * l2 * eye
        w = torch.linalg.solve(gram, z.transpose(1, 2) @ yc)
    # fold the standardisation into the weights: scores = x (W / sd) + (ym - (mu / sd) W)
    w_raw = w / sd.transpose(1, 2)  # (draws, d, C)
    b_raw = ym - (mu / sd) @ w  # (draws, 1, C)
    w_all = w_raw.permute(1, 0, 2).reshape(d, draws * c)
    b_all = b_raw.reshape(draws * c)
    yte = torch.from_numpy(pos.astype(np.int64)).to(dev)
    correct = torch.zeros(draws, dtype=torch.float64, device=dev)
    block = max(1, (1 << 24) // max(1, draws * c))  # about 128 MiB of float64 scores per block
    for i in range(0, xte.shape[0], block):
        s = torch.addmm(b_all, xte[i:i + block], w_all).reshape(-1, draws, c)
        correct += (s.argmax(2) == yte[i:i + block, None]).double().sum(0)
    per_draw = (correct / xte.shape[0]).cpu().numpy()
    mean, lo, hi = t_interval(per_draw, level, bounds=(0.0, 1.0))
    return FewShotResult(accuracy=mean, ci_low=lo, ci_high=hi, shots=shots, draws=draws, per_draw=per_draw,
                         n_test=int(xte.shape[0]), n_classes=int(c), l2=l2, seed=int(seed),
                         seconds=time.perf_counter() - t0)


fewshot_probe.higher_is_better = True

"""The schedule the CTC reference code trains with, offered as a helper (never forced).

Reference (CIFAR-100, 300 epochs, switch at 200): weight decay doubled in stage 1 (1e-3, back to
5e-4 in stage 2); learning rate on a cosine from ``lr`` to ~0 over stage 1, then a restart at
``0.1 * lr`` for stage 2 (here: a second cosine to ``min_lr`` by default, or held constant).

``t`` counts epochs completed (0 at the start, may be fractional for per-step updates): epoch e
(1-based) runs with ``t = e - 1``. A fair baseline uses the same schedule without the CTC loss.

    >>> factors(0, total_epochs=30, switch_epoch=20)
    (1.0, 2.0)
    >>> factors(20, total_epochs=30, switch_epoch=20)
    (0.1, 1.0)
"""
from __future__ import annotations

import math
from typing import List, Tuple


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def factors(t: float, *, total_epochs: int, switch_epoch: int, stage1_wd_factor: float = 2.0,
            restart_factor: float = 0.1, min_lr_factor: float = 0.0,
            stage2: str = "cosine") -> Tuple[float, float]:
    """(learning-rate factor, weight-decay factor) at ``t`` epochs completed.

    Multiply them with the base learning rate and weight decay. Stage 1 (t < switch_epoch):
    cosine from 1 to ``min_lr_factor``, weight decay x ``stage1_wd_factor``. Stage 2: from
    ``restart_factor`` on a cosine to ``min_lr_factor`` (``stage2="cosine"``) or constant
    (``stage2="constant"``), weight decay x 1.
    """
    if not 1 <= switch_epoch < total_epochs:
        raise ValueError(f"need 1 <= switch_epoch < total_epochs, got switch_epoch={switch_epoch}, "
                         f"total_epochs={total_epochs}")
    if t < 0:
        raise ValueError(f"t (epochs completed) must be >= 0, got {t}")
    if stage2 not in ("cosine", "constant"):
        raise ValueError(f"stage2 must be 'cosine' or 'constant', got {stage2!r}")
    lo = min_lr_factor
    if t < switch_epoch:
        return lo + (1.0 - lo) * _cosine(t / switch_epoch), float(stage1_wd_factor)
    if stage2 == "constant":
        return float(restart_factor), 1.0
    progress = (t - switch_epoch) / (total_epochs - switch_epoch)
    return lo + (restart_factor - lo) * _cosine(progress), 1.0


class CTCSchedule:
    """Applies :func:`factors` to an optimiser's parameter groups, relative to each group's
    learning rate and weight decay at construction (a group with weight decay 0 keeps 0).

        sched = CTCSchedule(opt, total_epochs=30, switch_epoch=20)
        for epoch in range(1, 31):
            sched.set(epoch - 1)
            ...train one epoch...
    """

    def __init__(self, optimizer, *, total_epochs: int, switch_epoch: int, **kwargs):
        self.optimizer = optimizer
        self.total_epochs, self.switch_epoch, self.kwargs = total_epochs, switch_epoch, kwargs
        factors(0, total_epochs=total_epochs, switch_epoch=switch_epoch, **kwargs)  # validate
        self.base = [(g["lr"], g.get("weight_decay", 0.0)) for g in optimizer.param_groups]

    def set(self, t: float) -> List[Tuple[float, float]]:
        """Sets every group's lr and weight decay for ``t`` epochs completed; returns them."""
        f_lr, f_wd = factors(t, total_epochs=self.total_epochs, switch_epoch=self.switch_epoch,
                             **self.kwargs)
        out = []
        for g, (lr, wd) in zip(self.optimizer.param_groups, self.base):
            g["lr"], g["weight_decay"] = lr * f_lr, wd * f_wd
            out.append((g["lr"], g["weight_decay"]))
        return out

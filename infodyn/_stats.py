"""Small statistics shared across infodyn (numpy/scipy only; imports nothing of infodyn)."""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

__all__ = ["t_interval"]


def t_interval(values: np.ndarray, level: float = 0.95,
               bounds: Tuple[float, float] = (-math.inf, math.inf)) -> Tuple[float, float, float]:
    """(mean, low, high): Student-t ``level`` interval of the mean of ``values``.

    Non-finite values are dropped first. The half width is
    ``t.ppf((1 + level) / 2, n - 1) * std(ddof=1) / sqrt(n)`` and the interval is clipped to
    ``bounds`` (e.g. (0, 1) for accuracies, or the recorded range for times, since a peak cannot
    lie outside it). With one value low = high = mean; with none, all three are NaN.

    Args:
        values: (n,) array-like of numbers (any unit; the result is in the same unit).
        level: confidence level in (0, 1).
        bounds: (lower, upper) clip of the interval's ends (the mean is not clipped).
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(v.mean())
    if v.size == 1:
        return (m, m, m)
    half = float(stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return (m, max(m - half, bounds[0]), min(m + half, bounds[1]))

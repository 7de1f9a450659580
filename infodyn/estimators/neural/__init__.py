"""Neural variational bounds on mutual information: MINE, NWJ, InfoNCE, TUBA, JS, interpolated, SMILE.

    >>> import infodyn
    >>> est = infodyn.estimate_mi(x, y, method="infonce", seed=0)      # doctest: +SKIP
    >>> plane = infodyn.information_plane(t, labels, method="mine", x=inputs)  # doctest: +SKIP

Each method trains a critic (:mod:`.critics`) on a train split, keeps the critic that does best
on a validation split, and reports its bound (:mod:`.bounds`) on a test split, in nats, with a
95% interval from the spread over test batches. Integer labels are one-hot encoded.

Honest limits: InfoNCE never reports more than log(batch_size); the variance of MINE/NWJ/TUBA
grows with the true MI (roughly like exp(I)); SMILE's clip trades that variance for bias; all
are lower bounds in expectation only for a critic trained to optimality, so they underestimate
when training is too short or the critic too small. See :mod:`.train` for the parameters.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..base import RawEstimate, register, register_plane
from . import bounds, critics
from .train import DEFAULTS, METHODS, estimate

__all__ = ["bounds", "critics", "estimate", "DEFAULTS", "METHODS"]

_DESCRIPTIONS = {
    "mine": "MINE: Donsker-Varadhan bound, critic trained with the moving-average gradient correction",
    "nwj": "NWJ (f-GAN KL) lower bound with a trained critic",
    "infonce": "InfoNCE (contrastive) lower bound; never above log(batch_size)",
    "tuba": "TUBA lower bound with a learned baseline a(y)",
    "js": "critic trained with the Jensen-Shannon objective, MI from the NWJ bound",
    "smile": "SMILE: DV with clipped partition (clip tau), critic trained with JS",
    "interpolated": "interpolated InfoNCE/TUBA alpha-bound of Poole et al. (2019)",
}

_MIN_SAMPLES = 20


def _make(method: str):
    def fn(x: np.ndarray, y: np.ndarray, **params: Any) -> RawEstimate:
        return estimate(x, y, method, **params)

    fn.__name__ = method
    fn.accepted_params = tuple(DEFAULTS)  # checked by train._resolve
    fn.__doc__ = f"{_DESCRIPTIONS[method]}.\n\nParameters and defaults: infodyn.estimators.neural.DEFAULTS."
    return fn


def _make_plane(method: str):
    def plane(t: np.ndarray, y: np.ndarray, *, x: Any = None, **params: Any):
        """I(X;T) from (x, t) and I(T;Y) from (t, y), each with its own trained critic, in nats."""
        if x is None:
            raise ValueError(
                f"information_plane with method {method!r} needs x= the inputs (n, dx) to estimate "
                f"I(X;T); got x=None for t of shape {t.shape}"
            )
        return estimate(x, t, method, **params), estimate(t, y, method, **params)

    plane.accepted_params = tuple(DEFAULTS)
    return plane


for _m in METHODS:
    register(_m, symmetric=False, min_samples=_MIN_SAMPLES, discrete_y=True,
             description=_DESCRIPTIONS[_m])(_make(_m))
    register_plane(_m)(_make_plane(_m))

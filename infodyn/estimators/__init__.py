"""Mutual-information estimators, one module per family, behind one interface.

    >>> import numpy as np, infodyn
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=2000); y = x + rng.normal(size=2000)
    >>> est = infodyn.estimate_mi(x, y, method="gaussian")
    >>> round(est.nats, 1)   # true value 0.5*log(2) = 0.347 nats
    0.3
"""
from __future__ import annotations

import importlib
import time
from fnmatch import fnmatch
from typing import Any, Dict, List, Optional

from .base import (
    InformationPlane,
    MIEstimate,
    RawEstimate,
    accepted_params,
    as_labels,
    as_samples,
    check_pair,
    estimate_mi,
    is_discrete,
    planes,
    register,
    register_plane,
    registry,
    reject_unknown,
    resolve_device,
)

# Families are imported on first use so that `import infodyn` stays light (no torch at import).
_FAMILIES = ("binning", "kernel", "knn", "gaussian", "renyi", "neural")
_loaded = False


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    for fam in _FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{fam}")
        except ModuleNotFoundError as exc:  # a family not written yet; any other missing module is an error
            if exc.name != f"{__name__}.{fam}":
                raise
    _loaded = True


def available(pattern: str = "*") -> List[str]:
    """Sorted names of the registered estimators, filtered by a glob ``pattern`` (e.g. ``"kde*"``)."""
    _load_families()
    return sorted(n for n in registry() if fnmatch(n, pattern))


def get(method: str):
    _load_families()
    try:
        return registry()[method]
    except KeyError:
        raise ValueError(f"unknown MI method {method!r}; available: {', '.join(available())}") from None


def information_plane(t: Any, y: Any, method: str = "binning", *, x: Any = None, **params: Any) -> InformationPlane:
    """I(X;T) and I(T;Y) of a deterministic layer output ``t`` over n distinct inputs.

    X is taken uniform over the n samples. For ``binning``, I(X;T) = H(binned T) and
    I(T;Y) = H(binned T) - H(binned T | Y). For ``kde``, the Kolchinsky-Tracey upper bound with
    Gaussian noise of variance ``noise_var`` added to T; for ``gaussian``, the Gaussian-channel
    bound with that noise. Neural methods need ``x`` (the inputs).

    Scale: with ``scale="absolute"`` (the default of ``kde``, ``binning`` and ``gaussian``; the
    classic settings of Saxe et al. 2018) the noise variance and bin width are in the features'
    units, so the estimate moves with the features' overall scale (ReLU features grow during
    training). With ``scale="relative"`` they are fractions of the layer's RMS spread at this
    checkpoint and the plane is unchanged by any rescaling of t; ``params["scale"]`` records it.
    Unknown parameter names raise ValueError (see :func:`parameters`).

    Args:
        t: layer output, (n, d).
        y: labels (n,) ints, or (n, dy) one-hot/continuous.
        method: a name from :func:`planes_available`.
        x: the inputs (n, dx), needed only by methods that estimate I(X;T) from samples of X.

    Returns:
        InformationPlane(i_xt, i_ty), each an MIEstimate in nats (``.bits`` for bits).
    """
    _load_families()
    if method not in planes():
        raise ValueError(f"no information-plane rule for {method!r}; available: {', '.join(sorted(planes()))}")
    ta = as_samples(t, "t")
    ya = as_labels(y, "y") if is_discrete(y) else as_samples(y, "y")
    if ya.shape[0] != ta.shape[0]:
        raise ValueError(f"t and y must have the same number of rows: t {ta.shape}, y {ya.shape}")
    xa = None
    if x is not None:
        xa = as_samples(x, "x")
        if xa.shape[0] != ta.shape[0]:
            raise ValueError(f"x and t must have the same number of rows: x {xa.shape}, t {ta.shape}")
    t0 = time.perf_counter()
    raw_xt, raw_ty = planes()[method](ta, ya, x=xa, **params)
    secs = time.perf_counter() - t0
    out = []
    for raw in (raw_xt, raw_ty):
        raw = raw if isinstance(raw, RawEstimate) else RawEstimate(float(raw))
        if raw.nats != raw.nats:
            raise ValueError(f"information plane by {method!r} gave NaN on t {ta.shape}")
        out.append(MIEstimate(float(raw.nats), raw.ci, method, {**params, **raw.params}, ta.shape[0], secs))
    return InformationPlane(*out)


def planes_available() -> List[str]:
    _load_families()
    return sorted(planes())


def parameters(method: str, *, plane: bool = False) -> List[str]:
    """The parameter names ``method`` accepts, sorted: as an estimator of :func:`estimate_mi`, or
    with ``plane=True`` as an :func:`information_plane` rule. Every other name is refused."""
    _load_families()
    if plane:
        if method not in planes():
            raise ValueError(f"no information-plane rule for {method!r}; available: {', '.join(sorted(planes()))}")
        return list(accepted_params(planes()[method]))
    return list(accepted_params(get(method).fn))


def check_params(method: str, params: Dict[str, Any], *, plane: bool = False) -> None:
    """Raises the ValueError of a misspelt or foreign parameter name for ``method`` without
    computing anything (e.g. to check ``--param kde.noise_vr=...`` before a long analysis).

    The message names the method, each unknown name with the closest valid names, and every valid
    name. Only names are checked here; values are checked when the estimator runs.
    """
    valid = parameters(method, plane=plane)
    reject_unknown(method, {k: v for k, v in params.items() if k not in valid}, valid,
                   what="information plane" if plane else "estimator")


__all__ = [
    "MIEstimate", "RawEstimate", "InformationPlane", "estimate_mi", "information_plane", "available",
    "planes_available", "parameters", "check_params", "get", "register", "register_plane", "check_pair", "as_samples", "as_labels",
    "is_discrete", "resolve_device",
]

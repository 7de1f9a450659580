"""infodyn: information-theoretic analysis of deep-network training.

The public API is re-exported here lazily, so ``import infodyn`` imports neither torch nor any
estimator until one is used.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "estimate_mi": ("infodyn.estimators", "estimate_mi"),
    "information_plane": ("infodyn.estimators", "information_plane"),
    "MIEstimate": ("infodyn.estimators", "MIEstimate"),
    "analyze": ("infodyn.analysis", "analyze"),
    "score_overcompression": ("infodyn.overcompression", "score_overcompression"),
}
_SUBMODULES = {"estimators", "data", "transfer", "runs", "hooks", "ctc", "analysis", "tradeoff",
               "supervision", "plots", "report", "landscape", "cli"}


def __getattr__(name):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"infodyn.{name}")
    raise AttributeError(f"module 'infodyn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))


__all__ = list(_LAZY)

"""Loading the optional numba kernels (``infodyn.estimators._knn_compiled``,
``infodyn.transfer._knn_compiled``) with a fallback.

numba is a dependency, but a kernel module may still fail to load: numba missing or broken on an
unusual platform, or no writable place for its on-disk cache (numba then refuses ``cache=True`` at
import). The callers fall back to their torch code; a failure other than a missing numba is
reported once, as a warning that names it.
"""
from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Dict, Optional

_LOADED: Dict[str, Optional[ModuleType]] = {}
_import = importlib.import_module  # replaced in tests


def kernels(module: str) -> Optional[ModuleType]:
    """The kernel module ``module`` (a dotted name), or None when it cannot be loaded."""
    if module not in _LOADED:
        try:
            _LOADED[module] = _import(module)
        except ImportError:
            _LOADED[module] = None
        except Exception as exc:  # numba raises RuntimeError, e.g. when it cannot cache
            warnings.warn(f"{module} could not be loaded ({type(exc).__name__}: {exc}); "
                          "using the slower torch code instead", RuntimeWarning, stacklevel=2)
            _LOADED[module] = None
    return _LOADED[module]

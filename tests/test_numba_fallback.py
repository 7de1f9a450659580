"""The numba kernels are optional at run time: a module that fails to load leaves the torch code
in charge (with a warning naming the failure), and the numbers do not change."""
import numpy as np
import pytest

import infodyn
from infodyn import _numba


def test_a_kernel_module_that_fails_to_load_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr(_numba, "_LOADED", {})
    name = "infodyn.estimators._knn_compiled"

    def broken(module):
        raise RuntimeError("cannot cache function: no locator available")

    monkeypatch.setattr(_numba, "_import", broken)
    with pytest.warns(RuntimeWarning, match="no locator available"):
        assert _numba.kernels(name) is None
    r = np.random.default_rng(0)
    x, y = r.normal(size=(300, 6)), r.normal(size=(300, 6))
    est = infodyn.estimate_mi(x, y, method="ksg", device="cpu")
    assert est.params["algorithm"] == "brute"
    monkeypatch.setattr(_numba, "_LOADED", {})
    monkeypatch.undo()
    assert infodyn.estimate_mi(x, y, method="ksg", device="cpu").nats == pytest.approx(est.nats, abs=1e-12)


def test_missing_numba_is_silent(monkeypatch):
    monkeypatch.setattr(_numba, "_LOADED", {})

    def missing(module):
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(_numba, "_import", missing)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _numba.kernels("infodyn.transfer._knn_compiled") is None

"""Hostile and odd input to the public estimator and metric functions (property-based).

Whatever the input (constant columns, duplicated rows, huge or tiny magnitudes, integer and
boolean dtypes, lists and tensors, too few samples, inf and NaN), the answer is finite numbers or
a ValueError whose message says what is wrong; never a silent NaN, another exception or a hang.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infodyn.estimators import estimate_mi, information_plane
from infodyn.transfer import knn_accuracy, linear_cka, linear_probe, logme, nc1, rankme

NON_NEURAL = ["binning", "gaussian", "kde", "kde_lower", "ksg", "renyi"]  # "interpolated" is a neural bound
FAST = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
ODDITIES = ["plain", "constant_column", "all_constant", "duplicated_rows", "huge", "tiny", "int", "bool",
            "nan", "inf", "neg_inf"]
CONTAINERS = ["numpy", "list", "tensor", "float32"]


@st.composite
def odd_data(draw, max_n=40, max_d=3):
    """(x, labels, oddity, container): x of shape (n, d) made odd in one way, integer labels (n,)."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**16))
    oddity = draw(st.sampled_from(ODDITIES))
    container = draw(st.sampled_from(CONTAINERS))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, draw(st.integers(1, 3)), size=n)
    if oddity == "constant_column":
        x[:, 0] = 3.0
    elif oddity == "all_constant":
        x[:] = -1.5
    elif oddity == "duplicated_rows":
        x = x[rng.integers(0, max(1, n // 3), size=n)]
    elif oddity == "huge":
        x = x * 1e150
    elif oddity == "tiny":
        x = x * 1e-150
    elif oddity == "int":
        x = np.round(x * 3).astype(np.int64)
    elif oddity == "bool":
        x = x > 0
    elif oddity in ("nan", "inf", "neg_inf"):
        x[rng.integers(n), rng.integers(d)] = {"nan": np.nan, "inf": np.inf, "neg_inf": -np.inf}[oddity]
    return wrap(x, container), wrap(y, container if container != "float32" else "numpy"), oddity, (n, d)


def wrap(a, container):
    if container == "list":
        return a.tolist()
    if container == "tensor":
        return torch.as_tensor(a)
    if container == "float32" and a.dtype.kind == "f":
        return a.astype(np.float32)
    return a


def non_finite(*arrays) -> bool:
    return any(not np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in arrays)


def finite_or_value_error(fn, oddity, shape, *inputs):
    """Calls ``fn``; returns its value (asserted finite) or None after a ValueError that says
    what is wrong. Non-finite ``inputs`` must be refused, naming it (or an earlier problem such as
    too few samples)."""
    bad = non_finite(*inputs)
    try:
        out = fn()
    except ValueError as exc:
        msg = str(exc)
        assert len(msg) > 15, f"uninformative error {msg!r}"
        if bad:
            assert any(w in msg.lower() for w in ("nan", "inf", "finite", "at least", "samples")), msg
        return None
    assert not bad, f"accepted non-finite input {shape} ({oddity}) and returned {out!r}"
    for v in numbers(out):
        assert math.isfinite(v), f"silent non-finite result {out!r} for {oddity} input of shape {shape}"
    return out


def numbers(out):
    if isinstance(out, (float, int, np.floating, np.integer)):
        return [float(out)]
    if hasattr(out, "nats"):  # MIEstimate
        return [out.nats] + (list(out.ci) if out.ci is not None else [])
    if hasattr(out, "i_xt"):  # InformationPlane
        return numbers(out.i_xt) + numbers(out.i_ty)
    if hasattr(out, "accuracy"):  # probe / k-NN results
        return [out.accuracy]
    raise AssertionError(f"unexpected result type {type(out).__name__}")


@pytest.mark.parametrize("method", NON_NEURAL)
@FAST
@given(data=odd_data(), other=odd_data())
def test_estimate_mi_continuous_pairs(method, data, other):
    x, _, oddity, shape = data
    y, _, odd_y, shape_y = other
    n = min(shape[0], shape_y[0])
    x, y = _head(x, n), _head(y, n)
    finite_or_value_error(lambda: estimate_mi(x, y, method=method), (oddity, odd_y), (shape, shape_y), x, y)


@pytest.mark.parametrize("method", NON_NEURAL)
@FAST
@given(data=odd_data())
def test_estimate_mi_against_labels(method, data):
    x, y, oddity, shape = data
    finite_or_value_error(lambda: estimate_mi(x, y, method=method), oddity, shape, x)


@pytest.mark.parametrize("method", ["binning", "kde"])
@FAST
@given(data=odd_data())
def test_information_plane(method, data):
    t, y, oddity, shape = data
    finite_or_value_error(lambda: information_plane(t, y, method=method), oddity, shape, t)


@FAST
@given(data=odd_data())
def test_rankme(data):
    x, _, oddity, shape = data
    out = finite_or_value_error(lambda: rankme(x, device="cpu"), oddity, shape, x)
    if out is not None:
        assert 1.0 - 1e-6 <= out <= min(shape) + 1e-6 or out == 0.0 or min(shape) == 0


@FAST
@given(data=odd_data())
def test_nc1(data):
    x, y, oddity, shape = data
    finite_or_value_error(lambda: nc1(x, y, device="cpu"), oddity, shape, x)


@FAST
@given(data=odd_data())
def test_logme(data):
    x, y, oddity, shape = data
    finite_or_value_error(lambda: logme(x, y, device="cpu"), oddity, shape, x)


@FAST
@given(data=odd_data(), other=odd_data())
def test_linear_cka(data, other):
    a, _, oddity, shape = data
    b, _, odd_b, shape_b = other
    n = min(shape[0], shape_b[0])
    a, b = _head(a, n), _head(b, n)
    out = finite_or_value_error(lambda: linear_cka(a, b, device="cpu"), (oddity, odd_b), (shape, shape_b), a, b)
    if out is not None:
        assert -1e-6 <= out <= 1 + 1e-6


@pytest.mark.parametrize("fn", ["probe", "knn"])
@FAST
@given(train=odd_data(), test=odd_data())
def test_probe_and_knn(fn, train, test):
    xa, ya, odd_a, shape_a = train
    xb, yb, odd_b, shape_b = test
    if shape_a[1] != shape_b[1]:  # mismatched widths must be refused too
        xb = _head(wrap(np.zeros((shape_b[0], shape_a[1] + 1)), "numpy"), shape_b[0])
    if fn == "probe":
        call = lambda: linear_probe(xa, ya, xb, yb, device="cpu", max_iter=50)  # noqa: E731
    else:
        call = lambda: knn_accuracy(xa, ya, xb, yb, k=3, device="cpu")  # noqa: E731
    out = finite_or_value_error(call, (odd_a, odd_b), (shape_a, shape_b), xa, xb)
    if out is not None:
        assert 0.0 <= out.accuracy <= 1.0


def _head(a, n):
    return a[:n]


def test_logme_zero_features_is_the_noise_only_evidence():
    """F = 0: y_c ~ N(0, I / beta), maximised at beta = n / ||y_c||^2 (closed form)."""
    y = np.array([1, 1, 0, 0, 1, 2])
    onehot = np.eye(3)[y]
    n = len(y)
    ref = np.mean([0.5 * math.log(n / (onehot[:, c] ** 2).sum()) - 0.5 - 0.5 * math.log(2 * math.pi)
                   for c in range(3)])
    assert math.isclose(logme(np.zeros((n, 2)), y, device="cpu"), ref, rel_tol=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e200])
def test_logme_does_not_depend_on_the_feature_scale(scale):
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    assert math.isclose(logme(f * scale, y, device="cpu"), logme(f, y, device="cpu"), rel_tol=1e-9)


@pytest.mark.parametrize("scale", [1e-150, 1e149, 1e200])
def test_linear_cka_does_not_depend_on_the_scale(scale):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 4))
    b = a @ rng.normal(size=(4, 3)) + 0.3 * rng.normal(size=(30, 3))
    assert math.isclose(linear_cka(a * scale, b, device="cpu"), linear_cka(a, b, device="cpu"), rel_tol=1e-9)
    assert math.isclose(linear_cka(a * scale, a * scale, device="cpu"), 1.0, rel_tol=1e-12)


def test_logme_with_targets_fit_exactly_is_refused_not_infinite():
    # rank n: zero residual, the evidence iteration runs off to zero noise (found by hypothesis)
    f = np.array([[-1.83032036, -1.38078213, 0.12943324], [-0.66013452, 0.75630261, -0.07798505],
                  [-0.14573873, -0.8941161, -1.80255122]])
    with pytest.raises(ValueError, match=r"shape \(3, 3\).*zero noise"):
        logme(f, np.array([0, 1, 0]), device="cpu")

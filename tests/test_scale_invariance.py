"""Scale-invariant information planes: ``scale="relative"`` estimates do not move when a layer's
features are multiplied by a constant, the classic absolute ones do, and the exact small cases
still hold."""
import math

import numpy as np
import pytest

from infodyn import information_plane
from infodyn.estimators import estimate_mi
from infodyn.estimators.base import rms_scale

SCALES = (1e-3, 1.0, 1e3)


def relu_features(n=300, d=8, seed=0):
    r = np.random.default_rng(seed)
    y = r.integers(0, 3, size=n)
    t = np.maximum(r.normal(size=(n, d)) + y[:, None] * np.linspace(-1, 1, d), 0.0)
    return t, y


RELATIVE = [
    ("kde", dict(noise_var=0.1, scale="relative")),
    ("kde", dict(noise_var=0.5, scale="relative", bound="lower")),
    ("kde", dict(noise_var=0.1, scale="relative", bound="mc", n_mc=2, seed=3)),
    ("kde", dict(noise_var=0.02, scale="relative_total")),
    ("gaussian", dict(noise_var=0.02, scale="relative_total")),
    ("binning", dict(bin_width=0.5, scale="relative")),
    ("binning", dict(bin_range=(0, 2), n_bins=4, scale="relative")),
    ("gaussian", dict(noise_var=0.1, scale="relative")),
]
ABSOLUTE = [
    ("kde", dict(noise_var=0.1)),
    ("kde", dict(noise_var=0.1, bound="mc", n_mc=2)),
    ("binning", dict(bin_width=0.5)),
    ("gaussian", dict(noise_var=0.1)),
]


@pytest.mark.parametrize("method, params", RELATIVE)
def test_relative_plane_is_unchanged_by_feature_scale(method, params):
    t, y = relu_features()
    ref = information_plane(t, y, method=method, **params)
    assert 0.1 < ref.i_xt.nats < math.log(len(y)) + 1e-9 or method == "gaussian"
    for c in SCALES:
        p = information_plane(c * t, y, method=method, **params)
        assert p.i_xt.nats == pytest.approx(ref.i_xt.nats, abs=1e-9), (method, params, c)
        assert p.i_ty.nats == pytest.approx(ref.i_ty.nats, abs=1e-9), (method, params, c)
        assert p.i_xt.params["scale"] == params["scale"]
        # the resolved spread is recorded and scales with the features
        assert p.i_xt.params["feature_scale"] == pytest.approx(c * ref.i_xt.params["feature_scale"], rel=1e-12)


@pytest.mark.parametrize("method, params", ABSOLUTE)
def test_absolute_plane_moves_with_feature_scale(method, params):
    t, y = relu_features()
    vals = [information_plane(c * t, y, method=method, **params).i_xt.nats for c in SCALES]
    assert vals[2] - vals[0] > 1.0, (method, vals)  # more resolution against larger features
    assert information_plane(t, y, method=method, **params).i_xt.params["scale"] == "absolute"


def test_relative_kde_is_absolute_kde_with_noise_times_mean_dimension_variance():
    t, y = relu_features(seed=1)
    s2 = float(np.mean(np.var(t, axis=0)))  # independent: mean per-dimension (population) variance
    for bound in ("upper", "lower"):
        rel = information_plane(t, y, method="kde", noise_var=0.2, scale="relative", bound=bound)
        ab = information_plane(t, y, method="kde", noise_var=0.2 * s2, bound=bound)
        assert rel.i_xt.nats == pytest.approx(ab.i_xt.nats, abs=1e-10)
        assert rel.i_ty.nats == pytest.approx(ab.i_ty.nats, abs=1e-10)
        assert rel.i_xt.params["noise_var_abs"] == pytest.approx(0.2 * s2, rel=1e-12)
        assert rel.i_xt.params["noise_var"] == 0.2


def test_relative_total_uses_total_variance_and_is_width_free():
    t, y = relu_features(seed=3)
    total = float(np.var(t, axis=0).sum())
    rel = information_plane(t, y, method="kde", noise_var=0.05, scale="relative_total")
    ab = information_plane(t, y, method="kde", noise_var=0.05 * total)
    assert rel.i_xt.nats == pytest.approx(ab.i_xt.nats, abs=1e-10)
    assert rel.i_xt.params["noise_var_abs"] == pytest.approx(0.05 * total, rel=1e-12)
    # every unit copied (d -> 2d, all squared distances doubled): relative_total is unchanged,
    # per-dimension relative noise sees twice the distances and gives more information
    t2 = np.c_[t, t]
    a = information_plane(t, y, method="kde", noise_var=0.05, scale="relative_total").i_xt.nats
    b = information_plane(t2, y, method="kde", noise_var=0.05, scale="relative_total").i_xt.nats
    assert b == pytest.approx(a, abs=1e-10)
    a = information_plane(t, y, method="kde", noise_var=1.0, scale="relative").i_xt.nats
    b = information_plane(t2, y, method="kde", noise_var=1.0, scale="relative").i_xt.nats
    assert b > a + 0.3


def test_relative_binning_is_fixed_width_in_units_of_rms_spread():
    t, y = relu_features(seed=2)
    s = math.sqrt(float(np.mean(np.var(t, axis=0))))
    rel = information_plane(t, y, method="binning", bin_width=0.7, scale="relative")
    ab = information_plane(t, y, method="binning", bin_width=0.7 * s)
    assert rel.i_xt.nats == pytest.approx(ab.i_xt.nats, abs=1e-12)
    assert rel.i_xt.params["distinct_t"] == ab.i_xt.params["distinct_t"]
    # a dead unit (all 0) stays in the bin of 0 after scaling: the scale does not centre
    t0 = np.c_[t, np.zeros(len(t))]
    assert information_plane(t0, y, method="binning", bin_width=0.7, scale="relative").i_xt.params["distinct_t"] > 1


def test_relative_estimate_mi_invariant_to_each_variable_scale():
    r = np.random.default_rng(4)
    x = r.normal(size=(250, 2))
    y = x[:, :1] + 0.5 * r.normal(size=(250, 1))
    labels = (x[:, 0] > 0).astype(int)
    for method, params in (("kde", dict(noise_var=0.1)), ("kde_lower", dict(noise_var=0.1)),
                           ("binning", dict(bin_width=0.5))):
        ref = estimate_mi(x, y, method=method, scale="relative", **params).nats
        ref_lab = estimate_mi(x, labels, method=method, scale="relative", **params).nats
        for cx, cy in ((1e-3, 1e3), (1e3, 1.0), (1.0, 1e-3)):
            assert estimate_mi(cx * x, cy * y, method=method, scale="relative", **params).nats == pytest.approx(ref, abs=1e-9)
            assert estimate_mi(cx * x, labels, method=method, scale="relative", **params).nats == pytest.approx(ref_lab, abs=1e-9)
        assert estimate_mi(1e3 * x, y, method=method, **params).nats != pytest.approx(ref, abs=1e-3)


def test_exact_small_cases_hold_under_relative_scale():
    # two far clusters of identical points, label = cluster: I(X;T) = I(T;Y) = log 2 for every bound
    t = np.repeat([[0.0], [100.0]], 5, axis=0)
    y = np.repeat([0, 1], 5)
    for bound in ("upper", "lower", "mc"):
        p = information_plane(t, y, method="kde", noise_var=1e-4, scale="relative", bound=bound)
        assert p.i_xt.nats == pytest.approx(math.log(2), abs=1e-12)
        assert p.i_ty.nats == pytest.approx(math.log(2), abs=1e-12)
    # identical points: the spread is 0, kept at 1, and the plane is exactly 0
    for method in ("kde", "binning", "gaussian"):
        p = information_plane(np.full((12, 3), 7.0), np.arange(12) % 3, method=method, scale="relative")
        assert p.i_xt.nats == pytest.approx(0.0, abs=1e-12) and p.i_ty.nats == pytest.approx(0.0, abs=1e-12)


def test_rms_scale_is_overflow_safe_and_homogeneous():
    t, _ = relu_features(seed=5)
    assert rms_scale(t) == pytest.approx(math.sqrt(np.mean(np.var(t, axis=0))), rel=1e-12)
    for c in (1e-300, 1e300):
        assert rms_scale(c * t) == pytest.approx(c * rms_scale(t), rel=1e-9)
    assert rms_scale(np.zeros((4, 2))) == 1.0
    y = np.arange(len(t)) % 3
    ref = information_plane(t, y, method="kde", noise_var=0.1, scale="relative").i_xt.nats
    assert information_plane(1e300 * t, y, method="kde", noise_var=0.1, scale="relative").i_xt.nats == pytest.approx(ref, abs=1e-9)


def test_gaussian_plane_closed_form():
    # independent coordinates with variances 4 and 1, noise 1: 1/2 (log 5 + log 2)
    r = np.random.default_rng(6)
    t = r.normal(size=(200000, 2)) * [2.0, 1.0]
    p = information_plane(t, np.zeros(len(t), int), method="gaussian", noise_var=1.0)
    assert p.i_xt.nats == pytest.approx(0.5 * (math.log(5) + math.log(2)), abs=0.01)
    assert p.i_ty.nats == pytest.approx(0.0, abs=1e-12)  # one class: nothing about y
    # relative: noise_var 1 of the mean variance 2.5 -> noise 2.5: 1/2 (log(1 + 4/2.5) + log(1 + 1/2.5))
    q = information_plane(t, np.zeros(len(t), int), method="gaussian", noise_var=1.0, scale="relative")
    assert q.i_xt.nats == pytest.approx(0.5 * (math.log(1 + 4 / 2.5) + math.log(1 + 1 / 2.5)), abs=0.01)


@pytest.mark.parametrize("method, kw, needle", [
    ("kde", dict(scale="standardise"), "scale"),
    ("binning", dict(scale="z"), "scale"),
    ("gaussian", dict(scale="rel"), "scale"),
    ("gaussian", dict(noise_var=0.0), "noise_var"),
    ("kde", dict(bound="mc", n_mc=0), "n_mc"),
])
def test_bad_scale_settings(method, kw, needle):
    t, y = relu_features(n=30)
    with pytest.raises(ValueError, match=needle):
        information_plane(t, y, method=method, **kw)

import math

import numpy as np
import pytest

import infodyn
from infodyn.estimators import MIEstimate, estimate_mi, information_plane, planes_available


def H(labels):
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_binning_and_kde_planes_registered():
    assert {"binning", "kde"} <= set(planes_available())


def test_binning_plane_exact_small_case():
    # 8 inputs, T takes 4 distinct binned values equally often, Y determined by T
    t = np.repeat([[-0.9, 0.9], [-0.9, -0.9], [0.9, 0.9], [0.9, -0.9]], 2, axis=0)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    ixt, ity = information_plane(t, y, method="binning", bin_range=(-1, 1))
    assert isinstance(ixt, MIEstimate) and ixt.method == "binning"
    assert ixt.nats == pytest.approx(math.log(4))
    assert ity.nats == pytest.approx(math.log(2))
    assert ixt.params["bin_rule"] == "fixed_range" and ixt.params["bin_scope"] == "array"
    assert ixt.params["distinct_t"] == 4


def test_binning_plane_one_hot_equals_labels_and_x_distinct_equals_h_t():
    r = np.random.default_rng(0)
    t = np.tanh(r.normal(size=(300, 5)))
    y = r.integers(0, 3, size=300)
    a = information_plane(t, y, method="binning", n_bins=4)
    b = information_plane(t, np.eye(3)[y], method="binning", n_bins=4, x=r.normal(size=(300, 12)))
    assert a.i_xt.nats == pytest.approx(b.i_xt.nats, abs=1e-12)
    assert a.i_ty.nats == pytest.approx(b.i_ty.nats, abs=1e-12)
    # data processing: I(T;Y) <= min(I(X;T), H(Y)); I(X;T) <= log n
    assert a.i_ty.nats <= min(a.i_xt.nats, H(y)) + 1e-12
    assert a.i_xt.nats <= math.log(300) + 1e-12


def test_binning_plane_with_repeated_inputs():
    # x has 2 distinct rows, T is a function of x: I(X;T) = H(T) still; with T constant: 0
    x = np.repeat([[0.0], [1.0]], 5, axis=0)
    y = np.repeat([0, 1], 5)
    ixt, _ = information_plane(x * 2 - 1, y, method="binning", x=x)
    assert ixt.nats == pytest.approx(math.log(2))
    ixt, ity = information_plane(np.zeros((10, 3)), y, method="binning", x=x)
    assert ixt.nats == pytest.approx(0.0, abs=1e-15) and ity.nats == pytest.approx(0.0, abs=1e-15)


def test_binning_plane_of_identity_layer_on_12_bit_task():
    data = pytest.importorskip("infodyn.data")
    try:
        x, y = data.load("ib12bit").all()
    except (AttributeError, KeyError, ValueError) as exc:
        pytest.skip(f"ib12bit not available: {exc}")
    ixt, ity = information_plane(x, y, method="binning")
    assert ixt.bits == pytest.approx(12.0, abs=1e-9)
    assert ity.bits == pytest.approx(0.99916, abs=5e-6)


def test_kde_plane_identical_points_give_zero():
    ixt, ity = information_plane(np.ones((12, 3)), np.arange(12) % 3, method="kde", noise_var=0.1)
    assert ixt.nats == pytest.approx(0.0, abs=1e-12) and ity.nats == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("bound", ["upper", "lower"])
def test_kde_plane_small_noise_gives_log_n_and_h_y(bound):
    r = np.random.default_rng(1)
    t = r.normal(size=(60, 2))
    y = r.integers(0, 4, size=60)
    ixt, ity = information_plane(t, y, method="kde", noise_var=1e-9, bound=bound)
    assert ixt.nats == pytest.approx(math.log(60), abs=1e-9)
    assert ity.nats == pytest.approx(H(y), abs=1e-9)
    assert ixt.params == {"noise_var": 1e-9, "bound": bound, "scale": "absolute"}


def test_kde_plane_two_far_clusters():
    # two far clusters of identical points, the label is the cluster: I(X;T) = I(T;Y) = log 2
    t = np.repeat([[0.0], [100.0]], 5, axis=0)
    y = np.repeat([0, 1], 5)
    ixt, ity = information_plane(t, y, method="kde", noise_var=0.1)
    assert ixt.nats == pytest.approx(math.log(2), abs=1e-12)
    assert ity.nats == pytest.approx(math.log(2), abs=1e-12)


def test_kde_plane_matches_estimate_mi_with_labels():
    r = np.random.default_rng(2)
    y = r.integers(0, 2, size=200)
    t = np.tanh(y[:, None] + r.normal(size=(200, 3)))
    _, ity = infodyn.information_plane(t, y, method="kde", noise_var=0.05)
    assert ity.nats == pytest.approx(estimate_mi(t, y, method="kde", noise_var=0.05).nats, abs=1e-12)
    ity_onehot = information_plane(t, np.eye(2)[y], method="kde", noise_var=0.05).i_ty
    assert ity_onehot.nats == pytest.approx(ity.nats, abs=1e-12)


def test_kde_plane_lower_not_above_upper_for_i_xt():
    t = np.random.default_rng(3).normal(size=(150, 2))
    y = np.arange(150) % 2
    up = information_plane(t, y, method="kde", noise_var=0.1).i_xt.nats
    lo = information_plane(t, y, method="kde", noise_var=0.1, bound="lower").i_xt.nats
    assert 0 <= lo <= up <= math.log(150)


def test_plane_bad_input():
    with pytest.raises(ValueError, match="same number of rows"):
        information_plane(np.ones((5, 2)), np.arange(6), method="binning")
    with pytest.raises(ValueError, match="available"):
        information_plane(np.ones((5, 2)), np.arange(5), method="nope")
    with pytest.raises(ValueError, match="NaN or inf"):
        information_plane(np.full((5, 2), np.nan), np.arange(5), method="kde")


def test_gaussian_plane_and_mc_kde_plane_basic_properties():
    r = np.random.default_rng(5)
    y = r.integers(0, 3, size=200)
    t = np.maximum(y[:, None] * 2.0 + r.normal(size=(200, 4)), 0)
    g = information_plane(t, y, method="gaussian", noise_var=0.5, scale="relative")
    assert g.i_xt.nats > g.i_ty.nats > 0
    assert g.i_xt.params["scale"] == "relative" and g.i_xt.method == "gaussian"
    m = information_plane(t, y, method="kde", noise_var=0.5, scale="relative", bound="mc", n_mc=2)
    up = information_plane(t, y, method="kde", noise_var=0.5, scale="relative")
    lo = information_plane(t, y, method="kde", noise_var=0.5, scale="relative", bound="lower")
    assert lo.i_xt.nats - 0.05 < m.i_xt.nats < up.i_xt.nats + 0.05
    assert 0 <= m.i_ty.nats <= H(y) + 0.05

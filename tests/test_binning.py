import math

import numpy as np
import pytest

from infodyn.estimators import estimate_mi
from infodyn.estimators import binning as B


def H(counts):
    p = np.asarray(counts, float) / np.sum(counts)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_equal_width_codes_and_max_in_last_bin():
    a = np.array([[0.0], [0.24], [0.25], [0.5], [0.99], [1.0]])
    codes, info = B.bin_codes(a, n_bins=4)
    assert codes[:, 0].tolist() == [0, 0, 1, 2, 3, 3]
    assert info == {"bin_rule": "equal_width", "n_bins": 4, "bin_scope": "column"}


def test_constant_column_is_one_bin():
    codes, _ = B.bin_codes(np.full((5, 2), 3.0), n_bins=10)
    assert np.all(codes == 0)


def test_column_and_array_scope_differ():
    a = np.c_[np.linspace(0, 1, 5), np.linspace(0, 10, 5)]
    col, _ = B.bin_codes(a, n_bins=5, bin_scope="column")
    arr, _ = B.bin_codes(a, n_bins=5, bin_scope="array")
    assert col[:, 0].tolist() == col[:, 1].tolist() == [0, 1, 2, 3, 4]
    assert arr[:, 0].tolist() == [0, 0, 0, 0, 0] and arr[:, 1].tolist() == [0, 1, 2, 3, 4]


def test_fixed_range_clips_and_counts():
    a = np.array([[-2.0], [-1.0], [0.0], [0.999], [1.0], [3.0]])
    codes, info = B.bin_codes(a, n_bins=2, bin_range=(-1, 1))
    assert codes[:, 0].tolist() == [0, 0, 1, 1, 1, 1]
    assert info["bin_rule"] == "fixed_range" and info["n_clipped"] == 2 and info["bin_range"] == (-1.0, 1.0)


def test_bin_range_from_command_line_string():
    a = np.linspace(-1, 1, 9)[:, None]
    c1, _ = B.bin_codes(a, n_bins=4, bin_range="(-1, 1)")
    c2, _ = B.bin_codes(a, n_bins=4, bin_range=(-1, 1))
    assert np.array_equal(c1, c2)


def test_fixed_width_is_anchored_at_zero():
    a = np.array([[-0.15], [-0.05], [0.0], [0.05], [0.1], [0.25]])
    codes, info = B.bin_codes(a, bin_width=0.1)
    assert codes[:, 0].tolist() == [-2, -1, 0, 0, 1, 2]
    assert info == {"bin_rule": "fixed_width", "bin_width": 0.1}


def test_quantile_bins_have_equal_mass():
    a = np.random.default_rng(0).exponential(size=(1000, 2))
    codes, info = B.bin_codes(a, n_bins=4, bin_rule="quantile")
    for j in range(2):
        assert np.bincount(codes[:, j]).tolist() == [250, 250, 250, 250]
    assert info["bin_rule"] == "quantile"


@pytest.mark.parametrize("kw, needle", [
    (dict(n_bins=0), "n_bins"),
    (dict(bin_width=-1.0), "bin_width"),
    (dict(bin_range=(1, -1)), "bin_range"),
    (dict(bin_range="nope"), "bin_range"),
    (dict(bin_rule="magic"), "bin_rule"),
    (dict(bin_scope="rows"), "bin_scope"),
])
def test_bad_bin_parameters(kw, needle):
    with pytest.raises(ValueError, match=needle):
        estimate_mi(np.random.default_rng(0).normal(size=(20, 2)), np.arange(20) % 2, method="binning", **kw)


def same_partition(a, b):
    """True when the id arrays a and b group the rows identically."""
    pairs = np.unique(np.c_[a, b], axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_row_ids_match_np_unique(dtype):
    r = np.random.default_rng(1)
    codes = r.integers(0, 3, size=(3000, 7)).astype(dtype)  # many duplicate rows
    ids = B.row_ids(codes)
    _, ref = np.unique(codes, axis=0, return_inverse=True)
    assert same_partition(ids, ref.reshape(-1))
    assert ids.max() + 1 == len(np.unique(codes, axis=0))


def test_row_ids_of_float_rows():
    r = np.random.default_rng(2)
    base = r.normal(size=(50, 3))
    rows = base[r.integers(0, 50, size=400)]
    ids = B.row_ids(rows)
    _, ref = np.unique(rows, axis=0, return_inverse=True)
    assert same_partition(ids, ref.reshape(-1))


def test_row_ids_treats_negative_zero_as_zero():
    rows = np.array([[0.0, 1.0], [-0.0, 1.0], [1.0, 0.0]])
    assert B.row_ids(rows).tolist() in ([0, 0, 1], [1, 1, 0])


def test_row_ids_detects_hash_collisions(monkeypatch):
    # every row gets the same hash pair: the element-wise check must catch it and stay exact
    monkeypatch.setattr(B, "_row_hashes", lambda c: (np.zeros(len(c), np.uint64), np.zeros(len(c), np.uint64)))
    codes = np.random.default_rng(3).integers(0, 2, size=(200, 4))
    _, ref = np.unique(codes, axis=0, return_inverse=True)
    assert same_partition(B.row_ids(codes), ref.reshape(-1))


def test_exact_small_cases():
    x = np.array([0.0, 0.0, 1.0, 1.0])
    assert estimate_mi(x, np.array([0, 1, 0, 1]), method="binning").nats == pytest.approx(0.0, abs=1e-15)
    assert estimate_mi(x, np.array([0, 0, 1, 1]), method="binning").nats == pytest.approx(math.log(2))
    # a 2 x 3 joint table of counts
    table = np.array([[3, 1, 0], [1, 2, 5]])
    xs, ys = np.nonzero(table)
    rep = table[xs, ys]
    xv, yv = np.repeat(xs, rep).astype(float), np.repeat(ys, rep)
    truth = H(table.sum(1)) + H(table.sum(0)) - H(table.ravel())
    assert estimate_mi(xv, yv, method="binning").nats == pytest.approx(truth, abs=1e-12)


def test_continuous_y_binned_by_same_rule_and_params_recorded():
    r = np.random.default_rng(4)
    x = r.uniform(size=(400, 2))
    y = x[:, :1].copy()
    est = estimate_mi(x[:, :1], y, method="binning", n_bins=8)
    # x equals y, so the MI is the entropy of its 8 equal-width bins
    assert est.nats == pytest.approx(H(np.bincount(B.bin_codes(y, n_bins=8)[0][:, 0])), abs=1e-12)
    assert est.params["bin_rule"] == "equal_width" and est.params["n_bins"] == 8
    assert est.params["distinct_x"] == est.params["distinct_y"] == 8


def test_deterministic_and_range_fixed_params():
    r = np.random.default_rng(5)
    t = np.tanh(r.normal(size=(500, 6)))
    y = (t[:, 0] > 0).astype(int)
    a = estimate_mi(t, y, method="binning", bin_range=(-1, 1))
    b = estimate_mi(t, y, method="binning", bin_range=(-1, 1))
    assert a.nats == b.nats
    assert a.params["bin_rule"] == "fixed_range" and a.params["n_clipped"] == 0


def test_quantile_rule_is_invariant_to_monotone_maps():
    r = np.random.default_rng(6)
    x = r.normal(size=(2000, 1))
    y = x + r.normal(size=(2000, 1))
    a = estimate_mi(x, y, method="binning", bin_rule="quantile", n_bins=10).nats
    b = estimate_mi(np.exp(x), y**3, method="binning", bin_rule="quantile", n_bins=10).nats
    assert a == pytest.approx(b, abs=1e-12)

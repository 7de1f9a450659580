import math

import numpy as np
import pytest
import torch

from infodyn.estimators import estimate_mi
from infodyn.estimators.renyi import kernel_width, renyi_entropy


def ref_gram(a, sigma):
    d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2)) / len(a)


def ref_entropy(A, alpha):
    lam = np.clip(np.linalg.eigvalsh(A), 0, None)
    lam = lam / lam.sum()
    if alpha == 1:
        lam = lam[lam > 0]
        return float(-(lam * np.log(lam)).sum())
    return float(np.log((lam**alpha).sum()) / (1 - alpha))


def test_identical_points_have_zero_entropy():
    assert renyi_entropy(np.ones((6, 2)), sigma=1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.01, 2.0, 3.0])
def test_distant_points_have_entropy_log_n(alpha):
    a = np.arange(7.0)[:, None] * 100
    assert renyi_entropy(a, alpha, sigma=1.0) == pytest.approx(math.log(7), abs=1e-10)


def test_alpha2_is_minus_log_trace_of_square():
    a = np.random.default_rng(0).normal(size=(60, 3))
    A = ref_gram(a, 0.8)
    assert renyi_entropy(a, 2.0, sigma=0.8) == pytest.approx(-math.log(np.trace(A @ A)), abs=1e-10)


def test_labels_give_renyi_entropy_of_class_distribution():
    y = np.array([0] * 5 + [1] * 3 + [2] * 2)
    p = np.array([0.5, 0.3, 0.2])
    for alpha in (0.5, 2.0, 1.01):
        assert renyi_entropy(y, alpha) == pytest.approx(math.log((p**alpha).sum()) / (1 - alpha), abs=1e-10)


def test_mi_matches_dense_reference():
    r = np.random.default_rng(1)
    x = r.normal(size=(80, 2))
    y = x[:, :1] + 0.5 * r.normal(size=(80, 1))
    A, Bm = ref_gram(x, 0.7), ref_gram(y, 0.4)
    AB = A * Bm / np.trace(A * Bm)
    for alpha in (1.01, 2.0):
        truth = ref_entropy(A, alpha) + ref_entropy(Bm, alpha) - ref_entropy(AB, alpha)
        est = estimate_mi(x, y, method="renyi", alpha=alpha, sigma_x=0.7, sigma_y=0.4)
        assert est.nats == pytest.approx(truth, abs=1e-9)
        assert est.params["sigma_x"] == 0.7 and est.params["sigma_y"] == 0.4


def test_separated_classes_give_label_entropy():
    # clusters far apart against sigma: A o B = A, so I = S(B) = Renyi entropy of the classes
    y = np.repeat([0, 1, 2, 3], [10, 10, 5, 15])
    x = y[:, None] * 100.0 + np.random.default_rng(2).normal(size=(40, 1))
    p = np.bincount(y) / 40
    est = estimate_mi(x, y, method="renyi", alpha=2.0, sigma=1.0)
    assert est.nats == pytest.approx(-math.log((p**2).sum()), abs=1e-9)


def test_alpha2_blocked_path_is_exact_at_any_n():
    r = np.random.default_rng(3)
    x = r.normal(size=(300, 2))
    y = x[:, :1] + r.normal(size=(300, 1))
    lab = (x[:, 0] > 0).astype(int)
    A = ref_gram(x, 0.6)
    for yy, Bm in ((y, ref_gram(y, 0.9)), (lab, (lab[:, None] == lab[None]) / 300.0)):
        AB = A * Bm / np.trace(A * Bm)
        truth = ref_entropy(A, 2.0) + ref_entropy(Bm, 2.0) - ref_entropy(AB, 2.0)
        blk = estimate_mi(x, yy, method="renyi", alpha=2.0, sigma_x=0.6, sigma_y=0.9, max_samples=100,
                          memory_mb=0.1)
        assert blk.params["path"] == "alpha2_blocked"
        assert blk.params["n_used"] == 300 and not blk.params["subsampled"]
        assert blk.nats == pytest.approx(truth, abs=1e-9)


def test_subsample_path_is_seeded_and_recorded():
    r = np.random.default_rng(4)
    x = r.normal(size=(400, 2))
    y = x + r.normal(size=(400, 2))
    a = estimate_mi(x, y, method="renyi", max_samples=150, seed=1)
    b = estimate_mi(x, y, method="renyi", max_samples=150, seed=1)
    c = estimate_mi(x, y, method="renyi", max_samples=150, seed=2)
    assert a.nats == b.nats and a.nats != c.nats
    assert a.params["subsampled"] and a.params["n_used"] == 150
    idx = np.sort(np.random.default_rng(1).choice(400, 150, replace=False))
    assert a.nats == pytest.approx(estimate_mi(x[idx], y[idx], method="renyi").nats, abs=1e-12)


def test_width_rules():
    a = np.random.default_rng(5).normal(size=(500, 3)) * [1.0, 2.0, 3.0]
    s = kernel_width(a, "silverman")
    assert s == pytest.approx(math.sqrt(a.var(0).sum()) * 500 ** (-1 / 7))
    m = kernel_width(a, "median")
    d = np.sqrt(((a[:, None] - a[None]) ** 2).sum(-1))[np.triu_indices(500, 1)]
    assert m == pytest.approx(np.median(d))
    est = estimate_mi(a[:, :1], a[:, 1:], method="renyi", width_rule="median")
    assert est.params["width_rule"] == "median" and est.params["sigma_y"] == pytest.approx(kernel_width(a[:, 1:], "median"))
    with pytest.raises(ValueError, match="width_rule"):
        estimate_mi(a[:, :1], a[:, 1:], method="renyi", width_rule="scott")


def test_alpha_near_one_approaches_von_neumann():
    r = np.random.default_rng(6)
    x = r.normal(size=(100, 2))
    y = x + r.normal(size=(100, 2))
    a = estimate_mi(x, y, method="renyi", alpha=1.0).nats
    b = estimate_mi(x, y, method="renyi", alpha=1.0001).nats
    assert a == pytest.approx(b, abs=1e-3)


def test_increases_with_dependence():
    vals = []
    for rho in (0.0, 0.5, 0.9):
        r = np.random.default_rng(7)
        x = r.normal(size=(300, 1))
        y = rho * x + math.sqrt(1 - rho**2) * r.normal(size=(300, 1))
        vals.append(estimate_mi(x, y, method="renyi").nats)
    assert vals[0] < vals[1] < vals[2]


@pytest.mark.parametrize("kw, needle", [
    (dict(alpha=0.0), "alpha"), (dict(alpha=-2.0), "alpha"), (dict(sigma=-1.0), "sigma"),
    (dict(max_samples=1), "max_samples"),
])
def test_bad_parameters(kw, needle):
    x = np.random.default_rng(8).normal(size=(20, 2))
    with pytest.raises(ValueError, match=needle):
        estimate_mi(x, x[:, :1], method="renyi", **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    r = np.random.default_rng(9)
    x = r.normal(size=(500, 4))
    y = x[:, :2] + r.normal(size=(500, 2))
    a = estimate_mi(x, y, method="renyi", device="cpu").nats
    b = estimate_mi(x, y, method="renyi", device="cuda").nats
    assert a == pytest.approx(b, abs=1e-6)

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.special import logsumexp

from infodyn.estimators import estimate_mi
from infodyn.estimators.kernel import gaussian_noise_entropy, kde_entropy, kde_mi


def ref_entropy(t, var, bound="upper"):
    """Independent dense numpy version of the Kolchinsky-Tracey bounds (Saxe et al.'s form)."""
    t = np.asarray(t, float).reshape(len(t), -1)
    n, d = t.shape

    def kl_upper(v):
        d2 = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)
        lp = logsumexp(-d2 / (2 * v), axis=1) - math.log(n) - d / 2 * math.log(2 * math.pi * v)
        return d / 2 - lp.mean()

    return kl_upper(var) if bound == "upper" else kl_upper(4 * var) + d / 2 * math.log(0.25)


def test_two_far_points_give_log2_plus_noise_entropy():
    t = np.array([[0.0, 0.0], [50.0, 0.0]])
    for bound in ("upper", "lower"):
        assert kde_entropy(t, 0.1, bound) == pytest.approx(math.log(2) + gaussian_noise_entropy(2, 0.1), abs=1e-12)


def test_identical_points_give_noise_entropy():
    t = np.ones((7, 3))
    assert kde_entropy(t, 0.3) == pytest.approx(gaussian_noise_entropy(3, 0.3), abs=1e-12)


@pytest.mark.parametrize("bound", ["upper", "lower"])
def test_matches_dense_reference(bound):
    t = np.random.default_rng(0).normal(size=(300, 4))
    assert kde_entropy(t, 0.5, bound) == pytest.approx(ref_entropy(t, 0.5, bound), abs=1e-10)


@pytest.mark.parametrize("bound", ["upper", "lower"])
def test_blocks_do_not_change_the_value(bound):
    r = np.random.default_rng(1)
    x, y = r.normal(size=(257, 3)), r.integers(0, 4, size=257)
    yc = x[:, :2] + r.normal(size=(257, 2))
    for yy in (y, yc):
        big = kde_mi(x, yy, noise_var=0.2, bound=bound).nats
        tiny = kde_mi(x, yy, noise_var=0.2, bound=bound, memory_mb=0.05).nats  # blocks of a few rows
        assert big == pytest.approx(tiny, abs=1e-12)


def test_bounds_bracket_true_mixture_entropy():
    # 1-D mixture of three Gaussians of variance v at 0, 0.5, 3: entropy by numerical integration
    centres, v = np.array([0.0, 0.5, 3.0]), 0.2

    def p(z):
        return np.mean(np.exp(-(z - centres) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v))

    truth = quad(lambda z: -p(z) * math.log(p(z)), -8, 11, limit=200)[0]
    lo, hi = kde_entropy(centres[:, None], v, "lower"), kde_entropy(centres[:, None], v, "upper")
    assert lo < truth < hi
    assert hi - lo < 0.5


def test_continuous_mi_is_entropy_combination():
    r = np.random.default_rng(2)
    x = r.normal(size=(200, 2))
    y = x[:, :1] + 0.3 * r.normal(size=(200, 1))
    v = 0.1
    joint = np.c_[x, y]
    truth = ref_entropy(x, v) + ref_entropy(y, v) - ref_entropy(joint, v)
    est = estimate_mi(x, y, method="kde", noise_var=v)
    assert est.nats == pytest.approx(truth, abs=1e-10)
    assert est.params == {"noise_var": 0.1, "bound": "upper", "scale": "absolute", "y_mode": "continuous"}


@pytest.mark.parametrize("bound", ["upper", "lower"])
def test_label_mi_is_entropy_minus_class_conditional(bound):
    r = np.random.default_rng(3)
    y = r.integers(0, 3, size=240)
    x = y[:, None] + r.normal(size=(240, 2))
    v = 0.2
    truth = ref_entropy(x, v, bound) - sum(np.mean(y == c) * ref_entropy(x[y == c], v, bound) for c in range(3))
    name = "kde" if bound == "upper" else "kde_lower"
    est = estimate_mi(x, y, method=name, noise_var=v)
    assert est.nats == pytest.approx(truth, abs=1e-10)
    assert est.params["bound"] == bound and est.params["y_mode"] == "labels"


def test_upper_not_below_lower():
    r = np.random.default_rng(4)
    x, y = r.normal(size=(300, 2)), r.integers(0, 2, size=300)
    up = estimate_mi(x, y, method="kde", noise_var=0.1).nats
    lo = estimate_mi(x, y, method="kde", noise_var=0.1, bound="lower").nats
    assert estimate_mi(x, y, method="kde_lower", noise_var=0.1).nats == lo
    assert np.isfinite(up) and np.isfinite(lo)
    for t in (x, x[:50]):
        assert kde_entropy(t, 0.1, "upper") >= kde_entropy(t, 0.1, "lower")


@pytest.mark.parametrize("kw, needle", [
    (dict(noise_var=0.0), "noise_var"), (dict(noise_var=-1.0), "noise_var"),
    (dict(noise_var=float("nan")), "noise_var"), (dict(noise_var="abc"), "noise_var"),
    (dict(bound="middle"), "bound"),
])
def test_bad_parameters(kw, needle):
    with pytest.raises(ValueError, match=needle):
        estimate_mi(np.ones((10, 2)), np.arange(10) % 2, method="kde", **kw)


def test_numpy_scalar_noise_var():
    x = np.random.default_rng(7).normal(size=(50, 2))
    a = estimate_mi(x, x[:, :1], method="kde", noise_var=np.float32(0.25)).nats
    assert a == pytest.approx(estimate_mi(x, x[:, :1], method="kde", noise_var=0.25).nats, abs=1e-12)


def test_torch_tensor_input():
    r = np.random.default_rng(5)
    x = r.normal(size=(100, 2))
    y = x + r.normal(size=(100, 2))
    a = estimate_mi(x, y, method="kde").nats
    b = estimate_mi(torch.from_numpy(x).float(), torch.from_numpy(y).float(), method="kde").nats
    assert a == pytest.approx(b, abs=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    r = np.random.default_rng(6)
    x, y = r.normal(size=(3000, 8)), r.integers(0, 5, size=3000)
    a = estimate_mi(x, y, method="kde", device="cpu").nats
    b = estimate_mi(x, y, method="kde", device="cuda").nats
    assert a == pytest.approx(b, abs=1e-9)


def test_mc_exact_cases():
    # identical points: the mixture is one Gaussian, I = 0 exactly; two far points: log 2 exactly
    assert kde_entropy(np.ones((7, 3)), 0.3, "mc") == pytest.approx(gaussian_noise_entropy(3, 0.3), abs=1e-12)
    t = np.array([[0.0, 0.0], [50.0, 0.0]])
    assert kde_entropy(t, 0.1, "mc") == pytest.approx(math.log(2) + gaussian_noise_entropy(2, 0.1), abs=1e-12)


def test_mc_matches_numerical_integration_between_the_bounds():
    # the 1-D three-component mixture of test_bounds_bracket_true_mixture_entropy
    centres, v = np.array([0.0, 0.5, 3.0]), 0.2

    def p(z):
        return np.mean(np.exp(-(z - centres) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v))

    truth = quad(lambda z: -p(z) * math.log(p(z)), -8, 11, limit=200)[0]
    mc = kde_entropy(centres[:, None], v, "mc", n_mc=40000, seed=1)
    assert mc == pytest.approx(truth, abs=0.01)
    assert kde_entropy(centres[:, None], v, "lower") < mc < kde_entropy(centres[:, None], v, "upper")


def test_mc_is_seeded_and_its_labels_match_dense_reference():
    r = np.random.default_rng(8)
    y = r.integers(0, 3, size=90)
    x = y[:, None] + r.normal(size=(90, 2))
    a = estimate_mi(x, y, method="kde", bound="mc", noise_var=0.2, n_mc=3, seed=4)
    assert a.nats == estimate_mi(x, y, method="kde", bound="mc", noise_var=0.2, n_mc=3, seed=4).nats
    assert a.params["n_mc"] == 3 and a.params["seed"] == 4
    # independent dense computation with the same noise draws
    z = np.random.default_rng(4).standard_normal((3, 90, 2)) * math.sqrt(0.2)
    q = (x[None] + z).reshape(-1, 2)
    zz = (z ** 2).sum(-1).reshape(-1) / 0.4
    d2 = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    yq = np.tile(y, 3)
    lse = logsumexp(-d2 / 0.4, axis=1) + zz
    lse_g = logsumexp(np.where(yq[:, None] == y[None, :], -d2 / 0.4, -np.inf), axis=1) + zz
    counts = np.bincount(y)
    truth = np.mean(lse_g - np.log(counts[yq])) - np.mean(lse - math.log(90))
    assert a.nats == pytest.approx(truth, abs=1e-10)
    # the continuous-y form is the same entropy combination as the bounds' (checked for finiteness
    # and its closeness to the upper bound on a well-separated case)
    yc = x[:, :1] + 0.3 * r.normal(size=(90, 1))
    assert np.isfinite(estimate_mi(x, yc, method="kde", bound="mc", noise_var=0.2).nats)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_for_mc_and_relative():
    r = np.random.default_rng(9)
    x, y = np.maximum(r.normal(size=(2000, 16)), 0) * 50.0, r.integers(0, 5, size=2000)
    for kw in (dict(bound="mc", n_mc=2, scale="relative_total", noise_var=0.03), dict(scale="relative", noise_var=0.1)):
        a = estimate_mi(x, y, method="kde", device="cpu", **kw).nats
        b = estimate_mi(x, y, method="kde", device="cuda", **kw).nats
        assert a == pytest.approx(b, abs=1e-9)

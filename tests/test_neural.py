"""Neural MI bounds: the bound functions on exact score matrices, and short trainings on known MI."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import infodyn
from infodyn.estimators import available, estimate_mi
from infodyn.estimators.neural import bounds

from conftest import correlated_gaussian

METHODS = ["mine", "nwj", "infonce", "tuba", "js", "smile", "interpolated"]
SMALL = dict(hidden=(64, 64), embed_dim=16, batch_size=64, max_steps=600, eval_every=50, lr=2e-3)


@pytest.fixture(autouse=True)
def one_thread():
    # small networks run fastest on one thread, and the test machine is shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _rand_scores(b=7, seed=0, scale=2.0):
    return _t(np.random.default_rng(seed).normal(scale=scale, size=(b, b)))


# ---------------------------------------------------------------------------- bound functions


def _np_reference(s, log_b=None, alpha=None):
    """Independent double-loop implementations of the bounds (numpy, float64)."""
    s = np.asarray(s, dtype=np.float64)
    b = s.shape[0]
    diag = np.array([s[i, i] for i in range(b)])
    off = np.array([s[i, j] for i in range(b) for j in range(b) if i != j])
    out = {
        "infonce": math.log(b) + np.mean([s[i, i] - np.log(np.sum(np.exp(s[i]))) for i in range(b)]),
        "dv": diag.mean() - np.log(np.mean(np.exp(off))),
        "nwj": diag.mean() - np.mean(np.exp(off - 1.0)),
    }
    if log_b is not None:
        sb = s - np.asarray(log_b)[None, :]
        offb = np.array([sb[i, j] for i in range(b) for j in range(b) if i != j])
        out["tuba"] = 1 + np.mean(np.diag(sb)) - np.mean(np.exp(offb))
    if alpha is not None:
        # Poole et al. eq. 11 written out: y_i with K = B-1 x's; rows of st index y.
        st = s.T
        def base(i, leave):
            m = np.mean([np.exp(st[i, k]) for k in range(b) if k != leave])
            return np.log(alpha * m + (1 - alpha) * np.exp(log_b[i]))
        joint = np.mean([st[i, i] - base(i, j) for i in range(b) for j in range(b) if j != i])
        marg = np.mean([np.exp(st[i, j] - base(i, i)) for i in range(b) for j in range(b) if j != i])
        out["interpolated"] = 1 + joint - marg
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounds_match_independent_loops(seed):
    s = _rand_scores(6, seed)
    log_b = np.random.default_rng(seed + 10).normal(size=6)
    ref = _np_reference(s.numpy(), log_b, alpha=0.3)
    assert bounds.infonce(s).item() == pytest.approx(ref["infonce"], abs=1e-10)
    assert bounds.dv(s).item() == pytest.approx(ref["dv"], abs=1e-10)
    assert bounds.nwj(s).item() == pytest.approx(ref["nwj"], abs=1e-10)
    assert bounds.tuba(s, _t(log_b)).item() == pytest.approx(ref["tuba"], abs=1e-10)
    assert bounds.interpolated(s, _t(log_b), 0.3).item() == pytest.approx(ref["interpolated"], abs=1e-10)


def test_infonce_of_diagonal_dominant_matrix_is_log_batch():
    b = 32
    s = _t(np.eye(b) * 200.0)
    assert bounds.infonce(s).item() == pytest.approx(math.log(b), abs=1e-12)
    for seed in range(5):  # and never above it
        assert bounds.infonce(_rand_scores(b, seed, scale=30.0)).item() <= math.log(b) + 1e-12


def test_dv_nwj_identities():
    s = _rand_scores(9, 3)
    # DV ignores constant shifts; NWJ is below DV and meets it at the best shift c = 1 - log E_q e^f
    assert bounds.dv(s + 4.2).item() == pytest.approx(bounds.dv(s).item(), abs=1e-12)
    assert bounds.nwj(s).item() < bounds.dv(s).item()
    c = 1.0 - bounds.logmeanexp_nodiag(s)
    assert bounds.nwj(s + c).item() == pytest.approx(bounds.dv(s).item(), abs=1e-12)
    # constant critic: DV = 0, NWJ = c - e^(c-1) (0 at c = 1)
    assert bounds.dv(torch.full((5, 5), 3.0, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)
    assert bounds.nwj(torch.full((5, 5), 0.5, dtype=torch.float64)).item() == pytest.approx(0.5 - math.exp(-0.5))
    # TUBA with the constant baseline log a = 1 is NWJ; JS's value is NWJ of f + 1
    assert bounds.tuba(s, torch.ones(9, dtype=torch.float64)).item() == pytest.approx(bounds.nwj(s).item())
    assert bounds.js(s).item() == pytest.approx(bounds.nwj(s + 1).item())


def test_smile_clip_and_interpolated_limits():
    s = _rand_scores(8, 4, scale=4.0)
    assert bounds.smile(s, None).item() == pytest.approx(bounds.dv(s).item())
    assert bounds.smile(s, 1e3).item() == pytest.approx(bounds.dv(s).item())
    assert bounds.smile(s, 1.0).item() != pytest.approx(bounds.dv(s).item())
    log_b = _t(np.random.default_rng(5).normal(size=8))
    assert bounds.interpolated(s, log_b, 0.0).item() == pytest.approx(bounds.tuba(s, log_b).item(), abs=1e-12)
    # the leave-one-out mean stays exact when one score dominates its row
    s2 = s.clone()
    s2[2, 3] = 300.0
    ref = _np_reference(s2.numpy(), log_b.numpy(), alpha=0.5)["interpolated"]
    assert bounds.interpolated(s2, log_b, 0.5).item() == pytest.approx(ref, rel=1e-9)


def test_js_and_smile_train_with_the_js_gradient():
    s = _rand_scores(6, 6).requires_grad_(True)
    (g_js,) = torch.autograd.grad(bounds.js(s), s)
    (g_smile,) = torch.autograd.grad(bounds.smile(s, 5.0), s)
    (g_ref,) = torch.autograd.grad(bounds.js_fgan(s), s)
    assert torch.allclose(g_js, g_ref) and torch.allclose(g_smile, g_ref)


def test_mine_moving_average_gradient():
    s = _rand_scores(6, 7).requires_grad_(True)
    log_ema = torch.tensor(0.3, dtype=torch.float64)
    rate = 0.1
    obj, new = bounds.mine_objective(s, log_ema, rate)
    assert obj.item() == pytest.approx(bounds.dv(s).item(), abs=1e-12)
    lme = bounds.logmeanexp_nodiag(s.detach())
    expected_ema = (1 - rate) * math.exp(0.3) + rate * math.exp(lme.item())
    assert new.item() == pytest.approx(math.log(expected_ema))
    (g,) = torch.autograd.grad(obj, s)
    b = 6
    ref = -torch.exp(s.detach()) / (b * (b - 1)) / expected_ema  # -grad E_q[e^f] / ema
    ref.fill_diagonal_(1.0 / b)
    assert torch.allclose(g, ref, atol=1e-12)


def test_bounds_with_the_true_critic_reach_gaussian_truth():
    # optimal critic f = log p(y|x) - log p(y) for a correlated Gaussian pair; B large
    rho, b = 0.6, 1500
    x, y, truth = correlated_gaussian(b, rho, seed=8)
    x, y = x[:, 0], y[:, 0]
    f = (stats.norm.logpdf(y[None, :], loc=rho * x[:, None], scale=math.sqrt(1 - rho**2))
         - stats.norm.logpdf(y[None, :]))
    s = _t(f)
    for name, val in [("dv", bounds.dv(s)), ("nwj", bounds.nwj(s + 1)), ("infonce", bounds.infonce(s)),
                      ("js", bounds.js(s)), ("smile", bounds.smile(s, 5.0)),
                      ("tuba", bounds.tuba(s, torch.zeros(b, dtype=torch.float64)))]:
        assert val.item() == pytest.approx(truth, abs=0.05), name


def test_bound_shape_errors():
    with pytest.raises(ValueError, match=r"square .*shape \(3, 4\)"):
        bounds.infonce(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"log_baseline must have shape \(3,\)"):
        bounds.tuba(torch.zeros(3, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="alpha"):
        bounds.interpolated(torch.zeros(3, 3), torch.zeros(3), 1.5)


# ---------------------------------------------------------------------------- trained estimators


def test_all_methods_registered():
    assert set(METHODS) <= set(available())
    assert set(METHODS) <= set(infodyn.estimators.planes_available())


@pytest.mark.parametrize("method", ["infonce", "smile", "nwj", "mine"])
def test_training_reaches_gaussian_truth(method):
    x, y, truth = correlated_gaussian(3000, 0.8, d=1, seed=11)  # 0.511 nats
    est = estimate_mi(x, y, method=method, seed=0, **SMALL)
    assert abs(est.nats - truth) < 0.15, (method, est)
    assert est.ci is not None and est.ci[0] < est.nats < est.ci[1]
    assert est.params["test_batches"] >= 5 and est.params["n_test"] == 600


def test_discrete_label_against_continuous():
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 3, size=3000)
    means = np.array([-2.0, 0.0, 2.0])
    x = means[labels] + rng.normal(size=3000)
    # truth: I = h(X) - h(X|Y), h(X) of the equal-weight mixture by quadrature
    mix = lambda t: np.mean([stats.norm.pdf(t, m) for m in means], axis=0)
    hx = integrate.quad(lambda t: -mix(t) * np.log(mix(t)), -12, 12, limit=200)[0]
    truth = hx - 0.5 * math.log(2 * math.pi * math.e)
    est = estimate_mi(x, labels, method="infonce", seed=0, **SMALL)
    assert abs(est.nats - truth) < 0.15, (truth, est)


def test_infonce_never_exceeds_log_batch():
    x, y, truth = correlated_gaussian(2000, 0.99999, d=5, seed=13)  # about 27 nats
    est = estimate_mi(x, y, method="infonce", seed=0, hidden=(32,), embed_dim=8, batch_size=16,
                      max_steps=300, eval_every=50, lr=3e-3)
    assert truth > 20
    assert est.nats <= math.log(16) + 1e-9
    assert est.ci[1] <= math.log(16) + 1e-9
    assert est.nats > 0.8 * math.log(16)  # saturated, not merely failing


def test_same_seed_same_numbers():
    x, y, _ = correlated_gaussian(600, 0.7, d=2, seed=14)
    kw = dict(hidden=(32,), embed_dim=8, batch_size=32, max_steps=100, eval_every=50)
    a = estimate_mi(x, y, method="nwj", seed=3, **kw)
    b = estimate_mi(x, y, method="nwj", seed=3, **kw)
    c = estimate_mi(x, y, method="nwj", seed=4, **kw)
    assert a.nats == b.nats and a.ci == b.ci
    assert a.nats != c.nats


def test_diverging_critic_raises_clear_error():
    x, y, _ = correlated_gaussian(600, 0.9, d=2, seed=15)
    with pytest.raises(ValueError, match=r"diverged.*smaller learning rate.*smile"):
        estimate_mi(x, y, method="nwj", seed=0, lr=1e4, hidden=(32,), embed_dim=8, batch_size=32,
                    max_steps=200, eval_every=20)


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(batch_size=1), "batch_size"),
        (dict(lr=-1.0), "lr"),
        (dict(hiden=(3,)), "unknown parameter"),
        (dict(critic="resnet"), "unknown critic"),
        (dict(activation="sine"), "unknown activation"),
        (dict(val_frac=0.5, test_frac=0.5), "val_frac"),
        (dict(hidden=(0, 4)), "positive layer widths"),
        (dict(hidden="a,b"), "positive layer widths"),
    ],
)
def test_bad_parameters(kw, needle):
    x, y, _ = correlated_gaussian(100, 0.5, seed=16)
    with pytest.raises(ValueError, match=needle):
        estimate_mi(x, y, method="infonce", max_steps=2, **kw)


def test_hidden_widths_from_cli_strings():
    x, y, _ = correlated_gaussian(200, 0.5, seed=22)
    est = estimate_mi(x, y, method="infonce", hidden="16,8", max_steps=2)
    assert est.params["hidden"] == (16, 8)


def test_too_few_samples():
    with pytest.raises(ValueError, match="at least 20 samples"):
        estimate_mi(np.ones((10, 2)), np.ones((10, 2)), method="mine")


@pytest.mark.parametrize("critic", ["concat", "bilinear"])
def test_other_critics_train(critic):
    x, y, truth = correlated_gaussian(1500, 0.8, d=1, seed=17)
    est = estimate_mi(x, y, method="infonce", seed=0, critic=critic, hidden=(32,), embed_dim=8,
                      batch_size=32, max_steps=400, eval_every=50, lr=3e-3)
    assert abs(est.nats - truth) < 0.2, (critic, est)


def test_information_plane_with_neural_bound():
    rng = np.random.default_rng(18)
    x = rng.normal(size=(2000, 2))
    t = x + 0.5 * rng.normal(size=(2000, 2))  # I(X;T) = 2 * 0.5 log(1 + 1/0.25) = log 5
    labels = (t[:, 0] > 0).astype(int)
    plane = infodyn.information_plane(t, labels, method="infonce", x=x, seed=0, **SMALL)
    assert abs(plane.i_xt.nats - math.log(5)) < 0.25
    assert 0.1 < plane.i_ty.nats <= math.log(2) + 0.05
    with pytest.raises(ValueError, match="needs x="):
        infodyn.information_plane(t, labels, method="mine")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_mixed_precision():
    x, y, truth = correlated_gaussian(3000, 0.8, d=1, seed=19)
    est = estimate_mi(x, y, method="smile", seed=0, device="cuda", amp=True, **SMALL)
    assert est.params["device"].startswith("cuda") and est.params["amp"] is True
    assert abs(est.nats - truth) < 0.15


def test_thread_setting_is_restored():
    x, y, _ = correlated_gaussian(200, 0.5, seed=20)
    torch.set_num_threads(2)
    est = estimate_mi(x, y, method="infonce", hidden=(8,), embed_dim=4, max_steps=5)
    assert est.params["num_threads"] == 1 and torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="num_threads"):
        estimate_mi(x, y, method="infonce", num_threads=0, max_steps=5)


def _true_critic_batches(mi, n_batches=40, b=64, seed=21):
    """Per-batch score matrices of the optimal critic log p(y|x)/p(y) for a 1-D Gaussian pair."""
    rho = math.sqrt(1 - math.exp(-2 * mi))
    x, y, truth = correlated_gaussian(n_batches * b, rho, seed=seed)
    assert truth == pytest.approx(mi)
    x, y = x[:, 0].reshape(n_batches, b), y[:, 0].reshape(n_batches, b)
    sd = math.sqrt(1 - rho**2)
    for xb, yb in zip(x, y):
        f = stats.norm.logpdf(yb[None, :], loc=rho * xb[:, None], scale=sd) - stats.norm.logpdf(yb[None, :])
        yield _t(f)


def test_variance_of_nwj_and_dv_grows_with_true_mi():
    # the documented limit, with the optimal critic: NWJ/DV spread grows with I, InfoNCE's stays small
    def spreads(mi):
        vals = np.array([[bounds.nwj(s + 1).item(), bounds.dv(s).item(), bounds.infonce(s).item()]
                         for s in _true_critic_batches(mi)])
        return vals.std(axis=0)

    low, high = spreads(0.5), spreads(8.0)
    assert high[0] > 5 * low[0] and high[1] > 5 * low[1]
    assert high[2] < low[2]  # InfoNCE: saturated at log B, its spread shrinks

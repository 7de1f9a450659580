"""infodyn.landscape: exact cases (quadratic losses, linear least squares), weight distances,
loss paths, gradient PCA against numpy, the analysis rows, the figure and bad input."""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from infodyn.landscape._common import cpu_threads
from infodyn.landscape import (HessianOperator, barrier_height, checkpoint_measures, gradient_norm, gradient_principal_share,
                               hessian_top_eigenvalue, hessian_trace, hessian_vector_product, loss_path,
                               measure_names, sharpness_vs_transfer, trajectory_distances, weight_distance)


class Vec(nn.Module):
    """A bare parameter vector w (float64)."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(w, dtype=torch.float64).clone())


def sym(eigs, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(eigs), len(eigs))))
    return q @ np.diag(eigs) @ q.T


def quad_loss(a):
    at = torch.as_tensor(a)
    return lambda m, batch: 0.5 * m.w @ at @ m.w


EIGS = np.concatenate([[5.0, 4.0], np.linspace(0.1, 3.5, 28)])


@pytest.mark.parametrize("method", ["power", "lobpcg"])
@pytest.mark.parametrize("start", ["gradient", "random"])
def test_top_eigenvalue_of_quadratic(method, start):
    a = sym(EIGS)
    model = Vec(np.ones(len(EIGS)))
    r = hessian_top_eigenvalue(model, quad_loss(a), [0], method=method, start=start)
    assert r.converged
    assert abs(r.value - 5.0) / 5.0 < 1e-4
    assert r.n_hvp >= r.iters >= 2
    lo, hi = r.ci
    assert lo <= 5.0 <= hi  # value +- residual holds the eigenvalue
    # the returned vector is the top eigenvector (up to sign)
    top = np.linalg.eigh(a)[1][:, -1]
    assert abs(abs(float(np.dot(r.vector.numpy(), top))) - 1) < 1e-2


def test_top_eigenvalue_seeded_and_deterministic():
    a = sym(EIGS, seed=1)
    model = Vec(np.ones(len(EIGS)))
    r1 = hessian_top_eigenvalue(model, quad_loss(a), [0], seed=3)
    r2 = hessian_top_eigenvalue(model, quad_loss(a), [0], seed=3)
    r3 = hessian_top_eigenvalue(model, quad_loss(a), [0], seed=4)
    assert r1.value == r2.value and r1.iters == r2.iters
    assert r1.value != r3.value


def test_power_finds_largest_magnitude_lobpcg_largest_value():
    eigs = np.array([-10.0, 3.0, 2.0, 1.0, 0.5])
    a = sym(eigs, seed=2)
    model = Vec(np.ones(5))
    assert abs(hessian_top_eigenvalue(model, quad_loss(a), [0], method="power").value + 10.0) < 1e-3
    assert abs(hessian_top_eigenvalue(model, quad_loss(a), [0], method="lobpcg").value - 3.0) < 3e-4


def test_bad_options_are_refused():
    model = Vec(np.ones(3))
    for kw, msg in (({"method": "lanczos"}, "method"), ({"start": "ones"}, "start"), ({"iters": 0}, "iters"),
                    ({"tol": -1.0}, "tol"), ({"num_threads": 0}, "num_threads")):
        with pytest.raises(ValueError, match=msg):
            hessian_top_eigenvalue(model, quad_loss(np.eye(3)), [0], **kw)
    with pytest.raises(ValueError, match="samples"):
        hessian_trace(model, quad_loss(np.eye(3)), [0], samples=1)


def test_not_converged_warns():
    a = sym(np.linspace(1.0, 0.999, 20))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        r = hessian_top_eigenvalue(Vec(np.ones(20)), quad_loss(a), [0], iters=3, tol=1e-12)
    assert not r.converged and r.iters == 3


def test_trace_of_quadratic_within_its_error():
    a = sym(EIGS, seed=5)
    model = Vec(np.ones(len(EIGS)))
    r = hessian_trace(model, quad_loss(a), [0], samples=200, seed=0)
    assert r.stderr > 0
    assert abs(r.value - EIGS.sum()) <= 3 * r.stderr
    assert r.ci[0] < r.value < r.ci[1]
    # the stated error is the right size: Var(z.Az) = 2 sum_{i != j} A_ij^2 for Rademacher z
    sd = math.sqrt(2 * (np.sum(a ** 2) - np.sum(np.diag(a) ** 2)))
    assert 0.7 < r.stderr / (sd / math.sqrt(200)) < 1.3
    assert hessian_trace(model, quad_loss(a), [0], samples=200, seed=0).value == r.value
    g = hessian_trace(model, quad_loss(a), [0], samples=300, seed=1, distribution="gaussian")
    assert abs(g.value - EIGS.sum()) <= 3.5 * g.stderr


def test_trace_exact_for_diagonal_hessian():
    d = np.array([3.0, 1.0, 0.5, 2.0])
    r = hessian_trace(Vec(np.zeros(4)), quad_loss(np.diag(d)), [0], samples=4)
    assert r.value == pytest.approx(d.sum(), abs=1e-12) and r.stderr == pytest.approx(0.0, abs=1e-12)


def linear_problem(n=43, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.normal(size=(n, d)) * [1, 2, 0.5, 1.5, 1])
    y = torch.tensor(rng.normal(size=(n, 1)))
    model = nn.Linear(d, 1).double()
    loss = lambda m, b: 0.5 * nn.functional.mse_loss(m(b[0]), b[1])  # Hessian = Z^T Z / n, Z = [X, 1]
    batches = [(x[i:i + 13], y[i:i + 13]) for i in range(0, n, 13)]  # 13, 13, 13, 4: weights matter
    z = np.hstack([x.numpy(), np.ones((n, 1))])
    return model, loss, batches, x, y, z.T @ z / n


def test_linear_least_squares_hessian():
    model, loss, batches, x, y, h = linear_problem()
    ev = np.linalg.eigvalsh(h)
    for method in ("power", "lobpcg"):
        r = hessian_top_eigenvalue(model, loss, batches, method=method)
        assert abs(r.value - ev[-1]) / ev[-1] < 1e-4, method
    assert r.n == 43
    # one product is exact (order of named_parameters: weight (5), bias (1))
    v = torch.tensor(np.random.default_rng(1).normal(size=6))
    assert np.allclose(hessian_vector_product(model, loss, batches, v).numpy(), h @ v.numpy(), atol=1e-12)
    t = hessian_trace(model, loss, batches, samples=100, seed=2)
    assert abs(t.value - np.trace(h)) <= 3 * t.stderr


def test_retained_graphs_give_the_same_products():
    model, loss, batches, x, y, h = linear_problem()
    v = torch.tensor(np.random.default_rng(3).normal(size=6))
    for retain in (True, False, "auto"):
        op = HessianOperator(model, loss, batches, retain_graph=retain)
        assert np.allclose(op(v).numpy(), h @ v.numpy(), atol=1e-12)
        assert np.allclose(op(2 * v).numpy(), 2 * h @ v.numpy(), atol=1e-12)  # second call: reused graphs
        assert (op._graphs is not None) == (retain is True) and op.n_hvp == 2
    one = HessianOperator(model, loss, [(x, y)])  # "auto" keeps the single batch's graph
    assert np.allclose(one(v).numpy(), h @ v.numpy(), atol=1e-12) and one._graphs is not None
    assert np.allclose(one(v).numpy(), h @ v.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="retain_graph"):
        HessianOperator(model, loss, batches, retain_graph="yes")


def test_products_never_form_the_hessian():
    # 300k parameters: the Hessian would hold 9e10 entries; products go through
    model = nn.Linear(600, 500)
    x = torch.randn(8, 600, generator=torch.Generator().manual_seed(0))
    loss = lambda m, b: (m(b) ** 2).mean()
    v = torch.randn(sum(p.numel() for p in model.parameters()), generator=torch.Generator().manual_seed(1))
    hv = hessian_vector_product(model, loss, [x], v)
    assert hv.shape == v.shape and torch.isfinite(hv).all()


def test_gradient_norm_closed_form():
    model, loss, batches, x, y, _ = linear_problem()
    with torch.no_grad():
        r = model(x) - y
        z = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        g = z.T @ r / len(x)
    assert gradient_norm(model, loss, batches) == pytest.approx(float(g.norm()), rel=1e-10)


def test_principal_share_matches_numpy_pca():
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(12, 6)) * [3, 1, 1, 0.5, 0.2, 0.1] + 2.0  # gradient of -w.b is -b
    model = Vec(np.zeros(6))
    loss = lambda m, b: -(m.w * b).sum()
    batches = [torch.tensor(g)[None] for g in grads]
    r = gradient_principal_share(model, loss, batches)
    c = grads - grads.mean(0)
    s = np.linalg.svd(c, compute_uv=False) ** 2
    assert r.value == pytest.approx(s[0] / s.sum(), rel=1e-10)
    assert r.top == pytest.approx(s[0] / 11, rel=1e-10) and r.total == pytest.approx(s.sum() / 11, rel=1e-10)
    assert r.ci[0] < r.value < r.ci[1]
    # jackknife by hand: the share of each delete-one set
    jack = []
    for i in range(12):
        ci = np.delete(grads, i, 0)
        si = np.linalg.svd(ci - ci.mean(0), compute_uv=False) ** 2
        jack.append(si[0] / si.sum())
    se = math.sqrt(11 / 12 * np.sum((np.array(jack) - np.mean(jack)) ** 2))
    assert r.ci[1] == pytest.approx(min(1.0, r.value + 1.959964 * se), rel=1e-6)
    u = gradient_principal_share(model, loss, batches, center=False, interval=False)
    s2 = np.linalg.svd(grads, compute_uv=False) ** 2
    assert u.value == pytest.approx(s2[0] / s2.sum(), rel=1e-10) and u.ci is None
    with pytest.raises(ValueError, match="at least 3"):
        gradient_principal_share(model, loss, batches[:2])


def test_weight_distances():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    s0 = {k: v.clone() for k, v in net.state_dict().items()}
    d0 = weight_distance(s0, net)
    assert (d0["distance"] == 0).all() and list(d0["layer"]) == ["0", "1", "2", "model"]
    assert d0["n_params"].iloc[-1] == 4 * 3 + 3 + 3 + 3 + 3 * 2 + 2  # running stats left out
    s1 = {k: v.clone() for k, v in s0.items()}
    delta = torch.full((3, 4), 0.5)
    s1["0.weight"] += delta
    s1["2.bias"] += torch.tensor([3.0, 4.0])
    s1["1.running_mean"] += 100.0  # not a trained parameter: ignored by default
    d = weight_distance(s0, s1).set_index("layer")
    assert d.loc["0", "distance"] == pytest.approx(float(delta.norm()))
    assert d.loc["2", "distance"] == pytest.approx(5.0)
    assert d.loc["1", "distance"] == 0
    assert d.loc["model", "distance"] == pytest.approx(math.sqrt(float(delta.norm()) ** 2 + 25))
    norm0 = math.sqrt(float(s0["0.weight"].pow(2).sum() + s0["0.bias"].pow(2).sum()))
    assert d.loc["0", "relative"] == pytest.approx(float(delta.norm()) / norm0)
    withstats = weight_distance(s0, s1, include_stats=True).set_index("layer")
    assert withstats.loc["1", "distance"] == pytest.approx(100 * math.sqrt(3))
    tr = trajectory_distances([s0, s1, s1])
    model_rows = tr[tr["layer"] == "model"]
    assert list(model_rows["kind"]) == ["from_init", "from_init", "from_previous", "from_init", "from_previous"]
    assert model_rows["distance"].tolist() == pytest.approx([0, d.loc["model", "distance"], d.loc["model", "distance"],
                                                             d.loc["model", "distance"], 0])
    bad = dict(s1)
    bad["2.weight"] = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"2\.weight.*\(2, 3\).*\(2, 4\)"):
        weight_distance(s0, bad)
    del bad["2.weight"]
    with pytest.raises(ValueError, match="2.weight"):
        weight_distance(s0, bad)


def test_loss_path_on_quadratics():
    a_conv = sym([2.0, 1.0, 0.5])
    wa, wb = np.array([1.0, 0.0, 2.0]), np.array([-1.0, 1.0, 0.5])
    model = Vec(np.zeros(3))
    df = loss_path(model, {"w": torch.tensor(wa)}, {"w": torch.tensor(wb)}, quad_loss(a_conv), [0], points=11)
    lq = lambda w, a: 0.5 * w @ a @ w
    exp = [lq((1 - t) * wa + t * wb, a_conv) for t in np.linspace(0, 1, 11)]
    assert np.allclose(df["loss"], exp, atol=1e-12)
    assert df.attrs["barrier"] == 0.0  # convex: never above the chord
    assert torch.equal(model.w.detach(), torch.zeros(3, dtype=torch.float64))  # the model is untouched
    a_ind = sym([-2.0, 1.0, 0.5], seed=3)
    df2 = loss_path(model, {"w": torch.tensor(wa)}, {"w": torch.tensor(wb)}, quad_loss(a_ind), [0], points=11)
    q = (wb - wa) @ a_ind @ (wb - wa)
    if q < 0:  # excess = -alpha (1 - alpha) q / 2, largest at alpha = 1/2
        assert barrier_height(df2) == pytest.approx(-q / 8, rel=1e-10)
    else:
        assert barrier_height(df2) == 0.0
    with pytest.raises(ValueError, match="include 0 and 1"):
        loss_path(model, {"w": torch.tensor(wa)}, {"w": torch.tensor(wb)}, quad_loss(a_ind), [0], alphas=[0.2, 1])


def test_loss_path_barrier_is_positive_for_indefinite_direction():
    a = np.diag([-2.0, 1.0])
    wa, wb = np.array([1.0, 0.0]), np.array([-1.0, 0.0])  # through the maximum along the first axis
    df = loss_path(Vec(np.zeros(2)), {"w": torch.tensor(wa)}, {"w": torch.tensor(wb)}, quad_loss(a), [0], points=5)
    assert barrier_height(df) == pytest.approx(2.0 * 4 / 8)


# ------------------------------------------------------------------ bad input


def test_train_mode_dropout_warns():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    x = torch.randn(10, 3)
    loss = lambda m, b: m(b).pow(2).mean()
    with pytest.warns(RuntimeWarning, match=r"model\.eval\(\)"):
        hessian_trace(model, loss, [x], samples=2)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hessian_top_eigenvalue(model, loss, [x])


def test_loss_without_parameters_is_refused():
    model = nn.Linear(3, 1)
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="does not depend on the model's parameters"):
        hessian_top_eigenvalue(model, lambda m, b: b.sum(), [x])
    other = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="does not depend on any trainable parameter"):
        hessian_trace(model, lambda m, b: (other * b).sum(), [x])
    with pytest.raises(ValueError, match="scalar"):
        gradient_norm(model, lambda m, b: m(b), [x])


def test_bad_batches_are_refused():
    model = nn.Linear(3, 1)
    loss = lambda m, b: m(b).sum()
    with pytest.raises(ValueError, match="one-shot"):
        hessian_top_eigenvalue(model, loss, (torch.randn(2, 3) for _ in range(2)))
    with pytest.raises(ValueError, match="no batch"):
        hessian_top_eigenvalue(model, loss, [])
    with pytest.raises(ValueError, match="wrap it in a list"):
        gradient_norm(model, loss, torch.randn(2, 3))
    # a callable returning fresh iterators is fine
    assert gradient_norm(model, loss, lambda: iter([torch.ones(2, 3)])) > 0


# ------------------------------------------------------------------ analysis rows and figure


def small_run(seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    first = {k: v.clone() for k, v in model.state_dict().items()}
    xt, yt = torch.tensor(x), torch.tensor(y)

    def steps(k):
        for _ in range(k):
            model.zero_grad()
            nn.functional.cross_entropy(model(xt), yt).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.5 * p.grad

    with cpu_threads(model):  # one thread: many tiny steps on a busy 2-core box
        steps(20)
        prev = {k: v.clone() for k, v in model.state_dict().items()}
        steps(20)
    return model, first, prev, {k: v.clone() for k, v in model.state_dict().items()}, x, y


def test_checkpoint_measures_rows():
    model, first, prev, state, x, y = small_run()
    opts = {"max_samples": 200, "batch_size": 64, "pc_batch_size": 16, "pc_batches": 8, "trace_samples": 8,
            "path_points": 5}
    rows = checkpoint_measures(model, state, prev, first, x, y, "sharpness,hessian_trace,grad_norm,grad_pc,"
                               "weight_distance,loss_barrier", seed=1, device="cpu", options=opts)
    df = pd.DataFrame(rows)
    assert (df["error"] == "").all(), df["error"].tolist()
    assert set(df["measure"]) == {"sharpness", "hessian_trace", "grad_norm", "grad_pc", "weight_distance_init",
                                  "weight_distance_prev", "loss_barrier"}
    assert set(df["layer"]) == {"model", "0", "2"}
    sharp = df[df["measure"] == "sharpness"].iloc[0]
    assert sharp["value"] > 0 and sharp["ci_low"] <= sharp["value"] <= sharp["ci_high"]
    assert json.loads(sharp["params"])["converged"] is True and sharp["n"] == 200
    # the same number as a direct call on the same seeded subsample
    sub = np.sort(np.random.default_rng(1).permutation(240)[:200])
    xs, ys = torch.tensor(x[sub]), torch.tensor(y[sub])
    direct = hessian_top_eigenvalue(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                                    [(xs[i:i + 64], ys[i:i + 64]) for i in range(0, 200, 64)], seed=1)
    assert sharp["value"] == pytest.approx(direct.value, rel=1e-6)
    wd = df[(df["measure"] == "weight_distance_prev") & (df["layer"] == "model")].iloc[0]
    assert wd["value"] == pytest.approx(weight_distance(prev, state).iloc[-1]["distance"])
    assert 0 < df[df["measure"] == "grad_pc"].iloc[0]["value"] <= 1
    assert df[df["measure"] == "loss_barrier"].iloc[0]["value"] >= 0
    # determinism; the first checkpoint has no previous one and zero distance from itself
    again = checkpoint_measures(model, state, prev, first, x, y, ["sharpness", "grad_pc"], seed=1, device="cpu",
                                options=opts)
    assert [r["value"] for r in again] == df[df["measure"].isin(["sharpness", "grad_pc"])]["value"].tolist()
    wrapped = {**{f"module.{k}": v for k, v in prev.items()}, "epoch": 3}  # DataParallel names, extra entries
    again = checkpoint_measures(model, state, wrapped, first, x, y, ["weight_distance"], device="cpu")
    assert [r["value"] for r in again if r["measure"] == "weight_distance_prev"] == \
        df[df["measure"] == "weight_distance_prev"]["value"].tolist()
    rows0 = checkpoint_measures(model, first, None, first, x, y, ["weight_distance", "loss_barrier"], device="cpu")
    assert {r["measure"] for r in rows0} == {"weight_distance_init"} and all(r["value"] == 0 for r in rows0)
    assert model.training  # mode restored


def test_checkpoint_measures_failures_become_error_rows():
    model, first, prev, state, x, y = small_run()
    bad_y = y + 5  # labels beyond the 3 class scores
    rows = checkpoint_measures(model, state, prev, first, x, bad_y, ["grad_norm", "weight_distance"], device="cpu")
    g = [r for r in rows if r["measure"] == "grad_norm"]
    assert len(g) == 1 and math.isnan(g[0]["value"]) and "labels range" in g[0]["error"]
    assert all(r["error"] == "" for r in rows if r["measure"].startswith("weight_distance"))
    with pytest.raises(ValueError, match="unknown landscape measure"):
        checkpoint_measures(model, state, prev, first, x, y, ["flatness"])
    assert measure_names("weight_distance") == ["weight_distance_init", "weight_distance_prev"]


def test_sharpness_vs_transfer_figure(tmp_path):
    rows = []
    for run in ("a", "b"):
        for ep in range(1, 6):
            base = dict(run=run, checkpoint=f"e{ep}.pt", epoch=ep, step=ep * 10, task="source", error="")
            rows.append({**base, "layer": "model", "measure": "sharpness", "value": 1.0 + ep})
            rows.append({**base, "layer": "fc1", "measure": "linear_probe_acc", "task": "target", "value": 0.5 + ep / 20})
            rows.append({**base, "layer": "fc2", "measure": "linear_probe_acc", "task": "target", "value": 0.4})
    df = pd.DataFrame(rows)
    out = sharpness_vs_transfer(df, tmp_path / "s.png")
    assert out is not None and out.stat().st_size > 1000
    assert sharpness_vs_transfer(df[df["measure"] != "sharpness"], tmp_path / "none.png") is None
    with pytest.raises(ValueError, match="layer 'fc9'"):
        sharpness_vs_transfer(df, tmp_path / "x.png", layer="fc9")
    only = sharpness_vs_transfer(df[df["measure"] == "sharpness"], tmp_path / "only.png")
    assert only is not None and only.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model, _, _, _, x, y = small_run()
    model.eval()
    loss = lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1])
    batches = [(torch.tensor(x), torch.tensor(y))]
    cpu = hessian_top_eigenvalue(model, loss, batches, seed=0)
    gpu = hessian_top_eigenvalue(model, loss, batches, seed=0, device="cuda")
    assert gpu.value == pytest.approx(cpu.value, rel=1e-3)

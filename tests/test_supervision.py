"""Tests of infodyn.supervision: capacities, simulator, information, learning, cost, CLI, notebook."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from infodyn.supervision import (
    CostModel, Sample, TrainConfig, best_signal, capacity_bits, capacity_nats, cost_benefit, draw_signal,
    evaluate_encoder, hard_labels, information_table, learning_curves, make_eval_sets, make_task, plugin_mi,
    signal_information, soft_labels, train_encoder, triplets,
)
from infodyn.supervision.information import vote_patterns

ROOT = Path(__file__).resolve().parents[1]


def _h_bits(p):
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# ---------------------------------------------------------------------------------------------
# capacity


@pytest.mark.parametrize("k", [2, 3, 7, 10, 64, 1000])
def test_hard_capacity_is_log2_k(k):
    assert capacity_bits("hard", k) == pytest.approx(math.log2(k), abs=0, rel=1e-15)
    assert capacity_nats("hard", k) == pytest.approx(math.log(k), rel=1e-15)


@pytest.mark.parametrize("k, m", [(2, 1), (2, 5), (3, 2), (4, 3), (5, 4), (6, 1)])
def test_soft_capacity_counts_every_vote_pattern(k, m):
    # brute force: all k-tuples of counts 0..m that sum to m
    brute = sum(1 for c in itertools.product(range(m + 1), repeat=k) if sum(c) == m)
    assert capacity_bits("soft", k, votes=m) == pytest.approx(math.log2(brute), rel=1e-15)
    assert len(vote_patterns(k, m)) == brute
    assert len({tuple(r) for r in vote_patterns(k, m)}) == brute  # all distinct
    assert (vote_patterns(k, m).sum(1) == m).all()


def test_capacity_special_cases():
    assert capacity_bits("soft", 3, votes=2) == pytest.approx(math.log2(6))
    assert capacity_bits("soft", 10, votes=1) == capacity_bits("hard", 10)  # one vote = one label
    assert capacity_bits("soft", 10) == math.inf and capacity_bits("posterior", 10) == math.inf
    assert capacity_bits("posterior", 4, precision=5) == capacity_bits("soft", 4, votes=5)
    assert capacity_bits("triplet", 2) == 1.0 and capacity_bits("triplet", 1000) == 1.0
    assert capacity_bits("pair", 10) == 1.0
    assert capacity_bits("topk", 10, top_k=3) == pytest.approx(math.log2(10 * 9 * 8))
    assert capacity_bits("topk", 10, top_k=3, ordered=False) == pytest.approx(math.log2(120))
    assert capacity_bits("topk", 10, top_k=1) == capacity_bits("hard", 10)
    assert capacity_bits("ranking", 5) == pytest.approx(math.log2(120))
    assert capacity_bits("hard", np.int64(8)) == 3.0


@pytest.mark.parametrize("args, kwargs, needle", [
    (("hard", 1), {}, "num_classes"),
    (("soft", 5), {"votes": 0}, "votes"),
    (("soft", 5), {"votes": 2.5}, "votes"),
    (("hard", True), {}, "num_classes"),
    (("label", 5), {}, "unknown supervision signal"),
    (("topk", 5), {}, "top_k"),
    (("topk", 5), {"top_k": 6}, "larger than num_classes"),
    (("posterior", 5), {"votes": 3}, "precision"),
])
def test_capacity_bad_input(args, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        capacity_bits(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# simulator


def test_task_and_sample_are_seeded():
    a, b, c = make_task(seed=3), make_task(seed=3), make_task(seed=4)
    assert np.array_equal(a.prototypes, b.prototypes) and not np.allclose(a.prototypes, c.prototypes)
    s1, s2, s3 = a.sample(50, seed=1), b.sample(50, seed=1), a.sample(50, seed=2)
    assert np.array_equal(s1.x, s2.x) and np.array_equal(s1.y, s2.y)
    assert not np.allclose(s1.x, s3.x)
    for fn in (lambda s, sd: hard_labels(s, 0.3, sd), lambda s, sd: soft_labels(s, 4, 0.2, sd),
               lambda s, sd: triplets(s, 30, 0.1, sd)[1]):
        assert np.array_equal(fn(s1, 5), fn(s2, 5))
    assert not np.array_equal(soft_labels(s1, 4, 0.2, 5), soft_labels(s1, 4, 0.2, 6))


def test_task_geometry_and_posterior():
    t = make_task(classes=6, dims=20, transfer_classes=3, latent_dims=4, seed=0)
    assert t.prototypes.shape == (9, 20)
    centred = t.prototypes - 0  # prototypes lie in a 4-dim subspace through the origin
    assert np.linalg.matrix_rank(centred, tol=1e-8) == 4
    s = t.sample(500, seed=0)
    assert s.x.shape == (500, 20) and s.y.min() >= 0 and s.y.max() < 6
    assert np.allclose(s.posterior.sum(1), 1.0)
    # the posterior is Bayes' rule for this model: recompute independently with scipy
    from scipy.stats import multivariate_normal
    lik = np.stack([multivariate_normal(t.prototypes[j], np.eye(20)).logpdf(s.x[:5]) for j in range(6)], 1)
    ref = lik - np.logaddexp.reduce(lik, axis=1, keepdims=True)
    assert np.allclose(s.log_posterior[:5], ref, atol=1e-8)
    far = make_task(classes=4, dims=8, separation=40.0, seed=1).sample(300, seed=0)
    assert (far.posterior.argmax(1) == far.y).mean() > 0.99
    tr = t.sample(40, "transfer", seed=0)
    assert tr.split == "transfer" and tr.y.max() < 3
    bal = t.sample(62, seed=3, balanced=True)
    assert sorted(np.bincount(bal.y)) == [10, 10, 10, 10, 11, 11]
    assert np.array_equal(bal.x, t.sample(62, seed=3, balanced=True).x)


def test_hierarchy_groups_prototypes():
    t = make_task(classes=8, dims=16, transfer_classes=4, superclasses=2, separation=1.0,
                  superclass_separation=20.0, seed=0)
    d = np.linalg.norm(t.prototypes[:, None] - t.prototypes[None], axis=2)
    same = t.superclass_of[:, None] == t.superclass_of[None]
    off = ~np.eye(len(d), dtype=bool)
    assert d[same & off].max() < d[~same].min()
    assert set(t.sample(100, seed=0).superclass) <= {0, 1}


def test_signals_shapes_and_noise():
    t = make_task(classes=5, dims=6, seed=0)
    s = t.sample(4000, seed=0)
    counts = soft_labels(s, 7, 0.0, 0)
    assert counts.shape == (4000, 5) and (counts.sum(1) == 7).all() and counts.min() >= 0
    assert np.allclose(soft_labels(s, None, 0.0).sum(1), 1.0)
    assert np.array_equal(hard_labels(s, 0.0), s.y)
    rand = hard_labels(s, 1.0, 0)
    assert abs((rand == s.y).mean() - 0.2) < 0.03  # pure guessing among 5 classes
    # votes follow the posterior: mean vote fraction matches mean posterior
    assert np.allclose(counts.mean(0) / 7, s.posterior.mean(0), atol=0.02)
    idx, ans = triplets(s, 500, 0.0, 0)
    assert idx.shape == (500, 3) and set(np.unique(ans)) <= {0, 1}
    assert ((idx[:, 0] != idx[:, 1]) & (idx[:, 0] != idx[:, 2]) & (idx[:, 1] != idx[:, 2])).all()


@pytest.mark.parametrize("call, needle", [
    (lambda: make_task(classes=1), "at least 2 source classes"),
    (lambda: make_task(spread=0.0), "spread"),
    (lambda: make_task(superclasses=20, classes=10), "superclasses"),
    (lambda: make_task(transfer_classes=0).sample(5, "transfer"), "transfer_classes=0"),
    (lambda: hard_labels(make_task().sample(5), noise=1.5), "noise"),
    (lambda: make_task(dims=4).log_posterior(np.ones((3, 5))), r"shape \(n, 4\)"),
])
def test_simulator_bad_input(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


# ---------------------------------------------------------------------------------------------
# information


def test_noiseless_hard_label_carries_class_entropy():
    t = make_task(classes=7, seed=2)
    s = t.sample(3000, seed=0)
    h_class = _h_bits(np.bincount(s.y) / s.n)
    exact = signal_information(s, "hard", about="class", method="exact")
    plug = signal_information(s, "hard", about="class", method="plugin")
    assert exact.bits == pytest.approx(h_class, abs=1e-12)
    assert plug.bits == pytest.approx(h_class, abs=1e-12)
    assert h_class <= capacity_bits("hard", 7) + 1e-12


def test_noisy_hard_label_is_a_symmetric_channel():
    k, eps = 6, 0.3
    t = make_task(classes=k, seed=0)
    s0 = t.sample(600, seed=0)
    y = np.arange(600) % k  # exactly balanced classes: I = log2 k - H(channel row)
    s = Sample(s0.x, y, s0.log_posterior, None, "source")
    row = [1 - eps + eps / k] + [eps / k] * (k - 1)
    truth = math.log2(k) - _h_bits(row)
    assert signal_information(s, "hard", noise=eps, about="class").bits == pytest.approx(truth, abs=1e-12)
    big = t.sample(20000, seed=1)
    plug = signal_information(big, "hard", noise=eps, about="class", method="plugin")
    assert plug.bits == pytest.approx(truth, abs=0.03)


def test_exact_soft_information_matches_brute_force():
    from scipy.stats import multinomial

    t = make_task(classes=3, dims=2, latent_dims=2, separation=1.5, seed=0)
    s = t.sample(6, seed=0)
    m, eps = 2, 0.2
    q = (1 - eps) * s.posterior + eps / 3
    pats = [c for c in itertools.product(range(m + 1), repeat=3) if sum(c) == m]
    cond = np.array([[multinomial.pmf(c, m, qi) for c in pats] for qi in q])
    ps = cond.mean(0)
    truth = -(ps * np.log(ps)).sum() + (cond * np.log(cond)).sum(1).mean()
    est = signal_information(s, "soft", votes=m, noise=eps, about="example")
    assert est.nats == pytest.approx(truth, rel=1e-10)
    # about the class: groups by true class
    hy = sum((s.y == g).mean() * -(cond[s.y == g].mean(0) * np.log(cond[s.y == g].mean(0))).sum()
             for g in np.unique(s.y))
    est_c = signal_information(s, "soft", votes=m, noise=eps, about="class")
    assert est_c.nats == pytest.approx(-(ps * np.log(ps)).sum() - hy, rel=1e-10)


def test_one_vote_equals_one_label_and_more_votes_tell_more():
    s = make_task(classes=5, dims=8, seed=1).sample(800, seed=0)
    one_vote = signal_information(s, "soft", votes=1, noise=0.1, about="example").nats
    hard = signal_information(s, "hard", noise=0.1, about="example").nats
    assert one_vote == pytest.approx(hard, rel=1e-10)
    vals = [signal_information(s, "soft", votes=m, noise=0.1, about="example").nats for m in (1, 2, 4, 6)]
    assert all(a < b for a, b in zip(vals, vals[1:]))


def test_monte_carlo_soft_information_agrees_with_exact():
    s = make_task(classes=5, dims=8, seed=2).sample(1500, seed=0)
    for about in ("example", "class"):
        exact = signal_information(s, "soft", votes=4, noise=0.1, about=about)
        mc = signal_information(s, "soft", votes=4, noise=0.1, about=about, method="mc", ci=0.99, seed=1)
        assert mc.method == "mc" and mc.ci[0] <= exact.nats <= mc.ci[1], (about, exact, mc)
        assert mc.ci[1] - mc.ci[0] < 0.2
    with pytest.raises(ValueError, match="soft labels"):
        signal_information(s, "hard", method="mc")


def test_information_table_falls_back_to_monte_carlo_for_many_patterns():
    t = make_task(classes=40, dims=8, seed=0)
    df = information_table(t, signals=("soft",), votes=12, n=300)
    assert list(df["method"]) == ["mc", "mc"]
    assert (df["ci_low_bits"] <= df["capacity_bits"]).all() and (df["bits"] > 0).all()


def test_triplet_information_closed_form():
    s = make_task(classes=4, dims=6, seed=0).sample(400, seed=0)
    eps = 0.2
    est = signal_information(s, "triplet", noise=eps, about="example", n_triplets=1000, seed=3)
    from infodyn.supervision.simulate import triplet_queries, triplet_truth
    truth = triplet_truth(s, triplet_queries(400, 1000, 3))
    p1 = np.mean((1 - eps) * truth + eps / 2)
    assert est.bits == pytest.approx(_h_bits([p1, 1 - p1]) - _h_bits([eps / 2, 1 - eps / 2]), abs=1e-12)
    assert signal_information(s, "triplet", noise=1.0, about="example").bits == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("votes", [1, 3])
def test_exact_and_plugin_information_never_exceed_capacity(noise, votes):
    t = make_task(classes=4, dims=8, separation=2.0, seed=0)
    df = information_table(t, votes=votes, noise=noise, n=400, methods=("exact", "plugin"))
    assert len(df) == 4 * 2 + 3  # exact: 4 signals x 2 targets; plug-in: 3 discrete signals x class
    fin = df[np.isfinite(df["bits"])]
    assert (fin["bits"] <= fin["capacity_bits"] + 1e-9).all(), fin
    assert (fin["bits"] >= 0).all()
    # the posterior is continuous: infinite about the example, finite about the class
    post = df[(df["signal"] == "posterior")]
    assert math.isinf(post[post["about"] == "example"]["bits"].iloc[0])
    assert post[post["about"] == "class"]["bits"].iloc[0] <= math.log2(4) + 1e-12


def test_estimator_information_within_capacity_plus_stated_error():
    from infodyn.estimators import available

    t = make_task(classes=4, dims=6, separation=3.0, seed=0)
    s = t.sample(600, seed=0)
    # moderate separation; the Gaussian closed form is no bound in general (see the next test)
    cases = [("gaussian", "hard", None), ("gaussian", "soft", 3), ("gaussian", "triplet", None)]
    if "ksg" in available():
        cases += [("ksg", "hard", None), ("ksg", "soft", 3)]
    for method, signal, votes in cases:
        est = signal_information(s, signal, votes=votes, about="example", method=method, ci=0.95,
                                 n_boot=5, seed=0, n_triplets=600)
        cap = capacity_bits(signal, 4, votes)
        assert est.ci is not None
        assert est.ci_bits[0] <= cap, (method, signal, est)
        assert est.method == method and est.params["capacity_bits"] == cap


def test_gaussian_estimate_above_capacity_is_flagged():
    # well-separated classes: the Gaussian closed form (a determinant ratio) exceeds log2 k,
    # which no true information can; the table must say so rather than hide it
    t = make_task(classes=4, dims=8, latent_dims=4, separation=12.0, seed=0)
    df = information_table(t, signals=("hard",), n=1000, methods=("exact", "gaussian"), abouts=("example",),
                           ci=0.95, n_boot=10)
    got = dict(zip(df["method"], zip(df["bits"], df["exceeds_capacity"])))
    assert got["exact"][0] <= 2.0 + 1e-12 and not got["exact"][1]
    assert got["gaussian"][0] > 2.0 and got["gaussian"][1]


def test_information_is_seeded_and_errors_are_clear():
    s = make_task(classes=4, seed=0).sample(300, seed=0)
    a = signal_information(s, "soft", votes=3, about="class", method="plugin", ci=0.9, n_boot=10, seed=1)
    b = signal_information(s, "soft", votes=3, about="class", method="plugin", ci=0.9, n_boot=10, seed=1)
    assert a.nats == b.nats and a.ci == b.ci
    with pytest.raises(ValueError, match="about='class'"):
        signal_information(s, "hard", about="example", method="plugin")
    with pytest.raises(ValueError, match="signal must be"):
        signal_information(s, "label")
    with pytest.raises(ValueError, match="exceed"):
        signal_information(make_task(classes=40).sample(10), "soft", votes=12)
    with pytest.raises(ValueError, match="equal length"):
        plugin_mi(np.zeros(3), np.zeros(4))


def test_plugin_mi_small_exact_case():
    # X uniform on {0,1,2,3}, Y = X // 2: I = 1 bit exactly
    x = np.array([0, 1, 2, 3] * 5)
    assert plugin_mi(x, x // 2) / math.log(2) == pytest.approx(1.0, abs=1e-12)
    assert plugin_mi(x, np.zeros_like(x)) == 0.0


# ---------------------------------------------------------------------------------------------
# learning


def test_training_is_seeded_and_learns():
    t = make_task(classes=4, dims=12, latent_dims=4, separation=6.0, transfer_classes=3, seed=0)
    pool = t.sample(200, seed=0)
    cfg = TrainConfig(rep_dim=4, steps=150)
    x, y = draw_signal(pool, "hard", 200)
    e1 = train_encoder(x, "hard", y, config=cfg, seed=1, device="cpu")
    e2 = train_encoder(x, "hard", y, config=cfg, seed=1, device="cpu")
    for p1, p2 in zip(e1.parameters(), e2.parameters()):
        assert np.array_equal(p1.detach().numpy(), p2.detach().numpy())
    sets = make_eval_sets(t, probe_per_class=5, test_per_class=50, seed=0)
    trained = evaluate_encoder(e1, sets)
    assert set(trained) == {"source_acc", "transfer_acc", "few_shot_acc"}
    assert trained["source_acc"] > 0.9  # near Bayes accuracy at separation 6
    for signal in ("soft", "posterior", "triplet"):
        xs, target = draw_signal(pool, signal, 100, votes=3)
        enc = train_encoder(xs, signal, target, model="mlp", config=TrainConfig(rep_dim=4, steps=30), device="cpu")
        assert all(0.0 <= v <= 1.0 for v in evaluate_encoder(enc, sets).values())


def test_learning_curves_table():
    df = learning_curves(budgets=(10, 30), models=("linear",), seeds=(0,), config=TrainConfig(steps=10),
                         task_kwargs={"classes": 4, "dims": 8}, probe_per_class=4, episodes=3)
    assert set(df["signal"]) == {"hard", "soft", "posterior", "triplet", "raw", "none"}
    assert len(df) == 3 * (1 + 1 + 4 * 2)
    assert df["value"].between(0, 1).all()
    again = learning_curves(budgets=(10, 30), models=("linear",), seeds=(0,), config=TrainConfig(steps=10),
                            task_kwargs={"classes": 4, "dims": 8}, probe_per_class=4, episodes=3)
    assert np.array_equal(df["value"].to_numpy(), again["value"].to_numpy())


def test_learning_bad_input():
    pool = make_task(classes=3).sample(20)
    with pytest.raises(ValueError, match="budget must be in 1..20"):
        draw_signal(pool, "hard", 21)
    with pytest.raises(ValueError, match="model must be"):
        train_encoder(pool.x, "hard", pool.y, model="cnn")
    with pytest.raises(ValueError, match="rows but x has shape"):
        train_encoder(pool.x, "hard", pool.y[:5])
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)


# ---------------------------------------------------------------------------------------------
# cost


def test_cost_model():
    c = CostModel()
    assert c.per_signal("soft", 5) == 5 * c.vote and c.per_signal("hard") == c.hard
    assert CostModel.parse("hard=1,triplet=0.5") == CostModel(hard=1.0, triplet=0.5)
    for bad, needle in (("hard=x", "number"), ("gold=1", "unknown cost"), ("hard", "NAME=SECONDS")):
        with pytest.raises(ValueError, match=needle):
            CostModel.parse(bad)
    with pytest.raises(ValueError, match="positive"):
        CostModel(hard=-1)


def test_cost_benefit_marks_the_best_signal():
    import pandas as pd

    rows = []
    # hard: cheap (1 s), plateaus at 0.6; posterior: 10 s each, reaches 0.9
    for seed in (0, 1):
        for b, v in ((10, 0.4), (100, 0.6)):
            rows.append(dict(signal="hard", model="linear", budget=b, seed=seed, measure="few_shot_acc", value=v, votes=5))
        for b, v in ((10, 0.7), (100, 0.9)):
            rows.append(dict(signal="posterior", model="linear", budget=b, seed=seed, measure="few_shot_acc", value=v, votes=5))
    curve = cost_benefit(pd.DataFrame(rows), CostModel(hard=1, posterior=10), "few_shot_acc")
    got = {(r.signal, r.budget): (r.cost_seconds, r.best) for r in curve.itertuples()}
    assert got == {("hard", 10): (10, True), ("hard", 100): (100, False),
                   ("posterior", 10): (100, True), ("posterior", 100): (1000, True)}
    assert best_signal(curve, 50)["signal"] == "hard"
    assert best_signal(curve, 100)["signal"] == "posterior"
    with pytest.raises(ValueError, match="cheapest point costs 10"):
        best_signal(curve, 5)


# ---------------------------------------------------------------------------------------------
# CLI and notebook


def test_cli_tiny_end_to_end(tmp_path):
    import pandas as pd
    from infodyn.cli import main

    out = tmp_path / "sup"
    rc = main(["supervision", "--out", str(out), "--classes", "4", "--dims", "8", "--votes", "3",
               "--seeds", "1", "--budgets", "10,20", "--models", "linear", "--steps", "10", "--info-n", "200",
               "--info-sweep", "noise=0,0.3", "--learn-sweep", "noise=0,0.3", "--sweep-budget", "10", "--quiet"])
    assert rc == 0
    df = pd.read_csv(out / "supervision.csv")
    assert "signal" in df.columns and set(df["experiment"]) == {
        "information", "learning", "cost_benefit", "information_sweep", "learning_sweep"}
    assert {"hard", "soft", "posterior", "triplet"} <= set(df["signal"])
    info = df[(df["experiment"] == "information") & np.isfinite(df["bits"])]
    assert (info["bits"] <= info["capacity_bits"] + 1e-9).all()
    for name in ("information", "learning", "cost_benefit", "effects"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert main(["supervision", "--out", str(out), "--costs", "hard=abc", "--quiet"]) == 2
    for bad in (["--models", "cnn"], ["--signals", "hard,gold"], ["--budgets", "0,10"],
                ["--learn-sweep", "colour=1,2"], ["--seeds", "0"]):
        assert main(["supervision", "--out", str(tmp_path / "bad"), "--quiet", *bad]) == 2, bad
    assert not (tmp_path / "bad").exists()  # refused before any work or any file


def test_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = ROOT / "notebooks" / "supervision.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook stripped"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()


@pytest.mark.gpu
def test_training_on_cuda_matches_cpu_shapes():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    t = make_task(classes=4, dims=8, seed=0)
    pool = t.sample(100, seed=0)
    x, y = draw_signal(pool, "soft", 100, votes=3)
    enc = train_encoder(x, "soft", y, config=TrainConfig(steps=50), device="cuda")
    assert next(enc.parameters()).device.type == "cuda"
    scores = evaluate_encoder(enc, make_eval_sets(t, probe_per_class=5, seed=0))
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    cpu = evaluate_encoder(train_encoder(x, "soft", y, config=TrainConfig(steps=50), device="cpu"),
                           make_eval_sets(t, probe_per_class=5, seed=0))
    assert abs(scores["source_acc"] - cpu["source_acc"]) < 0.1  # same seed, float differences only

"""Cosine k-NN: exact cases, chance level, exact neighbours vs brute force, sklearn parity."""
import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from infodyn.transfer import knn_accuracy
from infodyn.transfer import knn as knn_mod


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_neighbours(xtr, xte, k):
    """Independent float64 reference: sorted top-k cosine neighbours by full sort."""
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    b = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    s = b @ a.T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def dino_vote(xtr, ytr, xte, k, t, n_classes):
    sims, idx = brute_neighbours(xtr, xte, k)
    votes = np.zeros((xte.shape[0], n_classes))
    for i in range(xte.shape[0]):
        for s, j in zip(sims[i], idx[i]):
            votes[i, ytr[j]] += np.exp(s / t)
    return votes.argmax(1)


def clustered(n_train, n_test, d, c, spread, seed):
    """Tight clusters: many near-equal similarities around the k-th neighbour."""
    r = np.random.default_rng(seed)
    centres = r.normal(size=(c, d))
    ytr = r.integers(0, c, n_train)
    yte = r.integers(0, c, n_test)
    return (centres[ytr] + spread * r.normal(size=(n_train, d)), ytr,
            centres[yte] + spread * r.normal(size=(n_test, d)), yte)


def test_perfect_features_give_accuracy_one():
    xtr, ytr, xte, yte = clustered(300, 100, 16, 5, 0.01, seed=0)
    for weighted in (True, False):
        assert knn_accuracy(xtr, ytr, xte, yte, weighted=weighted).accuracy == 1.0


def test_label_independent_features_give_chance():
    r = np.random.default_rng(1)
    c, n_test = 5, 2000
    xtr, xte = r.normal(size=(1000, 16)), r.normal(size=(n_test, 16))
    ytr, yte = r.integers(0, c, 1000), r.integers(0, c, n_test)
    tol = 4 * np.sqrt((1 / c) * (1 - 1 / c) / n_test)  # 4 binomial standard deviations
    for weighted in (True, False):
        assert abs(knn_accuracy(xtr, ytr, xte, yte, weighted=weighted).accuracy - 1 / c) < tol


@pytest.fixture(params=["compiled", "torch"])
def first_stage(request, monkeypatch):
    """Runs a test with the numba first stage of the search (the CPU default) and without it."""
    if request.param == "torch":
        monkeypatch.setattr(knn_mod, "_compiled_kernels", lambda: None)
    elif knn_mod._compiled_kernels() is None:
        pytest.skip("numba is not installed")
    return request.param


@pytest.mark.parametrize("spread,block", [(1.0, None), (0.05, 37), (0.002, 64)])
def test_neighbours_exactly_match_brute_force(spread, block, first_stage):
    # small spreads defeat the low-precision certificate and exercise every fallback level
    xtr, _, xte, _ = clustered(1500, 300, 24, 4, spread, seed=2)
    k = 15
    ref_s, ref_i = brute_neighbours(xtr, xte, k)
    stats = {}
    s, i = knn_mod.knn_neighbours(torch.from_numpy(xtr), torch.from_numpy(xte), k, block, stats)
    np.testing.assert_allclose(s.numpy(), ref_s, rtol=0, atol=1e-12)
    assert np.array_equal(np.sort(i.numpy(), 1), np.sort(ref_i, 1))
    assert sum(stats.values()) == xte.shape[0]
    if spread == 1.0:  # well spread: settled by the fast low-precision stage
        assert stats.get("float64", 0) == 0
    if spread == 0.002:  # clusters tighter than the rounding bound: the float64 search
        assert stats["float64"] > 0


def test_every_fallback_level_gives_the_same_neighbours(monkeypatch):
    xtr, _, xte, _ = clustered(800, 200, 16, 3, 0.003, seed=3)
    ref_s, ref_i = brute_neighbours(xtr, xte, 10)
    for levels in ([], [(torch.float32, (8,), 2.0 ** -24)], [(torch.bfloat16, (4,), 2.0 ** -8)]):
        monkeypatch.setattr(knn_mod, "_levels", lambda dev, lv=levels: lv)
        stats = {}
        _, i = knn_mod.knn_neighbours(torch.from_numpy(xtr), torch.from_numpy(xte), 10, None, stats)
        assert np.array_equal(np.sort(i.numpy(), 1), np.sort(ref_i, 1))
        assert stats["float64"] > 0 and sum(stats.values()) == 200


def test_majority_vote_matches_sklearn_predictions(first_stage):
    xtr, ytr, xte, yte = clustered(2000, 600, 32, 10, 2.0, seed=4)
    sk = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute").fit(xtr, ytr)
    ours = knn_accuracy(xtr, ytr, xte, yte, k=20, weighted=False, block_size=100)
    assert np.array_equal(ours.predictions, sk.predict(xte))
    assert ours.accuracy == pytest.approx(sk.score(xte, yte), abs=0)


def test_weighted_vote_matches_dino_reference():
    xtr, ytr, xte, yte = clustered(1000, 300, 16, 6, 1.5, seed=5)
    ref = dino_vote(xtr, ytr, xte, 20, 0.07, 6)
    res = knn_accuracy(xtr, ytr, xte, yte, k=20, temperature=0.07)
    assert np.array_equal(res.predictions, ref)
    assert res.accuracy == pytest.approx(np.mean(ref == yte), abs=0)


def test_tiny_temperature_does_not_overflow_and_equals_1nn():
    xtr, ytr, xte, yte = clustered(500, 100, 8, 4, 1.5, seed=6)
    a = knn_accuracy(xtr, ytr, xte, yte, k=10, temperature=1e-6)
    b = knn_accuracy(xtr, ytr, xte, yte, k=1)
    assert np.array_equal(a.predictions, b.predictions)


def test_bad_input_raises_naming_the_problem():
    xtr, ytr, xte, yte = clustered(50, 20, 4, 3, 1.0, seed=7)
    with pytest.raises(ValueError, match=r"k must be .*n_train=50"):
        knn_accuracy(xtr, ytr, xte, yte, k=51)
    bad = xtr.copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"x_train of shape \(50, 4\) contains NaN or inf in 1 row"):
        knn_accuracy(bad, ytr, xte, yte)
    with pytest.raises(ValueError, match=r"x_test and y_test .* \(20, 4\).*\(19,\)"):
        knn_accuracy(xtr, ytr, xte, yte[:-1])
    with pytest.raises(ValueError, match=r"only 1 class"):
        knn_accuracy(xtr, np.ones(50), xte, yte)
    with pytest.raises(ValueError, match=r"3 samples .* 3 classes"):
        knn_accuracy(xtr[:3], np.arange(3), xte, yte, k=1)
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(xtr, ytr, xte, yte, temperature=0.0)
    with pytest.raises(ValueError, match="same number of features"):
        knn_accuracy(xtr, ytr, xte[:, :2], yte)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    xtr, ytr, xte, yte = clustered(3000, 500, 64, 10, 1.0, seed=8)
    a = knn_accuracy(xtr, ytr, xte, yte, device="cpu", weighted=False)
    b = knn_accuracy(xtr, ytr, xte, yte, device="cuda", weighted=False)
    assert np.array_equal(a.predictions, b.predictions)


def test_duplicated_training_rows_give_the_same_similarities_either_way(monkeypatch):
    # exact ties at the k-th neighbour: the two first stages may pick different tied rows, but
    # never different similarities
    r = np.random.default_rng(11)
    base = r.normal(size=(400, 20))
    xtr = np.concatenate([base, base, base[:50]])
    xte = r.normal(size=(120, 20))
    ref_s, _ = brute_neighbours(xtr, xte, 7)
    s, i = knn_mod.knn_neighbours(torch.from_numpy(xtr), torch.from_numpy(xte), 7)
    monkeypatch.setattr(knn_mod, "_compiled_kernels", lambda: None)
    s2, _ = knn_mod.knn_neighbours(torch.from_numpy(xtr), torch.from_numpy(xte), 7)
    np.testing.assert_allclose(s.numpy(), ref_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s2.numpy(), s.numpy(), rtol=0, atol=1e-12)
    got = np.einsum("qd,qkd->qk", xte / np.linalg.norm(xte, axis=1, keepdims=True),
                    xtr[i.numpy()] / np.linalg.norm(xtr[i.numpy()], axis=2, keepdims=True))
    np.testing.assert_allclose(got, ref_s, rtol=0, atol=1e-12)  # the indices carry those values


def test_small_training_set_where_candidates_cover_all_rows(first_stage):
    xtr, ytr, xte, yte = clustered(30, 40, 6, 3, 1.0, seed=9)
    k = 20  # k + extra candidates exceed n_train: every row is re-ranked exactly
    ref_s, ref_i = brute_neighbours(xtr, xte, k)
    s, i = knn_mod.knn_neighbours(torch.from_numpy(xtr), torch.from_numpy(xte), k)
    np.testing.assert_allclose(s.numpy(), ref_s, rtol=0, atol=1e-12)
    assert np.array_equal(np.sort(i.numpy(), 1), np.sort(ref_i, 1))
    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(xtr, ytr)
    assert np.array_equal(knn_accuracy(xtr, ytr, xte, yte, k=k, weighted=False).predictions, sk.predict(xte))


def test_low_copy_is_the_rounded_normalised_rows_and_measures_their_error():
    r = np.random.default_rng(10)
    x = torch.from_numpy(r.normal(size=(300, 24)) * r.uniform(0.1, 10, size=(300, 1)))
    nx = x.norm(dim=1)
    xl, ex = knn_mod._low_copy(x, nx, torch.bfloat16, 64, True)  # 64-row chunks, last one partial
    xn = x / nx[:, None]
    assert torch.equal(xl, xn.to(torch.bfloat16))
    err = (xn - xl.double()).norm(dim=1)
    assert ex == pytest.approx(float(err.max()), rel=1e-12)
    assert 0 < ex <= 2.0 ** -8  # never above the worst case u ||x||


@pytest.mark.parametrize("seed", range(4))
def test_radix_select_finds_the_kth_largest(seed):
    kernels = knn_mod._compiled_kernels()
    if kernels is None:
        pytest.skip("numba is not installed")
    r = np.random.default_rng(seed)
    v = r.integers(-32768, 32768, size=r.integers(1, 700)).astype(np.int16)
    if seed % 2:
        v[: len(v) // 2] = v[0]  # many ties
    hist = np.empty(256, dtype=np.int32)
    for kk in sorted({1, len(v) // 3 + 1, len(v)}):
        assert kernels._kth_largest(v, kk, hist) == np.sort(v)[::-1][kk - 1]


def test_bfloat16_keys_order_like_the_values():
    kernels = knn_mod._compiled_kernels()
    if kernels is None:
        pytest.skip("numba is not installed")
    vals = torch.tensor([-3.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 2.0, 1e30]).to(torch.bfloat16)
    keys = [kernels._key(np.int16(b)) for b in vals.view(torch.int16).tolist()]
    assert keys == sorted(keys) and len(set(keys[4:])) == 5
    table = kernels.bf16_table()
    assert [kernels._value(kk, table) for kk in keys] == vals.double().tolist()


@pytest.mark.parametrize("d", [8, 64, 512])
def test_measured_bound_covers_the_actual_bfloat16_product_error(d):
    # adversarial-ish rows: equal magnitudes maximise the rounding error; the bound must hold
    # for every (test, train) pair, and stay below the worst-case bound it replaces
    r = np.random.default_rng(d)
    rows = [r.normal(size=(200, d)), np.sign(r.normal(size=(200, d))) * (1 + 2.0 ** -9)]
    x = torch.from_numpy(np.concatenate(rows))
    q = torch.from_numpy(np.concatenate([r.normal(size=(100, d)), x[:50].numpy() * 3]))
    nx = x.norm(dim=1)
    xl, ex = knn_mod._low_copy(x, nx, torch.bfloat16, 128, True)
    qn = q / q.norm(dim=1, keepdim=True)
    ql = qn.to(torch.bfloat16)
    low = (ql @ xl.T).to(torch.float64)
    exact = (qn @ x.T) / nx
    u = 2.0 ** -8
    a = knn_mod._measured_bound(qn, ql, ex, u, d)
    b = knn_mod._error_bound(u, d)[1]
    assert bool(((low - exact).abs() <= a[:, None] + b * low.abs()).all())
    assert float(a.max()) <= knn_mod._error_bound(u, d)[0]

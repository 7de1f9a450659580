"""KSG and Ross (2014) k-NN estimators: exact agreement with an independent brute-force numpy
implementation, with scikit-learn and ennemi, and the Gaussian closed form."""
import numpy as np
import pytest
from scipy.special import digamma

import infodyn
from infodyn.estimators.knn import ksg
from conftest import correlated_gaussian

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------
# an independent reference: whole n x n distance matrices, straight from the papers' definitions


def _dist(a, norm):
    diff = a[:, None, :] - a[None, :, :]
    if norm == "max":
        d = np.abs(diff).max(-1)
    else:
        d = np.sqrt((diff**2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return d


def ref_ksg(x, y, k, variant, norm):
    n = len(x)
    dx, dy = _dist(x, norm), _dist(y, norm)
    dz = np.maximum(dx, dy)
    order = np.argsort(dz, axis=1, kind="stable")[:, :k]
    if variant == 1:
        eps = np.take_along_axis(dz, order, 1)[:, -1:]
        nx, ny = (dx < eps).sum(1), (dy < eps).sum(1)
        return digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1))
    ex = np.take_along_axis(dx, order, 1).max(1, keepdims=True)
    ey = np.take_along_axis(dy, order, 1).max(1, keepdims=True)
    nx, ny = (dx <= ex).sum(1), (dy <= ey).sum(1)
    return digamma(k) - 1 / k + digamma(n) - np.mean(digamma(nx) + digamma(ny))


def ref_ross(x, labels, k, norm):
    d = _dist(x, norm)
    kept, terms = 0, []
    for i in range(len(x)):
        same = labels == labels[i]
        nc = same.sum()
        if nc < 2:
            continue
        kk = min(k, nc - 1)
        r = np.sort(d[i, same])[kk - 1]
        m = 1 + (d[i] < r).sum()
        terms.append(digamma(kk) - digamma(nc) - digamma(m))
        kept += 1
    return digamma(kept) + np.mean(terms)


EXACT = dict(noise=0.0, standardize=False)
#: every CPU backend; "compiled" needs numba, a dependency of infodyn
BACKENDS = ("brute", "tree", "compiled")


@pytest.mark.parametrize("dims", [(1, 1), (3, 2)])
@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("norm", ["max", "euclidean"])
def test_ksg_equals_bruteforce_reference(dims, variant, norm):
    r = np.random.default_rng(dims[0] * 10 + variant)
    n = 160
    x = r.normal(size=(n, dims[0]))
    y = 0.5 * x[:, : dims[1]] + r.normal(size=(n, dims[1]))
    ref = ref_ksg(x, y, 4, variant, norm)
    for algo in BACKENDS:
        got = ksg(x, y, k=4, variant=variant, norm=norm, algorithm=algo, **EXACT).nats
        assert got == pytest.approx(ref, abs=1e-10), algo


@pytest.mark.parametrize("norm", ["max", "euclidean"])
def test_ross_equals_bruteforce_reference(norm):
    r = np.random.default_rng(3)
    n = 150
    x = r.normal(size=(n, 3))
    labels = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0.8)
    labels[:2] = 7  # a class of two (k_i = 1) ...
    labels[2] = 9  # ... and a singleton, which is dropped
    ref = ref_ross(x, labels, 3, norm)
    for algo in BACKENDS:
        got = ksg(x, labels, k=3, norm=norm, algorithm=algo, **EXACT)
        assert got.nats == pytest.approx(ref, abs=1e-10), algo
        assert got.params["n_used"] == n - 1


def test_small_blocks_change_nothing():
    x, y, _ = correlated_gaussian(200, 0.7, d=3, seed=1)
    labels = (x[:, 0] > 0).astype(int)
    for norm in ("max", "euclidean"):
        whole = ksg(x, y, norm=norm, algorithm="brute").nats
        tiny = ksg(x, y, norm=norm, algorithm="brute", memory_mb=0.02).nats  # a few rows per block
        assert tiny == whole
        assert ksg(x, labels, norm=norm, algorithm="brute", memory_mb=0.05).nats == ksg(
            x, labels, norm=norm, algorithm="brute").nats


def test_gram_rounding_falls_back_to_exact_distances(monkeypatch):
    # groups of five near-duplicates 1e-9 apart around a large offset, k=2: the Gram identity
    # cannot order the group members, so every row must be recomputed from coordinate differences
    import infodyn.estimators.knn as knn

    used = []
    for name in ("_ksg_exact_rows", "_ross_exact_rows"):
        orig = getattr(knn, name)
        monkeypatch.setattr(knn, name, lambda *a, _o=orig: used.append(1) or _o(*a))
    r = np.random.default_rng(5)
    base = r.normal(size=(60, 4)) + 1e3
    x = np.repeat(base, 5, axis=0) + 1e-9 * r.normal(size=(300, 4))
    y = x[:, :2] + 1e-9 * r.normal(size=(300, 2)) + 0.1 * np.repeat(r.normal(size=(60, 2)), 5, axis=0)
    for variant in (1, 2):
        ref = ref_ksg(x, y, 2, variant, "euclidean")
        got = ksg(x, y, k=2, variant=variant, norm="euclidean", algorithm="brute", **EXACT).nats
        assert got == pytest.approx(ref, abs=1e-10)
    labels = np.repeat(np.arange(60) % 3, 5)
    ref = ref_ross(x, labels, 2, "euclidean")
    assert ksg(x, labels, k=2, norm="euclidean", algorithm="brute", **EXACT).nats == pytest.approx(ref, abs=1e-10)
    assert len(used) >= 3


# ---------------------------------------------------------------------------------------------
# peers


def test_equals_sklearn_in_one_dimension():
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    x, y, _ = correlated_gaussian(600, 0.6, seed=2)
    for k in (3, 5):
        peer = mutual_info_regression(x, y[:, 0], n_neighbors=k, random_state=0)[0]
        for algo in BACKENDS:
            assert ksg(x, y, k=k, algorithm=algo).nats == pytest.approx(peer, abs=1e-9)
    labels = (y[:, 0] > 0).astype(int) + (y[:, 0] > 1)
    peer = mutual_info_classif(x, labels, n_neighbors=3, random_state=0)[0]
    for algo in BACKENDS:
        assert ksg(x, labels, k=3, algorithm=algo).nats == pytest.approx(peer, abs=1e-9)


def test_equals_ennemi_multivariate():
    ent = pytest.importorskip("ennemi._entropy_estimators")
    x, y, _ = correlated_gaussian(600, 0.5, d=4, seed=3)
    sd = lambda a: a / a.std(0)  # noqa: E731  (ennemi's own preprocessing, per variable)
    peer = ent._estimate_single_mi(sd(x), sd(y), 3)
    for algo in BACKENDS:
        assert ksg(x, y, k=3, norm="max", algorithm=algo).nats == pytest.approx(peer, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# properties


@pytest.mark.parametrize("norm", ["max", "euclidean"])
def test_gaussian_closed_form(norm):
    x, y, truth = correlated_gaussian(4000, 0.8, d=2, seed=4)
    est = infodyn.estimate_mi(x, y, method="ksg", norm=norm)
    assert est.nats == pytest.approx(truth, abs=0.06)  # truth 1.02 nats; KSG bias+spread at n=4000


def test_independent_is_about_zero_and_labels_informative():
    r = np.random.default_rng(6)
    x, y = r.normal(size=(3000, 2)), r.normal(size=(3000, 2))
    assert abs(ksg(x, y).nats) < 0.02
    labels = r.integers(0, 3, 3000)
    assert abs(ksg(x, labels).nats) < 0.02
    # labels a deterministic function of x: I = H(Y) = log 2 (the estimator approaches it from below)
    half = (x[:, 0] > 0).astype(int)
    assert ksg(x, half, k=5).nats == pytest.approx(np.log(2), abs=0.08)


def test_symmetric_exactly_without_jitter():
    x, y, _ = correlated_gaussian(400, 0.5, d=2, seed=7)
    for norm in ("max", "euclidean"):
        for v in (1, 2):
            a = ksg(x, y[:, :1], variant=v, norm=norm, noise=0).nats
            b = ksg(y[:, :1], x, variant=v, norm=norm, noise=0).nats
            assert a == pytest.approx(b, abs=1e-12)


def test_duplicates_are_finite_and_seeded():
    r = np.random.default_rng(8)
    x = r.integers(0, 4, size=(500, 2)).astype(float)
    y = x[:, :1] + r.integers(0, 2, size=(500, 1))
    for noise in (0.0, 1e-10):
        for algo in BACKENDS:
            assert np.isfinite(ksg(x, y, noise=noise, algorithm=algo).nats)
    assert ksg(x, y, seed=1).nats == ksg(x, y, seed=1).nats
    assert ksg(x, y, seed=1, algorithm="brute").nats == ksg(x, y, seed=1, algorithm="tree").nats
    assert ksg(x, y, seed=1, algorithm="compiled").nats == ksg(x, y, seed=1, algorithm="tree").nats


@pytest.mark.parametrize("dims", [(7, 5), (13, 2)])
@pytest.mark.parametrize("buffer_bytes", [14 << 20, 3 * 16 * 1300])
def test_compiled_threads_and_tiles_change_nothing(dims, buffer_bytes, monkeypatch):
    # n spans several 512-point tiles and a partial last one, rows split over 1 and 3 threads,
    # 16 or 3 query rows per block
    from infodyn.estimators import _knn_compiled

    monkeypatch.setattr(_knn_compiled, "BUFFER_BYTES", buffer_bytes)
    r = np.random.default_rng(sum(dims))
    n = 1300
    x = r.normal(size=(n, dims[0]))
    y = 0.4 * x[:, : dims[1]] + r.normal(size=(n, dims[1]))
    labels = r.integers(0, 4, n)
    for norm in ("max", "euclidean"):
        for variant in (1, 2):
            one = ksg(x, y, variant=variant, norm=norm, algorithm="compiled", workers=1).nats
            assert ksg(x, y, variant=variant, norm=norm, algorithm="compiled", workers=3).nats == one
            assert ksg(x, y, variant=variant, norm=norm, algorithm="brute").nats == pytest.approx(one, abs=1e-12)
        one = ksg(x, labels, norm=norm, algorithm="compiled", workers=1).nats
        assert ksg(x, labels, norm=norm, algorithm="compiled", workers=3).nats == one
        assert ksg(x, labels, norm=norm, algorithm="brute").nats == pytest.approx(one, abs=1e-12)


def test_auto_picks_a_backend_by_dimension():
    r = np.random.default_rng(10)
    x, y = r.normal(size=(300, 2)), r.normal(size=(300, 2))
    assert ksg(x, y, device="cpu").params["algorithm"] == "tree"
    x, y = r.normal(size=(300, 6)), r.normal(size=(300, 6))
    assert ksg(x, y, device="cpu").params["algorithm"] == "compiled"
    from infodyn.estimators.knn import COMPILED_MAX_EUCLIDEAN_DIM

    x = r.normal(size=(300, COMPILED_MAX_EUCLIDEAN_DIM))
    assert ksg(x, y, device="cpu", norm="euclidean").params["algorithm"] == "compiled"
    x = r.normal(size=(300, COMPILED_MAX_EUCLIDEAN_DIM + 1))
    assert ksg(x, y, device="cpu", norm="euclidean").params["algorithm"] == "brute"
    assert ksg(x, y, device="cpu", norm="max").params["algorithm"] == "compiled"


def test_params_recorded_through_estimate_mi():
    x, y, _ = correlated_gaussian(200, 0.5, seed=9)
    est = infodyn.estimate_mi(x, y, method="ksg", k=5)
    p = est.params
    assert p["k"] == 5 and p["norm"] in ("max", "euclidean") and p["algorithm"] in BACKENDS
    assert p["noise"] == 1e-10 and p["seed"] == 0 and p["estimator"] == "ksg1"
    est = infodyn.estimate_mi(x, y, method="ksg", algorithm="brute", device="cpu")
    assert est.params["device"] == "cpu" and est.params["algorithm"] == "brute"


def test_bad_input():
    x, y, _ = correlated_gaussian(50, 0.5, d=2, seed=10)
    with pytest.raises(ValueError, match="k"):
        infodyn.estimate_mi(x, y, method="ksg", k=0)
    with pytest.raises(ValueError, match="at least 51 samples"):
        infodyn.estimate_mi(x, y, method="ksg", k=50)
    with pytest.raises(ValueError, match="variant"):
        ksg(x, y, variant=3)
    with pytest.raises(ValueError, match="norm"):
        ksg(x, y, norm="l1")
    with pytest.raises(ValueError, match="unknown parameter"):
        ksg(x, y, neighbours=3)
    with pytest.raises(ValueError, match="algorithm"):
        ksg(x, y, algorithm="kd")
    for algo in BACKENDS:
        with pytest.raises(ValueError, match="each seen once"):
            ksg(x, np.arange(50), algorithm=algo)
    with pytest.raises(ValueError, match="NaN"):
        infodyn.estimate_mi(np.full((10, 2), np.nan), y[:10], method="ksg")
    with pytest.raises(ValueError, match="same number of rows"):
        infodyn.estimate_mi(x, y[:40], method="ksg")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    x, y, _ = correlated_gaussian(3000, 0.6, d=8, seed=11)
    labels = (x[:, 0] > 0).astype(int)
    for norm in ("max", "euclidean"):
        cpu = ksg(x, y, norm=norm, algorithm="brute", device="cpu").nats
        assert ksg(x, y, norm=norm, algorithm="brute", device="cuda").nats == pytest.approx(cpu, abs=1e-12)
        cpu = ksg(x, labels, norm=norm, algorithm="brute", device="cpu").nats
        assert ksg(x, labels, norm=norm, algorithm="brute", device="cuda").nats == pytest.approx(cpu, abs=1e-12)

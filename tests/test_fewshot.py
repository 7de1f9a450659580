"""Few-shot probe (infodyn.transfer.fewshot_probe): exact cases, scikit-learn agreement, errors."""
import numpy as np
import pytest
import torch

from infodyn.transfer import fewshot_probe
from infodyn.transfer.fewshot import fewshot_draws


def _blobs(n_per=40, c=4, d=6, sep=10.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * sep
    x = np.concatenate([centres[k] + rng.normal(size=(n_per, d)) for k in range(c)])
    y = np.repeat(np.arange(c), n_per)
    return x, y


def test_exact_two_point_case():
    # one shot per class, 1-D features: support {-1 -> class 0, +1 -> class 1}; standardised
    # z = x (mean 0, sd 1); dual ridge with n = 2, l2 = 1: W = z^T (z z^T + 2 I)^-1 Y, Y centred
    # = [[-1, 1], [1, -1]] -> w = [-0.5, 0.5]; scores x*w: positive x -> class 1
    xtr = np.array([[-1.0], [-1.0], [1.0], [1.0]])  # two identical rows per class: every draw is the same
    ytr = np.array([0, 0, 1, 1])
    xte = np.array([[-3.0], [-0.2], [0.1], [2.0]])
    r = fewshot_probe(xtr, ytr, xte, np.array([0, 0, 1, 1]), shots=1, draws=1, l2=1.0, device="cpu")
    assert r.accuracy == 1.0 and r.n_test == 4 and r.per_draw.shape == (1,)
    r2 = fewshot_probe(xtr, ytr, xte, np.array([1, 1, 0, 0]), shots=1, draws=1, device="cpu")
    assert r2.accuracy == 0.0


def test_separable_data_scores_one():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    x = 20.0 * np.eye(6)[y] + rng.uniform(-1, 1, size=(160, 6))  # orthogonal, far-apart class boxes
    r = fewshot_probe(x[::2], y[::2], x[1::2], y[1::2], shots=3, draws=10, device="cpu")
    assert r.accuracy == 1.0 and r.ci_low == 1.0 and r.ci_high == 1.0
    assert r.shots == 3 and r.draws == 10 and r.n_classes == 4 and r.higher_is_better


def test_shuffled_labels_are_at_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 10))
    y = rng.integers(0, 4, size=2000)
    r = fewshot_probe(x[:1000], y[:1000], x[1000:], y[1000:], shots=5, draws=40, device="cpu")
    # chance 0.25; sd of the mean over 40 draws of 1000 test rows is below 0.01
    assert abs(r.accuracy - 0.25) < 0.04
    assert r.ci_low < r.accuracy < r.ci_high


def test_deterministic_and_seed_dependent():
    x, y = _blobs(sep=1.0, seed=3)
    a = fewshot_probe(x[::2], y[::2], x[1::2], y[1::2], seed=7, device="cpu")
    b = fewshot_probe(torch.from_numpy(x[::2]), y[::2], x[1::2], y[1::2], seed=7, device="cpu")
    c = fewshot_probe(x[::2], y[::2], x[1::2], y[1::2], seed=8, device="cpu")
    np.testing.assert_array_equal(a.per_draw, b.per_draw)
    assert not np.array_equal(a.per_draw, c.per_draw)
    # draw i does not depend on the number of draws
    d = fewshot_probe(x[::2], y[::2], x[1::2], y[1::2], seed=7, draws=5, device="cpu")
    np.testing.assert_array_equal(d.per_draw, a.per_draw[:5])


def test_t_interval_over_draws():
    from scipy import stats

    x, y = _blobs(sep=0.8, seed=4)
    r = fewshot_probe(x[::2], y[::2], x[1::2], y[1::2], draws=12, device="cpu")
    half = stats.t.ppf(0.975, 11) * r.per_draw.std(ddof=1) / np.sqrt(12)
    assert r.accuracy == pytest.approx(r.per_draw.mean())
    assert r.ci_low == pytest.approx(max(r.accuracy - half, 0)) and r.ci_high == pytest.approx(min(r.accuracy + half, 1))


@pytest.mark.parametrize("l2,d,shots", [(1.0, 6, 5), (0.05, 30, 2), (10.0, 3, 8)])
def test_agrees_with_sklearn_ridge_classifier(l2, d, shots):
    from sklearn.linear_model import RidgeClassifier
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    x, y = _blobs(n_per=30, c=3, d=d, sep=0.7, seed=6)
    x[:, 0] = 2.0  # a constant column: centred only, as StandardScaler does
    y = np.array(["a", "b", "c"])[y]  # string labels
    perm = rng.permutation(len(y))
    xtr, ytr, xte, yte = x[perm[:60]], y[perm[:60]], x[perm[60:]], y[perm[60:]]
    r = fewshot_probe(xtr, ytr, xte, yte, shots=shots, draws=6, l2=l2, seed=2, device="cpu")
    codes = np.unique(ytr, return_inverse=True)[1]
    ref = []
    for idx in fewshot_draws(codes, shots, 6, 2):
        sc = StandardScaler().fit(xtr[idx])
        m = RidgeClassifier(alpha=l2 * len(idx)).fit(sc.transform(xtr[idx]), ytr[idx])
        ref.append((m.predict(sc.transform(xte)) == yte).mean())
    np.testing.assert_allclose(r.per_draw, ref, atol=1e-12)


def test_draws_are_stratified_without_replacement():
    codes = np.repeat(np.arange(3), [4, 7, 5])
    idx = fewshot_draws(codes, 4, 5, 0)
    assert idx.shape == (5, 12)
    for row in idx:
        assert len(set(row)) == 12
        np.testing.assert_array_equal(codes[row], np.repeat(np.arange(3), 4))


def test_errors_name_shapes_and_classes():
    x, y = _blobs(n_per=6, c=3)
    with pytest.raises(ValueError, match=r"fewer than shots=7 rows in class"):
        fewshot_probe(x, y, x, y, shots=7, device="cpu")
    with pytest.raises(ValueError, match=r"same number of features: shapes \(18, 6\) and \(18, 5\)"):
        fewshot_probe(x, y, x[:, :5], y, device="cpu")
    with pytest.raises(ValueError, match=r"same number of rows"):
        fewshot_probe(x, y[:-1], x, y, device="cpu")
    with pytest.raises(ValueError, match=r"never seen in train_y"):
        fewshot_probe(x, y, x, y + 5, shots=2, device="cpu")
    with pytest.raises(ValueError, match=r"l2 must be"):
        fewshot_probe(x, y, x, y, shots=2, l2=0.0, device="cpu")
    with pytest.raises(ValueError, match=r"shots must be"):
        fewshot_probe(x, y, x, y, shots=0, device="cpu")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf"):
        fewshot_probe(bad, y, x, y, shots=2, device="cpu")

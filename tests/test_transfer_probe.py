"""Linear probe: exact cases, chance level, agreement with scikit-learn, the sweep, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from infodyn.transfer import DEFAULT_L2_GRID, linear_probe
from infodyn.transfer.probe import stratified_split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n, d, c, sep, seed):
    r = np.random.default_rng(seed)
    centres = r.normal(size=(c, d)) * sep
    y = np.arange(n) % c
    r.shuffle(y)
    return centres[y] + r.normal(size=(n, d)), y


def test_perfect_features_give_accuracy_one():
    x, y = blobs(300, 8, 4, sep=20.0, seed=1)
    res = linear_probe(x[:200], y[:200], x[200:], y[200:], seed=0)
    assert res.accuracy == 1.0
    assert res.train_accuracy == 1.0
    assert res.n_train == 200 and res.n_test == 100 and res.n_classes == 4
    assert np.array_equal(res.predictions, y[200:])


def test_label_independent_features_give_chance():
    r = np.random.default_rng(2)
    c, n_test = 4, 2000
    x = r.normal(size=(400 + n_test, 10))
    y = r.integers(0, c, size=400 + n_test)
    res = linear_probe(x[:400], y[:400], x[400:], y[400:], l2_grid=[1e-2, 1e-1, 1.0], seed=0)
    # binomial tolerance: 4 standard deviations around 1/C
    tol = 4 * np.sqrt((1 / c) * (1 - 1 / c) / n_test)
    assert abs(res.accuracy - 1 / c) < tol


@pytest.mark.parametrize("l2", [1e-3, 3e-2])
def test_matches_sklearn_at_same_regularisation(l2):
    x, y = blobs(900, 20, 3, sep=0.5, seed=3)
    xtr, ytr, xte, yte = x[:600], y[:600], x[600:], y[600:]
    res = linear_probe(xtr, ytr, xte, yte, l2_grid=[l2], dtype="float64", tol=1e-9, max_iter=2000)
    sc = StandardScaler().fit(xtr)
    # sklearn minimises C * sum(logloss) + 1/2 ||W||^2, i.e. our objective times C * n
    sk = LogisticRegression(C=1.0 / (l2 * xtr.shape[0]), tol=1e-10, max_iter=5000)
    sk.fit(sc.transform(xtr), ytr)
    sk_acc = sk.score(sc.transform(xte), yte)
    assert abs(res.accuracy - sk_acc) <= 0.005
    # the same optimum, not only the same accuracy
    np.testing.assert_allclose(res.predict_proba(xte), sk.predict_proba(sc.transform(xte)), atol=1e-4)
    assert 0.5 < res.accuracy < 1.0  # a case where the strength matters
    assert len(res.sweep) == 1 and res.sweep.l2[0] == l2 and np.isnan(res.sweep.val_accuracy[0])
    assert res.sweep.C_sklearn[0] == pytest.approx(1.0 / (l2 * 600))


def test_float32_default_close_to_sklearn():
    x, y = blobs(900, 20, 3, sep=0.5, seed=4)
    l2 = 1e-2
    res = linear_probe(x[:600], y[:600], x[600:], y[600:], l2_grid=[l2])
    sc = StandardScaler().fit(x[:600])
    sk = LogisticRegression(C=1.0 / (l2 * 600), max_iter=1000).fit(sc.transform(x[:600]), y[:600])
    assert abs(res.accuracy - sk.score(sc.transform(x[600:]), y[600:])) <= 0.005


def test_sweep_table_and_choice():
    x, y = blobs(500, 12, 3, sep=0.6, seed=5)
    res = linear_probe(x[:400], y[:400], x[400:], y[400:], seed=0)
    sw = res.sweep
    assert isinstance(sw, pd.DataFrame) and len(sw) == len(DEFAULT_L2_GRID) == 10
    assert list(sw.columns[:4]) == ["l2", "C_sklearn", "val_accuracy", "val_loss"]
    assert np.all(np.diff(sw.l2.to_numpy()) > 0)
    assert sw.val_accuracy.between(0, 1).all()
    best = sw.val_accuracy.max()
    assert res.l2 == sw.l2[sw.val_accuracy == best].max()  # ties -> stronger penalty
    n_sweep_train = 400 - 80
    np.testing.assert_allclose(sw.C_sklearn, 1.0 / (sw.l2 * n_sweep_train))


def test_deterministic_and_tensor_input():
    x, y = blobs(300, 6, 3, sep=0.7, seed=6)
    a = linear_probe(x[:200], y[:200], x[200:], y[200:], seed=3)
    b = linear_probe(torch.from_numpy(x[:200]), torch.from_numpy(y[:200]), torch.from_numpy(x[200:]),
                     torch.from_numpy(y[200:]), seed=3, device="cpu")
    assert a.accuracy == b.accuracy and a.l2 == b.l2
    pd.testing.assert_frame_equal(a.sweep.drop(columns="seconds"), b.sweep.drop(columns="seconds"))


def test_string_labels_and_predictions_in_original_values():
    x, y = blobs(200, 5, 2, sep=10.0, seed=7)
    names = np.array(["cat", "dog"])[y]
    res = linear_probe(x[:150], names[:150], x[150:], names[150:])
    assert res.accuracy == 1.0
    assert set(res.predictions) <= {"cat", "dog"}


def test_stratified_split_is_seeded_and_stratified():
    codes = np.repeat(np.arange(3), [50, 30, 1])
    tr, va = stratified_split(codes, 0.2, seed=0)
    assert np.bincount(codes[va], minlength=3).tolist() == [10, 6, 0]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(codes)
    tr2, va2 = stratified_split(codes, 0.2, seed=0)
    assert np.array_equal(va, va2)
    _, va3 = stratified_split(codes, 0.2, seed=1)
    assert not np.array_equal(va, va3)


def test_bad_input_raises_naming_the_problem():
    x, y = blobs(60, 4, 3, sep=5.0, seed=8)
    with pytest.raises(ValueError, match=r"only 1 class.*\(60,\)"):
        linear_probe(x, np.zeros(60, int), x, y)
    with pytest.raises(ValueError, match=r"3 samples .* 3 classes"):
        linear_probe(x[:3], np.arange(3), x, y)
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"x_test of shape \(60, 4\) contains NaN"):
        linear_probe(x, y, bad, y)
    with pytest.raises(ValueError, match=r"same number of rows.*\(60, 4\).*\(59,\)"):
        linear_probe(x, y[:-1], x, y)
    with pytest.raises(ValueError, match=r"same number of features.*\(60, 4\).*\(60, 3\)"):
        linear_probe(x, y, x[:, :3], y)
    with pytest.raises(ValueError, match=r"never seen in y_train: \[7\]"):
        linear_probe(x, y, x[:2], np.array([0, 7]))
    with pytest.raises(ValueError, match="l2_grid"):
        linear_probe(x, y, x, y, l2_grid=[-1.0, 1.0])
    with pytest.raises(ValueError, match="validation split"):
        linear_probe(x[:4], np.array([0, 1, 2, 2]), x, y, val_fraction=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x, y = blobs(600, 16, 4, sep=0.5, seed=9)
    a = linear_probe(x[:400], y[:400], x[400:], y[400:], device="cpu", dtype="float64", tol=1e-8)
    b = linear_probe(x[:400], y[:400], x[400:], y[400:], device="cuda", dtype="float64", tol=1e-8)
    assert abs(a.accuracy - b.accuracy) <= 0.005


def test_sweep_with_carried_curvature_reaches_the_fresh_optimum():
    from infodyn.transfer.probe import _Softmax

    x, y = blobs(400, 10, 3, sep=0.6, seed=10)
    xt = torch.from_numpy((x - x.mean(0)) / x.std(0))
    yt = torch.from_numpy(y)
    swept = _Softmax(10, 3, "cpu", torch.float64)
    it_swept = it_fresh = 0
    for l2 in [1.0, 0.1, 0.01, 0.001]:
        # both stop when the loss stops changing (gradients near 1e-7), so weights agree to ~1e-6
        it_swept += swept.fit(xt, yt, l2, 2000, 1e-10)  # warm start, memory shifted to the new l2
        fresh = _Softmax(10, 3, "cpu", torch.float64)
        it_fresh += fresh.fit(xt, yt, l2, 2000, 1e-10)
        np.testing.assert_allclose(swept.wt.numpy(), fresh.wt.numpy(), atol=2e-5)
        # centred biases (softmax is invariant to a common shift)
        np.testing.assert_allclose(swept.b.numpy() - swept.b.numpy().mean(),
                                   fresh.b.numpy() - fresh.b.numpy().mean(), atol=2e-5)
    assert it_swept < it_fresh

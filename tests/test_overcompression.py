"""The over-compression score (infodyn/overcompression.py): invariances, limits, target use, errors."""
import math

import numpy as np
import pytest

from infodyn import overcompression as oc


def _clusters(spread, n=300, classes=3, d=16, seed=0):
    r = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n // classes)
    means = r.normal(size=(classes, d)) * 3
    return means[y] + spread * r.normal(size=(n, d)), y


def _score(t, y, **kw):
    return oc.overcompression_from_features(t, y, **kw)


def _reference(t, y, target=None):
    """Independent numpy implementation of the documented formula (full S_W, pinv(S_B))."""
    def erank(a):
        s = np.linalg.svd(a - a.mean(0), compute_uv=False)
        p = s / s.sum()
        p = p[p > 0]
        return math.exp(-(p * np.log(p)).sum())

    def nc1(a, lab):
        classes = np.unique(lab)
        mu = a.mean(0)
        means = np.stack([a[lab == c].mean(0) for c in classes])
        dev = a - means[np.searchsorted(classes, lab)]
        sw = dev.T @ dev / len(a)
        mb = means - mu
        sb = mb.T @ mb / len(classes)
        return np.trace(sw @ np.linalg.pinv(sb)) / len(classes)

    c = len(np.unique(y))
    v = nc1(t, y)
    adj = erank(t) * (v / (1 + v)) ** oc.NC1_WEIGHT
    if target is not None:
        w = nc1(*target)
        adj /= (w / (1 + w)) ** oc.TARGET_WEIGHT
    return (c - 1) / max(adj, c - 1)


def test_matches_an_independent_implementation_of_the_formula():
    t, y = _clusters(1.0)
    tt, ty = _clusters(2.0, n=200, classes=4, d=16, seed=3)
    assert _score(t, y).score == pytest.approx(_reference(t, y), rel=1e-9)
    assert _score(t, y, target=(tt, ty)).score == pytest.approx(_reference(t, y, (tt, ty)), rel=1e-9)


def test_effective_rank_of_k_equal_orthogonal_directions_is_k():
    k = 7
    e = np.eye(12)[:k]
    t = np.concatenate([e, -e])  # centred already; k equal singular values sqrt(2)
    assert oc.effective_rank(t) == pytest.approx(k, rel=1e-12)
    assert oc.effective_rank(np.ones((5, 3))) == 0.0


def test_invariant_to_feature_scale_including_extremes():
    t, y = _clusters(1.0)
    tt, ty = _clusters(2.0, seed=5)
    base = _score(t, y)
    based = _score(t, y, target=(tt, ty))
    for k in (1e-300, 1e-3, 1e3, 1e300):
        s = _score(t * k, y)
        st = _score(t * k, y, target=(tt * k, ty))
        assert np.isfinite(s.score) and np.isfinite(st.score)
        assert s.score == pytest.approx(base.score, rel=1e-9)
        assert st.score == pytest.approx(based.score, rel=1e-9)
        assert all(np.isfinite(v) for v in s.extra.values())


def test_invariant_to_rotation_and_translation():
    t, y = _clusters(1.0)
    q, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(16, 16)))
    assert _score(t @ q + 5.0, y).score == pytest.approx(_score(t, y).score, rel=1e-9)


def test_comparable_across_widths_zero_and_duplicate_columns():
    t, y = _clusters(1.0)
    base = _score(t, y).score
    padded = np.concatenate([t, np.zeros((t.shape[0], 48))], axis=1)  # 16 -> 64 wide, same information
    duplicated = np.concatenate([t, t, t], axis=1)  # 16 -> 48 wide, same information
    assert _score(padded, y).score == pytest.approx(base, rel=1e-6)
    assert _score(duplicated, y).score == pytest.approx(base, rel=1e-6)


def test_collapse_to_class_means_is_the_maximum():
    t, y = _clusters(0.0)
    assert _score(t, y).score == 1.0
    tt, ty = _clusters(1.0, seed=4)
    assert _score(t, y, target=(tt, ty)).score == 1.0  # a collapsed source is collapsed whatever the target
    assert _score(np.ones((30, 4)), np.repeat([0, 1, 2], 10)).score == 1.0  # one point


def test_isotropic_full_rank_features_score_low():
    r = np.random.default_rng(1)
    t = r.normal(size=(500, 64))
    y = r.integers(0, 5, size=500)
    s = _score(t, y)
    assert s.extra["effective_rank"] > 50
    assert s.score < 0.1


def test_score_rises_as_classes_collapse():
    scores = [_score(*_clusters(s)).score for s in (10, 3, 1, 0.3, 0.1)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] < 0.2 and scores[-1] > 0.9


def test_target_changes_the_score_in_the_right_direction():
    t, y = _clusters(1.0)
    separated = _clusters(0.3, seed=7)
    confused = (np.random.default_rng(8).normal(size=(300, 16)), np.repeat(np.arange(3), 100))
    plain = _score(t, y)
    good = _score(t, y, target=separated)
    bad = _score(t, y, target=confused)
    assert not plain.target_aware and plain.name == "overcompression_score"
    assert good.target_aware and good.name == "overcompression_score_target"
    assert good.parts["target_confusion"] < bad.parts["target_confusion"]
    assert good.score < bad.score <= plain.score
    assert good.score != plain.score


def test_deterministic_and_seeded_subsample():
    t, y = _clusters(1.0, n=600)
    a = _score(t, y, max_samples=200, seed=3)
    b = _score(t, y, max_samples=200, seed=3)
    assert a.score == b.score and a.n == 200
    assert _score(t, y).n == 600


def test_clear_errors_name_the_shapes():
    t, y = _clusters(1.0)
    with pytest.raises(ValueError, match=r"\(300, 16\).*\(299,\)"):
        _score(t, y[:-1])
    with pytest.raises(ValueError, match="single class"):
        _score(t, np.zeros(len(t), dtype=int))
    bad = t.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"source features of shape \(300, 16\) contains NaN"):
        _score(bad, y)
    with pytest.raises(ValueError, match="target features.*\\(10, 16\\).*\\(9,\\)"):
        _score(t, y, target=(t[:10], y[:9]))
    with pytest.raises(ValueError, match="pair"):
        _score(t, y, target=t)
    with pytest.raises(ValueError, match="too few"):
        _score(t[:5], np.array([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="max_samples"):
        _score(t, y, max_samples=0)


def test_score_of_a_model_uses_the_input_of_the_last_linear_and_the_target():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    r = np.random.default_rng(0)
    x = r.normal(size=(200, 8)).astype(np.float32)
    y = r.integers(0, 4, size=200)
    res = oc.score_overcompression(model, (torch.from_numpy(x), torch.from_numpy(y)), device="cpu")
    assert res.layer == "input of 2"
    with torch.no_grad():
        t = torch.tanh(model[0](torch.from_numpy(x))).double().numpy()
    assert res.score == pytest.approx(_score(t, y).score, rel=1e-9)
    xt = r.normal(size=(150, 8)).astype(np.float32)
    yt = (xt[:, 0] > 0).astype(int)  # a target the layer can separate
    aware = oc.score_overcompression(model, (x, y), target=(xt, yt), device="cpu")
    assert aware.target_aware and aware.score != res.score and 0 <= aware.score <= 1
    assert 0.0 <= aware.extra["target_knn_acc"] <= 1.0
    with pytest.raises(ValueError, match="closest"):
        oc.score_overcompression(model, (x, y), layer="fc9")
    with pytest.raises(ValueError, match="pair"):
        oc.score_overcompression(model, x)

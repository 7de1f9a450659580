"""infodyn.data: the bundled, generated and user data sets, splits, class subsets, manifest."""
import hashlib
import importlib
import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from infodyn import data
from infodyn.data import ib12bit
from infodyn.data.files import combined_sha256

ROOT = Path(__file__).resolve().parents[1]
HAS_MNIST1D = importlib.util.find_spec("mnist1d") is not None


def entropy_bits(labels):
    _, counts = np.unique(labels, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


# ---------------------------------------------------------------- the 12-bit task

def test_ib12bit_neighbour_table_is_an_icosahedron():
    adj = np.zeros((12, 12), dtype=int)
    for i, nb in enumerate(ib12bit.NEIGHBOURS):
        assert len(set(nb)) == 5 and i not in nb
        adj[i, list(nb)] = 1
    assert (adj == adj.T).all()                      # symmetric
    anti = np.array(ib12bit.ANTIPODE)
    assert (anti[anti] == np.arange(12)).all()       # an involution
    assert (anti != np.arange(12)).all()
    for i in range(12):                              # the antipode is neither i nor a neighbour
        assert adj[i, anti[i]] == 0
    # 30 edges, and every edge lies on exactly two triangles (a closed triangulated surface)
    assert adj.sum() // 2 == 30
    tri = np.trace(np.linalg.matrix_power(adj, 3)) // 6
    assert tri == 20
    # second neighbours: the 5 vertices that are neither i, its neighbours nor its antipode
    dist2 = (adj @ adj > 0) & (adj == 0) & ~np.eye(12, dtype=bool)
    assert (dist2.sum(1) == 5).all()
    assert not dist2[np.arange(12), anti].any()


def test_ib12bit_exact_counts_and_entropies():
    ds = data.load("ib12bit")
    x, y = ds.all()
    assert x.shape == (4096, 12) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(x)) == {0.0, 1.0}
    assert int(y.sum()) == 2118
    assert len(np.unique(x, axis=0)) == 4096
    assert entropy_bits(x) == pytest.approx(12.0, abs=1e-12)
    assert entropy_bits(y) == pytest.approx(0.99916, abs=5e-6)
    # X -> Y deterministic, so I(X;Y) = H(Y)
    joint = np.concatenate([x, y[:, None]], axis=1)
    assert entropy_bits(x) + entropy_bits(y) - entropy_bits(joint) == pytest.approx(0.99916, abs=5e-6)


def test_ib12bit_rule_by_brute_force():
    """Recount k, a, s, b pair by pair for every pattern, independently of the vectorised code."""
    edges = {frozenset((i, j)) for i, nb in enumerate(ib12bit.NEIGHBOURS) for j in nb}
    antis = {frozenset((i, j)) for i, j in enumerate(ib12bit.ANTIPODE)}
    x, y = data.load("ib12bit").all()
    for row, (bits, label) in enumerate(zip(itertools.product([0, 1], repeat=12), y)):
        assert tuple(x[row].astype(int)) == bits
        on = [i for i, b in enumerate(bits) if b]
        pairs = [frozenset(p) for p in itertools.combinations(on, 2)]
        a = sum(p in edges for p in pairs)
        b = sum(p in antis for p in pairs)
        s = len(pairs) - a - b
        assert label == int(23 * len(on) + a - 5 * s - 8 * b >= 99)


def test_ib12bit_signed_and_split():
    x01, y = data.load("ib12bit").all()
    xs, ys = data.load("ib12bit", signed=True).all()
    np.testing.assert_array_equal(xs, 2 * x01 - 1)
    np.testing.assert_array_equal(ys, y)
    ds = data.load("ib12bit", seed=3)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (3481, 0, 615)
    assert ds.x_val.shape == (0, 12)
    # the 85% training part is stratified: positives in proportion
    assert abs(ds.y_train.mean() - 2118 / 4096) < 1e-3
    with pytest.raises(ValueError, match=r"\(n, 12\).*\(3, 11\)"):
        ib12bit.labels(np.zeros((3, 11)))


# ---------------------------------------------------------------- digits and class subsets

def test_digits_shapes_range_and_bundled_checksum():
    ds = data.load("digits")
    assert ds.input_shape == (64,) and ds.num_classes == 10 and ds.n == 1797
    x, y = ds.all()
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    from sklearn.datasets import load_digits

    ref = load_digits()
    np.testing.assert_array_equal(x, (ref.data / 16).astype(np.float32))
    np.testing.assert_array_equal(y, ref.target)
    from infodyn.data.digits import DIGITS_SHA256, bundled_file

    with open(bundled_file(), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == DIGITS_SHA256
    entry = [e for e in data.manifest()["datasets"] if e["name"] == "digits"][0]
    assert entry["sha256"] == DIGITS_SHA256
    img = data.load("digits", as_image=True)
    assert img.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(img.x_train.reshape(len(img.x_train), -1), ds.x_train)


def test_class_subsets_recode_and_keep_original_ids():
    full = data.load("digits", seed=1)
    src, tgt = data.load("digits:0-4", seed=1), data.load("digits:5-9", seed=1)
    assert src.classes == (0, 1, 2, 3, 4) and tgt.classes == (5, 6, 7, 8, 9)
    for ds in (src, tgt):
        for _, y in ds.splits().values():
            assert set(np.unique(y)) == set(range(5))
    # the recoded samples are exactly the full set's samples of those classes, same split
    for part in ("train", "val", "test"):
        xf, yf = full.splits()[part]
        xt, yt = tgt.splits()[part]
        keep = yf >= 5
        np.testing.assert_array_equal(xt, xf[keep])
        np.testing.assert_array_equal(yt, yf[keep] - 5)
    lst = data.load("digits:4,2,0")
    assert lst.classes == (4, 2, 0) and lst.num_classes == 3
    xa, ya = lst.all()
    xf, yf = full.all()
    np.testing.assert_array_equal(xa, xf[np.isin(yf, [0, 2, 4])])
    np.testing.assert_array_equal(np.array([4, 2, 0])[ya], yf[np.isin(yf, [0, 2, 4])])
    assert data.load("digits", classes=[5, 6, 7, 8, 9]).name == "digits:5-9"
    s, t = data.source_target("digits")
    assert (s.role, t.role, s.classes, t.classes) == ("source", "target", src.classes, tgt.classes)
    s2, t2 = data.source_target("digits:0-4->digits:5-9", seed=1)
    np.testing.assert_array_equal(s2.x_train, src.x_train)
    np.testing.assert_array_equal(t2.x_test, tgt.x_test)
    # no sample is shared between splits
    idx = np.concatenate([full.idx_train, full.idx_val, full.idx_test])
    assert len(np.unique(idx)) == len(idx) == 1797


def test_bad_class_subsets():
    with pytest.raises(ValueError, match=r"\[12\].*0-9"):
        data.load("digits:0-4,12")
    with pytest.raises(ValueError, match="more than once"):
        data.load("digits:0-4,3")
    with pytest.raises(ValueError, match="backwards"):
        data.load("digits:4-0")


def test_split_is_stratified_and_deterministic():
    a, b, c = data.load("digits", seed=7), data.load("digits", seed=7), data.load("digits", seed=8)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits()[part][0], b.splits()[part][0])
        np.testing.assert_array_equal(a.splits()[part][1], b.splits()[part][1])
    assert not np.array_equal(a.idx_test, c.idx_test)
    x, y = a.all()
    counts = np.bincount(y)
    for yy, f in ((a.y_train, 0.6), (a.y_val, 0.2), (a.y_test, 0.2)):
        assert np.all(np.abs(np.bincount(yy, minlength=10) - f * counts) <= 1.0)
    custom = data.load("digits", split=(0.5, 0.5))
    assert len(custom.y_val) == 0 and abs(len(custom.y_train) - len(custom.y_test)) <= 10
    for bad in ((0.5, 0.6, 0.1), (0.0, 0.5, 0.5), (1.0,), "a"):
        with pytest.raises(ValueError, match="split"):
            data.load("digits", split=bad)


# ---------------------------------------------------------------- gaussian mixture

def test_gaussian_mixture_parameters_and_geometry():
    ds = data.load("gaussian-mixture", classes=4, dims=8, separation=3.0, noise=1.0,
                   n_per_class=500, seed=0)
    assert ds.input_shape == (8,) and ds.num_classes == 4 and ds.n == 2000
    assert ds.meta["params"] == {"classes": 4, "dims": 8, "separation": 3.0, "noise": 1.0,
                                 "n_per_class": 500}
    m = ds.meta["means"].astype(float)
    d = np.linalg.norm(m[:, None] - m[None], axis=-1)
    np.testing.assert_allclose(d[~np.eye(4, dtype=bool)], 3.0, rtol=1e-5)
    x, y = ds.all()
    assert np.bincount(y).tolist() == [500] * 4
    for c in range(4):                                   # within-class spread = noise
        r = x[y == c] - m[c]
        assert r.std() == pytest.approx(1.0, rel=0.05)
        assert np.abs(r.mean(0)).max() < 0.2
    # more classes than dims + 1: the closest pair is exactly `separation` apart
    many = data.load("gaussian-mixture?classes=6&dims=2&separation=2.5&n_per_class=20")
    m = many.meta["means"].astype(float)
    d = np.linalg.norm(m[:, None] - m[None], axis=-1) + np.diag([np.inf] * 6)
    assert d.min() == pytest.approx(2.5, rel=1e-5)
    assert many.num_classes == 6 and many.input_shape == (2,)
    np.testing.assert_array_equal(data.load(many.name).x_train, many.x_train)


def test_gaussian_mixture_seeded():
    a = data.load("gaussian-mixture", seed=1, n_per_class=50)
    b = data.load("gaussian-mixture", seed=1, n_per_class=50)
    c = data.load("gaussian-mixture", seed=2, n_per_class=50)
    np.testing.assert_array_equal(a.all()[0], b.all()[0])
    assert not np.allclose(a.meta["means"], c.meta["means"])
    sub = data.load("gaussian-mixture:0-1", seed=1, n_per_class=50)
    assert sub.num_classes == 2 and sub.n == 100
    with pytest.raises(ValueError, match="dims"):
        data.load("gaussian-mixture", dims=0)
    with pytest.raises(ValueError, match="unknown parameters.*bogus"):
        data.load("gaussian-mixture", bogus=1)


def test_splits_are_fresh_copies():
    a = data.load("digits")
    a.x_train[:] = -1
    assert data.load("digits").x_train.min() == 0.0


# ---------------------------------------------------------------- mnist1d

@pytest.mark.skipif(not HAS_MNIST1D, reason="mnist1d not installed")
def test_mnist1d_offline_default_args():
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    before = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    ds = data.load("mnist1d")
    assert (np.random.random(), random.random()) == before   # caller's global RNG untouched
    assert ds.input_shape == (40,) and ds.num_classes == 10 and ds.n == 5000
    assert len(ds.y_test) == 1000 and len(ds.y_train) + len(ds.y_val) == 4000
    assert abs(len(ds.y_train) - 3000) <= 10          # 3:1 per class, rounded per class
    ref = make_dataset(get_dataset_args())
    np.testing.assert_allclose(ds.x_test, ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])
    assert np.bincount(ds.all()[1]).tolist() == [500] * 10
    assert data.load("mnist1d:5-9", as_image=True).input_shape == (1, 40)
    with pytest.raises(ValueError, match="unknown parameters.*url"):
        data.load("mnist1d", url="http://x")


def test_mnist1d_missing_package_message(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("mnist1d"):
            raise ImportError("No module named 'mnist1d'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    from infodyn.data import mnist1d

    with pytest.raises(ImportError, match=r"pip install 'infodyn\[mnist1d\]'"):
        mnist1d.generate(0)


# ---------------------------------------------------------------- user files

def _write(path, **arrays):
    np.savez(path, **arrays)
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_user_npz_file_checksum_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3, 2))
    y = np.repeat([3, 7, 9], 20)
    f = tmp_path / "mine.npz"
    sha = _write(f, x=x, y=y)
    ds = data.load(str(f), sha256=sha, seed=0)
    assert ds.classes == (3, 7, 9) and ds.input_shape == (3, 2) and ds.role == "user"
    xa, ya = ds.all()
    np.testing.assert_array_equal(xa, x.astype(np.float32))
    np.testing.assert_array_equal(np.array(ds.classes)[ya], y)
    assert ds.meta["file_sha256"] == sha
    sub = data.load(f"{f}:7,9")
    assert sub.classes == (7, 9) and sub.n == 40
    with pytest.raises(ValueError) as err:
        data.load(f, sha256="0" * 64)
    msg = str(err.value)
    assert str(f) in msg and sha in msg and "0" * 64 in msg


def test_user_npz_errors(tmp_path):
    f = tmp_path / "bad.npz"
    np.savez(f, inputs=np.zeros((4, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"bad\.npz.*'x' and 'y'.*inputs"):
        data.load(f)
    np.savez(f, x=np.zeros((4, 2)), y=np.zeros(5))
    with pytest.raises(ValueError, match=r"bad\.npz.*\(4, 2\)"):
        data.load(f)
    np.savez(f, x=np.full((4, 2), np.nan), y=np.zeros(4))
    with pytest.raises(ValueError, match=r"bad\.npz.*NaN"):
        data.load(f)
    np.savez(f, x=np.zeros((4, 2)), y=np.array([0.5, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"bad\.npz.*labels"):
        data.load(f)
    np.savez(f, x=np.zeros((4, 2)), y=np.array([None] * 4, dtype=object))
    with pytest.raises(ValueError, match=r"bad\.npz"):
        data.load(f)
    with pytest.raises(ValueError, match="no such file"):
        data.load(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        data.load("nope")


def test_user_folder_sorted_and_checked(tmp_path):
    rng = np.random.default_rng(1)
    parts = {}
    for name in ("b.npz", "a.npz", "c.npz"):
        parts[name] = (rng.normal(size=(10, 4)), rng.integers(0, 2, 10))
        _write(tmp_path / name, x=parts[name][0], y=parts[name][1])
    (tmp_path / "notes.txt").write_text("ignored")
    ds = data.load(tmp_path)
    xa, ya = ds.all()
    np.testing.assert_array_equal(xa, np.concatenate([parts[n][0] for n in sorted(parts)]).astype(np.float32))
    np.testing.assert_array_equal(ya, np.concatenate([parts[n][1] for n in sorted(parts)]))
    hashes = ds.meta["file_sha256"]
    assert sorted(hashes) == ["a.npz", "b.npz", "c.npz"]
    data.load(tmp_path, sha256=combined_sha256(hashes))
    data.load(tmp_path, sha256={"b.npz": hashes["b.npz"]})
    with pytest.raises(ValueError, match=r"b\.npz.*mismatch"):
        data.load(tmp_path, sha256={"b.npz": hashes["a.npz"]})
    with pytest.raises(ValueError, match="combined digest"):
        data.load(tmp_path, sha256=hashes["a.npz"])
    _write(tmp_path / "d.npz", x=np.zeros((3, 5)), y=np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"d\.npz.*\(5,\).*\(4,\)"):
        data.load(tmp_path)


def test_user_manifest(tmp_path):
    f = tmp_path / "set.npz"
    sha = _write(f, x=np.arange(20.0).reshape(10, 2), y=np.array(["cat", "dog"] * 5))
    m = tmp_path / "m.yaml"
    m.write_text(f"version: 1\ndatasets:\n  - name: pets\n    path: set.npz\n    sha256: {sha}\n")
    ds = data.load("pets", manifest=m, split=(0.6, 0.4))
    assert ds.classes == ("cat", "dog") and ds.name == "pets"
    assert data.load("pets:dog", manifest=m).classes == ("dog",)
    m.write_text(f"version: 1\ndatasets:\n  - name: pets\n    path: set.npz\n    sha256: {'f' * 64}\n")
    with pytest.raises(ValueError, match=r"set\.npz.*mismatch"):
        data.load("pets", manifest=m)
    with pytest.raises(ValueError, match=r"set\.npz.*mismatch"):
        data.load(str(f), manifest=m)       # checksum looked up by path
    m.write_text("datasets: {}\n")
    with pytest.raises(ValueError, match="datasets"):
        data.manifest(m)


# ---------------------------------------------------------------- names, docs, manifest

def test_parse_name_and_docstring_examples():
    import doctest

    assert data.parse_name("digits:0-4?as_image=true&split=0.8,0.1,0.1") == \
        ("digits", "0-4", {"as_image": True, "split": (0.8, 0.1, 0.1)})
    assert data.parse_name("gaussian-mixture?noise=0.5") == ("gaussian-mixture", None, {"noise": 0.5})
    assert data.parse_classes("0-2,7") == (0, 1, 2, 7)
    assert data.load("digits?split=0.8,0.1,0.1").meta["split"] == (0.8, 0.1, 0.1)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        data.parse_name("digits?as_image")
    result = doctest.testmod(importlib.import_module("infodyn.data"))
    assert result.attempted >= 4 and result.failed == 0


def test_dataset_built_by_hand():
    z = np.zeros((2, 3), np.float32)
    ds = data.Dataset("h", z, np.array([0, 1]), z[:0], np.zeros(0, np.int64), z + 1,
                      np.array([1, 0]), classes=(0, 1), role="user")
    x, y = ds.all()
    assert x.shape == (4, 3) and y.tolist() == [0, 1, 1, 0] and ds.input_shape == (3,)


# ---------------------------------------------------------------- manifest

def test_manifest_lists_every_data_set_and_matches_loading():
    doc = data.manifest()
    assert (ROOT / "data_manifest.yaml").read_bytes() == \
        (ROOT / "infodyn" / "data" / "data_manifest.yaml").read_bytes()
    entries = {e["name"]: e for e in doc["datasets"]}
    assert set(data.available()) <= set(entries)
    assert data.available("digit*") == ["digits"]
    for name in data.available():
        e = entries[name]
        for key in ("source", "input_shape", "classes", "role", "split"):
            assert key in e, (name, key)
        if name == "mnist1d" and not HAS_MNIST1D:
            continue
        ds = data.load(name)
        assert list(ds.input_shape) == e["input_shape"], name
        assert ds.num_classes == e["classes"] and ds.n == e["n"], name
        assert ds.role == e["role"] and ds.meta["source"] == e["source"], name
        assert list(ds.meta["split"]) == pytest.approx(e["split"]), name

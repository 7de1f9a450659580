"""Hostile and odd input to the public estimator and metric functions (property-based).

Whatever the input (constant columns, duplicated rows, huge or tiny magnitudes, integer and
boolean dtypes, lists and tensors, too few samples, inf and NaN), the answer is finite numbers or
a ValueError whose message says what is wrong; never a silent NaN, another exception or a hang.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infodyn.estimators import estimate_mi, information_plane
from infodyn.transfer import knn_accuracy, linear_cka, linear_probe, logme, nc1, rankme

NON_NEURAL = ["binning", "gaussian", "kde", "kde_lower", "ksg", "renyi"]  # "interpolated" is a neural bound
FAST = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
ODDITIES = ["plain", "constant_column", "all_constant", "duplicated_rows", "huge", "tiny", "int", "bool",
            "nan", "inf", "neg_inf"]
CONTAINERS = ["numpy", "list", "tensor", "float32"]


@st.composite
def odd_data(draw, max_n=40, max_d=3):
    """(x, labels, oddity, container): x of shape (n, d) made odd in one way, integer labels (n,)."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**16))
    oddity = draw(st.sampled_from(ODDITIES))
    container = draw(st.sampled_from(CONTAINERS))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, draw(st.integers(1, 3)), size=n)
    if oddity == "constant_column":
        x[:, 0] = 3.0
    elif oddity == "all_constant":
        x[:] = -1.5
    elif oddity == "duplicated_rows":
        x = x[rng.integers(0, max(1, n // 3), size=n)]
    elif oddity == "huge":
        x = x * 1e150
    elif oddity == "tiny":
        x = x * 1e-150
    elif oddity == "int":
        x = np.round(x * 3).astype(np.int64)
    elif oddity == "bool":
        x = x > 0
    elif oddity in ("nan", "inf", "neg_inf"):
        x[rng.integers(n), rng.integers(d)] = {"nan": np.nan, "inf": np.inf, "neg_inf": -np.inf}[oddity]
    return wrap(x, container), wrap(y, container if container != "float32" else "numpy"), oddity, (n, d)


def wrap(a, container):
    if container == "list":
        return a.tolist()
    if container == "tensor":
        return torch.as_tensor(a)
    if container == "float32" and a.dtype.kind == "f":
        with np.errstate(over="ignore"):  # huge values become inf on purpose: hostile input
            return a.astype(np.float32)
    return a


def non_finite(*arrays) -> bool:
    return any(not np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in arrays)


def finite_or_value_error(fn, oddity, shape, *inputs):
    """Calls ``fn``; returns its value (asserted finite) or None after a ValueError that says
    what is wrong. Non-finite ``inputs`` must be refused, naming it (or an earlier problem such as
    too few samples)."""
    bad = non_finite(*inputs)
    try:
        out = fn()
    except ValueError as exc:
        msg = str(exc)
        assert len(msg) > 15, f"uninformative error {msg!r}"
        if bad:
            assert any(w in msg.lower() for w in ("nan", "inf", "finite", "at least", "samples")), msg
        return None
    assert not bad, f"accepted non-finite input {shape} ({oddity}) and returned {out!r}"
    for v in numbers(out):
        assert math.isfinite(v), f"silent non-finite result {out!r} for {oddity} input of shape {shape}"
    return out


def numbers(out):
    if isinstance(out, (float, int, np.floating, np.integer)):
        return [float(out)]
    if hasattr(out, "nats"):  # MIEstimate
        return [out.nats] + (list(out.ci) if out.ci is not None else [])
    if hasattr(out, "i_xt"):  # InformationPlane
        return numbers(out.i_xt) + numbers(out.i_ty)
    if hasattr(out, "accuracy"):  # probe / k-NN results
        return [out.accuracy]
    raise AssertionError(f"unexpected result type {type(out).__name__}")


@pytest.mark.parametrize("method", NON_NEURAL)
@FAST
@given(data=odd_data(), other=odd_data())
def test_estimate_mi_continuous_pairs(method, data, other):
    x, _, oddity, shape = data
    y, _, odd_y, shape_y = other
    n = min(shape[0], shape_y[0])
    x, y = _head(x, n), _head(y, n)
    finite_or_value_error(lambda: estimate_mi(x, y, method=method), (oddity, odd_y), (shape, shape_y), x, y)


@pytest.mark.parametrize("method", NON_NEURAL)
@FAST
@given(data=odd_data())
def test_estimate_mi_against_labels(method, data):
    x, y, oddity, shape = data
    finite_or_value_error(lambda: estimate_mi(x, y, method=method), oddity, shape, x)


@pytest.mark.parametrize("method", ["binning", "kde"])
@FAST
@given(data=odd_data())
def test_information_plane(method, data):
    t, y, oddity, shape = data
    finite_or_value_error(lambda: information_plane(t, y, method=method), oddity, shape, t)


@FAST
@given(data=odd_data())
def test_rankme(data):
    x, _, oddity, shape = data
    out = finite_or_value_error(lambda: rankme(x, device="cpu"), oddity, shape, x)
    if out is not None:
        assert 1.0 - 1e-6 <= out <= min(shape) + 1e-6 or out == 0.0 or min(shape) == 0


@FAST
@given(data=odd_data())
def test_nc1(data):
    x, y, oddity, shape = data
    finite_or_value_error(lambda: nc1(x, y, device="cpu"), oddity, shape, x)


@FAST
@given(data=odd_data())
def test_logme(data):
    x, y, oddity, shape = data
    finite_or_value_error(lambda: logme(x, y, device="cpu"), oddity, shape, x)


@FAST
@given(data=odd_data(), other=odd_data())
def test_linear_cka(data, other):
    a, _, oddity, shape = data
    b, _, odd_b, shape_b = other
    n = min(shape[0], shape_b[0])
    a, b = _head(a, n), _head(b, n)
    out = finite_or_value_error(lambda: linear_cka(a, b, device="cpu"), (oddity, odd_b), (shape, shape_b), a, b)
    if out is not None:
        assert -1e-6 <= out <= 1 + 1e-6


@pytest.mark.parametrize("fn", ["probe", "knn"])
@FAST
@given(train=odd_data(), test=odd_data())
def test_probe_and_knn(fn, train, test):
    xa, ya, odd_a, shape_a = train
    xb, yb, odd_b, shape_b = test
    if shape_a[1] != shape_b[1]:  # mismatched widths must be refused too
        xb = _head(wrap(np.zeros((shape_b[0], shape_a[1] + 1)), "numpy"), shape_b[0])
    if fn == "probe":
        call = lambda: linear_probe(xa, ya, xb, yb, device="cpu", max_iter=50)  # noqa: E731
    else:
        call = lambda: knn_accuracy(xa, ya, xb, yb, k=3, device="cpu")  # noqa: E731
    out = finite_or_value_error(call, (odd_a, odd_b), (shape_a, shape_b), xa, xb)
    if out is not None:
        assert 0.0 <= out.accuracy <= 1.0


def _head(a, n):
    return a[:n]


def test_logme_zero_features_is_the_noise_only_evidence():
    """F = 0: y_c ~ N(0, I / beta), maximised at beta = n / ||y_c||^2 (closed form)."""
    y = np.array([1, 1, 0, 0, 1, 2])
    onehot = np.eye(3)[y]
    n = len(y)
    ref = np.mean([0.5 * math.log(n / (onehot[:, c] ** 2).sum()) - 0.5 - 0.5 * math.log(2 * math.pi)
                   for c in range(3)])
    assert math.isclose(logme(np.zeros((n, 2)), y, device="cpu"), ref, rel_tol=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e-150, 1e150, 1e200])
def test_logme_does_not_depend_on_the_feature_scale(scale):
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    assert math.isclose(logme(f * scale, y, device="cpu"), logme(f, y, device="cpu"), rel_tol=1e-9)


@pytest.mark.parametrize("scale", [1e-150, 1e149, 1e200])
def test_linear_cka_does_not_depend_on_the_scale(scale):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 4))
    b = a @ rng.normal(size=(4, 3)) + 0.3 * rng.normal(size=(30, 3))
    assert math.isclose(linear_cka(a * scale, b, device="cpu"), linear_cka(a, b, device="cpu"), rel_tol=1e-9)
    assert math.isclose(linear_cka(a * scale, a * scale, device="cpu"), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("lr", [10.0, 1.0])
def test_mine_with_a_huge_learning_rate_raises_like_nwj_instead_of_a_huge_negative_value(lr):
    """Issue 17 item 5: mine with lr=10 returned -1,328,281 nats (its DV value is a log-sum-exp,
    so the exploding critic never turns into inf/NaN) while nwj raised "the critic diverged"."""
    rng = np.random.default_rng(15)
    x = rng.normal(size=(600, 2))
    y = 0.9 * x + math.sqrt(1 - 0.81) * rng.normal(size=(600, 2))
    kw = dict(seed=0, lr=lr, hidden=(32,), embed_dim=8, batch_size=32, max_steps=200, eval_every=20)
    for method in ("nwj", "mine"):
        with pytest.raises(ValueError, match=rf"{method}: the critic diverged.*lr={lr:g}\).*smaller learning rate"):
            estimate_mi(x, y, method=method, **kw)


def test_mine_that_never_beats_a_constant_critic_is_refused():
    """A critic whose best validation DV value is below -1 nat (a constant critic scores 0) is
    reported as diverged, not as an MI of -4 nats (rho = 0.9, lr = 0.03: found by a sweep)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 2))
    y = 0.9 * x + math.sqrt(1 - 0.81) * rng.normal(size=(2000, 2))
    with pytest.raises(ValueError, match=r"mine: the critic diverged \((best validation|held-out) DV value "
                                         r"-\d.*below the 0 of a constant critic"):
        estimate_mi(x, y, method="mine", seed=0, lr=0.03, hidden=(64,), embed_dim=16, batch_size=64,
                    max_steps=1500)
    ok = estimate_mi(x, y, method="mine", seed=0, lr=3e-3, hidden=(64,), embed_dim=16, batch_size=64,
                     max_steps=300)
    assert 0.5 < ok.nats < 1.75  # true MI 2 * -1/2 log(1 - 0.81) = 1.66 nats


def test_logme_with_targets_fit_exactly_is_refused_not_infinite():
    # rank n: zero residual, the evidence iteration runs off to zero noise (found by hypothesis)
    f = np.array([[-1.83032036, -1.38078213, 0.12943324], [-0.66013452, 0.75630261, -0.07798505],
                  [-0.14573873, -0.8941161, -1.80255122]])
    with pytest.raises(ValueError, match=r"shape \(3, 3\).*zero noise"):
        logme(f, np.array([0, 1, 0]), device="cpu")


# ----------------------------------------------------------------------------------------------
# manifests, paths and checkpoints through `infodyn analyze`
# (unknown keys and bad types of a manifest, and the malicious pickle at load_checkpoint level,
# are covered in tests/test_runs_manifest.py and tests/test_runs_load.py)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    from test_analysis_landscape import record_run

    return record_run(tmp_path_factory.mktemp("hostile"), "base", epochs=2)


def variant(base, tmp_path, edit=None, models_py=None, name="run"):
    import shutil

    import yaml

    d = tmp_path / name
    shutil.copytree(base, d)
    if edit is not None:
        m = yaml.safe_load((d / "infodyn.yaml").read_text())
        edit(m)
        (d / "infodyn.yaml").write_text(yaml.safe_dump(m))
    if models_py:
        (d / "models.py").write_text(models_py)
    return d


def test_layer_that_does_not_exist_names_the_file_key_and_layer(base_run, tmp_path):
    from infodyn import analysis

    d = variant(base_run, tmp_path, lambda m: m.update(layers=["fc1", "nope"]))
    with pytest.raises(ValueError, match=r"infodyn.yaml: key 'layers': layer 'nope' does not exist"):
        analysis.analyze(d, measures="binning", out=tmp_path / "o", progress=False)


def test_model_callable_that_raises_names_the_file_and_key(base_run, tmp_path):
    from infodyn import analysis

    d = variant(base_run, tmp_path, lambda m: m.update(model="models:boom"),
                "def boom(**kw):\n    raise RuntimeError('cannot build this')\n")
    with pytest.raises(ValueError, match=r"infodyn.yaml: the model callable 'models:boom' \(key 'model'\) "
                                         r"raised RuntimeError: cannot build this"):
        analysis.analyze(d, measures="binning", out=tmp_path / "o", progress=False)


def test_missing_data_file_stops_before_any_work_with_one_message(base_run, tmp_path, capsys):
    """A mistake that fails every checkpoint is found before the analysis starts (issue 17.9)."""
    from infodyn.cli import main

    d = variant(base_run, tmp_path, lambda m: m.update(data={"source": "gone.npz"}))
    assert main(["analyze", str(d), "--out", str(tmp_path / "o"), "--measures", "binning", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(d / "gone.npz") in err and "no such file" in err and "data.source" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "results.csv").exists()


def test_relative_data_path_resolves_against_the_manifest_and_nothing_is_written_outside_out(
        base_run, tmp_path, monkeypatch):
    """data.source: ../data/set.npz is found from any working directory; the run folder, the
    data folder and the working directory are unchanged afterwards (everything goes to --out)."""
    from infodyn.cli import main
    from infodyn.data import load

    ds = load("ib12bit", seed=0)
    data = tmp_path / "data"
    data.mkdir()
    x, y = ds.all()
    np.savez(data / "set.npz", x=x, y=y)
    runs = tmp_path / "runs"
    runs.mkdir()
    d = variant(base_run, runs, lambda m: m.update(data={"source": "../../data/set.npz"}))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    def snapshot():
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")
                if not str(p).startswith(str(tmp_path / "out"))}

    before = snapshot()
    code = main(["analyze", str(d), "--out", str(tmp_path / "out"), "--measures", "binning,source_acc",
                 "--no-progress"])
    assert code == 0
    assert snapshot() == before
    import pandas as pd

    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert df["error"].isna().all() and len(df) == 2 * (2 * 2 + 1)


class _Payload:
    """Unpickling this runs open(marker, "w"): a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_in_a_run_never_runs_its_payload(base_run, tmp_path, capsys):
    """End to end: a run whose checkpoint carries a pickle payload; analyze (every measure kind,
    landscape references included) refuses the file, reports it, and the payload never runs."""
    from infodyn.cli import main

    d = variant(base_run, tmp_path)
    marker = tmp_path / "PWNED"
    victim = sorted(d.glob("epoch*.pt"))[0]  # the first checkpoint: also the landscape reference
    state = torch.load(victim, weights_only=True)
    state["evil"] = _Payload(marker)
    torch.save(state, victim)
    code = main(["analyze", str(d), "--out", str(tmp_path / "o"), "--measures",
                 "binning,source_acc,weight_distance", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert victim.name in err and "refused" in err
    assert not marker.exists()


def test_two_runs_with_their_own_models_py_each_get_their_own(base_run, tmp_path):
    """Both runs keep a models.py (same module name, different code): each run builds its own."""
    from infodyn import analysis

    a = variant(base_run, tmp_path / "a", lambda m: m.update(model="models:make_a"),
                "from infodyn.models import mlp\n\ndef make_a(**kw):\n    return mlp(**kw)\n", name="run-a")
    b = variant(base_run, tmp_path / "b", lambda m: m.update(model="models:make_b"),
                "from infodyn.models import mlp\n\ndef make_b(**kw):\n    return mlp(**kw)\n", name="run-b")
    df = analysis.analyze([a, b], measures="binning", out=None, progress=False)
    assert (df["error"] == "").all() and set(df["run"]) == {"run-a", "run-b"}

import json
import subprocess
import sys

import numpy as np
import pytest

import infodyn
from infodyn.estimators import available, estimate_mi, MIEstimate

from conftest import correlated_gaussian


def test_import_is_light():
    code = "import sys, infodyn; assert 'torch' not in sys.modules, 'torch imported at import time'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_available_lists_gaussian_and_glob():
    assert "gaussian" in available()
    assert available("gauss*") == ["gaussian"]


def test_gaussian_closed_form():
    x, y, truth = correlated_gaussian(20000, 0.8, d=3, seed=1)
    est = infodyn.estimate_mi(x, y, method="gaussian")
    assert isinstance(est, MIEstimate)
    assert abs(est.nats - truth) < 0.03
    assert est.bits == pytest.approx(est.nats / np.log(2))
    assert est.n == 20000 and est.method == "gaussian" and est.seconds >= 0


def test_bootstrap_ci_is_seeded_and_covers():
    x, y, truth = correlated_gaussian(2000, 0.6, seed=2)
    a = estimate_mi(x, y, method="gaussian", ci=0.95, n_boot=50, seed=3)
    b = estimate_mi(x, y, method="gaussian", ci=0.95, n_boot=50, seed=3)
    assert a.ci == b.ci
    assert a.ci[0] < a.nats < a.ci[1]
    assert a.ci[0] < truth < a.ci[1]


@pytest.mark.parametrize(
    "x, y, needle",
    [
        (np.ones((5, 2)), np.ones((6, 2)), "same number of rows"),
        (np.array([[np.nan, 1.0]] * 5), np.ones((5, 1)), "NaN or inf"),
        (np.ones((2, 2, 2)), np.ones((2, 1)), "shape (2, 2, 2)"),
        (np.array(["a", "b", "c"]), np.ones(3), "numeric"),
    ],
)
def test_bad_input_names_problem(x, y, needle):
    with pytest.raises(ValueError, match=None) as info:
        estimate_mi(x, y, method="gaussian")
    assert needle in str(info.value)


def test_unknown_method_lists_available():
    with pytest.raises(ValueError, match="available"):
        estimate_mi(np.ones(5), np.ones(5), method="nope")


def test_cli_estimate_json(tmp_path):
    x, y, truth = correlated_gaussian(5000, 0.7, seed=4)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = subprocess.run(
        [sys.executable, "-m", "infodyn.cli", "estimate", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
         "--method", "gaussian", "--json"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert abs(result["nats"] - truth) < 0.05
    assert result["bits"] == pytest.approx(result["nats"] / np.log(2))


def test_cli_bad_file_exit_code(tmp_path):
    out = subprocess.run([sys.executable, "-m", "infodyn.cli", "estimate", str(tmp_path / "missing.npy"),
                          str(tmp_path / "y.npy")], capture_output=True, text=True)
    assert out.returncode == 2 and "missing.npy" in out.stderr


def test_subsample_interval_for_distance_based_methods():
    # Resampling with replacement would put duplicated rows at distance zero and inflate KSG;
    # the subsampling interval is centred on the full-sample estimate and covers the truth.
    x, y, truth = correlated_gaussian(2000, 0.6, seed=5)
    a = estimate_mi(x, y, method="ksg", ci=0.95, n_boot=40, seed=1)
    b = estimate_mi(x, y, method="ksg", ci=0.95, n_boot=40, seed=1)
    assert a.ci == b.ci
    assert a.ci[0] < a.nats < a.ci[1]
    assert a.ci[0] < truth < a.ci[1]
    assert a.ci[1] - a.ci[0] < 0.2


def test_register_rejects_unknown_resampling():
    from infodyn.estimators.base import register

    with pytest.raises(ValueError, match="resampling"):
        register("never", resampling="jackknife")

"""Misspelt or foreign settings are refused by every estimator and information-plane rule, with a
message that names the method, the bad name and the closest valid names (issue 17, item 4)."""
import subprocess
import sys

import numpy as np
import pytest

from infodyn import information_plane
from infodyn.estimators import available, check_params, estimate_mi, parameters, planes_available

NEURAL = {"mine", "nwj", "infonce", "tuba", "js", "smile", "interpolated"}

# method -> (a misspelling, the name it should suggest)
MISSPELT = {
    "binning": ("nbins", "n_bins"),
    "kde": ("noise_vr", "noise_var"),
    "kde_lower": ("noise_vr", "noise_var"),
    "ksg": ("norms", "norm"),
    "gaussian": ("max_rh", "max_rho"),
    "renyi": ("widht_rule", "width_rule"),
    **{m: ("lrr", "lr") for m in NEURAL},
}
# planes whose parameters differ from the estimator of the same name
PLANE_MISSPELT = {"gaussian": ("noise_vr", "noise_var")}


def data(n=60, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 2))
    return x, x[:, :1] + r.normal(size=(n, 1)), (x[:, 0] > 0).astype(int)


def test_every_registered_method_has_a_case():
    assert set(available()) == set(MISSPELT), "add the new estimator to MISSPELT"
    assert set(planes_available()) <= set(MISSPELT) | set(PLANE_MISSPELT)


@pytest.mark.parametrize("method", sorted(MISSPELT))
def test_estimate_mi_refuses_misspelt_name_and_suggests(method):
    bad, good = MISSPELT[method]
    x, y, _ = data()
    with pytest.raises(ValueError) as info:
        estimate_mi(x, y, method=method, **{bad: 3})
    msg = str(info.value)
    assert repr(method) in msg and repr(bad) in msg and f"did you mean {good!r}" in msg
    assert "unknown parameter" in msg
    assert good in parameters(method)


@pytest.mark.parametrize("method", sorted(MISSPELT))
def test_estimate_mi_refuses_unrelated_name_and_lists_valid_ones(method):
    x, _, labels = data()
    with pytest.raises(ValueError) as info:
        estimate_mi(x, labels, method=method, zzz_not_a_setting=1)
    msg = str(info.value)
    assert "'zzz_not_a_setting'" in msg and "did you mean" not in msg
    for name in parameters(method):
        assert name in msg


@pytest.mark.parametrize("method", sorted(planes_available()))
def test_information_plane_refuses_misspelt_name(method):
    bad, good = PLANE_MISSPELT.get(method) or MISSPELT[method]
    x, _, labels = data()
    t = np.tanh(x)
    with pytest.raises(ValueError) as info:
        information_plane(t, labels, method=method, x=x, **{bad: 3})
    msg = str(info.value)
    assert repr(method) in msg and repr(bad) in msg and f"did you mean {good!r}" in msg
    # check_params gives the same verdict without computing anything
    with pytest.raises(ValueError, match="did you mean"):
        check_params(method, {bad: 3}, plane=True)
    check_params(method, {good: 1}, plane=True)


def test_issue_repros():
    x, _, labels = data(200)
    with pytest.raises(ValueError, match=r"'nbins' \(did you mean 'n_bins'\?\)"):
        estimate_mi(x, labels, method="binning", nbins=3)
    with pytest.raises(ValueError, match=r"'noise_vr' \(did you mean 'noise_var'\?\)"):
        information_plane(np.maximum(x, 0), labels, method="kde", noise_vr=0.001)
    with pytest.raises(ValueError, match=r"'noise_vr'"):
        check_params("kde", {"noise_vr": 0.001}, plane=True)
    # the valid name is used, not ignored: 3 bins give fewer distinct symbols than the default 30
    few = estimate_mi(x, labels, method="binning", n_bins=3)
    assert few.params["n_bins"] == 3 and few.params["distinct_x"] <= 9


def test_foreign_names_of_other_estimators_are_refused():
    x, y, _ = data()
    with pytest.raises(ValueError, match="'n_bins'"):
        estimate_mi(x, y, method="ksg", n_bins=10)
    with pytest.raises(ValueError, match="'k'"):
        estimate_mi(x, y, method="kde", k=3)
    with pytest.raises(ValueError, match="'bound'"):
        estimate_mi(x, y, method="kde_lower", bound="upper")


@pytest.mark.parametrize("method", sorted(set(MISSPELT) - NEURAL))
def test_seed_and_device_are_accepted_everywhere(method):
    x, y, labels = data(80)
    est = estimate_mi(x, y, method=method, seed=1, device="cpu")
    assert np.isfinite(est.nats)
    # estimate_mi(ci=...) passes seed on to every method
    est = estimate_mi(x, labels, method=method, ci=0.9, n_boot=5, seed=2)
    assert est.ci is not None


def test_cli_estimate_refuses_misspelt_param(tmp_path):
    x, y, _ = data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = subprocess.run([sys.executable, "-m", "infodyn.cli", "estimate", str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy"), "--method", "binning", "--param", "nbins=3"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "nbins" in out.stderr and "n_bins" in out.stderr and "Traceback" not in out.stderr

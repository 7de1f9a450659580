"""infodyn.analyze and `infodyn analyze`: the tidy table, caching and resume, failures, seeds."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import infodyn
from infodyn import analysis
from infodyn.cli import main
from infodyn.tradeoff import COLUMNS

MEASURES = "binning,kde,source_acc,overcompression"


def make_run(root, name, *, seed=0, epochs=3, hidden=(12, 6), truncate=None, target="gaussian-mixture"):
    """A real run: an MLP trained a few steps on gaussian-mixture, a checkpoint per epoch."""
    from infodyn.data import load
    from infodyn.models import mlp

    d = Path(root) / name
    d.mkdir(parents=True)
    ds = load("gaussian-mixture", seed=0)
    torch.manual_seed(seed)
    model = mlp(8, hidden, ds.num_classes, "tanh")
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    for e in range(epochs):
        if e:
            for _ in range(4):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        torch.save({"state_dict": model.state_dict(), "epoch": e, "step": 4 * e}, d / f"ep{e}.pt")
    manifest = {"model": "infodyn.models:mlp",
                "model_kwargs": {"in_dim": 8, "hidden": list(hidden), "num_classes": ds.num_classes,
                                 "activation": "tanh"},
                "data": {"source": "gaussian-mixture", **({"target": target} if target else {})},
                "layers": [f"fc{i + 1}" for i in range(len(hidden))]}
    (d / "infodyn.yaml").write_text(yaml.safe_dump(manifest))
    if truncate is not None:
        f = d / f"ep{truncate}.pt"
        f.write_bytes(f.read_bytes()[:200])
    return d, model


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_run(root, "tanh-seed0", seed=0, target=None)
    make_run(root, "tanh-seed1", seed=1, target=None)
    return root


@pytest.fixture(scope="module")
def table(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return analysis.analyze(runs, measures=MEASURES, out=out, progress=False, max_samples=400), out


def test_table_shape_and_values_match_a_direct_computation(runs, table):
    df, _ = table
    assert list(df.columns) == COLUMNS
    assert (df["error"] == "").all()
    # 2 runs x 3 checkpoints x (2 layers x (2 binning + 2 kde + 1 score) + 1 source_acc)
    assert len(df) == 2 * 3 * (2 * 5 + 1)
    assert set(df["config"]) == {"tanh"} and set(df["seed"]) == {0, 1}
    assert set(df["measure"]) == {"I(X;T)", "I(T;Y)", "source_acc", "overcompression_score"}

    from infodyn.data import load
    from infodyn.estimators import information_plane
    from infodyn.runs import apply_state, build_model, extract_features, load_checkpoint, load_manifest

    run = runs / "tanh-seed1"
    model = build_model(load_manifest(run))
    apply_state(model, load_checkpoint(run / "ep2.pt"))
    ds = load("gaussian-mixture", seed=0)
    x, y = ds.all()
    idx = np.sort(np.random.default_rng(0).choice(len(y), 400, replace=False))
    t = extract_features(model, x, ["fc2"])["fc2"].astype(np.float64)[idx]
    ip = information_plane(t, y[idx], method="kde", scale="relative_total", noise_var=0.03)  # analyze's default
    sel = df[(df["run"] == "tanh-seed1") & (df["checkpoint"] == "ep2.pt") & (df["layer"] == "fc2")
             & (df["method"] == "kde")]
    assert sel.loc[sel["measure"] == "I(X;T)", "value"].item() == pytest.approx(ip.i_xt.nats, rel=1e-5)
    assert sel.loc[sel["measure"] == "I(T;Y)", "value"].item() == pytest.approx(ip.i_ty.nats, rel=1e-5)
    params = json.loads(sel["params"].iloc[0])
    assert params["noise_var"] == 0.03 and params["scale"] == "relative_total"
    with torch.no_grad():
        acc = (model(torch.from_numpy(ds.x_test)).argmax(1).numpy() == ds.y_test).mean()
    got = df[(df["run"] == "tanh-seed1") & (df["checkpoint"] == "ep2.pt") & (df["measure"] == "source_acc")]
    assert got["value"].item() == pytest.approx(acc)
    assert got["layer"].item() == "output" and got["epoch"].item() == 2 and got["step"].item() == 8


def test_outputs_written_and_reread(table):
    df, out = table
    back = pd.read_csv(out / "results.csv")
    assert list(back.columns) == COLUMNS and len(back) == len(df)
    assert np.allclose(back["value"].to_numpy(), df["value"].to_numpy())
    assert set(json.loads((out / "manifests.json").read_text())) == {"tanh-seed0", "tanh-seed1"}
    # one file per (run, checkpoint, layer, measure): 2 runs x 3 checkpoints x (2 layers x 3 + source_acc)
    assert len(list((out / "units").rglob("*.json"))) == 2 * 3 * (2 * 3 + 1)


def test_parquet_table_equals_the_csv_table(table):
    pytest.importorskip("pyarrow")  # in the test extra; the parquet extra for users
    df, out = table
    pq = pd.read_parquet(out / "results.parquet")
    assert list(pq.columns) == COLUMNS
    pd.testing.assert_frame_equal(pq, df, check_dtype=True)


def test_rerun_uses_the_cache_and_resumes(runs, table, monkeypatch):
    df, out = table
    calls = []
    real = analysis.run_unit

    def counting(unit):
        calls.append((unit.run, Path(unit.checkpoint).name, [(j.layer, j.measure) for j in unit.jobs]))
        return real(unit)

    monkeypatch.setattr(analysis, "run_unit", counting)
    again = analysis.analyze(runs, measures=MEASURES, out=out, progress=False, max_samples=400)
    assert calls == []
    pd.testing.assert_frame_equal(again, df)
    victim = sorted((out / "units").rglob("fc1.kde.*.json"))[0]  # as if interrupted before this job
    victim.unlink()
    again = analysis.analyze(runs, measures=MEASURES, out=out, progress=False, max_samples=400)
    assert len(calls) == 1 and calls[0][2] == [("fc1", "kde")]  # one checkpoint, only the missing job
    pd.testing.assert_frame_equal(again.drop(columns="seconds"), df.drop(columns="seconds"))


def test_same_seed_same_numbers_and_two_jobs_agree(runs, table):
    df, _ = table
    par = analysis.analyze(runs, measures=MEASURES, out=None, jobs=2, progress=False, max_samples=400)
    # other thread counts may change the last bit of an SVD, nothing more
    pd.testing.assert_frame_equal(par.drop(columns=["seconds", "params"]), df.drop(columns=["seconds", "params"]),
                                  check_exact=False, rtol=1e-9)


def test_failed_checkpoint_gets_error_rows_and_exit_code_1(tmp_path, capsys):
    make_run(tmp_path / "runs", "bad", truncate=1, target=None)
    out = tmp_path / "out"
    code = main(["analyze", str(tmp_path / "runs" / "bad"), "--out", str(out), "--measures", "binning,source_acc",
                 "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "1 checkpoint(s) failed" in err and "ep1.pt" in err
    df = pd.read_csv(out / "results.csv")
    bad = df[df["checkpoint"] == "ep1.pt"]
    assert len(bad) == 2 * 2 + 1 and bad["value"].isna().all()
    assert bad["error"].str.contains("ep1.pt").all()
    good = df[df["checkpoint"] != "ep1.pt"]
    assert good["error"].isna().all() and good["value"].notna().all()
    assert not list((out / "units").rglob("ep1-*/*.json"))  # failures are retried, not cached
    assert (out / "report.html").exists()


def test_cli_success_prints_the_summary(runs, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["analyze", str(runs / "tanh-seed0"), str(runs / "tanh-seed1"), "--out", str(out),
                 "--measures", "binning,source_acc,overcompression,nc1", "--max-samples", "300", "--no-progress"])
    assert code == 0
    df = pd.read_csv(out / "results.csv")
    nc1 = df[df["measure"] == "nc1"]
    assert len(nc1) == 2 * 3 * 2 and (nc1["value"] > 0).all() and (nc1["task"] == "source").all()
    text = capsys.readouterr().out
    # no transfer protocol was measured: one line per configuration says there is no verdict
    assert "tanh" in text and "fc1" in text and "fc2" in text and "no verdict" in text
    assert (out / "information_plane.png").exists() and (out / "report.html").exists()


def test_bad_arguments_are_named(tmp_path, runs):
    with pytest.raises(ValueError, match="unknown measure 'mine_plane'"):
        analysis.parse_measures("binning,mine_plane")
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        analysis.analyze(tmp_path / "absent", measures="binning")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no infodyn.yaml"):
        analysis.analyze(tmp_path / "empty", measures="binning")
    assert main(["analyze", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2


def test_seed_and_config_from_names():
    assert analysis.seed_and_config("tanh-seed3") == (3, "tanh")
    assert analysis.seed_and_config("ce_seed_12_wide") == (12, "ce_wide")
    assert analysis.seed_and_config("baseline") == (None, "baseline")
    assert analysis.seed_and_config("seedless") == (None, "seedless")


def test_manifest_seed_and_config_override_the_names(tmp_path):
    root = tmp_path / "runs"
    for name, seed in (("morning", 0), ("evening", 1)):
        d, _ = make_run(root, name, seed=seed, epochs=2, target=None)
        m = yaml.safe_load((d / "infodyn.yaml").read_text())
        (d / "infodyn.yaml").write_text(yaml.safe_dump({**m, "seed": seed + 10, "config": "tanh"}))
    make_run(root, "relu-seed4", seed=4, epochs=2, target=None)  # no keys: read from the name
    df = analysis.analyze(root, measures="source_acc", out=tmp_path / "out", progress=False)
    got = df.groupby("run")[["config", "seed"]].first()
    assert got.loc["morning"].tolist() == ["tanh", 10] and got.loc["evening"].tolist() == ["tanh", 11]
    assert got.loc["relu-seed4"].tolist() == ["relu", 4]


def test_public_entry_point_is_analyze():
    assert infodyn.analyze is analysis.analyze

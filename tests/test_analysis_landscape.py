"""Loss-landscape measures through infodyn.analyze and `infodyn analyze` (sharpness, grad_pc, ...)."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from infodyn import analysis
from infodyn.cli import main
from infodyn.tradeoff import COLUMNS

LAND = "sharpness,grad_pc,weight_distance,hessian_trace,grad_norm,loss_barrier"
SMALL = {"max_samples": 256, "pc_batches": 6, "pc_batch_size": 32, "trace_samples": 8, "path_points": 5,
         "iters": 60}


def record_run(root, name="tanh-seed0", epochs=3, seed=0):
    """A real run: an MLP on ib12bit, checkpoints at epochs 0..epochs-1 by CheckpointRecorder."""
    from infodyn.data import load
    from infodyn.hooks import CheckpointRecorder
    from infodyn.models import mlp

    ds = load("ib12bit", seed=0)
    torch.manual_seed(seed)
    model = mlp(12, (8, 6), ds.num_classes, "tanh")
    manifest = {"model": "infodyn.models:mlp",
                "model_kwargs": {"in_dim": 12, "hidden": [8, 6], "num_classes": ds.num_classes, "activation": "tanh"},
                "data": {"source": "ib12bit"}, "layers": ["fc1", "fc2"]}
    rec = CheckpointRecorder(Path(root) / name, model, every=1, total_epochs=epochs - 1, manifest=manifest)
    opt = torch.optim.Adam(model.parameters(), 3e-2)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    for e in range(epochs):
        if e:
            for _ in range(5):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        rec.step(epoch=e)
    return Path(root) / name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return record_run(tmp_path_factory.mktemp("land"))


@pytest.fixture(scope="module")
def table(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    df = analysis.analyze(run_dir, measures=LAND + ",source_acc", out=out, progress=False,
                          landscape_options=SMALL)
    return df, out


def test_landscape_rows_appear_with_sane_values(table):
    df, _ = table
    assert list(df.columns) == COLUMNS
    assert (df["error"] == "").all(), df[df["error"] != ""][["checkpoint", "measure", "error"]]
    land = df[df["measure"] != "source_acc"]
    per = land.groupby("checkpoint")["measure"].apply(set)
    first, *later = sorted(per.index)
    assert per[first] == {"sharpness", "hessian_trace", "grad_norm", "grad_pc", "weight_distance_init"}
    for c in later:
        assert per[c] == {"sharpness", "hessian_trace", "grad_norm", "grad_pc", "weight_distance_init",
                          "weight_distance_prev", "loss_barrier"}
    sharp = df[df["measure"] == "sharpness"]
    assert len(sharp) == 3 and (sharp["layer"] == "model").all()
    assert np.isfinite(sharp["value"]).all() and (sharp["value"] > 0).all()
    pc = df[df["measure"] == "grad_pc"]["value"]
    assert ((pc > 0) & (pc <= 1)).all()
    # distance from the first checkpoint: zero on the first, positive and growing after
    d0 = df[(df["measure"] == "weight_distance_init") & (df["layer"] == "model")].sort_values("order")
    assert d0["value"].iloc[0] == 0.0
    assert (d0["value"].iloc[1:] > 0).all()
    # per-module rows too
    assert len(set(df[df["measure"] == "weight_distance_init"]["layer"]) - {"model"}) >= 3


def test_values_match_a_direct_call(run_dir, table):
    """The table's numbers are checkpoint_measures' on the checkpoint (same seed, options, data)."""
    from infodyn.data import load
    from infodyn.landscape.measures import checkpoint_measures
    from infodyn.runs import apply_state, build_model, load_checkpoint, load_manifest

    df, _ = table
    ck = sorted(run_dir.glob("epoch*.pt"))
    model = build_model(load_manifest(run_dir))
    apply_state(model, load_checkpoint(ck[2]))
    ds = load("ib12bit", seed=0)
    recs = checkpoint_measures(model.eval(), None, load_checkpoint(ck[1]), load_checkpoint(ck[0]), ds.x_train,
                               ds.y_train, ["sharpness", "weight_distance", "loss_barrier"], seed=0, options=SMALL)
    got = df[df["checkpoint"] == ck[2].name]
    for r in recs:
        v = got[(got["measure"] == r["measure"]) & (got["layer"] == r["layer"])]["value"]
        assert len(v) == 1
        assert math.isclose(float(v.iloc[0]), r["value"], rel_tol=1e-6, abs_tol=1e-9), r["measure"]


def test_rerun_uses_the_cache_and_distances_follow_reference_checkpoints(run_dir, table):
    df, out = table
    again = analysis.analyze(run_dir, measures=LAND + ",source_acc", out=out, progress=False,
                             landscape_options=SMALL)
    cols = [c for c in COLUMNS if c != "seconds"]
    assert again[cols].equals(df[cols])
    files = list((out / "units").rglob("model.*.json"))
    assert len(files) == 3 * 6  # one per (checkpoint, landscape measure)


def test_failed_landscape_measure_gives_error_rows_not_a_crash(run_dir, tmp_path):
    df = analysis.analyze(run_dir, measures="sharpness", out=None, progress=False,
                          landscape_options={"no_such_option": 1})
    assert len(df) == 3 and df["value"].isna().all()
    assert df["error"].str.contains("no_such_option").all()


def test_unknown_measure_names_the_landscape_choices():
    with pytest.raises(ValueError, match="sharpness"):
        analysis.parse_measures("sharpnes")


def test_cli_writes_rows_and_the_sharpness_figure(run_dir, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["analyze", str(run_dir), "--out", str(out), "--measures", "sharpness,weight_distance,knn",
                 "--no-progress"])
    assert code == 0
    import pandas as pd

    df = pd.read_csv(out / "results.csv")
    assert {"sharpness", "weight_distance_init", "knn_acc"} <= set(df["measure"])
    png = out / "sharpness_vs_transfer.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "sharpness_vs_transfer" in (out / "report.html").read_text()

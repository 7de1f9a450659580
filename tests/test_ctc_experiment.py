"""The CE-vs-CTC reproduction's pieces: penultimate features, matched training, the summary."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from infodyn.ctc.experiment import Config, configs, paired, penultimate, summarise, train_run
from infodyn.models import mlp, small_cnn


def test_penultimate_is_the_classifier_input():
    torch.manual_seed(0)
    for model, x in ((mlp(64, [16, 8], 5, "relu"), torch.randn(7, 64)),
                     (small_cnn(1, 5, width=4, input_shape=[1, 40], hidden=6), torch.randn(7, 40))):
        model.eval()
        f = penultimate(model, x)
        assert f.shape == (7, model.out.in_features)
        assert torch.allclose(model.out(f), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="knows infodyn.models MLP and SmallCNN"):
        penultimate(torch.nn.Linear(3, 2), torch.randn(2, 3))


def test_both_arms_share_start_schedule_and_budget(tmp_path):
    cfg = replace(configs(quick=True)["digits"], epochs=3, switch_epoch=2, checkpoints=(0, 2, 3),
                  model_kwargs={"in_dim": 64, "hidden": [16, 8], "num_classes": 5,
                                "activation": "relu"}, num_negatives=32, proj_dim=8)
    out = {m: train_run(cfg, m, 0, tmp_path / m) for m in ("ce", "ctc", "ctcnce")}
    for m, r in out.items():
        assert [p.name for p in r["saved"]] == ["epoch000000.pt", "epoch000002.pt", "epoch000003.pt"]
        assert [row["epoch"] for row in r["log"]] == [1, 2, 3]
    start = [torch.load(out[m]["saved"][0], weights_only=True)["state_dict"] for m in ("ce", "ctc")]
    assert all(torch.equal(start[0][k], start[1][k]) for k in start[0])
    for key in ("lr", "weight_decay"):
        assert [r[key] for r in out["ce"]["log"]] == [r[key] for r in out["ctc"]["log"]]
    log = out["ce"]["log"]
    assert log[0]["weight_decay"] == pytest.approx(2 * cfg.weight_decay)  # stage 1: doubled
    assert log[2]["weight_decay"] == pytest.approx(cfg.weight_decay)
    assert log[2]["lr"] == pytest.approx(0.1 * cfg.lr)  # restart at the switch
    assert all(r["ctc"] == 0 for r in log)
    for arm in ("ctc", "ctcnce"):
        assert all(r["ctc"] > 0 and np.isfinite(r["ctc"]) for r in out[arm]["log"])
    assert out["ctc"]["log"][-1]["ctc"] != out["ctcnce"]["log"][-1]["ctc"]
    end = [torch.load(out[m]["saved"][-1], weights_only=True)["state_dict"] for m in ("ce", "ctc")]
    assert any(not torch.equal(end[0][k], end[1][k]) for k in end[0])  # only the loss differs


def _rows(run, epoch, measure, task, value, method=""):
    return {"run": run, "epoch": epoch, "measure": measure, "task": task, "value": value,
            "method": method, "error": ""}


def test_summary_late_fall_is_best_minus_final():
    cfg = Config("toy", "a", "b", "m", {}, "fc", 4, 2, (0, 2, 4))
    probe = {"ce": [0.5, 0.9, 0.6], "ctc": [0.5, 0.7, 0.8]}
    rows = []
    for arm, vals in probe.items():
        for seed, shift in ((0, 0.0), (1, 0.02)):
            run = f"toy-{arm}-seed{seed}"
            for e, v in zip((0, 2, 4), vals):
                rows += [_rows(run, e, "linear_probe_acc", "target", v + shift),
                         _rows(run, e, "source_acc", "source", 0.9),
                         _rows(run, e, "I(X;T)", "source", 3.0 - e / 4, "kde")]
    s = summarise(pd.DataFrame(rows), {"toy": cfg})
    assert s.loc[("toy", "ce"), ("target_probe_late_fall", "mean")] == pytest.approx(0.3)
    assert s.loc[("toy", "ctc"), ("target_probe_late_fall", "mean")] == pytest.approx(0.0)
    assert s.loc[("toy", "ce"), ("target_probe_best_epoch", "mean")] == 2
    assert s.loc[("toy", "ctc"), ("target_probe_final", "mean")] == pytest.approx(0.81)
    assert s.loc[("toy", "ce"), ("target_probe_final", "std")] == pytest.approx(0.02 / np.sqrt(2))
    assert s.loc[("toy", "ce"), ("I(X;T) kde switch", "mean")] == pytest.approx(2.5)
    assert s.loc[("toy", "ce"), ("I(X;T) kde final", "mean")] == pytest.approx(2.0)


def test_output_folder_of_the_user_is_refused(tmp_path):
    from infodyn.cli import main
    from infodyn.ctc.experiment import MARKER, run_tradeoff

    mine = tmp_path / "notes.txt"
    mine.write_text("keep me")
    with pytest.raises(ValueError, match="did not write"):
        run_tradeoff(tmp_path, quick=True)
    assert main(["ctc-demo", "--out", str(tmp_path), "--quick"]) == 2
    assert main(["demo", "--ctc", "--out", str(tmp_path), "--quick"]) == 2  # the same job, same guard
    assert mine.read_text() == "keep me" and not (tmp_path / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="unknown data set"):
        run_tradeoff(tmp_path / "new", data=["cifar"])
    assert not (tmp_path / "new").exists()


def test_paired_difference_is_per_seed():
    rows = []
    for arm, vals in {"ce": [0.70, 0.80, 0.75], "ctc": [0.72, 0.79, 0.80]}.items():
        for seed, v in enumerate(vals):
            run = f"toy-{arm}-seed{seed}"
            rows += [_rows(run, 0, "knn_acc", "target", 0.1), _rows(run, 4, "knn_acc", "target", v)]
    p = paired(pd.DataFrame(rows)).set_index("data")
    assert list(p["arm"]) == ["ctc"]
    diffs = np.array([0.02, -0.01, 0.05])
    assert p.loc["toy", "target_knn mean"] == pytest.approx(diffs.mean())
    assert p.loc["toy", "target_knn sd"] == pytest.approx(diffs.std(ddof=1))
    assert p.loc["toy", "target_knn wins"] == "2/3"

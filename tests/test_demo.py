"""`infodyn demo --quick`: trains, analyses and reports end to end; never overwrites user files."""
import pandas as pd
import pytest

from infodyn import demo
from infodyn.cli import main


def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "report -> " in text
    # the verdicts: the trade-off run over-compresses at its 16-wide penultimate layer, the control does not
    lines = text.splitlines()
    head = {line.split("  (")[0]: i for i, line in enumerate(lines) if line.startswith("digits-") and "  (" in line}
    assert set(head) == {"digits-holds", "digits-tradeoff"}, text
    holds = lines[head["digits-holds"] + 1:head["digits-tradeoff"]]
    trade = lines[head["digits-tradeoff"] + 1:head["digits-tradeoff"] + 1 + len(holds)]
    assert any(line.strip().startswith("fc2") and "over-compression from" in line for line in trade), text
    assert holds and all("none:" in line for line in holds), text
    df = pd.read_csv(out / "results.csv")
    assert (df["error"].isna()).all()
    assert set(df["config"]) == {"ib12bit-tanh", "ib12bit-relu", "digits-tradeoff", "digits-holds"}
    digits = df[df["config"] == "digits-tradeoff"]
    assert set(digits.loc[digits["measure"] == "linear_probe_acc", "task"]) == {"source", "target"}
    # a trained network beats chance (1/5) on its source task at the last checkpoint
    last = digits[(digits["measure"] == "source_acc")].sort_values("epoch")["value"].iloc[-1]
    assert last > 0.6
    for name in ("information_plane.png", "tradeoff.png", "report.html"):
        assert (out / name).is_file()
    assert "data:image/png;base64," in (out / "report.html").read_text()
    # a second run reuses the trained runs and the cached analysis
    df2, _ = demo.run_demo(out, quick=True, progress=False, log=lambda s: None)
    pd.testing.assert_series_equal(df2["value"], pd.read_csv(out / "results.csv")["value"], check_names=False)


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(ValueError, match="did not write"):
        demo.prepare_out(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 2


def test_plans_differ_in_size():
    quick, full = demo.plan(quick=True), demo.plan(quick=False)
    assert sum(r.epochs for r in quick.runs) < sum(r.epochs for r in full.runs)
    assert {r.source for r in full.runs} == {"ib12bit", "digits:0-4"}
    assert {r.model_kwargs.get("activation") for r in full.runs if r.source == "ib12bit"} == {"tanh", "relu"}
    # the digits runs are the known trade-off and control settings of benchmarks/known_runs.py
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.known_runs import KINDS

    for kind in ("tradeoff", "holds"):
        k = KINDS[kind]
        runs = [r for r in full.runs if r.name.startswith(f"digits-{kind}-seed")]
        assert len(runs) == 3
        for r in runs:
            assert (tuple(r.model_kwargs["hidden"]), r.lr, r.epochs, r.batch_size) == (k.hidden, k.lr, k.epochs,
                                                                                        k.batch_size)

"""Issue 17: results are never stale, the user's files are never overwritten, and a problem is
said once (items 1-3, 6, 8-10; the others have tests beside their modules)."""
import errno
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from infodyn import analysis
from infodyn.cli import main
from test_analysis import make_run

MEASURES = "kde,rankme,source_acc"


def edit_manifest(run, **changes):
    path = run / "infodyn.yaml"
    m = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if key == "activation":
            m["model_kwargs"]["activation"] = value
        else:
            m[key] = value
    path.write_text(yaml.safe_dump(m))


def values(df):
    return df.set_index(["checkpoint", "layer", "measure", "task", "method"])["value"]


def test_manifest_edit_is_never_answered_from_the_cache_and_is_seen_in_the_same_process(tmp_path):
    """17.1-17.3: relu -> tanh in model_kwargs; the rerun (same process, same out, also with a
    different sample cap) equals a fresh analysis of the edited run, not the cached table."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    out = tmp_path / "out"
    before = analysis.analyze(run, measures=MEASURES, out=out, progress=False, max_samples=300)
    edit_manifest(run, activation="relu")
    after = analysis.analyze(run, measures=MEASURES, out=out, progress=False, max_samples=300)
    fresh = analysis.analyze(run, measures=MEASURES, out=None, progress=False, max_samples=300)
    pd.testing.assert_series_equal(values(after), values(fresh))
    changed = (values(after) - values(before)).abs()
    assert (changed[changed.index.get_level_values("measure") == "I(X;T)"] > 1e-6).all()
    # features cached for the old model are not reused with another sample cap either
    again = analysis.analyze(run, measures=MEASURES, out=out, progress=False, max_samples=301)
    pd.testing.assert_series_equal(values(again), values(
        analysis.analyze(run, measures=MEASURES, out=None, progress=False, max_samples=301)))


def test_rewritten_data_file_is_a_new_result(tmp_path):
    """17.1: the .npz named by the manifest is rewritten with other inputs -> new numbers."""
    from infodyn.data import load

    run, _ = make_run(tmp_path / "runs", "r", target=None)
    ds = load("gaussian-mixture", seed=0)
    x, y = ds.all()
    np.savez(run / "data.npz", x=x, y=y)
    edit_manifest(run, data={"source": "data.npz"})
    out = tmp_path / "out"
    before = analysis.analyze(run, measures="kde", out=out, progress=False)
    np.savez(run / "data.npz", x=x * 3.0 + 1.0, y=y)
    after = analysis.analyze(run, measures="kde", out=out, progress=False)
    fresh = analysis.analyze(run, measures="kde", out=None, progress=False)
    pd.testing.assert_series_equal(values(after), values(fresh))
    assert not np.allclose(values(after).to_numpy(), values(before).to_numpy())


def test_foreign_out_folders_are_refused_and_left_untouched(tmp_path, capsys):
    """17.6: --out holding the user's files, or the run folder itself, is refused."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my own results\n")
    assert main(["analyze", str(run), "--out", str(mine), "--measures", "rankme", "--no-progress"]) == 2
    assert (mine / "results.csv").read_text() == "my own results\n"
    assert sorted(p.name for p in mine.iterdir()) == ["results.csv"]
    assert "did not write" in capsys.readouterr().err
    listing = sorted(p.name for p in run.iterdir())
    assert main(["analyze", str(run), "--out", str(run), "--measures", "rankme", "--no-progress"]) == 2
    assert sorted(p.name for p in run.iterdir()) == listing
    # a folder infodyn wrote is updated
    out = tmp_path / "o"
    assert main(["analyze", str(run), "--out", str(out), "--measures", "rankme", "--no-progress"]) == 0
    assert main(["analyze", str(run), "--out", str(out), "--measures", "rankme", "--no-progress"]) == 0


def test_huge_epochs_and_seeds_do_not_stop_the_table(tmp_path):
    """17.8: a manifest seed of 10**26 and a stored epoch of 1e300 give a table (NA there)."""
    run, model = make_run(tmp_path / "runs", "r", epochs=2, target=None)
    import torch

    torch.save({"state_dict": model.state_dict(), "epoch": 1e300, "step": 2 ** 63}, run / "ep9.pt")
    edit_manifest(run, seed=10 ** 26)
    with pytest.warns(UserWarning, match="out of range"):  # discovery says so and ignores the stored epoch
        df = analysis.analyze(run, measures="rankme", out=tmp_path / "o", progress=False)
    assert (df["error"] == "").all() and df["seed"].isna().all()
    assert len(df) == 3 * 2
    assert pd.read_csv(tmp_path / "o" / "results.csv").shape[0] == 6


def test_a_mistake_every_checkpoint_shares_is_found_before_work_and_said_once(tmp_path, capsys):
    """17.9: a misspelt data set, and checkpoints of another architecture, stop at once."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    edit_manifest(run, data={"source": "gaussian-mixtur"})
    assert main(["analyze", str(run), "--out", str(tmp_path / "o1"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "gaussian-mixtur" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o1" / "results.csv").exists()

    run2, _ = make_run(tmp_path / "runs", "r2", target=None)
    m = yaml.safe_load((run2 / "infodyn.yaml").read_text())
    m["model_kwargs"]["hidden"] = [20, 6]  # the checkpoints hold (12, 6)
    (run2 / "infodyn.yaml").write_text(yaml.safe_dump(m))
    assert main(["analyze", str(run2), "--out", str(tmp_path / "o2"), "--measures", "rankme", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "neither its first nor its last checkpoint" in err and err.count("\n") == 1


def test_misspelt_or_unmeasured_parameters_are_refused(tmp_path):
    """17.4 (analysis side): a parameter for a measure that is not measured, or a name the
    measure does not take, is a ValueError before any work."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    with pytest.raises(ValueError, match="'binning' is not among the measures"):
        analysis.analyze(run, measures="kde", params={"binning": {"n_bins": 10}}, progress=False)
    with pytest.raises(ValueError, match="knn' has no parameter 'kk'.*did you mean k"):
        analysis.analyze(run, measures="knn", params={"knn": {"kk": 5}}, progress=False)
    with pytest.raises(ValueError, match="noise_vr.*noise_var"):  # the estimator's own names, checked first
        analysis.analyze(run, measures="kde", params={"kde": {"noise_vr": 1e-3}}, progress=False)


def test_ctrl_c_says_how_much_was_saved_in_one_line(tmp_path, monkeypatch, capsys):
    """17.10: an interrupt after the first checkpoint -> one line, exit 130, resume works."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    out = tmp_path / "o"
    real = analysis.run_unit
    calls = []

    def interrupted(unit):
        if calls:
            raise KeyboardInterrupt
        calls.append(unit)
        return real(unit)

    monkeypatch.setattr(analysis, "run_unit", interrupted)
    assert main(["analyze", str(run), "--out", str(out), "--measures", "rankme,source_acc", "--no-progress"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"interrupted: 3 of 9 (checkpoint, layer, measure) results saved in {out}; run the same command to resume"
    monkeypatch.setattr(analysis, "run_unit", real)
    assert main(["analyze", str(run), "--out", str(out), "--measures", "rankme,source_acc", "--no-progress"]) == 0


def test_full_disk_and_unreachable_scheduler_are_one_line(tmp_path, monkeypatch, capsys):
    """17.10: ENOSPC while writing, and a scheduler that cannot be reached, end in one line."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    import infodyn.analysis.api as api

    def full(df, out):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(out) / "results.csv"))

    monkeypatch.setattr(api, "write_table", full)
    assert main(["analyze", str(run), "--out", str(tmp_path / "o"), "--measures", "rankme", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the disk is full" in err and "resume" in err
    monkeypatch.undo()

    pytest.importorskip("distributed")
    import distributed

    class unreachable:
        def __init__(self, *a, **k):
            raise OSError("Timed out trying to connect to tcp://10.255.255.1:8786 after 30 s")

    monkeypatch.setattr(distributed, "Client", unreachable)
    assert main(["analyze", str(run), "--out", str(tmp_path / "o2"), "--measures", "rankme", "--no-progress",
                 "--scheduler", "tcp://10.255.255.1:8786"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the Dask scheduler" in err


def test_plot_refuses_a_folder_of_the_users_files(tmp_path, capsys):
    """17.6: `infodyn plot` writes figures and report.html only into a folder infodyn wrote."""
    run, _ = make_run(tmp_path / "runs", "r", target=None)
    out = tmp_path / "o"
    assert main(["analyze", str(run), "--out", str(out), "--measures", "rankme", "--no-progress"]) == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my report")
    assert main(["plot", str(out / "results.csv"), "--out", str(mine)]) == 2
    assert (mine / "report.html").read_text() == "my report" and len(list(mine.iterdir())) == 1
    assert main(["plot", str(out / "results.csv")]) == 0  # the analysis folder itself is fine


def test_job_keys_hold_what_determines_the_rows_and_only_that():
    """A setting that changes a job's numbers changes its cache key (AMP's float16 features, the
    plane's sample cap, the target data, the reference checkpoints); one that does not leaves it."""
    from infodyn.analysis.plan import job_key

    base = {"params": {}, "seed": 0, "ckpt_hash": "c", "model_digest": "m", "source_digest": "s",
            "target_digest": "t", "pool": "auto", "amp": False, "max_samples": 4096,
            "landscape_options": None, "prev_hash": "p", "first_hash": "f"}

    def changes(measure, layer="fc1", **edit):
        return job_key(measure, layer, base) != job_key(measure, layer, {**base, **edit})

    assert changes("kde", amp=True) and changes("knn", amp=True)
    assert changes("kde", max_samples=100) and not changes("knn", max_samples=100)
    assert changes("knn", target_digest="t2") and not changes("kde", target_digest="t2")
    assert changes("knn", params={"knn": {"k": 5}}) and changes("kde", model_digest="m2")
    assert changes("weight_distance", "model", prev_hash="p2") and not changes("source_acc", "output", prev_hash="p2")
    assert changes("kde", source_digest="s2") and changes("source_acc", "output", ckpt_hash="c2")

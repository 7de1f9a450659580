"""CheckpointRecorder: schedules, file contents, manifest, and a run that the runs API reads back."""
import math
import warnings

import numpy as np
import pytest
import torch
import yaml

from infodyn.hooks import CheckpointRecorder, log_spaced_points
from infodyn.models import mlp
from infodyn.runs import (AmbiguousOrderWarning, apply_state, build_model, discover, extract_features,
                          load_checkpoint_with_meta, load_manifest, resolve_layers)

MANIFEST = dict(model="infodyn.models:mlp", model_kwargs=dict(in_dim=12, hidden=[6, 4], num_classes=2),
                data="ib12bit", layers=["fc*"])


@pytest.mark.parametrize("n, total", [(5, 100), (20, 3000), (10, 10), (30, 12), (2, 1), (1, 50),
                                      (50, 60)])
def test_log_spaced_points(n, total):
    pts = log_spaced_points(n, total)
    assert pts == sorted(set(pts)) and pts[-1] == total
    assert len(pts) == min(n, total + 1)
    if n > 1:
        assert pts[0] == 0
    if n >= 5 and total >= 1000:  # log spacing: the first half of the points covers < 10% of training
        assert pts[len(pts) // 2 - 1] < total / 10
        # and consecutive gaps grow (up to rounding)
        gaps = np.diff(pts)
        assert gaps[-1] > gaps[1]


def test_log_spaced_points_errors():
    with pytest.raises(ValueError, match="log_spaced must be a positive integer"):
        log_spaced_points(0, 10)
    with pytest.raises(ValueError, match="non-negative integer"):
        log_spaced_points(3, -1)


def test_schedules(tmp_path):
    m = mlp(4, (3,), 2)
    every = CheckpointRecorder(tmp_path / "a", m, every=5, total_epochs=12)
    assert every.schedule() == [0, 5, 10, 12]
    assert [e for e in range(15) if every.due(e)] == [0, 5, 10, 12]
    explicit = CheckpointRecorder(tmp_path / "b", m, at_epochs=[0, 3, 7])
    assert [e for e in range(10) if explicit.due(e)] == [0, 3, 7]
    steps = CheckpointRecorder(tmp_path / "c", m, log_spaced=4, total_steps=999)
    assert steps.unit == "step" and steps.schedule() == log_spaced_points(4, 999)
    assert CheckpointRecorder(tmp_path / "d", m, every=2).schedule() is None


def test_bad_schedules(tmp_path):
    m = mlp(4, (3,), 2)
    for kw, match in [({}, "exactly one schedule"), ({"every": 2, "at_epochs": [1]}, "exactly one"),
                      ({"log_spaced": 5}, "needs total_epochs"), ({"every": 0}, "positive integer"),
                      ({"at_epochs": [-1]}, "non-negative"),
                      ({"every": 2, "total_epochs": 3, "total_steps": 4}, "not both"),
                      ({"at_epochs": [1], "total_steps": 4}, "at_epochs goes with total_epochs")]:
        with pytest.raises(ValueError, match=match):
            CheckpointRecorder(tmp_path, m, **kw)
    rec = CheckpointRecorder(tmp_path, m, every=1)
    with pytest.raises(ValueError, match="pass epoch="):
        rec.step(step=3)
    with pytest.raises(ValueError, match="source_acc must be finite"):
        rec.step(epoch=0, source_acc=float("nan"))
    with pytest.raises(ValueError, match="must be a plain scalar"):
        rec.step(epoch=1, history=[1, 2])


def _train(run_dir, epochs=12, **rec_kw):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 2, size=(256, 12)).astype(np.float32))
    y = (x[:, :6].sum(1) > x[:, 6:].sum(1)).long()
    model = mlp(12, (6, 4), 2, "tanh")
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    rec = CheckpointRecorder(run_dir, model, manifest=MANIFEST, **rec_kw)
    step = 0

    def acc():
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())

    rec.step(epoch=0, step=0, source_acc=acc())
    for epoch in range(1, epochs + 1):
        for i in range(0, 256, 64):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        rec.step(epoch=epoch, step=step, source_acc=acc(), loss=loss.detach())
    return model, rec, x


def test_recorded_run_is_analysable_with_no_further_setup(tmp_path):
    model, rec, x = _train(tmp_path, epochs=12, log_spaced=5, total_epochs=12)
    assert [p.name for p in rec.saved] == [f"epoch{e:06d}.pt" for e in log_spaced_points(5, 12)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousOrderWarning)
        infos = discover(tmp_path, load_manifest(tmp_path).checkpoints)
    assert [i.epoch for i in infos] == log_spaced_points(5, 12)
    assert all(i.order_source == "content" for i in infos)
    assert [i.step for i in infos] == [4 * e for e in log_spaced_points(5, 12)]
    accs = [i.source_acc for i in infos]
    assert all(0.0 <= a <= 1.0 for a in accs) and accs[-1] > accs[0]  # it learned

    # The last file holds exactly the final weights, loads safely and rebuilds the model.
    m = load_manifest(tmp_path)
    fresh = build_model(m)
    state, meta = load_checkpoint_with_meta(infos[-1].path)
    apply_state(fresh, state, infos[-1].path)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    assert meta["epoch"] == 12 and meta["step"] == 48 and math.isfinite(meta["extra"]["loss"])
    raw = torch.load(infos[-1].path, weights_only=True)
    assert set(raw) == {"state_dict", "epoch", "step", "source_acc", "loss", "run_id"}
    assert raw["run_id"] == rec.run_id and len(rec.run_id) == 32
    layers = resolve_layers(fresh, m.layers)
    feats = extract_features(fresh, x, layers)
    assert [f.shape for f in feats.values()] == [(256, 6), (256, 4)]


def test_manifest_written_once_and_never_silently_replaced(tmp_path):
    m = mlp(12, (6, 4), 2)
    CheckpointRecorder(tmp_path, m, every=1, manifest=MANIFEST)
    text = (tmp_path / "infodyn.yaml").read_text()
    assert yaml.safe_load(text)["checkpoints"] == "epoch*.pt"
    CheckpointRecorder(tmp_path, m, every=1, manifest=MANIFEST)  # same manifest: resuming is fine
    other = {**MANIFEST, "layers": ["out"]}
    with pytest.raises(ValueError, match="already exists with different content"):
        CheckpointRecorder(tmp_path, m, every=1, manifest=other)
    assert (tmp_path / "infodyn.yaml").read_text() == text
    CheckpointRecorder(tmp_path, m, every=1, manifest=other, overwrite=True)
    assert load_manifest(tmp_path).layers == ["out"]
    with pytest.raises(ValueError, match="unknown key"):
        CheckpointRecorder(tmp_path / "b", m, every=1, manifest={**MANIFEST, "optimizer": "adam"})


def test_step_schedule_wrapped_model_and_no_duplicates(tmp_path):
    model = mlp(12, (6, 4), 2)
    wrapped = torch.nn.DataParallel(model)  # adds 'module.' to state dict keys
    rec = CheckpointRecorder(tmp_path, wrapped, at_steps=[0, 10])
    assert rec.step(step=0) is not None and rec.step(step=0) is None  # saved once
    assert rec.step(step=5) is None
    path = rec.step(step=10, epoch=1)
    assert path.name == "step000000010.pt"
    keys = set(torch.load(path, weights_only=True)["state_dict"])
    assert keys == set(model.state_dict())
    assert [i.step for i in discover(tmp_path)] == [0, 10]
    assert not (tmp_path / "infodyn.yaml").exists()


def test_saved_tensors_are_cpu_copies(tmp_path):
    model = mlp(4, (3,), 2)
    rec = CheckpointRecorder(tmp_path, model, every=1)
    path = rec.step(epoch=0)
    with torch.no_grad():
        model.fc1.linear.weight.add_(1.0)
    saved = torch.load(path, weights_only=True)["state_dict"]["fc1.linear.weight"]
    assert not torch.equal(saved, model.fc1.linear.weight)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("key", ["run_id", "state_dict"])
def test_extra_keys_may_not_replace_reserved_ones(tmp_path, key):
    """An extra value named like a stored field (run_id included) is refused, not silently lost."""
    rec = CheckpointRecorder(tmp_path, mlp(4, (3,), 2), every=1)
    with pytest.raises(ValueError, match=f"extra key '{key}' clashes with a reserved key"):
        rec.save(epoch=0, **{key: "x"})
    assert not list(tmp_path.glob("*.pt"))  # nothing written
    path = rec.save(epoch=0, loss=0.5)
    stored = torch.load(path, weights_only=True)
    assert stored["run_id"] == rec.run_id and len(rec.run_id) == 32 and stored["loss"] == 0.5


def test_second_recorder_refuses_a_folder_holding_another_run(tmp_path):
    """Issue 17 item 7: a second CheckpointRecorder must not replace another run's files."""
    first = mlp(4, (3,), 2)
    rec = CheckpointRecorder(tmp_path, first, every=1)
    rec.step(epoch=0)
    rec.step(epoch=1)
    before = (tmp_path / "epoch000000.pt").read_bytes()
    torch.manual_seed(123)
    second = mlp(4, (3,), 2)
    with pytest.raises(ValueError, match="already holds the checkpoints of a run.*resume=True"):
        CheckpointRecorder(tmp_path, second, every=1)
    assert (tmp_path / "epoch000000.pt").read_bytes() == before  # untouched

    # Resuming the same run is fine: its id is kept, an epoch it saved may be saved again.
    again = CheckpointRecorder(tmp_path, first, every=1, resume=True)
    assert again.run_id == rec.run_id
    again.step(epoch=1)
    again.step(epoch=2)
    infos = _no_mixed_warning(tmp_path)
    assert [i.epoch for i in infos] == [0, 1, 2] and {i.run_id for i in infos} == {rec.run_id}

    # A recorder of another run that reaches the folder anyway never replaces a file.
    intruder = CheckpointRecorder(tmp_path / "elsewhere", second, every=1)
    intruder.run_dir = tmp_path
    with pytest.raises(ValueError, match="belongs to another run"):
        intruder.step(epoch=0)
    assert (tmp_path / "epoch000000.pt").read_bytes() == before

    # overwrite=True replaces the whole earlier run (no leftovers from it).
    fresh = CheckpointRecorder(tmp_path, second, every=1, overwrite=True)
    fresh.step(epoch=0)
    assert sorted(p.name for p in tmp_path.glob("epoch*.pt")) == ["epoch000000.pt"]
    assert torch.load(tmp_path / "epoch000000.pt", weights_only=True)["run_id"] == fresh.run_id
    with pytest.raises(ValueError, match="not both"):
        CheckpointRecorder(tmp_path, second, every=1, overwrite=True, resume=True)


def _no_mixed_warning(path):
    from infodyn.runs import MixedRunsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", MixedRunsWarning)
        return discover(path)


def test_discovery_warns_when_a_folder_mixes_two_recorder_runs(tmp_path):
    """Files of two runs that got into one folder (copied there by hand) are reported."""
    from infodyn.runs import MixedRunsWarning

    a, b = tmp_path / "a", tmp_path / "b"
    torch.manual_seed(0)
    ra = CheckpointRecorder(a, mlp(4, (3,), 2), at_epochs=[0, 2])
    ra.step(epoch=0)
    ra.step(epoch=2)
    torch.manual_seed(1)
    rb = CheckpointRecorder(b, mlp(4, (3,), 2), at_epochs=[0, 1])
    rb.step(epoch=0)
    rb.step(epoch=1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in [a / "epoch000000.pt", a / "epoch000002.pt", b / "epoch000001.pt"]:
        (mixed / p.name).write_bytes(p.read_bytes())
    (mixed / "run_b_epoch000000.pt").write_bytes((b / "epoch000000.pt").read_bytes())
    with pytest.warns(AmbiguousOrderWarning) as got:
        infos = discover(mixed)
    assert any(isinstance(w.message, MixedRunsWarning) for w in got)
    text = " ".join(str(w.message) for w in got)
    assert "2 different CheckpointRecorder runs" in text
    assert "different weights at the same position" in text  # two different epoch-0 files
    assert [i.epoch for i in infos] == [0, 0, 1, 2]

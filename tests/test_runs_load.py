"""Safe checkpoint loading: every format, nesting and prefix; refusal of pickles; corrupted files."""
import itertools
import pickle
import sys

import pytest
import torch
from safetensors.torch import save_file

from infodyn.models import mlp, small_cnn
from infodyn.runs import (CheckpointError, apply_state, load_checkpoint, load_checkpoint_with_meta,
                          unwrap_state)

NESTINGS = [None, "state_dict", "model", "model_state_dict", "net"]
PREFIXES = ["", "module.", "_orig_mod.", "model."]
TORCH_SUFFIXES = [".pt", ".pth", ".ckpt", ".bin"]


def _models():
    torch.manual_seed(0)
    return {"mlp": lambda: mlp(6, (5, 4), 3, "tanh"),
            "cnn": lambda: small_cnn(1, 3, 4, input_shape=[1, 6, 6], hidden=5)}


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _write(path, state, nesting, prefix):
    state = {prefix + k: v for k, v in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path), metadata={"epoch": "7", "global_step": "70"})
        return
    obj = state if nesting is None else {nesting: state, "epoch": 7, "global_step": 70,
                                         "source_acc": 0.875}
    torch.save(obj, path)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_every_format_nesting_and_prefix_round_trips(tmp_path, kind):
    make = _models()[kind]
    trained = make()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    cases = [(s, n, p) for s, n, p in itertools.product(TORCH_SUFFIXES, NESTINGS, PREFIXES)]
    cases += [(".safetensors", None, p) for p in PREFIXES]
    for i, (suffix, nesting, prefix) in enumerate(cases):
        path = tmp_path / f"c{i}{suffix}"
        _write(path, trained.state_dict(), nesting, prefix)
        state, meta = load_checkpoint_with_meta(path)
        assert set(state) == set(trained.state_dict()), (suffix, nesting, prefix)
        fresh = make()
        apply_state(fresh, state, path)
        _assert_same_weights(fresh, trained)
        if nesting is not None or suffix == ".safetensors":
            assert (meta["epoch"], meta["step"]) == (7, 70), (suffix, nesting)
        if nesting is not None:
            assert meta["source_acc"] == pytest.approx(0.875)


def test_lightning_checkpoint_with_optimizer_state(tmp_path):
    model = mlp(6, (5,), 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    ckpt = {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
            "hyper_parameters": {"lr": 1e-3, "hidden": [5]}, "callbacks": {}}
    path = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(ckpt, path)
    state, meta = load_checkpoint_with_meta(path)
    fresh = apply_state(mlp(6, (5,), 3), state, path)
    _assert_same_weights(fresh, model)
    # Lightning's epoch=3 is the state after epoch 3: 4 completed epochs in infodyn's count
    # (no loop counters in this hand-made file, so the end-of-epoch reading is assumed).
    assert meta["epoch"] == 4 and meta["epoch_stored"] == 3 and meta["step"] == 120
    assert meta["kind"] == "lightning" and "4 completed epochs" in meta["convention"]
    assert meta["format"] == "ckpt"


def test_nested_twice_and_compiled_submodule_keys(tmp_path):
    model = mlp(6, (5,), 3)
    state = {k.replace("fc1.", "fc1._orig_mod."): v for k, v in model.state_dict().items()}
    path = tmp_path / "deep.pt"
    torch.save({"model": {"state_dict": {f"module.{k}": v for k, v in state.items()}}}, path)
    _assert_same_weights(apply_state(mlp(6, (5,), 3), load_checkpoint(path), path), model)


def test_model_with_a_submodule_named_model(tmp_path):
    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(3, 2)

    src = Wrapper()
    path = tmp_path / "w.pt"
    torch.save(src.state_dict(), path)  # keys 'model.weight': stripped on load, restored on apply
    state = load_checkpoint(path)
    assert set(state) == {"weight", "bias"}
    _assert_same_weights(apply_state(Wrapper(), state, path), src)


def test_saved_on_cuda_loads_on_cpu(tmp_path, monkeypatch):
    import torch.serialization as ser

    model = mlp(6, (5,), 3)
    path = tmp_path / "gpu.pt"
    with monkeypatch.context() as m:  # record the storages as living on cuda:0, as a GPU run would
        m.setattr(ser, "location_tag", lambda storage: "cuda:0")
        torch.save({"state_dict": model.state_dict(), "epoch": 1}, path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # the file really asks for CUDA
    state = load_checkpoint(path, map_location="cpu")
    assert all(v.device.type == "cpu" for v in state.values())
    _assert_same_weights(apply_state(mlp(6, (5,), 3), state, path), model)


class _Payload:
    """Unpickling this calls open(marker, 'w'): a file appears if the payload ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": mlp(6, (5,), 3).state_dict(), "x": _Payload(marker)}, path)
    assert not marker.exists()
    for loader in (load_checkpoint, load_checkpoint_with_meta):
        with pytest.raises(CheckpointError) as err:
            loader(path)
        msg = str(err.value)
        assert "evil.pt" in msg and "refused" in msg and "trust" in msg and "arbitrary code" in msg
        assert "io.open" in msg  # names the object it would have had to build
    assert not marker.exists()
    # The payload is real: an unsafe load runs it (proves the refusal above mattered).
    control = tmp_path / "CONTROL"
    torch.save({"x": _Payload(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "PWNED2"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"fc.weight": _Payload(marker)}))
    with pytest.raises(CheckpointError, match="evil.bin.*refused.*Nothing in it was run"):
        load_checkpoint(path)
    assert not marker.exists()


def test_refusal_lists_every_class_the_file_needs(tmp_path):
    import datetime

    path = tmp_path / "hparams.ckpt"  # a Python object beside the weights
    torch.save({"state_dict": mlp(6, (5,), 3).state_dict(), "hparams": datetime.date(2024, 1, 2)},
               path)
    with pytest.raises(CheckpointError, match=r"hparams.ckpt: refused.*it needs datetime.date"):
        load_checkpoint(path)
    assert set(load_checkpoint(path, trust=True)) == set(mlp(6, (5,), 3).state_dict())


def test_trust_loads_a_whole_pickled_module(tmp_path):
    model = mlp(6, (5,), 3)
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    state = load_checkpoint(path, trust=True)
    _assert_same_weights(apply_state(mlp(6, (5,), 3), state, path), model)


def test_trust_learns_the_globals_of_a_legacy_file_and_names_a_missing_one(tmp_path, monkeypatch):
    import datetime

    model = mlp(6, (5,), 3)
    path = tmp_path / "legacy_hparams.pt"  # no archive to list the globals from: learnt one by one
    torch.save({"state_dict": model.state_dict(), "hparams": datetime.date(2024, 1, 2)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    _assert_same_weights(apply_state(mlp(6, (5,), 3), load_checkpoint(path, trust=True), path), model)
    whole = tmp_path / "whole_legacy.pt"  # beyond the safe loader even when trusted: clear advice
    torch.save(model, whole, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"whole_legacy.pt: could not be unpickled even with "
                                              r"trust=True.*re-save the state dict"):
        load_checkpoint(whole, trust=True)
    missing = tmp_path / "missing.pt"
    torch.save({"state_dict": model.state_dict(), "cfg": _Gone()}, missing)
    monkeypatch.delattr(sys.modules[__name__], "_Gone")
    with pytest.raises(CheckpointError, match=r"missing.pt: needs .*_Gone, which cannot be imported"):
        load_checkpoint(missing, trust=True)


class _Gone:
    """Pickled by reference, then made unimportable by the test above."""


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_error_names_the_file(tmp_path, suffix):
    model = mlp(20, (30,), 3)
    path = tmp_path / f"ckpt_3{suffix}"
    _write(path, model.state_dict(), None if suffix == ".safetensors" else "state_dict", "")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert f"ckpt_3{suffix}" in str(err.value) and "truncated" in str(err.value)
    assert err.value.path == path


def test_legacy_format_truncated_and_garbage(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(mlp(20, (30,), 3).state_dict(), path, _use_new_zipfile_serialization=False)
    assert set(load_checkpoint(path))  # the legacy format loads
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 10):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="legacy.pt"):
            load_checkpoint(path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint(junk)


def test_missing_file_and_no_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "meta_only.pt"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, path)
    with pytest.raises(CheckpointError, match="meta_only.pt.*no state dict"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        unwrap_state([1, 2], path)


def test_apply_state_lists_missing_unexpected_and_nearest(tmp_path):
    state = mlp(6, (5, 4), 3).state_dict()
    state["fc2.lineer.weight"] = state.pop("fc2.linear.weight")
    with pytest.raises(ValueError) as err:
        apply_state(mlp(6, (5, 4), 3), state, tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg
    assert "missing from the checkpoint (1): fc2.linear.weight (nearest: fc2.lineer.weight)" in msg
    assert "unexpected in the checkpoint (1): fc2.lineer.weight (nearest: fc2.linear.weight)" in msg


def test_apply_state_reports_shape_mismatch(tmp_path):
    with pytest.raises(ValueError, match=r"fc1.linear.weight: checkpoint \(7, 6\) vs model \(5, 6\)"):
        apply_state(mlp(6, (5,), 3), mlp(6, (7,), 3).state_dict(), tmp_path / "w.pt")

"""Finding checkpoints and putting them in training order, with warnings when ambiguous."""
import warnings

import pytest
import torch
from safetensors.torch import save_file

from infodyn.runs import AmbiguousOrderWarning, discover, parse_filename


def _state():
    return {"w": torch.zeros(2)}


def _save(path, **meta):
    torch.save({"state_dict": _state(), **meta} if meta else _state(), path)


def _names(infos):
    return [i.path.name for i in infos]


def _no_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousOrderWarning)
        return fn(*args, **kwargs)


def test_order_by_stored_epoch_beats_names(tmp_path):
    for name, epoch in [("apple.pt", 2), ("banana.pt", 0), ("cherry.pt", 1)]:
        _save(tmp_path / name, epoch=epoch)
    infos = _no_warnings(discover, tmp_path)
    assert _names(infos) == ["banana.pt", "cherry.pt", "apple.pt"]
    assert [i.epoch for i in infos] == [0, 1, 2]
    assert all(i.order_source == "content" and i.error is None for i in infos)


def test_order_by_stored_step_with_lightning_keys(tmp_path):
    for name, (ep, st) in {"last.ckpt": (4, 500), "a.ckpt": (0, 100), "b.ckpt": (2, 300)}.items():
        torch.save({"epoch": ep, "global_step": st, "state_dict": _state()}, tmp_path / name)
    infos = _no_warnings(discover, tmp_path)
    assert _names(infos) == ["a.ckpt", "b.ckpt", "last.ckpt"]
    assert [(i.epoch, i.step) for i in infos] == [(0, 100), (2, 300), (4, 500)]


def test_order_by_file_name_numbers_is_numeric_not_lexicographic(tmp_path):
    for n in (10, 2, 1, 100):
        _save(tmp_path / f"ckpt_{n}.pt")
    infos = _no_warnings(discover, tmp_path)
    assert _names(infos) == ["ckpt_1.pt", "ckpt_2.pt", "ckpt_10.pt", "ckpt_100.pt"]
    assert [i.number for i in infos] == [1, 2, 10, 100]
    assert all(i.order_source == "filename" for i in infos)
    assert all(i.step is None and i.epoch is None for i in infos)


def test_labelled_file_names(tmp_path):
    for name in ["epoch=10-step=1100.ckpt", "epoch=2-step=300.ckpt", "epoch=9-step=1000.ckpt"]:
        torch.save(_state(), tmp_path / name)
    infos = _no_warnings(discover, tmp_path)
    assert [(i.epoch, i.step) for i in infos] == [(2, 300), (9, 1000), (10, 1100)]
    assert parse_filename("model_ep3.pth") == (3, None, None, 0)
    assert parse_filename("run7_iter1200.pt") == (None, 1200, 7, 1)
    assert parse_filename("checkpoint-500.bin") == (None, None, 500, 1)


def test_safetensors_header_metadata_orders(tmp_path):
    for name, step in [("x.safetensors", 20), ("y.safetensors", 10)]:
        save_file(_state(), str(tmp_path / name), metadata={"step": str(step)})
    infos = _no_warnings(discover, tmp_path)
    assert _names(infos) == ["y.safetensors", "x.safetensors"]
    assert [i.step for i in infos] == [10, 20] and infos[0].order_source == "content"


def test_duplicate_positions_warn(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, tmp_path / "a.pt")
    _save(tmp_path / "b.pt", epoch=1)  # other weights at the same epoch: two runs mixed
    _save(tmp_path / "c.pt", epoch=0)
    with pytest.warns(AmbiguousOrderWarning) as got:
        infos = discover(tmp_path)
    assert _names(infos) == ["c.pt", "a.pt", "b.pt"]
    kinds = {type(w.message).__name__: str(w.message) for w in got}
    assert "share the same position (a.pt, b.pt)" in kinds["AmbiguousOrderWarning"]
    assert "mix runs: a.pt, b.pt hold different weights" in kinds["MixedRunsWarning"]


def test_no_numbers_anywhere_warns_and_sorts_by_name(tmp_path):
    for name in ("final.pt", "best.pt", "init.pt"):
        _save(tmp_path / name)
    with pytest.warns(AmbiguousOrderWarning, match="ordered by name"):
        infos = discover(tmp_path)
    assert _names(infos) == ["best.pt", "final.pt", "init.pt"]


def test_mixed_content_and_filename_warns(tmp_path):
    _save(tmp_path / "ckpt_epoch5.pt", epoch=5)
    _save(tmp_path / "ckpt_epoch1.pt")  # no epoch inside: the name's label is used
    with pytest.warns(AmbiguousOrderWarning, match="only from the file name"):
        infos = discover(tmp_path)
    assert [(i.epoch, i.order_source) for i in infos] == [(1, "filename"), (5, "content")]


def test_names_disagreeing_with_contents_warn(tmp_path):
    _save(tmp_path / "ckpt_1.pt", epoch=2)
    _save(tmp_path / "ckpt_2.pt", epoch=1)
    with pytest.warns(AmbiguousOrderWarning, match="disagree"):
        infos = discover(tmp_path)
    assert _names(infos) == ["ckpt_2.pt", "ckpt_1.pt"]


def test_several_bare_numbers_warn(tmp_path):
    _save(tmp_path / "run3_5.pt")
    _save(tmp_path / "run3_12.pt")
    with pytest.warns(AmbiguousOrderWarning, match="several unlabelled numbers"):
        infos = discover(tmp_path)
    assert _names(infos) == ["run3_5.pt", "run3_12.pt"]


def test_read_content_false_uses_names(tmp_path):
    _save(tmp_path / "ckpt_1.pt", epoch=2)
    _save(tmp_path / "ckpt_2.pt", epoch=1)
    infos = _no_warnings(discover, tmp_path, read_content=False)
    assert _names(infos) == ["ckpt_1.pt", "ckpt_2.pt"]


def test_corrupted_file_is_listed_with_its_error(tmp_path):
    for e in range(3):
        _save(tmp_path / f"epoch{e}.pt", epoch=e)
    data = (tmp_path / "epoch1.pt").read_bytes()
    (tmp_path / "epoch1.pt").write_bytes(data[: len(data) // 2])
    infos = _no_warnings(discover, tmp_path)  # the name still carries the epoch
    assert _names(infos) == ["epoch0.pt", "epoch1.pt", "epoch2.pt"]
    assert infos[1].error is not None and "epoch1.pt" in infos[1].error
    assert infos[1].order_source == "filename" and infos[0].error is None


def test_skips_non_model_files_hidden_temporaries_and_other_suffixes(tmp_path):
    _save(tmp_path / "epoch1.pt", epoch=1)
    _save(tmp_path / "optimizer.pt")
    _save(tmp_path / "rng_state_0.pth")
    (tmp_path / "training_args.bin").write_bytes(b"x")
    (tmp_path / ".epoch2.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".hidden.pt").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "infodyn.yaml").write_text("model: x")
    assert _names(discover(tmp_path)) == ["epoch1.pt"]


def test_pattern_and_subfolders(tmp_path):
    (tmp_path / "ckpts").mkdir()
    _save(tmp_path / "ckpts" / "s_2.pth", step=2)
    _save(tmp_path / "ckpts" / "s_1.pth", step=1)
    _save(tmp_path / "other.pt", step=0)
    assert _names(discover(tmp_path, "ckpts/*.pth")) == ["s_1.pth", "s_2.pth"]
    assert _names(discover(tmp_path, "**/*.pth")) == ["s_1.pth", "s_2.pth"]
    with pytest.raises(ValueError, match="must be relative to the run folder"):
        discover(tmp_path, str(tmp_path / "*.pt"))


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no checkpoint files"):
        discover(tmp_path)
    _save(tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"expected a folder"):
        discover(tmp_path / "a.pt")


def test_fractional_epoch_and_trainer_side_files(tmp_path):
    _save(tmp_path / "a.pt", epoch=0.5, step=5)
    _save(tmp_path / "b.pt", epoch=1.0, step=10)
    for name in ("optimizer_1.bin", "scheduler_1.bin", "sampler.bin", "dl_state_dict.bin",
                 "rng_state_3.pth"):
        _save(tmp_path / name)
    infos = _no_warnings(discover, tmp_path)
    assert _names(infos) == ["a.pt", "b.pt"] and [i.epoch for i in infos] == [0.5, 1]

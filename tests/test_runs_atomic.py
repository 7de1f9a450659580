"""Atomic writes: the destination holds the old or the complete new content, never a mix."""
import numpy as np
import pandas as pd
import pytest
import torch

from infodyn._atomic import (atomic_path, atomic_save_npy, atomic_torch_save, atomic_write_bytes,
                             atomic_write_dataframe, atomic_write_text)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write_text(p, "one")
    assert p.read_text() == "one"
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert _leftovers(p.parent) == []


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    p = tmp_path / "results.csv"
    p.write_text("old, complete")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_text("new, half-writ")
            raise RuntimeError("killed mid-write")
    assert p.read_text() == "old, complete"
    assert _leftovers(tmp_path) == []


def test_temporary_is_hidden_in_the_same_folder(tmp_path):
    p = tmp_path / "x.npy"
    with atomic_path(p) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".x.npy.") and tmp.suffix == ".tmp"
        assert not p.exists()
        tmp.write_bytes(b"")
    assert p.exists()


def test_npy_exact_name_and_no_objects(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    p = atomic_save_npy(tmp_path / "feat.bin", arr)
    assert p.name == "feat.bin"
    np.testing.assert_array_equal(np.load(p, allow_pickle=False), arr)
    with pytest.raises(ValueError, match=r"object array \(shape \(2,\)\)"):
        atomic_save_npy(tmp_path / "o.npy", np.array([{}, []], dtype=object))


def test_dataframe_and_torch(tmp_path):
    df = pd.DataFrame({"layer": ["fc1", "fc2"], "value": [0.5, 1.25]})
    pd.testing.assert_frame_equal(pd.read_csv(atomic_write_dataframe(tmp_path / "r.csv", df)), df)
    p = atomic_torch_save(tmp_path / "s.pt", {"w": torch.ones(2), "epoch": 3})
    loaded = torch.load(p, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], torch.ones(2))


def test_written_files_get_the_ordinary_mode_not_mkstemps_0600(tmp_path):
    import os

    from infodyn._atomic import atomic_write_text

    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "results.csv", "a,b\n")
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)

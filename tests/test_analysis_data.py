"""The analysis on data as users keep it (issue 15): a torch Dataset factory with the user's
own train/test split, read lazily; head accuracy and transfer are scored on the user's test split."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from infodyn import analysis
from infodyn.models import mlp

FACTORY = '''
import numpy as np
import torch
from torch.utils.data import TensorDataset


def make(n_train=240, n_test=90):
    rng = np.random.default_rng(7)
    def part(n, shift):
        y = np.arange(n) % 3
        x = rng.normal(size=(n, 6)).astype("float32") + 2.0 * np.eye(3, 6, dtype="float32")[y] + shift
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    return {"train": part(n_train, 0.0), "test": part(n_test, 0.1)}
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lazyrun")
    (d / "userdata.py").write_text(FACTORY)
    torch.manual_seed(0)
    model = mlp(6, (10,), 3, "relu")
    for e in range(2):
        torch.save({"state_dict": model.state_dict(), "epoch": e}, d / f"ep{e}.pt")
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    manifest = {"model": "infodyn.models:mlp",
                "model_kwargs": {"in_dim": 6, "hidden": [10], "num_classes": 3, "activation": "relu"},
                "data": {"source": {"dataset": "userdata:make"}}, "layers": ["fc1"]}
    (d / "infodyn.yaml").write_text(yaml.safe_dump(manifest))
    return d


def test_user_split_is_kept_and_head_accuracy_is_on_the_users_test_split(run, tmp_path):
    import importlib.util

    df = analysis.analyze(run, measures="knn,source_acc", out=tmp_path / "o", progress=False)
    assert (df["error"] == "").all(), df["error"].unique()
    spec = importlib.util.spec_from_file_location("userdata_ref", run / "userdata.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    test = mod.make()["test"]
    x, y = test.tensors
    from infodyn.runs import apply_state, build_model, load_checkpoint, load_manifest

    model = build_model(load_manifest(run))
    apply_state(model, load_checkpoint(run / "ep1.pt"))
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    got = df[(df["measure"] == "source_acc") & (df["checkpoint"] == "ep1.pt")]
    assert got["value"].item() == pytest.approx(acc) and got["n"].item() == 90
    knn = df[df["measure"] == "knn_acc"]
    assert (knn["n"] == 90).all()
    import json

    params = [json.loads(p) for p in knn["params"]]
    assert all(p["split"] == "user" for p in params)
    # the table says which splits the user gave and which infodyn carved, and how features were pooled
    assert all(p["source_splits"] == {"train": "given", "val": "carved", "test": "given"} for p in params)
    assert all(p["pool"] == "auto" and p["features"] == 10 for p in params)


def test_an_image_edited_in_place_is_seen_in_the_same_process(tmp_path):
    """Data read lazily are not kept across analyses: an image folder whose files are rewritten
    in place (the folder's own time stamp unchanged) gives new numbers in the same process."""
    import os

    from PIL import Image

    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    for c in range(2):
        (run / "imgs" / f"c{c}").mkdir(parents=True)
        for i in range(12):
            Image.fromarray((rng.random((4, 4)) * 255).astype(np.uint8)).save(run / "imgs" / f"c{c}" / f"{i}.png")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    torch.save({"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}, "epoch": 0}, run / "ep0.pt")
    (run / "models.py").write_text("import torch\n\n\ndef make():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                                   "torch.nn.Linear(16, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))\n")
    (run / "infodyn.yaml").write_text(yaml.safe_dump({"model": "models:make", "state_prefix": "net.",
                                                      "data": {"source": {"images": "imgs", "mode": "L"}},
                                                      "layers": ["2"]}))
    out = tmp_path / "out"  # with a cache: a stale data digest would return the old rows
    before = analysis.analyze(run, measures="kde", out=out, progress=False)
    folder_stat = os.stat(run / "imgs" / "c0").st_mtime_ns
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(run / "imgs" / "c0" / "0.png")  # rewritten in place
    os.utime(run / "imgs" / "c0", ns=(folder_stat, folder_stat))
    after = analysis.analyze(run, measures="kde", out=out, progress=False)
    fresh = analysis.analyze(run, measures="kde", progress=False)
    assert (before["error"] == "").all(), before["error"].unique()
    assert not np.allclose(before["value"], after["value"])
    assert np.allclose(after["value"], fresh["value"])


def test_features_over_the_memory_budget_are_streamed_to_disk_and_give_the_same_table(tmp_path, monkeypatch):
    """Issue 18.2: with a memory budget of one byte every layer's features are written batch by
    batch into memory-mapped cache entries and read back as maps; the table is unchanged."""
    from infodyn.analysis import execute
    from infodyn.models import mlp as make_mlp
    from infodyn.runs import FeatureCache, cached_features
    from test_analysis import make_run

    run, _ = make_run(tmp_path / "runs", "r", target=None)
    in_memory = analysis.analyze(run, measures="kde,knn,rankme", out=None, progress=False, max_samples=300)
    monkeypatch.setattr(execute, "MMAP_BYTES", 1)
    streamed = analysis.analyze(run, measures="kde,knn,rankme", out=tmp_path / "o", progress=False, max_samples=300)
    cols = ["checkpoint", "layer", "measure", "task", "value"]
    assert in_memory[cols].equals(streamed[cols])
    assert not list((tmp_path / "o" / "features").rglob("*.tmp"))  # every temporary file was published

    torch.manual_seed(0)
    model = make_mlp(8, (12, 6), 3, "tanh")
    x = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    cache = FeatureCache(tmp_path / "fc")
    got = cached_features(cache, checkpoint="w", layers=["fc1"], dataset="d", x=x, model=model, batch_size=64,
                          mmap_bytes=0)
    assert isinstance(got["fc1"], np.memmap) and not got["fc1"].flags.writeable
    from infodyn.runs import extract_features

    np.testing.assert_array_equal(np.asarray(got["fc1"]), extract_features(model, x, ["fc1"], batch_size=64)["fc1"])

"""Checkpoint sequences as training libraries write them (issue 15 item 1) and hostile stored
positions / names (issue 17 item 8): found, ordered by their true position, loaded, analysed.

Lightning, Hugging Face (Trainer, save_pretrained) and accelerate write their own files here
(tiny models built from configs, nothing downloaded); timm's CheckpointSaver layout is written
by hand with exactly its dict and names (timm needs torchvision, which has no wheel for this
torch).
"""
import argparse
import io
import json
import os
import shutil
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from infodyn.models import mlp
from infodyn.runs import (AmbiguousOrderWarning, CheckpointError, apply_state,
                          checkpoint_sha256, discover, load_checkpoint,
                          load_checkpoint_with_meta, load_manifest, load_model, scan,
                          write_manifest)

HIDDEN = (16,)


def _digits():
    from infodyn.data import load

    return load("digits", seed=0)


def _same(model_a, state_b):
    sa = model_a.state_dict()
    assert set(sa) == set(state_b)
    for k, v in sa.items():
        assert torch.equal(v, state_b[k]), k


def _direct_acc(model, ds):
    with torch.no_grad():
        out = model.eval()(torch.as_tensor(ds.x_test))
    return float((out.argmax(1).numpy() == ds.y_test).mean())


def _analyze(run):
    from infodyn.analysis import analyze

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = analyze(run, measures="source_acc", out=None, progress=False, device="cpu")
    table = table[table.measure == "source_acc"].sort_values("order")
    assert (table.error.fillna("") == "").all(), table.error.tolist()
    return table


# ---------------------------------------------------------------------------------------------
# PyTorch Lightning


def _lightning_run(root: Path, epochs: int = 2):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    ds = _digits()

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(64, HIDDEN, 10)
            # a loss with a buffer: its keys ("loss.weight") sit beside the network's
            self.loss = torch.nn.CrossEntropyLoss(weight=torch.ones(10))

        def training_step(self, batch, _):
            x, y = batch
            return self.loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    torch.manual_seed(0)
    module = Module()
    data = torch.utils.data.TensorDataset(torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train).long())
    loader = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    saver = ModelCheckpoint(dirpath=root, save_top_k=-1, every_n_epochs=1, save_last=True)
    trainer = L.Trainer(max_epochs=epochs, callbacks=[saver], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, loader)
    trainer.save_checkpoint(root / "final.ckpt")  # the same weights as the last epoch's file
    return module, len(loader), ds


def test_lightning_checkpoints_found_ordered_converted_and_analysed(tmp_path):
    run = tmp_path / "lit"
    module, steps_per_epoch, ds = _lightning_run(run)
    write_manifest(run, {"model": "infodyn.models:mlp",
                         "model_kwargs": {"in_dim": 64, "hidden": list(HIDDEN), "num_classes": 10},
                         "data": "digits", "layers": ["fc1"], "state_prefix": "net."})
    listing = scan(run)
    infos = listing.checkpoints
    assert [i.name for i in infos] == [f"epoch=0-step={steps_per_epoch}.ckpt",
                                       f"epoch=1-step={2 * steps_per_epoch}.ckpt"]
    # Lightning's epoch=E is the state after epoch E: E + 1 completed epochs in infodyn's count.
    assert [i.epoch for i in infos] == [1, 2] and [i.epoch_stored for i in infos] == [0, 1]
    assert [i.step for i in infos] == [steps_per_epoch, 2 * steps_per_epoch]
    assert all(i.kind == "lightning" and "completed epochs" in i.convention for i in infos)
    skipped = {p.name: why for p, why in listing.skipped}
    assert set(skipped) == {"last.ckpt", "final.ckpt"}
    assert "'last' copy" in skipped["last.ckpt"] and "same weights" in skipped["final.ckpt"]
    assert "Lightning epoch=0, saved at the end of that epoch: 1 completed epochs" in listing.format()

    # state_prefix selects the network; the loss's buffer is left out.
    m = load_manifest(run)
    assert m.state_prefix == "net."
    raw = torch.load(infos[-1].path, weights_only=True)["state_dict"]
    assert "loss.weight" in raw and all(k.startswith(("net.", "loss.")) for k in raw)
    model = load_model(m, infos[-1].path)
    _same(model, module.net.state_dict())
    with pytest.raises(CheckpointError, match=r"no state dict key starts with state_prefix 'body\.'.*net\."):
        load_checkpoint(infos[-1].path, state_prefix="body.")

    table = _analyze(run)
    assert table.checkpoint.tolist() == [i.name for i in infos]
    assert table.epoch.tolist() == [1, 2]
    assert table.step.tolist() == [steps_per_epoch, 2 * steps_per_epoch]
    for (_, row), info in zip(table.iterrows(), infos):
        direct = _direct_acc(load_model(m, info.path), ds)
        assert row.value == pytest.approx(direct, abs=1e-12)


def test_lightning_prefix_under_ddp_and_compile_wrappers(tmp_path):
    net = mlp(8, (4,), 3)
    for wrapper in ("module.", "_orig_mod."):
        state = {f"{wrapper}net.{k}": v for k, v in net.state_dict().items()}
        state[f"{wrapper}loss.weight"] = torch.ones(3)
        path = tmp_path / f"epoch=0-step=1{wrapper.strip('.')}.ckpt"
        torch.save({"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.6",
                    "state_dict": state}, path)
        _same(net, load_checkpoint(path, state_prefix="net."))
        fresh = mlp(8, (4,), 3)
        apply_state(fresh, load_checkpoint(path), path)  # one sub-module matches: found alone
        _same(fresh, net.state_dict())


# ---------------------------------------------------------------------------------------------
# timm CheckpointSaver (layout written by hand: timm needs torchvision)


def _timm_run(root: Path, epochs: int = 3):
    """What timm's CheckpointSaver leaves after ``epochs`` epochs (max_history large): a
    ``checkpoint-E.pth.tar`` per epoch E (0-based, saved after training epoch E), ``last``
    (hard-linked to the newest) and ``model_best`` (hard-linked to the best)."""
    root.mkdir(parents=True)
    torch.manual_seed(0)
    ds = _digits()
    model = mlp(64, HIDDEN, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    args = argparse.Namespace(model="mlp", lr=0.5, epochs=epochs, batch_size=128, sched="cosine",
                              decay_milestones=[90, 180], amp=False, output="", resume="")
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train).long()
    states, best, best_metric = [], None, -1.0
    for epoch in range(epochs):
        for i in range(0, len(x), 128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
            opt.step()
        metric = 100.0 * _direct_acc(model, ds)
        model.train()
        save_state = {"epoch": epoch, "arch": args.model, "optimizer": opt.state_dict(), "version": 2,
                      "args": args, "state_dict": model.state_dict(),
                      "state_dict_ema": {k: v * 0.5 for k, v in model.state_dict().items()},
                      "metric": metric}
        torch.save(save_state, root / "tmp.pth.tar")
        os.replace(root / "tmp.pth.tar", root / "last.pth.tar")
        os.link(root / "last.pth.tar", root / f"checkpoint-{epoch}.pth.tar")
        if metric > best_metric:
            best_metric, best = metric, epoch
            if (root / "model_best.pth.tar").exists():
                os.unlink(root / "model_best.pth.tar")
            os.link(root / "last.pth.tar", root / "model_best.pth.tar")
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    return states, best, ds


def test_timm_checkpoint_saver_layout(tmp_path):
    run = tmp_path / "timm"
    states, best, ds = _timm_run(run)
    (run / "recovery_tmp.pth.tar").write_bytes(b"half-written")  # a temporary left by a crash
    write_manifest(run, {"model": "infodyn.models:mlp",
                         "model_kwargs": {"in_dim": 64, "hidden": list(HIDDEN), "num_classes": 10},
                         "data": "digits", "layers": ["fc1"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousOrderWarning)
        listing = scan(run)  # no trust needed: the argparse.Namespace holds plain data
    infos = listing.checkpoints
    assert [i.name for i in infos] == ["checkpoint-0.pth.tar", "checkpoint-1.pth.tar",
                                       "checkpoint-2.pth.tar"]
    assert all(i.error is None and i.kind == "timm" for i in infos)
    assert [i.epoch for i in infos] == [1, 2, 3]  # timm's epoch index E = E + 1 epochs done
    skipped = {p.name: why for p, why in listing.skipped}
    assert set(skipped) == {"last.pth.tar", "model_best.pth.tar", "recovery_tmp.pth.tar"}
    assert f"checkpoint-{best}.pth.tar" in skipped["model_best.pth.tar"]
    assert "temporary" in skipped["recovery_tmp.pth.tar"]

    state, meta = load_checkpoint_with_meta(infos[1].path)
    assert meta["epoch"] == 2 and meta["epoch_stored"] == 1 and meta["extra"]["metric"] > 0
    for info, expected in zip(infos, states):
        model = load_model(load_manifest(run), info.path)
        _same(model, expected)  # 'state_dict', not 'state_dict_ema'

    table = _analyze(run)
    assert table.checkpoint.tolist() == [i.name for i in infos]
    assert table.epoch.tolist() == [1, 2, 3]
    for (_, row), expected in zip(table.iterrows(), states):
        model = mlp(64, HIDDEN, 10)
        model.load_state_dict(expected)
        assert row.value == pytest.approx(_direct_acc(model, ds), abs=1e-12)


def test_timm_recovery_file_sits_inside_its_epoch(tmp_path):
    """A crash leaves recovery-E-B.pth.tar (batch B of epoch index E): after checkpoint-(E-1)."""
    net = mlp(4, (3,), 2)
    for epoch in (0, 1):
        torch.save({"epoch": epoch, "arch": "mlp", "version": 2,
                    "state_dict": {k: v + epoch for k, v in net.state_dict().items()}},
                   tmp_path / f"checkpoint-{epoch}.pth.tar")
    torch.save({"epoch": 2, "arch": "mlp", "version": 2,
                "state_dict": {k: v + 7 for k, v in net.state_dict().items()}},
               tmp_path / "recovery-2-50.pth.tar")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousOrderWarning)
        infos = discover(tmp_path)
    assert [i.name for i in infos] == ["checkpoint-0.pth.tar", "checkpoint-1.pth.tar",
                                       "recovery-2-50.pth.tar"]
    assert [i.epoch for i in infos] == [1, 2, 2]
    assert "mid-epoch" in infos[-1].convention


def test_timm_namespace_is_the_only_object_let_through(tmp_path):
    import datetime

    path = tmp_path / "checkpoint-0.pth.tar"
    torch.save({"epoch": 0, "arch": "mlp", "version": 2, "state_dict": mlp(4, (3,), 2).state_dict(),
                "args": argparse.Namespace(when=datetime.date(2024, 1, 1))}, path)
    with pytest.raises(CheckpointError, match="refused.*datetime.date"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Hugging Face


HF_MODULE = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class DigitsConfig(PretrainedConfig):
    model_type = "infodyn-test-digits-mlp"

    def __init__(self, in_dim=64, hidden=16, classes=10, **kwargs):
        self.in_dim, self.hidden, self.classes = in_dim, hidden, classes
        super().__init__(**kwargs)


class DigitsMLP(PreTrainedModel):
    config_class = DigitsConfig

    def __init__(self, config):
        super().__init__(config)
        self.fc1 = torch.nn.Linear(config.in_dim, config.hidden)
        self.LayerNorm = torch.nn.LayerNorm(config.hidden)  # BERT's name (see the rename test)
        self.out = torch.nn.Linear(config.hidden, config.classes)
        self.post_init()

    def forward(self, x, labels=None):
        logits = self.out(torch.relu(self.LayerNorm(self.fc1(x))))
        if labels is None:
            return logits
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def make(hidden=16):
    return DigitsMLP(DigitsConfig(hidden=hidden))
'''


def _hf_trainer_run(run: Path):
    pytest.importorskip("transformers")
    import importlib.util
    import sys

    from transformers import Trainer, TrainingArguments

    run.mkdir(parents=True)
    (run / "hf_digits_models.py").write_text(HF_MODULE)
    spec = importlib.util.spec_from_file_location("hf_digits_models_train", run / "hf_digits_models.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    ds = _digits()

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds.y_train)

        def __getitem__(self, i):
            return {"x": torch.as_tensor(ds.x_train[i]), "labels": int(ds.y_train[i])}

    torch.manual_seed(0)
    model = mod.make()
    args = TrainingArguments(output_dir=str(run), per_device_train_batch_size=128, num_train_epochs=2,
                             save_strategy="epoch", report_to=[], use_cpu=True, logging_strategy="no",
                             disable_tqdm=True, learning_rate=5e-2, seed=0, data_seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(model=model, args=args, train_dataset=Data()).train()
    return model, ds, mod


@pytest.fixture(scope="module")
def hf_trained(tmp_path_factory):
    """One Hugging Face Trainer run for the tests below (each works on its own copy)."""
    run = tmp_path_factory.mktemp("hf_trained") / "hf"
    model, ds, mod = _hf_trainer_run(run)
    return run, model, ds, mod


@pytest.fixture
def hf_run(hf_trained, tmp_path):
    run, model, ds, mod = hf_trained
    copy = tmp_path / "hf"
    shutil.copytree(run, copy)
    return copy, model, ds, mod


def test_hugging_face_trainer_folders_found_ordered_and_loaded_both_ways(hf_run):
    run, model, ds, mod = hf_run
    listing = scan(run)
    infos = listing.checkpoints
    steps = -(-len(ds.y_train) // 128)
    assert [i.name for i in infos] == [f"checkpoint-{steps}", f"checkpoint-{2 * steps}"]
    assert all(i.path.is_dir() and i.kind == "hf" and i.order_source == "content" for i in infos)
    assert [i.epoch for i in infos] == [1, 2] and [i.step for i in infos] == [steps, 2 * steps]
    assert all(json.loads((i.path / "trainer_state.json").read_text())["global_step"] == i.step
               for i in infos)

    base = {"data": "digits", "layers": ["fc1", "LayerNorm"]}
    # 1) the library loads each folder itself (load: model -> from_pretrained(folder))
    write_manifest(run, {**base, "model": "hf_digits_models:DigitsMLP.from_pretrained", "load": "model"})
    m = load_manifest(run)
    loaded = load_model(m, infos[-1].path)
    _same(loaded, model.state_dict())
    assert not loaded.training
    # 2) infodyn reads the safetensors file into a model built from kwargs
    plain = {**base, "model": "hf_digits_models:make", "model_kwargs": {"hidden": 16}}
    write_manifest(run, plain, overwrite=True)
    _same(load_model(load_manifest(run), infos[-1].path), model.state_dict())
    first = load_checkpoint(infos[0].path)
    assert not all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    # the content hash covers the weights (not the optimizer), so it identifies the checkpoint
    assert checkpoint_sha256(infos[0].path) != checkpoint_sha256(infos[1].path)
    before = checkpoint_sha256(infos[0].path)
    (infos[0].path / "optimizer.pt").write_bytes(b"changed")
    assert checkpoint_sha256(infos[0].path) == before


def test_hugging_face_final_model_in_the_run_folder_itself(hf_run):
    """Trainer.save_model(output_dir) / save_state() put the final model (and trainer_state.json)
    beside the checkpoint-N folders: a copy of the last checkpoint, left out and listed."""
    run, model, ds, mod = hf_run
    last = scan(run).checkpoints[-1].path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(run, max_shard_size="1KB")  # sharded: no shard is taken alone
    assert len(list(run.glob("model-*.safetensors"))) > 1
    shutil.copy(last / "trainer_state.json", run / "trainer_state.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousOrderWarning)
        listing = scan(run)
    assert [i.name for i in listing.checkpoints] == [p.name for p in sorted(
        run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))]
    assert [why for p, why in listing.skipped if p == run] == [
        f"same position and same weights as {last.name}"]
    (run / "trainer_state.json").unlink()  # save_model alone: no position recorded
    with warnings.catch_warnings():
        warnings.simplefilter("error", AmbiguousOrderWarning)
        listing = scan(run)
    assert len(listing.checkpoints) == 2
    assert any(p == run and "run folder's own model files" in why for p, why in listing.skipped)
    _same(mod.DigitsMLP.from_pretrained(run), load_checkpoint(run))


def test_init_writes_load_model_for_a_hugging_face_run(hf_run, capsys):
    from infodyn.cli import main

    run, model, ds, mod = hf_run
    assert main(["init", str(run), "--model", "hf_digits_models:DigitsMLP.from_pretrained",
                 "--load", "model", "--source", "digits"]) == 0
    assert "layers (all top-level modules with parameters): fc1, LayerNorm, out" in capsys.readouterr().out
    m = load_manifest(run)
    assert m.load == "model" and m.layers == ["fc1", "LayerNorm", "out"]
    _same(load_model(m, discover(run)[-1].path), model.state_dict())


def test_init_writes_state_prefix(tmp_path, capsys):
    from infodyn.cli import main

    net = mlp(64, HIDDEN, 10)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state["criterion.weight"] = torch.ones(10)
    torch.save({"epoch": 0, "global_step": 3, "pytorch-lightning_version": "2.6.6", "state_dict": state},
               tmp_path / "epoch=0-step=3.ckpt")
    assert main(["init", str(tmp_path), "--model", "infodyn.models:mlp", "--model-kwargs",
                 "{in_dim: 64, hidden: [16], num_classes: 10}", "--source", "digits",
                 "--layers", "fc1", "--state-prefix", "net"]) == 0
    m = load_manifest(tmp_path)
    assert m.state_prefix == "net." and m.load == "state_dict"
    _same(load_model(m, tmp_path / "epoch=0-step=3.ckpt"), net.state_dict())
    with pytest.raises(ValueError, match="'state_prefix' must be a sub-module prefix"):
        write_manifest(tmp_path / "x", {"model": "infodyn.models:mlp", "data": "digits",
                                        "layers": ["fc1"], "state_prefix": 3})
    with pytest.raises(ValueError, match="'load' must be one of"):
        write_manifest(tmp_path / "x", {"model": "infodyn.models:mlp", "data": "digits",
                                        "layers": ["fc1"], "load": "pretrained"})


def test_hugging_face_renamed_keys_are_the_librarys_business(hf_run):
    """A folder saved with legacy LayerNorm names (gamma/beta), which transformers maps to
    weight/bias on load for modules named LayerNorm: the library path loads it, the plain
    state-dict path cannot, and its error says to let the library load the folder."""
    run, model, ds, mod = hf_run
    from safetensors.torch import load_file, save_file

    last = scan(run).checkpoints[-1].path
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in load_file(last / "model.safetensors").items()}
    save_file(legacy, last / "model.safetensors", metadata={"format": "pt"})
    write_manifest(run, {"data": "digits", "layers": ["fc1"], "load": "model",
                         "model": "hf_digits_models:DigitsMLP.from_pretrained"})
    _same(load_model(load_manifest(run), last), model.state_dict())
    write_manifest(run, {"data": "digits", "layers": ["fc1"], "model": "hf_digits_models:make"},
                   overwrite=True)
    with pytest.raises(ValueError, match="LayerNorm.weight.*Hugging Face folder.*load: model"):
        load_model(load_manifest(run), last)


def test_hugging_face_trainer_run_through_analyze(hf_run):
    run, model, ds, mod = hf_run
    write_manifest(run, {"data": "digits", "layers": ["fc1"], "load": "model",
                         "model": "hf_digits_models:DigitsMLP.from_pretrained"})
    infos = discover(run)
    table = _analyze(run)
    assert table.checkpoint.tolist() == [i.name for i in infos]
    assert table.epoch.tolist() == [1, 2]
    assert table.step.tolist() == [i.step for i in infos]
    for (_, row), info in zip(table.iterrows(), infos):
        assert row.value == pytest.approx(_direct_acc(mod.DigitsMLP.from_pretrained(info.path), ds),
                                          abs=1e-12)


def test_hugging_face_sharded_and_bin_layouts(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    ref = transformers.BertForMaskedLM(cfg)  # its decoder is tied to the word embeddings
    run = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.save_pretrained(run / "sharded", max_shard_size="2KB")
        ref.save_pretrained(run / "single")
    index = json.loads((run / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    # pytorch_model.bin, single and sharded (the older format, written here by hand)
    state = ref.state_dict()
    (run / "bin").mkdir()
    shutil.copy(run / "single" / "config.json", run / "bin" / "config.json")
    torch.save(state, run / "bin" / "pytorch_model.bin")
    (run / "binshards").mkdir()
    keys = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    for name, part in halves.items():
        torch.save({k: state[k] for k in part}, run / "binshards" / name)
    (run / "binshards" / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: n for n, part in halves.items() for k in part}}))
    for folder in ("sharded", "single", "bin", "binshards"):
        fresh = transformers.BertForMaskedLM(cfg)
        apply_state(fresh, load_checkpoint(run / folder), run / folder)
        _same(fresh, ref.state_dict())
    # a shard index that points outside its folder is refused
    bad = run / "evil"
    bad.mkdir()
    (bad / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "../single/model.safetensors"}}))
    with pytest.raises(CheckpointError, match="outside its folder"):
        load_checkpoint(bad)
    with pytest.warns(AmbiguousOrderWarning, match="ordered by name"):
        names = [i.name for i in discover(run, "*")]
    assert sorted(names) == ["bin", "binshards", "evil", "sharded", "single"]


# ---------------------------------------------------------------------------------------------
# accelerate


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_accelerate_save_state_folders(tmp_path):
    pytest.importorskip("accelerate")
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    import pickle

    run = tmp_path / "acc"
    torch.manual_seed(0)
    net = mlp(64, HIDDEN, 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    acc = Accelerator(cpu=True, project_config=ProjectConfiguration(project_dir=str(run),
                                                                   automatic_checkpoint_naming=True))
    pnet, popt = acc.prepare(net, opt)
    ds = _digits()
    saved = []
    for i in range(3):
        x = torch.as_tensor(ds.x_train[i * 64:(i + 1) * 64])
        y = torch.as_tensor(ds.y_train[i * 64:(i + 1) * 64]).long()
        acc.backward(torch.nn.functional.cross_entropy(pnet(x), y))
        popt.step()
        popt.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acc.save_state()
        saved.append({k: v.clone() for k, v in acc.unwrap_model(pnet).state_dict().items()})
    marker = tmp_path / "UNPICKLED"
    for f in run.glob("checkpoints/*/random_states_*.pkl"):  # never read by infodyn
        f.write_bytes(pickle.dumps(_Marker(marker)))
    listing = scan(run)
    infos = listing.checkpoints
    assert [i.path.relative_to(run).as_posix() for i in infos] == [
        f"checkpoints/checkpoint_{i}" for i in range(3)]
    assert all(i.kind == "accelerate" and "counts the saves" in i.convention for i in infos)
    write_manifest(run, {"model": "infodyn.models:mlp",
                         "model_kwargs": {"in_dim": 64, "hidden": list(HIDDEN), "num_classes": 10},
                         "data": "digits", "layers": ["fc1"]})
    for info, expected in zip(infos, saved):
        _same(load_model(load_manifest(run), info.path), expected)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# a folder of several kinds: the listing


def test_listing_of_a_folder_with_several_kinds(tmp_path, capsys):
    from infodyn.cli import main

    run = tmp_path / "mixed"
    run.mkdir()
    net = mlp(8, (4,), 3)
    torch.save({"state_dict": net.state_dict(), "epoch": 0}, run / "epoch000000.pt")
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, run / "epoch000001.pt")
    torch.save({"opt": 1}, run / "optimizer.pt")
    shutil.copy(run / "epoch000001.pt", run / "latest.pt")
    (run / "deeper").mkdir()
    torch.save({"state_dict": net.state_dict(), "epoch": 5}, run / "deeper" / "epoch000005.pt")
    (run / "other").mkdir()
    (run / "other" / "infodyn.yaml").write_text("model: x")
    torch.save(net.state_dict(), run / "other" / "epoch000000.pt")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["init", str(run), "--list"]) == 0
    text = buf.getvalue()
    assert "2 checkpoint(s) taken, 4 skipped" in text
    for needle in ("epoch000000.pt", "epoch000001.pt",
                   "optimizer.pt: optimizer/scheduler/scaler/RNG/sampler state",
                   "latest.pt: a 'latest' copy at the position of epoch000001.pt",
                   "deeper/epoch000005.pt: in a sub-folder 1 level(s) below",
                   "other: another run (it has its own infodyn.yaml)"):
        assert needle in text, needle
    assert main(["init", str(run)]) != 0  # writing a manifest still needs --model and --source
    assert "needs --model and --source" in capsys.readouterr().err


def test_empty_folder_says_what_it_found(tmp_path):
    torch.save({"opt": 1}, tmp_path / "optimizer.pt")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no checkpoint files found.*found only: optimizer.pt"):
        discover(tmp_path)


# ---------------------------------------------------------------------------------------------
# issue 17 item 8: absurd stored positions and non-UTF-8 names fail alone


@pytest.mark.parametrize("bad", [10 ** 400, 1e300, 2 ** 63, float("inf"), -(10 ** 30)])
def test_absurd_stored_epoch_is_ignored_with_a_warning(tmp_path, bad):
    for e in (0, 1, 2):
        torch.save({"state_dict": {"w": torch.full((2,), float(e))}, "epoch": e}, tmp_path / f"ckpt_{e}.pt")
    torch.save({"state_dict": {"w": torch.full((2,), 9.0)}, "epoch": bad}, tmp_path / "ckpt_3.pt")
    with pytest.warns(AmbiguousOrderWarning) as got:
        infos = discover(tmp_path)
    assert [i.name for i in infos] == ["ckpt_0.pt", "ckpt_1.pt", "ckpt_2.pt", "ckpt_3.pt"]
    assert [i.epoch for i in infos] == [0, 1, 2, None]  # no epoch, not a wrong one
    assert "out of range" in infos[-1].notes[0] or "not finite" in infos[-1].notes[0]
    assert any("ckpt_3.pt" in str(w.message) for w in got)
    assert all(i.error is None for i in infos)
    _, meta = load_checkpoint_with_meta(infos[-1].path)  # the file itself still loads
    assert meta["epoch"] is None and meta["warnings"]


def test_absurd_step_in_safetensors_header_and_trainer_state(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "a_1.safetensors"), metadata={"step": "1e300"})
    save_file({"w": torch.ones(2)}, str(tmp_path / "a_2.safetensors"), metadata={"step": "7"})
    hf = tmp_path / "checkpoint-9"
    hf.mkdir()
    save_file({"w": torch.full((2,), 2.0)}, str(hf / "model.safetensors"))
    (hf / "trainer_state.json").write_text('{"epoch": 1e999, "global_step": ' + "9" * 5000 + "}")
    with pytest.warns(AmbiguousOrderWarning):
        infos = discover(tmp_path)
    by_name = {i.name: i for i in infos}
    assert set(by_name) == {"a_1.safetensors", "a_2.safetensors", "checkpoint-9"}
    assert by_name["a_2.safetensors"].step == 7 and by_name["a_1.safetensors"].step is None
    # the unparseable trainer_state.json fails that checkpoint alone, with its name
    assert "trainer_state.json" in by_name["checkpoint-9"].error


def test_huge_numbers_in_file_names(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / ("epoch" + "9" * 240 + ".pt"))
    torch.save({"w": torch.ones(1)}, tmp_path / "epoch3.pt")
    with pytest.warns(AmbiguousOrderWarning):
        infos = discover(tmp_path)
    assert len(infos) == 2 and {i.epoch for i in infos} == {3, None}


def test_non_utf8_file_name_is_read_and_shown(tmp_path):
    net = mlp(8, (4,), 3)
    for e in (0, 2):
        torch.save({"state_dict": net.state_dict(), "epoch": e, "x": e}, tmp_path / f"epoch{e}.pt")
    odd = os.path.join(os.fsencode(tmp_path), b"epoch\xff1.pt")
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, buf)
    with open(odd, "wb") as fh:
        fh.write(buf.getvalue())
    from safetensors.torch import save_file

    st_odd = os.path.join(os.fsencode(tmp_path), b"w\xfe.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "tmp.safetensors"), metadata={"epoch": "5"})
    os.rename(os.fsencode(tmp_path / "tmp.safetensors"), st_odd)
    with pytest.warns(AmbiguousOrderWarning, match="not valid UTF-8"):
        listing = scan(tmp_path)
    infos = listing.checkpoints
    assert [i.epoch for i in infos] == [0, 1, 2, 5]
    assert infos[1].name == "epoch\ufffd1.pt" and infos[1].error is None
    assert infos[3].name == "w\ufffd.safetensors" and infos[3].error is None
    _same(net, load_checkpoint(infos[1].path))
    assert set(load_checkpoint(infos[3].path)) == {"w"}
    text = listing.format()
    text.encode("utf-8")  # printable
    assert "epoch\ufffd1.pt" in text

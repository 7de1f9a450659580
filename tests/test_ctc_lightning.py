"""The Lightning callback drives CTC exactly like the plain loop (runs only with lightning)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

L = pytest.importorskip("lightning.pytorch")

from infodyn.ctc import CTC  # noqa: E402
from infodyn.ctc.lightning import CHECKPOINT_KEY, CTCCallback  # noqa: E402

N, C = 64, 4


def toy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 6, generator=g)
    y = torch.arange(N) % C
    return torch.utils.data.TensorDataset(x, y, torch.arange(N))


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, C))


def feat(m, x):
    return m[:2](x)


def make_ctc(model):
    return CTC(model, feat, N, C, switch_epoch=2, total_epochs=3, num_negatives=10, proj_dim=4)


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = net()
        self.__dict__["ctc"] = make_ctc(self.net)  # not a submodule
        self.losses = []

    def training_step(self, batch, _):
        x, y, idx = batch
        f = feat(self.net, x)
        extra = self.ctc.loss(x, f, y, idx)
        self.losses.append(float(extra.detach()))
        return F.cross_entropy(self.net[2](f), y) + extra

    def configure_optimizers(self):
        return torch.optim.SGD(list(self.net.parameters()) + list(self.ctc.parameters()), lr=0.1)


def test_callback_matches_plain_loop_and_checkpoints(tmp_path):
    loader = torch.utils.data.DataLoader(toy(), batch_size=16, shuffle=False)
    module = Module()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[CTCCallback(lambda m: m.ctc, loader)])
    trainer.fit(module, loader)
    assert module.ctc.stage == 2 and module.ctc.refilled and module.ctc.epoch == 3

    model = net()
    ctc = make_ctc(model)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.1)
    plain = []
    for epoch in (1, 2, 3):
        for x, y, idx in loader:
            f = feat(model, x)
            extra = ctc.loss(x, f, y, idx)
            plain.append(float(extra.detach()))
            loss = F.cross_entropy(model[2](f), y) + extra
            opt.zero_grad()
            loss.backward()
            opt.step()
        ctc.end_epoch(epoch, loader)
    assert module.losses == pytest.approx(plain, rel=1e-6, abs=1e-7)

    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)[CHECKPOINT_KEY]
    fresh = Module()
    cb = CTCCallback(lambda m: m.ctc)
    cb.on_load_checkpoint(None, fresh, {CHECKPOINT_KEY: saved})
    assert fresh.ctc.stage == 2
    for k, v in module.ctc.snapshot.state_dict().items():
        assert torch.equal(fresh.ctc.snapshot.state_dict()[k], v)
    with pytest.raises(ValueError, match="not saved with CTCCallback"):
        cb.on_load_checkpoint(None, fresh, {})

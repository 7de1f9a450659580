"""PyTorch Lightning callback around :class:`~infodyn.ctc.CTC` (extra ``infodyn[lightning]``).

Importing this module needs ``lightning`` (or the older ``pytorch_lightning``). The callback does
the loop's bookkeeping; the LightningModule still adds the loss itself, because only it knows
where its feature is::

    class Net(L.LightningModule):
        def __init__(self, ...):
            ...
            self.ctc = CTC(self.backbone_and_head, feature_fn, num_samples=N, num_classes=C,
                           switch_epoch=20, total_epochs=30)

        def training_step(self, batch, _):
            x, y, idx = batch
            f = self.features(x)
            return F.cross_entropy(self.head(f), y) + self.ctc.loss(x, f, y, idx)

        def configure_optimizers(self):
            return torch.optim.SGD(list(self.parameters()) + list(self.ctc.parameters()), lr=0.05)

    trainer = L.Trainer(max_epochs=30, callbacks=[CTCCallback(lambda m: m.ctc, refill_loader)])

Keep the CTC object out of the module's submodules (a plain attribute holding a non-Module, as
above), so its snapshot is not trained or saved twice. The callback moves the CTC object to the
module's device when fit starts, calls ``end_epoch`` after each training epoch (Lightning's epoch
0 is CTC's epoch 1; the snapshot is refilled from ``refill_loader`` when given) and stores the
full CTC state in every Lightning checkpoint under ``"infodyn_ctc"``, restoring it on resume.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import pytorch_lightning as pl
    except ImportError as e:
        raise ImportError("infodyn.ctc.lightning needs PyTorch Lightning: "
                          "pip install 'infodyn[lightning]'") from e

from .core import CTC

CHECKPOINT_KEY = "infodyn_ctc"


class CTCCallback(pl.Callback):
    """Drives a :class:`CTC` object inside ``Trainer.fit``.

    Args:
        ctc: the CTC object, or a function ``module -> CTC`` (for objects built inside the
            LightningModule).
        refill_loader: optional iterable of ``(x, y, idx)`` batches used to refill the stage-2
            banks at the switch (x is moved to the module's device).
    """

    def __init__(self, ctc: Any, refill_loader: Optional[Iterable] = None):
        super().__init__()
        self._ctc = ctc
        self.refill_loader = refill_loader

    def ctc(self, pl_module) -> CTC:
        obj = self._ctc(pl_module) if callable(self._ctc) and not isinstance(self._ctc, CTC) else self._ctc
        if not isinstance(obj, CTC):
            raise ValueError(f"CTCCallback needs an infodyn.ctc.CTC object, got {type(obj).__name__}")
        return obj

    def on_fit_start(self, trainer, pl_module) -> None:
        self.ctc(pl_module).to(pl_module.device)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        loader = None
        if self.refill_loader is not None:
            loader = ((x.to(pl_module.device), y, i) for x, y, i in self.refill_loader)
        self.ctc(pl_module).end_epoch(trainer.current_epoch + 1, loader)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.ctc(pl_module).state_dict()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: Dict[str, Any]) -> None:
        if CHECKPOINT_KEY not in checkpoint:
            raise ValueError(f"checkpoint has no {CHECKPOINT_KEY!r} entry: it was not saved with "
                             f"CTCCallback, so the CTC state (banks, snapshot) cannot be restored")
        self.ctc(pl_module).load_state_dict(checkpoint[CHECKPOINT_KEY])

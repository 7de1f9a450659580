"""The :class:`CTC` object: Contrastive Temporal Coding as a hook for a plain PyTorch loop.

Cui, Zhao et al., "Discriminability-Transferability Trade-Off: An Information-Theoretic
Perspective", ECCV 2022. Plain cross-entropy keeps raising source accuracy late in training
while it compresses I(X;T) and transfer falls; CTC adds, on the penultimate feature f:

* stage 1 (epochs 1 .. switch_epoch): ``alpha *`` instance discrimination against a memory bank
  of each sample's own past embeddings (:func:`~infodyn.ctc.losses.instance_discrimination_loss`);
* stage 2 (after the switch): ``beta *`` a contrast between the current model and a frozen
  snapshot of the model taken at the switch. Two heads (current, snapshot) and two memory banks;
  for sample i the positive is row i of the other view's bank and the negatives are rows of
  samples of *other classes*; both directions are summed. Softmax InfoNCE by default, the
  reference code's binary NCE with ``contrast="nce"``.

Example::

    ctc = CTC(model, lambda m, x: m.features(x), num_samples=len(train_set), num_classes=10,
              switch_epoch=20, total_epochs=30)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05)
    for epoch in range(1, 31):
        for x, y, idx in loader:                   # idx: each sample's index in the train set
            f = model.features(x)
            loss = F.cross_entropy(model.head(f), y) + ctc.loss(x, f, y, idx)
            opt.zero_grad(); loss.backward(); opt.step()
        ctc.end_epoch(epoch, loader)               # at epoch 20: snapshot + bank refill

Differences from the reference code (faults fixed): the stage-1 head is trained (the fixed
random map is ``train_instance_head=False``); every random choice takes ``seed``; the full
state (heads, banks, labels, snapshot, stage, NCE constants, RNG) is in :meth:`CTC.state_dict`
so stage 2 resumes exactly; negatives are drawn only in stage 2 and the stage-2 banks exist only
from the switch on; a non-finite loss raises instead of being reset.

Memory: stage 1 holds one ``N x proj_dim`` float32 bank, stage 2 two (N = 50 000, proj_dim =
128: 25.6 MB each) plus a copy of the model; ``bank_device="cpu"`` keeps banks in host memory.
Stage 1 scores each batch against the whole bank (B x N products per step).
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .banks import MemoryBank, NegativeSampler
from .losses import (binary_nce_from_scores, info_nce_from_scores, instance_discrimination_loss,
                     nce_normaliser)

FORMAT = "infodyn.ctc/1"
CONTRASTS = ("infonce", "nce")
# Settings that must agree between a saved state and the object that loads it.
_CONFIG_KEYS = ("num_samples", "num_classes", "switch_epoch", "feature_dim", "proj_dim",
                "contrast", "train_instance_head", "num_negatives", "momentum")


def last_linear_in_features(model: nn.Module) -> int:
    """``in_features`` of the last ``nn.Linear`` in ``model.modules()`` (the classifier's input).
    No linear layer -> ValueError asking for ``feature_dim``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"model {type(model).__name__} has no nn.Linear layer to read the feature "
                         f"dimension from: pass feature_dim= (the size of feature_fn's output)")
    return linears[-1].in_features


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _as_index(a: Any, name: str, device) -> torch.Tensor:
    t = torch.as_tensor(a)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name} must hold integers, got dtype {t.dtype} with shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.int64)


class CTC:
    """Contrastive Temporal Coding for one model (see the module docstring).

    Args:
        model: the network being trained (its copy at the switch becomes the snapshot).
        feature_fn: ``feature_fn(model, x) -> (B, feature_dim)`` penultimate (pooled) feature.
        num_samples: N, training-set size; ``idx`` values are in [0, N).
        num_classes: C; labels are in [0, C).
        switch_epoch: the epoch at whose end the snapshot is taken (1-based); None: stage 1 only.
        feature_dim: size of the feature; None reads the last nn.Linear's ``in_features``.
        alpha: weight of the stage-1 instance-discrimination loss.
        beta: weight of the stage-2 contrast.
        tau_instance, tau_contrast: temperatures of the two losses.
        momentum: memory-bank momentum m, in [0, 1).
        num_negatives: K, other-class negatives per anchor in stage 2.
        proj_dim: size of the projection heads' output (the banks' width).
        seed: seeds head initialisation, bank initialisation and negative sampling.
        total_epochs: if given, ``switch_epoch`` must leave at least one stage-2 epoch.
        contrast: ``"infonce"`` (softmax) or ``"nce"`` (binary NCE of the reference code).
        train_instance_head: False keeps the stage-1 projection a fixed random map (reference).
        labels: optional (N,) training labels; otherwise recorded from the (y, idx) seen.
        bank_device: where the banks live; None: the model's device.
        check_finite: raise when a CTC loss is NaN or infinite.
    """

    def __init__(self, model: nn.Module, feature_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 num_samples: int, num_classes: int, switch_epoch: Optional[int] = 200, *,
                 feature_dim: Optional[int] = None, alpha: float = 0.5, beta: float = 1.0,
                 tau_instance: float = 0.1, tau_contrast: float = 0.1, momentum: float = 0.9,
                 num_negatives: int = 16384, proj_dim: int = 128, seed: int = 0,
                 total_epochs: Optional[int] = None, contrast: str = "infonce",
                 train_instance_head: bool = True, labels: Any = None, bank_device: Any = None,
                 check_finite: bool = True):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(feature_fn):
            raise ValueError("feature_fn must be callable as feature_fn(model, x)")
        for name, v, lo in (("num_samples", num_samples, 2), ("num_classes", num_classes, 2),
                            ("num_negatives", num_negatives, 1), ("proj_dim", proj_dim, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if switch_epoch is not None and (not isinstance(switch_epoch, int) or switch_epoch < 1):
            raise ValueError(f"switch_epoch must be an integer >= 1 or None, got {switch_epoch!r}")
        if total_epochs is not None:
            if not isinstance(total_epochs, int) or total_epochs < 1:
                raise ValueError(f"total_epochs must be an integer >= 1, got {total_epochs!r}")
            if switch_epoch is not None and switch_epoch >= total_epochs:
                raise ValueError(f"switch_epoch={switch_epoch} is beyond training: with "
                                 f"total_epochs={total_epochs} no stage-2 epoch would run "
                                 f"(need switch_epoch < total_epochs, or switch_epoch=None)")
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name, v in (("tau_instance", tau_instance), ("tau_contrast", tau_contrast)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
        if feature_dim is None:
            feature_dim = last_linear_in_features(model)
        elif not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"feature_dim must be an integer >= 1, got {feature_dim!r}")

        self.model = model
        self.feature_fn = feature_fn
        self.num_samples, self.num_classes = num_samples, num_classes
        self.switch_epoch, self.total_epochs = switch_epoch, total_epochs
        self.feature_dim, self.proj_dim = feature_dim, proj_dim
        self.alpha, self.beta = float(alpha), float(beta)
        self.tau_instance, self.tau_contrast = float(tau_instance), float(tau_contrast)
        self.momentum, self.num_negatives = float(momentum), num_negatives
        self.seed, self.contrast = seed, contrast
        self.train_instance_head = bool(train_instance_head)
        self.check_finite = check_finite
        self.device = _model_device(model)
        self.bank_device = torch.device(bank_device) if bank_device is not None else self.device

        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded heads, user's global RNG untouched
            torch.manual_seed(seed)
            self.heads = nn.ModuleDict({
                "instance": nn.Linear(feature_dim, proj_dim),
                "current": nn.Linear(feature_dim, proj_dim),
                "snapshot": nn.Linear(feature_dim, proj_dim),
            }).to(self.device)
        self.heads["instance"].requires_grad_(self.train_instance_head)

        if labels is None:
            lab = torch.full((num_samples,), -1, dtype=torch.int64)
        else:
            lab = _as_index(labels, "labels", "cpu").reshape(-1)
            if lab.numel() != num_samples:
                raise ValueError(f"labels has {lab.numel()} entries but num_samples={num_samples}")
            self._check_labels(lab, "labels")
        self.sampler = NegativeSampler(lab, num_negatives)

        self.stage = 1
        self.epoch = 0
        self.snapshot: Optional[nn.Module] = None
        self.banks: Dict[str, MemoryBank] = {}
        self.refilled = False
        self.normalisers = torch.full((2,), float("nan"))
        self.last_negatives = None  # (idx (B, K'), mask (B, K')) of the last stage-2 step
        self._warned_refill = False
        # Bank updates of the last step wait until the next call: the step's backward pass
        # still needs the bank as it was (stage 1 multiplies by the whole bank).
        self._pending = []
        self._score_path = "auto"  # "gemm" / "gather" force one way of scoring (see _scores)
        if self.alpha > 0:
            self.banks["instance"] = self._new_bank()

    # ------------------------------------------------------------------------------------------
    # public API

    def parameters(self) -> Iterator[nn.Parameter]:
        """The trainable projection heads (give them to the optimiser with the model's)."""
        return (p for p in self.heads.parameters() if p.requires_grad)

    def to(self, device) -> "CTC":
        """Moves heads and snapshot to ``device`` (banks too unless ``bank_device`` was given
        different from the model's device)."""
        device = torch.device(device)
        if self.bank_device == self.device:
            self.bank_device = device
            for b in self.banks.values():
                b.to(device)
        self.device = device
        self.heads.to(device)
        if self.snapshot is not None:
            self.snapshot.to(device)
        return self

    def loss(self, x: torch.Tensor, f: torch.Tensor, y: Any, idx: Any) -> torch.Tensor:
        """The CTC term for one training batch (add it to the cross-entropy), in nats.

        Updates the memory banks from this batch, so call it once per training step only. The
        update is applied at the start of the next call (the backward pass of this step still
        reads the banks); with gradient accumulation, call ``backward()`` on each micro-batch's
        loss before the next ``loss()`` call, or autograd reports the bank as modified in place.

        Args:
            x: the batch input (used in stage 2 for the snapshot's feature).
            f: (B, feature_dim) the current model's feature of ``x`` (carries the gradient).
            y: (B,) labels in [0, num_classes). idx: (B,) sample indices in [0, num_samples).
        Returns:
            0-d tensor: ``alpha * L_instance`` in stage 1, ``beta * L_contrast`` in stage 2.
        """
        f, y, idx = self._check_batch(f, y, idx)
        self.flush()
        self.sampler.record(idx, y)
        if self.stage == 1:
            if self.alpha == 0:
                return f.new_zeros(())
            z = F.normalize(self.heads["instance"](f), dim=1)
            bank = self.banks["instance"]
            out = self.alpha * instance_discrimination_loss(z, bank.weight, idx, self.tau_instance)
            self._finite(out)
            self._pending.append((bank, idx, z.detach()))
            return out
        if self.beta == 0:
            return f.new_zeros(())
        if not self.refilled and not self._warned_refill:
            self._warned_refill = True
            warnings.warn("stage-2 memory banks were not refilled from the snapshot: call "
                          "ctc.refill(loader) or pass the loader to end_epoch at the switch; "
                          "banks start from random rows", RuntimeWarning, stacklevel=2)
        with torch.no_grad():
            fs = self._features(self.snapshot, x, "snapshot")
        v1 = F.normalize(self.heads["current"](f), dim=1)
        v2 = F.normalize(self.heads["snapshot"](fs), dim=1)
        neg, mask = self.sampler.sample(y, self.generator)
        self.last_negatives = (neg, mask)
        dense = bool(mask.all())
        m = None if dense else mask.to(self.device)
        cur, snap = self.banks["current"], self.banks["snapshot"]
        # anchor v1 against the snapshot bank, anchor v2 against the current bank
        s1 = self._scores(v1, snap, idx, neg)
        s2 = self._scores(v2, cur, idx, neg)
        if self.contrast == "infonce":
            l1 = info_nce_from_scores(s1, self.tau_contrast, m)
            l2 = info_nce_from_scores(s2, self.tau_contrast, m)
        else:
            if math.isnan(float(self.normalisers[0])):
                self.normalisers[0] = float(nce_normaliser(s1, self.tau_contrast, self.num_samples, m))
                self.normalisers[1] = float(nce_normaliser(s2, self.tau_contrast, self.num_samples, m))
            z1, z2 = (float(self.normalisers[0]), float(self.normalisers[1]))
            l1 = binary_nce_from_scores(s1, self.tau_contrast, self.num_samples, z1, m)
            l2 = binary_nce_from_scores(s2, self.tau_contrast, self.num_samples, z2, m)
        out = self.beta * (l1 + l2)
        self._finite(out)
        self._pending += [(cur, idx, v1.detach()), (snap, idx, v2.detach())]
        return out

    def flush(self) -> None:
        """Applies the memory-bank updates of the last :meth:`loss` call. They are deferred
        because that step's backward pass still reads the banks; every method that reads or
        replaces the banks calls this first."""
        for bank, idx, z in self._pending:
            bank.update(idx, z)
        self._pending = []

    def end_epoch(self, epoch: int, loader: Optional[Iterable] = None) -> None:
        """Call after each training epoch (1-based). At ``switch_epoch`` it takes the frozen
        snapshot and enters stage 2; with ``loader`` (yielding ``(x, y, idx)``) it also refills
        the stage-2 banks from the snapshot (:meth:`refill`)."""
        if self.total_epochs is not None and epoch > self.total_epochs:
            raise ValueError(f"end_epoch({epoch}) is past total_epochs={self.total_epochs}")
        self.flush()
        self.epoch = int(epoch)
        if self.stage == 1 and self.switch_epoch is not None and epoch >= self.switch_epoch:
            self._switch()
            if loader is not None:
                self.refill(loader)

    @torch.no_grad()
    def refill(self, loader: Iterable) -> None:
        """Rewrites both stage-2 banks from the snapshot's features of every batch of ``loader``
        (``(x, y, idx)`` tuples): row i <- normalise(head(snapshot feature of sample i)), with
        the current head for the current bank and the snapshot head for the snapshot bank (at
        the switch the current model equals the snapshot). Records the labels seen."""
        if self.stage != 2:
            raise ValueError("refill() needs the snapshot: call it after end_epoch(switch_epoch)")
        self.flush()
        if not self.banks:  # beta == 0: stage 2 adds nothing, there is nothing to fill
            return
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) < 3:
                raise ValueError("refill(loader): each batch must be (x, y, idx), got "
                                 f"{type(batch).__name__}")
            x, y, idx = batch[0], batch[1], batch[2]
            x = x.to(self.device) if torch.is_tensor(x) else x
            fs = self._features(self.snapshot, x, "snapshot")
            _, y, idx = self._check_batch(fs, y, idx)
            self.sampler.record(idx, y)
            self.banks["current"].fill(idx, self.heads["current"](fs))
            self.banks["snapshot"].fill(idx, self.heads["snapshot"](fs))
        self.refilled = True

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume exactly (copies; safe with ``torch.save`` and
        ``torch.load(weights_only=True)``)."""
        self.flush()
        return {
            "format": FORMAT,
            "config": {k: getattr(self, k) for k in _CONFIG_KEYS},
            "stage": self.stage,
            "epoch": self.epoch,
            "refilled": self.refilled,
            "warned": [self.sampler.warned, self._warned_refill],
            "heads": {k: v.detach().clone() for k, v in self.heads.state_dict().items()},
            "banks": {k: b.weight.detach().clone() for k, b in self.banks.items()},
            "labels": self.sampler.labels.clone(),
            "normalisers": self.normalisers.clone(),
            "snapshot": (None if self.snapshot is None else
                         {k: v.detach().clone() for k, v in self.snapshot.state_dict().items()}),
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores :meth:`state_dict`'s output; a state from another configuration -> ValueError."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"not a CTC state (expected format {FORMAT!r})")
        cfg = state["config"]
        for k in _CONFIG_KEYS:
            if cfg.get(k) != getattr(self, k):
                raise ValueError(f"CTC state has {k}={cfg.get(k)!r} but this object has "
                                 f"{k}={getattr(self, k)!r}")
        self.heads.load_state_dict(state["heads"])
        self._pending = []
        self.banks = {}
        for k, w in state["banks"].items():
            if tuple(w.shape) != (self.num_samples, self.proj_dim):
                raise ValueError(f"CTC state bank {k!r} has shape {tuple(w.shape)}, expected "
                                 f"{(self.num_samples, self.proj_dim)}")
            b = MemoryBank.__new__(MemoryBank)
            b.momentum, b.weight = self.momentum, w.detach().clone().to(self.bank_device)
            self.banks[k] = b
        self.sampler = NegativeSampler(state["labels"], self.num_negatives)
        self.sampler.warned, self._warned_refill = bool(state["warned"][0]), bool(state["warned"][1])
        self.stage, self.epoch = int(state["stage"]), int(state["epoch"])
        self.refilled = bool(state["refilled"])
        self.normalisers = state["normalisers"].clone()
        self.snapshot = None
        if state["snapshot"] is not None:
            self.snapshot = self._frozen_copy()
            self.snapshot.load_state_dict(state["snapshot"])
        self.generator.set_state(state["rng"])

    # ------------------------------------------------------------------------------------------
    # internals

    def _new_bank(self) -> MemoryBank:
        return MemoryBank(self.num_samples, self.proj_dim, self.momentum, self.bank_device,
                          generator=self.generator)

    def _frozen_copy(self) -> nn.Module:
        snap = copy.deepcopy(self.model)
        snap.eval()
        snap.requires_grad_(False)
        return snap

    def _switch(self) -> None:
        self.snapshot = self._frozen_copy()
        self.stage = 2
        self.banks.pop("instance", None)  # stage 1 is over: free its bank
        if self.beta > 0:
            self.banks["current"] = self._new_bank()
            self.banks["snapshot"] = self._new_bank()

    def _scores(self, anchor: torch.Tensor, bank: MemoryBank, idx: torch.Tensor,
                neg: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K') dot products of ``anchor`` with bank rows ``idx`` (positives) and ``neg``.

        When the bank sits on the anchor's device and N <= K' * proj_dim, one (B, N) product
        with the whole bank followed by a gather reads less memory than gathering the B x K'
        negative rows (B x K' x proj_dim floats); otherwise only the needed rows are gathered
        (and moved to the anchor's device, for a bank kept on the CPU).
        """
        path = self._score_path
        if path == "auto":
            small = self.num_samples <= neg.shape[1] * self.proj_dim
            path = "gemm" if bank.device == anchor.device and small else "gather"
        if path == "gemm":
            allsc = anchor @ bank.weight.to(anchor.device).t()
            cols = torch.cat([idx.reshape(-1, 1), neg], dim=1).to(anchor.device)
            return allsc.gather(1, cols)
        pos = (anchor * bank.rows(idx, anchor.device)).sum(dim=1, keepdim=True)
        negs = torch.bmm(bank.rows(neg, anchor.device), anchor.unsqueeze(2)).squeeze(2)
        return torch.cat([pos, negs], dim=1)

    def _features(self, model: nn.Module, x, which: str) -> torch.Tensor:
        if model.training:  # someone switched the snapshot to train mode: keep it frozen
            model.eval()
        f = self.feature_fn(model, x)
        if not torch.is_tensor(f) or f.dim() != 2 or f.shape[1] != self.feature_dim:
            shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
            raise ValueError(f"feature_fn on the {which} model returned {shape}; expected "
                             f"(batch, {self.feature_dim})")
        return f

    def _check_labels(self, y: torch.Tensor, name: str) -> None:
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            bad = y[(y < 0) | (y >= self.num_classes)][0]
            raise ValueError(f"{name} has value {int(bad)} outside [0, num_classes={self.num_classes})")

    def _check_batch(self, f, y, idx):
        if not torch.is_tensor(f) or f.dim() != 2:
            shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
            raise ValueError(f"feature f must be a 2-D tensor (batch, feature_dim), got {shape}; "
                             f"pool or flatten the penultimate feature first")
        if f.shape[1] != self.feature_dim:
            raise ValueError(f"feature dimension mismatch: f has shape {tuple(f.shape)} but the CTC "
                             f"heads expect feature_dim={self.feature_dim}")
        B = f.shape[0]
        y = _as_index(y, "y", "cpu").reshape(-1)
        idx = _as_index(idx, "idx", "cpu").reshape(-1)
        if y.numel() != B or idx.numel() != B:
            raise ValueError(f"batch size mismatch: f has {B} rows, y has {y.numel()}, idx has "
                             f"{idx.numel()}")
        if B and (int(idx.min()) < 0 or int(idx.max()) >= self.num_samples):
            bad = idx[(idx < 0) | (idx >= self.num_samples)][0]
            raise ValueError(f"sample index {int(bad)} in idx is out of range "
                             f"[0, num_samples={self.num_samples})")
        self._check_labels(y, "y")
        return f, y, idx

    def _finite(self, loss: torch.Tensor) -> None:
        if self.check_finite and not bool(torch.isfinite(loss)):
            raise FloatingPointError(f"CTC stage-{self.stage} loss is {float(loss.detach())} at epoch "
                                     f"{self.epoch + 1}; lower the learning rate or raise the "
                                     f"temperature")

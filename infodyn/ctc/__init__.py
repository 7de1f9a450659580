"""Contrastive Temporal Coding (Cui, Zhao et al., ECCV 2022) as a training hook.

    >>> from infodyn.ctc import CTC, CTCSchedule
    >>> # ctc = CTC(model, feature_fn, num_samples=N, num_classes=C, switch_epoch=20)

:class:`CTC` (core.py) is the object a training loop calls; ``banks`` holds the memory banks and
the other-class negative sampler, ``losses`` the loss functions, ``schedule`` the reference
schedule helper, ``lightning`` an optional PyTorch Lightning callback (needs ``lightning``),
``experiment`` the plain-CE-versus-CTC reproduction behind ``benchmarks/ctc_tradeoff.py``.
"""
from .banks import MemoryBank, NegativeSampler
from .core import CTC
from .losses import (binary_nce_from_scores, binary_nce_loss, info_nce_from_scores, info_nce_loss,
                     instance_discrimination_loss, nce_normaliser)
from .schedule import CTCSchedule, factors

__all__ = ["CTC", "CTCSchedule", "MemoryBank", "NegativeSampler", "binary_nce_from_scores",
           "binary_nce_loss", "factors", "info_nce_from_scores", "info_nce_loss",
           "instance_discrimination_loss", "nce_normaliser"]

"""The CTC losses as plain functions of tensors (all values in nats, means over the batch).

Embeddings are L2-normalised rows; ``tau`` is the softmax temperature.

* :func:`instance_discrimination_loss` (stage 1): a non-parametric softmax over the whole memory
  bank (Wu et al. 2018); the target of sample i is its own row i, i.e. InfoNCE with the
  sample's past self as the positive and every other bank row as a negative.
* :func:`info_nce_loss` (stage 2, default): softmax InfoNCE over one positive and K negatives.
* :func:`binary_nce_loss` (stage 2, the reference code's form): the NCE loss of contrastive
  representation distillation (Tian et al. 2020), each score turned into a probability of
  "came from the data" against a uniform noise distribution P_n = 1 / N.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

NCE_EPS = 1e-7


def instance_discrimination_loss(z: torch.Tensor, memory: torch.Tensor, idx: torch.Tensor,
                                 tau: float) -> torch.Tensor:
    """Mean over i of ``-log softmax_j(z_i . M_j / tau)[idx_i]``.

    Args:
        z: (B, d) normalised embeddings of the batch (carries the gradient).
        memory: (N, d) bank rows (no gradient); the product is computed on its device, so a bank
            kept on the CPU is not copied to the GPU.
        idx: (B,) int64 sample indices, each the row of that sample's own entry.
        tau: temperature (> 0).
    Returns:
        scalar tensor on ``z``'s device.
    """
    logits = z.to(memory.device) @ memory.t() / tau
    return F.cross_entropy(logits, idx.to(memory.device)).to(z.device)


def _scores(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """(B, 1 + K) dot products: column 0 with the positive, the rest with the negatives."""
    pos = (anchor * positive).sum(dim=1, keepdim=True)
    neg = torch.bmm(negatives, anchor.unsqueeze(2)).squeeze(2)
    return torch.cat([pos, neg], dim=1)


def info_nce_loss(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                  tau: float, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over i of ``-log [e^{a_i.p_i/tau} / (e^{a_i.p_i/tau} + sum_k e^{a_i.n_ik/tau})]``.

    Args:
        anchor, positive: (B, d). negatives: (B, K, d). tau: temperature.
        mask: optional (B, K) bool, False for padding negatives (left out of the sum).
    """
    return info_nce_from_scores(_scores(anchor, positive, negatives), tau, mask)


def info_nce_from_scores(scores: torch.Tensor, tau: float,
                         mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`info_nce_loss` from the dot products ``scores`` (B, 1 + K), column 0 the positive."""
    logits = scores / tau
    if mask is not None:
        logits = logits.masked_fill(~_with_positive(mask), float("-inf"))
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def _with_positive(mask: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)


def nce_normaliser(scores: torch.Tensor, tau: float, num_samples: int,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The reference code's constant Z = mean(e^{s/tau}) * N over the dot products ``scores``
    (B, 1 + K) of the first batch (the positive and the real negatives), then kept fixed.
    Returns a 0-d tensor."""
    with torch.no_grad():
        e = torch.exp(scores / tau)
        if mask is None:
            return e.mean() * num_samples
        return e[_with_positive(mask)].mean() * num_samples


def binary_nce_loss(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                    tau: float, num_samples: int, normaliser,
                    mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Binary NCE of contrastive representation distillation.

    With ``P = e^{s/tau} / Z`` (Z from :func:`nce_normaliser`), ``P_n = 1 / N`` and K_i real
    negatives for anchor i:

        loss = -(1/B) sum_i [ log(P_i0 / (P_i0 + K_i P_n + eps))
                              + sum_k log(K_i P_n / (P_ik + K_i P_n + eps)) ]
    """
    return binary_nce_from_scores(_scores(anchor, positive, negatives), tau, num_samples,
                                  normaliser, mask)


def binary_nce_from_scores(scores: torch.Tensor, tau: float, num_samples: int, normaliser,
                           mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`binary_nce_loss` from the dot products ``scores`` (B, 1 + K), column 0 the positive."""
    p = torch.exp(scores / tau) / normaliser
    B, K = scores.shape[0], scores.shape[1] - 1
    if mask is None:
        k = torch.full((B, 1), float(K), device=p.device, dtype=p.dtype)
    else:
        k = mask.sum(dim=1, keepdim=True).to(p.dtype)
    noise = k / num_samples
    log_d1 = torch.log(p[:, 0:1] / (p[:, 0:1] + noise + NCE_EPS))
    log_d0 = torch.log(noise / (p[:, 1:] + noise + NCE_EPS))
    if mask is not None:
        log_d0 = log_d0.masked_fill(~mask, 0.0)
    return -(log_d1.sum() + log_d0.sum()) / B

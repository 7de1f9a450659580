"""Variational lower bounds on mutual information as plain functions of a critic score matrix.

Every function takes ``scores``, a (B, B) tensor with ``scores[i, j] = f(x_i, y_j)``: the
diagonal holds the B samples of the joint p(x, y), the off-diagonal entries stand in for
samples of the product of marginals p(x)p(y). Every value is in nats and is a scalar tensor
that keeps its autograd graph, so the same function serves for training and for evaluation.

References: Poole, Ozair, van den Oord, Alemi, Tucker, "On variational bounds of mutual
information" (ICML 2019); Belghazi et al., "MINE" (ICML 2018); Song and Ermon, "Understanding
the limitations of variational mutual information estimators" (ICLR 2020).

Honest limits (they are properties of the bounds, not of this code):

* InfoNCE can never exceed log(B): with B samples in a batch it saturates at log B nats however
  large the true MI is.
* NWJ, TUBA and DV/MINE are not capped, but their variance grows roughly like exp(I) with the
  true MI I (McAllester and Stratos 2020), so above a few nats single-batch values are noisy.
* SMILE trades this variance for a bias controlled by the clip tau: smaller tau, lower variance,
  more bias (downwards at large MI).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "logmeanexp_nodiag", "infonce", "nwj", "dv", "tuba", "js_fgan", "js", "smile", "interpolated",
    "mine_objective",
]


def _check(scores: torch.Tensor) -> int:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1] or scores.shape[0] < 2:
        raise ValueError(f"scores must be a square (B, B) matrix with B >= 2, got shape {tuple(scores.shape)}")
    return scores.shape[0]


def _offdiag_mask(b: int, device) -> torch.Tensor:
    return ~torch.eye(b, dtype=torch.bool, device=device)


def logmeanexp_nodiag(scores: torch.Tensor) -> torch.Tensor:
    """log of the mean of exp(scores[i, j]) over the B(B-1) off-diagonal entries (i != j)."""
    b = _check(scores)
    off = scores.masked_fill(~_offdiag_mask(b, scores.device), float("-inf"))
    return torch.logsumexp(off.reshape(-1), dim=0) - math.log(b * (b - 1))


def infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE (van den Oord et al. 2018): log B + mean_i [f_ii - logsumexp_j f_ij], in nats.

    Never exceeds log B (each term f_ii - logsumexp_j f_ij is <= 0).
    """
    b = _check(scores)
    return math.log(b) + (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean()


def tuba(scores: torch.Tensor, log_baseline: Optional[torch.Tensor] = None) -> torch.Tensor:
    """TUBA (Poole et al. eq. 5): 1 + E_p[f - log a(y)] - E_{p(x)p(y)}[exp(f - log a(y))], in nats.

    Args:
        scores: (B, B) critic scores, ``scores[i, j] = f(x_i, y_j)``.
        log_baseline: (B,) values of log a(y_j) for the batch's y, or None for a(y) = 1.
    """
    b = _check(scores)
    if log_baseline is not None:
        if log_baseline.shape != (b,):
            raise ValueError(f"log_baseline must have shape ({b},), got {tuple(log_baseline.shape)}")
        scores = scores - log_baseline[None, :]
    return 1.0 + scores.diagonal().mean() - torch.exp(logmeanexp_nodiag(scores))


def nwj(scores: torch.Tensor) -> torch.Tensor:
    """NWJ / f-GAN KL (Nguyen, Wainwright, Jordan 2010): E_p[f] - e^-1 E_{p(x)p(y)}[e^f], in nats.

    TUBA with the constant baseline a(y) = e; the optimal critic is 1 + log p(x,y)/(p(x)p(y)).
    """
    return tuba(scores - 1.0)


def dv(scores: torch.Tensor) -> torch.Tensor:
    """Donsker-Varadhan (the value MINE reports): E_p[f] - log E_{p(x)p(y)}[e^f], in nats."""
    return scores.diagonal().mean() - logmeanexp_nodiag(scores)


def mine_objective(
    scores: torch.Tensor, log_ema: Optional[torch.Tensor], ema_rate: float = 0.01
) -> Tuple[torch.Tensor, torch.Tensor]:
    """MINE's training surrogate with the moving-average correction of the gradient bias.

    The DV gradient contains grad E_q[e^f] / E_q[e^f]; estimated on one minibatch the denominator
    makes it biased. MINE (Belghazi et al. 2018, sec. 3.2) replaces the denominator by an
    exponential moving average over minibatches. The surrogate returned here has the DV value
    and exactly that corrected gradient: E_p[f] - exp(lme - stopgrad(log_ema)) (+ a constant),
    whose gradient is grad E_p[f] - grad E_q[e^f] / ema.

    Args:
        scores: (B, B) critic scores.
        log_ema: scalar tensor, log of the running average of E_q[e^f]; None on the first step.
        ema_rate: weight of the new minibatch in the average (Belghazi et al. use 0.01).

    Returns:
        (surrogate to maximise, updated log_ema detached).
    """
    lme = logmeanexp_nodiag(scores)
    cur = lme.detach()
    if log_ema is None:
        new = cur
    else:
        new = torch.logaddexp(log_ema + math.log1p(-ema_rate), cur + math.log(ema_rate))
    ratio = torch.exp(lme - new)  # E_q[e^f] / ema; its gradient is grad E_q[e^f] / ema
    surrogate = scores.diagonal().mean() - ratio + (ratio - lme).detach()  # value = DV
    return surrogate, new


def js_fgan(scores: torch.Tensor) -> torch.Tensor:
    """f-GAN lower bound on the Jensen-Shannon divergence (Nowozin et al. 2016).

    E_p[-softplus(-f)] - E_{p(x)p(y)}[softplus(f)]: logistic regression of joint against
    product samples; maximised by f = log p(x,y)/(p(x)p(y)). A training objective, not an MI value.
    """
    b = _check(scores)
    diag = scores.diagonal()
    pos = -F.softplus(-diag).mean()
    neg = (F.softplus(scores).sum() - F.softplus(diag).sum()) / (b * (b - 1))
    return pos - neg


def _value_with_grad_of(value: torch.Tensor, objective: torch.Tensor) -> torch.Tensor:
    return objective + (value - objective).detach()


def js(scores: torch.Tensor) -> torch.Tensor:
    """MI from a critic trained with the JS objective: NWJ evaluated on f + 1, in nats.

    The JS optimum is f = log density ratio, the NWJ optimum is 1 + log density ratio, hence
    the shift (Poole et al. sec. 2.4). The returned tensor has this value but the gradient of
    :func:`js_fgan`, so maximising it trains with the JS objective.
    """
    return _value_with_grad_of(nwj(scores + 1.0), js_fgan(scores))


def smile(scores: torch.Tensor, clip: Optional[float] = 5.0) -> torch.Tensor:
    """SMILE (Song and Ermon 2020): DV with exp(f) clipped to [e^-tau, e^tau] in the partition term.

    Value E_p[f] - log E_q[exp(clip(f, -tau, tau))] in nats, with the gradient of :func:`js_fgan`
    (the critic is trained with the JS objective). ``clip=None`` gives unclipped DV.
    """
    clipped = scores if clip is None else scores.clamp(-clip, clip)
    value = scores.diagonal().mean() - logmeanexp_nodiag(clipped)
    return _value_with_grad_of(value, js_fgan(scores))


def _log_loo_mean(s: torch.Tensor) -> torch.Tensor:
    """out[i, j] = log mean_{k != j} exp(s[i, k]) (row-wise leave-one-out), numerically stable."""
    b = s.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=s.device)
    # logsumexp over row i without column j: mask one column per j; (B, B, B) is avoided by
    # log(sum - exp(s_ij)) computed relative to the row max, with a masked fallback where the
    # subtraction loses precision (s_ij dominating the row).
    m = s.max(dim=1, keepdim=True).values
    e = torch.exp(s - m)
    tot = e.sum(dim=1, keepdim=True)
    rest = tot - e
    bad = rest <= tot * 1e-6
    if bool(bad.any()):
        # exact: for the offending rows recompute with the column masked out
        rows = bad.any(dim=1).nonzero().flatten()
        sub = s[rows][:, None, :].expand(-1, b, -1)
        mask = eye[None].expand(rows.numel(), -1, -1)
        exact = torch.logsumexp(sub.masked_fill(mask, float("-inf")), dim=2)
        out = torch.log(rest.clamp_min(torch.finfo(s.dtype).tiny)) + m
        out = out.index_put((rows,), exact)
    else:
        out = torch.log(rest) + m
    return out - math.log(b - 1)


def interpolated(scores: torch.Tensor, log_baseline: torch.Tensor, alpha: float = 0.01) -> torch.Tensor:
    """The interpolated bound I_alpha of Poole et al. (2019, eq. 11), in nats.

    The baseline in TUBA becomes alpha * m(y; x_1..x_K) + (1 - alpha) * a(y), with m the
    InfoNCE-style mean of exp(f(x_k, y)) over K = B - 1 other x's (leave-one-out, as in the
    paper's code). alpha = 1 approaches InfoNCE with B - 1 negatives (capped near log B),
    alpha = 0 is TUBA; in between the bound trades InfoNCE's low variance for TUBA's lack of cap.

    Args:
        scores: (B, B), ``scores[i, j] = f(x_i, y_j)``.
        log_baseline: (B,) values log a(y_j).
        alpha: mixture weight in [0, 1].
    """
    b = _check(scores)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if log_baseline.shape != (b,):
        raise ValueError(f"log_baseline must have shape ({b},), got {tuple(log_baseline.shape)}")
    s = scores.t()  # rows index y, as in the paper's code: s[i, j] = f(x_j, y_i)
    nce = _log_loo_mean(s)  # nce[i, j] = log mean_{k != j} exp f(x_k, y_i)
    log_a = torch.tensor(math.log(alpha) if alpha > 0 else float("-inf"), dtype=s.dtype, device=s.device)
    log_1a = torch.tensor(math.log1p(-alpha) if alpha < 1 else float("-inf"), dtype=s.dtype, device=s.device)
    base = torch.logaddexp(log_a + nce, log_1a + log_baseline[:, None].expand(b, b))
    # marginal term: y_i against x_j (j != i) with the baseline that leaves out x_i
    marg = torch.exp(logmeanexp_nodiag(s - base.diagonal()[:, None]))
    # joint term: y_i against its own x_i with baselines leaving out each other x_j (j != i)
    joint = s.diagonal()[:, None] - base
    off = _offdiag_mask(b, s.device)
    joint_term = joint[off].mean()
    return 1.0 + joint_term - marg

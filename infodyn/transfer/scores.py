"""Closed-form transferability and representation scores of frozen features.

Every function takes numpy arrays or torch tensors, computes in float64 with torch on
``device`` ("auto": CUDA when present, else CPU), returns a Python float, and carries a
``higher_is_better`` attribute. None involves randomness.

| score      | source                                                   | higher is better |
|------------|----------------------------------------------------------|------------------|
| logme      | You et al., JMLR 2022 (fixed-point version)              | yes              |
| hscore     | Bao et al., ICIP 2019                                    | yes              |
| leep       | Nguyen et al., ICML 2020                                 | yes (<= 0)       |
| nce        | Tran et al., ICCV 2019                                   | yes (<= 0)       |
| rankme     | Garrido et al., ICML 2023                                | yes              |
| nc1        | Papyan, Han and Donoho, PNAS 2020                        | no (collapse: 0) |
| linear_cka | Kornblith et al., ICML 2019                              | similarity       |
| head_accuracy | accuracy of a model's own classifier head             | yes              |
"""
from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

from ._checks import (
    as_features, as_label_array, as_probabilities, check_rows, encode_labels, resolve_device,
)

_EPS64 = float(np.finfo(np.float64).eps)


def _higher(flag: bool):
    def deco(fn):
        fn.higher_is_better = flag
        return fn
    return deco


def _features_labels(features, labels, device, fname="features", lname="labels"):
    dev = resolve_device(device)
    f = as_features(features, fname, dev)
    codes, classes = encode_labels(labels, lname, n_rows=f.shape[0], x_name=fname, x_shape=tuple(f.shape))
    return f, torch.from_numpy(codes).to(dev), classes.shape[0]


def _class_means(f: torch.Tensor, y: torch.Tensor, c: int):
    counts = torch.bincount(y, minlength=c).to(f.dtype)
    sums = torch.zeros(c, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, y, f)
    return sums / counts[:, None], counts


def _unit_scale(f: torch.Tensor) -> torch.Tensor:
    """``f`` divided by its largest absolute entry (unchanged when all zero).

    For scores that do not change when the features are scaled (LogME, H-score, NC1): features of
    scale 1e300 would overflow and 1e-300 underflow once squared (both gave NaN before)."""
    scale = f.abs().max()
    return f / scale if bool(scale > 0) else f


# ----------------------------------------------------------------------------------------------
# LogME


@_higher(True)
def logme(features: Any, labels: Any, *, tol: float = 1e-8, max_iter: int = 1000,
          eps: float = 0.0, device: Any = "auto") -> float:
    """LogME: the average (per sample and class) maximum log evidence of a Bayesian linear model.

    For each class c, the one-vs-rest target y_c in {0, 1}^n is modelled as
    y_c = F w + noise, w ~ N(0, alpha^-1 I), noise ~ N(0, beta^-1 I), with F the (n, d) features.
    The log evidence is

        L(alpha, beta) = d/2 log alpha + n/2 log beta - n/2 log 2pi - 1/2 log|A|
                         - beta/2 ||y_c - F m||^2 - alpha/2 ||m||^2,
        A = alpha I + beta F^T F,  m = beta A^-1 F^T y_c,

    maximised over (alpha, beta) by the fixed-point iteration of You, Liu, Wang, Jordan and
    Long, "Ranking and Tuning Pre-trained Models: A New Paradigm for Exploiting Model Hubs"
    (JMLR 23, 2022; the arXiv 2110.10545 version that replaced the ICML 2021 iteration):
    with sigma_i the eigenvalues of F^T F and t = alpha / beta,
    gamma = sum sigma_i / (sigma_i + t), alpha <- gamma / ||m||^2, beta <- (n - gamma) / ||y - F m||^2.
    LogME = mean over classes of max L / n (nats per sample). Higher is better.

    Differences from the reference code (thuml/LogME): the iteration runs to a relative change
    of t below ``tol`` (reference: 1e-3, at most 11 steps) and the evidence is evaluated at the
    final (alpha, beta); and log|A| keeps the d - rank(F) zero eigenvalues of F^T F (the
    reference drops them, which adds (d - rank)/(2n) log alpha whenever rank(F) < d, e.g. n < d).
    Both agree on features of full column rank. The reference adds 1e-5 to the denominators of
    the updates, which moves (alpha, beta) off the maximum (by about 1e-4 nats per sample on
    small problems); here ``eps`` defaults to 0, so the value is the maximum evidence itself
    (pass ``eps=1e-5`` to reproduce the reference).

    Args:
        features: (n, d) features. labels: (n,) class labels (at least 2 classes).
        tol, max_iter: stopping rule of the fixed-point iteration.
        eps: added to the denominators of the alpha and beta updates (reference: 1e-5).
        device: "auto", "cpu", "cuda" or a torch.device.

    Returns:
        LogME in nats per sample (float).
    """
    f, y, c = _features_labels(features, labels, device)
    n, d = f.shape
    # The maximum evidence does not change when F is scaled (alpha absorbs the scale); scaling
    # to unit max keeps sigma and the updates away from float under/overflow (1e-150 features gave NaN).
    f = _unit_scale(f)
    onehot = torch.nn.functional.one_hot(y, c).to(f.dtype)  # (n, C)
    if n > d:  # eigen-decompose the (d, d) Gram matrix instead of the (n, d) matrix
        sigma, v = torch.linalg.eigh(f.T @ f)
        keep = sigma > sigma.max().clamp_min(0) * 1e-10
        sigma, v = sigma[keep], v[:, keep]
        # x = U^T y with U = F V diag(sigma^-1/2); no (n, rank) matrix is formed
        x = (v.T @ (f.T @ onehot)) / sigma.sqrt()[:, None]
    else:
        u, s, _ = torch.linalg.svd(f, full_matrices=False)
        keep = s > s.max() * max(n, d) * _EPS64
        u, s = u[:, keep], s[keep]
        sigma = s * s
        x = u.T @ onehot
    r = sigma.shape[0]
    x2 = x * x  # (r, C)
    res_x2 = (onehot.sum(0) - x2.sum(0)).clamp_min(0)  # part of ||y||^2 outside the column space
    sig = sigma[:, None]

    def terms(t):
        m2 = (sig * x2 / (t + sig) ** 2).sum(0)
        res2 = (x2 / (1 + sig / t) ** 2).sum(0) + res_x2
        return m2, res2

    tiny = 1e-200  # keeps a class whose target is orthogonal to the features finite
    alpha = torch.ones(c, dtype=f.dtype, device=f.device)
    beta = torch.ones_like(alpha)
    for _ in range(max_iter):
        t = alpha / beta
        gamma = (sig / (sig + t)).sum(0)
        m2, res2 = terms(t)
        alpha = gamma / (m2 + eps).clamp_min(tiny)
        beta = (n - gamma) / (res2 + eps).clamp_min(tiny)
        if bool(((alpha / beta - t).abs() / t <= tol).all()):
            break
    m2, res2 = terms(alpha / beta)
    # all-zero features (rank 0): no alpha terms (0 * log 0 would be NaN); the noise model alone
    evidence = ((r / 2.0 * torch.log(alpha) if r else 0.0) + n / 2.0 * torch.log(beta)
                - 0.5 * torch.log(alpha + beta * sig).sum(0)
                - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * math.log(2 * math.pi)) / n
    if not bool(torch.isfinite(evidence).all()):
        why = (f"the features span all {n} samples (rank {r}), so the one-hot targets are fit with zero noise; "
               "use more samples than feature dimensions" if r >= n else "the evidence iteration diverged")
        raise ValueError(f"LogME is not finite for features of shape {(n, d)} and {c} classes: {why}")
    return float(evidence.mean())


# ----------------------------------------------------------------------------------------------
# H-score


@contextlib.contextmanager
def _linalg_guard(name: str, shape):
    """A context turning torch's LinAlgError into a ValueError that names the score and shape."""
    try:
        yield
    except torch.linalg.LinAlgError as exc:
        raise ValueError(f"{name}: the linear algebra on features of shape {tuple(shape)} did not "
                         f"converge ({str(exc).splitlines()[0][:200]}); the features are too "
                         "ill-conditioned (near-duplicate or near-constant columns)") from None


@_higher(True)
def hscore(features: Any, labels: Any, *, device: Any = "auto") -> float:
    """H-score: tr(cov(f)^+ cov(E[f | y])).

    Bao, Li, Huang, Huang, Zheng, Xu and Li, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning" (ICIP 2019). cov(f) is the (d, d) covariance of
    the features, cov(E[f|y]) that of each sample's class mean; ^+ is the pseudo-inverse.
    Dimensionless, in [0, min(d, C - 1)]; reaches C - 1 when every class collapses to its mean.
    Higher is better.

    Computation (no (d, d) matrix when d >= n): with the centred features F = U S V^T (rank r,
    singular values below max(n, d) * eps * s_max dropped), cov(f)^+ = n V S^-2 V^T and the class
    means are averages of rows of F, so H = sum_c ||sum_{i in c} u_i||^2 / n_c with u_i the rows
    of U: the squared projection of the class indicators onto the column space of F. For n > d the
    (d, d) Gram matrix F^T F is eigen-decomposed instead (eigenvalues below d * 10 eps of the
    largest dropped, the precision a squared matrix allows). Memory O(n d + min(n, d)^2); the
    value does not depend on the features' scale.

    Singular cases have a well-defined value: constant features give 0; when the centred features
    span every direction of the n samples (generically when d >= n - 1) the projection is the
    identity and **every labelling scores C - 1**: the score then says nothing about the
    features, use more samples than dimensions.

    Args:
        features: (n, d). labels: (n,) class labels. device: as elsewhere.

    Raises:
        ValueError: bad input (shapes, NaN, one class), or the decomposition did not converge.
    """
    f, y, c = _features_labels(features, labels, device)
    n, d = f.shape
    fc = _unit_scale(f)
    fc = fc - fc.mean(0, keepdim=True)
    counts = torch.bincount(y, minlength=c).to(fc.dtype)
    with _linalg_guard("hscore", (n, d)):
        if n > d:
            w, v = torch.linalg.eigh(fc.T @ fc)
            keep = w > w.max().clamp_min(0) * d * _EPS64 * 10
            if not bool(keep.any()):
                return 0.0
            means, _ = _class_means(fc, y, c)  # (C, d)
            proj = means @ v[:, keep]  # (C, r)
            return float((counts[:, None] * proj * proj / w[keep]).sum())
        u, sv, _ = torch.linalg.svd(fc, full_matrices=False)  # u: (n, n), no (d, d) matrix
    keep = sv > sv.max() * max(n, d) * _EPS64
    if not bool(keep.any()):
        return 0.0
    sums = torch.zeros(c, int(keep.sum()), dtype=fc.dtype, device=fc.device).index_add_(0, y, u[:, keep])
    return float(((sums * sums).sum(1) / counts).sum())


# ----------------------------------------------------------------------------------------------
# LEEP and NCE


@_higher(True)
def leep(source_probs: Any, target_labels: Any, *, device: Any = "auto") -> float:
    """LEEP: log expected empirical prediction of a source model on target data.

    Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability
    of Learned Representations" (ICML 2020). With theta_i the source model's class
    probabilities (over source classes z) on target sample i and y_i its target label:
    P(y, z) = 1/n sum_i theta_iz [y_i = y], P(y | z) = P(y, z) / P(z), and

        LEEP = 1/n sum_i log sum_z P(y_i | z) theta_iz      (nats, <= 0).

    0 for a source model whose predictions are one-hot and map one-to-one onto the target
    classes. Higher is better.

    Args:
        source_probs: (n, Z) probabilities (rows non-negative, summing to 1; not logits).
        target_labels: (n,) target class labels.
    """
    dev = resolve_device(device)
    theta = as_probabilities(source_probs, "source_probs", dev)
    codes, classes = encode_labels(target_labels, "target_labels", n_rows=theta.shape[0],
                                   x_name="source_probs", x_shape=tuple(theta.shape))
    y = torch.from_numpy(codes).to(dev)
    n = theta.shape[0]
    joint = torch.zeros(classes.shape[0], theta.shape[1], dtype=theta.dtype, device=dev)
    joint.index_add_(0, y, theta)
    joint /= n  # P(y, z)
    pz = joint.sum(0, keepdim=True)
    cond = torch.where(pz > 0, joint / pz.clamp_min(1e-300), torch.zeros_like(joint))  # P(y | z)
    eep = (theta * cond[y]).sum(1)
    return float(torch.log(eep).mean())


@_higher(True)
def nce(source_predictions: Any, target_labels: Any) -> float:
    """NCE: negative conditional entropy -H(Y | Z) of target labels given source predictions.

    Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification
    Tasks" (ICCV 2019). Z is the source model's predicted class on each target sample: pass
    hard predictions (n,) or class probabilities / logits (n, Z), reduced by argmax. With the
    empirical joint P(y, z): NCE = sum_{y,z} P(y, z) log P(y | z) (nats, <= 0; 0 when Y is a
    function of Z). Higher is better.
    """
    if isinstance(source_predictions, torch.Tensor):
        source_predictions = source_predictions.detach().cpu().numpy()
    sp = np.asarray(source_predictions)
    if sp.ndim == 2 and sp.shape[1] > 1:
        pf = as_features(sp, "source_predictions", torch.device("cpu"))  # NaN and shape checks
        z = pf.argmax(1).numpy()
    else:
        z = as_label_array(sp, "source_predictions")
    yt = as_label_array(target_labels, "target_labels")
    check_rows(z.shape, yt.shape, "source_predictions", "target_labels")
    codes, classes = encode_labels(yt, "target_labels")
    _, zc = np.unique(z, return_inverse=True)
    joint = np.zeros((classes.shape[0], int(zc.max()) + 1))
    np.add.at(joint, (codes, zc.reshape(-1)), 1.0)
    joint /= joint.sum()
    pz = joint.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / pz), 0.0)
    return float(terms.sum())


# ----------------------------------------------------------------------------------------------
# representation geometry


@_higher(True)
def rankme(features: Any, *, device: Any = "auto") -> float:
    """RankMe: exp of the Shannon entropy of the normalised singular values.

    Garrido, Balestriero, Najman and LeCun, "RankMe: Assessing the Downstream Performance of
    Pretrained Self-Supervised Representations by Their Rank" (ICML 2023). With sigma_k the
    singular values of the raw (uncentred) (n, d) embedding matrix, p_k = sigma_k / sum sigma:
    RankMe = exp(-sum_k p_k log p_k), in [1, min(n, d)]; equals r for a rank-r matrix with equal
    non-zero singular values. Zero singular values contribute 0 (0 log 0 = 0; the paper adds
    1e-7 to p_k, a difference below 1e-5 here). Higher is better (a richer representation).
    """
    f = as_features(features, "features", resolve_device(device))
    s = torch.linalg.svdvals(f)
    total = s.sum()
    if not bool(total > 0):
        raise ValueError(f"features of shape {tuple(f.shape)} are all zero: RankMe is undefined")
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * torch.log(p)).sum()))


@_higher(False)
def nc1(features: Any, labels: Any, *, device: Any = "auto") -> float:
    """NC1: within-class variability relative to between-class spread, tr(S_W S_B^+) / C.

    Papyan, Han and Donoho, "Prevalence of neural collapse during the terminal phase of deep
    learning training" (PNAS 2020). With class means mu_c and global mean mu_G (of all n rows):
    S_W = 1/n sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T, S_B = 1/C sum_c (mu_c - mu_G)(mu_c - mu_G)^T,
    and ^+ the pseudo-inverse. Dimensionless, >= 0; 0 at full collapse (every sample at its class
    mean). Lower is better (more collapse); note that strong collapse on a source task can
    mean less transferable features. Computed in the at most (C - 1)-dimensional span of the
    centred class means, so no (d, d) matrix is formed. Scale-free: the features are divided
    by their largest absolute entry first (features of scale 1e300 or 1e-300 give the same value).
    """
    f, y, c = _features_labels(features, labels, device)
    n = f.shape[0]
    f = _unit_scale(f)  # NC1 is scale-free; squares of 1e300 or 1e-300 features gave NaN
    means, _ = _class_means(f, y, c)
    mb = means - f.mean(0, keepdim=True)  # (C, d)
    _, s, vh = torch.linalg.svd(mb, full_matrices=False)
    keep = s > s.max() * max(mb.shape) * _EPS64 * 10
    if not bool(keep.any()):
        raise ValueError(
            f"features of shape {tuple(f.shape)} have identical class means: between-class "
            f"covariance is zero and NC1 is undefined"
        )
    s, vh = s[keep], vh[keep]
    # S_B = V diag(s^2 / C) V^T, so tr(S_W S_B^+) = sum_j C / s_j^2 * v_j^T S_W v_j
    z = (f - means[y]) @ vh.T  # within-class deviations projected on the span, (n, r)
    within = (z * z).sum(0) / n
    return float((within * c / (s * s)).sum() / c)


@_higher(True)
def linear_cka(a: Any, b: Any, *, device: Any = "auto") -> float:
    """Linear CKA between two representations of the same n inputs.

    Kornblith, Norouzi, Lee and Hinton, "Similarity of Neural Network Representations
    Revisited" (ICML 2019). With column-centred A (n, da) and B (n, db):
    CKA = ||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F), in [0, 1]; 1 for identical representations,
    invariant to orthogonal transforms and isotropic scaling of either. Computed on feature
    Gram matrices when n exceeds the widths, else on (n, n) sample Gram matrices.
    """
    dev = resolve_device(device)
    x = as_features(a, "a", dev)
    z = as_features(b, "b", dev)
    check_rows(tuple(x.shape), tuple(z.shape), "a", "b")
    if x.shape[0] < 2:
        raise ValueError(f"linear_cka needs at least 2 rows; a has shape {tuple(x.shape)}")
    x = x - x.mean(0, keepdim=True)
    z = z - z.mean(0, keepdim=True)
    # CKA ignores isotropic scaling: unit max keeps the fourth powers below from over/underflowing
    # (features of magnitude 1e149 gave NaN, 1e-150 a false "constant" error)
    x = x / x.abs().max().clamp_min(torch.finfo(x.dtype).tiny)
    z = z / z.abs().max().clamp_min(torch.finfo(z.dtype).tiny)
    n = x.shape[0]
    if n >= max(x.shape[1], z.shape[1]):
        cross = torch.linalg.matrix_norm(z.T @ x) ** 2
        nx = torch.linalg.matrix_norm(x.T @ x)
        nz = torch.linalg.matrix_norm(z.T @ z)
    else:
        kx, kz = x @ x.T, z @ z.T
        cross = (kx * kz).sum()
        nx, nz = torch.linalg.matrix_norm(kx), torch.linalg.matrix_norm(kz)
    if not bool(nx > 0) or not bool(nz > 0):
        which = "a" if not bool(nx > 0) else "b"
        raise ValueError(
            f"{which} is constant across rows (shapes a {tuple(x.shape)}, b {tuple(z.shape)}): CKA is undefined"
        )
    return float(cross / (nx * nz))


@_higher(True)
def head_accuracy(logits_or_probs: Any, labels: Any, *, device: Any = "auto") -> float:
    """Accuracy of a model's own classifier head: mean of [argmax_j out_ij == label_i].

    Args:
        logits_or_probs: (n, C) outputs of the head (logits or probabilities; argmax is the same).
        labels: (n,) integer class indices in 0..C-1 (column indices of the head, not remapped).
    """
    out = as_features(logits_or_probs, "logits_or_probs", resolve_device(device))
    if out.shape[1] < 2:
        raise ValueError(f"logits_or_probs must have one column per class (>= 2), got shape {tuple(out.shape)}")
    lab = as_label_array(labels, "labels")
    check_rows(tuple(out.shape), lab.shape, "logits_or_probs", "labels")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.mod(lab, 1) == 0):
            raise ValueError(f"labels (shape {lab.shape}) must be integer class indices, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.min() < 0 or lab.max() >= out.shape[1]:
        raise ValueError(
            f"labels must be class indices in [0, {out.shape[1] - 1}] for logits_or_probs of shape "
            f"{tuple(out.shape)}; found range [{lab.min()}, {lab.max()}]"
        )
    pred = out.argmax(1).cpu().numpy()
    return float(np.mean(pred == lab))

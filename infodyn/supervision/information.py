"""How much information a supervision signal carries about the latent structure, against its capacity.

Two targets ("about"):

- ``"class"``: the generating class of the example (for a triplet (a, b, c): which of b and c
  share a's class, a 4-valued pattern, since that is the class structure a triplet can reveal).
- ``"example"``: the example itself, X taken uniform over the sample (for a triplet, the three
  examples). This is everything the signal tells about where the example lies among the classes;
  for a soft label it can exceed log2 k, the capacity of a hard label.

Methods:

- ``"exact"``: uses the simulator's p(signal | x), so every sum over the signal's values is
  exact; X (and the class) are averaged over the sample, i.e. I(S;X) = H(E_x p(s|x)) -
  E_x H(p(s|x)) with X uniform over the n examples. This never exceeds the capacity (H(S) <=
  log2 |S|), and needs no draw of the signal. A continuous posterior about the example is inf.
- ``"mc"`` (soft labels only): one drawn vote pattern per example, scored with the exact
  mixture p(s) = E_x p(s|x); unbiased, with a normal interval from its standard error (95% unless
  ``ci`` says otherwise). For when there are too many vote patterns to enumerate;
  :func:`information_table` switches to it automatically past ``MAX_OUTCOMES``.
- ``"plugin"``: one drawn signal per example (or triplet); plug-in (maximum-likelihood) mutual
  information of the discrete table signal x class; only ``about="class"``. Also never above the
  capacity, since the plug-in entropy of S is at most log of its number of observed values.
- any estimator name of :func:`infodyn.estimators.available` (``"gaussian"``, ``"ksg"``,
  ``"binning"``, ...): one drawn signal per example, and ``estimate_mi(x, signal)`` with x the
  example's features (a triplet's three concatenated) and the signal as integer codes (a
  posterior as its float vector; a soft label as its count vector for ``gaussian``); only ``about="example"``. Its stated error is its bootstrap
  interval (pass ``ci``). These are estimates with their own biases: the ``gaussian`` closed
  form is unbounded for a discrete signal (a ratio of determinants that grows with the class
  separation) and can exceed the capacity; :func:`information_table` flags such rows.

All values are :class:`infodyn.estimators.MIEstimate` (nats, with ``.bits``).
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from infodyn.estimators.base import MIEstimate

from .capacity import capacity_bits
from .simulate import Sample, hard_labels, soft_labels, triplet_queries, triplet_truth, triplets, vote_probabilities

MAX_OUTCOMES = 250_000  # vote-count patterns enumerated by the exact method


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return t.sum(axis=axis)


def plugin_mi(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information of two discrete 1-D arrays (any hashable codes), in nats."""
    a = np.asarray(a).reshape(-1)
    b = np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"plugin_mi needs two arrays of equal length, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("plugin_mi got empty arrays")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai.ravel(), bi.ravel()), 1.0)
    pj = table / table.sum()
    return float(max(_entropy(pj.sum(1)) + _entropy(pj.sum(0)) - _entropy(pj.ravel()), 0.0))


def vote_patterns(num_classes: int, votes: int) -> np.ndarray:
    """All vote-count vectors of m votes over k classes, int (C(m+k-1, k-1), k)."""
    count = math.comb(votes + num_classes - 1, num_classes - 1)
    if count > MAX_OUTCOMES:
        raise ValueError(
            f"{count} vote patterns for votes={votes}, classes={num_classes} exceed the exact "
            f"method's limit of {MAX_OUTCOMES}; use method='plugin' or an estimator"
        )
    out = np.zeros((count, num_classes), dtype=np.int64)
    for row, combo in enumerate(itertools.combinations_with_replacement(range(num_classes), votes)):
        np.add.at(out[row], list(combo), 1)
    return out


def _soft_log_probs(q: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """log multinomial p(pattern | q) for each row of q (n, k): (n, n_patterns)."""
    from scipy.special import gammaln

    m = int(patterns[0].sum())
    logq = np.log(np.clip(q, 1e-300, None))
    const = gammaln(m + 1) - gammaln(patterns + 1).sum(1)
    return logq @ patterns.T.astype(np.float64) + const


def _exact_from_conditionals(cond: np.ndarray, groups: Optional[np.ndarray]) -> float:
    """I(S; G) in nats from p(s | row) (n, |S|): G = the row itself (groups None) or a grouping."""
    ps = cond.mean(0)
    if groups is None:
        return float(max(_entropy(ps) - _entropy(cond, axis=1).mean(), 0.0))
    h_cond = 0.0
    for g in np.unique(groups):
        rows = groups == g
        h_cond += rows.mean() * float(_entropy(cond[rows].mean(0)))
    return float(max(_entropy(ps) - h_cond, 0.0))


def _soft_exact(q: np.ndarray, votes: int, groups: Optional[np.ndarray], block: int = 2048) -> float:
    patterns = vote_patterns(q.shape[1], votes)
    n = q.shape[0]
    ps = np.zeros(len(patterns))
    h_rows = 0.0
    group_ids = None if groups is None else np.unique(groups, return_inverse=True)[1].reshape(-1)
    group_sum = None if groups is None else np.zeros((group_ids.max() + 1, len(patterns)))
    for start in range(0, n, block):  # bounded memory: block rows x patterns at a time
        cond = np.exp(_soft_log_probs(q[start:start + block], patterns))
        ps += cond.sum(0)
        if groups is None:
            h_rows += float(_entropy(cond, axis=1).sum())
        else:
            np.add.at(group_sum, group_ids[start:start + block], cond)
    ps /= n
    if groups is None:
        return float(max(_entropy(ps) - h_rows / n, 0.0))
    sizes = np.bincount(group_ids).astype(np.float64)
    h_cond = float((sizes / n * _entropy(group_sum / sizes[:, None], axis=1)).sum())
    return float(max(_entropy(ps) - h_cond, 0.0))


def _soft_mc(q: np.ndarray, votes: int, groups: Optional[np.ndarray], seed: int, block: int = 1024):
    """Monte-Carlo I(S;X) or I(S;Y) for m-vote soft labels, for when the patterns are too many to list.

    One vote pattern s_i is drawn per example from p(s | x_i); then, with the exact mixture
    p(s) = mean_j p(s | x_j) (and p(s | y) = mean over the class's examples),
    I(S;X) = E[log p(s|x) - log p(s)] and I(S;Y) = E[log p(s|y) - log p(s)], averaged over the
    draws. Unbiased for X uniform over the sample; returns (nats, standard error of the mean).
    """
    from scipy.special import gammaln, logsumexp

    from .simulate import Sample, soft_labels

    n, k = q.shape
    fake = Sample(np.zeros((n, 1)), np.zeros(n, dtype=np.int64), np.log(np.clip(q, 1e-300, None)), None, "source")
    counts = soft_labels(fake, votes, 0.0, seed).astype(np.float64)  # q already holds the noise
    logq = np.log(np.clip(q, 1e-300, None))
    const = gammaln(votes + 1) - gammaln(counts + 1).sum(1)
    terms = np.empty(n)
    for start in range(0, n, block):  # rows of draws x all examples, bounded memory
        lp = counts[start:start + block] @ logq.T + const[start:start + block, None]  # log p(s_i | x_j)
        log_mix = logsumexp(lp, axis=1) - np.log(n)
        if groups is None:
            own = lp[np.arange(lp.shape[0]), np.arange(start, start + lp.shape[0])]
        else:
            gi = groups[start:start + block]
            same = gi[:, None] == groups[None, :]
            own = logsumexp(np.where(same, lp, -np.inf), axis=1) - np.log(same.sum(1))
        terms[start:start + block] = own - log_mix
    return float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def _triplet_pattern(y: np.ndarray, index: np.ndarray) -> np.ndarray:
    return 2 * (y[index[:, 0]] == y[index[:, 1]]) + (y[index[:, 0]] == y[index[:, 2]])


def _codes(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 1:
        return values.astype(np.int64)
    return np.unique(values, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm

    if not 0 < p < 1:
        raise ValueError(f"ci must be a confidence level in (0, 1), got {2 * p - 1}")
    return float(norm.ppf(p))


def _bootstrap(fn: Callable[[np.ndarray], float], n: int, ci: float, n_boot: int, seed: int):
    if not 0 < ci < 1:
        raise ValueError(f"ci must be a confidence level in (0, 1), got {ci}")
    rng = np.random.default_rng([int(seed), 99])
    vals = [fn(rng.integers(0, n, size=n)) for _ in range(int(n_boot))]
    lo, hi = np.quantile(vals, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def signal_information(
    sample: Sample,
    signal: str,
    *,
    votes: Optional[int] = 5,
    noise: float = 0.0,
    about: str = "example",
    method: str = "exact",
    n_triplets: Optional[int] = None,
    ci: Optional[float] = None,
    n_boot: int = 50,
    seed: int = 0,
    **params,
) -> MIEstimate:
    """The information one signal carries about the class or the example (see module docstring).

    Args:
        sample: source examples from :meth:`Task.sample`.
        signal: ``hard``, ``soft`` (``votes`` m, or None = ``posterior``), ``posterior``, ``triplet``.
        votes: annotators per soft label.
        noise: probability that an annotator's answer is replaced by a random one.
        about: ``"example"`` (I(S;X)) or ``"class"`` (I(S;Y)).
        method: ``"exact"``, ``"mc"`` (soft only), ``"plugin"`` or an infodyn estimator name.
        n_triplets: triplet queries drawn from the sample (default: the sample size).
        ci: confidence level of a seeded bootstrap over examples (or the estimator's own), or None.
        n_boot: bootstrap replicates.
        seed: seeds the signal draws, the triplet queries and the bootstrap.
        **params: passed on to :func:`infodyn.estimators.estimate_mi` for estimator methods.

    Returns:
        MIEstimate in nats; ``params`` records signal, votes, noise, about, capacity_bits.
    """
    if signal == "soft" and votes is None:
        signal = "posterior"
    if signal not in ("hard", "soft", "posterior", "triplet"):
        raise ValueError(f"signal must be hard, soft, posterior or triplet, got {signal!r}")
    if about not in ("example", "class"):
        raise ValueError(f"about must be 'example' or 'class', got {about!r}")
    if sample.split != "source":
        raise ValueError("signal information is measured on a source sample; got a transfer sample")
    k = sample.num_classes
    cap = capacity_bits(signal, k, votes if signal == "soft" else None)
    info = {"signal": signal, "votes": votes if signal == "soft" else None, "noise": float(noise),
            "about": about, "capacity_bits": cap}
    t0 = time.perf_counter()
    q = vote_probabilities(sample, noise)
    nt = sample.n if n_triplets is None else int(n_triplets)

    if method == "exact":
        if signal == "triplet":
            index = triplet_queries(sample.n, nt, seed)
            truth = triplet_truth(sample, index)
            p1 = (1 - noise) * np.where(truth < 0, 0.5, truth) + noise / 2
            cond = np.stack([p1, 1 - p1], axis=1)
            groups = _triplet_pattern(sample.y, index) if about == "class" else None
            rows_n = nt

            def fn(rows):
                return _exact_from_conditionals(cond[rows], None if groups is None else groups[rows])
        elif signal == "posterior" and about == "example":
            value = math.inf  # a continuous, injective function of x: unbounded
            rows_n, fn = sample.n, None
        else:
            groups = sample.y if about == "class" else None
            rows_n = sample.n
            if signal == "hard" and about == "class":
                # the label is the true class, flipped to a uniform class with prob. noise
                channel = (1 - noise) * np.eye(k) + noise / k

                def fn(rows):
                    py = np.bincount(sample.y[rows], minlength=k) / len(rows)
                    return float(max(_entropy(py @ channel) - (py * _entropy(channel, axis=1)).sum(), 0.0))
            elif signal == "hard":
                # about the example: given x, the label is distributed as one annotator's vote
                def fn(rows):
                    return _exact_from_conditionals(q[rows], None)
            elif signal == "posterior":
                # the noisy posterior (1-e) p + e/k is an invertible function of p for e < 1 and
                # p is sufficient for the class: I(P;Y) = I(X;Y) = H(E p) - E H(p)
                post = sample.posterior if noise < 1 else np.full_like(q, 1.0 / k)

                def fn(rows):
                    return _exact_from_conditionals(post[rows], None)
            else:
                def fn(rows):
                    return _soft_exact(q[rows], int(votes), None if groups is None else groups[rows])
        if fn is not None:
            value = fn(np.arange(rows_n))
        interval = _bootstrap(fn, rows_n, ci, n_boot, seed) if (ci is not None and fn is not None) else None
        return MIEstimate(float(value), interval, "exact", info, rows_n, time.perf_counter() - t0)

    if method == "mc":
        if signal != "soft":
            raise ValueError(f"method='mc' is for soft labels with many vote patterns; use 'exact' for {signal!r}")
        value, se = _soft_mc(q, int(votes), sample.y if about == "class" else None, seed)
        z = 1.959963984540054 if ci is None else float(_normal_quantile((1 + ci) / 2))
        interval = (max(value - z * se, 0.0), value + z * se)
        info = {**info, "standard_error_nats": se}
        return MIEstimate(max(value, 0.0), interval, "mc", info, sample.n, time.perf_counter() - t0)

    # methods that need one drawn signal per example / triplet
    if signal == "triplet":
        index, s = triplets(sample, nt, noise, seed)
        target = _triplet_pattern(sample.y, index)
        feats = sample.x[index].reshape(len(index), -1)
    else:
        index = None
        target = sample.y
        feats = sample.x
        if signal == "hard":
            s = hard_labels(sample, noise, seed)
        else:
            s = soft_labels(sample, votes if signal == "soft" else None, noise, seed)
    # discrete signals go to estimators as integer codes (kNN estimators then use Ross's mixed
    # rule; counts as floats are full of ties), except a soft label to "gaussian", which gets its
    # count vector: a one-hot of hundreds of vote patterns would make that closed form meaningless
    s_codes = s if signal == "posterior" else _codes(s)
    s_est = s.astype(np.float64) if (signal == "soft" and method == "gaussian") else s_codes

    if method == "plugin":
        if about != "class":
            raise ValueError(
                "method='plugin' measures I(signal; class) (about='class'); with one signal per example "
                "the plug-in I(signal; example) is just H(signal). Use method='exact' or an estimator"
            )
        if signal == "posterior":
            raise ValueError("method='plugin' needs a discrete signal; the posterior is continuous")

        def fn(rows):
            return plugin_mi(s_codes[rows], target[rows])

        value = fn(np.arange(len(target)))
        interval = _bootstrap(fn, len(target), ci, n_boot, seed) if ci is not None else None
        return MIEstimate(value, interval, "plugin", info, len(target), time.perf_counter() - t0)

    from infodyn.estimators import estimate_mi

    if about != "example":
        raise ValueError(
            f"estimator {method!r} measures I(signal; example) (about='example'); "
            "for the class use method='exact' or 'plugin'"
        )
    est = estimate_mi(feats, s_est, method=method, ci=ci, n_boot=n_boot, seed=seed, **params)
    return MIEstimate(est.nats, est.ci, est.method, {**est.params, **info}, est.n, time.perf_counter() - t0)


def information_table(
    task,
    *,
    signals: Sequence[str] = ("hard", "soft", "posterior", "triplet"),
    votes: int = 5,
    noise: float = 0.0,
    n: int = 2000,
    methods: Sequence[str] = ("exact",),
    abouts: Sequence[str] = ("example", "class"),
    ci: Optional[float] = None,
    n_boot: int = 30,
    seed: int = 0,
    extra: Optional[Dict[str, object]] = None,
    num_threads: Optional[int] = 1,
):
    """One row per (signal, about, method): information in nats and bits against capacity.

    Combinations a method does not support are skipped; ``exact`` on a soft label with more than
    ``MAX_OUTCOMES`` vote patterns becomes ``mc`` (the row's method says so). Returns a pandas DataFrame with columns
    signal, votes, noise, about, method, nats, bits, ci_low_bits, ci_high_bits, capacity_bits,
    efficiency (bits / capacity), exceeds_capacity (the estimate, or its interval's lower end, is
    above the capacity: impossible for the truth, so a failure of that estimator), n, seconds,
    plus the ``extra`` columns. ``num_threads``: torch CPU threads while estimators run (1 is
    fastest for these sizes, and avoids thrashing on a shared machine; None leaves torch's setting).
    """
    if any(m not in ("exact", "plugin", "mc") for m in methods):
        from .learning import torch_threads

        with torch_threads(num_threads):
            return _information_table(task, signals, votes, noise, n, methods, abouts, ci, n_boot, seed, extra)
    return _information_table(task, signals, votes, noise, n, methods, abouts, ci, n_boot, seed, extra)


def _information_table(task, signals, votes, noise, n, methods, abouts, ci, n_boot, seed, extra):
    import pandas as pd

    sample = task.sample(n, "source", seed=seed)
    rows = []
    for method in methods:
        for signal in signals:
            for about in abouts:
                if method == "plugin" and (about != "class" or signal == "posterior"):
                    continue
                if method not in ("exact", "plugin") and about != "example":
                    continue
                use = method
                if (method == "exact" and signal == "soft"
                        and math.comb(votes + sample.num_classes - 1, sample.num_classes - 1) > MAX_OUTCOMES):
                    use = "mc"  # too many vote patterns to enumerate
                est = signal_information(sample, signal, votes=votes, noise=noise, about=about,
                                         method=use, ci=ci, n_boot=n_boot, seed=seed)
                cap = est.params["capacity_bits"]
                ci_b = est.ci_bits
                low = est.bits if ci_b is None else ci_b[0]
                rows.append({
                    "signal": signal, "votes": votes if signal == "soft" else None, "noise": noise,
                    "about": about, "method": use, "nats": est.nats, "bits": est.bits,
                    "ci_low_bits": None if ci_b is None else ci_b[0],
                    "ci_high_bits": None if ci_b is None else ci_b[1],
                    "capacity_bits": cap,
                    "efficiency": est.bits / cap if math.isfinite(cap) and math.isfinite(est.bits) else math.nan,
                    # above capacity by more than the stated error: the estimator is wrong here
                    "exceeds_capacity": bool(math.isfinite(cap) and low > cap + 1e-9),
                    "n": est.n, "seconds": est.seconds, **(extra or {}),
                })
    return pd.DataFrame(rows)

"""Learning a representation from each kind of supervision signal, and measuring it.

An encoder f: R^dims -> R^rep_dim (``linear``, or ``mlp`` with one hidden ReLU layer) is trained
full-batch with Adam from one kind of signal about the first ``budget`` examples of a pool:

- ``hard``: cross-entropy of a linear head on f(x) against the label;
- ``soft`` / ``posterior``: cross-entropy against the vote fractions / the posterior;
- ``triplet``: logistic triplet loss softplus(|f(a)-f(b)|^2 - |f(a)-f(c)|^2) for "a is closer to b".

The frozen encoder is then measured on fresh data (sklearn, standardised features):

- ``source_acc``: a logistic-regression probe on ``probe_per_class`` labelled examples per source
  class, tested on held-out source examples;
- ``transfer_acc``: the same probe on the held-out (transfer) classes;
- ``few_shot_acc``: nearest class mean from ``shots`` examples per transfer class, averaged over
  ``episodes`` random episodes.

A raw-feature reference (``signal="raw"``, the identity) and the untrained encoder
(``signal="none"``) are measured alongside.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from .simulate import Sample, Task, hard_labels, make_task, soft_labels, triplets

MEASURES = ("source_acc", "transfer_acc", "few_shot_acc")


@dataclass(frozen=True)
class TrainConfig:
    """Encoder and optimiser settings (full-batch Adam)."""

    rep_dim: int = 8
    hidden: int = 64
    steps: int = 200
    lr: float = 0.01
    weight_decay: float = 1e-4

    def __post_init__(self):
        for name in ("rep_dim", "hidden", "steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ValueError(f"TrainConfig needs lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


@contextmanager
def torch_threads(n: Optional[int]):
    """Temporarily sets torch's CPU threads (None: leave as is). One thread is fastest for the
    small full-batch networks here, and avoids thrashing on a shared machine."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_encoder(model: str, dims: int, config: TrainConfig, seed: int = 0):
    """A seeded ``linear`` or ``mlp`` encoder R^dims -> R^rep_dim (a torch module)."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if model == "linear":
            return nn.Linear(dims, config.rep_dim)
        if model == "mlp":
            return nn.Sequential(nn.Linear(dims, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.rep_dim))
    raise ValueError(f"model must be 'linear' or 'mlp', got {model!r}")


def train_encoder(
    x: np.ndarray,
    signal: str,
    target,
    *,
    model: str = "linear",
    num_classes: Optional[int] = None,
    config: TrainConfig = TrainConfig(),
    seed: int = 0,
    device: str = "auto",
    num_threads: Optional[int] = 1,
):
    """Trains an encoder from one kind of signal.

    Args:
        x: the annotated examples, float (n, dims) (for triplets: the pool the indices refer to).
        signal: ``hard``, ``soft``, ``posterior`` or ``triplet``.
        target: hard: int labels (n,); soft: vote counts (n, k); posterior: probabilities (n, k);
            triplet: a tuple (index (t, 3), answer (t,)) with answer 1 for "a is closer to b".
        model: ``linear`` or ``mlp``.
        num_classes: k for the label head (default: inferred from the target).
        config: :class:`TrainConfig`.
        seed: initialisation seed.
        device: "auto" (CUDA when present), "cpu", "cuda".
        num_threads: torch CPU threads while training (see :func:`torch_threads`).

    Returns:
        The trained encoder (a torch module, in eval mode, on ``device``).
    """
    with torch_threads(num_threads):
        return _train(x, signal, target, model, num_classes, config, seed, device)


def _train(x, signal, target, model, num_classes, config, seed, device):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from infodyn.estimators.base import resolve_device

    dev = resolve_device(device)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be (n, dims), got shape {x.shape}")
    enc = build_encoder(model, x.shape[1], config, seed).to(dev)
    params = list(enc.parameters())
    xt = torch.as_tensor(x, device=dev)

    if signal == "triplet":
        index, answer = target
        index = np.asarray(index)
        answer = np.asarray(answer)
        if index.ndim != 2 or index.shape[1] != 3 or len(answer) != len(index):
            raise ValueError(f"triplet target must be (index (t, 3), answer (t,)), got {index.shape}, {answer.shape}")
        pos = np.where(answer == 1, index[:, 1], index[:, 2])
        neg = np.where(answer == 1, index[:, 2], index[:, 1])
        ia, ip, ineg = (torch.as_tensor(v, device=dev) for v in (index[:, 0], pos, neg))

        def loss_fn():
            z = enc(xt)
            dp = ((z[ia] - z[ip]) ** 2).sum(1)
            dn = ((z[ia] - z[ineg]) ** 2).sum(1)
            return F.softplus(dp - dn).mean()
    else:
        tgt = np.asarray(target)
        if tgt.shape[0] != x.shape[0]:
            raise ValueError(f"{signal} target has {tgt.shape[0]} rows but x has shape {x.shape}")
        if signal == "hard":
            if tgt.ndim != 1:
                raise ValueError(f"hard labels must be (n,), got shape {tgt.shape}")
            k = int(num_classes or tgt.max() + 1)
            yt = torch.as_tensor(tgt.astype(np.int64), device=dev)
        elif signal in ("soft", "posterior"):
            if tgt.ndim != 2:
                raise ValueError(f"{signal} target must be (n, k), got shape {tgt.shape}")
            k = tgt.shape[1]
            probs = tgt / tgt.sum(1, keepdims=True)
            yt = torch.as_tensor(probs.astype(np.float32), device=dev)
        else:
            raise ValueError(f"signal must be hard, soft, posterior or triplet, got {signal!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) + 1)
            head = nn.Linear(config.rep_dim, k).to(dev)
        params += list(head.parameters())

        def loss_fn():
            logits = head(enc(xt))
            if signal == "hard":
                return F.cross_entropy(logits, yt)
            return -(yt * F.log_softmax(logits, dim=1)).sum(1).mean()

    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    enc.train()
    for _ in range(config.steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    if not torch.isfinite(loss):
        raise ValueError(f"training on {signal} signals diverged (loss {loss.item()}); lower the learning rate")
    return enc.eval()


def embed(encoder, x: np.ndarray, device: str = "auto") -> np.ndarray:
    """Features of x (n, dims) under an encoder (None = identity), float64 (n, rep_dim)."""
    if encoder is None:
        return np.asarray(x, dtype=np.float64)
    import torch

    dev = next(encoder.parameters()).device
    with torch.no_grad():
        z = encoder(torch.as_tensor(np.asarray(x, dtype=np.float32), device=dev))
    return z.cpu().numpy().astype(np.float64)


@dataclass(frozen=True)
class EvalSets:
    """Fresh labelled data for measuring a representation (see :func:`make_eval_sets`)."""

    source_train: Sample
    source_test: Sample
    transfer_train: Sample
    transfer_test: Sample
    shots: int
    episodes: int
    seed: int


def make_eval_sets(task: Task, *, probe_per_class: int = 10, test_per_class: int = 50, shots: int = 1,
                   episodes: int = 20, seed: int = 0) -> EvalSets:
    """Probe and test sets for the source and transfer classes (balanced), disjoint from any annotated pool."""
    if probe_per_class < 1 or shots < 1:
        raise ValueError(f"probe_per_class and shots must be >= 1, got {probe_per_class} and {shots}")
    if task.transfer_classes < 2:
        raise ValueError(f"transfer and few-shot tests need >= 2 transfer classes, task has {task.transfer_classes}")
    k, t = task.classes, task.transfer_classes
    base = 1000 + 10 * int(seed)
    return EvalSets(  # balanced classes: every class has its probe_per_class examples
        task.sample(probe_per_class * k, "source", seed=base + 1, balanced=True),
        task.sample(test_per_class * k, "source", seed=base + 2, balanced=True),
        task.sample(max(probe_per_class, shots) * t, "transfer", seed=base + 3, balanced=True),
        task.sample(test_per_class * t, "transfer", seed=base + 4, balanced=True),
        int(shots), int(episodes), int(seed),
    )


def _probe_acc(ztr, ytr, zte, yte) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0]))
    sc = StandardScaler().fit(ztr)
    clf = LogisticRegression(max_iter=500).fit(sc.transform(ztr), ytr)
    return float(clf.score(sc.transform(zte), yte))


def _few_shot_acc(ztr, ytr, zte, yte, shots, episodes, seed) -> float:
    rng = np.random.default_rng([int(seed), 7])
    classes = np.unique(yte)
    accs = []
    for _ in range(episodes):
        means = []
        for c in classes:
            pool = np.nonzero(ytr == c)[0]
            if len(pool) < shots:
                raise ValueError(f"transfer class {c} has {len(pool)} probe examples, fewer than shots={shots}")
            means.append(ztr[rng.choice(pool, size=shots, replace=False)].mean(0))
        means = np.stack(means)
        d = ((zte[:, None, :] - means[None]) ** 2).sum(2)
        accs.append(np.mean(classes[d.argmin(1)] == yte))
    return float(np.mean(accs))


def evaluate_encoder(encoder, sets: EvalSets) -> dict:
    """``source_acc``, ``transfer_acc``, ``few_shot_acc`` (fractions) of a frozen encoder."""
    z = {name: embed(encoder, getattr(sets, name).x) for name in
         ("source_train", "source_test", "transfer_train", "transfer_test")}
    return {
        "source_acc": _probe_acc(z["source_train"], sets.source_train.y, z["source_test"], sets.source_test.y),
        "transfer_acc": _probe_acc(z["transfer_train"], sets.transfer_train.y, z["transfer_test"], sets.transfer_test.y),
        "few_shot_acc": _few_shot_acc(z["transfer_train"], sets.transfer_train.y, z["transfer_test"],
                                      sets.transfer_test.y, sets.shots, sets.episodes, sets.seed),
    }


def draw_signal(pool: Sample, signal: str, budget: int, *, votes: Optional[int] = 5, noise: float = 0.0,
                seed: int = 0):
    """(x, target) for ``budget`` signals about the first ``budget`` examples of the pool
    (triplets: ``budget`` random triplets among them)."""
    budget = int(budget)
    if budget < 1 or budget > pool.n:
        raise ValueError(f"budget must be in 1..{pool.n} (the pool size), got {budget}")
    sub = Sample(pool.x[:budget], pool.y[:budget], pool.log_posterior[:budget],
                 None if pool.superclass is None else pool.superclass[:budget], pool.split)
    if signal == "hard":
        return sub.x, hard_labels(sub, noise, seed)
    if signal == "soft":
        return sub.x, soft_labels(sub, votes, noise, seed)
    if signal == "posterior":
        return sub.x, soft_labels(sub, None, noise, seed)
    if signal == "triplet":
        if budget < 3:
            raise ValueError(f"triplets need a budget of at least 3 examples, got {budget}")
        return sub.x, triplets(sub, budget, noise, seed)
    raise ValueError(f"signal must be hard, soft, posterior or triplet, got {signal!r}")


def learning_curves(
    *,
    signals: Sequence[str] = ("hard", "soft", "posterior", "triplet"),
    budgets: Sequence[int] = (20, 50, 100, 200, 500),
    models: Sequence[str] = ("linear", "mlp"),
    seeds: Iterable[int] = (0, 1, 2),
    votes: int = 5,
    noise: float = 0.0,
    task_kwargs: Optional[dict] = None,
    config: TrainConfig = TrainConfig(),
    probe_per_class: int = 10,
    shots: int = 1,
    episodes: int = 20,
    references: bool = True,
    device: str = "auto",
    num_threads: Optional[int] = 1,
    extra: Optional[dict] = None,
):
    """Performance of representations learned from each signal at each budget, over seeds.

    Every seed draws a new task (``make_task(seed=seed, **task_kwargs)``), pool, signals,
    initialisation and evaluation sets.

    Returns:
        A tidy pandas DataFrame: signal, model, budget, seed, measure, value, votes, noise,
        classes, dims, plus the ``extra`` columns.

    ``num_threads`` sets torch's CPU threads while training (1 is fastest for these small
    networks, especially on a shared machine; None leaves torch's setting); it is restored after. ``signal`` "raw" / "none" (budget 0) are the
        references (raw features; untrained encoder).
    """
    with torch_threads(num_threads):
        return _learning_curves(signals, budgets, models, seeds, votes, noise, task_kwargs, config,
                                probe_per_class, shots, episodes, references, device, extra)


def _learning_curves(signals, budgets, models, seeds, votes, noise, task_kwargs, config, probe_per_class,
                     shots, episodes, references, device, extra):
    import pandas as pd

    task_kwargs = dict(task_kwargs or {})
    budgets = sorted(int(b) for b in budgets)
    rows = []
    for seed in seeds:
        task = make_task(seed=int(seed), **task_kwargs)
        pool = task.sample(budgets[-1], "source", seed=int(seed))
        sets = make_eval_sets(task, probe_per_class=probe_per_class, shots=shots, episodes=episodes, seed=int(seed))
        common = {"seed": int(seed), "votes": votes, "noise": float(noise), "classes": task.classes,
                  "dims": task.dims, **(extra or {})}

        def add(signal, model, budget, scores):
            for measure, value in scores.items():
                rows.append({"signal": signal, "model": model, "budget": budget, "measure": measure,
                             "value": value, **common})

        if references:
            add("raw", "identity", 0, evaluate_encoder(None, sets))
        for model in models:
            if references:
                add("none", model, 0, evaluate_encoder(build_encoder(model, task.dims, config, seed), sets))
            for signal in signals:
                for budget in budgets:
                    if signal == "triplet" and budget < 3:
                        continue
                    x, target = draw_signal(pool, signal, budget, votes=votes, noise=noise, seed=int(seed))
                    enc = train_encoder(x, signal, target, model=model, num_classes=task.classes,
                                        config=config, seed=int(seed), device=device)
                    add(signal, model, budget, evaluate_encoder(enc, sets))
    return pd.DataFrame(rows)

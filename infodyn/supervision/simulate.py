"""A seeded simulator of labelled data and of the supervision signals annotators give about it.

The world: ``classes`` source classes (the ones annotators label) and ``transfer_classes``
held-out classes (never labelled; used to test transfer and few-shot learning), each a prototype
in ``dims`` dimensions. An example of class j is ``x = mu_j + spread * N(0, I)``.

The class structure lives in a random ``latent_dims``-dimensional subspace (orthonormal basis Q,
dims x r): prototypes are ``mu_j = Q z_j`` with ``z_j ~ N(0, separation^2 / (2 r) I_r)``, so
that the expected distance between two prototypes is ``separation`` whatever the dimensions:
the Bayes difficulty does not change with ``dims``, only the number of noise directions a
learner must discard does. The held-out classes live in the same subspace, which is what makes a
representation learned from the source classes transferable. With ``superclasses=S`` the
classes are grouped round-robin into S super-classes: ``z_j = c_s(j) + N(0, separation^2 /
(2 r) I_r)`` with centres ``c_s ~ N(0, superclass_separation^2 / (2 r) I_r)``; held-out classes
share the super-classes of the source classes.

The signals (each annotator is independent; ``noise`` is the probability that an answer is
replaced by a uniformly random one, so noise=1 is pure guessing):

- ``hard``: the example's true (generating) class, as a curated data set aims to give.
- ``soft`` with ``votes=m``: the counts of m annotators' votes over the k source classes; each
  vote is drawn from the Bayes posterior p(class | x) (what an ideal observer finds ambiguous).
- ``posterior`` (or ``soft`` with ``votes=None``): the exact posterior itself, mixed with noise.
- ``triplet``: for three examples (a, b, c), whether a is more similar to b than to c, similarity
  being the probability that two examples share a class, sum_j p(j|a) p(j|b).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

SIMULATED = ("hard", "soft", "posterior", "triplet")


def _check_prob(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class Sample:
    """Examples drawn from a :class:`Task`.

    Attributes:
        x: features, shape (n, dims).
        y: class of each example, shape (n,): 0..classes-1 for the source split, 0..transfer-1
            for the transfer split.
        log_posterior: log p(source class | x) under a uniform prior over the source classes,
            shape (n, classes) (also given for transfer examples: how annotators would see them).
        superclass: super-class of each example, shape (n,), or None without a hierarchy.
        split: "source" or "transfer".
    """

    x: np.ndarray
    y: np.ndarray
    log_posterior: np.ndarray
    superclass: Optional[np.ndarray]
    split: str

    @property
    def posterior(self) -> np.ndarray:
        return np.exp(self.log_posterior)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.log_posterior.shape[1])


@dataclass(frozen=True)
class Task:
    """Class prototypes and the spread of examples around them (see the module docstring)."""

    prototypes: np.ndarray  # (classes + transfer_classes, dims)
    classes: int
    transfer_classes: int
    spread: float
    superclass_of: Optional[np.ndarray]  # (classes + transfer_classes,)
    seed: int

    @property
    def dims(self) -> int:
        return int(self.prototypes.shape[1])

    def sample(self, n: int, split: str = "source", seed: int = 0, balanced: bool = False) -> Sample:
        """Draws n examples of the given split ("source"/"transfer"): classes uniformly at random,
        or with ``balanced`` as equal as n allows (in random order)."""
        if split not in ("source", "transfer"):
            raise ValueError(f"split must be 'source' or 'transfer', got {split!r}")
        n = int(n)
        if n < 1:
            raise ValueError(f"need n >= 1 examples, got {n}")
        if split == "transfer" and self.transfer_classes == 0:
            raise ValueError("this task has transfer_classes=0: no held-out classes to sample")
        rng = np.random.default_rng([self.seed, int(seed), 0 if split == "source" else 1])
        k = self.classes if split == "source" else self.transfer_classes
        offset = 0 if split == "source" else self.classes
        y = rng.permutation(np.arange(n) % k) if balanced else rng.integers(0, k, size=n)
        mu = self.prototypes[offset + y]
        x = mu + self.spread * rng.standard_normal((n, self.dims))
        sup = None if self.superclass_of is None else self.superclass_of[offset + y]
        return Sample(x, y.astype(np.int64), self.log_posterior(x), sup, split)

    def log_posterior(self, x: np.ndarray) -> np.ndarray:
        """log p(source class | x), shape (n, classes), for x of shape (n, dims)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ValueError(f"x must have shape (n, {self.dims}), got {x.shape}")
        mu = self.prototypes[: self.classes]
        sq = (x**2).sum(1, keepdims=True) - 2 * x @ mu.T + (mu**2).sum(1)
        logits = -sq / (2 * self.spread**2)
        logits -= logits.max(1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def make_task(
    classes: int = 10,
    dims: int = 32,
    *,
    transfer_classes: int = 5,
    latent_dims: Optional[int] = 8,
    separation: float = 4.0,
    spread: float = 1.0,
    superclasses: int = 0,
    superclass_separation: Optional[float] = None,
    seed: int = 0,
) -> Task:
    """A random task (prototypes) for a seed. See the module docstring for the model.

    Args:
        classes: k source classes (>= 2).
        dims: feature dimension d (>= 1).
        transfer_classes: held-out classes for transfer / few-shot tests (>= 0).
        latent_dims: r, the dimension of the subspace holding the prototypes (capped at dims;
            None = dims).
        separation: expected distance between two class prototypes (within one super-class).
        spread: standard deviation of examples around their prototype, per dimension.
        superclasses: number S of super-classes (0 = no hierarchy).
        superclass_separation: expected distance between super-class centres (default
            2 * separation).
        seed: the task seed.
    """
    if int(classes) < 2:
        raise ValueError(f"need at least 2 source classes, got classes={classes}")
    if int(dims) < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    if int(transfer_classes) < 0:
        raise ValueError(f"transfer_classes must be >= 0, got {transfer_classes}")
    if not (spread > 0 and separation > 0):
        raise ValueError(f"spread and separation must be > 0, got spread={spread}, separation={separation}")
    if int(superclasses) < 0 or int(superclasses) > int(classes):
        raise ValueError(f"superclasses must be in 0..classes={classes}, got {superclasses}")
    classes, dims, transfer_classes, superclasses = int(classes), int(dims), int(transfer_classes), int(superclasses)
    r = dims if latent_dims is None else int(latent_dims)
    if r < 1:
        raise ValueError(f"latent_dims must be >= 1, got {latent_dims}")
    r = min(r, dims)
    rng = np.random.default_rng([int(seed), 12345])
    total = classes + transfer_classes
    z = separation / np.sqrt(2 * r) * rng.standard_normal((total, r))
    sup = None
    if superclasses:
        ssep = 2 * separation if superclass_separation is None else float(superclass_separation)
        centres = ssep / np.sqrt(2 * r) * rng.standard_normal((superclasses, r))
        sup = np.concatenate([np.arange(classes) % superclasses, np.arange(transfer_classes) % superclasses])
        z = z + centres[sup]
    basis, _ = np.linalg.qr(rng.standard_normal((dims, r)))
    return Task(z @ basis.T, classes, transfer_classes, float(spread), sup, int(seed))


# ----------------------------------------------------------------------------------------------
# signals


def vote_probabilities(sample: Sample, noise: float = 0.0) -> np.ndarray:
    """p(vote = j | x) of one annotator: (1 - noise) p(j | x) + noise / k, shape (n, k)."""
    noise = _check_prob(noise, "noise")
    k = sample.num_classes
    return (1 - noise) * sample.posterior + noise / k


def hard_labels(sample: Sample, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """The true class of each example, replaced by a uniform random class with prob. ``noise``; (n,)."""
    noise = _check_prob(noise, "noise")
    if sample.split != "source":
        raise ValueError("hard labels are given on source examples; got a transfer sample")
    rng = np.random.default_rng([int(seed), 1])
    y = sample.y.copy()
    flip = rng.random(sample.n) < noise
    y[flip] = rng.integers(0, sample.num_classes, size=int(flip.sum()))
    return y


def soft_labels(sample: Sample, votes: Optional[int] = 5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """m annotators' vote counts, int (n, k) summing to m; or with ``votes=None`` the (noisy)
    exact posterior, float (n, k) summing to 1."""
    q = vote_probabilities(sample, noise)
    if votes is None:
        return q
    m = int(votes)
    if m < 1:
        raise ValueError(f"votes must be >= 1, got {votes}")
    rng = np.random.default_rng([int(seed), 2])
    # inverse-CDF sampling of m votes per row, vectorised
    cdf = np.cumsum(q, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random((sample.n, m))
    picks = (u[:, :, None] > cdf[:, None, :]).sum(2)  # (n, m) class of each vote
    counts = np.zeros_like(q, dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(sample.n), m), picks.ravel()), 1)
    return counts


def log_similarity(log_post_a: np.ndarray, log_post_b: np.ndarray) -> np.ndarray:
    """log sum_j p(j|a) p(j|b): the log probability that a and b share a class, shape (n,)."""
    s = log_post_a + log_post_b
    top = s.max(1)
    return top + np.log(np.exp(s - top[:, None]).sum(1))


def triplet_truth(sample: Sample, index: np.ndarray) -> np.ndarray:
    """Noise-free triplet answers for rows (a, b, c) of ``index`` (n, 3): 1 when a is strictly
    more similar to b than to c, 0 when to c, -1 for an exact tie."""
    lp = sample.log_posterior
    sab = log_similarity(lp[index[:, 0]], lp[index[:, 1]])
    sac = log_similarity(lp[index[:, 0]], lp[index[:, 2]])
    return np.where(sab > sac, 1, np.where(sab < sac, 0, -1))


def triplet_queries(n_examples: int, n_triplets: int, seed: int = 0) -> np.ndarray:
    """Random triplets (a, b, c) of distinct example indices, shape (n_triplets, 3)."""
    if n_examples < 3:
        raise ValueError(f"triplets need at least 3 examples, got a sample of {n_examples}")
    rng = np.random.default_rng([int(seed), 3])
    idx = rng.integers(0, n_examples, size=(int(n_triplets), 3))
    while True:  # redraw rows with a repeated index until all triples are distinct
        bad = (idx[:, 0] == idx[:, 1]) | (idx[:, 0] == idx[:, 2]) | (idx[:, 1] == idx[:, 2])
        if not bad.any():
            return idx.astype(np.int64)
        idx[bad] = rng.integers(0, n_examples, size=(int(bad.sum()), 3))


def triplets(sample: Sample, n_triplets: int, noise: float = 0.0, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Random triplet queries and the annotator's answers.

    Returns:
        (index, answer): index (n_triplets, 3) of rows (a, b, c) into the sample; answer
        (n_triplets,) 1 if "a is more similar to b", 0 if "to c". Ties and, with probability
        ``noise``, any answer are decided by a fair coin.
    """
    noise = _check_prob(noise, "noise")
    index = triplet_queries(sample.n, n_triplets, seed)
    truth = triplet_truth(sample, index)
    rng = np.random.default_rng([int(seed), 4])
    coin = rng.integers(0, 2, size=len(index))
    guess = (truth < 0) | (rng.random(len(index)) < noise)
    return index, np.where(guess, coin, truth).astype(np.int64)

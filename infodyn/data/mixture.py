"""A seeded Gaussian mixture for controlled experiments.

``classes`` isotropic Gaussians in ``dims`` dimensions with within-class standard deviation
``noise`` and ``n_per_class`` samples each. The class means are placed so that:

- when classes <= dims + 1, every pair of means is exactly ``separation`` apart (a regular
  simplex centred at the origin, turned by a seeded random rotation);
- otherwise the means are seeded standard-normal points, centred and scaled so that the
  closest pair is ``separation`` apart.

So ``separation / noise`` sets the difficulty; the means are in ``meta["means"]``.
"""
from __future__ import annotations

import numpy as np


def class_means(classes: int, dims: int, separation: float, rng: np.random.Generator) -> np.ndarray:
    """(classes, dims) means, pairwise distance ``separation`` (see the module docstring)."""
    if classes <= dims + 1:
        simplex = np.eye(classes) - 1.0 / classes          # centred, in a (classes-1)-dim subspace
        basis, _ = np.linalg.qr(simplex.T)                  # orthonormal columns spanning it
        coords = simplex @ basis[:, :classes - 1]           # (classes, classes-1), same distances
        rot, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
        means = coords @ rot[:classes - 1] if classes > 1 else np.zeros((1, dims))
        return means * (separation / np.sqrt(2.0))
    means = rng.normal(size=(classes, dims))
    means -= means.mean(0)
    d = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
    d[np.diag_indices(classes)] = np.inf
    return means * (separation / d.min())


def generate(seed: int = 0, classes: int = 4, dims: int = 8, separation: float = 3.0,
             noise: float = 1.0, n_per_class: int = 500):
    """x (classes*n_per_class, dims) float32 in a seeded order, y int64, classes, meta."""
    for key, val, lo in (("classes", classes, 2), ("dims", dims, 1), ("n_per_class", n_per_class, 1)):
        if int(val) != val or val < lo:
            raise ValueError(f"gaussian-mixture: {key} must be an integer >= {lo}, got {val!r}")
    for key, val in (("separation", separation), ("noise", noise)):
        if not np.isfinite(val) or val < 0:
            raise ValueError(f"gaussian-mixture: {key} must be finite and >= 0, got {val!r}")
    classes, dims, n_per_class = int(classes), int(dims), int(n_per_class)
    rng = np.random.default_rng(seed)
    means = class_means(classes, dims, float(separation), rng)
    y = np.repeat(np.arange(classes, dtype=np.int64), n_per_class)
    x = means[y] + float(noise) * rng.normal(size=(len(y), dims))
    order = rng.permutation(len(y))
    meta = {"source": "generated", "means": means.astype(np.float32)}
    return x[order].astype(np.float32), y[order], tuple(range(classes)), meta

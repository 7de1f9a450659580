"""The 12-bit task of Shwartz-Ziv and Tishby (2017), regenerated exactly from its rule.

The original data file may not be redistributed, so the task is rebuilt from the rule worked
out from it (see ``shared/ib12bit.md``): the 12 bits are the vertices of an icosahedron; for a
pattern with k active bits, a active neighbour pairs, b active antipodal pairs and
s = C(k, 2) - a - b active second-neighbour pairs, the label is 1 exactly when
23k + a - 5s - 8b >= 99. This gives 2118 positives of 4096, H(Y) = 0.99916 bits.

Inputs are 0/1 floats as in the original (``signed=True`` gives -1/+1). Row i holds the binary
digits of i, column 0 the most significant (the order of ``itertools.product([0, 1], repeat=12)``).
"""
from __future__ import annotations

import numpy as np

N_BITS = 12

#: the five icosahedron neighbours of each bit
NEIGHBOURS = (
    (1, 3, 5, 10, 11),
    (0, 2, 3, 4, 11),
    (1, 3, 4, 8, 9),
    (0, 1, 2, 8, 10),
    (1, 2, 6, 9, 11),
    (0, 6, 7, 10, 11),
    (4, 5, 7, 9, 11),
    (5, 6, 8, 9, 10),
    (2, 3, 7, 9, 10),
    (2, 4, 6, 7, 8),
    (0, 3, 5, 7, 8),
    (0, 1, 4, 5, 6),
)

#: the antipodal (opposite) vertex of each bit
ANTIPODE = (9, 7, 5, 6, 10, 2, 3, 1, 11, 0, 4, 8)

#: the rule's coefficients: 23k + a - 5s - 8b >= 99
THRESHOLD = 99


def patterns() -> np.ndarray:
    """All 4096 patterns, (4096, 12) uint8 0/1, row i = binary digits of i (column 0 = MSB)."""
    i = np.arange(2 ** N_BITS)[:, None]
    return ((i >> (N_BITS - 1 - np.arange(N_BITS))) & 1).astype(np.uint8)


def pair_counts(bits: np.ndarray):
    """(k, a, s, b) per pattern for 0/1 ``bits`` of shape (n, 12): active bits, active
    neighbour pairs, active second-neighbour pairs, active antipodal pairs."""
    bits = np.asarray(bits, dtype=np.int64)
    adj = np.zeros((N_BITS, N_BITS), dtype=np.int64)
    for i, nb in enumerate(NEIGHBOURS):
        adj[i, list(nb)] = 1
    anti = np.zeros((N_BITS, N_BITS), dtype=np.int64)
    anti[np.arange(N_BITS), ANTIPODE] = 1
    k = bits.sum(1)
    a = ((bits @ adj) * bits).sum(1) // 2
    b = ((bits @ anti) * bits).sum(1) // 2
    s = k * (k - 1) // 2 - a - b
    return k, a, s, b


def labels(bits: np.ndarray) -> np.ndarray:
    """The task's label (int64 0/1) of each 0/1 pattern in ``bits`` (n, 12)."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.shape[1] != N_BITS:
        raise ValueError(f"ib12bit labels: expected patterns of shape (n, 12), got {bits.shape}")
    k, a, s, b = pair_counts(bits)
    return (23 * k + a - 5 * s - 8 * b >= THRESHOLD).astype(np.int64)


def generate(seed: int = 0, signed: bool = False):
    """The full task: x (4096, 12) float32, y (4096,) int64, classes (0, 1), meta."""
    bits = patterns()
    y = labels(bits)
    x = bits.astype(np.float32)
    if signed:
        x = 2.0 * x - 1.0
    meta = {"source": "generated", "rule": "23k + a - 5s - 8b >= 99 on the icosahedron",
            "inputs": "-1/+1" if signed else "0/1"}
    return x, y, (0, 1), meta

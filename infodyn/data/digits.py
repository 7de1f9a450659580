"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes; no download).

Pixels are scaled from 0..16 to [0, 1]. ``as_image=True`` gives (1, 8, 8) images for CNNs,
otherwise flat (64,) vectors. The loader checks the sha256 of the bundled ``digits.csv.gz``
against the manifest (a warning, not an error, if a future scikit-learn re-packs the file).
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from infodyn._files import file_sha256

#: sha256 of sklearn/datasets/data/digits.csv.gz (scikit-learn 1.x); also in data_manifest.yaml
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def bundled_file() -> str:
    """Path of scikit-learn's bundled digits file."""
    import sklearn.datasets

    return os.path.join(os.path.dirname(sklearn.datasets.__file__), "data", "digits.csv.gz")


def generate(seed: int = 0, as_image: bool = False):
    """The full set: x (1797, 64) or (1797, 1, 8, 8) float32 in [0, 1], y (1797,) int64."""
    from sklearn.datasets import load_digits

    path = bundled_file()
    sha = None
    if os.path.exists(path):
        sha = file_sha256(path)
        if sha != DIGITS_SHA256:
            warnings.warn(f"digits: {path} has sha256 {sha}, expected {DIGITS_SHA256}; "
                          "scikit-learn's bundled file changed", UserWarning, stacklevel=3)
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    if as_image:
        x = x.reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    meta = {"source": "bundled", "file": "sklearn/datasets/data/digits.csv.gz", "file_sha256": sha}
    return x, y, tuple(range(10)), meta

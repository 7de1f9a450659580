"""Data sets: bundled, generated and user files, split into train / val / test with a seed.

    >>> from infodyn import data
    >>> ds = data.load("digits:0-4", seed=0)          # classes 0..4, recoded 0..4
    >>> ds.x_train.shape[1:], ds.num_classes, ds.classes
    ((64,), 5, (0, 1, 2, 3, 4))
    >>> x, y = data.load("ib12bit").all()            # all 4096 patterns, for the information plane
    >>> int(y.sum())
    2118

Names: :func:`available` lists them (``digits``, ``ib12bit``, ``gaussian-mixture``,
``mnist1d``); a path to a ``.npz`` with arrays ``x`` and ``y`` (or a folder of them) loads a
user data set. :func:`manifest` returns ``data_manifest.yaml``, which describes each one.
"""
from .dataset import Dataset, parse_classes
from .registry import available, load, manifest, parse_name, register, source_target

__all__ = ["Dataset", "available", "load", "manifest", "parse_classes", "parse_name", "register",
           "source_target"]

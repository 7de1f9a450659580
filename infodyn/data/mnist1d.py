"""MNIST-1D (Greydanus 2020) generated offline with the optional ``mnist1d`` package.

Only ``mnist1d.data.make_dataset`` is called, with ``get_dataset_args()`` (the package defaults:
5000 samples of 40-d signals, 10 classes, its generation seed 42) updated by the keyword
arguments given here; its download / pickle-cache paths are never used. Generation takes
under a second, so nothing is cached on disk.

By default the package's own test rows (the last 20%) stay the test set and the rest is split
train:val in the ratio of ``split`` (the default 0.6/0.2/0.2 gives 3000/1000/1000);
``official_test=False`` splits all rows stratified instead.
"""
from __future__ import annotations

import random

import numpy as np

_INSTALL = "the mnist1d data set needs the optional package mnist1d: pip install 'infodyn[mnist1d]'"
_FORBIDDEN = {"url"}


def _package():
    try:
        from mnist1d import data as m1d
    except ImportError as exc:
        raise ImportError(f"{_INSTALL} ({exc})") from exc
    return m1d


def generate(seed: int = 0, official_test: bool = True, as_image: bool = False, **args):
    """x (n, 40) or (n, 1, 40) float32, y (n,) int64, classes 0..9, meta, test-row mask.

    ``args`` override entries of ``mnist1d.data.get_dataset_args()`` (``num_samples``,
    ``final_seq_length``, noise scales ...); ``generation_seed`` sets its ``seed`` (default 42).
    ``seed`` of this function is only the split seed, so the default data are the canonical
    MNIST-1D set whatever the split seed.
    """
    m1d = _package()
    dargs = m1d.get_dataset_args(as_dict=True)
    accepted = (set(dargs) - _FORBIDDEN - {"seed"}) | {"generation_seed"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ValueError(f"mnist1d: unknown parameters {unknown}; accepted: official_test, "
                         f"as_image, {', '.join(sorted(accepted))}")
    if "generation_seed" in args:
        args["seed"] = args.pop("generation_seed")
    dargs.update(args)
    # make_dataset seeds the global numpy / random generators: leave the caller's state as it was
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = m1d.make_dataset(m1d.ObjectView(dict(dargs)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    if as_image:
        x = x[:, None, :]
    test = np.zeros(len(y), dtype=bool)
    test[len(d["y"]):] = True
    dargs.pop("url", None)
    meta = {"source": "package", "package": "mnist1d", "make_dataset_args": dargs}
    return x, y, tuple(range(len(d["templates"]["y"]))), meta, (test if official_test else None)

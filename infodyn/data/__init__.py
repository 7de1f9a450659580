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

Data as users keep them (all through the same :func:`load`, which also takes what a run
manifest's ``data.source`` / ``data.target`` hold: a string or a :class:`DataSpec`):

- a ``.npz`` with the user's own split (``x_train``, ``y_train``, ``x_test``, ``y_test``
  [, ``x_val``, ``y_val``]): given splits are kept, only missing ones are carved from train;
- an image folder, one subfolder per class (optionally under ``train/``, ``val/``, ``test/``),
  read with Pillow: ``load("pets/")`` or ``load({"images": "pets/", "size": [64, 64]})``;
- a torch ``Dataset`` factory ``load({"dataset": "mypkg.data:make", "kwargs": {...}})``
  returning a Dataset or ``{"train": ds, "test": ds}``;
- a Hugging Face ``save_to_disk`` folder ``load({"hf": "saved/", "input": "img", "label": "label"})``;
- any of them with ``mean`` / ``std`` / ``transform`` (see :mod:`infodyn.data.spec`).

Interface for an analysis engine (the same for in-memory :class:`Dataset` and on-demand
:class:`LazyDataset`)::

    ds = load(name_or_spec, seed=seed)
    s = ds.split("test")                 # "train" | "val" | "test"
    y = s.labels                         # int64 (n,), codes 0..ds.num_classes-1, no input read
    idx = np.sort(rng.choice(len(s), k, replace=False))   # subsample first ...
    x = s.read(idx)                      # ... then read: float32 (k, *input_shape)
    for pos, xb in s.batches(idx, 256): ...                # or batch by batch
    extract_features(model, s.take(idx), layers)          # reads batch by batch itself
    full = concat([ds.split(s) for s in ("train", "val", "test")])   # one order over all splits
    extract_features(model, full.take(rows), layers)
    ds.digest, s.digest                  # sha256 hex of what determines the inputs (cache keys)
    ds.split_params()                    # {"splits": {"train": "given" | "carved", ...}, ...}

``ds.digest``: in-memory sets hash their split arrays (x float32, y int64) - an edit of a
``.npz``, another seed, split, subset or transform changes it; image and ``save_to_disk``
folders hash every file's bytes (``digest: stat``: sizes and times), torch factories their
spec, kwargs, source file, labels and 8 sample inputs (``digest: full``: every input); see
:mod:`infodyn.data.sources`. ``ds.x_train`` etc. still work on a LazyDataset but read the whole
split into memory.
"""
from .dataset import Dataset, parse_classes
from .lazy import LazyDataset
from .registry import available, load, manifest, parse_name, register, source_target
from .spec import DataSpec, parse_data_spec
from .splits import ArraySplit, LazySplit, Transform, concat

__all__ = ["Dataset", "LazyDataset", "DataSpec", "ArraySplit", "LazySplit", "Transform",
           "available", "concat", "load", "manifest", "parse_classes", "parse_data_spec", "parse_name",
           "register", "source_target"]

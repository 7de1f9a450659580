"""Data sets read on demand (:class:`LazyDataset`) and :func:`load_spec`, which builds any data set
from a :class:`~infodyn.data.spec.DataSpec` (a manifest's mapping form).

A :class:`LazyDataset` has the interface of :class:`~infodyn.data.dataset.Dataset`: ``name``,
``classes``, ``num_classes``, ``role``, ``meta``, ``split(name)``, ``digest``, ``split_params()``,
``splits_given``; ``y_train``/``y_val``/``y_test`` are the labels. ``x_train``/``x_val``/
``x_test``, ``splits()`` and ``all()`` read every input of the split(s) into memory (kept for code
written for in-memory sets); an analysis of large data uses ``split(name).read(idx)`` instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .dataset import DEFAULT_SPLIT, check_split, class_subset, format_classes
from .splits import IDENTITY, SPLITS, LazySplit, Transform, _sha, carve
from .spec import DataSpec


class LazyDataset:
    """A labelled data set whose inputs are read by index from a reader (see module docstring)."""

    idx_train = idx_val = idx_test = None

    def __init__(self, name: str, splits: Dict[str, LazySplit], classes: Tuple[Any, ...],
                 role: str = "user", meta: Optional[Dict[str, Any]] = None):
        self.name, self._splits, self.classes = name, dict(splits), tuple(classes)
        self.role, self.meta = role, dict(meta or {})
        self._x: Dict[str, np.ndarray] = {}
        self._digest: Optional[str] = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def n(self) -> int:
        return sum(len(s) for s in self._splits.values())

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return self._splits["train"].input_shape

    @property
    def splits_given(self) -> Tuple[str, ...]:
        return tuple(s for s in SPLITS if self._splits[s].given)

    def split(self, name: str) -> LazySplit:
        if name not in self._splits:
            raise ValueError(f"{self.name}: no split {name!r}; splits are {SPLITS}")
        return self._splits[name]

    @property
    def digest(self) -> str:
        """sha256 hex over the classes and each split's digest (reader content digest, transform,
        rows taken, labels); see the readers in :mod:`infodyn.data.sources` for what the content
        digest covers."""
        if self._digest is None:
            self._digest = _sha([str(c) for c in self.classes],
                                *[self._splits[s].digest for s in SPLITS])
        return self._digest

    def split_params(self) -> Dict[str, Any]:
        from .dataset import Dataset

        return Dataset.split_params(self)  # same fields, read from meta and splits_given

    def _x_of(self, s: str) -> np.ndarray:
        if s not in self._x:
            self._x[s] = self._splits[s].arrays()[0]
        return self._x[s]

    x_train = property(lambda self: self._x_of("train"))
    x_val = property(lambda self: self._x_of("val"))
    x_test = property(lambda self: self._x_of("test"))
    y_train = property(lambda self: self._splits["train"].labels)
    y_val = property(lambda self: self._splits["val"].labels)
    y_test = property(lambda self: self._splits["test"].labels)

    def splits(self) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        return {s: (self._x_of(s), self._splits[s].labels) for s in SPLITS}

    def all(self) -> Tuple[np.ndarray, np.ndarray]:
        """Every sample in memory, train then val then test."""
        xs = [self._x_of(s) for s in SPLITS if len(self._splits[s])]
        return np.concatenate(xs), np.concatenate([self._splits[s].labels for s in SPLITS])

    def __repr__(self) -> str:
        sizes = "/".join(str(len(self._splits[s])) for s in SPLITS)
        return (f"LazyDataset({self.name!r}, train/val/test={sizes}, classes={self.num_classes}, "
                f"given={list(self.splits_given)}, role={self.role!r})")


def _int_labels(a: np.ndarray, name: str, split: str) -> np.ndarray:
    """Whole-number float or bool labels as int64; others as they are (checked by the caller)."""
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} [{split}]: labels must be class ids (integers or strings), got "
                             f"non-integer floats such as {a[np.flatnonzero(a != np.round(a))[:1]]}")
        return a.astype(np.int64)
    if a.ndim != 1:
        raise ValueError(f"{name} [{split}]: labels must be one per sample, got shape {a.shape}")
    return a


def from_readers(name: str, readers: Dict[str, Any], *, seed: int = 0, split=DEFAULT_SPLIT,
                 subset=None, transform: Transform = IDENTITY, role: str = "user",
                 meta: Optional[Dict[str, Any]] = None) -> LazyDataset:
    """A :class:`LazyDataset` from one reader per user split (``{"all": r}`` when unsplit).

    Classes are the sorted distinct raw labels over all splits; a subset keeps and recodes
    classes as in :func:`infodyn.data.dataset.build`; missing splits are carved by
    :func:`infodyn.data.splits.carve` with ``split`` fractions and ``seed``.
    """
    fr = check_split(split)
    raw = {k: _int_labels(np.asarray(r.labels), name, k) for k, r in readers.items()}
    kinds = {("str" if a.dtype.kind in "US" else "int") for a in raw.values() if a.size}
    if len(kinds) > 1:
        raise ValueError(f"{name}: labels mix strings and integers across splits {sorted(raw)}")
    allv = np.concatenate([a for a in raw.values()]) if raw else np.zeros(0)
    if allv.dtype.kind not in "iuUS" and allv.size:
        raise ValueError(f"{name}: labels must be integers or strings, got dtype {allv.dtype}")
    classes = np.unique(allv)
    codes = {k: np.searchsorted(classes, a).astype(np.int64) for k, a in raw.items()}
    classes_t = tuple(c.item() for c in classes)
    new_classes, _, recode = class_subset(classes_t, subset, name)
    kept = {k: np.flatnonzero(recode[c] >= 0) for k, c in codes.items()}
    plan = carve({k: codes[k][kept[k]] for k in readers}, fr, seed)
    splits = {}
    for s, (src, rows) in plan.items():
        reader_rows = kept[src][rows]
        splits[s] = LazySplit(readers[src], reader_rows, recode[codes[src][reader_rows]], s,
                              given=src == s, transform=transform)
    meta = dict(meta or {})
    meta.update(seed=int(seed), split=fr, splits_given=tuple(s for s in SPLITS if s in readers))
    if not transform.identity:
        meta["transform"] = transform.describe()
    names = next((r.class_names for r in readers.values() if getattr(r, "class_names", None)), None)
    if names and all(isinstance(c, int) and 0 <= c < len(names) for c in new_classes):
        meta["class_names"] = [names[c] for c in new_classes]
    if subset is not None:
        meta["subset"] = new_classes
    label = name if subset is None else f"{name}:{format_classes(new_classes)}"
    return LazyDataset(label, splits, new_classes, role, meta)


def make_transform(opts: Mapping[str, Any], base_dir: Optional[str], where: str) -> Transform:
    """A :class:`Transform` from ``mean``, ``std`` and ``transform`` ("module:callable")."""
    fn = spec = fdig = None
    if opts.get("transform"):
        from infodyn.data.sources import _module_file_sha
        from infodyn.runs.manifest import import_callable

        spec = opts["transform"]
        fn = import_callable(spec, search_dir=Path(base_dir) if base_dir else None,
                             where=f"{where}: transform")
        fdig = _module_file_sha(fn)
    return Transform(opts.get("mean"), opts.get("std"), fn, spec, fdig)


def _dataset_readers(spec: DataSpec, where: str, digest_mode: str):
    from infodyn.runs.manifest import import_callable

    from .sources import TorchReader, _module_file_sha, pick_splits

    fn = import_callable(spec.target, search_dir=Path(spec.base_dir) if spec.base_dir else None,
                         where=f"{where}: dataset")
    kwargs = spec.get("kwargs") or {}
    try:
        obj = fn(**kwargs)
    except Exception as exc:  # user code: say who called it
        raise ValueError(f"{where}: the data set callable {spec.target!r} (key 'dataset') raised "
                         f"{type(exc).__name__}: {exc}") from exc
    ident = [spec.target, kwargs, _module_file_sha(fn)]
    if isinstance(obj, Mapping):
        parts = pick_splits(dict(obj), where, spec.get("splits"))
    else:
        if spec.get("splits"):
            raise ValueError(f"{where}: 'splits' given but {spec.target} returned one data set "
                             f"({type(obj).__name__}), not a mapping of splits")
        parts = {"all": obj}
    return {k: TorchReader(d, f"{where}: {spec.target} [{k}]", ident, digest_mode, k,
                           spec.get("input"), spec.get("label"))
            for k, d in parts.items()}


def detect_kind(path: Path) -> str:
    """``npz``, ``hf`` or ``images`` for a path (file or folder)."""
    from .sources import is_hf_folder

    if path.is_file() or path.suffix == ".npz":
        return "npz"
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if any(q.suffix == ".npz" and q.is_file() for q in path.iterdir()):
        return "npz"
    if is_hf_folder(path):
        return "hf"
    return "images"


def load_spec(spec: DataSpec, seed: int = 0, *, split=None, classes=None,
              where: Optional[str] = None) -> Union["LazyDataset", Any]:
    """Load the data a :class:`DataSpec` names.

    Registered names and ``.npz`` data load into memory (a
    :class:`~infodyn.data.dataset.Dataset`, transform applied to the arrays); image folders,
    ``save_to_disk`` folders and ``dataset`` callables give a :class:`LazyDataset`. ``split`` and
    ``classes`` override the spec's own.
    """
    from dataclasses import replace

    from .registry import load

    where = where or f"data {spec}"
    opts = spec.options
    split = split if split is not None else opts.get("split")  # None: the data set's default
    subset = classes if classes is not None else opts.get("classes")
    transform = make_transform(opts, spec.base_dir, where)
    kind = spec.kind
    if kind == "path":
        kind = detect_kind(Path(spec.target))
        allowed = {"npz": {"sha256"}, "hf": {"input", "label", "size", "mode", "splits"},
                   "images": {"size", "mode"}}[kind]
        extra = sorted(k for k in opts if k in {"sha256", "size", "mode", "input", "label", "splits"}
                       and k not in allowed)
        if extra:
            raise ValueError(f"{where}: {spec.target} is read as {kind} data, which takes no "
                             f"key(s) {extra}")
        if kind == "npz" and opts.get("digest") == "stat":
            raise ValueError(f"{where}: 'digest: stat' applies to image and save_to_disk folders")
    if kind in ("name", "npz"):
        ds = load(spec.target, seed=seed, split=split, classes=subset, sha256=opts.get("sha256"),
                  **(opts.get("params") or {}))
        if transform.identity:
            return ds
        if isinstance(ds, LazyDataset):  # a path to an image / save_to_disk folder
            if any(not sp.transform.identity for sp in ds._splits.values()):
                raise ValueError(f"{where}: the data already have a transform")
            splits = {s: LazySplit(sp.reader, sp.rows, sp.labels, sp.name, sp.given, transform)
                      for s, sp in ds._splits.items()}
            return LazyDataset(ds.name, splits, ds.classes, ds.role,
                               dict(ds.meta, transform=transform.describe()))
        arrays = {f"x_{s}": transform(getattr(ds, f"x_{s}")) for s in SPLITS}
        return replace(ds, meta=dict(ds.meta, transform=transform.describe()), **arrays)
    digest_mode = opts.get("digest") or ("spec" if kind == "dataset" else "content")
    if kind == "dataset":
        readers = _dataset_readers(spec, where, digest_mode)
    elif kind == "images":
        from .sources import image_folder_readers

        readers = image_folder_readers(Path(spec.target), where, opts.get("mode", "RGB"),
                                       opts.get("size"), digest_mode)
    elif kind == "hf":
        from .sources import hf_readers

        readers = hf_readers(Path(spec.target), where, opts.get("input"), opts.get("label"),
                             opts.get("mode"), opts.get("size"), digest_mode, opts.get("splits"))
    else:  # pragma: no cover - parse_data_spec checks kinds
        raise ValueError(f"{where}: unknown data kind {kind!r}")
    meta = {"source": kind, "spec": spec.as_dict(), "digest_mode": digest_mode}
    name = spec.target if kind == "dataset" else str(spec)
    return from_readers(name, readers, seed=seed, split=DEFAULT_SPLIT if split is None else split,
                        subset=subset,
                        transform=transform, role="user", meta=meta)

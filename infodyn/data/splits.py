"""Splits that are read by index, input transforms, and the seeded stratified carving of splits.

A split is anything with this interface (both :class:`ArraySplit` and :class:`LazySplit` have it):

    len(split)                 number of samples n
    split.labels               int64 array (n,), class codes 0..num_classes-1 (cheap: no input is read)
    split.input_shape          shape of one input after the transform, e.g. (3, 32, 32)
    split.read(idx)            float32 array (len(idx), *input_shape): the inputs at positions idx
                               (0 <= idx < n, any order, repeats allowed), transform applied
    split.batches(idx, bs)     yields (positions, inputs) in chunks of at most bs samples
    split.take(idx)            a split of the samples at positions idx (nothing is read)
    split.arrays()             (x, y) of the whole split in memory
    split.digest               sha256 hex of what determines its inputs and labels
    split.given                True when the user's data named this split, False when infodyn
                               carved it (see :func:`carve`)

:func:`concat` joins splits into one (``concat([ds.split(s) for s in SPLITS])``: the full set,
train then val then test); ``concat(...).take(rows)`` is a view to hand to ``extract_features``.

Nothing here reads a file; the readers of :mod:`infodyn.data.sources` do.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

SPLITS = ("train", "val", "test")


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _positions(idx, n: int, what: str) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"{what}: boolean index must have shape ({n},), got {idx.shape}")
        return np.flatnonzero(idx)
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{what}: index must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64).reshape(-1)
    if idx.min() < -n or idx.max() >= n:
        raise ValueError(f"{what}: index out of range for {n} samples (min {idx.min()}, "
                         f"max {idx.max()})")
    return np.where(idx < 0, idx + n, idx)


class Transform:
    """What is done to every input after reading it: a batch callable, then ``(x - mean) / std``.

    Args:
        mean, std: a number, or one value per channel (axis 1 of the batch, axis 0 of a sample:
            C of (C, H, W), or one per feature of flat (d,) samples).
        fn: a callable taking a float32 array (b, *shape) and returning an array or tensor
            (b, *shape'); ``spec`` is its ``"module:callable"`` name, part of the digest.
        fn_digest: sha256 of the callable's source file (so an edit of it changes the digest).
    """

    def __init__(self, mean=None, std=None, fn: Optional[Callable] = None, spec: Optional[str] = None,
                 fn_digest: Optional[str] = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        for key, v in (("mean", self.mean), ("std", self.std)):
            if v is not None and (v.ndim > 1 or not np.all(np.isfinite(v))):
                raise ValueError(f"transform: {key} must be a number or a list of numbers, got {v.tolist()}")
        if self.std is not None and np.any(self.std <= 0):
            raise ValueError(f"transform: std must be > 0, got {self.std.tolist()}")
        self.fn, self.spec, self.fn_digest = fn, spec, fn_digest

    @property
    def identity(self) -> bool:
        return self.fn is None and self.mean is None and self.std is None

    def describe(self) -> Dict[str, Any]:
        """The transform's settings, for the table's params and the digest."""
        out: Dict[str, Any] = {}
        if self.fn is not None:
            out["transform"] = self.spec or getattr(self.fn, "__qualname__", repr(self.fn))
        if self.mean is not None:
            out["mean"] = self.mean.tolist()
        if self.std is not None:
            out["std"] = self.std.tolist()
        return out

    @property
    def digest(self) -> str:
        return _sha(self.describe(), self.fn_digest)

    def _per_channel(self, v: np.ndarray, x: np.ndarray, key: str) -> np.ndarray:
        if v.ndim == 0 or v.size == 1:
            return v.reshape(())
        if x.ndim < 2 or x.shape[1] != v.size:
            raise ValueError(f"transform: {key} has {v.size} values but inputs have shape "
                             f"{tuple(x.shape[1:])} (one value per channel, axis 0 of a sample)")
        return v.reshape((1, v.size) + (1,) * (x.ndim - 2))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fn is not None:
            n = len(x)
            out = self.fn(x)
            if hasattr(out, "detach"):
                out = out.detach().cpu().numpy()
            x = np.asarray(out, dtype=np.float32)
            if x.ndim == 0 or len(x) != n:
                raise ValueError(f"transform {self.spec or self.fn!r} returned shape {x.shape} for a "
                                 f"batch of {n}; it must keep the batch axis")
        if self.mean is not None:
            x = x - self._per_channel(self.mean, x, "mean")
        if self.std is not None:
            x = x / self._per_channel(self.std, x, "std")
        return np.asarray(x, dtype=np.float32)


IDENTITY = Transform()


class Split:
    """Common part of :class:`ArraySplit` and :class:`LazySplit` (see the module docstring)."""

    name: str = ""
    given: bool = True
    labels: np.ndarray

    def __len__(self) -> int:
        return int(len(self.labels))

    def read(self, idx) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def input_shape(self) -> Tuple[int, ...]:
        if len(self) == 0:
            raise ValueError(f"split {self.name!r} is empty; it has no input shape")
        return tuple(int(s) for s in self.read(np.zeros(1, np.int64)).shape[1:])

    def batches(self, idx=None, batch_size: int = 256) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """``(positions, inputs)`` chunks of at most ``batch_size`` samples, in the order of ``idx``
        (default: every sample in order)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        pos = np.arange(len(self)) if idx is None else _positions(idx, len(self), f"split {self.name!r}")
        for s in range(0, len(pos), batch_size):
            chunk = pos[s:s + batch_size]
            yield chunk, self.read(chunk)

    def arrays(self) -> Tuple[np.ndarray, np.ndarray]:
        """The whole split in memory: (x float32 (n, *input_shape), y int64 (n,))."""
        if len(self) == 0:
            return np.zeros((0,), np.float32), self.labels.copy()
        return self.read(np.arange(len(self))), self.labels.copy()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, n={len(self)}, "
                f"{'given' if self.given else 'carved by infodyn'})")


class ArraySplit(Split):
    """A split held in memory: ``x`` (n, *shape) float32 and ``y`` (n,) int64."""

    def __init__(self, x: np.ndarray, y: np.ndarray, name: str = "", given: bool = True):
        if len(x) != len(y):
            raise ValueError(f"split {name!r}: x has {len(x)} rows but y has {len(y)}")
        self.x, self.labels, self.name, self.given = x, np.asarray(y, dtype=np.int64), name, given
        self._digest: Optional[str] = None

    def read(self, idx) -> np.ndarray:
        return np.asarray(self.x[_positions(idx, len(self), f"split {self.name!r}")], dtype=np.float32)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])

    def take(self, idx) -> "ArraySplit":
        pos = _positions(idx, len(self), f"split {self.name!r}")
        return ArraySplit(self.x[pos], self.labels[pos], self.name, self.given)

    @property
    def digest(self) -> str:
        """sha256 of the split's x (float32) and y arrays: exactly what determines features."""
        if self._digest is None:
            self._digest = _sha(np.asarray(self.x, dtype=np.float32), self.labels)
        return self._digest


class LazySplit(Split):
    """A split read from a reader on demand: sample ``i`` is row ``rows[i]`` of ``reader``.

    ``reader`` has ``read(rows) -> float32 array`` and ``digest`` (see
    :mod:`infodyn.data.sources`); ``transform`` is applied to every batch read.
    """

    def __init__(self, reader, rows: np.ndarray, labels: np.ndarray, name: str = "",
                 given: bool = True, transform: Transform = IDENTITY):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.shape != np.shape(labels):
            raise ValueError(f"split {name!r}: {rows.shape} rows but labels {np.shape(labels)}")
        self.reader, self.rows, self.labels = reader, rows, np.asarray(labels, dtype=np.int64)
        self.name, self.given, self.transform = name, given, transform

    def read(self, idx) -> np.ndarray:
        pos = _positions(idx, len(self), f"split {self.name!r}")
        x = np.asarray(self.reader.read(self.rows[pos]), dtype=np.float32)
        if len(x) != len(pos):
            raise ValueError(f"split {self.name!r}: reader {self.reader!r} returned {len(x)} inputs "
                             f"for {len(pos)} rows")
        return x if self.transform.identity else self.transform(x)

    def take(self, idx) -> "LazySplit":
        pos = _positions(idx, len(self), f"split {self.name!r}")
        return LazySplit(self.reader, self.rows[pos], self.labels[pos], self.name, self.given,
                         self.transform)

    @property
    def digest(self) -> str:
        """sha256 of the reader's content digest, the transform, the rows taken and the labels."""
        return _sha(self.reader.digest, self.transform.digest, self.rows, self.labels)


class ConcatSplit(Split):
    """Several splits one after another (e.g. train, val, test as one full order); ``take`` and
    ``read`` dispatch to the parts, so ``concat(...).take(rows)`` can be handed to
    :func:`infodyn.runs.extract_features`, which reads it batch by batch."""

    def __init__(self, parts: Sequence[Split], name: str = "all"):
        self.parts, self.name = list(parts), name
        self.given = all(p.given for p in self.parts)
        self.labels = (np.concatenate([p.labels for p in self.parts]) if self.parts
                       else np.zeros(0, np.int64))
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])

    def read(self, idx) -> np.ndarray:
        pos = _positions(idx, len(self), f"split {self.name!r}")
        which = np.searchsorted(self._starts, pos, side="right") - 1
        out = None
        for k in np.unique(which):
            sel = np.flatnonzero(which == k)
            x = self.parts[k].read(pos[sel] - self._starts[k])
            if out is None:
                out = np.empty((len(pos),) + x.shape[1:], np.float32)
            elif x.shape[1:] != out.shape[1:]:
                raise ValueError(f"split {self.name!r}: part {self.parts[k].name!r} has inputs of "
                                 f"shape {x.shape[1:]}, another {out.shape[1:]}")
            out[sel] = x
        return out if out is not None else np.zeros((0,), np.float32)

    def take(self, idx) -> "ConcatSplit":
        pos = _positions(idx, len(self), f"split {self.name!r}")
        which = np.searchsorted(self._starts, pos, side="right") - 1
        if len(pos) and np.all(np.diff(which) >= 0):  # sorted by part: one view per part
            parts = [self.parts[k].take(pos[which == k] - self._starts[k]) for k in np.unique(which)]
            return ConcatSplit(parts, self.name)
        return ConcatSplit([_Rows(self, pos)], self.name)

    @property
    def digest(self) -> str:
        return _sha(*[p.digest for p in self.parts])


class _Rows(Split):
    """Positions of another split, in any order (what ``ConcatSplit.take`` gives for unsorted rows)."""

    def __init__(self, base: Split, pos: np.ndarray):
        self.base, self.pos, self.name, self.given = base, pos, base.name, base.given
        self.labels = base.labels[pos]

    def read(self, idx) -> np.ndarray:
        return self.base.read(self.pos[_positions(idx, len(self), f"split {self.name!r}")])

    def take(self, idx) -> "_Rows":
        return _Rows(self.base, self.pos[_positions(idx, len(self), f"split {self.name!r}")])

    @property
    def digest(self) -> str:
        return _sha(self.base.digest, self.pos)


def concat(parts: Sequence[Split], name: str = "all") -> ConcatSplit:
    """The splits one after another as one split (see :class:`ConcatSplit`)."""
    return ConcatSplit(parts, name)


def carve(labels: Dict[str, np.ndarray], fractions: Sequence[float], seed: int,
          ) -> Dict[str, Tuple[str, np.ndarray]]:
    """Which rows of the user's splits form infodyn's train / val / test.

    Args:
        labels: the user's splits: ``{user split: class codes (n,)}`` with keys among ``train``,
            ``val``, ``test`` (``train`` required), or ``{"all": codes}`` for unsplit data.
        fractions: (train, val, test) fractions (see :func:`infodyn.data.dataset.check_split`).
        seed: the seed of the carving.

    Returns:
        ``{split: (user split it is drawn from, sorted row indices)}`` for train, val, test.
        Given splits are kept whole. Missing ones are carved from the user's train rows (or
        all rows), stratified per class with the fractions renormalised over train and the
        missing splits: train + test given -> val = f_val / (f_train + f_val) of train. Each
        class is shuffled by its own generator seeded with (seed, code), as in
        :func:`infodyn.data.dataset.build`, and counts are rounded at the cumulative boundaries.
    """
    if "all" in labels:
        if len(labels) != 1:
            raise ValueError(f"splits: 'all' (unsplit data) cannot be combined with {sorted(labels)}")
        pool_name = "all"
    else:
        unknown = sorted(set(labels) - set(SPLITS))
        if unknown:
            raise ValueError(f"splits {unknown} are not among train, val, test")
        if "train" not in labels:
            raise ValueError(f"the data give splits {sorted(labels)} but no train split")
        pool_name = "train"
    fr = [float(f) for f in fractions]
    missing = [s for s in SPLITS if s not in labels or pool_name == "all"]
    out: Dict[str, Tuple[str, np.ndarray]] = {s: (s, np.arange(len(labels[s]), dtype=np.int64))
                                              for s in SPLITS if s not in missing}
    if not missing:
        return {s: out[s] for s in SPLITS}
    if pool_name == "train":  # the missing splits come out of the user's train rows
        missing = ["train"] + missing
    share = [fr[SPLITS.index(s)] for s in missing]
    total = sum(share)
    if total <= 0:
        raise ValueError(f"split fractions {tuple(fr)} give no samples to train")
    share = [f / total for f in share]
    y = np.asarray(labels[pool_name])
    parts: Dict[str, list] = {s: [] for s in missing}
    for code in np.unique(y):
        rows = np.flatnonzero(y == code)
        rows = rows[np.random.default_rng([int(seed), int(code)]).permutation(len(rows))]
        cum, start = 0.0, 0
        for s, f in zip(missing, share):
            cum += f
            stop = len(rows) if s == missing[-1] else int(np.floor(cum * len(rows) + 0.5))
            parts[s].append(rows[start:stop])
            start = stop
    for s in missing:
        rows = np.sort(np.concatenate(parts[s])) if parts[s] else np.zeros(0, np.int64)
        out[s] = (pool_name, rows.astype(np.int64))
    return {s: out[s] for s in SPLITS}

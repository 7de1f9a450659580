"""The :class:`Dataset` type, class-subset parsing and recoding, and the seeded stratified split.

Nothing here knows where data come from; the loaders in this package build a full labelled set
(x, y) and hand it to :func:`build` together with the class subset and split fractions.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_SPLIT = (0.6, 0.2, 0.2)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled data set in three splits.

    Attributes:
        name: the name it was loaded by, with its class subset if any (``"digits:0-4"``).
        x_train, x_val, x_test: float32 arrays of shape (n_split, *input_shape).
        y_train, y_val, y_test: int64 arrays of shape (n_split,), class codes 0..num_classes-1.
        classes: the original class id of each code: ``classes[code]`` (a tuple).
        role: what the data set is for (``"source/target"``, ``"information-plane"``,
            ``"controlled"``, ``"user"``; ``"source"`` / ``"target"`` after
            :func:`infodyn.data.source_target`).
        meta: provenance: ``source``, ``params``, ``seed``, ``split``, ``sha256`` of the full
            arrays (and of the file(s) for file-backed sets), and loader-specific entries.
        idx_train, idx_val, idx_test: the row of each sample in the full generated / loaded set
            (int64), so that splits of two class subsets of one set never share a sample.

    Within each split, samples keep the order of the full set (ascending ``idx_*``).
    ``split(name)`` gives one split with the read-by-index interface of
    :mod:`infodyn.data.splits`; ``digest`` is the sha256 of the split arrays.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: Tuple[Any, ...]
    role: str
    meta: Dict[str, Any] = field(default_factory=dict)
    idx_train: Optional[np.ndarray] = None
    idx_val: Optional[np.ndarray] = None
    idx_test: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def n(self) -> int:
        """Total number of samples over the three splits."""
        return len(self.y_train) + len(self.y_val) + len(self.y_test)

    def splits(self) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """``{"train": (x, y), "val": (x, y), "test": (x, y)}``."""
        return {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}

    def all(self) -> Tuple[np.ndarray, np.ndarray]:
        """Every sample of the three splits as one (x, y), in the order of the full set.

        For ``ib12bit`` this is all 4096 patterns in pattern order, the set over which the
        information plane is computed.
        """
        x = np.concatenate([self.x_train, self.x_val, self.x_test])
        y = np.concatenate([self.y_train, self.y_val, self.y_test])
        if self.idx_train is None or self.idx_val is None or self.idx_test is None:
            return x, y  # built by hand without row indices: train, val, test in turn
        order = np.argsort(np.concatenate([self.idx_train, self.idx_val, self.idx_test]),
                           kind="stable")
        return x[order], y[order]

    @property
    def splits_given(self) -> Tuple[str, ...]:
        """The splits taken as the data gave them (the rest infodyn carved with ``meta["split"]``)."""
        return tuple(self.meta.get("splits_given", ()))

    def split(self, name: str):
        """One split as an :class:`~infodyn.data.splits.ArraySplit` (``len``, ``labels``,
        ``read(idx)``, ``batches``, ``take``, ``digest``; see :mod:`infodyn.data.splits`)."""
        from .splits import SPLITS, ArraySplit

        if name not in SPLITS:
            raise ValueError(f"{self.name}: no split {name!r}; splits are {SPLITS}")
        if name not in self._split_views:  # one view per split, so its digest is computed once
            self._split_views[name] = ArraySplit(getattr(self, f"x_{name}"), getattr(self, f"y_{name}"),
                                                 name, given=name in self.splits_given)
        return self._split_views[name]

    @cached_property
    def _split_views(self) -> Dict[str, Any]:
        return {}

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the three splits' x (float32) and y arrays, in train, val, test order:
        exactly the inputs (after any transform) and labels features are computed from. An edit
        of a user file, another seed, split or class subset gives another digest."""
        from .splits import _sha

        return _sha(*[np.asarray(a, dtype=np.float32 if k.startswith("x") else np.int64)
                      for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
                      for a in [getattr(self, k)]])

    def split_params(self) -> Dict[str, Any]:
        """How the splits were made, for the results table's ``params``: ``{"splits": {"train":
        "given" | "carved", ...}, "split": fractions used for the carved ones, "seed": ...}``."""
        given = self.splits_given
        out: Dict[str, Any] = {"splits": {s: "given" if s in given else "carved"
                                          for s in ("train", "val", "test")}}
        if len(given) < 3:
            out["split"] = list(self.meta.get("split", ()))
            out["seed"] = self.meta.get("seed")
            if given:
                out["carved_from"] = "train"  # the missing splits come out of the given train
        if self.meta.get("transform"):
            out["transform"] = self.meta["transform"]
        return out

    def __repr__(self) -> str:
        sizes = "/".join(str(len(y)) for y in (self.y_train, self.y_val, self.y_test))
        return (f"Dataset({self.name!r}, train/val/test={sizes}, input_shape={self.input_shape}, "
                f"classes={self.num_classes}, role={self.role!r})")


_RANGE = re.compile(r"^\s*(-?\d+)\s*-\s*(-?\d+)\s*$")


def parse_classes(spec) -> Tuple[Any, ...]:
    """A class subset from ``"0-4"``, ``"0,2,4"``, ``"0-2,7"`` or a sequence of class ids.

    Ranges are inclusive. Tokens that are not integers are kept as strings (class names of a
    user data set). The order given is the order of the new codes: ``"4,2,0"`` codes 4 as 0.
    """
    if isinstance(spec, str):
        out = []
        for tok in spec.split(","):
            tok = tok.strip()
            if not tok:
                raise ValueError(f"class subset {spec!r}: empty entry")
            m = _RANGE.match(tok)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ValueError(f"class subset {spec!r}: range {tok!r} runs backwards")
                out.extend(range(lo, hi + 1))
            else:
                try:
                    out.append(int(tok))
                except ValueError:
                    out.append(tok)
        classes = tuple(out)
    else:
        classes = tuple(c.item() if isinstance(c, np.generic) else c for c in spec)
    if not classes:
        raise ValueError(f"class subset {spec!r} is empty")
    dup = sorted({str(c) for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"class subset {spec!r} lists classes more than once: {', '.join(dup)}")
    return classes


def format_classes(classes: Sequence[Any]) -> str:
    """The inverse of :func:`parse_classes` for names: (0,1,2,3,4) -> ``"0-4"``."""
    ints = all(isinstance(c, (int, np.integer)) for c in classes)
    if ints and len(classes) > 2 and list(classes) == list(range(classes[0], classes[0] + len(classes))):
        return f"{classes[0]}-{classes[-1]}"
    return ",".join(str(c) for c in classes)


def check_split(split) -> Tuple[float, float, float]:
    """Validate (train, val, test) fractions; a pair (train, test) means no validation set."""
    try:
        fr = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        raise ValueError(f"split must be (train, val, test) fractions, got {split!r}") from None
    if len(fr) == 2:
        fr = (fr[0], 0.0, fr[1])
    if len(fr) != 3:
        raise ValueError(f"split must have 2 or 3 fractions (train, [val,] test), got {split!r}")
    if any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6 or fr[0] <= 0:
        raise ValueError(f"split fractions must be >= 0, sum to 1 and give train > 0, got {split!r}")
    return fr


def array_sha256(x: np.ndarray, y: np.ndarray) -> str:
    """sha256 of x (float32) and y (as stored), a fingerprint of the data's exact content."""
    h = hashlib.sha256()
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def class_subset(classes: Tuple[Any, ...], subset, name: str) -> Tuple[Tuple[Any, ...], List[int], np.ndarray]:
    """(kept classes in the order asked, their old codes, recode) for a class subset:
    ``recode[code]`` is the new code of an old class code, -1 for a class left out. ``subset`` None keeps every class; ids
    may be given as values or as their strings. Unknown ids -> ValueError naming ``name``."""
    if subset is None:
        keep_codes, new_classes = list(range(len(classes))), tuple(classes)
    else:
        wanted = parse_classes(subset)
        lookup = {c: i for i, c in enumerate(classes)}
        lookup.update({str(c): i for i, c in enumerate(classes)})
        missing = [c for c in wanted if c not in lookup and str(c) not in lookup]
        if missing:
            raise ValueError(f"{name}: classes {missing} not in the data set; it has classes "
                             f"{format_classes(classes)}")
        keep_codes = [lookup[c] if c in lookup else lookup[str(c)] for c in wanted]
        new_classes = tuple(classes[k] for k in keep_codes)
    recode = np.full(len(classes), -1, dtype=np.int64)
    recode[keep_codes] = np.arange(len(keep_codes))
    return new_classes, keep_codes, recode


def build(name: str, x: np.ndarray, y: np.ndarray, classes: Sequence[Any], *, role: str,
          meta: Dict[str, Any], seed: int = 0, split=DEFAULT_SPLIT, subset=None,
          fixed_test: Optional[np.ndarray] = None, origin: Optional[np.ndarray] = None,
          given: Sequence[str] = ()) -> Dataset:
    """Subset, recode and split a full labelled set into a :class:`Dataset`.

    Args:
        x: (n, *input_shape) array; stored as float32.
        y: (n,) int codes 0..len(classes)-1 into ``classes``.
        classes: original class ids, one per code.
        seed: split seed. Each class is shuffled by its own generator seeded with
            (seed, code in the full set), so the split of one class does not depend on which
            other classes are kept: ``digits:0-4`` and ``digits:5-9`` are each the matching part
            of ``digits`` with the same seed.
        split: (train, val, test) fractions, applied per class (stratified); the per-class counts
            are rounded at the cumulative boundaries, so they always add up.
        subset: class ids to keep (see :func:`parse_classes`), coded in the order given.
        fixed_test: optional boolean mask of rows that form the test set as given by the source
            (mnist1d's own test rows); the rest is split train:val in the ratio of ``split``.
        origin, given: the user's own split of each row (0 train, 1 val, 2 test; int array (n,))
            and the names of the splits the user gave. Given splits are kept; the missing ones
            are carved from the user's train rows (see :func:`infodyn.data.splits.carve`).
    """
    classes = tuple(classes)
    fr = check_split(split)
    y = np.asarray(y)
    new_classes, keep_codes, recode = class_subset(classes, subset, name)

    parts = {"train": [], "val": [], "test": []}
    if origin is not None:
        from .splits import SPLITS, carve

        origin = np.asarray(origin)
        keep = np.isin(y, keep_codes)
        where, labels = {}, {}
        for k, s in enumerate(SPLITS):
            if s in given:
                where[s] = np.flatnonzero((origin == k) & keep)
                labels[s] = y[where[s]]
        for s, (src, rows) in carve(labels, fr, seed).items():
            parts[s].append(where[src][rows])
        keep_codes = []  # done
    for code in keep_codes:
        rows = np.flatnonzero(y == code)
        if fixed_test is not None:
            parts["test"].append(rows[fixed_test[rows]])
            rows = rows[~fixed_test[rows]]
            ftr = fr[0] / (fr[0] + fr[1])
            bounds = (int(np.floor(ftr * len(rows) + 0.5)), len(rows))
        else:
            bounds = (int(np.floor(fr[0] * len(rows) + 0.5)),
                      int(np.floor((fr[0] + fr[1]) * len(rows) + 0.5)))
        rows = rows[np.random.default_rng([int(seed), int(code)]).permutation(len(rows))]
        parts["train"].append(rows[:bounds[0]])
        parts["val"].append(rows[bounds[0]:bounds[1]])
        if fixed_test is None:
            parts["test"].append(rows[bounds[1]:])
    idx = {k: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64)
           for k, v in parts.items()}
    x = np.asarray(x, dtype=np.float32)
    out = {}
    for k, rows in idx.items():
        out[f"x_{k}"] = x[rows]
        out[f"y_{k}"] = recode[y[rows]]
    meta = dict(meta)
    meta.update(seed=int(seed), split=fr)
    if origin is not None:
        meta["splits_given"] = tuple(s for s in ("train", "val", "test") if s in given)
    elif fixed_test is not None:
        meta["splits_given"] = ("test",)
    if subset is not None:
        meta["subset"] = new_classes
    return Dataset(name=name, classes=new_classes, role=role, meta=meta,
                   idx_train=idx["train"], idx_val=idx["val"], idx_test=idx["test"], **out)

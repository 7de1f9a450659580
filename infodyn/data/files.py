"""User data sets: one ``.npz`` with arrays ``x`` and ``y``, or a folder of them.

A file may instead hold the user's own split: ``x_train``, ``y_train``, ``x_test``, ``y_test``
and optionally ``x_val``, ``y_val``; :func:`infodyn.data.load` keeps that split (and carves only a
missing val split from train).

A folder's files are concatenated in sorted name order. Files are read with
``np.load(..., allow_pickle=False)``; nothing is ever unpickled.

Checksums: ``sha256`` is the hex sha256 of the file; for a folder either a dict
``{file name: sha256}`` or one combined digest, the sha256 of the lines
``"<sha256>  <file name>\\n"`` in sorted name order (the text ``sha256sum *.npz`` prints, so
``sha256sum *.npz | sha256sum`` computes it). A mismatch raises ValueError naming the file and
both hashes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from infodyn._files import file_sha256




def combined_sha256(hashes: Dict[str, str]) -> str:
    """One digest for a folder: sha256 of ``"<hash>  <name>\\n"`` lines in sorted name order."""
    text = "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))
    return hashlib.sha256(text.encode()).hexdigest()


def npz_files(path: Union[str, Path]) -> List[Path]:
    """The .npz file itself, or the .npz files of a folder in sorted name order."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix == ".npz" and q.is_file())
        if not files:
            raise ValueError(f"{p}: folder holds no .npz files")
        return files
    if not p.exists():
        raise ValueError(f"{p}: no such file or folder")
    if p.suffix != ".npz":
        raise ValueError(f"{p}: expected a .npz file with arrays x and y, or a folder of them")
    return [p]


def _check_hashes(p: Path, files: List[Path], hashes: Dict[str, str], sha256) -> None:
    if sha256 is None:
        return
    if isinstance(sha256, dict):
        for name, want in sha256.items():
            if name not in hashes:
                raise ValueError(f"{p}: sha256 given for {name!r}, which is not among its files "
                                 f"{sorted(hashes)}")
            if hashes[name].lower() != str(want).lower():
                raise ValueError(f"{p / name if p.is_dir() else p}: sha256 mismatch: expected "
                                 f"{want}, file has {hashes[name]}")
        return
    got = hashes[files[0].name] if len(files) == 1 and not p.is_dir() else combined_sha256(hashes)
    if got.lower() != str(sha256).lower():
        what = "file" if not p.is_dir() else "combined digest of its .npz files"
        raise ValueError(f"{p}: sha256 mismatch: expected {sha256}, {what} has {got}")


_SPLIT_KEYS = ("train", "val", "test")


def _check(f: Path, x: np.ndarray, y: np.ndarray, xs: str = "x", ys: str = "y"):
    if y.ndim != 1:
        raise ValueError(f"{f}: {ys} must be one label per row, shape (n,), got {y.shape}")
    if x.ndim < 2 or len(x) != len(y):
        raise ValueError(f"{f}: {xs} must have shape (n, ...) with n = len({ys}) = {len(y)}, "
                         f"got {xs} {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{f}: {xs} must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"{f}: {xs} {x.shape} holds {bad} NaN or inf values")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{f}: {ys} must hold class labels (integers or strings), got "
                             f"non-integer floats")
        y = y.astype(np.int64)
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "USb"):
        raise ValueError(f"{f}: {ys} must hold class labels (integers or strings), got dtype {y.dtype}")
    return x, y


def _read_splits(f: Path) -> Dict[str, tuple]:
    """``{"all": (x, y)}`` for arrays x, y; ``{"train": (x, y), "test": ..., ["val": ...]}`` for
    arrays x_train, y_train, x_test, y_test (and optionally x_val, y_val): the user's split."""
    try:
        with np.load(f, allow_pickle=False) as z:
            keys = list(z.files)
            if "x" in keys and "y" in keys:
                return {"all": _check(f, z["x"], z["y"])}
            got = {s for s in _SPLIT_KEYS if f"x_{s}" in keys or f"y_{s}" in keys}
            if "train" not in got:
                raise ValueError(f"{f}: expected arrays 'x' and 'y', or 'x_train', 'y_train' "
                                 f"(with 'x_test', 'y_test' and optionally 'x_val', 'y_val'); "
                                 f"found {keys}")
            out = {}
            for s in _SPLIT_KEYS:
                if s not in got:
                    continue
                if f"x_{s}" not in keys or f"y_{s}" not in keys:
                    raise ValueError(f"{f}: has {'x' if f'x_{s}' in keys else 'y'}_{s} but not "
                                     f"{'y' if f'x_{s}' in keys else 'x'}_{s}; found {keys}")
                out[s] = _check(f, z[f"x_{s}"], z[f"y_{s}"], f"x_{s}", f"y_{s}")
    except ValueError as exc:
        if str(f) in str(exc):
            raise
        raise ValueError(f"{f}: cannot read without pickle ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ValueError(f"{f}: not a readable .npz file ({exc})") from exc
    shapes = {s: x.shape[1:] for s, (x, _) in out.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{f}: the splits' inputs differ in shape: "
                         + ", ".join(f"x_{s} rows {v}" for s, v in shapes.items()))
    return out


def read(path: Union[str, Path], sha256: Optional[Union[str, Dict[str, str]]] = None):
    """Read a user data set: x float32 (n, *shape), y int64 codes, classes, meta, origin.

    The original labels are kept, sorted, as ``classes``; y holds their codes. ``origin`` is None
    when the files hold plain ``x``, ``y`` arrays, else an int8 array (n,) giving each row's own
    split (0 train, 1 val, 2 test) from arrays ``x_train``/``y_train``, ``x_val``/``y_val``,
    ``x_test``/``y_test``; then ``meta["splits_given"]`` names the splits found. Every file of a
    folder must use the same form.
    """
    p = Path(path).expanduser()
    files = npz_files(p)
    hashes = {f.name: file_sha256(f) for f in files}
    _check_hashes(p, files, hashes, sha256)
    xs, ys, origin, given = [], [], [], set()
    split_form = None
    for f in files:
        parts = _read_splits(f)
        form = "all" not in parts
        if split_form is not None and form != split_form:
            raise ValueError(f"{f}: holds {'split arrays (x_train, ...)' if form else 'x, y'} but "
                             f"{files[0]} holds {'split arrays' if split_form else 'x, y'}")
        split_form = form
        for s, (x, y) in parts.items():
            if xs and x.shape[1:] != xs[0].shape[1:]:
                raise ValueError(f"{f}: x rows have shape {x.shape[1:]}, but {files[0]} has "
                                 f"{xs[0].shape[1:]}")
            if ys and (y.dtype.kind in "US") != (ys[0].dtype.kind in "US"):
                raise ValueError(f"{f}: labels are {y.dtype}, but {files[0]} has {ys[0].dtype}")
            xs.append(x)
            ys.append(y)
            if form:
                given.add(s)
                origin.append(np.full(len(y), _SPLIT_KEYS.index(s), dtype=np.int8))
    x = np.concatenate(xs).astype(np.float32)
    classes, y = np.unique(np.concatenate(ys), return_inverse=True)
    meta = {"source": "user file", "path": os.fspath(p), "files": [f.name for f in files],
            "file_sha256": hashes if p.is_dir() else hashes[files[0].name]}
    if p.is_dir():
        meta["combined_sha256"] = combined_sha256(hashes)
    out = (x, y.astype(np.int64).reshape(-1), tuple(c.item() for c in classes), meta)
    if split_form:
        meta["splits_given"] = tuple(s for s in _SPLIT_KEYS if s in given)
        return out + (np.concatenate(origin),)
    return out + (None,)

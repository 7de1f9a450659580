"""Atomic file writes: a reader sees either the old file or the complete new one, never half of it.

Every writer writes to a temporary file in the destination's own folder (so the final
``os.replace`` is a rename on one file system, atomic on POSIX and Windows), flushes and fsyncs
it, then renames it over the destination. On any error the temporary file is removed and the
destination is left as it was.

Temporary names start with ``.`` and end with ``.tmp``, so globs such as ``*.pt`` or ``*.npy``
never pick up a half-written file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

# mkstemp creates files with mode 0600; a finished file gets the mode an ordinary open() would give.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy",
           "atomic_write_dataframe", "atomic_torch_save"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it is moved onto ``path``.

    Write the file (with any library) to the yielded path inside the ``with`` block. The parent
    folder is created when missing. If the block raises, the temporary file is deleted and
    ``path`` is untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=str(dest.parent))
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
    _fsync_dir(dest.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(str(folder), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_save_npy(path: PathLike, array) -> Path:
    """Save one array as ``.npy`` atomically (no pickled objects: object arrays are refused).

    The file is written exactly at ``path`` (``np.save`` would otherwise append ``.npy`` to a
    name without that suffix).
    """
    import numpy as np

    arr = np.asarray(array)
    if arr.dtype == object:
        raise ValueError(f"{path}: refusing to save an object array (shape {arr.shape}); "
                         "it would need pickle to load")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    return Path(path)


def atomic_write_dataframe(path: PathLike, df, **kwargs) -> Path:
    """Write a pandas DataFrame atomically; the format follows the suffix.

    ``.csv`` (default for any other suffix) via ``to_csv(index=False)``; ``.parquet`` via
    ``to_parquet`` (needs pyarrow). Extra keyword arguments go to the pandas writer.
    """
    dest = Path(path)
    with atomic_path(dest) as tmp:
        if dest.suffix == ".parquet":
            df.to_parquet(tmp, **kwargs)
        else:
            kwargs.setdefault("index", False)
            df.to_csv(tmp, **kwargs)
    return dest


def atomic_torch_save(path: PathLike, obj) -> Path:
    """``torch.save(obj, path)`` atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)

"""File helpers shared across packages: content hashes, and claiming an output folder.

Both are low-level (nothing of infodyn is imported here), so the data sets, the run loader, the
demo and the CTC experiment use one copy each.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Union

_HASH_MEMO: Dict[tuple, str] = {}


def file_sha256(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks (memoised per path, size and
    modification time)."""
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _HASH_MEMO:
        return _HASH_MEMO[memo_key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    _HASH_MEMO[memo_key] = digest = h.hexdigest()
    return digest


def claim_output_folder(out: Union[str, Path], marker: str, writer: str, choose: str, note: str) -> Path:
    """Creates the folder ``out``, or checks that an existing, non-empty one holds the file
    ``marker`` (so ``writer`` made it): no user file is ever overwritten. Writes ``note`` to the
    marker. ``choose`` ends each error message (what the user should do instead)."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"{out} exists and is not a folder; {choose}")
        if any(out.iterdir()) and not (out / marker).exists():
            raise ValueError(f"{out} exists and holds files that {writer} did not write; "
                             f"{choose} (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    (out / marker).write_text(note)
    return out

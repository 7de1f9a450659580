"""A disk cache of extracted features, so a second analysis does not extract again.

Entries are keyed by what determines the features: the checkpoint's *content* hash (sha256 of
the file's bytes, so renaming or copying a run keeps its cache valid and a rewritten file gets a
fresh entry), the layer, the data set (name and a digest of the input array), the transform and
the pooling. Each entry is one ``.npy`` file written atomically (temporary file + rename), so a
half-written entry is never read; an interrupted analysis resumes from the entries it finished.
An entry that cannot be read (disk trouble) is deleted, recomputed and a warning is given.

Layout: ``ROOT/ab/abcdef....npy`` where the name is a sha256 of the canonical JSON of the key.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from infodyn._atomic import atomic_path, atomic_save_npy
from infodyn.runs.load import checkpoint_sha256

__all__ = ["FeatureCache", "array_digest", "cached_features"]

CACHE_VERSION = 1




def array_digest(x) -> str:
    """sha256 hex digest of an array's dtype, shape and bytes (tensors are moved to CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(x))
    h = hashlib.sha256(f"{arr.dtype.str}|{arr.shape}|".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def _canonical(parts) -> str:
    if isinstance(parts, Mapping):
        parts = {str(k): v for k, v in parts.items()}
    return json.dumps({"v": CACHE_VERSION, "parts": parts}, sort_keys=True, default=str,
                      separators=(",", ":"))


class FeatureCache:
    """Feature arrays on disk under ``root``, addressed by key parts.

    Key parts are a mapping (or sequence) of JSON-serialisable values; equal parts give the same
    entry. ``hits`` and ``misses`` count lookups since creation.
    """

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def key(self, parts: Union[Mapping[str, Any], Sequence[Any]]) -> str:
        """The entry name (sha256 hex) for these key parts."""
        return hashlib.sha256(_canonical(parts).encode()).hexdigest()

    def path(self, parts) -> Path:
        k = self.key(parts)
        return self.root / k[:2] / f"{k}.npy"

    def __contains__(self, parts) -> bool:
        return self.path(parts).is_file()

    def get(self, parts, mmap: bool = False) -> Optional[np.ndarray]:
        """The cached array (a read-only memory map when ``mmap``), or None when absent (or
        unreadable: then the entry is removed)."""
        p = self.path(parts)
        if not p.is_file():
            self.misses += 1
            return None
        try:
            arr = np.load(p, allow_pickle=False, mmap_mode="r" if mmap else None)
        except Exception as exc:  # truncated by a disk error, or not an .npy at all
            warnings.warn(f"feature cache entry {p} is unreadable ({exc}); recomputing", stacklevel=2)
            try:
                os.unlink(p)
            except OSError:
                pass
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, parts, array) -> Path:
        """Store ``array`` atomically under these key parts; returns the file."""
        return atomic_save_npy(self.path(parts), np.asarray(array))

    def get_or_compute(self, parts, fn: Callable[[], Any]) -> np.ndarray:
        """The cached array for ``parts``, else ``fn()`` stored and returned."""
        arr = self.get(parts)
        if arr is None:
            arr = np.asarray(fn())
            self.put(parts, arr)
        return arr


def cached_features(cache: Optional[FeatureCache], *, checkpoint, layers: Sequence[str],
                    dataset: str, x, model, pool: str = "auto", amp: bool = False,
                    transform: str = "none", batch_size: int = 512, device="auto",
                    data_digest: Optional[str] = None,
                    extra: Optional[Mapping[str, Any]] = None,
                    mmap_bytes: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Features of ``layers`` for one checkpoint, from the cache where present.

    Only the layers missing from the cache are extracted (in one forward pass), and each is
    stored as soon as it is computed, so an interrupted run resumes.

    Args:
        cache: a :class:`FeatureCache`, or None to always extract.
        checkpoint: the checkpoint file (its content hash is the key), or a string that
            identifies the weights (e.g. a digest you computed).
        layers: exact module names (resolve patterns first with ``resolve_layers``).
        dataset: a name for the inputs, e.g. ``"digits:0-4/test"``.
        x: the inputs (n, ...); their digest joins the key unless ``data_digest`` is given.
        model: an ``nn.Module`` with the checkpoint's weights loaded, or a zero-argument
            callable returning one; the callable is only called when something is missing,
            so a warm cache never loads the checkpoint.
        pool, amp, batch_size, device: as in :func:`infodyn.runs.extract_features`.
        transform: a name for any preprocessing applied to ``x`` (part of the key).
        extra: further key parts (e.g. the model spec).
        mmap_bytes: a layer's features larger than this are written batch by batch into a
            memory-mapped cache entry during the forward pass and returned as a read-only memory
            map, so memory does not grow with the data set (None: always in memory).

    Returns:
        ``{layer: float32 array (n, d)}`` in the order of ``layers``.
    """
    from infodyn.runs.extract import extract_features

    layers = list(layers)
    if cache is None:
        m = model() if callable(model) and not hasattr(model, "named_modules") else model
        return extract_features(m, x, layers, batch_size=batch_size, device=device, pool=pool, amp=amp)
    ck = (checkpoint_sha256(checkpoint) if isinstance(checkpoint, os.PathLike) or Path(str(checkpoint)).exists()
          else str(checkpoint))
    base = {"checkpoint": ck, "dataset": dataset, "data": data_digest or array_digest(x), "transform": transform,
            "pool": pool, "amp": bool(amp), **dict(extra or {})}
    paths = {layer: cache.path({**base, "layer": layer}) for layer in layers}

    def big(nbytes: int) -> bool:
        return mmap_bytes is not None and nbytes > mmap_bytes

    found: Dict[str, np.ndarray] = {}
    for layer in layers:
        arr = cache.get({**base, "layer": layer},
                        mmap=paths[layer].is_file() and big(paths[layer].stat().st_size))
        if arr is not None:
            found[layer] = arr
    missing = [layer for layer in layers if layer not in found]
    if missing:
        m = model() if callable(model) and not hasattr(model, "named_modules") else model
        with contextlib.ExitStack() as stack:  # streamed entries are published only if all goes well
            streamed: Dict[str, np.ndarray] = {}

            def allocate(layer: str, shape) -> np.ndarray:
                """Large outputs go straight into a memory-mapped .npy that becomes their entry."""
                if not big(4 * shape[0] * shape[1]):
                    return np.empty(shape, dtype=np.float32)
                tmp = stack.enter_context(atomic_path(paths[layer]))
                streamed[layer] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=tuple(shape))
                return streamed[layer]

            fresh = extract_features(m, x, missing, batch_size=batch_size, device=device, pool=pool,
                                     amp=amp, allocate=allocate)
            if set(fresh) != set(missing):
                raise ValueError(f"cached_features needs exact module names, got {missing}; resolve "
                                 f"patterns first with resolve_layers (they match {sorted(fresh)})")
            for layer in missing:
                arr = fresh.pop(layer)
                if layer in streamed:
                    arr.flush()
                else:
                    cache.put({**base, "layer": layer}, arr)
                    found[layer] = arr
            del arr, fresh
            streamed.clear()  # the maps are closed before the files move into place
        for layer in missing:
            if layer not in found:  # published by the exit stack: read it back as a map
                found[layer] = np.load(paths[layer], mmap_mode="r")
    return {layer: found[layer] for layer in layers}

"""Load one checkpoint safely and turn it into a flat state dict plus its metadata.

Safety: PyTorch files are always read with ``torch.load(..., weights_only=True)``, which
unpickles only tensors, containers and plain values. A file that holds anything else (a whole
pickled ``nn.Module``, an optimizer with custom classes, or a malicious payload) is refused with
a :class:`CheckpointError` that names the file and the object it needed; nothing in it runs.
``trust=True`` (``--trust-pickle`` on the command line) lifts this for files the user wrote
themselves: the classes and functions the file names are imported and allowlisted for the same
safe loader (``torch.serialization.safe_globals``), so whatever code they hold runs. The loader
itself is never switched to full unpickling (``weights_only`` stays True), so a few objects
that only full unpickling rebuilds (a whole module saved in the legacy non-zip format) are refused
even then, with the advice to re-save the state dict.

Formats: ``.pt``/``.pth`` (``torch.save``), ``.ckpt`` (PyTorch Lightning: ``state_dict`` nesting,
``model.`` prefix), ``.bin`` (Hugging Face style plain state dict), ``.safetensors`` (read by the
safetensors library, metadata from its header).

Unwrapping: the tensors are found under the usual nesting keys (``state_dict``,
``model_state_dict``, ``model``, ``net``, and nested combinations), and the prefixes that
wrappers add to every key are stripped: ``module.`` (DataParallel / DDP), ``_orig_mod.``
(``torch.compile``), ``model.`` (Lightning). :func:`apply_state` loads the result into a model
with a strict key check, retrying the stripped prefixes when the model itself uses them.
"""
from __future__ import annotations

import difflib
import importlib
import math
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

__all__ = ["CheckpointError", "load_checkpoint", "load_checkpoint_with_meta", "read_meta",
           "unwrap_state", "apply_state", "CHECKPOINT_SUFFIXES"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
EPOCH_KEYS = ("epoch", "current_epoch", "epochs")
STEP_KEYS = ("global_step", "step", "iteration", "iter", "steps")
ACC_KEYS = ("source_acc", "val_acc", "accuracy", "acc", "train_acc")


class CheckpointError(ValueError):
    """A checkpoint file could not be loaded; ``path`` names the file."""

    def __init__(self, path: Union[str, Path], message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


# ---------------------------------------------------------------------------------------------
# raw reading


def _raw_load(path: Path, *, trust: bool, map_location, mmap: bool = False) -> Tuple[Any, Dict]:
    """Read the file's object (and, for safetensors, its header metadata)."""
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a checkpoint file")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, map_location)
    if isinstance(map_location, str) and map_location == "auto":
        map_location = _auto_device()
    import torch

    def load(**extra):
        def safe():
            return torch.load(str(path), map_location=map_location, weights_only=True, **extra)

        return _load_trusted(path, safe) if trust else safe()

    try:
        if mmap:
            try:
                return load(mmap=True), {}
            except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
        return load(), {}
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if not trust and _needs_full_pickle(msg):
            raise CheckpointError(
                path,
                "refused: the file stores Python objects that only unpickling can rebuild "
                f"({_blocked_globals(path, msg)}). Nothing in it was run. Full unpickling can "
                "run arbitrary code hidden in the file, so infodyn loads tensors only "
                "(torch.load weights_only=True). If you "
                "wrote this file yourself, opt in with trust=True (command line: "
                "--trust-pickle), or re-save just the state dict: "
                "torch.save(model.state_dict(), path).") from None
        if trust:  # e.g. a whole nn.Module pickled in the legacy (pre-1.6, non-zip) format
            raise CheckpointError(
                path, f"could not be unpickled even with trust=True ({_weights_detail(msg)}); "
                      "load it where it was written and re-save the state dict: "
                      "torch.save(model.state_dict(), path)") from None
        raise CheckpointError(
            path, "refused by the safe loader (torch.load weights_only=True): the file is "
                  "corrupted or truncated, or it holds pickled objects beyond tensors "
                  f"({_weights_detail(msg)}). Nothing in it was run. If you wrote it yourself, "
                  "trust=True (--trust-pickle) loads the objects it names.") from None
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises RuntimeError/EOFError/KeyError/struct.error here
        raise CheckpointError(
            path, f"could not be read: corrupted, truncated or not a PyTorch checkpoint "
                  f"({type(exc).__name__}: {_short(str(exc))})") from None


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _load_trusted(path: Path, safe_load):
    """``safe_load()`` with every global the file names allowlisted (the trust=True path).

    The names come from the archive (``get_unsafe_globals_in_checkpoint``) and, for what that
    misses (legacy non-zip files), from the safe loader's own refusals, one round each.
    """
    import torch

    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy (non-zip) files: learnt from the refusals below
        names = []
    allowed: Dict[str, Any] = {}
    for _ in range(1000):
        allowed.update((n, _import_global(path, n)) for n in names if n not in allowed)
        try:
            with torch.serialization.safe_globals(list(allowed.values())):
                return safe_load()
        except pickle.UnpicklingError as exc:
            names = [n for n in _GLOBAL.findall(str(exc)) if n not in allowed]
            if not names:
                raise
    raise CheckpointError(path, "names more than 1000 Python globals; refusing to go on")


def _import_global(path: Path, name: str):
    """The object ``module.qualname`` that a checkpoint names (the longest importable module)."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            return obj
        except AttributeError:
            break
    raise CheckpointError(path, f"needs {name}, which cannot be imported here")


def _needs_full_pickle(msg: str) -> bool:
    low = msg.lower()
    return "global" in low or "unsupported class" in low or "allowlist" in low.replace(" ", "")


def _blocked_globals(path: Path, msg: str) -> str:
    """Every global the file would import (read without unpickling), else torch's first one."""
    try:
        import torch

        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        if names:
            shown = ", ".join(names[:8]) + (f", ... {len(names) - 8} more" if len(names) > 8 else "")
            return f"it needs {shown}"
    except Exception:  # legacy (non-zip) files, or a torch without this helper
        pass
    for line in msg.splitlines():
        if "GLOBAL" in line or "global" in line:
            return line.strip()
    return _short(msg)


def _weights_detail(msg: str) -> str:
    for line in msg.splitlines():
        line = line.strip()
        if line.startswith(("Unsupported", "WeightsUnpickler error:")) and len(line) > 24:
            return _short(line.replace("WeightsUnpickler error:", "").strip())
    return _short(msg.splitlines()[-1] if msg.strip() else msg)


def _short(msg: str, limit: int = 200) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _auto_device() -> str:
    from infodyn.estimators.base import resolve_device

    return str(resolve_device("auto"))


def _load_safetensors(path: Path, map_location) -> Tuple[Any, Dict]:
    from safetensors import safe_open

    import torch

    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    if device == "auto":
        device = _auto_device()
    try:
        state = {}
        with safe_open(str(path), framework="pt", device=device) as fh:
            meta = dict(fh.metadata() or {})
            for key in fh.keys():
                state[key] = fh.get_tensor(key)
    except Exception as exc:  # SafetensorError is not exported under a stable name
        raise CheckpointError(path, f"could not be read as safetensors: corrupted or truncated "
                                    f"({_short(str(exc))})") from None
    return state, meta


# ---------------------------------------------------------------------------------------------
# unwrapping


def _is_tensor(v) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and _is_tensor(v) for k, v in obj.items())


def unwrap_state(obj, path: Union[str, Path] = "<checkpoint>") -> Tuple[Dict[str, Any], Dict]:
    """Find the state dict inside a loaded checkpoint object and strip wrapper prefixes.

    Args:
        obj: what ``torch.load`` returned: a state dict, a dict nesting one under
            ``state_dict``/``model_state_dict``/``model``/``net``, or (trusted files only) an
            ``nn.Module``.
        path: the file, for error messages.

    Returns:
        (state, top): ``state`` maps parameter/buffer names to tensors, prefixes removed;
        ``top`` is the outermost mapping (for metadata), or {}.
    """
    import torch

    top = obj if isinstance(obj, Mapping) else {}
    current = obj
    for _ in range(4):  # nestings seen in the wild are at most a few levels deep
        if isinstance(current, torch.nn.Module):
            current = current.state_dict()
        if _is_state_dict(current):
            break
        if not isinstance(current, Mapping):
            raise CheckpointError(path, f"holds a {type(current).__name__}, not a state dict "
                                        "or a mapping that contains one")
        nested = next((current[k] for k in NESTING_KEYS if k in current
                       and (isinstance(current[k], (Mapping, torch.nn.Module)))), None)
        if nested is None:
            tensors = {k: v for k, v in current.items() if isinstance(k, str) and _is_tensor(v)}
            if tensors:
                current = tensors  # tensors mixed with metadata at one level
                break
            keys = ", ".join(sorted(map(str, current.keys()))[:12])
            raise CheckpointError(path, f"found no state dict: no tensors at the top level and "
                                        f"none of the keys {list(NESTING_KEYS)} (keys: {keys})")
        current = nested
    if not _is_state_dict(current):
        raise CheckpointError(path, "found no state dict of tensors (nesting too deep or empty)")
    return strip_prefixes(dict(current)), dict(top)


def strip_prefixes(state: Dict[str, Any], prefixes: Iterable[str] = WRAPPER_PREFIXES) -> Dict:
    """Remove wrapper prefixes shared by every key (repeatedly), and ``._orig_mod.`` inside keys."""
    prefixes = tuple(prefixes)
    state = {k.replace("._orig_mod.", "."): v for k, v in state.items()}
    changed = True
    while changed and state:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


# ---------------------------------------------------------------------------------------------
# metadata


def _scalar(v) -> Optional[float]:
    if _is_tensor(v):
        if v.numel() != 1:
            return None
        v = v.item()
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _as_int(v) -> Optional[int]:
    f = _scalar(v)
    if f is None or not math.isfinite(f) or f != int(f):
        return None
    return int(f)


def extract_meta(top: Mapping) -> Dict[str, Any]:
    """epoch, step and source accuracy from a checkpoint's outer mapping (or safetensors header).

    Looks at the top level, then at a nested ``meta``/``metadata`` mapping. Returns a dict with
    keys ``epoch`` (int or None), ``step`` (int or None), ``source_acc`` (float or None) and
    ``extra`` (other scalar entries).
    """
    places = [top] + [top[k] for k in ("meta", "metadata", "info") if isinstance(top.get(k), Mapping)]

    def find(keys, cast):
        for place in places:
            for k in keys:
                if k in place:
                    value = cast(place[k])
                    if value is not None:
                        return value
        return None

    extra = {}
    for k, v in top.items():
        if isinstance(k, str) and k not in NESTING_KEYS and not _is_tensor(v):
            s = _scalar(v) if not isinstance(v, str) else None
            if s is not None:
                extra[k] = s
            elif isinstance(v, str) and len(v) < 200:
                extra[k] = v
    return {"epoch": find(EPOCH_KEYS, _as_int), "step": find(STEP_KEYS, _as_int),
            "source_acc": find(ACC_KEYS, _scalar), "extra": extra}


# ---------------------------------------------------------------------------------------------
# public loading


def load_checkpoint_with_meta(path: Union[str, Path], *, trust: bool = False,
                              map_location="cpu") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Load a checkpoint safely: (state dict, metadata).

    Args:
        path: a ``.pt``/``.pth``/``.ckpt``/``.bin``/``.safetensors`` file.
        trust: allow the Python objects the file names (their code runs; only for your own files).
        map_location: where tensors go (default ``"cpu"``, so GPU-saved files load anywhere;
            ``"auto"``: CUDA when present, else CPU; or anything ``torch.load`` accepts).

    Returns:
        ``state``: parameter/buffer name -> tensor, nestings unwrapped and wrapper prefixes
        stripped. ``meta``: ``{"epoch", "step", "source_acc", "extra", "path", "format"}``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): the file is corrupted or truncated, holds no state dict,
            or holds pickled Python objects while ``trust`` is False. The message names the file.
    """
    p = Path(path)
    obj, header = _raw_load(p, trust=trust, map_location=map_location)
    state, top = unwrap_state(obj, p)
    meta = extract_meta(header if p.suffix == ".safetensors" else top)
    meta.update(path=p, format=p.suffix.lstrip(".") or "pt")
    return state, meta


def load_checkpoint(path: Union[str, Path], *, trust: bool = False, map_location="cpu"):
    """Load a checkpoint safely and return only its state dict (see :func:`load_checkpoint_with_meta`)."""
    return load_checkpoint_with_meta(path, trust=trust, map_location=map_location)[0]


def read_meta(path: Union[str, Path], *, trust: bool = False) -> Dict[str, Any]:
    """epoch/step/source_acc of a checkpoint without reading its tensors where avoidable.

    Zip-format PyTorch files are memory-mapped; safetensors files are read from their header
    only. Raises like :func:`load_checkpoint_with_meta`.
    """
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        if not p.exists():
            raise FileNotFoundError(f"no such checkpoint file: {p}")
        try:
            with safe_open(str(p), framework="pt") as fh:
                header = dict(fh.metadata() or {})
        except Exception as exc:
            raise CheckpointError(p, f"could not be read as safetensors ({_short(str(exc))})") from None
        return extract_meta(header)
    obj, _ = _raw_load(p, trust=trust, map_location="cpu", mmap=True)
    return extract_meta(obj if isinstance(obj, Mapping) else {})


# ---------------------------------------------------------------------------------------------
# putting a state into a model


def apply_state(model, state: Mapping[str, Any], path: Union[str, Path] = "<checkpoint>"):
    """Load ``state`` into ``model`` after a strict key and shape check.

    When the keys do not match as given, the wrapper prefixes (``module.``, ``_orig_mod.``,
    ``model.``) are tried on the model's side too, so a model that really has a submodule named
    ``model`` still loads a stripped state.

    Raises:
        ValueError: naming the file, the missing and unexpected keys (with the nearest names),
            or the tensors whose shapes differ.
    Returns the model.
    """
    expected = model.state_dict()
    candidate = _match_keys(dict(state), set(expected))
    if candidate is None:
        raise ValueError(_mismatch_message(path, set(expected), set(state)))
    bad = [f"{k}: checkpoint {tuple(candidate[k].shape)} vs model {tuple(expected[k].shape)}"
           for k in expected if tuple(candidate[k].shape) != tuple(expected[k].shape)]
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise ValueError(f"{path}: tensor shapes differ from the model's: " + "; ".join(bad[:10])
                         + more + ". Check model_kwargs in the manifest.")
    model.load_state_dict(candidate, strict=True)
    return model


def _match_keys(state: Dict[str, Any], wanted: set) -> Optional[Dict[str, Any]]:
    if set(state) == wanted:
        return state
    for p in WRAPPER_PREFIXES:
        added = {p + k: v for k, v in state.items()}
        if set(added) == wanted:
            return added
    stripped = strip_prefixes(state)
    if set(stripped) == wanted:
        return stripped
    return None


def _mismatch_message(path, expected: set, got: set) -> str:
    missing = sorted(expected - got)
    unexpected = sorted(got - expected)

    def describe(keys: List[str], pool: set) -> str:
        items = []
        for k in keys[:8]:
            near = difflib.get_close_matches(k, list(pool), n=1, cutoff=0.5)
            items.append(f"{k}" + (f" (nearest: {near[0]})" if near else ""))
        return ", ".join(items) + (f", ... {len(keys) - 8} more" if len(keys) > 8 else "")

    parts = [f"{path}: state dict keys do not match the model"]
    if missing:
        parts.append(f"missing from the checkpoint ({len(missing)}): {describe(missing, got)}")
    if unexpected:
        parts.append(f"unexpected in the checkpoint ({len(unexpected)}): "
                     f"{describe(unexpected, expected)}")
    parts.append("check the manifest's model and model_kwargs")
    return "; ".join(parts)

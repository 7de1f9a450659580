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

Formats: ``.pt``/``.pth`` (``torch.save``), ``.pth.tar`` (timm ``CheckpointSaver``: its
``args`` ``argparse.Namespace`` holds plain data only and is read by the safe loader without
``trust``), ``.ckpt`` (PyTorch Lightning: ``state_dict`` nesting, keys prefixed by the
LightningModule's attribute), ``.bin`` (Hugging Face style plain state dict), ``.safetensors``
(read by the safetensors library, metadata from its header), and checkpoint *folders*: Hugging
Face ``save_pretrained``/Trainer ``checkpoint-N/`` folders (``model.safetensors``,
``pytorch_model.bin`` or their sharded ``*.index.json``; epoch and step from
``trainer_state.json``) and accelerate ``save_state`` folders (``model.safetensors`` /
``pytorch_model.bin``; ``*.pkl`` files there are never read). See :func:`folder_weights`.

Epoch convention (infodyn's own recorder: ``epoch`` = epochs completed, 0 = the initial weights).
Files of libraries that count otherwise are converted, and ``meta["convention"]`` says how:
Lightning's ``epoch=E`` saved at the end of epoch E is the state *after* epoch E, i.e. E + 1
completed epochs (read from the file's loop counters; a mid-epoch save keeps E); timm's
``CheckpointSaver`` (``version`` 2) stores the index E of the epoch just trained: E + 1 completed
(``recovery-E-B`` mid-epoch files: E). Hugging Face's ``trainer_state.json`` ``epoch`` already
counts completed (possibly fractional) epochs. A stored epoch or step that is not an integer in
[-2**53, 2**53] (``10**400``, ``1e300``, ``2**63``) is ignored with a note in ``meta["warnings"]``.

Unwrapping: the tensors are found under the usual nesting keys (``state_dict``,
``model_state_dict``, ``model``, ``net``, and nested combinations), and the prefixes that
wrappers add to every key are stripped: ``module.`` (DataParallel / DDP), ``_orig_mod.``
(``torch.compile``), ``model.`` (Lightning). :func:`apply_state` loads the result into a model
with a strict key check, retrying the stripped prefixes when the model itself uses them.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import math
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

__all__ = ["CheckpointError", "load_checkpoint", "load_checkpoint_with_meta", "read_meta",
           "unwrap_state", "apply_state", "load_model", "select_prefix", "folder_weights",
           "checkpoint_sha256", "checkpoint_name", "is_checkpoint_name", "CHECKPOINT_SUFFIXES"]

CHECKPOINT_SUFFIXES = (".pth.tar", ".pt", ".pth", ".ckpt", ".safetensors", ".bin")
# Weight files of a Hugging Face / accelerate checkpoint folder, in order of preference.
FOLDER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                  "pytorch_model.bin.index.json")
MAX_POSITION = 2 ** 53  # epochs/steps beyond this are not exactly representable as float64
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
    if path.name.endswith(".safetensors"):
        return _load_safetensors(path, map_location)
    if isinstance(map_location, str) and map_location == "auto":
        map_location = _auto_device()
    import torch

    odd_name = not _utf8_name(path)
    if odd_name:
        mmap = False  # torch needs a UTF-8 name to memory-map; read through a file object

    def load(**extra):
        def safe():
            # argparse.Namespace (timm's stored training args) holds plain data only.
            with torch.serialization.safe_globals(_PLAIN_GLOBALS):
                if odd_name:
                    with open(path, "rb") as fh:
                        return torch.load(fh, map_location=map_location, weights_only=True, **extra)
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
    except (FileNotFoundError, CheckpointError):  # CheckpointError: a refusal that already says why
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


# Globals refused even with trust=True: well-known ways for a pickle to run commands or code.
# Whole modules (any name under them) and single names; checked on the name the file gives and
# on the module/qualname of the object it resolves to (os.system resolves to posix.system).
_CODE_EXEC_MODULES = frozenset("""
    os posix nt posixpath ntpath subprocess _posixsubprocess sys shutil importlib imp pkgutil runpy
    code codeop pdb bdb pickle _pickle marshal shelve dill cloudpickle socket pty ctypes _ctypes
    webbrowser multiprocessing signal platform commands popen2 asyncio torch.hub torch.package
    torch.utils.cpp_extension
""".split())
_CODE_EXEC_NAMES = frozenset("""
    builtins.eval builtins.exec builtins.compile builtins.__import__ builtins.getattr builtins.setattr
    builtins.delattr builtins.open builtins.input builtins.breakpoint builtins.globals builtins.locals
    builtins.vars builtins.execfile builtins.apply __builtin__.eval __builtin__.execfile
    __builtin__.__import__ __builtin__.getattr operator.attrgetter operator.methodcaller
    torch.load torch.serialization.load torch.jit.load numpy.load numpy.lib.npyio.load
    types.FunctionType types.CodeType types.LambdaType types.MethodType
""".split())


def _code_exec_name(name: str) -> bool:
    """Whether ``module.qualname`` is a known code-execution global, also under the Python 3 name
    the unpickler maps a Python 2 one to (protocol 2 files say ``__builtin__``, ``commands``)."""
    import _compat_pickle

    mod, _, attr = name.rpartition(".")
    mapped = _compat_pickle.NAME_MAPPING.get((mod, attr))
    mapped = mapped or (_compat_pickle.IMPORT_MAPPING.get(mod, mod), attr)
    for candidate in {name, ".".join(mapped)}:
        parts = candidate.split(".")
        if candidate in _CODE_EXEC_NAMES or any(".".join(parts[:i]) in _CODE_EXEC_MODULES
                                                for i in range(1, len(parts))):
            return True
    return False


def _refuse_code_exec(path: Path, name: str, obj: Any = None) -> None:
    """Raise when ``name`` (or the object it resolved to) is a known code-execution global."""
    seen = [name]
    if obj is not None:
        mod = getattr(obj, "__module__", None)
        qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if isinstance(mod, str) and isinstance(qual, str):
            seen.append(f"{mod}.{qual}")
    for n in seen:
        if _code_exec_name(n):
            via = "" if n == name else f" (it is {n})"
            raise CheckpointError(
                path, f"refused even with trust=True: the file names {name}{via}, which runs commands "
                      "or arbitrary code when unpickled. Nothing in it was run. Re-save the state dict "
                      "where the file was written: torch.save(model.state_dict(), path)")


def _import_global(path: Path, name: str):
    """The object ``module.qualname`` that a checkpoint names (the longest importable module).

    Known code-execution globals (``os.system``, ``subprocess.*``, ``builtins.eval``, ...) are
    refused, by name before anything is imported and by what the name resolves to before the
    object is allowlisted (so before the unpickler could call it)."""
    _refuse_code_exec(path, name)
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            _refuse_code_exec(path, name, obj)
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


def _utf8_name(path: Path) -> bool:
    """Whether the path can be handed to libraries that need UTF-8 text (torch's mmap,
    safetensors); a non-UTF-8 file name arrives as a str with surrogate escapes."""
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


# Classes that hold plain data only and that training scripts store beside the weights
# (timm's CheckpointSaver stores the training script's argparse.Namespace): the safe loader may
# rebuild them without trust. Nothing else is added.
_PLAIN_GLOBALS = [argparse.Namespace]


def _safetensors_header(path: Path, limit: int = 100 << 20) -> Dict[str, Any]:
    """The JSON header of a safetensors file (tensor table and ``__metadata__``)."""
    import json
    import struct

    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise CheckpointError(path, "could not be read as safetensors: truncated header")
        (n,) = struct.unpack("<Q", head)
        if n > limit:
            raise CheckpointError(path, f"could not be read as safetensors: header of {n} bytes")
        try:
            return json.loads(fh.read(n))
        except ValueError as exc:
            raise CheckpointError(path, f"could not be read as safetensors ({_short(str(exc))})") from None


def _load_safetensors(path: Path, map_location) -> Tuple[Any, Dict]:
    from safetensors import safe_open

    import torch

    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    if device == "auto":
        device = _auto_device()
    try:
        state = {}
        if not _utf8_name(path):  # safetensors wants a UTF-8 path: read the bytes ourselves
            from safetensors.torch import load as load_bytes

            meta = dict(_safetensors_header(path).get("__metadata__") or {})
            state = {k: v.to(device) for k, v in load_bytes(path.read_bytes()).items()}
            return state, meta
        with safe_open(str(path), framework="pt", device=device) as fh:
            meta = dict(fh.metadata() or {})
            for key in fh.keys():
                state[key] = fh.get_tensor(key)
    except CheckpointError:
        raise
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


def unwrap_state(obj, path: Union[str, Path] = "<checkpoint>", *,
                 state_prefix: Optional[str] = None) -> Tuple[Dict[str, Any], Dict]:
    """Find the state dict inside a loaded checkpoint object and strip wrapper prefixes.

    Args:
        obj: what ``torch.load`` returned: a state dict, a dict nesting one under
            ``state_dict``/``model_state_dict``/``model``/``net``, or (trusted files only) an
            ``nn.Module``.
        path: the file, for error messages.
        state_prefix: keep only the keys under this prefix and remove it (``"net."``: the
            LightningModule attribute holding the network); applied before the wrapper
            prefixes are stripped. See :func:`select_prefix`.

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
    state = dict(current)
    if state_prefix:
        state = select_prefix(state, state_prefix, path)
    return strip_prefixes(state), dict(top)


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


def select_prefix(state: Mapping[str, Any], prefix: str,
                  path: Union[str, Path] = "<checkpoint>") -> Dict[str, Any]:
    """The entries of ``state`` whose key starts with ``prefix``, with the prefix removed.

    ``prefix`` names the sub-module that holds the network (``"net."`` for a LightningModule
    whose network is ``self.net``; a missing final dot is added). Keys of other sub-modules
    (a loss with buffers, metrics, an EMA copy) are dropped. Wrapper prefixes in front of it
    (``module.net.``, ``_orig_mod.net.``) are seen through.

    Raises:
        CheckpointError: no key starts with the prefix; the message lists the prefixes found.
    """
    if not isinstance(prefix, str) or not prefix.strip("."):
        raise ValueError(f"state_prefix must be a non-empty string such as 'net.', got {prefix!r}")
    prefix = prefix if prefix.endswith(".") else prefix + "."
    chosen = _under_prefix((state, strip_prefixes(dict(state))), prefix)
    if chosen is not None:
        return chosen
    tops = sorted({k.split(".", 1)[0] + "." for k in state})
    shown = ", ".join(tops[:12]) + (f", ... {len(tops) - 12} more" if len(tops) > 12 else "")
    raise CheckpointError(path, f"no state dict key starts with state_prefix {prefix!r}; the keys "
                                f"start with: {shown}")


def _under_prefix(candidates: Iterable[Mapping[str, Any]], prefix: str) -> Optional[Dict[str, Any]]:
    """The entries under ``prefix`` (prefix removed) of the first of ``candidates`` (the state
    as saved, then with wrapper prefixes stripped) that has any; None when none has."""
    for candidate in candidates:
        chosen = {k[len(prefix):]: v for k, v in candidate.items() if k.startswith(prefix)}
        if chosen:
            return chosen
    return None


# ---------------------------------------------------------------------------------------------
# metadata


def _number(v):
    """A real number from a scalar tensor, int, float or numeric string (ints kept exact), else None."""
    if _is_tensor(v):
        if v.numel() != 1:
            return None
        v = v.item()
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str) and len(v) < 100:
        try:
            return float(v)
        except (ValueError, OverflowError):
            return None
    return None


def _scalar(v) -> Optional[float]:
    x = _number(v)
    if x is None:
        return None
    try:
        return float(x)
    except OverflowError:  # an int beyond float range
        return None


def _show_number(x) -> str:
    if isinstance(x, int) and x.bit_length() > 64:
        return f"an integer of {len(str(x)) if x.bit_length() < 10000 else 'over 3000'} digits"
    return repr(x)


def _position(v, *, fraction: bool = False):
    """(value, problem) for a stored epoch/step: an int in [-2**53, 2**53] (a float when
    ``fraction`` and not whole), else None and, for a number out of range, why it was refused."""
    x = _number(v)
    if x is None:
        return None, None
    if isinstance(x, float) and not math.isfinite(x):
        return None, f"{x!r} is not finite"
    if abs(x) > MAX_POSITION:
        return None, f"{_show_number(x)} is out of range (at most 2**53)"
    if isinstance(x, float) and x != int(x):
        return (x, None) if fraction else (None, None)
    return int(x), None


def _as_int(v) -> Optional[int]:
    value, _ = _position(v)
    return value


def extract_meta(top: Mapping) -> Dict[str, Any]:
    """epoch, step and source accuracy from a checkpoint's outer mapping (or safetensors header).

    Looks at the top level, then at a nested ``meta``/``metadata`` mapping. Returns a dict with
    keys ``epoch`` (int, a float for a fractional epoch, or None), ``step`` (int or None),
    ``source_acc`` (float or None),
    ``run_id`` (str or None: set by :class:`infodyn.hooks.CheckpointRecorder`), ``extra`` (other
    scalar entries) and ``warnings`` (stored values that were ignored, e.g. an epoch of 1e300).
    """
    places = [top] + [top[k] for k in ("meta", "metadata", "info") if isinstance(top.get(k), Mapping)]
    problems: List[str] = []

    def find(keys, cast):
        for place in places:
            for k in keys:
                if k in place:
                    value, problem = cast(place[k])
                    if problem:
                        problems.append(f"stored {k} {problem}; ignored")
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
    run_id = top.get("run_id")
    return {"epoch": find(EPOCH_KEYS, lambda v: _position(v, fraction=True)),
            "step": find(STEP_KEYS, _position),
            "source_acc": find(ACC_KEYS, lambda v: (_scalar(v), None)),
            "run_id": run_id if isinstance(run_id, str) else None,
            "extra": extra, "warnings": problems}


def _lightning_completed(top: Mapping, epoch: int) -> Tuple[int, str]:
    """Completed epochs of a Lightning checkpoint whose ``epoch`` key is ``epoch``.

    Lightning stores ``trainer.current_epoch``: the index of the epoch under way, so a
    ``ModelCheckpoint`` save at the end of epoch E holds the state after E + 1 epochs. The loop
    counters in the file tell an end-of-epoch save (every batch of epoch E done) from a
    mid-epoch one (E completed) and from a save after ``fit`` ended (``current_epoch`` already
    advanced: E completed).
    """
    try:
        fit = top["loops"]["fit_loop"]
        prog = fit["epoch_progress"]
        started = max(int(prog["total"]["started"]), int(prog["current"]["started"]))
        last = bool(fit["epoch_loop.batch_progress"]["is_last_batch"])
    except (KeyError, TypeError, ValueError):
        return epoch + 1, (f"Lightning epoch={epoch}: the state after epoch {epoch} "
                           f"= {epoch + 1} completed epochs (no loop counters in the file)")
    if started > epoch and last:
        return epoch + 1, (f"Lightning epoch={epoch}, saved at the end of that epoch: "
                           f"{epoch + 1} completed epochs")
    if started > epoch:
        return epoch, f"Lightning epoch={epoch}, saved mid-epoch: {epoch} completed epochs"
    return epoch, f"Lightning epoch={epoch}, saved after training: {epoch} completed epochs"


def apply_convention(meta: Dict[str, Any], top: Mapping, path: Path) -> Dict[str, Any]:
    """Convert a library's stored epoch into infodyn's (epochs completed; 0 = initial weights).

    Sets ``meta["kind"]`` (``"lightning"``, ``"timm"`` or ``"file"``), and for converted files
    ``meta["epoch_stored"]`` (the value in the file) and ``meta["convention"]`` (a sentence).
    """
    meta.setdefault("kind", "file")
    epoch = meta.get("epoch")
    if any(isinstance(k, str) and k.endswith("lightning_version") for k in top):
        meta["kind"] = "lightning"
        if isinstance(epoch, int):
            meta["epoch_stored"] = epoch
            meta["epoch"], meta["convention"] = _lightning_completed(top, epoch)
    elif "arch" in top and "state_dict" in top and "epoch" in top:
        meta["kind"] = "timm"
        version = _as_int(top.get("version")) or 1
        if isinstance(epoch, int) and version >= 2:
            meta["epoch_stored"] = epoch
            if path.name.startswith("recovery"):
                meta["convention"] = f"timm recovery file of epoch {epoch} (mid-epoch): {epoch} completed epochs"
            else:
                meta["epoch"] = epoch + 1
                meta["convention"] = (f"timm epoch {epoch} (the epoch just trained, counted from 0): "
                                      f"{epoch + 1} completed epochs")
    return meta


# ---------------------------------------------------------------------------------------------
# checkpoint folders (Hugging Face save_pretrained / Trainer, accelerate save_state)


def folder_weights(folder: Union[str, Path]) -> Optional[Path]:
    """The weight file of a Hugging Face / accelerate checkpoint folder, or None.

    First of ``model.safetensors``, ``model.safetensors.index.json`` (sharded),
    ``pytorch_model.bin``, ``pytorch_model.bin.index.json`` that exists. accelerate's extra
    models (``model_1.safetensors``), optimizer, scheduler, RNG states (``*.pkl``, never read)
    and ``training_args.bin`` are not weights of the model.
    """
    folder = Path(folder)
    for name in FOLDER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    return None


def folder_kind(folder: Union[str, Path]) -> Optional[str]:
    """``"hf"`` (config.json or trainer_state.json beside the weights), ``"accelerate"``
    (optimizer.bin / random_states_*.pkl), ``"folder"`` (weights only), or None (no weights)."""
    folder = Path(folder)
    if folder_weights(folder) is None:
        return None
    if (folder / "trainer_state.json").is_file() or (folder / "config.json").is_file():
        return "hf"
    if (folder / "optimizer.bin").is_file() or any(folder.glob("random_states_*.pkl")):
        return "accelerate"
    return "folder"


def _read_json(path: Path, limit: int = 64 << 20):
    import json

    if path.stat().st_size > limit:
        raise CheckpointError(path, f"is larger than {limit >> 20} MiB; not a checkpoint index/state")
    try:
        return json.loads(path.read_bytes())
    except ValueError as exc:  # includes int literals too long to convert
        raise CheckpointError(path, f"is not valid JSON ({_short(str(exc))})") from None


def _folder_meta(folder: Path, kind: Optional[str] = None) -> Dict[str, Any]:
    """epoch/step of a checkpoint folder from ``trainer_state.json`` (Hugging Face Trainer:
    ``epoch`` counts completed epochs, possibly fractional; ``global_step`` optimizer steps).
    ``kind``: the folder's :func:`folder_kind` when the caller has it (else looked up)."""
    meta: Dict[str, Any] = {"epoch": None, "step": None, "source_acc": None, "run_id": None,
                            "extra": {}, "warnings": [],
                            "kind": kind or folder_kind(folder) or "folder"}
    state_file = folder / "trainer_state.json"
    if state_file.is_file():
        state = _read_json(state_file)
        if isinstance(state, Mapping):
            for key, out, frac in (("epoch", "epoch", True), ("global_step", "step", False)):
                if key in state:
                    value, problem = _position(state[key], fraction=frac)
                    if problem:
                        meta["warnings"].append(f"trainer_state.json {key} {problem}; ignored")
                    meta[out] = value
            if meta["epoch"] is not None:
                meta["convention"] = "Hugging Face trainer_state.json: epoch = completed epochs"
    elif meta["kind"] == "accelerate":
        meta["convention"] = ("accelerate save_state: no epoch or step stored; checkpoint_N "
                              "counts the saves (order only)")
    return meta


def folder_files(folder: Union[str, Path]) -> Tuple[Path, List[str]]:
    """(weight file, names of the files that hold the weights) of a checkpoint folder.

    The weight file is :func:`folder_weights`'s; the names are its own, then, for a sharded
    index (``model.safetensors.index.json``), the shard files its ``weight_map`` lists (sorted,
    each checked to lie in the folder).

    Raises:
        CheckpointError: the folder holds no weights (the message lists what it holds), or the
            index is not JSON, has no ``weight_map``, or names a shard outside the folder.
    """
    weights, names, _ = _folder_index(Path(folder))
    return weights, names


def _folder_index(folder: Path) -> Tuple[Path, List[str], Mapping[str, Any]]:
    """:func:`folder_files` and the index's ``weight_map`` (tensor name -> shard; ``{}`` when
    the weights are one file)."""
    weights = folder_weights(folder)
    if weights is None:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) or "nothing"
        raise CheckpointError(folder, f"is a folder without model weights (looked for "
                                      f"{', '.join(FOLDER_WEIGHTS)}; found: {found})")
    if not weights.name.endswith(".index.json"):
        return weights, [weights.name], {}
    shards, weight_map = index_shards(weights)
    return weights, [weights.name] + shards, weight_map


def index_shards(index: Union[str, Path]) -> Tuple[List[str], Mapping[str, Any]]:
    """(sorted shard file names, ``weight_map``) of a sharded checkpoint's index file
    (``model.safetensors.index.json``; ``weight_map``: tensor name -> shard file).

    Raises:
        CheckpointError: the index is not JSON, has no ``weight_map``, or names a shard outside
            its folder.
    """
    index = Path(index)
    data = _read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, Mapping) else None
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise CheckpointError(index, "has no 'weight_map' (key name -> shard file)")
    shards = sorted(set(map(str, weight_map.values())))
    for shard in shards:
        if Path(shard).name != shard or shard in (".", ".."):
            raise CheckpointError(index, f"names the shard {shard!r} outside its folder; refused")
    return shards, weight_map


def _load_folder(folder: Path, *, trust: bool, map_location) -> Dict[str, Any]:
    """The raw (unstripped) state dict of a checkpoint folder, shards merged."""
    weights, names, weight_map = _folder_index(folder)
    if not weight_map:
        obj, _ = _raw_load(weights, trust=trust, map_location=map_location)
        return obj
    state: Dict[str, Any] = {}
    for shard in names[1:]:
        obj, _ = _raw_load(folder / shard, trust=trust, map_location=map_location)
        if not _is_state_dict(obj):
            raise CheckpointError(folder / shard, "is a shard but not a plain state dict of tensors")
        state.update(obj)
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(weights, f"lists {len(missing)} tensors that no shard holds "
                                       f"(first: {', '.join(missing[:5])})")
    return state


# ---------------------------------------------------------------------------------------------
# public loading


def is_checkpoint_name(name: str) -> bool:
    """Whether a file name has a checkpoint suffix (``.pt``, ``.pth``, ``.pth.tar``, ``.ckpt``,
    ``.safetensors``, ``.bin``)."""
    return name.endswith(CHECKPOINT_SUFFIXES)


def split_suffix(name: str) -> Tuple[str, str]:
    """(stem, checkpoint suffix) of a file name: ``"model_3.pth.tar"`` -> ``("model_3",
    ".pth.tar")``; ``(name, "")`` when it has none of :data:`CHECKPOINT_SUFFIXES`."""
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def checkpoint_name(path: Union[str, Path]) -> str:
    """A checkpoint's name for tables and messages: the file's (or folder's) name, with bytes
    that are not UTF-8 shown as U+FFFD so that it can be printed and written to CSV."""
    name = Path(path).name
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def checkpoint_sha256(path: Union[str, Path]) -> str:
    """sha256 of a checkpoint's content: a file's bytes, or for a folder the weight files
    (shards included) and ``config.json``, each by name and content hash. Optimizer, scheduler,
    RNG and trainer-state files do not change the weights and are left out."""
    import hashlib

    from infodyn._files import file_sha256

    p = Path(path)
    if not p.is_dir():
        return file_sha256(p)
    _, names = folder_files(p)
    if (p / "config.json").is_file():
        names.append("config.json")
    h = hashlib.sha256(b"infodyn-folder-v1\n")
    for name in names:
        h.update(f"{name}\0{file_sha256(p / name)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def load_checkpoint_with_meta(path: Union[str, Path], *, trust: bool = False,
                              map_location="cpu", state_prefix: Optional[str] = None
                              ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Load a checkpoint safely: (state dict, metadata).

    Args:
        path: a ``.pt``/``.pth``/``.pth.tar``/``.ckpt``/``.bin``/``.safetensors`` file, or a
            Hugging Face / accelerate checkpoint folder (see :func:`folder_weights`).
        trust: allow the Python objects the file names (their code runs; only for your own files).
        map_location: where tensors go (default ``"cpu"``, so GPU-saved files load anywhere;
            ``"auto"``: CUDA when present, else CPU; or anything ``torch.load`` accepts).
        state_prefix: keep only the keys under this sub-module prefix and remove it (the
            manifest's ``state_prefix``, e.g. ``"net."`` for a LightningModule's ``self.net``).

    Returns:
        ``state``: parameter/buffer name -> tensor, nestings unwrapped and wrapper prefixes
        stripped. ``meta``: ``{"epoch", "step", "source_acc", "run_id", "extra", "warnings",
        "kind", "path", "format"}`` plus ``epoch_stored``/``convention`` where the library's
        epoch was converted (module docstring).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): the file is corrupted or truncated, holds no state dict,
            or holds pickled Python objects while ``trust`` is False. The message names the file.
    """
    p = Path(path)
    if p.is_dir():
        obj = _load_folder(p, trust=trust, map_location=map_location)
        state, _ = unwrap_state(obj, p, state_prefix=state_prefix)
        meta = _folder_meta(p)
        meta.update(path=p, format="folder")
        return state, meta
    obj, header = _raw_load(p, trust=trust, map_location=map_location)
    state, top = unwrap_state(obj, p, state_prefix=state_prefix)
    st = p.name.endswith(".safetensors")
    meta = extract_meta(header if st else top)
    if not st:
        apply_convention(meta, top, p)
    meta.setdefault("kind", "file")
    meta.update(path=p, format=_format(p))
    return state, meta


def _format(p: Path) -> str:
    suffix = split_suffix(p.name)[1] or p.suffix
    return suffix.lstrip(".") or "pt"


def load_checkpoint(path: Union[str, Path], *, trust: bool = False, map_location="cpu",
                    state_prefix: Optional[str] = None):
    """Load a checkpoint safely and return only its state dict (see :func:`load_checkpoint_with_meta`)."""
    return load_checkpoint_with_meta(path, trust=trust, map_location=map_location,
                                     state_prefix=state_prefix)[0]


def read_meta(path: Union[str, Path], *, trust: bool = False,
              kind: Optional[str] = None) -> Dict[str, Any]:
    """epoch/step/source_acc (and ``kind``, ``warnings``, ``run_id``, ``convention``) of a
    checkpoint without reading its tensors where avoidable.

    Zip-format PyTorch files are memory-mapped; safetensors files are read from their header
    only; folders from ``trainer_state.json``. ``kind``: a folder's :func:`folder_kind` when
    the caller already has it (saves looking at the folder again). Raises like
    :func:`load_checkpoint_with_meta`.
    """
    p = Path(path)
    if p.is_dir():
        return _folder_meta(p, kind)
    if p.name.endswith(".safetensors"):
        if not p.exists():
            raise FileNotFoundError(f"no such checkpoint file: {p}")
        header = _safetensors_header(p)
        if not isinstance(header, Mapping):
            raise CheckpointError(p, "could not be read as safetensors: the header is not a mapping")
        meta = extract_meta(dict(header.get("__metadata__") or {}))
        meta["kind"] = "file"
        return meta
    obj, _ = _raw_load(p, trust=trust, map_location="cpu", mmap=True)
    top = obj if isinstance(obj, Mapping) else {}
    return apply_convention(extract_meta(top), top, p)


# ---------------------------------------------------------------------------------------------
# putting a state into a model


def apply_state(model, state: Mapping[str, Any], path: Union[str, Path] = "<checkpoint>"):
    """Load ``state`` into ``model`` after a strict key and shape check.

    When the keys do not match as given, the wrapper prefixes (``module.``, ``_orig_mod.``,
    ``model.``) are tried on the model's side too, so a model that really has a submodule named
    ``model`` still loads a stripped state. Then, when exactly one sub-module prefix of the
    checkpoint (``net.`` of a LightningModule) holds exactly the model's keys, that part is
    used (the manifest's ``state_prefix`` says it explicitly). Tied parameters that a saver
    stored once (Hugging Face drops ``lm_head.weight`` tied to the embeddings) are filled from
    the tensor they share storage with in the model.

    Raises:
        ValueError: naming the file, the missing and unexpected keys (with the nearest names),
            or the tensors whose shapes differ.
    Returns the model.
    """
    expected = model.state_dict()
    candidate = _match_keys(dict(state), set(expected), _tied_aliases(expected))
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


def _tied_aliases(expected: Mapping[str, Any]) -> Dict[str, List[str]]:
    """key -> the other keys of the model's state dict that share its storage (tied weights)."""
    groups: Dict[tuple, List[str]] = {}
    for k, v in expected.items():
        if _is_tensor(v) and v.numel() > 0:
            groups.setdefault((v.data_ptr(), tuple(v.shape), tuple(v.stride())), []).append(k)
    return {k: [o for o in g if o != k] for g in groups.values() if len(g) > 1 for k in g}


def _complete(state: Dict[str, Any], wanted: set, aliases: Dict[str, List[str]]):
    """``state`` if its keys are the model's, or are after filling tied keys; else None."""
    keys = set(state)
    if keys == wanted:
        return state
    if not keys <= wanted or not aliases:
        return None
    filled = dict(state)
    for k in wanted - keys:
        src = next((a for a in aliases.get(k, ()) if a in state), None)
        if src is None:
            return None
        filled[k] = state[src]
    return filled


def _match_keys(state: Dict[str, Any], wanted: set,
                aliases: Optional[Dict[str, List[str]]] = None) -> Optional[Dict[str, Any]]:
    aliases = aliases or {}

    def attempt(st):
        for cand in [st] + [{p + k: v for k, v in st.items()} for p in WRAPPER_PREFIXES] \
                + [strip_prefixes(st)]:
            done = _complete(cand, wanted, aliases)
            if done is not None:
                return done
        return None

    found = attempt(state)
    if found is not None:
        return found
    # One sub-module of the checkpoint holds the network (a LightningModule's self.net).
    stripped = strip_prefixes(state)  # once, not once per head as select_prefix would
    heads = sorted({k.split(".", 1)[0] for k in stripped if "." in k})[:64]
    matches = []
    for head in heads:
        part = _under_prefix((state, stripped), head + ".") if head else None
        if part is None:
            continue
        done = attempt(part)
        if done is not None:
            matches.append(done)
    return matches[0] if len(matches) == 1 else None


def load_model(manifest, checkpoint: Union[str, Path], *, trust: bool = False,
               map_location="cpu"):
    """The manifest's model holding one checkpoint's weights, in eval mode.

    With the manifest's ``load: model`` the model callable receives the checkpoint (a folder
    for Hugging Face: ``transformers:AutoModelForSequenceClassification.from_pretrained``) and
    loads the weights itself, so key renames between library versions are the library's
    business. Otherwise (``load: state_dict``, the default) the model is built from the callable
    and ``model_kwargs``, and the checkpoint's state dict (``state_prefix`` applied) is loaded
    with :func:`apply_state`'s strict key and shape checks.

    Args:
        manifest: a :class:`~infodyn.runs.manifest.RunManifest`, or a run folder / manifest file.
        checkpoint: a checkpoint file or folder (``CheckpointInfo.path``).
        trust: see :func:`load_checkpoint_with_meta` (ignored by ``load: model``; the library
            decides how it reads its files).
    """
    from infodyn.runs.manifest import RunManifest, build_model, load_manifest

    m = manifest if isinstance(manifest, RunManifest) else load_manifest(manifest)
    if getattr(m, "load", "state_dict") == "model":
        return build_model(m, checkpoint=checkpoint)
    model = build_model(m)
    state = load_checkpoint(checkpoint, trust=trust, map_location=map_location,
                            state_prefix=getattr(m, "state_prefix", None))
    apply_state(model, state, checkpoint)
    return model.eval()


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
    folder = Path(str(path))
    if folder.is_dir() and (folder / "config.json").is_file():
        parts.append("this is a Hugging Face folder, whose key names the library may rename "
                     "between versions: let it load the folder itself (manifest 'load: model' with "
                     "'model: transformers:AutoModelFor...from_pretrained')")
    parts.append("check the manifest's model and model_kwargs (and 'state_prefix' when the "
                 "network is a sub-module of what was saved)")
    return "; ".join(parts)

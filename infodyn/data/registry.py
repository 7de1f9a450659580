"""Data set names, the manifest, and :func:`load`.

A name is ``BASE[:CLASSES][?KEY=VALUE&...]``: ``"digits"``, ``"digits:0-4"``,
``"gaussian-mixture?classes=4&dims=8"``, or a path to a user ``.npz`` file or folder
(``"data/my.npz:0,1"`` works too). Keyword arguments of :func:`load` override the query.
"""
from __future__ import annotations

import fnmatch
import importlib
import inspect
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from infodyn._text import parse_scalar

from .dataset import DEFAULT_SPLIT, Dataset, array_sha256, build, format_classes, parse_classes

MANIFEST_PATH = Path(__file__).with_name("data_manifest.yaml")


@dataclass(frozen=True)
class Entry:
    """A registered data set: ``generate(seed, **params)`` returns (x, y, classes, meta[, test_mask])."""

    name: str
    generate: Callable[..., tuple]
    role: str
    split: Tuple[float, ...] = DEFAULT_SPLIT
    uses_seed: bool = False  # whether the generated data (not only the split) depend on the seed


_REGISTRY: Dict[str, Entry] = {}
_CACHE: Dict[Any, tuple] = {}
_CACHE_MAX = 16


def register(name: str, generate: Callable[..., tuple], *, role: str, split=DEFAULT_SPLIT,
             uses_seed: bool = False) -> None:
    """Add a data set under ``name`` (list it in data_manifest.yaml too)."""
    _REGISTRY[name] = Entry(name, generate, role, tuple(split), uses_seed)


def _lazy(module: str, attr: str = "generate") -> Callable[..., tuple]:
    def generate(*args, **kwargs):
        return getattr(importlib.import_module(f"infodyn.data.{module}"), attr)(*args, **kwargs)

    generate.__module_name__ = module  # for parameter checks without importing early
    return generate


register("digits", _lazy("digits"), role="source/target")
register("ib12bit", _lazy("ib12bit"), role="information-plane", split=(0.85, 0.0, 0.15))
register("gaussian-mixture", _lazy("mixture"), role="controlled", uses_seed=True)
register("mnist1d", _lazy("mnist1d"), role="source/target")


def available(pattern: str = "*") -> List[str]:
    """Registered data set names matching a shell-style ``pattern`` (``"digit*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def manifest(path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """The data manifest (``yaml.safe_load``): infodyn's own, or a user manifest at ``path``.

    Layout: ``{"version": 1, "datasets": [{"name", "source", "input_shape", "classes",
    "role", ...}, ...]}``. A user manifest lists files:
    ``{"name": "mine", "path": "mine.npz", "sha256": "..."}`` (a relative path is taken from
    the manifest's folder); load them with ``load("mine", manifest=path)``.
    """
    import yaml

    p = MANIFEST_PATH if path is None else Path(path).expanduser()
    try:
        with open(p, "r", encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ValueError(f"{p}: manifest not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list):
        raise ValueError(f"{p}: a manifest needs a top-level 'datasets' list")
    for i, e in enumerate(doc["datasets"]):
        if not isinstance(e, dict) or "name" not in e:
            raise ValueError(f"{p}: datasets entry {i} has no 'name'")
    return doc


def manifest_entry(name: str, path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
    """The manifest entry of data set ``name``."""
    doc = manifest(path)
    for e in doc["datasets"]:
        if e["name"] == name:
            return dict(e)
    raise ValueError(f"{path or MANIFEST_PATH}: no data set {name!r}; it lists "
                     f"{[e['name'] for e in doc['datasets']]}")


def _value(text: str):
    if "," in text:
        return tuple(_value(t) for t in text.split(","))
    return parse_scalar(text)


def _text(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_text(i) for i in v)
    return str(v).lower() if isinstance(v, bool) or v is None else str(v)


_SPEC = re.compile(r"^[\w.\- ,]+$")


def parse_name(name: str) -> Tuple[str, Optional[str], Dict[str, Any]]:
    """``"digits:0-4?as_image=true"`` -> ``("digits", "0-4", {"as_image": True})``."""
    base, params = os.fspath(name), {}
    if "?" in base:
        base, query = base.split("?", 1)
        for item in filter(None, query.split("&")):
            if "=" not in item:
                raise ValueError(f"data set name {name!r}: parameter {item!r} is not KEY=VALUE")
            k, v = item.split("=", 1)
            params[k.strip()] = _value(v.strip())
    spec = None
    if ":" in base:
        head, tail = base.rsplit(":", 1)
        if _SPEC.match(tail) and head:
            base, spec = head, tail
    return base, spec, params


def _looks_like_path(base: str) -> bool:
    return base.endswith(".npz") or os.sep in base or "/" in base or base.startswith("~") \
        or (base not in _REGISTRY and os.path.exists(base))


def _generator(entry: Entry) -> Callable[..., tuple]:
    mod = getattr(entry.generate, "__module_name__", None)
    return getattr(importlib.import_module(f"infodyn.data.{mod}"), "generate") if mod else entry.generate


def _accepts(base: str, param: str) -> bool:
    entry = _REGISTRY.get(base)
    return entry is not None and param in inspect.signature(_generator(entry)).parameters


def _check_params(entry: Entry, params: Dict[str, Any]) -> None:
    sig = inspect.signature(_generator(entry))
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return  # the generator checks its own extra keywords
    accepted = [p for p in sig.parameters if p != "seed"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"data set {entry.name!r}: unknown parameters {unknown}; it accepts "
                         f"{accepted + ['split', 'classes']}")


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(i) for i in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(i)) for k, i in v.items()))
    return v


def _generate(entry: Entry, seed: int, params: Dict[str, Any]) -> tuple:
    """The full set, memoised in-process (read-only arrays; splits are fresh copies)."""
    key = (entry.name, seed if entry.uses_seed else None, _freeze(params))
    if key not in _CACHE:
        out = entry.generate(seed, **params)
        x, y, classes, meta = out[:4]
        test = out[4] if len(out) > 4 else None
        x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
        for a in (x, y):
            a.setflags(write=False)
        meta = dict(meta, sha256=array_sha256(x, y))
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (x, y, tuple(classes), meta, test)
    return _CACHE[key]


def load(name, seed: int = 0, *, split=None, classes=None, sha256=None,
         manifest: Optional[Union[str, Path]] = None, transform=None, **params) -> Dataset:
    """Load a data set by name as train / val / test splits.

    Args:
        name: a registered name (:func:`available`), optionally with a class subset
            ``":0-4"`` and a query ``"?key=value&..."``; or a path to a user ``.npz`` (arrays
            ``x``, ``y``) or a folder of them; or a name from the user ``manifest``.
        seed: the split seed (and the generation seed of seeded generators such as
            ``gaussian-mixture``). Same name, parameters and seed give identical arrays.
        split: (train, val, test) fractions, stratified per class; default 0.6/0.2/0.2
            (``ib12bit``: 0.85/0/0.15, the original training fraction).
        classes: class ids to keep, recoded 0..len-1 in the order given (same as the
            ``":0-4"`` suffix); ``ds.classes`` keeps the original ids.
        sha256: expected checksum of a user file (see :mod:`infodyn.data.files`).
        manifest: a user manifest YAML listing user files with their checksums.
        transform: ``{"mean": ..., "std": ..., "transform": "module:callable"}`` applied to
            every input (see :class:`infodyn.data.splits.Transform`).
        **params: parameters of the data set (``as_image=True`` for ``digits`` and
            ``mnist1d``; ``dims``, ``separation``, ``noise``, ``n_per_class`` for
            ``gaussian-mixture``, where ``classes=`` is the number of mixture classes and a
            subset is given only in the name, ``"gaussian-mixture:0-1"``).

    ``name`` may also be a :class:`~infodyn.data.spec.DataSpec` or a mapping in the manifest's
    form (``{"images": "pets/", "size": [64, 64]}``, ``{"dataset": "mod:make"}``, ``{"hf":
    "saved/"}``; relative paths from the current folder), and a path may name an image folder
    or a ``save_to_disk`` folder; those give a :class:`~infodyn.data.lazy.LazyDataset`, read
    on demand.

    Returns:
        a :class:`Dataset` (or :class:`~infodyn.data.lazy.LazyDataset`); ``ds.all()`` gives
        every sample in the full set's order, ``ds.split("test")`` one split read by index.
    """
    from .spec import DataSpec, parse_data_spec

    if isinstance(name, Mapping) or transform is not None:
        if transform is not None and not isinstance(transform, Mapping):
            raise ValueError(f"transform must be a mapping with mean/std/transform, got {transform!r}")
        if not isinstance(name, (Mapping, DataSpec)):
            name = {"name": os.fspath(name)}
        if transform is not None:
            name = {**(name.as_dict() if isinstance(name, DataSpec) else dict(name)), **transform}
        name = parse_data_spec(name, None, "data")
    if isinstance(name, DataSpec):
        from .lazy import load_spec

        if sha256 is not None or manifest is not None or params:
            raise ValueError(f"data {name}: give sha256, parameters and the like inside the mapping")
        return load_spec(name, seed, split=split, classes=classes)
    base, spec, query = parse_name(os.fspath(name))
    params = {**query, **params}
    if split is None:
        split = params.pop("split", None)
    if spec is not None and classes is not None and not _accepts(base, "classes"):
        raise ValueError(f"data set {name!r}: give the class subset either in the name or as "
                         f"classes=, not both")
    subset = spec if spec is not None else classes
    seed = int(seed)

    if manifest is not None and not _looks_like_path(base):
        e = manifest_entry(base, manifest)
        if "path" not in e:
            raise ValueError(f"{manifest}: entry {base!r} has no 'path'")
        path = Path(e["path"]).expanduser()
        if not path.is_absolute():
            path = Path(manifest).expanduser().parent / path
        return _load_file(path, base if spec is None else f"{base}:{spec}", seed,
                          split if split is not None else e.get("split", DEFAULT_SPLIT),
                          subset if subset is not None else e.get("subset"),
                          sha256 if sha256 is not None else e.get("sha256"),
                          e.get("role", "user"), params)
    if _looks_like_path(base):
        if sha256 is None and manifest is not None:
            target = Path(base).expanduser().resolve()
            root = Path(manifest).expanduser().parent
            for e in globals()["manifest"](manifest)["datasets"]:
                p = Path(e.get("path", "")).expanduser()
                if e.get("path") and (p if p.is_absolute() else root / p).resolve() == target:
                    sha256 = e.get("sha256")
        return _load_file(Path(base), os.fspath(name).split("?")[0], seed,
                          split if split is not None else DEFAULT_SPLIT, subset, sha256, "user",
                          params)

    if base not in _REGISTRY:
        raise ValueError(f"unknown data set {base!r}; available: {available()}, or a path to a "
                         f".npz file or folder")
    entry = _REGISTRY[base]
    if sha256 is not None:
        raise ValueError(f"data set {base!r} is not a file; sha256= applies to user files")
    if _accepts(base, "classes"):  # e.g. gaussian-mixture: classes= is its number of classes
        if classes is not None:
            params["classes"] = classes
        subset = spec
    elif "classes" in params:
        subset = params.pop("classes") if subset is None else subset
    _check_params(entry, params)
    x, y, full_classes, meta, test = _generate(entry, seed, params)
    label = base if subset is None else f"{base}:{format_classes(parse_classes(subset))}"
    if params:
        label += "?" + "&".join(f"{k}={_text(v)}" for k, v in sorted(params.items()))
    meta = dict(meta, params=dict(params))
    return build(label, x, y, full_classes, role=entry.role, meta=meta, seed=seed,
                 split=split if split is not None else entry.split, subset=subset,
                 fixed_test=test)


def _load_file(path: Path, label: str, seed: int, split, subset, sha256, role, params) -> Dataset:
    from .files import read

    if params:
        raise ValueError(f"{path}: user data sets take no parameters, got {sorted(params)}")
    from .lazy import detect_kind

    kind = detect_kind(Path(path).expanduser())
    if kind != "npz":  # an image folder or a save_to_disk folder: read on demand
        from .lazy import load_spec
        from .spec import parse_data_spec

        if sha256 is not None:
            raise ValueError(f"{path}: sha256= applies to .npz files; folders of {kind} data have "
                             "a content digest (ds.digest)")
        opts = {"path": os.fspath(Path(path).expanduser().resolve()), "split": list(split)}
        if subset is not None:
            opts["classes"] = subset if isinstance(subset, str) else list(subset)
        ds = load_spec(parse_data_spec(opts, None, "data"), seed)
        ds.role = role
        return ds
    x, y, classes, meta, origin = read(path, sha256=sha256)
    meta["sha256"] = array_sha256(x, y)
    meta["params"] = {}
    return build(label, x, y, classes, role=role, meta=meta, seed=seed, split=split,
                 subset=subset, origin=origin, given=meta.get("splits_given", ()))


def source_target(source: str, target: Optional[str] = None, seed: int = 0,
                  **params) -> Tuple[Dataset, Dataset]:
    """A source and a target task as two :class:`Dataset` s with roles "source" / "target".

    ``source_target("digits")`` splits the classes in two halves (``digits:0-4`` and
    ``digits:5-9``); ``source_target("digits:0-4", "digits:5-9")`` or
    ``source_target("digits:0-4->digits:5-9")`` names them. Both use the same seed, and since
    the split is drawn per class, no sample is in two splits.
    """
    if target is None and "->" in source:
        source, target = (s.strip() for s in source.split("->", 1))
    if target is None:
        base, spec, _ = parse_name(source)
        if spec is not None:
            raise ValueError(f"source_target({source!r}): give the target too, e.g. "
                             f"'{base}:0-4->{base}:5-9'")
        full = load(source, seed=seed, **params)
        half = (full.num_classes + 1) // 2
        src = load(source, seed=seed, classes=full.classes[:half], **params)
        tgt = load(source, seed=seed, classes=full.classes[half:], **params)
    else:
        src = load(source, seed=seed, **params)
        tgt = load(target, seed=seed, **params)
    return _with_role(src, "source"), _with_role(tgt, "target")


def _with_role(ds, role: str):
    if isinstance(ds, Dataset):
        return replace(ds, role=role)
    import copy

    out = copy.copy(ds)  # a LazyDataset: readers are shared, nothing is read
    out.role = role
    return out

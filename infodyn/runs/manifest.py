"""The run manifest ``infodyn.yaml``: which model, which data, which layers, which checkpoints.

::

    model: mypkg.models:make_mlp     # an importable callable that returns a torch.nn.Module
    model_kwargs: {width: 32}
    data:
      source: digits                 # a data set name, or a path relative to this file
      target: "digits:5-9"           # optional: for transfer measures
      # or a mapping: {images: pets/, size: [64, 64], mean: [...], std: [...]},
      # {dataset: mydata:make, kwargs: {...}}, {hf: saved/, input: img, label: label},
      # {path: mine.npz}; the data's own train/val/test split is kept (see infodyn.data.spec)
    layers: [fc1, fc2]               # names from model.named_modules(); glob patterns allowed
    checkpoints: "*.pt"              # optional glob; default: every checkpoint file in the folder

Checkpoints written by training libraries: ``state_prefix: net.`` loads only the keys under a
sub-module prefix (a LightningModule whose network is ``self.net``); ``load: model`` hands each
checkpoint (a Hugging Face ``checkpoint-N/`` folder) to the ``model`` callable, which loads it
itself (``model: transformers:AutoModelForSequenceClassification.from_pretrained``).

Optional extras: ``name`` (the run's name in result tables; default the folder's name),
``pool`` (how layer outputs of more than 2 dimensions become vectors: ``auto`` (default: conv
maps averaged over space, transformer tokens averaged), ``avg``, ``max``, ``avg2x2``,
``flatten``, ``cls``, ``mean``; or a mapping ``{layer or glob: pool}``; see
:mod:`infodyn.runs.extract`), ``seed``
(an integer >= 0) and ``config`` (the configuration the run belongs to: runs of one ``config``
are aggregated across seeds). Without ``seed``/``config`` both come from the run's name
(``tanh-seed3``: seed 3 of configuration ``tanh``).

**The model callable is user code and runs** when a manifest is used (:func:`build_model`):
only analyse run folders whose manifest you wrote or trust. ``model: models:make`` finds a
``models.py`` kept beside ``infodyn.yaml``: it is imported from that file under a private name
(``infodyn_run_<hash>.models``), never ahead of installed packages (an installed module of the
same name wins, with a warning) and without touching ``sys.path`` or other ``sys.modules``
entries (:func:`import_callable`). Callables that are not model factories (builtins, anything
from ``os``, ``subprocess``, ``sys``, ``shutil``, ``importlib``, ``pickle``, ``torch.load``, ...)
are refused before they are called, and the callable and file about to run are printed.

The manifest is parsed with a safe YAML loader within limits (1 MiB, 100,000 values after alias
expansion, 10,000 layer names), and error messages quote at most 500 characters of a value.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = ["MANIFEST_NAME", "RunManifest", "load_manifest", "parse_manifest", "manifest_dict",
           "write_manifest", "build_model", "import_callable"]

MANIFEST_NAME = "infodyn.yaml"
_TOP_KEYS = {"model", "model_kwargs", "data", "layers", "checkpoints", "name", "pool", "seed", "config",
             "state_prefix", "load"}
_LOADS = ("state_dict", "model")
_DATA_KEYS = {"source", "target"}


@dataclass(frozen=True)
class RunManifest:
    """A parsed ``infodyn.yaml``.

    Attributes:
        model: ``"package.module:callable"`` returning an ``nn.Module``.
        model_kwargs: keyword arguments for that callable.
        data_source: a data set name (``"digits"``, ``"digits:0-4"``) or an absolute path
            (relative paths in the file are resolved against the manifest's folder), or a
            :class:`infodyn.data.spec.DataSpec` for the mapping form (image folder, torch
            ``Dataset`` callable, Hugging Face ``save_to_disk`` folder, transforms, the user's
            own splits); either is what :func:`infodyn.data.load` takes.
        data_target: the same for the transfer target, or None.
        layers: layer names or glob patterns over ``model.named_modules()``.
        checkpoints: a glob relative to the run folder, or None for every checkpoint file.
        path: the manifest file.
        name: the run's name (default: the run folder's name).
        pool: a pool name for every layer (default ``"auto"``) or a mapping of layer names /
            globs to pool names, as :func:`infodyn.runs.extract_features` takes it.
        seed: the run's seed, or None to read it from the name.
        config: the run's configuration (the group aggregated across seeds), or None to read it
            from the name.
        state_prefix: the sub-module prefix of the checkpoints' keys that holds the network
            (``"net."`` for a LightningModule with ``self.net``): only those keys are loaded,
            without the prefix. None: the whole state dict (wrapper prefixes stripped).
        load: ``"state_dict"`` (default: infodyn loads each checkpoint's state dict into the
            model built by ``model(**model_kwargs)``) or ``"model"`` (the ``model`` callable is
            called as ``model(CHECKPOINT_PATH, **model_kwargs)`` and returns the model with its
            weights, e.g. ``transformers:AutoModelForSequenceClassification.from_pretrained``
            on a Hugging Face checkpoint folder).
    """

    model: str
    model_kwargs: Dict[str, Any]
    data_source: Any
    data_target: Optional[Any]
    layers: List[str]
    checkpoints: Optional[str]
    path: Path
    name: str = ""
    pool: Any = "auto"
    seed: Optional[int] = None
    config: Optional[str] = None
    state_prefix: Optional[str] = None
    load: str = "state_dict"
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def run_dir(self) -> Path:
        return self.path.parent


def _manifest_path(run_dir: Union[str, Path]) -> Path:
    p = Path(run_dir)
    if p.is_dir():
        return p / MANIFEST_NAME
    if p.suffix in (".yaml", ".yml"):
        return p
    if not p.exists():
        raise FileNotFoundError(f"no such run folder: {p}")
    raise ValueError(f"{p}: expected a run folder or its {MANIFEST_NAME}")


# Limits on what a manifest may be: it is a few lines written by hand or by `infodyn init`.
MAX_MANIFEST_BYTES = 1 << 20      # 1 MiB
MAX_MANIFEST_NODES = 100_000      # YAML nodes after alias expansion (scalars, lists, mappings)
MAX_LAYERS = 10_000               # entries of 'layers'
MAX_ECHO = 500                    # characters of a value quoted in an error message


def _echo(value: Any, limit: int = MAX_ECHO) -> str:
    """A short repr of ``value`` for error messages: nested containers, long strings and huge
    numbers are abbreviated (reprlib), and the result is cut at ``limit`` characters with "..."."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, 120, 120, 60
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = 12
    try:
        text = r.repr(value)
    except Exception:  # an int too long to print, an object whose repr fails
        text = f"<{type(value).__name__}>"
    return _cut(text, limit)


def _cut(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut at ``limit`` characters with "..." (exception texts quoted in messages)."""
    return text if len(text) <= limit else text[:limit] + "..."


def _manifest_loader():
    """A yaml.SafeLoader that counts nodes as they are composed, aliases expanded (an alias
    counts the whole node it repeats), and stops past MAX_MANIFEST_NODES: an alias bomb is
    refused while being read, before anything is built. A recursive alias is refused too."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self._expanded = 0
            self._done: Dict[int, int] = {}  # id(node) -> expanded size, for complete nodes

        def _size(self, node) -> int:
            size = self._done.get(id(node))
            if size is None:  # an anchor still being composed: the alias sits inside it
                raise yaml.YAMLError("a recursive alias (a node that contains itself) is not allowed")
            return size

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                anchor = self.peek_event().anchor
                target = self.anchors.get(anchor)
                if target is not None:
                    self._count(self._size(target))
                return super().compose_node(parent, index)
            self._count(1)
            node = super().compose_node(parent, index)
            if isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self._done.get(id(v), 1) for v in node.value)
            elif isinstance(node, yaml.MappingNode):
                size = 1 + sum(self._done.get(id(k), 1) + self._done.get(id(v), 1) for k, v in node.value)
            else:
                size = 1
            self._done[id(node)] = size
            return node

        def _count(self, n: int) -> None:
            self._expanded += n
            if self._expanded > MAX_MANIFEST_NODES:
                raise yaml.YAMLError(f"more than {MAX_MANIFEST_NODES:,} values once its aliases (*name) "
                                     "are expanded; a manifest is a few lines")

    return Loader


def _read_yaml(path: Path):
    """Parse a manifest file within the limits above; ValueError naming the file otherwise."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{path}: {size:,} bytes is too large for a run manifest "
                         f"(limit {MAX_MANIFEST_BYTES:,} bytes); it holds a few lines")
    with open(path, "rb") as fh:
        data = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"{path}: too large for a run manifest (limit {MAX_MANIFEST_BYTES:,} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return load_yaml_text(text, path)


def load_yaml_text(text: str, where: Union[str, Path] = MANIFEST_NAME):
    """``yaml.safe_load(text)`` within the manifest limits (MAX_MANIFEST_BYTES characters,
    MAX_MANIFEST_NODES values after alias expansion, no recursive aliases).

    Raises:
        ValueError: naming ``where``, quoting at most MAX_ECHO characters of the parser's message.
    """
    import yaml

    if len(text) > MAX_MANIFEST_BYTES:
        raise ValueError(f"{where}: too large for a run manifest (limit {MAX_MANIFEST_BYTES:,} bytes)")
    loader = _manifest_loader()(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ValueError(f"{where}: not valid YAML: {_cut(str(exc))}") from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit integer; nesting deeper than Python's stack
        what = "nested too deeply" if isinstance(exc, RecursionError) else _cut(str(exc))
        raise ValueError(f"{where}: not a usable manifest: {what}") from None
    finally:
        loader.dispose()


def load_manifest(run_dir: Union[str, Path]) -> RunManifest:
    """Read and check ``RUN_DIR/infodyn.yaml`` (or a manifest file given directly).

    The file is read with a safe YAML loader within limits (MAX_MANIFEST_BYTES, and
    MAX_MANIFEST_NODES values once aliases are expanded, so an alias bomb is refused in
    milliseconds), and error messages quote at most MAX_ECHO characters of a value.

    Raises:
        FileNotFoundError: no manifest (the message says how to write one).
        ValueError: the file is not valid YAML, is too large, has an unknown key, or a key of the
            wrong type; the message names the file and the key.
    """
    path = _manifest_path(run_dir)
    if not path.exists():
        raise FileNotFoundError(
            f"no run manifest at {path}; write one with `infodyn init {path.parent} --model "
            f"MODULE:CALLABLE --source DATA --layers LAYER,...`")
    return parse_manifest(_read_yaml(path), path)


def _str_list(value, path: Path, key: str) -> List[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{path}: '{key}' must be a list of layer names, got {_echo(value)}")
    return list(value)


def _data_ref(value, path: Path, key: str):
    """A data entry: a name or path string (relative paths made absolute against the manifest's
    folder) or a mapping, returned as a :class:`infodyn.data.spec.DataSpec` (see there)."""
    from infodyn.data.spec import parse_data_spec

    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{path}: '{key}' must be a data set name, a path or a mapping, got "
                         f"{_echo(value)}")
    return parse_data_spec(value, path.parent, f"{path}: '{key}'")


def _pool_ref(value, path: Path):
    from infodyn.runs.extract import check_pool

    try:
        check_pool(value)
    except ValueError as exc:  # "pool must be ..." / "pool for layer 'x' must be ..."
        raise ValueError(f"{path}: 'pool'{str(exc)[4:]}") from None
    return dict(value) if isinstance(value, dict) else value


def parse_manifest(raw, path: Union[str, Path] = MANIFEST_NAME) -> RunManifest:
    """Check a manifest mapping (as loaded from YAML) and build a :class:`RunManifest`."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys model, data, layers; "
                         f"got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {_echo(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("model", "data", "layers"):
        if key not in raw or raw[key] in (None, "", []):
            raise ValueError(f"{path}: missing required key '{key}'")
    model = raw["model"]
    if not isinstance(model, str) or not model.strip() or len(model) > 300:
        raise ValueError(f"{path}: 'model' must be 'module:callable', got {_echo(model)}")
    kwargs = raw.get("model_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{path}: 'model_kwargs' must be a mapping of names to values, "
                         f"got {_echo(kwargs)}")
    data = raw["data"]
    if isinstance(data, str):
        data = {"source": data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: 'data' must be a mapping with 'source' (and optional "
                         f"'target'), got {_echo(data)}")
    bad = sorted(set(map(str, data)) - _DATA_KEYS)
    if bad:
        raise ValueError(f"{path}: unknown key(s) under 'data': {_echo(bad)}; allowed: source, target")
    if "source" not in data:
        raise ValueError(f"{path}: missing required key 'data.source'")
    source = _data_ref(data["source"], path, "data.source")
    target = data.get("target")
    target = None if target is None else _data_ref(target, path, "data.target")
    layers = _str_list(raw["layers"], path, "layers")
    if len(layers) > MAX_LAYERS:
        raise ValueError(f"{path}: 'layers' lists {len(layers):,} names (limit {MAX_LAYERS:,}); "
                         "use glob patterns such as 'fc*'")
    ckpts = raw.get("checkpoints")
    if ckpts is not None and (not isinstance(ckpts, str) or not ckpts.strip()):
        raise ValueError(f"{path}: 'checkpoints' must be a glob such as '*.pt', got {_echo(ckpts)}")
    if ckpts is not None:
        parts = ckpts.strip().replace("\\", "/").split("/")
        if ckpts.strip().startswith(("/", "\\", "~")) or Path(ckpts.strip()).is_absolute() \
                or (len(parts[0]) == 2 and parts[0][1] == ":") or ".." in parts:
            raise ValueError(f"{path}: 'checkpoints' must be a glob inside the run folder (relative, "
                             f"no '..' part), got {_echo(ckpts)}")
    name = raw.get("name") or path.parent.resolve().name
    if not isinstance(name, str):
        raise ValueError(f"{path}: 'name' must be a string, got {_echo(name)}")
    pool = _pool_ref(raw.get("pool", "auto"), path)
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"{path}: 'seed' must be an integer >= 0, got {_echo(seed)}")
    config = raw.get("config")
    if config is not None and (not isinstance(config, str) or not config.strip()):
        raise ValueError(f"{path}: 'config' must be a non-empty string, got {_echo(config)}")
    return RunManifest(model=model.strip(), model_kwargs=dict(kwargs), data_source=source,
                       data_target=target, layers=layers, checkpoints=ckpts, path=path,
                       name=name, pool=pool, seed=seed, config=None if config is None else config.strip(),
                       state_prefix=_state_prefix(raw.get("state_prefix"), path),
                       load=_load_mode(raw.get("load"), path), raw=dict(raw))


def _state_prefix(value, path: Path) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip(" ."):
        raise ValueError(f"{path}: 'state_prefix' must be a sub-module prefix such as 'net.', "
                         f"got {_echo(value)}")
    value = value.strip()
    return value if value.endswith(".") else value + "."


def _load_mode(value, path: Path) -> str:
    if value is None:
        return "state_dict"
    if value not in _LOADS:
        raise ValueError(f"{path}: 'load' must be one of {_LOADS} ('model': the model callable "
                         f"receives the checkpoint path and loads it itself), got {_echo(value)}")
    return value


def manifest_dict(*, model: str, source: str, layers: Sequence[str], target: Optional[str] = None,
                  model_kwargs: Optional[Dict[str, Any]] = None,
                  checkpoints: Optional[str] = None, name: Optional[str] = None,
                  pool: Optional[str] = None, seed: Optional[int] = None,
                  config: Optional[str] = None, state_prefix: Optional[str] = None,
                  load: Optional[str] = None) -> Dict[str, Any]:
    """The mapping written to ``infodyn.yaml`` (omitting unset optional keys)."""
    out: Dict[str, Any] = {"model": model}
    if model_kwargs:
        out["model_kwargs"] = dict(model_kwargs)
    out["data"] = {"source": source} if target is None else {"source": source, "target": target}
    out["layers"] = list(layers) if not isinstance(layers, str) else _str_list(layers, Path("."), "layers")
    if checkpoints:
        out["checkpoints"] = checkpoints
    if name:
        out["name"] = name
    if pool and pool != "auto":
        out["pool"] = pool
    if seed is not None:
        out["seed"] = seed
    if config:
        out["config"] = config
    if state_prefix:
        out["state_prefix"] = state_prefix
    if load and load != "state_dict":
        out["load"] = load
    return out


def _normalise_for_compare(d: Dict[str, Any]) -> Dict[str, Any]:
    d = dict(d)
    if isinstance(d.get("data"), str):
        d["data"] = {"source": d["data"]}
    if not d.get("model_kwargs"):
        d.pop("model_kwargs", None)
    if isinstance(d.get("layers"), str):
        d["layers"] = _str_list(d["layers"], Path("."), "layers")
    return d


def write_manifest(run_dir: Union[str, Path], manifest: Dict[str, Any], *,
                   overwrite: bool = False) -> Path:
    """Check ``manifest`` (a mapping as in the file) and write ``RUN_DIR/infodyn.yaml`` atomically.

    An existing manifest with the same content is left as it is; a different one raises
    ValueError unless ``overwrite=True``. Returns the manifest's path.
    """
    import yaml

    from infodyn._atomic import atomic_write_text

    root = Path(run_dir)
    path = root / MANIFEST_NAME
    parse_manifest(manifest, path)  # same checks as reading it back
    if path.exists() and not overwrite:
        try:
            old = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            old = None
        if not isinstance(old, dict) or _normalise_for_compare(old) != _normalise_for_compare(manifest):
            raise ValueError(f"{path} already exists with different content; pass overwrite=True "
                             "(command line: --force) to replace it")
        return path
    text = ("# infodyn run manifest. The model callable below is imported and run by "
            "`infodyn analyze`.\n" + yaml.safe_dump(manifest, sort_keys=False, default_flow_style=None))
    atomic_write_text(path, text)
    return path


# ---------------------------------------------------------------------------------------------
# the model factory: which callable, from which file, and what it may be

# Modules whose callables are never model factories; most run commands, touch files, load
# pickles or import further code. Matched against the manifest's module and against the module
# that defines the callable (so a re-export such as ``run = subprocess.run`` is caught too).
_DENIED_MODULES = frozenset("""
    os posix nt posixpath ntpath subprocess _posixsubprocess sys shutil builtins __builtin__
    importlib imp pkgutil zipimport runpy code codeop pdb bdb pickle _pickle copyreg marshal shelve
    dbm dill cloudpickle joblib socket ssl select selectors http urllib ftplib smtplib telnetlib
    xmlrpc webbrowser antigravity this pty tty termios fcntl resource signal ctypes _ctypes cffi
    multiprocessing concurrent threading _thread asyncio tempfile glob pathlib io _io fileinput
    zipfile tarfile gc inspect types functools operator platform sysconfig site distutils
    setuptools pip venv ensurepip sched atexit
    torch.serialization torch.hub torch.package torch.jit torch.utils.cpp_extension torch.ops
    pandas.io.pickle infodyn.runs infodyn.cli
""".split())
# Callables by name (the last part) or qualified name (module.qualname of the object, or the
# manifest's module.attribute).
_DENIED_NAMES = frozenset("""
    eval exec compile __import__ getattr setattr delattr open input breakpoint globals locals vars
    system popen spawn execv execve execl
    torch.load numpy.load pandas.read_pickle yaml.load yaml.unsafe_load yaml.full_load yaml.load_all
    yaml.unsafe_load_all yaml.full_load_all
""".split())
_announced: set = set()


def _denied_module(name: str) -> Optional[str]:
    """The denylist entry that ``name`` (a dotted module name) falls under, or None."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        head = ".".join(parts[:i])
        if head in _DENIED_MODULES:
            return head
    return None


def _refuse(where: str, spec: str, why: str) -> ValueError:
    return ValueError(f"{where}: model {spec!r} refused before running it: {why}. The 'model' key must "
                      "name a model factory: a torch.nn.Module subclass, or a Python function (or "
                      "classmethod) that returns an nn.Module")


def _check_spec_text(spec: str, mod_name: str, attr: str, where: str) -> None:
    """Refusals decided from the manifest's text alone, before anything is imported."""
    hit = _denied_module(mod_name)
    if hit:
        raise _refuse(where, spec, f"module {hit!r} holds no model factories (it runs commands, "
                                   "touches files or loads code)")
    parts = attr.split(".")
    if any(p.startswith("__") and p.endswith("__") for p in parts):
        raise _refuse(where, spec, "dunder attributes are not model factories")
    if parts[-1] in _DENIED_NAMES or f"{mod_name}.{attr}" in _DENIED_NAMES:
        raise _refuse(where, spec, f"{parts[-1]!r} is not a model factory")


def _origin(obj):
    """(defining module, qualified name) of a callable, whatever its kind ("" when unknown)."""
    target = getattr(obj, "__func__", obj)  # bound methods: the function
    mod = getattr(target, "__module__", None)
    if not isinstance(mod, str):  # builtin methods of a module object (os.system: posix)
        owner = getattr(target, "__self__", None)
        mod = getattr(owner, "__name__", None) if isinstance(getattr(owner, "__name__", None), str) else ""
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(obj).__name__
    return mod, f"{mod}.{qual}" if mod else str(qual)


def _check_origin(obj, spec: str, where: str, what: str = "model factories") -> None:
    """Refuse a callable defined in a denied module or with a denied name (any kind of callable:
    also a builtin re-exported under an innocent name). Nothing is called."""
    import inspect

    mod, qual = _origin(obj)
    hit = _denied_module(mod)
    if not hit and inspect.ismethod(obj) and inspect.isclass(obj.__self__):
        hit = _denied_module(obj.__self__.__module__ or "")
    if hit:
        raise _refuse(where, spec, f"it is defined in {hit!r} ({qual}), which holds no {what}")
    if qual in _DENIED_NAMES or qual.rpartition(".")[2] in _DENIED_NAMES:
        raise _refuse(where, spec, f"{qual} is not one of the {what}")


def _check_factory(obj, spec: str, where: str) -> None:
    """Refuse ``obj`` unless it is an nn.Module subclass or a Python function / bound classmethod
    defined outside the denied modules. Nothing is called."""
    import inspect
    import types

    import torch

    if inspect.isclass(obj):
        if not issubclass(obj, torch.nn.Module):
            raise _refuse(where, spec, f"it is the class {obj.__module__}.{obj.__qualname__}, which is "
                                       "not a torch.nn.Module subclass")
    elif not (isinstance(obj, types.FunctionType) or (
            inspect.ismethod(obj) and isinstance(obj.__func__, types.FunctionType) and inspect.isclass(obj.__self__))):
        kind = ("a builtin (C) function" if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType))
                else f"a {type(obj).__name__} object")
        raise _refuse(where, spec, f"it is {kind}, not a Python function or nn.Module class")
    _check_origin(obj, spec, where)


def _source_file(obj) -> str:
    import inspect

    try:
        target = obj.__func__ if inspect.ismethod(obj) else obj
        return str(inspect.getsourcefile(target) or inspect.getfile(target))
    except (TypeError, OSError):
        return "<unknown file>"


def _announce(obj, spec: str, where: str) -> str:
    """Say which callable and which file is about to run: logged (logger ``infodyn.runs``,
    INFO) always, and printed to stderr once per process for code outside infodyn (a run's own
    module, any installed library). Returns the file."""
    import logging

    import infodyn

    file = _source_file(obj)
    target = getattr(obj, "__func__", obj)
    msg = f"{where}: running model factory {spec!r} ({getattr(target, '__qualname__', spec)} in {file})"
    logging.getLogger("infodyn.runs").info(msg)
    own = Path(infodyn.__file__).resolve().parent
    key = (spec, file)
    if not _inside(Path(file), own) and key not in _announced:
        _announced.add(key)
        print(f"infodyn: {msg}", file=sys.stderr, flush=True)
    return file


def _inside(p: Path, root: Path) -> bool:
    try:
        return p.resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _local_module(search_dir: Path, top: str) -> Optional[Path]:
    """``SEARCH_DIR/top.py`` or the package ``SEARCH_DIR/top/`` (with ``__init__.py``), if present."""
    f = search_dir / f"{top}.py"
    if f.is_file():
        return f
    d = search_dir / top / "__init__.py"
    return d.parent if d.is_file() else None


def _installed_origin(top: str, search_dir: Optional[Path]) -> Optional[str]:
    """Where ``top`` is importable from without the run folder (None: it is not).

    A hit inside the run folder itself (the working directory on ``sys.path``) does not count.
    Finding a top-level module's spec imports nothing.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    locs = [p for p in list(found.submodule_search_locations or []) + [found.origin]
            if p and p not in ("built-in", "frozen")]
    if search_dir is not None and locs and all(_inside(Path(p), search_dir.resolve()) for p in locs):
        return None
    return found.origin or (locs[0] if locs else "<namespace package>")


def _run_package(search_dir: Path) -> str:
    """A private package name for the run folder, ``infodyn_run_<hash>``, registered in sys.modules.

    The hash covers the folder's resolved path and the content of its ``.py`` files (and those of
    its packages, up to 2,000 files / 64 MB; beyond that their sizes and mtimes), so an edited
    models.py is imported afresh and two runs with a ``models.py`` each never share one.
    """
    import hashlib
    import itertools
    import types

    root = search_dir.resolve()
    h = hashlib.sha256(str(root).encode("utf-8", "surrogateescape"))
    budget = 64 << 20
    files = itertools.islice(itertools.chain(sorted(root.glob("*.py")), sorted(root.glob("*/**/*.py"))), 2000)
    for f in files:
        try:
            st = f.stat()
            h.update(str(f.relative_to(root)).encode("utf-8", "surrogateescape"))
            if st.st_size <= budget:
                budget -= st.st_size
                h.update(f.read_bytes())
            else:
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            continue
    name = f"infodyn_run_{h.hexdigest()[:16]}"
    if name not in sys.modules:
        pkg = types.ModuleType(name, f"infodyn: the run folder {root} (its own modules)")
        pkg.__path__ = [str(root)]
        pkg.__package__ = name
        sys.modules[name] = pkg
    return name


def import_callable(spec: str, *, search_dir: Optional[Path] = None, where: str = "manifest"):
    """Import ``"package.module:callable"`` (or ``"package.module.callable"``) safely.

    Precedence, when the manifest's folder is ``search_dir``:

    * a module that is importable normally (installed, or infodyn itself) is imported normally;
      **installed wins**: a file or package of the same name in the run folder is ignored with a
      warning (a folder cannot shadow a library);
    * otherwise ``SEARCH_DIR/<top>.py`` (or the package ``SEARCH_DIR/<top>/``) is imported from its
      file under a private name, ``infodyn_run_<hash>.<module>``: nothing of the run folder is
      put on ``sys.path``, no entry of ``sys.modules`` is replaced, and two runs with a
      ``models.py`` each get their own. Such a module imports its siblings relatively
      (``from .helpers import x``); no ``__pycache__`` is written into the run folder.

    Before anything is imported, modules that hold no model factories (``os``, ``subprocess``,
    ``sys``, ``shutil``, ``builtins``, ``importlib``, ``pickle``, ``socket``, ``pty``, ...) and
    names such as ``eval``/``exec``/``system`` are refused; so is an object that turns out to be
    defined in one of those modules (``make = os.system`` in a run's module). Raises ValueError
    naming ``where`` and ``spec`` when the spec is refused or the import fails. (Whether the object
    is a model factory, an nn.Module class or a Python function, is checked by
    :func:`build_model` before calling it; data set and transform callables may be builtins such
    as ``torch.tanh``.)
    """
    import warnings

    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
    else:
        mod_name, _, attr = spec.rpartition(".")
    mod_name, attr = mod_name.strip(), attr.strip()
    if not mod_name or not attr or not all(p.isidentifier() for p in mod_name.split(".") + attr.split(".")):
        raise ValueError(f"{where}: model {spec!r} must look like 'package.module:callable'")
    _check_spec_text(spec, mod_name, attr, where)
    top = mod_name.partition(".")[0]
    folder = Path(search_dir) if search_dir is not None else None
    local = _local_module(folder, top) if folder is not None else None
    origin = _installed_origin(top, folder)
    if origin is not None or local is None:
        if local is not None:
            warnings.warn(f"{where}: model {spec!r}: {top!r} is installed ({origin}); the run folder's "
                          f"{local} is ignored (installed modules win; rename the folder's file to use it)",
                          UserWarning, stacklevel=3)
        full = mod_name
    else:
        full = f"{_run_package(folder)}.{mod_name}"
    before = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ written into the user's run folder
    try:
        module = importlib.import_module(full)
    except ImportError as exc:
        hint = (f"; it is not installed and there is no {top}.py beside the manifest"
                if local is None and origin is None else "")
        raise ValueError(f"{where}: cannot import module {mod_name!r} for model {spec!r}: {_cut(str(exc))}{hint}") from None
    finally:
        sys.dont_write_bytecode = before
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            ignored = f" (the run folder's {local} was ignored: {top!r} is installed)" if origin and local else ""
            raise ValueError(f"{where}: module {mod_name!r} has no attribute {attr!r} (model {spec!r}){ignored}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{where}: {spec!r} is not callable")
    _check_origin(obj, spec, where, "factories")  # e.g. `make = os.system` in a run's module
    return obj


def build_model(manifest: Union[RunManifest, str, Path], checkpoint: Union[str, Path, None] = None):
    """Build the manifest's model: import its callable and call it with ``model_kwargs``.

    This runs user code (the callable named in the manifest). Before calling it, the callable is
    checked to be a model factory: an ``nn.Module`` subclass, or a Python function or bound
    classmethod, not defined in a module that runs commands, touches files or loads code
    (``os``, ``subprocess``, ``sys``, ``shutil``, ``builtins``, ``importlib``, ``pickle``,
    ``torch.load``, ...; builtins such as ``eval`` are C functions and refused as such); which
    callable and file will run is logged (and printed to stderr once per process for code
    outside infodyn). Returns an ``nn.Module`` in eval mode with freshly initialised weights; load a checkpoint into it with
    :func:`infodyn.runs.apply_state` (or use :func:`infodyn.runs.load_model`, which does both).

    Args:
        manifest: a :class:`RunManifest`, or a run folder / manifest file.
        checkpoint: for the manifest's ``load: model`` only, the checkpoint file or folder the
            callable is called with (``model(checkpoint, **model_kwargs)``; it loads the
            weights itself, e.g. ``from_pretrained``). Callers that have already listed the
            run's checkpoints pass one of them here (``checkpoints[0].path`` to list or check
            layer names). Without it, a ``load: model`` manifest lists the run folder again
            (:func:`~infodyn.runs.discover` by names, on every call) and takes the first
            checkpoint. Ignored for ``load: state_dict``.
    """
    import torch

    m = manifest if isinstance(manifest, RunManifest) else load_manifest(manifest)
    fn = import_callable(m.model, search_dir=m.path.parent.resolve(), where=str(m.path))
    _check_factory(fn, m.model, str(m.path))  # before calling it: no builtins, os, subprocess, ...
    _announce(fn, m.model, str(m.path))
    args: tuple = ()
    if getattr(m, "load", "state_dict") == "model":
        if checkpoint is None:
            from infodyn.runs.discover import discover

            checkpoint = discover(m.run_dir, m.checkpoints, read_content=False)[0].path
        args = (str(checkpoint),)
    try:
        model = fn(*args, **m.model_kwargs)
    except TypeError as exc:
        raise ValueError(f"{m.path}: calling {m.model}({'CHECKPOINT, ' if args else ''}"
                         f"**{_echo(m.model_kwargs)}) failed: {_cut(str(exc))}; "
                         "check model_kwargs") from None
    except Exception as exc:  # the user's callable failed: say which file and key named it
        raise ValueError(f"{m.path}: the model callable {m.model!r} (key 'model') raised "
                         f"{type(exc).__name__}: {_cut(str(exc))}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{m.path}: {m.model} returned a {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model.eval()

"""The run manifest ``infodyn.yaml``: which model, which data, which layers, which checkpoints.

::

    model: mypkg.models:make_mlp     # an importable callable that returns a torch.nn.Module
    model_kwargs: {width: 32}
    data:
      source: digits                 # a data set name, or a path relative to this file
      target: "digits:5-9"           # optional: for transfer measures
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
only analyse run folders whose manifest you wrote or trust. The folder holding the manifest is
put on ``sys.path`` while the callable is imported, so ``model: models:make`` finds a
``models.py`` kept beside ``infodyn.yaml``. The manifest is parsed with ``yaml.safe_load``.
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
_POOLS = ("auto", "avg", "max", "flatten", "cls", "mean")  # and "avgHxW"; see runs.extract.POOLS


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


def load_manifest(run_dir: Union[str, Path]) -> RunManifest:
    """Read and check ``RUN_DIR/infodyn.yaml`` (or a manifest file given directly).

    Raises:
        FileNotFoundError: no manifest (the message says how to write one).
        ValueError: the file is not valid YAML, has an unknown key, or a key of the wrong type;
            the message names the file and the key.
    """
    import yaml

    path = _manifest_path(run_dir)
    if not path.exists():
        raise FileNotFoundError(
            f"no run manifest at {path}; write one with `infodyn init {path.parent} --model "
            f"MODULE:CALLABLE --source DATA --layers LAYER,...`")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return parse_manifest(raw, path)


def _str_list(value, path: Path, key: str) -> List[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{path}: '{key}' must be a list of layer names, got {value!r}")
    return list(value)


def _data_ref(value, path: Path, key: str):
    """A data entry: a name or path string (relative paths made absolute against the manifest's
    folder) or a mapping, returned as a :class:`infodyn.data.spec.DataSpec` (see there)."""
    from infodyn.data.spec import parse_data_spec

    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{path}: '{key}' must be a data set name, a path or a mapping, got "
                         f"{value!r}")
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
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("model", "data", "layers"):
        if key not in raw or raw[key] in (None, "", []):
            raise ValueError(f"{path}: missing required key '{key}'")
    model = raw["model"]
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"{path}: 'model' must be 'module:callable', got {model!r}")
    kwargs = raw.get("model_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{path}: 'model_kwargs' must be a mapping of names to values, "
                         f"got {kwargs!r}")
    data = raw["data"]
    if isinstance(data, str):
        data = {"source": data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: 'data' must be a mapping with 'source' (and optional "
                         f"'target'), got {data!r}")
    bad = sorted(set(map(str, data)) - _DATA_KEYS)
    if bad:
        raise ValueError(f"{path}: unknown key(s) under 'data': {bad}; allowed: source, target")
    if "source" not in data:
        raise ValueError(f"{path}: missing required key 'data.source'")
    source = _data_ref(data["source"], path, "data.source")
    target = data.get("target")
    target = None if target is None else _data_ref(target, path, "data.target")
    layers = _str_list(raw["layers"], path, "layers")
    ckpts = raw.get("checkpoints")
    if ckpts is not None and (not isinstance(ckpts, str) or not ckpts.strip()):
        raise ValueError(f"{path}: 'checkpoints' must be a glob such as '*.pt', got {ckpts!r}")
    name = raw.get("name") or path.parent.resolve().name
    if not isinstance(name, str):
        raise ValueError(f"{path}: 'name' must be a string, got {name!r}")
    pool = _pool_ref(raw.get("pool", "auto"), path)
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"{path}: 'seed' must be an integer >= 0, got {seed!r}")
    config = raw.get("config")
    if config is not None and (not isinstance(config, str) or not config.strip()):
        raise ValueError(f"{path}: 'config' must be a non-empty string, got {config!r}")
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
                         f"got {value!r}")
    value = value.strip()
    return value if value.endswith(".") else value + "."


def _load_mode(value, path: Path) -> str:
    if value is None:
        return "state_dict"
    if value not in _LOADS:
        raise ValueError(f"{path}: 'load' must be one of {_LOADS} ('model': the model callable "
                         f"receives the checkpoint path and loads it itself), got {value!r}")
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


def import_callable(spec: str, *, search_dir: Optional[Path] = None, where: str = "manifest"):
    """Import ``"package.module:callable"`` (or ``"package.module.callable"``).

    ``search_dir`` is put first on ``sys.path`` during the import (user modules kept beside the
    manifest). Raises ValueError naming ``where`` and ``spec`` when the import fails.
    """
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
    else:
        mod_name, _, attr = spec.rpartition(".")
    if not mod_name or not attr:
        raise ValueError(f"{where}: model {spec!r} must look like 'package.module:callable'")
    if search_dir is not None and "." not in mod_name:
        local = Path(search_dir) / f"{mod_name}.py"
        cached = sys.modules.get(mod_name)
        if (cached is not None and local.is_file()
                and Path(getattr(cached, "__file__", None) or "").resolve() != local.resolve()):
            # another run's module of the same name (both keep a models.py): import this run's own
            del sys.modules[mod_name]
    added = False
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.insert(0, str(search_dir))
        added = True
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"{where}: cannot import module {mod_name!r} for model {spec!r}: {exc}") from None
    finally:
        if added:
            try:
                sys.path.remove(str(search_dir))
            except ValueError:
                pass
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{where}: module {mod_name!r} has no attribute {attr!r} (model {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{where}: {spec!r} is not callable")
    return obj


def build_model(manifest: Union[RunManifest, str, Path], checkpoint: Union[str, Path, None] = None):
    """Build the manifest's model: import its callable and call it with ``model_kwargs``.

    This runs user code (the callable named in the manifest). Returns an ``nn.Module`` in eval
    mode with freshly initialised weights; load a checkpoint into it with
    :func:`infodyn.runs.apply_state` (or use :func:`infodyn.runs.load_model`, which does both).

    With the manifest's ``load: model`` the callable is called as
    ``model(checkpoint, **model_kwargs)`` and loads the weights itself (``from_pretrained``);
    ``checkpoint`` defaults to the run's first checkpoint (to list or check layer names).
    """
    import torch

    m = manifest if isinstance(manifest, RunManifest) else load_manifest(manifest)
    fn = import_callable(m.model, search_dir=m.path.parent.resolve(), where=str(m.path))
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
                         f"**{m.model_kwargs}) failed: {exc}; "
                         "check model_kwargs") from None
    except Exception as exc:  # the user's callable failed: say which file and key named it
        raise ValueError(f"{m.path}: the model callable {m.model!r} (key 'model') raised "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{m.path}: {m.model} returned a {type(model).__name__}, "
                         "not a torch.nn.Module")
    return model.eval()

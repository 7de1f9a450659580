"""Data named in a run manifest: a name or path string, or a mapping (:class:`DataSpec`).

String form (as before): a registered name (``digits:0-4``), or a path to a ``.npz`` file, a
folder of them, an image folder or a ``save_to_disk`` folder, optionally with a class subset
(``data/mine.npz:0,1``). Relative paths are taken from the manifest's folder.

Mapping form: exactly one of the source keys, then options::

    source:
      images: data/pets          # class-per-subfolder images (optional train/ val/ test/ level)
      size: [64, 64]             # resize to (H, W); needed when images differ in size
      mode: RGB                  # or L (grey)
      mean: [0.485, 0.456, 0.406]
      std: [0.229, 0.224, 0.225]

    source:
      dataset: mydata:make_sets  # callable -> torch Dataset, or {"train": ds, "test": ds}
      kwargs: {root: raw}        # its keyword arguments
      splits: {val: valid}       # which of its keys are infodyn's train / val / test
      # items are (input, label) pairs, or mappings: input: / label: name their keys

    source:
      hf: data/hf_saved          # datasets.load_from_disk folder (Dataset or DatasetDict)
      input: img                 # input column (default: image / img / pixel_values / x ...)
      label: label               # label column

    source:
      path: data/mine.npz        # .npz (x, y or x_train, y_train, x_test, y_test[, x_val, y_val]),
      sha256: 3f2a...            #   a folder of .npz, an image folder or a save_to_disk folder
    source: {name: "digits:0-4", mean: 0.5}

Options for every kind: ``classes`` (subset, as ``"0-4"`` or a list), ``split`` ((train, val,
test) fractions for what the data do not split themselves), ``mean``/``std`` (per channel or one
number), ``transform`` (``"module:callable"`` applied to each float32 batch (b, *shape) before
``mean``/``std``), ``digest`` (``content`` (default) or ``stat`` for folders: how the content
digest is taken; ``spec`` (default) or ``full`` for a ``dataset`` callable). ``params`` (a
mapping) passes parameters to a registered data set. Callables are user code: they are imported
from the manifest's folder like the model.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

KINDS = ("name", "path", "images", "hf", "dataset")
_COMMON = {"classes", "split", "mean", "std", "transform", "digest"}
_OPTIONS = {
    "name": _COMMON | {"params"},
    "path": _COMMON | {"sha256", "size", "mode", "input", "label", "splits"},
    "images": _COMMON | {"size", "mode"},
    "hf": _COMMON | {"input", "label", "size", "mode", "splits"},
    "dataset": _COMMON | {"kwargs", "splits", "input", "label"},
}
_DIGESTS = {"name": ("content",), "path": ("content", "stat"), "images": ("content", "stat"),
            "hf": ("content", "stat"), "dataset": ("spec", "full")}


@dataclass(frozen=True)
class DataSpec:
    """A data source named by a mapping; hashable (options are kept as canonical JSON).

    Attributes:
        kind: ``name``, ``path``, ``images``, ``hf`` or ``dataset``.
        target: the name, the absolute path, or ``"module:callable"``.
        options_json: the other keys, as sorted JSON (see :attr:`options`).
        base_dir: the folder user modules (``dataset``, ``transform``) are imported from.
    """

    kind: str
    target: str
    options_json: str = "{}"
    base_dir: Optional[str] = None

    @property
    def options(self) -> Dict[str, Any]:
        return json.loads(self.options_json)

    def get(self, key: str, default=None):
        return self.options.get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        """The mapping as written in a manifest (paths absolute)."""
        return {self.kind: self.target, **self.options}

    def with_options(self, **changes) -> "DataSpec":
        """The same source with some options changed (None removes one); checked again."""
        opts = {**self.options, **changes}
        opts = {k: v for k, v in opts.items() if v is not None}
        return parse_data_spec({self.kind: self.target, **opts}, self.base_dir, str(self))

    def __str__(self) -> str:
        return self.target if self.kind in ("name", "path") else f"{self.kind}:{self.target}"


def _resolve(p: str, base: Path) -> str:
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q).resolve())


def resolve_name(value: str, base: Path) -> str:
    """A string source with relative paths made absolute against ``base``; registered names and
    names with ``:CLASSES`` / ``?KEY=VALUE`` suffixes are kept as they are."""
    from .registry import _REGISTRY, parse_name

    head = value.split("?", 1)[0]
    rest = value[len(head):]
    base_name, spec, _ = parse_name(head)
    if base_name in _REGISTRY:
        return value
    pathish = (base_name.endswith(".npz") or "/" in base_name or os.sep in base_name
               or base_name.startswith("~") or (base / base_name).exists())
    if not pathish:
        return value
    out = _resolve(base_name, base)
    return out + (f":{spec}" if spec is not None else "") + rest


def _check_number_list(v, key: str, where: str):
    vals = v if isinstance(v, (list, tuple)) else [v]
    if not vals or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
        raise ValueError(f"{where}: '{key}' must be a number or a list of numbers, got {v!r}")


def parse_data_spec(value, base_dir: Union[str, Path, None] = None,
                    where: str = "data") -> Union[str, DataSpec]:
    """Check a manifest's data entry: a string (returned with paths made absolute) or a mapping
    (returned as a :class:`DataSpec`). ``where`` names the file and key in errors."""
    base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
    if isinstance(value, DataSpec):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: must be a data set name or a path, got {value!r}")
        return resolve_name(value.strip(), base)
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be a data set name, a path, or a mapping with one of "
                         f"{list(KINDS)}; got {type(value).__name__} {value!r}")
    keys = [str(k) for k in value]
    kinds = [k for k in keys if k in KINDS]
    if len(kinds) != 1:
        raise ValueError(f"{where}: give exactly one of {list(KINDS)} (what the data are); got "
                         f"{kinds or keys}")
    kind = kinds[0]
    target = value[kind]
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"{where}.{kind}: must be a non-empty string, got {target!r}")
    target = target.strip()
    opts = {str(k): v for k, v in value.items() if k != kind}
    unknown = sorted(set(opts) - _OPTIONS[kind])
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for '{kind}' data; allowed: "
                         f"{sorted(_OPTIONS[kind])}")
    if kind == "dataset":
        if ":" not in target and "." not in target:
            raise ValueError(f"{where}.dataset: {target!r} must look like 'package.module:callable'")
    elif kind == "name":
        target = resolve_name(target, base)
    else:
        target = _resolve(target, base)
    for key in ("mean", "std"):
        if key in opts:
            _check_number_list(opts[key], key, where)
    if "size" in opts:
        s = opts["size"]
        s = [s, s] if isinstance(s, int) and not isinstance(s, bool) else s
        if (not isinstance(s, (list, tuple)) or len(s) != 2
                or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in s)):
            raise ValueError(f"{where}: 'size' must be [height, width] in pixels (or one number), "
                             f"got {opts['size']!r}")
        opts["size"] = [int(s[0]), int(s[1])]
    if "mode" in opts and opts["mode"] not in ("RGB", "L"):
        raise ValueError(f"{where}: 'mode' must be RGB or L, got {opts['mode']!r}")
    for key in ("transform", "input", "label", "sha256"):
        if key in opts and (not isinstance(opts[key], str) or not opts[key].strip()):
            raise ValueError(f"{where}: '{key}' must be a non-empty string, got {opts[key]!r}")
    for key in ("kwargs", "params", "splits"):
        if key in opts and (not isinstance(opts[key], Mapping)
                            or not all(isinstance(k, str) for k in opts[key])):
            raise ValueError(f"{where}: '{key}' must be a mapping of names to values, got {opts[key]!r}")
    if "splits" in opts:
        bad = sorted(set(opts["splits"]) - {"train", "val", "test"})
        if bad or not all(isinstance(v, str) for v in opts["splits"].values()):
            raise ValueError(f"{where}: 'splits' maps train/val/test to the data's own split "
                             f"names, got {opts['splits']!r}")
    if "digest" in opts and opts["digest"] not in _DIGESTS[kind]:
        raise ValueError(f"{where}: 'digest' must be one of {_DIGESTS[kind]} for '{kind}' data, "
                         f"got {opts['digest']!r}")
    if "split" in opts:
        from .dataset import check_split

        try:
            check_split(opts["split"])
        except ValueError as exc:
            raise ValueError(f"{where}: 'split': {exc}") from None
    try:
        text = json.dumps(opts, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"{where}: values must be plain numbers, strings, lists and mappings "
                         f"({exc})") from None
    return DataSpec(kind, target, text, str(base))

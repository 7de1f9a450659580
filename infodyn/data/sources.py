"""Readers of data kept the way users keep it: a torch ``Dataset``, an image folder, a Hugging Face
``datasets`` folder written by ``save_to_disk``.

A reader is one user split (or the whole unsplit set). It holds the labels (read once, cheaply
where the source allows) and reads inputs by row index on demand, so nothing needs to fit in
memory. Every reader has:

    len(reader), reader.labels (raw label values, (n,)), reader.read(rows) -> float32 (k, *shape),
    reader.digest (sha256 hex; what it covers is said in each class), reader.class_names (or None)

:func:`to_array` converts one input (tensor, array, number list, PIL image) to float32; PIL
images become (C, H, W) in [0, 1], as torchvision's ``ToTensor`` gives.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from infodyn._files import file_sha256

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "dev": "val", "test": "test", "testing": "test"}
_LABEL_ATTRS = ("targets", "labels", "y")
_INPUT_KEYS = ("image", "img", "pixel_values", "x", "input", "inputs", "input_ids", "features")
_LABEL_KEYS = ("label", "labels", "y", "target", "targets", "fine_label")


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError("reading images needs Pillow: pip install pillow") from None
    return Image


def is_pil_image(x) -> bool:
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert") and hasattr(x, "size")


def pil_to_array(img, mode: Optional[str] = None, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A PIL image as float32 (C, H, W) in [0, 1]; ``mode`` ``"RGB"`` / ``"L"`` converts first,
    ``size`` (H, W) resizes bilinearly."""
    Image = _pil()
    if mode is not None and img.mode != mode:
        img = img.convert(mode)
    elif img.mode not in ("L", "RGB", "RGBA", "I", "F", "I;16"):
        img = img.convert("RGB")
    if size is not None and (img.size[1], img.size[0]) != tuple(size):
        img = img.resize((int(size[1]), int(size[0])), Image.BILINEAR)
    a = np.asarray(img)
    scale = 255.0 if a.dtype == np.uint8 else (65535.0 if a.dtype == np.uint16 else 1.0)
    a = a.astype(np.float32) / scale
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def to_array(x, where: str, mode: Optional[str] = None, size=None) -> np.ndarray:
    """One input as a float32 array (tensor, ndarray, number list or PIL image)."""
    if is_pil_image(x):
        return pil_to_array(x, mode, size)
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{where}: input is a {type(x).__name__} (dtype {a.dtype}, shape "
                         f"{a.shape}), not numbers; return a tensor or array from the data set "
                         "or give a transform")
    return a.astype(np.float32)


def _stack(items: List[np.ndarray], where: str, rows) -> np.ndarray:
    shapes = {a.shape for a in items}
    if len(shapes) > 1:
        first = items[0].shape
        bad = next(i for i, a in enumerate(items) if a.shape != first)
        raise ValueError(f"{where}: inputs differ in shape: row {int(rows[0])} has {first}, row "
                         f"{int(rows[bad])} has {items[bad].shape}; resize them (image folders: "
                         "'size: [H, W]') or use a transform")
    if not items:
        return np.zeros((0,), np.float32)
    return np.stack(items).astype(np.float32, copy=False)


def _label_value(v, where: str):
    if hasattr(v, "item") and np.ndim(v) == 0:
        v = v.item()
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer, str)):
        return v
    if isinstance(v, float) and float(v).is_integer():
        return int(v)
    raise ValueError(f"{where}: a label must be one integer or string per sample, got "
                     f"{type(v).__name__} {v!r}")


def _module_file_sha(obj) -> Optional[str]:
    """sha256 of the source file defining ``obj`` (None when it has none, e.g. built-ins)."""
    import inspect

    try:
        f = inspect.getsourcefile(obj)
    except (TypeError, OSError):
        return None
    return file_sha256(Path(f)) if f and os.path.isfile(f) else None


class TorchReader:
    """A map-style torch ``Dataset`` (``__len__``, ``__getitem__(i) -> (input, label)``).

    Labels come from an attribute ``targets`` / ``labels`` / ``y`` when the set has one of the
    right length, from the label tensor of a ``TensorDataset``, or else by reading every item
    once (inputs then dropped). Inputs are read one ``__getitem__`` at a time.

    Digest (``digest="spec"``, the default): the factory's ``module:callable`` name, its kwargs,
    the sha256 of the file defining it, this split's name and length, the input and label keys
    of mapping items (``input:`` / ``label:``), the labels, and the bytes
    of up to 8 evenly spaced inputs. Content behind the factory (files it reads) is covered only
    through those sample inputs; ``digest="full"`` hashes every input instead (one full read).
    """

    def __init__(self, ds, where: str, spec_digest: Any = None, digest_mode: str = "spec",
                 split: str = "", input_key: Optional[str] = None, label_key: Optional[str] = None):
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise ValueError(f"{where}: expected a map-style torch Dataset (with __len__ and "
                             f"__getitem__), got {type(ds).__name__}")
        self.ds, self.where, self.split = ds, where, split
        self.input_key, self.label_key = input_key, label_key
        self._spec, self._mode, self._digest = spec_digest, digest_mode, None
        self.n = int(len(ds))
        self.labels = self._labels()
        names = getattr(ds, "classes", None)
        self.class_names = list(names) if isinstance(names, (list, tuple)) else None

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"TorchReader({type(self.ds).__name__}, n={self.n})"

    def _labels(self) -> np.ndarray:
        ds = self.ds
        tensors = getattr(ds, "tensors", None)
        if isinstance(tensors, (tuple, list)) and len(tensors) >= 2 and len(tensors[1]) == self.n:
            cand = tensors[1]
        else:
            cand = None
            for attr in _LABEL_ATTRS:
                v = getattr(ds, attr, None)
                if v is not None and not callable(v) and hasattr(v, "__len__") and len(v) == self.n:
                    cand = v
                    break
        if cand is not None:
            if hasattr(cand, "detach"):
                cand = cand.detach().cpu().numpy()
            arr = np.asarray(cand)
            if arr.ndim == 1 and arr.dtype != object:
                return arr
        return np.asarray([_label_value(self._item(i)[1], f"{self.where}: item {i}")
                           for i in range(self.n)])

    def _item(self, i: int):
        """(input, label) of item i: a pair, or a mapping with input / label keys."""
        item = self.ds[int(i)]
        if isinstance(item, Mapping):
            keys = list(item)
            ik = self.input_key or next((k for k in _INPUT_KEYS if k in item), None)
            lk = self.label_key or next((k for k in _LABEL_KEYS if k in item), None)
            if ik not in item or lk not in item:
                raise ValueError(f"{self.where}: item {i} is a mapping with keys {keys}; name its "
                                 "input and label keys ('input:' and 'label:')")
            return item[ik], item[lk]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"{self.where}: item {i} is a {type(item).__name__}; a data set must "
                             "give (input, label) pairs or mappings with input and label keys")
        return item[0], item[1]

    def read(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        tensors = getattr(self.ds, "tensors", None)
        if (type(self.ds).__name__ == "TensorDataset" and isinstance(tensors, (tuple, list))
                and tensors and hasattr(tensors[0], "index_select")):  # one indexing, no loop
            import torch

            return to_array(tensors[0].index_select(0, torch.from_numpy(rows)), self.where)
        items = [to_array(self._item(r)[0], f"{self.where}: item {int(r)}") for r in rows]
        return _stack(items, self.where, rows)

    @property
    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256()
            h.update(json.dumps([self._spec, self.split, self.n, self._mode, self.input_key, self.label_key],
                                sort_keys=True, default=str).encode())
            lab = np.asarray(self.labels)
            h.update(lab.astype(str).tobytes() if lab.dtype.kind in "OUS" else lab.astype(np.int64).tobytes())
            if self._mode == "full":
                picks = range(0, self.n, 256)
                for s in picks:
                    h.update(np.ascontiguousarray(self.read(np.arange(s, min(s + 256, self.n)))).tobytes())
            elif self.n:
                probe = np.unique(np.linspace(0, self.n - 1, min(8, self.n)).round().astype(np.int64))
                first = np.ascontiguousarray(self.read(probe))
                h.update(first.tobytes())
                if not np.array_equal(first, self.read(probe), equal_nan=True):
                    warnings.warn(f"{self.where}: reading the same items twice gave different "
                                  "inputs (a random augmentation in the data set's transform?); "
                                  "features will differ between runs and cached ones will not "
                                  "match. Give the analysis a deterministic transform.",
                                  UserWarning, stacklevel=2)
            self._digest = h.hexdigest()
        return self._digest


def _files_digest(root: Path, files: Sequence[Path], mode: str) -> str:
    """sha256 over (relative path, sha256 of the bytes) of each file, or (path, size, mtime_ns)
    when ``mode == "stat"`` (fast, but blind to an edit that keeps size and time)."""
    h = hashlib.sha256()
    for f in sorted(files):
        rel = f.relative_to(root).as_posix()
        if mode == "stat":
            st = f.stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        else:
            h.update(f"{rel}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


def image_folder_layout(root: Path) -> Dict[str, Path]:
    """``{user split: folder}``: ``root/train/<class>/...`` (with ``val``/``test`` beside it)
    when root's subfolders are split names, else ``{"all": root}`` (``root/<class>/...``)."""
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise ValueError(f"{root}: an image folder needs one subfolder per class (or train/ and "
                         f"test/ folders holding those); found none")
    if all(p.name.lower() in SPLIT_NAMES for p in subs):
        out: Dict[str, Path] = {}
        for p in subs:
            key = SPLIT_NAMES[p.name.lower()]
            if key in out:
                raise ValueError(f"{root}: both {out[key].name}/ and {p.name}/ name the {key} split")
            out[key] = p
        return out
    return {"all": root}


class ImageFolderReader:
    """Images in one folder per class (torchvision ``ImageFolder`` layout), read with Pillow.

    Classes are the subfolder names, sorted; files with an image extension
    (:data:`IMAGE_EXTENSIONS`) are taken in sorted path order. Each image is converted to
    ``mode`` (``"RGB"`` by default, ``"L"`` for grey), resized to ``size`` (H, W) when given, and
    returned as float32 (C, H, W) in [0, 1].

    Digest: sha256 over every image's relative path and the sha256 of its bytes (``digest:
    stat`` uses size and modification time instead), plus ``mode`` and ``size``.
    """

    def __init__(self, folder: Path, classes: Sequence[str], where: str, mode: Optional[str] = "RGB",
                 size=None, digest_mode: str = "content"):
        self.folder, self.where, self.mode, self.size = Path(folder), where, mode, size
        self._mode, self._digest = digest_mode, None
        files, labels = [], []
        for c in classes:
            d = self.folder / c
            if not d.is_dir():
                continue
            got = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            files.extend(got)
            labels.extend([c] * len(got))
        if not files:
            raise ValueError(f"{self.folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in its "
                             f"class subfolders {list(classes)[:10]}")
        self.files, self.labels = files, np.asarray(labels)
        self.class_names = None

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"ImageFolderReader({str(self.folder)!r}, n={len(self.files)})"

    def read(self, rows) -> np.ndarray:
        Image = _pil()
        items = []
        for r in np.asarray(rows, dtype=np.int64):
            f = self.files[int(r)]
            try:
                with Image.open(f) as img:
                    items.append(pil_to_array(img, self.mode, self.size))
            except (OSError, ValueError) as exc:
                raise ValueError(f"{f}: cannot read as an image ({exc})") from None
        return _stack(items, str(self.folder), rows)

    @property
    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256(_files_digest(self.folder, self.files, self._mode).encode())
            h.update(json.dumps([self.mode, self.size]).encode())
            self._digest = h.hexdigest()
        return self._digest


def image_folder_readers(root: Path, where: str, mode: Optional[str] = "RGB", size=None,
                         digest_mode: str = "content") -> Dict[str, ImageFolderReader]:
    """One reader per user split of an image folder; every split shares the union of classes."""
    layout = image_folder_layout(root)
    classes = sorted({p.name for d in layout.values() for p in d.iterdir()
                      if p.is_dir() and not p.name.startswith(".")})
    if not classes:
        raise ValueError(f"{root}: no class subfolders under {sorted(layout)}")
    return {k: ImageFolderReader(d, classes, where, mode, size, digest_mode) for k, d in layout.items()}


class HFReader:
    """One split of a Hugging Face ``datasets.Dataset`` (``load_from_disk``).

    ``input`` and ``label`` name the columns. Image columns decode to PIL images (converted as
    in :class:`ImageFolderReader`); array and list columns are taken as numbers. Labels are the
    label column (its ``ClassLabel`` names become ``class_names``).

    Digest: sha256 over every file of the saved folder (relative path and bytes, or size and
    time with ``digest: stat``; hashed once per folder when the readers share ``folder_digest``),
    the two column names, this split's name (infodyn's, and the user's split it reads:
    ``user_split``, None for an unsplit ``Dataset``), ``mode`` and ``size``.
    """

    def __init__(self, ds, root: Path, split: str, input_col: str, label_col: str, where: str,
                 mode: Optional[str] = None, size=None, digest_mode: str = "content",
                 user_split: Optional[str] = None, folder_digest: Optional["FolderDigest"] = None):
        cols = list(ds.column_names)
        for key, col in (("input", input_col), ("label", label_col)):
            if col not in cols:
                raise ValueError(f"{where}: column {col!r} (key '{key}') not in the data set's "
                                 f"split {split!r}; it has columns {cols}")
        self.ds, self.root, self.split, self.where = ds, Path(root), split, where
        self.input_col, self.label_col, self.mode, self.size = input_col, label_col, mode, size
        self.user_split = user_split
        self._mode, self._digest = digest_mode, None
        self._folder_digest = folder_digest or FolderDigest(self.root, digest_mode)
        lab = ds.with_format(None)[label_col]
        self.labels = np.asarray(list(lab))
        if self.labels.ndim != 1 or self.labels.dtype == object:
            raise ValueError(f"{where}: label column {label_col!r} must hold one integer or string "
                             f"per row, got {self.labels.dtype} of shape {self.labels.shape}")
        feat = ds.features.get(label_col)
        names = getattr(feat, "names", None)
        self.class_names = list(names) if names else None

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"HFReader({str(self.root)!r}, split={self.split!r}, n={len(self.labels)})"

    def read(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.zeros((0,), np.float32)
        vals = self.ds.with_format(None)[[int(r) for r in rows]][self.input_col]
        items = [to_array(v, f"{self.where}: row {int(r)} column {self.input_col!r}", self.mode,
                          self.size) for v, r in zip(vals, rows)]
        return _stack(items, self.where, rows)

    @property
    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256(self._folder_digest().encode())
            h.update(json.dumps([self.input_col, self.label_col, self.split, self.user_split, self.mode,
                                 self.size]).encode())
            self._digest = h.hexdigest()
        return self._digest


class FolderDigest:
    """:func:`_files_digest` of every file under ``root``, computed on the first call and then
    kept, so that the readers of one folder's splits hash its files once."""

    def __init__(self, root: Path, mode: str = "content"):
        self.root, self.mode, self._value = Path(root), mode, None

    def __call__(self) -> str:
        if self._value is None:
            files = [p for p in self.root.rglob("*") if p.is_file()]
            self._value = _files_digest(self.root, files, self.mode)
        return self._value


def is_hf_folder(p: Path) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())


def hf_readers(root: Path, where: str, input_col: Optional[str], label_col: Optional[str],
               mode: Optional[str] = None, size=None, digest_mode: str = "content",
               splits: Optional[Dict[str, str]] = None) -> Dict[str, HFReader]:
    """Readers of a ``save_to_disk`` folder: one per split of a DatasetDict (``train``,
    ``validation`` -> ``val``, ``test``; or as mapped by ``splits``), or ``{"all": ...}``."""
    try:
        import datasets
    except ImportError:
        raise ImportError(f"{where}: reading a Hugging Face data set needs the 'datasets' "
                          "package: pip install datasets") from None
    try:
        obj = datasets.load_from_disk(str(root))
    except Exception as exc:  # the library's own errors vary by version
        raise ValueError(f"{root}: cannot load with datasets.load_from_disk: {exc}") from None
    if isinstance(obj, datasets.DatasetDict):
        names = split_names(list(obj), where, splits)
        parts = {k: obj[u] for k, u in names.items()}
    else:
        names, parts = {"all": None}, {"all": obj}
    first = next(iter(parts.values()))
    cols = list(first.column_names)
    input_col = input_col or next((c for c in _INPUT_KEYS if c in cols), None)
    label_col = label_col or next((c for c in _LABEL_KEYS if c in cols), None)
    if input_col is None and label_col is not None and len(cols) == 2:
        input_col = next(c for c in cols if c != label_col)  # the one column that is not the label
    if input_col is None or label_col is None:
        raise ValueError(f"{where}: name the input and label columns ('input:' and 'label:'); the "
                         f"data set has columns {cols}")
    folder = FolderDigest(root, digest_mode)
    return {k: HFReader(d, root, k, input_col, label_col, where, mode, size, digest_mode, names[k], folder)
            for k, d in parts.items()}


def pick_splits(named: Dict[str, Any], where: str, splits: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The user's named splits as infodyn's train / val / test: ``{infodyn split: named[user split]}``
    for the user splits :func:`split_names` picks."""
    return {k: named[u] for k, u in split_names(list(named), where, splits).items()}


def split_names(named: Sequence[Any], where: str, splits: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``{infodyn split: user split name}`` for the user's split names ``named``.

    ``splits`` maps infodyn's names to the user's (``{val: validation}``); without it the usual
    names are recognised (:data:`SPLIT_NAMES`). Splits under other names are left out unless
    mapped; a set with one unnamed split is taken as unsplit (``"all"``).
    """
    if splits:
        bad = sorted(set(splits) - {"train", "val", "test"})
        if bad:
            raise ValueError(f"{where}: 'splits' keys must be train, val, test; got {bad}")
        missing = [u for u in splits.values() if u not in named]
        if missing:
            raise ValueError(f"{where}: split(s) {missing} (key 'splits') not in the data set; it "
                             f"has {sorted(named)}")
        return dict(splits)
    out: Dict[str, Any] = {}
    for u in named:
        key = SPLIT_NAMES.get(str(u).lower())
        if key is None:
            continue
        if key in out:
            raise ValueError(f"{where}: two splits name the {key} split ({sorted(named)}); map them "
                             "with 'splits: {train: ..., val: ..., test: ...}'")
        out[key] = u
    if not out:
        if len(named) == 1:
            return {"all": next(iter(named))}
        raise ValueError(f"{where}: none of the splits {sorted(named)} is train/val/test; map them "
                         "with 'splits: {train: ..., test: ...}'")
    if "train" not in out:
        raise ValueError(f"{where}: the data give splits {sorted(named)} but none is the train "
                         "split; map it with 'splits: {train: NAME}'")
    return out

"""Layer features from a model: forward hooks on named modules, batched, no_grad, eval mode.

:func:`resolve_layers` turns names and glob patterns into module names (an unknown name gets an
error listing the closest ones). :func:`extract_features` runs the data through the model once,
in batches, for all chosen layers together, and returns one float32 array (n, d) per layer, rows
in the order of ``x``.

How a layer's output (n, *shape) becomes a vector per sample (``pool``; see :data:`POOLS`):

- ``"auto"`` (default): (n, d) is kept; (n, C, H, W) conv maps and any output of 4 or more
  dimensions are averaged over the spatial axes, **assuming channels first** (PyTorch's NCHW);
  (n, T, d) outputs are averaged over the T tokens (transformer layout) unless the output comes
  straight from a channels-first module, in which case it is (n, C, L) and averaged over L.
  "Straight from" means: the layer is itself a conv / pooling / batch-, instance- or group-norm /
  upsampling module, or the last such or token-type module (Linear, LayerNorm, attention,
  embedding, RNN) that finished before the layer's output, and gave an output of the same
  shape, is a channels-first one (so ``Sequential(Conv1d, ReLU)`` counts as conv, a ViT's patch
  embedding, which is reshaped into tokens, does not). The same rule detects channels-last
  4-d maps (ConvNeXt blocks between their permutes) and then averages over H, W.
- ``"avg"`` / ``"max"``: mean / max over every axis after the second (channels first: d = C).
- ``"avgHxW"`` (e.g. ``"avg2x2"``): adaptive average pooling of (n, C, H', W') maps to an
  H x W grid, flattened channel-major: d = C * H * W.
- ``"flatten"``: every number of the output, d = prod(shape).
- ``"cls"``: the first token of (n, T, d) (BERT / ViT [CLS]); ``"mean"``: the mean over the axes
  between the batch and the last one, i.e. over tokens for (n, T, d) (channels last).

``pool`` is one of these for every layer, or a mapping from layer names or glob patterns (same
syntax as the layers) to one of them: an exact name wins over a pattern, patterns are tried in
the order given, unmatched layers use ``"auto"``. ``pool_log`` (a dict passed in) receives, per
layer, what was done: ``{"pool": "avg", "layout": "channels-first", "shape": [C, H, W]}``.

Outputs that are tuples or lists (RNNs, attention blocks, Hugging Face layers) contribute their
first tensor; mappings and ``ModelOutput`` objects their ``last_hidden_state`` or else their
first tensor value. Features are float32 whatever the model's dtype.
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import re
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["resolve_layers", "extract_features", "layer_features", "default_layer", "POOLS", "check_pool", "layer_pool"]

POOLS = ("auto", "avg", "max", "flatten", "cls", "mean")
_GRID = re.compile(r"^avg(\d+)x(\d+)$")


def _module_names(model) -> List[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_layers(model, patterns: Union[str, Sequence[str]]) -> List[str]:
    """Module names of ``model`` matching ``patterns``, in the model's own module order.

    Args:
        model: an ``nn.Module``.
        patterns: exact names from ``model.named_modules()`` or glob patterns: ``*`` and ``?``
            match within one dotted segment (``"fc*"`` gives ``fc1``, ``fc2`` but not
            ``fc1.linear``; ``"encoder.*.attn"``), ``**`` matches across segments
            (``"**.act"``). A single string may list several, separated by commas.

    Raises:
        ValueError: a name or pattern matches no module; the message lists the closest names.
    """
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    patterns = list(patterns)
    if not patterns:
        raise ValueError("no layers given; name at least one module from model.named_modules()")
    names = _module_names(model)
    chosen = set()
    for pat in patterns:
        if not isinstance(pat, str) or not pat:
            raise ValueError(f"layer names must be non-empty strings, got {pat!r}")
        if pat in names:
            chosen.add(pat)
            continue
        hits = [n for n in names if _glob_re(pat).fullmatch(n)] if any(c in pat for c in "*?[") else []
        if not hits:
            near = difflib.get_close_matches(pat, names, n=5, cutoff=0.3)
            listing = ", ".join(near) if near else ", ".join(names[:10])
            raise ValueError(f"layer {pat!r} does not exist in {type(model).__name__}; closest "
                             f"names: {listing} ({len(names)} modules in all)")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _glob_re(pattern: str):
    """Glob over dotted module names: ``*`` and ``?`` stay within one name segment (``fc*``
    matches ``fc1`` but not ``fc1.linear``), ``**`` crosses segments, ``[...]`` is a class."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^.]*")
        elif c == "?":
            out.append("[^.]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


class _StopForward(Exception):
    """Raised from the last needed hook so that later layers are not computed."""


def _first_tensor(out, layer: str):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    hidden = getattr(out, "last_hidden_state", None)  # Hugging Face ModelOutput
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(out, Mapping):
        if isinstance(out.get("last_hidden_state"), torch.Tensor):
            return out["last_hidden_state"]
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    raise ValueError(f"layer {layer!r} returned a {type(out).__name__}, not a tensor; choose a "
                     "module whose output is a tensor")


def check_pool(pool) -> None:
    """Raise ValueError unless ``pool`` is a pool name (:data:`POOLS` or ``"avgHxW"``) or a
    mapping of layer names / patterns to pool names."""
    if isinstance(pool, Mapping):
        for k, v in pool.items():
            if not isinstance(k, str) or not k:
                raise ValueError(f"pool: layer names must be non-empty strings, got {k!r}")
            _check_one(v, f"pool for layer {k!r}")
        return
    _check_one(pool, "pool")


def _check_one(pool, what: str) -> None:
    if not isinstance(pool, str) or (pool not in POOLS and not _grid(pool)):
        raise ValueError(f"{what} must be one of {POOLS} or 'avgHxW' (e.g. 'avg2x2'), got {pool!r}")


def _grid(pool: str):
    m = _GRID.match(pool)
    if m is None:
        return None
    h, w = int(m.group(1)), int(m.group(2))
    return (h, w) if h > 0 and w > 0 else None


def layer_pool(pool, layer: str) -> str:
    """The pool name that applies to ``layer``: ``pool`` itself, or its mapping's entry for the
    layer (exact name first, then the first matching pattern, else ``"auto"``)."""
    if not isinstance(pool, Mapping):
        return pool
    if layer in pool:
        return pool[layer]
    for pat, how in pool.items():
        if any(c in pat for c in "*?[") and _glob_re(pat).fullmatch(layer):
            return how
    return "auto"


def _check_pool_keys(pool, names: Sequence[str], model) -> None:
    if not isinstance(pool, Mapping):
        return
    for key in pool:
        if key in names:
            continue
        if any(c in key for c in "*?[") and any(_glob_re(key).fullmatch(n) for n in names):
            continue
        raise ValueError(f"pool is given for layer {key!r}, which is not among the chosen layers "
                         f"of {type(model).__name__}: {list(names)}")


@functools.lru_cache(maxsize=None)
def _layout_types():
    """(channels-first module types, channels-last module types), built once."""
    import torch.nn as nn

    first = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
             nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
             nn.modules.pooling._LPPoolNd, nn.modules.batchnorm._BatchNorm,
             nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.Upsample,
             nn.modules.pooling._MaxUnpoolNd)
    last = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention, nn.Embedding, nn.RNNBase,
            nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.Bilinear)
    rms = getattr(nn, "RMSNorm", None)
    return first, last + ((rms,) if rms is not None else ())


def _layout_of(module) -> Optional[str]:
    first, last = _layout_types()
    if isinstance(module, first):
        return "channels-first"
    if isinstance(module, last):
        return "channels-last"
    return None


def _pool(t, how: str, layer: str):
    """(n, *shape) -> (n, d) by ``how`` (a resolved pool, never "auto")."""
    import torch.nn.functional as F

    shape = tuple(t.shape[1:])
    if t.dim() <= 1:
        return t.reshape(t.shape[0] if t.dim() else 1, -1)
    if t.dim() == 2 or how == "flatten":
        return t.reshape(t.shape[0], -1)
    if how == "avg":
        return t.float().mean(dim=tuple(range(2, t.dim())))
    if how == "max":
        return t.amax(dim=tuple(range(2, t.dim())))
    if how == "mean":
        return t.float().mean(dim=tuple(range(1, t.dim() - 1)))
    if how == "cls":
        if t.dim() != 3:
            raise ValueError(f"layer {layer!r}: pool 'cls' takes the first token of (n, tokens, d) "
                             f"outputs, got per-sample shape {shape}")
        return t[:, 0, :]
    grid = _grid(how)
    if grid is not None:
        if t.dim() != 4:
            raise ValueError(f"layer {layer!r}: pool {how!r} pools (n, C, H, W) maps to a grid, got "
                             f"per-sample shape {shape}")
        return F.adaptive_avg_pool2d(t.float(), grid).reshape(t.shape[0], -1)
    raise ValueError(f"layer {layer!r}: unknown pool {how!r}")  # pragma: no cover - checked


def _resolve_auto(ndim: int, layout: Optional[str]) -> str:
    if ndim <= 2:
        return "flatten"
    if layout is None:
        layout = "channels-first" if ndim >= 4 else "channels-last"
    return "avg" if layout == "channels-first" else "mean"


def _as_input(x):
    """An array / tensor, or a split-like object with ``__len__`` and ``read(idx)``."""
    import torch

    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "read") and hasattr(x, "__len__") and not isinstance(x, np.ndarray):
        return x
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"x must be a numeric array, got dtype {arr.dtype} with shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _batch(xt, start: int, stop: int):
    import torch

    if isinstance(xt, torch.Tensor):
        return xt[start:stop]
    b = xt.read(np.arange(start, stop))
    if not isinstance(b, torch.Tensor):
        b = np.asarray(b)
        if b.dtype == object or not np.issubdtype(b.dtype, np.number):
            raise ValueError(f"x.read gave dtype {b.dtype} with shape {b.shape}, not numbers")
        b = torch.from_numpy(np.ascontiguousarray(b))
    return b


def _empty(_layer: str, shape: Tuple[int, int]) -> np.ndarray:
    return np.empty(shape, dtype=np.float32)


def extract_features(model, x, layers: Union[str, Sequence[str]], *, batch_size: int = 512,
                     device="auto", pool: Union[str, Mapping[str, str]] = "auto", amp: bool = False,
                     stop_early: bool = True,
                     pool_log: Optional[Dict[str, Dict[str, Any]]] = None,
                     allocate: Optional[Callable[[str, Tuple[int, int]], np.ndarray]] = None
                     ) -> Dict[str, np.ndarray]:
    """Outputs of the named layers for every sample of ``x``, all layers in one pass per batch.

    Args:
        model: an ``nn.Module``. It is moved to ``device`` and run in eval mode under
            ``torch.no_grad()``; its train/eval flag is restored afterwards.
        x: inputs, array or tensor of shape (n, *input_shape), cast to the model's dtype (integer
            inputs such as token ids keep theirs); or a split-like object with ``len(x)`` and
            ``x.read(idx) -> array (len(idx), *input_shape)`` (e.g. ``dataset.split("test")``
            or ``split.take(idx)``), read one batch at a time so it need not fit in memory.
        layers: names or glob patterns (see :func:`resolve_layers`).
        batch_size: samples per forward pass.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        pool: how outputs of more than 2 dimensions become vectors, for all layers or per layer
            (see the module docstring); default ``"auto"``.
        amp: autocast to float16 on CUDA (ignored, with a warning, on CPU). Features are returned
            as float32 either way.
        stop_early: stop each forward pass once every chosen layer has produced its output.
        pool_log: a dict to receive ``{layer: {"pool", "layout", "shape"}}``: the pool applied
            (``"auto"`` resolved), the layout assumed and the per-sample output shape.
        allocate: ``allocate(layer, (n, d)) -> float32 array`` for each layer's output, called
            once its width is known (default ``np.empty``); e.g. a memory map on disk, so that
            features larger than memory are streamed there batch by batch.

    Returns:
        ``{layer: float32 array of shape (n, d_layer)}`` in the model's module order; row i
        belongs to sample i.

    Raises:
        ValueError: empty or non-numeric ``x``, unknown layer, bad ``pool``/``batch_size``, a
            pool that does not fit a layer's output (naming the layer and its shape), a layer
            that returns no tensor, or non-finite features (naming the layer and count).
    """
    import torch

    from infodyn.estimators.base import resolve_device

    check_pool(pool)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    names = resolve_layers(model, layers)
    _check_pool_keys(pool, names, model)
    xt = _as_input(x)
    n = len(xt) if not isinstance(xt, torch.Tensor) else (xt.shape[0] if xt.dim() else 0)
    if (isinstance(xt, torch.Tensor) and xt.dim() == 0) or n == 0:
        shape = tuple(xt.shape) if isinstance(xt, torch.Tensor) else (0,)
        raise ValueError(f"x must hold at least one sample along axis 0, got shape {shape}")
    dev = torch.device(resolve_device(device))
    use_amp = bool(amp) and dev.type == "cuda"
    if amp and not use_amp:
        warnings.warn("amp=True has no effect on CPU; extracting in full precision", stacklevel=2)

    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modules = dict(model.named_modules())
    was_training = model.training
    model.to(dev).eval()

    wanted_pool = {name: layer_pool(pool, name) for name in names}
    resolved: Dict[str, str] = {}   # layer -> pool actually applied (fixed on the first batch)
    layouts: Dict[str, Optional[str]] = {}
    shapes: Dict[str, tuple] = {}
    captured: Dict[str, "torch.Tensor"] = {}
    out: Dict[str, np.ndarray] = {}
    bad: Dict[str, int] = {}  # non-finite values per layer, counted batch by batch
    wanted = set(names)
    last_layout: List[Any] = [None]  # (layout, output shape) of the last layout module that finished

    def make_hook(layer):
        def hook(module, _inputs, output):
            if layer in captured:  # a module called twice in one pass: keep the first call
                return
            t = _first_tensor(output, layer).detach()
            if layer not in resolved:
                own = _layout_of(module)
                prev = last_layout[0]
                layout = own if own is not None else (
                    prev[0] if prev is not None and prev[1] == tuple(t.shape) else None)
                how = wanted_pool[layer]
                if how == "auto":
                    how = _resolve_auto(t.dim(), layout)
                resolved[layer] = how
                layouts[layer] = layout
                shapes[layer] = tuple(int(s) for s in t.shape[1:])
            captured[layer] = _pool(t, resolved[layer], layer)
            if stop_early and len(captured) == len(wanted):
                raise _StopForward
        return hook

    def layout_hook(module, _inputs, output):
        lay = _layout_of(module)
        if lay is None:
            return
        t = output if isinstance(output, torch.Tensor) else (
            output[0] if isinstance(output, (tuple, list)) and output
            and isinstance(output[0], torch.Tensor) else None)
        if t is not None:
            last_layout[0] = (lay, tuple(t.shape))

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in names]
    needs_layout = any(v == "auto" for v in wanted_pool.values())
    # the layout watchers run before the layers' own hooks (registered first on shared modules)
    watch = ([m.register_forward_hook(layout_hook, prepend=True) for m in modules.values()
              if _layout_of(m) is not None] if needs_layout else [])
    autocast = (torch.autocast(device_type="cuda", dtype=torch.float16) if use_amp
                else contextlib.nullcontext())
    try:
        with torch.no_grad(), autocast:
            for start in range(0, n, batch_size):
                batch = _batch(xt, start, min(start + batch_size, n))
                batch = batch.to(dev, non_blocking=True)
                if batch.is_floating_point():  # integer inputs (token ids) keep their dtype
                    batch = batch.to(dtype)
                captured.clear()
                last_layout[0] = None
                try:
                    model(batch)
                except _StopForward:
                    pass
                if watch and len(resolved) == len(wanted):  # layouts known: stop watching
                    for h in watch:
                        h.remove()
                    watch = []
                missing = wanted - set(captured)
                if missing:
                    raise ValueError(f"layer(s) {sorted(missing)} were not called in the forward "
                                     f"pass of {type(model).__name__}; choose modules on the path "
                                     "from input to output")
                for name in names:
                    feat = captured[name]
                    bad[name] = bad.get(name, 0) + feat.numel() - int(torch.isfinite(feat).sum())
                    if name not in out:
                        out[name] = (allocate or _empty)(name, (n, int(feat.shape[1])))
                    elif feat.shape[1] != out[name].shape[1]:
                        raise ValueError(f"layer {name!r} gave {feat.shape[1]} features for batch "
                                         f"starting at {start}, but {out[name].shape[1]} before; "
                                         "inputs must share one shape")
                    out[name][start:start + feat.shape[0]] = feat.float().cpu().numpy()
    finally:
        for h in handles + watch:
            h.remove()
        model.train(was_training)

    for name in names:
        if bad.get(name):
            raise ValueError(f"layer {name!r}: {bad[name]} of {out[name].size} feature values are NaN or "
                             f"infinite (features of shape {out[name].shape}); the checkpoint may "
                             "have diverged" + (" or overflowed in float16 (try amp=False)" if use_amp else ""))
    if pool_log is not None:
        for name in names:
            how = resolved[name]
            lay = layouts[name] or ("channels-first" if how in ("avg", "max") or _grid(how)
                                    else "channels-last" if how in ("mean", "cls") else None)
            pool_log[name] = {"pool": how, "layout": lay if len(shapes[name]) > 1 else None,
                              "shape": list(shapes[name])}
    return out


def default_layer(model) -> str:
    """Name of the last ``nn.Linear`` in ``model`` (its *input* is the default layer)."""
    import torch.nn as nn

    names = [name for name, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer; pass layer= (one of its module names)")
    return names[-1]


def layer_features(model, x: Any, layer: Optional[str] = None, *, use_input: Optional[bool] = None,
                   batch_size: int = 1024, device: str = "auto") -> Tuple[np.ndarray, str]:
    """Features of ``x`` at a layer: the module's output, or, for the default (``layer=None``),
    the input of the last nn.Linear. Returns ((n, d) float64 array, description)."""
    import torch

    from infodyn.estimators.base import resolve_device

    dev = resolve_device(device)
    mods = dict(model.named_modules())
    if layer is None:
        layer, use_input = default_layer(model), True
    elif layer not in mods:
        import difflib

        close = difflib.get_close_matches(layer, list(mods), n=5)
        raise ValueError(f"layer {layer!r} is not in {type(model).__name__}; closest: {close or list(mods)[:10]}")
    use_input = bool(use_input)
    xt = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).float()
    grabbed: List[torch.Tensor] = []

    def hook(_m, inp, out):
        v = inp[0] if use_input else out
        grabbed.append(v.detach().flatten(1).double().cpu())

    was_training = model.training
    model.eval().to(dev)
    handle = mods[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, xt.shape[0], batch_size):
                model(xt[i:i + batch_size].to(dev))
    finally:
        handle.remove()
        model.train(was_training)
    if not grabbed:
        raise ValueError(f"layer {layer!r} was not called in the forward pass of {type(model).__name__}")
    desc = f"input of {layer}" if use_input else layer
    return torch.cat(grabbed).numpy(), desc

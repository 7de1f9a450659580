"""Layer features from a model: forward hooks on named modules, batched, no_grad, eval mode.

:func:`resolve_layers` turns names and glob patterns into module names (an unknown name gets an
error listing the closest ones). :func:`extract_features` runs the data through the model once,
in batches, and returns one float32 array (n, d) per layer, rows in the order of ``x``.

Conv feature maps (N, C, *spatial) become vectors by ``pool="flatten"`` (d = C * prod(spatial))
or ``pool="avg"`` (global average over the spatial axes, d = C). Outputs that are tuples (RNNs,
some attention blocks) contribute their first tensor.
"""
from __future__ import annotations

import contextlib
import difflib
import re
import warnings
from typing import Dict, List, Sequence, Union

import numpy as np

__all__ = ["resolve_layers", "extract_features", "POOLS"]

POOLS = ("flatten", "avg")


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
    raise ValueError(f"layer {layer!r} returned a {type(out).__name__}, not a tensor; choose a "
                     "module whose output is a tensor")


def _pool(t, pool: str):
    if t.dim() <= 1:
        return t.reshape(t.shape[0] if t.dim() else 1, -1)
    if pool == "avg" and t.dim() > 2:
        return t.float().mean(dim=tuple(range(2, t.dim())))
    return t.reshape(t.shape[0], -1)


def _as_tensor(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"x must be a numeric array, got dtype {arr.dtype} with shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def extract_features(model, x, layers: Union[str, Sequence[str]], *, batch_size: int = 512,
                     device="auto", pool: str = "flatten", amp: bool = False,
                     stop_early: bool = True) -> Dict[str, np.ndarray]:
    """Outputs of the named layers for every sample of ``x``.

    Args:
        model: an ``nn.Module``. It is moved to ``device`` and run in eval mode under
            ``torch.no_grad()``; its train/eval flag is restored afterwards.
        x: inputs, array or tensor of shape (n, *input_shape); cast to the model's dtype.
        layers: names or glob patterns (see :func:`resolve_layers`).
        batch_size: samples per forward pass.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        pool: ``"flatten"`` or ``"avg"`` (global average over spatial axes of (N, C, ...) maps).
        amp: autocast to float16 on CUDA (ignored, with a warning, on CPU). Features are returned
            as float32 either way.
        stop_early: stop each forward pass once every chosen layer has produced its output.

    Returns:
        ``{layer: float32 array of shape (n, d_layer)}`` in the model's module order; row i
        belongs to sample i.

    Raises:
        ValueError: empty or non-numeric ``x``, unknown layer, bad ``pool``/``batch_size``, a
            layer that returns no tensor, or non-finite features (naming the layer and count).
    """
    import torch

    from infodyn.estimators.base import resolve_device

    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    names = resolve_layers(model, layers)
    xt = _as_tensor(x)
    if xt.dim() == 0 or xt.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample along axis 0, got shape {tuple(xt.shape)}")
    n = xt.shape[0]
    dev = torch.device(resolve_device(device))
    use_amp = bool(amp) and dev.type == "cuda"
    if amp and not use_amp:
        warnings.warn("amp=True has no effect on CPU; extracting in full precision", stacklevel=2)

    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    modules = dict(model.named_modules())
    was_training = model.training
    model.to(dev).eval()

    captured: Dict[str, "torch.Tensor"] = {}
    out: Dict[str, np.ndarray] = {}
    wanted = set(names)

    def make_hook(layer):
        def hook(_module, _inputs, output):
            if layer in captured:  # a module called twice in one pass: keep the first call
                return
            captured[layer] = _pool(_first_tensor(output, layer).detach(), pool)
            if stop_early and len(captured) == len(wanted):
                raise _StopForward
        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in names]
    autocast = (torch.autocast(device_type="cuda", dtype=torch.float16) if use_amp
                else contextlib.nullcontext())
    try:
        with torch.no_grad(), autocast:
            for start in range(0, n, batch_size):
                batch = xt[start:start + batch_size]
                batch = batch.to(dev, non_blocking=True)
                if batch.is_floating_point():  # integer inputs (token ids) keep their dtype
                    batch = batch.to(dtype)
                captured.clear()
                try:
                    model(batch)
                except _StopForward:
                    pass
                missing = wanted - set(captured)
                if missing:
                    raise ValueError(f"layer(s) {sorted(missing)} were not called in the forward "
                                     f"pass of {type(model).__name__}; choose modules on the path "
                                     "from input to output")
                for name in names:
                    feat = captured[name]
                    if name not in out:
                        out[name] = np.empty((n, feat.shape[1]), dtype=np.float32)
                    elif feat.shape[1] != out[name].shape[1]:
                        raise ValueError(f"layer {name!r} gave {feat.shape[1]} features for batch "
                                         f"starting at {start}, but {out[name].shape[1]} before; "
                                         "inputs must share one shape")
                    out[name][start:start + feat.shape[0]] = feat.float().cpu().numpy()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    for name in names:
        bad = int(np.size(out[name]) - np.count_nonzero(np.isfinite(out[name])))
        if bad:
            raise ValueError(f"layer {name!r}: {bad} of {out[name].size} feature values are NaN or "
                             f"infinite (features of shape {out[name].shape}); the checkpoint may "
                             "have diverged" + (" or overflowed in float16 (try amp=False)" if use_amp else ""))
    return out

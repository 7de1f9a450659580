"""Weight geometry over checkpoints: Euclidean distances between state dicts, per layer and overall.

A "layer" is a module path: the parameter name without its last part (``fc1.linear.weight`` and
``fc1.linear.bias`` make layer ``fc1.linear``); the overall row has layer ``"model"``. Only
floating-point tensors count; batch-norm running statistics (``running_mean``, ``running_var``)
are left out by default because they are not trained by the gradient. Units: parameter units.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

OVERALL = "model"
_STATS = ("running_mean", "running_var", "num_batches_tracked")

State = Union[Mapping[str, Any], torch.nn.Module]


def _as_state(state: State, what: str) -> Dict[str, torch.Tensor]:
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, Mapping):
        raise ValueError(f"{what} must be a state dict (mapping name -> tensor) or an nn.Module, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if isinstance(v, torch.Tensor):
            out[str(k)] = v
    if not out:
        raise ValueError(f"{what} holds no tensors")
    return out


def _keys(state: Dict[str, torch.Tensor], include_stats: bool, keys: Optional[Union[Sequence[str], Callable]]):
    names = [k for k, v in state.items() if v.is_floating_point()]
    if not include_stats:
        names = [k for k in names if k.rsplit(".", 1)[-1] not in _STATS]
    if keys is not None:
        names = [k for k in names if (keys(k) if callable(keys) else k in set(keys))]
    return names


def layer_of(name: str) -> str:
    """Module path of a parameter name (``fc1.linear.weight`` -> ``fc1.linear``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def weight_distance(state_a: State, state_b: State, *, include_stats: bool = False,
                    keys: Optional[Union[Sequence[str], Callable[[str], bool]]] = None) -> pd.DataFrame:
    """||b - a|| per layer and overall between two checkpoints of the same architecture.

    Args:
        state_a: the reference (initialisation, first or previous checkpoint): state dict or module.
        state_b: the other checkpoint.
        include_stats: also count batch-norm running statistics.
        keys: only these parameter names (a list, or a predicate on the name).

    Returns:
        DataFrame with one row per layer (in state-dict order) and a last row ``layer="model"`` (overall):
        ``layer``, ``distance`` (L2 norm of the difference), ``norm_a`` (L2 norm of ``state_a``'s
        tensors), ``relative`` (distance / norm_a; NaN when norm_a is 0), ``n_params``.
        ValueError names any tensor present in one state only or with different shapes.
    """
    a, b = _as_state(state_a, "state_a"), _as_state(state_b, "state_b")
    names = _keys(a, include_stats, keys)
    other = set(_keys(b, include_stats, keys))
    missing_b = [k for k in names if k not in other]
    missing_a = sorted(other - set(names))
    if missing_a or missing_b:
        raise ValueError(f"the two checkpoints hold different tensors: only in state_a {missing_b[:5]}, "
                         f"only in state_b {missing_a[:5]}")
    if not names:
        raise ValueError("no floating-point parameter to compare (check keys=)")
    per: Dict[str, List[float]] = {}
    for k in names:
        ta, tb = a[k], b[k]
        if ta.shape != tb.shape:
            raise ValueError(f"tensor {k!r} has shape {tuple(ta.shape)} in state_a but {tuple(tb.shape)} in state_b")
        ta = ta.detach().to("cpu", torch.float64)
        tb = tb.detach().to("cpu", torch.float64)
        acc = per.setdefault(layer_of(k), [0.0, 0.0, 0])
        acc[0] += float(((tb - ta) ** 2).sum())
        acc[1] += float((ta ** 2).sum())
        acc[2] += ta.numel()
    rows = []
    for layer, (d2, n2, cnt) in per.items():
        rows.append((layer, d2, n2, cnt))
    tot = (OVERALL, sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows))
    out = pd.DataFrame([(l, math.sqrt(d2), math.sqrt(n2), math.sqrt(d2) / math.sqrt(n2) if n2 > 0 else math.nan, c)
                        for l, d2, n2, c in rows + [tot]],
                       columns=["layer", "distance", "norm_a", "relative", "n_params"])
    return out


def trajectory_distances(states: Sequence[State], *, reference: Optional[State] = None,
                         include_stats: bool = False, keys=None) -> pd.DataFrame:
    """Distances along a sequence of checkpoints, per layer and overall.

    Args:
        states: the checkpoints in training order (state dicts or modules).
        reference: the initialisation; default the first of ``states``.

    Returns:
        Long DataFrame: ``index`` (position in ``states``), ``layer``, ``kind`` (``"from_init"``:
        distance from ``reference``; ``"from_previous"``: from the checkpoint before, absent for
        index 0), ``distance``, ``relative``, ``n_params``.
    """
    states = list(states)
    if not states:
        raise ValueError("states is empty: pass the checkpoints in training order")
    ref = states[0] if reference is None else reference
    frames = []
    for i, s in enumerate(states):
        d = weight_distance(ref, s, include_stats=include_stats, keys=keys).assign(index=i, kind="from_init")
        frames.append(d)
        if i:
            frames.append(weight_distance(states[i - 1], s, include_stats=include_stats, keys=keys)
                          .assign(index=i, kind="from_previous"))
    out = pd.concat(frames, ignore_index=True)
    return out[["index", "layer", "kind", "distance", "relative", "n_params"]]

"""The effect of the number of classes, dimensions, votes (labels) and noise on information and learning.

A sweep changes one setting of a base configuration and reruns the information table or the
learning curves. Settings: task ones (``classes``, ``dims``, ``latent_dims``, ``separation``,
``spread``, ``superclasses``, ``transfer_classes``) and signal ones (``votes``, ``noise``).
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence

from .information import information_table
from .learning import TrainConfig, learning_curves
from .simulate import make_task

TASK_PARAMS = ("classes", "dims", "latent_dims", "separation", "spread", "superclasses", "transfer_classes")
SIGNAL_PARAMS = ("votes", "noise")
DEFAULT_BASE: Dict[str, object] = {"classes": 10, "dims": 32, "votes": 5, "noise": 0.0}


def _split(config: Dict[str, object]):
    unknown = set(config) - set(TASK_PARAMS) - set(SIGNAL_PARAMS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}; known: {', '.join(TASK_PARAMS + SIGNAL_PARAMS)}")
    task = {k: v for k, v in config.items() if k in TASK_PARAMS}
    sig = {k: v for k, v in config.items() if k in SIGNAL_PARAMS}
    return task, sig


def _settings(param: str, values: Iterable, base: Optional[Dict[str, object]]):
    """Yields (value, task settings, votes, noise) for each value of the swept ``param``."""
    if param not in TASK_PARAMS + SIGNAL_PARAMS:
        raise ValueError(f"cannot sweep {param!r}; known: {', '.join(TASK_PARAMS + SIGNAL_PARAMS)}")
    cfg = {**DEFAULT_BASE, **(base or {})}
    for value in values:
        task_kw, sig_kw = _split({**cfg, param: value})
        yield value, task_kw, int(sig_kw.get("votes", 5)), float(sig_kw.get("noise", 0.0))


def information_sweep(
    param: str,
    values: Iterable,
    *,
    base: Optional[Dict[str, object]] = None,
    signals: Sequence[str] = ("hard", "soft", "posterior", "triplet"),
    n: int = 1000,
    seeds: Iterable[int] = (0,),
    abouts: Sequence[str] = ("example", "class"),
):
    """Exact information of each signal (and its capacity) as ``param`` takes each of ``values``.

    Returns the rows of :func:`information_table` with ``param``, ``param_value`` and ``seed``.
    """
    import pandas as pd

    frames = []
    for value, task_kw, votes, noise in _settings(param, values, base):
        for seed in seeds:
            task = make_task(seed=int(seed), **task_kw)
            frames.append(information_table(
                task, signals=signals, votes=votes, noise=noise, n=n, abouts=abouts, seed=int(seed),
                extra={"param": param, "param_value": value, "seed": int(seed), "classes": task.classes,
                       "dims": task.dims}))
    return pd.concat(frames, ignore_index=True)


def learning_sweep(
    param: str,
    values: Iterable,
    *,
    base: Optional[Dict[str, object]] = None,
    budgets: Sequence[int] = (100,),
    signals: Sequence[str] = ("hard", "soft", "posterior", "triplet"),
    models: Sequence[str] = ("linear",),
    seeds: Iterable[int] = (0, 1, 2),
    config: TrainConfig = TrainConfig(),
    **kwargs,
):
    """Learning curves (at the given budgets) as ``param`` takes each of ``values``.

    Returns the rows of :func:`learning_curves` with ``param`` and ``param_value``.
    """
    import pandas as pd

    frames = []
    for value, task_kw, votes, noise in _settings(param, values, base):
        frames.append(learning_curves(
            signals=signals, budgets=budgets, models=models, seeds=seeds,
            votes=votes, noise=noise, task_kwargs=task_kw,
            config=config, references=False, extra={"param": param, "param_value": value}, **kwargs))
    return pd.concat(frames, ignore_index=True)

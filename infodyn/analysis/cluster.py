"""Where units run: in this process, in local worker processes (joblib), or on a Dask cluster."""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Sequence


def run_all(fn: Callable, units: Sequence[Any], jobs: int = 1, scheduler: Any = None) -> Iterator[List[dict]]:
    """Yields ``fn(unit)`` for every unit as each finishes (any order when parallel)."""
    if scheduler is not None:
        yield from _on_cluster(fn, scheduler, units)
    elif jobs == 1 or len(units) <= 1:
        for u in units:
            yield fn(u)
    else:
        from joblib import Parallel, delayed

        yield from Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(fn)(u) for u in units)


def _on_cluster(fn: Callable, scheduler: Any, units: Sequence[Any]):
    """Runs the units on a Dask distributed cluster through joblib's dask backend."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("scheduler= needs Dask distributed: pip install 'infodyn[distributed]'") from exc
    from joblib import Parallel, delayed, parallel_config

    own = not isinstance(scheduler, Client)
    if own and not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be an address such as 'tcp://127.0.0.1:8786' or a distributed.Client, "
                         f"got {type(scheduler).__name__}")
    try:
        client = Client(scheduler, timeout="30s") if own else scheduler
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask", wait_for_workers_timeout=60):
            yield from Parallel(n_jobs=-1, return_as="generator_unordered")(delayed(fn)(u) for u in units)
    finally:
        if own:
            client.close()


__all__ = ["run_all"]

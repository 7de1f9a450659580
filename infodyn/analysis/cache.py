"""The per-job row cache: ``OUT/units/<run>/<checkpoint>-<hash>/<layer>.<measure>.<key>.json``.

Each finished (checkpoint, layer, measure) job is written atomically (temporary file +
``os.replace``) with a sha256 of its rows inside, so a reader never sees half a file and a
damaged one is recomputed. The file name carries the job's content key
(:func:`infodyn.analysis.plan.job_key`): after any edit of what determines the rows, the old
file is simply not looked up. Rows that carry an error are never cached (a rerun retries them).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from infodyn.tradeoff import COLUMNS

from .plan import CACHE_FORMAT, Job, Unit

#: columns refreshed from the plan when cached rows are read (the run may have been renamed)
_BOOKKEEPING = ("run", "config", "seed", "checkpoint", "order", "epoch", "step")


def _digest(rows_json: str) -> str:
    return hashlib.sha256(rows_json.encode()).hexdigest()


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return str(v)


def save(job: Job, rows: List[Dict[str, Any]]) -> None:
    """Caches a job's rows when it has a cache file and none of them failed (no rows, as for a
    loss barrier at the first checkpoint, is a result too)."""
    if not job.cache_file or any(r["error"] for r in rows):
        return
    from infodyn._atomic import atomic_write_text

    body = json.dumps(rows, default=_json_default, sort_keys=True)
    Path(job.cache_file).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job.cache_file, '{"format": %d, "sha256": "%s", "rows": %s}'
                      % (CACHE_FORMAT, _digest(body), body))


def load(unit: Unit, job: Job) -> Optional[List[Dict[str, Any]]]:
    """The job's cached rows, or None when absent, damaged or of an older format."""
    if not job.cache_file or not os.path.exists(job.cache_file):
        return None
    try:
        blob = json.loads(Path(job.cache_file).read_text())
        rows = blob["rows"]
        ok = (blob.get("format") == CACHE_FORMAT and isinstance(rows, list)
              and blob.get("sha256") == _digest(json.dumps(rows, sort_keys=True))
              and all(isinstance(r, dict) and set(COLUMNS) <= set(r) for r in rows))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        return None
    base = unit.base_row(job.layer)
    for r in rows:
        for k in _BOOKKEEPING:
            r[k] = base[k]
    return rows


__all__ = ["save", "load"]

"""The tidy results table: rows -> DataFrame, written to CSV (and Parquet), failures listed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List

import pandas as pd

from infodyn.tradeoff import COLUMNS, failed_rows


def _int_or_na(v):
    """An integer column value; anything that is not a finite integer of int64 size becomes NA
    (a stored epoch of 1e300 or 2**63 must not stop the table)."""
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return pd.NA
    if f != f or abs(f) >= 2 ** 63:
        return pd.NA
    return int(round(f))


def to_frame(rows: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the tidy table with :data:`COLUMNS` in order, sorted deterministically."""
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    for col in ("seed", "order", "epoch", "step"):
        df[col] = pd.array([_int_or_na(v) for v in df[col]], dtype="Int64")
    for col in ("value", "ci_low", "ci_high", "seconds"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").fillna(0).astype(int)
    if len(df):
        df = df.sort_values(["run", "order", "layer", "measure", "task", "method"], kind="stable").reset_index(drop=True)
    df["error"] = df["error"].fillna("")
    return df


def write_table(df: pd.DataFrame, out: Path) -> List[Path]:
    """Writes results.csv (and results.parquet when pyarrow is installed), atomically."""
    from importlib.util import find_spec

    from infodyn._atomic import atomic_write_dataframe

    written = [atomic_write_dataframe(Path(out) / "results.csv", df)]
    if find_spec("pyarrow") is not None:
        written.append(atomic_write_dataframe(Path(out) / "results.parquet", df, index=False))
    return written


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, checkpoint, error) among the failed rows."""
    bad = failed_rows(df)
    return bad[["run", "checkpoint", "layer", "measure", "error"]].drop_duplicates(["run", "checkpoint", "error"])


__all__ = ["to_frame", "write_table", "failures"]

"""``infodyn plot results.csv --out DIR``: redraw the figures and the report from a results table."""
from __future__ import annotations

import json
from pathlib import Path


def read_table(path) -> "object":
    """Reads results.csv or results.parquet; errors name the file."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such results table: {p}")
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
    elif p.suffix == ".csv":
        text = ("run", "config", "checkpoint", "layer", "measure", "task", "method", "params", "error")
        df = pd.read_csv(p, dtype={c: str for c in text})
    else:
        raise ValueError(f"{p}: expected a results .csv or .parquet written by `infodyn analyze`")
    for col in ("error", "task", "method", "params", "checkpoint", "layer"):
        if col in df.columns:
            df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
    from infodyn.tradeoff import check_table

    check_table(df)  # names missing columns
    return df


def run(args) -> int:
    from infodyn import plots, report

    from infodyn.analysis.api import claim_out

    df = read_table(args.table)
    out = Path(args.out) if args.out else Path(args.table).parent
    claim_out(out)  # a folder of the user's own (not an analysis output) is refused, nothing changed
    figs = plots.plot_all(df, out)
    manifests = {}
    mpath = Path(args.table).parent / "manifests.json"
    if mpath.is_file():
        manifests = json.loads(mpath.read_text())
    path = report.write_report(df, out / "report.html", figs, manifests=manifests, csv=Path(args.table))
    for p in list(figs.values()) + [path]:
        print(p)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="redraw figures and report.html from a results table",
                       description="Redraw the PNG figures and the self-contained report.html from a "
                                   "results.csv (or .parquet) written by `infodyn analyze`.")
    p.add_argument("table", help="results.csv or results.parquet written by `infodyn analyze`")
    p.add_argument("--out", help="output folder (default: the table's folder)")
    p.set_defaults(func=run)

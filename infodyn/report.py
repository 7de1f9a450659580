"""A self-contained HTML report: figures embedded as base64 PNG, the summary, the results table,
the run manifests and the software versions. It opens in any browser with no server and no
network access.
"""
from __future__ import annotations

import base64
import html
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import pandas as pd

from . import tradeoff as tr

_PACKAGES = ("infodyn", "torch", "numpy", "scipy", "scikit-learn", "pandas", "matplotlib", "seaborn", "joblib")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0} th,td{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#f4f4f4;position:sticky;top:0} tr.err td{background:#fdecea}
.scroll{max-height:480px;overflow:auto;border:1px solid #eee} pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:12px}
figure{margin:1em 0} figcaption{font-size:13px;color:#555} img{max-width:100%}
"""

CAPTIONS = {
    "information_plane": "Information plane: I(X;T) against I(T;Y) in bits per layer; colour = time, arrows point forward.",
    "tradeoff": "Discriminability (source accuracy, solid) and transferability (target accuracy, dashed) over training; bands = 95 % interval across seeds.",
    "compression_vs_transfer": "Compression against transfer: target accuracy against I(X;T) in bits; colour = time.",
    "estimators": "Estimator comparison: the same information-plane quantities by each estimator, in bits.",
}


def software_versions() -> Dict[str, str]:
    """Python, platform and the versions of the packages infodyn rests on ('absent' when missing)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    try:
        import torch

        out["cuda"] = torch.version.cuda or "none"
    except Exception:  # torch missing or broken: the versions table still renders
        pass
    return out


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame, max_rows: int) -> str:
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    errcol = "error" in shown.columns
    for _, row in shown.iterrows():
        cls = ' class="err"' if errcol and str(row["error"] or "") not in ("", "nan") else ""
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.to_numpy())
        body.append(f"<tr{cls}>{cells}</tr>")
    more = "" if len(df) <= max_rows else f"<p>First {max_rows} of {len(df)} rows; the full table is results.csv.</p>"
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>{more}'


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if v != v else f"{v:.5g}"
    return str(v)


def write_report(df: pd.DataFrame, path, figures: Optional[Dict[str, Path]] = None,
                 manifests: Optional[Dict[str, str]] = None, title: str = "infodyn analysis",
                 max_rows: int = 3000, notes: Iterable[str] = ()) -> Path:
    """Writes ``report.html`` (atomically) and returns its path.

    Args:
        df: the results table.
        path: the HTML file to write.
        figures: {name: PNG path}, embedded in order (see :func:`infodyn.plots.plot_all`).
        manifests: {run name: manifest text (YAML)} shown verbatim.
        max_rows: rows of the results table shown inline.
        notes: extra paragraphs (plain text), e.g. the failures.
    """
    from ._atomic import atomic_write_text

    path = Path(path)
    summary = tr.onset(df) if len(df) else pd.DataFrame()
    parts: List[str] = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
                        f"<p>Written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
                        f"{len(df)} rows, {df['run'].nunique() if 'run' in df else 0} run(s). "
                        "MI values in the table are in nats; figures show bits.</p>"]
    errors = tr.failed_rows(df)
    for note in notes:
        parts.append(f"<p>{html.escape(note)}</p>")
    if len(errors):
        parts.append(f"<h2>Failures</h2><p>{len(errors)} row(s) carry an error:</p>")
        parts.append(_table(errors[[c for c in ("run", "checkpoint", "layer", "measure", "error") if c in errors]]
                            .drop_duplicates(), 200))
    parts.append("<h2>Summary</h2><pre>" + html.escape(tr.format_summary(summary)) + "</pre>")
    parts.append("<p>Peak transfer: the first time the transfer accuracy is highest. I(X;T) turned down: the time "
                 "of the maximum of I(X;T) when it then falls by at least 5 % while source accuracy still rises. "
                 "Over-compression score: 0 = keeps input information beyond the labels, 1 = collapsed to the labels "
                 "(see infodyn.tradeoff).</p>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for name, p in figures.items():
            parts.append(f"<figure>{_img(p)}<figcaption>{html.escape(CAPTIONS.get(name, name))}</figcaption></figure>")
    parts.append("<h2>Results</h2>" + _table(df, max_rows))
    if manifests:
        parts.append("<h2>Run manifests</h2>")
        for run, text in manifests.items():
            parts.append(f"<h3>{html.escape(run)}</h3><pre>{html.escape(text)}</pre>")
    parts.append("<h2>Software</h2><pre>" + html.escape(json.dumps(software_versions(), indent=1)) + "</pre>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(parts))
    return path


__all__ = ["write_report", "software_versions"]

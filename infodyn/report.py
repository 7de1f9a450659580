"""A self-contained HTML report a researcher reads first: settings and versions at the top, the
verdicts per configuration and layer, warnings (saturated estimates, coarse accuracies, a probe at the edge
of its regularisation grid), the figures with captions, the full table as a download, the run
manifests. Figures and the table are embedded (``data:`` URIs), so the file opens in any browser
with no server, no script and no network access.
"""
from __future__ import annotations

import base64
import html
import json
import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import tradeoff as tr

_PACKAGES = ("infodyn", "torch", "numpy", "scipy", "scikit-learn", "pandas", "matplotlib", "seaborn", "joblib")

#: Embed the CSV in the report (a download link with a data: URI) up to this many bytes.
EMBED_CSV_BYTES = 8_000_000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} tr.err td{background:#fdecea} tr.fired td{background:#fff1e6} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:12px}
figure{margin:1.2em 0} figcaption{font-size:13px;color:#444;max-width:60em} img{max-width:100%}
nav.toc{background:#f8f8f8;border:1px solid #e4e4e4;padding:.4em 1.2em;display:inline-block}
nav.toc ol{margin:.3em 0;padding-left:1.2em}
.warn{background:#fff6e0;border-left:4px solid #e0a000;padding:.3em .8em;margin:.4em 0}
.muted{color:#666;font-size:13px} .verdict{font-weight:600}
details{margin:.3em 0} summary{cursor:pointer}
"""

CAPTIONS = {
    "information_plane": "Information plane: I(X;T) against I(T;Y) in bits, one panel per configuration and "
                         "estimator, one trajectory per layer (mean over seeds); colour = time (log scale when "
                         "checkpoints are log-spaced), arrows point forward. A red band at log2 n marks a "
                         "saturated I(X;T): every sample is told apart at the estimator's resolution, so no "
                         "compression can show there. Axes never zoom below 0.25 bits, so estimator noise is "
                         "drawn flat.",
    "tradeoff": "Discriminability (source accuracy, solid) and transferability (target accuracy, dashed) over "
                "training, one panel per configuration and layer. Thick line: mean over seeds; band: 95 % "
                "t interval of that mean; thin lines: single seeds (one marker each). The note under a panel "
                "gives the test-set size when it makes an accuracy coarse.",
    "compression_vs_transfer": "Compression against transfer: target accuracy against I(X;T) in bits, one panel "
                               "per configuration and layer, one line per run (hollow: first checkpoint, filled: "
                               "last). Moving left while the accuracy falls is over-compression.",
    "estimators": "Estimator comparison: I(X;T) (upper row) and I(T;Y) (lower row) of every layer by each "
                  "estimator, in bits; the same quantity by two estimators can disagree on the direction of "
                  "change: a claim about compression should hold under both.",
    "sharpness_vs_transfer": "Loss-landscape sharpness (top Hessian eigenvalue) beside the transfer accuracy of "
                             "the same checkpoints.",
}

# params keys that describe one row's outcome rather than a setting (left out of the settings table)
_OUTCOME_KEYS = {"distinct_t", "l2", "train_accuracy", "n_train", "iterations", "seconds", "features",
                 # the over-compression score's parts and diagnostics (infodyn.overcompression)
                 "score", "effective_rank", "adjusted_rank", "rank_collapse", "source_confusion", "target_confusion",
                 "nc1", "class_separation_r2", "n", "num_classes", "target_nc1", "target_effective_rank", "target_n",
                 "target_num_classes", "target_knn_acc"}


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


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if v != v else f"{v:.4g}"
    return str(v)


def _html_table(rows: Sequence[Sequence[Any]], header: Sequence[str], classes: Sequence[str] = ()) -> str:
    """Rows of already-escaped cells (strings) under an escaped header."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _frame_table(df: pd.DataFrame) -> str:
    return _html_table([[_e(_fmt(v)) for v in row] for row in df.itertuples(index=False)], list(df.columns))


def _img(path: Path, name: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(name)}" src="data:image/png;base64,{data}">'


def _params(text) -> Dict[str, Any]:
    try:
        out = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _manifest_data(manifests: Optional[Dict[str, str]]) -> Dict[str, Dict[str, Any]]:
    """{run: parsed manifest} for the manifests that are valid YAML mappings within the manifest
    limits (:func:`infodyn.runs.manifest.load_yaml_text`: no alias bombs); others are skipped."""
    from .runs.manifest import load_yaml_text

    out = {}
    for run, text in (manifests or {}).items():
        try:
            m = load_yaml_text(str(text), f"manifest of {run}")
        except ValueError:
            continue
        if isinstance(m, dict):
            out[run] = m
    return out


# ----------------------------------------------------------------------------------------------
# sections


def _settings_section(df: pd.DataFrame, manifests: Optional[Dict[str, str]], settings: Optional[Dict]) -> str:
    parts = []
    if settings:
        def show(v, top=True) -> str:
            if isinstance(v, dict):
                inner = ("; " if top else ", ").join(f"{k}: {show(x, False)}" for k, x in v.items())
                return inner if top else ("{" + inner + "}" if inner else "defaults")
            if isinstance(v, (list, tuple)):
                return ", ".join(map(str, v)) if top else "[" + ", ".join(map(str, v)) + "]"
            return v if isinstance(v, str) else json.dumps(v, default=str)

        parts.append("<h3>Analysis settings</h3>" + _html_table([[_e(k), _e(show(v))] for k, v in settings.items()],
                                                                ["setting", "value"]))
    # runs
    parsed = _manifest_data(manifests)
    rows = []
    if len(df):
        firsts = df.drop_duplicates("run").sort_values(["config", "run"], key=lambda s: s.astype(str))
        for _, r in firsts.iterrows():
            m = parsed.get(r["run"], {})
            data = m.get("data") if isinstance(m.get("data"), dict) else {}
            seed = r.get("seed")
            rows.append([_e(r["run"]), _e(r["config"]), _e("" if pd.isna(seed) else int(seed)),
                         _e(data.get("source", "")), _e(data.get("target", "") or "none"),
                         _e(m.get("model", "")), _e(", ".join(map(str, m.get("layers", []) or []))),
                         _e(int(df.loc[df["run"] == r["run"], "checkpoint"].nunique()))])
    parts.append("<h3>Runs</h3>" + _html_table(rows, ["run", "configuration", "seed", "source", "target", "model",
                                                       "layers", "checkpoints"]))
    # measures: settings that are the same for every row of (measure, task, method); samples n
    mrows = []
    good = df[~tr.failed_mask(df)] if len(df) else df
    if len(good):
        from .plots import measure_label

        for (meas, task, method), g in good.groupby(["measure", "task", "method"], sort=True, dropna=False):
            n = pd.to_numeric(g["n"], errors="coerce") if "n" in g else pd.Series(dtype=float)
            n_text = "" if n.dropna().empty else (f"{int(n.min())}" if n.min() == n.max()
                                                   else f"{int(n.min())}-{int(n.max())}")
            mrows.append([_e(measure_label(str(meas), str(task))), _e(meas), _e(task), _e(method),
                          _e(_constant_settings(g)), f'<span class="num">{_e(n_text)}</span>'])
    parts.append("<h3>Measures</h3>" + _html_table(mrows, ["what", "measure", "task", "method",
                                                           "estimator settings", "samples n"]))
    parts.append('<p class="muted">Samples n is the number of samples each value was computed on (for the '
                 "information plane and scores: the source samples after the <code>max_samples</code> cap; for "
                 "accuracies: the test samples). MI values in the table are in nats; figures show bits.</p>")
    return "".join(parts)


def _constant_settings(g: pd.DataFrame) -> str:
    """The settings in ``params`` that are the same for every row of a configuration, as text;
    configurations with different settings are listed apart ("noise_var=0.001 (ib12bit-tanh); ...")."""
    by_config: Dict[str, str] = {}
    for config, cg in g.groupby("config", sort=True):
        dicts = [_params(p) for p in cg["params"].unique()] if "params" in cg else [{}]
        keys = set().union(*dicts) - _OUTCOME_KEYS
        same = [k for k in sorted(keys) if len({json.dumps(d.get(k), default=str, sort_keys=True) for d in dicts}) == 1]
        by_config[str(config)] = ", ".join(f"{k}={json.dumps(dicts[0].get(k), default=str)}" for k in same)
    texts: Dict[str, List[str]] = {}
    for config, text in by_config.items():
        texts.setdefault(text, []).append(config)
    if len(texts) <= 1:
        return next(iter(texts), "")
    return "; ".join(f"{text or 'defaults'} ({', '.join(cfgs)})" for text, cfgs in texts.items())


def _summary_section(df: pd.DataFrame, v: Optional[pd.DataFrame]) -> str:
    """The verdict table of :func:`infodyn.tradeoff.verdicts` (one row per configuration, layer and
    transfer protocol); ``v`` when the caller computed them already."""
    try:
        v = tr.verdicts(df) if v is None else v
    except Exception as exc:  # the report must still render; say why the verdicts are missing
        return f'<p class="warn">verdicts could not be computed: {_e(type(exc).__name__)}: {_e(exc)}</p>'
    if not len(v):
        return "<p>No summary: the table has no transfer or source accuracy rows without errors.</p>"
    return _verdict_table(v)


def _verdict_table(v: pd.DataFrame) -> str:
    """The verdicts of :func:`infodyn.tradeoff.verdicts`: one table, one row per configuration,
    layer and protocol; the layers of a configuration without any transfer measure share a row."""
    from .plots import measure_label

    def num(x, fmt="{:.3f}"):
        return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) or pd.isna(x) else fmt.format(x)

    cols = set(v.columns)
    rows, classes = [], []
    for config, g in v.groupby("config", sort=True):
        none = g[g["verdict"] == "no transfer measure"] if "verdict" in cols else g.iloc[:0]
        for _, r in g.drop(none.index).iterrows():
            label = str(r.get("time_label", "") or "")
            verdict = str(r.get("verdict", ""))
            drop = num(r.get("drop"))
            if drop and "drop_low" in cols:
                drop += f" [{num(r.get('drop_low'))}, {num(r.get('drop_high'))}]"
            src = num(r.get("source_change"), "{:+.3f}")
            if src and pd.notna(r.get("source_noise", np.nan)):
                src += f" (noise ±{num(r.get('source_noise'))})"
            fired = f"{int(r['n_fired'])}/{int(r['n_seeds'])}" if {"n_fired", "n_seeds"} <= cols else ""
            rows.append([_e(config), _e(r.get("layer", "")), _e(measure_label(str(r.get("protocol", "")),
                                                                             str(r.get("task", "")), unit=False)),
                         f'<span class="verdict">{_e(verdict)}</span>',
                         _e(f"{label} {num(r.get('onset'), '{:g}')}".strip() if num(r.get("onset")) else ""),
                         _e(drop), _e(src), _e(fired), _e(r.get("sentence", ""))])
            classes.append("fired" if verdict == "over-compression" else "")
        if len(none):
            layers = ", ".join(map(str, none["layer"]))
            rows.append([_e(config), _e(layers), "", '<span class="verdict">no transfer measure</span>', "", "", "",
                         "", _e("no transfer measure at these layers (this configuration has no target task, or "
                                "analyze ran without linear_probe, knn or fewshot_probe)")])
            classes.append("")
    header = ["configuration", "layer", "transfer protocol", "verdict", "onset", "transfer drop [95 % CI]",
              "source accuracy change", "seeds firing alone", "in words"]
    return (_html_table(rows, header, classes)
            + '<p class="muted">From infodyn.tradeoff.verdicts: per configuration (seeds averaged), layer and '
              "transfer protocol, the fall of transfer accuracy from its peak to the last checkpoint, with a 95 % "
              "interval (sampling error of the accuracies and the spread over seeds). Over-compression: the "
              "interval excludes 0, the fall is at least 2 points, and source accuracy rose or held; the onset is "
              "the peak. I(X;T) and effective rank are reported as evidence, not used as the trigger.</p>")


def table_warnings(df: pd.DataFrame, min_acc_samples: int = 300) -> List[str]:
    """Plain-text warnings about the table: saturated I(X;T) estimates (within 1 % of log n),
    accuracies on fewer than ``min_acc_samples`` test samples, a linear probe whose chosen L2
    strength sits at the edge of its grid (the grid did not bracket the optimum)."""
    from .plots import SATURATION_TOL, measure_label, saturated

    out: List[str] = []
    good = df[~tr.failed_mask(df)] if len(df) else df
    if good.empty:
        return out
    good = good[np.isfinite(pd.to_numeric(good["value"], errors="coerce"))]
    sat = saturated(good)
    ixt = good[good["measure"] == tr.IXT]
    items = []
    for (config, layer, method), g in ixt.groupby(["config", "layer", "method"], sort=True):
        s = sat.loc[g.index]
        if s.any():
            n = int(pd.to_numeric(g.loc[s, "n"]).max())
            items.append(f"{config} {layer} by {method}: {int(s.sum())} of {len(g)} at {math.log2(n):.2f} bits "
                         f"(n = {n})")
    if items:
        out.append(f"Saturated I(X;T), within {SATURATION_TOL:.0%} of log2 n (every sample is told apart at the "
                   "estimator's resolution, so compression cannot show; fewer bins, a larger noise_var or more "
                   "samples help): " + "; ".join(items) + ".")
    acc = good[good["measure"].isin([tr.PROBE, tr.KNN, tr.FEWSHOT, tr.SOURCE_ACC])]
    if "n" in acc:
        n = pd.to_numeric(acc["n"], errors="coerce")
        small = acc[(n > 0) & (n < min_acc_samples)]
        for config, g in small.groupby("config", sort=True):
            k = int(pd.to_numeric(g["n"]).min())
            names = sorted({measure_label(m, t, unit=False) for m, t in zip(g["measure"], g["task"])})
            out.append(f"{config}: accuracies on fewer than {min_acc_samples} test samples (as few as {k}; one "
                       f"sample = {100 / k:.2f} points, binomial 95 % half-width up to "
                       f"±{196 * math.sqrt(0.25 / k):.1f} points): {', '.join(names)}.")
    probe = good[good["measure"] == tr.PROBE]
    if len(probe):
        from .transfer.probe import DEFAULT_L2_GRID

        edge: Dict[Tuple[str, str], List[int]] = {}
        for idx, r in probe.iterrows():
            p = _params(r.get("params", ""))
            grid = p.get("l2_grid") or DEFAULT_L2_GRID
            grid = [float(g) for g in np.atleast_1d(grid)]
            if len(grid) < 2 or "l2" not in p:
                continue
            chosen = [float(v) for v in np.atleast_1d(p["l2"])]
            lo, hi = min(grid), max(grid)
            for c in chosen:
                where = "strongest" if math.isclose(c, hi, rel_tol=1e-9) else (
                    "weakest" if math.isclose(c, lo, rel_tol=1e-9) else None)
                if where:
                    edge.setdefault((r["config"], where), []).append(idx)
                    break
        for (config, where), idx in sorted(edge.items()):
            sub = probe.loc[idx]
            out.append(f"{config}: the linear probe chose the {where} L2 strength of its grid in {len(idx)} of "
                       f"{int((probe['config'] == config).sum())} probe rows (layers "
                       f"{', '.join(sorted(map(str, sub['layer'].unique())))}): the optimum may lie outside the "
                       "grid; widen the probe's l2_grid.")
    return out


def _data_section(df: pd.DataFrame, path: Path, csv: Optional[Path]) -> str:
    parts = []
    if csv is not None and Path(csv).is_file():
        import os

        rel = os.path.relpath(Path(csv).resolve(), path.parent.resolve()).replace(os.sep, "/")
        parts.append(f'<p>The full table: <a href="{_e(rel)}">{_e(rel)}</a> (beside this report).</p>')
    body = df.to_csv(index=False).encode("utf-8")
    if len(body) <= EMBED_CSV_BYTES:
        uri = "data:text/csv;base64," + base64.b64encode(body).decode("ascii")
        parts.append(f'<p><a download="results.csv" href="{uri}">Download the table embedded in this report</a> '
                     f"(results.csv, {len(df)} rows, {len(body) / 1e3:.0f} kB).</p>")
    else:
        parts.append(f"<p>The table ({len(body) / 1e6:.1f} MB) is too large to embed; use the CSV file.</p>")
    parts.append('<p class="muted">One row per run, checkpoint, layer and measure; columns: '
                 + _e(", ".join(map(str, df.columns))) + ". MI values in nats, accuracies as fractions, every "
                 "estimator setting in <code>params</code> (JSON), failures in <code>error</code>.</p>")
    if len(df):
        parts.append("<details><summary>First 10 rows</summary>" + _frame_table(df.head(10)) + "</details>")
    return "".join(parts)


def write_report(df: pd.DataFrame, path, figures: Optional[Dict[str, Path]] = None,
                 manifests: Optional[Dict[str, str]] = None, title: str = "infodyn analysis",
                 max_rows: int = 3000, notes: Iterable[str] = (), settings: Optional[Dict[str, Any]] = None,
                 csv: Optional[Path] = None, verdicts: Optional[pd.DataFrame] = None) -> Path:
    """Writes the report (atomically) and returns its path.

    Args:
        df: the results table (:data:`infodyn.tradeoff.COLUMNS`).
        path: the HTML file to write.
        figures: {name: PNG path}, embedded in order (see :func:`infodyn.plots.plot_all`).
        manifests: {run name: manifest text (YAML)}: source, target, model and layers per run, and
            shown verbatim at the end.
        max_rows: kept for compatibility (the table is a download now, not an inline box).
        notes: extra paragraphs (plain text), e.g. the demo's timing.
        settings: analysis settings to show at the top (measures, seed, max_samples, parameters).
        csv: the results file to link (relative to the report); default ``results.csv`` beside
            ``path`` when it exists. The table is embedded as a download too (up to 8 MB).
        verdicts: :func:`infodyn.tradeoff.verdicts` of ``df`` when the caller has them (else
            computed here).
    """
    from ._atomic import atomic_write_text

    path = Path(path)
    df = tr.check_table(df) if len(df) else df
    if csv is None and (path.parent / "results.csv").is_file():
        csv = path.parent / "results.csv"
    sections: List[Tuple[str, str, str]] = []  # (id, heading, html)
    sections.append(("settings", "Settings", _settings_section(df, manifests, settings)))
    summary_html = _summary_section(df, verdicts) if len(df) else "<p>The table is empty.</p>"
    sections.append(("summary", "Summary: verdicts per configuration and layer", summary_html))
    warn = table_warnings(df) if len(df) else []
    sections.append(("warnings", f"Warnings ({len(warn)})",
                     "".join(f'<p class="warn">{_e(w)}</p>' for w in warn) or "<p>None.</p>"))
    errors = tr.failed_rows(df) if len(df) else df
    if len(errors):
        cols = [c for c in ("run", "checkpoint", "layer", "measure", "error") if c in errors]
        sections.append(("failures", f"Failures ({len(errors)} rows)",
                         f"<p>{len(errors)} row(s) carry an error:</p>"
                         + _html_table([[_e(_fmt(v)) for v in r] for r in errors[cols].drop_duplicates()
                                        .head(200).itertuples(index=False)], cols,
                                       ["err"] * 200)))
    if figures:
        figs = []
        for i, (name, p) in enumerate(figures.items(), 1):
            figs.append(f'<figure id="fig-{_e(name)}">{_img(p, name)}<figcaption><b>Figure {i}.</b> '
                        f"{_e(CAPTIONS.get(name, name))}</figcaption></figure>")
        sections.append(("figures", "Figures", "".join(figs)))
    sections.append(("data", "Results table", _data_section(df, path, csv)))
    if manifests:
        sections.append(("manifests", "Run manifests", "".join(
            f"<details><summary>{_e(run)}</summary><pre>{_e(text)}</pre></details>"
            for run, text in manifests.items())))
    versions = software_versions()
    sections.append(("software", "Software", _html_table([[_e(k), _e(v)] for k, v in versions.items()],
                                                         ["package", "version"])))

    n_runs = df["run"].nunique() if "run" in df else 0
    head = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>",
            f"<p>Written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by infodyn "
            f"{_e(versions.get('infodyn', ''))}; {len(df)} rows, {n_runs} run(s).</p>"]
    head += [f"<p>{_e(n)}</p>" for n in notes]
    toc = "".join(f'<li><a href="#{sid}">{_e(h)}</a></li>' for sid, h, _ in sections)
    head.append(f'<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>')
    body = [f'<section id="{sid}"><h2>{_e(h)}</h2>{content}</section>' for sid, h, content in sections]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(head + body + ["</body></html>"]))
    return path


__all__ = ["write_report", "software_versions", "table_warnings", "CAPTIONS"]

"""Figures drawn from the tidy results table (matplotlib, Agg backend; nothing needs a display).

Every function takes the table (see :data:`infodyn.tradeoff.COLUMNS`) and a path, writes one PNG,
and returns the path, or None when the table has nothing to draw for that figure. MI axes are in
bits; accuracies are fractions in [0, 1]; time is the table's epoch (else step, else checkpoint
order).

The figures carry their own caveats:

* an I(X;T) estimate within 1 % of log n (n: the table's ``n`` column, the samples it was
  computed on) is *saturated*: every sample is distinguishable and no compression can show. Its
  panel gets a shaded band at log2 n and a note (:func:`saturated`);
* MI axes never zoom below a minimum span (:data:`MIN_SPAN_BITS`, or 5 % of the level), so
  estimator noise of a few thousandths of a bit is not drawn as a trajectory;
* the time axis is symmetric-log (0 drawn, then log) when the checkpoints are log-spaced;
* panels are keyed by (configuration, layer): two networks that both name a layer ``fc1`` never
  share a panel; one colour per series (configuration, estimator) in every panel of a figure;
  each seed is drawn on its own (thin line and its own marker) beside the mean;
* labels are human (:func:`measure_label`); run and layer names are drawn literally
  (a ``$`` in a name is not matplotlib math text).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from . import tradeoff as tr

LN2 = math.log(2.0)

#: Relative distance to log n under which an I(X;T) estimate counts as saturated.
SATURATION_TOL = 0.01
#: Smallest span of an MI axis, in bits (or 5 % of the largest value drawn, whichever is larger).
MIN_SPAN_BITS = 0.25
#: Fewer test samples than this make an accuracy coarse (one sample > 0.33 points): noted on panels.
MIN_ACC_SAMPLES = 300

_MARKERS = "osD^v<>ph*"  # one per layer, or per seed

#: measure -> human label ("{task}" is replaced by the row's task: source/target).
LABELS = {
    tr.IXT: "I(X;T) [bits]",
    tr.ITY: "I(T;Y) [bits]",
    tr.PROBE: "{task} linear probe accuracy",
    tr.KNN: "{task} k-NN accuracy",
    tr.FEWSHOT: "{task} few-shot probe accuracy",
    tr.SOURCE_ACC: "source accuracy (model's head)",
    tr.RANKME: "effective rank (RankMe)",
    tr.NC1: "NC1 within-class variability (lower: more collapse)",
    tr.SCORE: "over-compression score [0-1]",
    "sharpness": "sharpness: top Hessian eigenvalue",
    "hessian_trace": "Hessian trace",
    "grad_norm": "gradient norm",
    "grad_pc": "gradient principal-component share",
    "weight_distance_init": "weight distance from initialisation",
    "weight_distance_prev": "weight distance from the previous checkpoint",
    "loss_barrier": "loss barrier between checkpoints",
}
_ACCURACIES = {tr.PROBE, tr.KNN, tr.FEWSHOT, tr.SOURCE_ACC}


def measure_label(measure: str, task: str = "", unit: bool = True) -> str:
    """A human label for a measure of the table, e.g. ("linear_probe_acc", "target") ->
    "target linear probe accuracy [fraction]"; unknown measures come back as they are."""
    text = LABELS.get(measure, literal(measure)).replace("{task}", literal(task or "source")).strip()
    if unit and measure in _ACCURACIES:
        text += " [fraction]"
    if not unit:
        text = text.replace(" [bits]", "")
    return text


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def literal(name) -> str:
    """A run, layer or configuration name as matplotlib draws it literally: ``$`` escaped, so a
    name such as ``lr$1$`` is not parsed as math text (which mangles it or fails to render)."""
    return str(name).replace("$", r"\$")


def _write_png(fig, path) -> Path:
    """Renders ``fig`` to PNG bytes and writes them atomically; closes the figure."""
    import io

    from ._atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _colours(keys: Iterable) -> Dict:
    """One colour per key, stable across the panels of a figure (sorted keys, tab10 order)."""
    keys = sorted(set(keys), key=str)
    cycle = ["C%d" % i for i in range(10)]
    return {k: cycle[i % 10] for i, k in enumerate(keys)}


def _table_n(df: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(df["n"], errors="coerce") if "n" in df else pd.Series(np.nan, index=df.index)


def _min_n(df: pd.DataFrame) -> int:
    """The smallest sample count of the rows (0 when the table has none, e.g. an old CSV)."""
    n = _table_n(df).dropna()
    return int(n.min()) if len(n) else 0


def saturated(df: pd.DataFrame, rel_tol: float = SATURATION_TOL) -> pd.Series:
    """Boolean mask over ``df``: I(X;T) rows whose value is within ``rel_tol`` of log n (nats),
    n the row's sample count (column ``n``). With X uniform over n samples no estimate of
    I(X;T) exceeds log n; one at log n says every sample is told apart, so no compression can
    be measured at that resolution (bins, noise variance)."""
    if "measure" not in df or "value" not in df:
        return pd.Series(False, index=df.index)
    n = _table_n(df)
    value = pd.to_numeric(df["value"], errors="coerce")
    logn = np.log(n.where(n > 1))
    return (df["measure"] == tr.IXT) & (value >= (1.0 - rel_tol) * logn)


def _log_spaced(times) -> bool:
    """True when the positive times look log-spaced (gaps grow like the times) and span more
    than a factor of 20: then a log time axis shows early training, where most happens."""
    t = np.unique(np.asarray(times, dtype=float))
    t = t[np.isfinite(t) & (t > 0)]
    if t.size < 4 or t[-1] / t[0] < 20:
        return False
    lin, log = np.diff(t), np.diff(np.log(t))
    return float(log.std() / log.mean()) < float(lin.std() / lin.mean())


def _time_axis(ax, times, label: str, axis: str = "x") -> None:
    """Labels the time axis; symmetric-log (linear up to the first positive time, so epoch 0
    is drawn) when the times are log-spaced."""
    if _log_spaced(times):
        t = np.asarray(times, dtype=float)
        first = float(t[np.isfinite(t) & (t > 0)].min())
        (ax.set_xscale if axis == "x" else ax.set_yscale)("symlog", linthresh=first, linscale=0.4)
        label = f"{label} (log scale)"
    t = np.asarray(times, dtype=float)
    t = t[np.isfinite(t)]
    if t.size and t.max() > t.min():
        (ax.set_xlim if axis == "x" else ax.set_ylim)(t.min(), t.max())
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)


def _time_norm(times):
    plt = _plt()
    t = np.asarray(times, dtype=float)
    lo, hi = float(np.nanmin(t)), float(np.nanmax(t))
    if _log_spaced(t):
        import matplotlib.colors as mcolors

        return mcolors.SymLogNorm(linthresh=float(t[t > 0].min()), linscale=0.4, vmin=lo, vmax=hi)
    return plt.Normalize(lo, max(hi, lo + 1e-9))


def _min_span(ax, values, axis: str = "x", include: Sequence[float] = ()) -> None:
    """Widens an MI axis to at least :data:`MIN_SPAN_BITS` (or 5 % of the level) around the
    data, so that estimator noise is drawn flat; ``include`` values are kept in view."""
    v = np.asarray(list(values) + list(include), dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    span = max(MIN_SPAN_BITS, 0.05 * max(abs(lo), abs(hi)))
    if hi - lo < span:
        mid = (lo + hi) / 2
        lo, hi = mid - span / 2, mid + span / 2
    pad = 0.06 * (hi - lo)
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo - pad, hi + pad)


def _saturation_mark(ax, log2n: float, axis: str = "x", n: Optional[int] = None) -> None:
    """Shades the saturated band [(1 - tol) log2 n, log2 n] and writes the note on the panel."""
    lo = (1.0 - SATURATION_TOL) * log2n
    span = ax.axvspan if axis == "x" else ax.axhspan
    line = ax.axvline if axis == "x" else ax.axhline
    span(lo, log2n * 1.002, color="tab:red", alpha=0.12, lw=0, zorder=0)
    line(log2n, color="tab:red", lw=0.9, ls=":", zorder=0)
    note = f"saturated: log2 n = {log2n:.2f} bits" + (f" (n = {n})" if n else "")
    if axis == "x":
        ax.text(lo, 0.98, note + " ", transform=ax.get_xaxis_transform(), rotation=90, fontsize=6.5,
                ha="right", va="top", color="tab:red", zorder=5,
                bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.75))
    else:
        ax.text(0.02, lo, note, transform=ax.get_yaxis_transform(), fontsize=6.5, ha="left", va="top",
                color="tab:red", zorder=5)


def _saturation_of(good: pd.DataFrame) -> Tuple[bool, Optional[float], Optional[int]]:
    """(any I(X;T) row saturated, log2 n in bits, n) for a subset of the table."""
    ixt = good[good["measure"] == tr.IXT]
    if ixt.empty:
        return False, None, None
    mask = saturated(ixt)
    if not mask.any():
        return False, None, None
    n = int(_table_n(ixt[mask]).max())
    return True, math.log2(n), n


def _panel_keys(frame: pd.DataFrame) -> List[Tuple[str, str]]:
    return sorted({(str(c), str(l)) for c, l in zip(frame["config"], frame["layer"])})


#: Panels per row before a block of panels wraps onto the next row.
MAX_COLS = 6


def _block_grid(blocks: List[list], size=(4.0, 3.1), max_cols: int = MAX_COLS):
    """A grid where each block of panel keys starts on a new row and wraps after ``max_cols``
    panels; returns (figure, {key: axes}); unused cells are hidden."""
    plt = _plt()
    ncols = max(1, min(max_cols, max(len(b) for b in blocks)))
    rows_of = [max(1, math.ceil(len(b) / ncols)) for b in blocks]
    fig, axes = plt.subplots(sum(rows_of), ncols, figsize=(size[0] * ncols, size[1] * sum(rows_of)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_visible(False)
    out, r0 = {}, 0
    for block, nrows in zip(blocks, rows_of):
        for i, key in enumerate(block):
            ax = axes[r0 + i // ncols, i % ncols]
            ax.set_visible(True)
            out[key] = ax
        r0 += nrows
    return fig, out


def _rows_by_config(keys: List[Tuple[str, str]], size=(4.0, 3.1)):
    """Panels keyed by (configuration, layer): each configuration starts a row, its layers side by
    side (wrapping after :data:`MAX_COLS`)."""
    configs = sorted({c for c, _ in keys})
    return _block_grid([[k for k in keys if k[0] == c] for c in configs], size)


def _acc_note(ax, n: int) -> None:
    """Below the panel: how coarse an accuracy over ``n`` test samples is (when n < 300)."""
    if 0 < n < MIN_ACC_SAMPLES:
        half = 100 * 1.96 * math.sqrt(0.25 / n)
        ax.annotate(f"n = {n} test samples: 1 sample = {100 / n:.2f} points; binomial 95 % half-width "
                    f"up to ±{half:.1f} points", xy=(1.0, 0.0), xycoords="axes fraction", xytext=(0, -33),
                    textcoords="offset points", fontsize=6, ha="right", va="top", color="0.35",
                    annotation_clip=False)


def information_plane(df: pd.DataFrame, path, method: Optional[str] = None) -> Optional[Path]:
    """I(X;T) against I(T;Y) in bits: one row of panels per estimator (or only ``method``), one
    panel per configuration, one trajectory per layer (mean over seeds), points coloured by time
    (a colour bar per panel; log colour scale when checkpoints are log-spaced), arrows pointing
    forward in time. A saturated I(X;T) (at log2 n) is shaded and noted on its panel."""
    good = tr.ok_rows(df)
    methods = sorted(good.loc[good["measure"].isin([tr.IXT, tr.ITY]), "method"].unique(),
                     key=lambda m: (m != "binning", m))
    if method is not None:
        methods = [method]
    trajs = [t for t in (tr.trajectories(df, m) for m in methods) if not t.empty]
    if not trajs:
        return None
    label = trajs[0].attrs.get("time_label", "epoch")
    configs = sorted(set().union(*(set(t["config"]) for t in trajs)), key=str)
    fig, grid = _block_grid([[(t["method"].iloc[0], c) for c in configs] for t in trajs], (4.6, 3.8), max_cols=4)
    for traj in trajs:
        m = traj["method"].iloc[0]
        mean = traj.groupby(["config", "layer", "time"], as_index=False)[["ixt_bits", "ity_bits"]].mean()
        seeds = traj.groupby("config")["run"].nunique()
        for config in configs:
            ax = grid[(m, config)]
            cg = mean[mean["config"] == config]
            if cg.empty:
                ax.set_visible(False)
                continue
            norm = _time_norm(cg["time"])
            sc = None
            for i, (layer, lg) in enumerate(sorted(cg.groupby("layer"), key=lambda kv: str(kv[0]))):
                lg = lg.sort_values("time")
                xs, ys = lg["ixt_bits"].to_numpy(), lg["ity_bits"].to_numpy()
                ax.plot(xs, ys, color="0.7", lw=0.8, zorder=1)
                step = max(1, len(xs) // 6)
                for k in range(0, len(xs) - 1, step):
                    if (xs[k + 1], ys[k + 1]) != (xs[k], ys[k]):
                        ax.annotate("", xy=(xs[k + 1], ys[k + 1]), xytext=(xs[k], ys[k]),
                                    arrowprops=dict(arrowstyle="->", color="0.35", lw=0.8), zorder=2)
                sc = ax.scatter(xs, ys, c=lg["time"], cmap="viridis", norm=norm,
                                marker=_MARKERS[i % len(_MARKERS)], s=26, edgecolors="k",
                                linewidths=0.3, zorder=3, label=literal(layer))
            rows = good[(good["config"] == config) & (good["method"] == m)]
            sat, log2n, n = _saturation_of(rows)
            if sat:
                _saturation_mark(ax, log2n, "x", n)
            _min_span(ax, cg["ixt_bits"], "x", include=[log2n] if sat else [])
            _min_span(ax, cg["ity_bits"], "y")
            ns = int(seeds.get(config, 1))
            ax.set_title(f"{literal(config)} ({literal(m)}" + (f", mean of {ns} seeds" if ns > 1 else "") + ")", fontsize=10)
            ax.set_xlabel(f"I(X;T) [bits] ({literal(m)})")
            ax.set_ylabel("I(T;Y) [bits]")
            ax.legend(fontsize=7, loc="lower right", title="layer", title_fontsize=7)
            cb = fig.colorbar(sc, ax=ax, shrink=0.85)
            cb.set_label(label + (" (log scale)" if _log_spaced(cg["time"]) else ""))
    return _write_png(fig, path)


def _seed_lines(ax, rows: pd.DataFrame, colour, marker_of: Dict, ls: str = "-") -> None:
    """One thin line per run (seed) with that seed's marker."""
    for run, g in rows.groupby("run", sort=True):
        g = g.groupby("time")["value"].mean().sort_index()
        ax.plot(g.index, g.to_numpy(), ls=ls, color=colour, lw=0.7, alpha=0.55,
                marker=marker_of.get(run, "o"), ms=3, mfc="none", mew=0.7, zorder=2)


def _mean_band(ax, sub: pd.DataFrame, label: str, colour, ls: str = "-") -> None:
    sub = sub.sort_values("time")
    ax.plot(sub["time"], sub["mean"], label=label, color=colour, lw=1.8, ls=ls, zorder=3)
    if (sub["n_seeds"] > 1).any():
        ax.fill_between(sub["time"], sub["low"].clip(0, 1), sub["high"].clip(0, 1), color=colour, alpha=0.15,
                        lw=0, zorder=1)


def _seed_marker(run: str, seed, runs: List[str]) -> str:
    """The marker of a run: by its seed, else by its place among ``runs``."""
    idx = int(seed) if seed is not None and pd.notna(seed) else runs.index(run)
    return _MARKERS[idx % len(_MARKERS)]


def tradeoff_curves(df: pd.DataFrame, path) -> Optional[Path]:
    """Discriminability (source accuracy, solid) and transferability (target accuracy of every
    protocol measured, dashed) over training: one panel per (configuration, layer) that has a
    transfer measure (else one
    panel per configuration with its source accuracy); thick line = mean over seeds, band =
    95 % t interval of that mean (clipped to [0, 1]), thin lines = each seed (own marker). The
    accuracy axis zooms to the data; the time axis is log when checkpoints are log-spaced."""
    good = tr.ok_rows(df)
    bands = tr.seed_bands(df)
    src = tr.source_measure(df)
    tgt = tr.transfer_measure(df)
    if src[0] is None and tgt[0] is None:
        return None
    label = bands.attrs.get("time_label", "epoch")
    keys: List[Tuple[str, Optional[str]]] = []
    if tgt[0] is not None:
        sel = bands[(bands["measure"] == tgt[0]) & (bands["task"] == tgt[1])]
        keys = _panel_keys(sel)
    if not keys:
        sel = bands[(bands["measure"] == src[0]) & (bands["task"] == src[1])]
        keys = [(str(c), "") for c in sorted(sel["config"].unique(), key=str)]
    fig, axes = _rows_by_config(keys)
    runs = sorted(good["run"].unique(), key=str)
    seeds_of = good.drop_duplicates("run").set_index("run")["seed"].to_dict()
    marker_of = {run: _seed_marker(run, seeds_of.get(run), runs) for run in runs}
    for (config, layer), ax in axes.items():
        cb, cg = bands[bands["config"] == config], good[good["config"] == config]
        values, n_acc = [], []
        # every transfer protocol measured on the transfer task (dashed, one colour each): they can
        # disagree (the verdicts are per protocol)
        protocols = [((m, tgt[1]), f"C{i + 1}", "--", bool(layer)) for i, m in enumerate(tr.PROTOCOLS)
                     if tgt[0] is not None and ((cg["measure"] == m) & (cg["task"] == tgt[1])).any()]
        for (meas, task), colour, ls, on in [(src, "C0", "-", src[0] is not None)] + protocols:
            if not on:
                continue
            b = cb[(cb["measure"] == meas) & (cb["task"] == task)]
            r = cg[(cg["measure"] == meas) & (cg["task"] == task)]
            if meas != tr.SOURCE_ACC and layer:
                b, r = b[b["layer"] == layer], r[r["layer"] == layer]
            if b.empty:
                continue
            b = b.groupby("time", as_index=False).mean(numeric_only=True)
            _mean_band(ax, b, measure_label(meas, task, unit=False), colour, ls)
            if r["run"].nunique() > 1:
                _seed_lines(ax, r, colour, marker_of, ls)
            values += [r["value"], b["low"], b["high"]]
            n_acc.append(_min_n(r))
        if values:
            allv = pd.concat(values).to_numpy(dtype=float)
            allv = allv[np.isfinite(allv)]
            lo, hi = float(allv.min()), float(allv.max())
            pad = max(0.02, 0.08 * (hi - lo))
            ax.set_ylim(max(-0.01, lo - pad), min(1.01, hi + pad))
        n_acc = [v for v in n_acc if v > 0]
        if n_acc:
            _acc_note(ax, min(n_acc))
        n = int(cb["n_seeds"].max()) if len(cb) else 0
        ax.set_title(literal(config) + (f", layer {literal(layer)}" if layer else "") + f" ({n} seed{'s' if n != 1 else ''})",
                     fontsize=10)
        _time_axis(ax, cg["time"], label)
        ax.set_ylabel("accuracy [fraction]")
        ax.grid(alpha=0.25, lw=0.5)
        handles, labels = ax.get_legend_handles_labels()
        if cg["run"].nunique() > 1:
            from matplotlib.lines import Line2D

            for run in sorted(cg["run"].unique(), key=str):
                handles.append(Line2D([], [], color="0.4", lw=0.7, marker=marker_of[run], mfc="none", ms=4))
                labels.append(literal(run))
        ax.legend(handles, labels, fontsize=6.5, loc="best")
    fig.suptitle("discriminability (solid) vs transferability (dashed); thin lines: single seeds, "
                 "band: 95 % interval of the mean", fontsize=9)
    return _write_png(fig, path)


def compression_vs_transfer(df: pd.DataFrame, path, method: Optional[str] = None) -> Optional[Path]:
    """Transfer accuracy against I(X;T) in bits, one panel per (configuration, layer), one line
    per run (own colour in every panel, own marker per seed, own legend entry), the first
    checkpoint hollow, the last filled.

    I(X;T) by ``method``; default KDE when present (binning of a wide continuous layer sits at
    log n, every sample in its own bin, and shows no compression), else the first estimator."""
    if method is None and ((df["measure"] == tr.IXT) & (df["method"] == "kde")).any():
        method = "kde"
    traj = tr.trajectories(df, method)
    tgt = tr.transfer_measure(df)
    if traj.empty or tgt[0] is None:
        return None
    good = tr.ok_rows(df)
    acc = good[(good["measure"] == tgt[0]) & (good["task"] == tgt[1])]
    acc = acc.groupby(["config", "run", "layer", "time"], as_index=False)["value"].mean()
    merged = traj.merge(acc, on=["config", "run", "layer", "time"])
    if merged.empty:
        return None
    m = traj["method"].iloc[0]
    label = traj.attrs.get("time_label", "epoch")
    keys = _panel_keys(merged)
    fig, axes = _rows_by_config(keys, size=(4.2, 3.4))
    colour = _colours(merged["run"])
    runs = sorted(merged["run"].unique(), key=str)
    t0, t1 = merged["time"].min(), merged["time"].max()
    for (config, layer), ax in axes.items():
        lg = merged[(merged["config"] == config) & (merged["layer"] == layer)]
        for run, rg in lg.groupby("run", sort=True):
            rg = rg.sort_values("time")
            mk = _seed_marker(run, rg["seed"].iloc[0], runs)
            c = colour[run]
            ax.plot(rg["ixt_bits"], rg["value"], color=c, lw=0.9, alpha=0.75, marker=mk, ms=3.5, label=literal(run),
                    zorder=2)
            ax.plot(rg["ixt_bits"].iloc[:1], rg["value"].iloc[:1], marker=mk, ms=7, mfc="white", mec=c,
                    ls="none", zorder=3)
            ax.plot(rg["ixt_bits"].iloc[-1:], rg["value"].iloc[-1:], marker=mk, ms=7, color=c, ls="none", zorder=3)
        rows = good[(good["config"] == config) & (good["layer"] == layer) & (good["method"] == m)]
        sat, log2n, n = _saturation_of(rows)
        if sat:
            _saturation_mark(ax, log2n, "x", n)
        _min_span(ax, lg["ixt_bits"], "x", include=[log2n] if sat else [])
        n_acc = good[(good["config"] == config) & (good["layer"] == layer) & (good["measure"] == tgt[0])
                     & (good["task"] == tgt[1])]
        if len(n_acc):
            _acc_note(ax, _min_n(n_acc))
        ax.set_title(f"{literal(config)}, layer {literal(layer)}", fontsize=10)
        ax.set_xlabel(f"I(X;T) [bits] ({literal(m)})")
        ax.set_ylabel(measure_label(tgt[0], tgt[1]))
        ax.grid(alpha=0.25, lw=0.5)
        ax.legend(fontsize=6.5, title=f"hollow: {label} {t0:g}, filled: {label} {t1:g}", title_fontsize=6.5,
                  loc="best")
    return _write_png(fig, path)


def estimator_comparison(df: pd.DataFrame, path) -> Optional[Path]:
    """I(X;T) and I(T;Y) in bits over training by each estimator present: per configuration a row
    of I(X;T) panels and a row of I(T;Y) panels, one column per layer; one colour per estimator in every panel;
    95 % bands across seeds; log2 n shaded where I(X;T) is saturated. None when only one
    estimator is in the table."""
    good = tr.ok_rows(df)
    bands = tr.seed_bands(df)
    mi = bands[bands["measure"].isin([tr.IXT, tr.ITY])]
    if mi.empty or mi["method"].nunique() < 2:
        return None
    label = bands.attrs.get("time_label", "epoch")
    keys = _panel_keys(mi)
    configs = sorted({c for c, _ in keys})
    measures = [q for q in (tr.IXT, tr.ITY) if (mi["measure"] == q).any()]
    layers_of = {c: [l for k, l in keys if k == c] for c in configs}
    colour = _colours(mi["method"])
    # per configuration: a row of I(X;T) panels, a row of I(T;Y) panels, one column per layer
    fig, grid = _block_grid([[(c, q, l) for l in layers_of[c]] for c in configs for q in measures], (3.6, 2.7))
    for config in configs:
        for measure in measures:
            for layer in layers_of[config]:
                ax = grid[(config, measure, layer)]
                sub = mi[(mi["config"] == config) & (mi["layer"] == layer) & (mi["measure"] == measure)]
                if sub.empty:
                    ax.set_visible(False)
                    continue
                for meth, g in sorted(sub.groupby("method"), key=lambda kv: str(kv[0])):
                    g = g.sort_values("time")
                    ax.plot(g["time"], g["mean"] / LN2, color=colour[meth], lw=1.4, label=literal(meth))
                    if (g["n_seeds"] > 1).any():
                        ax.fill_between(g["time"], g["low"] / LN2, g["high"] / LN2, color=colour[meth], alpha=0.18, lw=0)
                log2n, sat = None, False
                if measure == tr.IXT:
                    sat, log2n, n = _saturation_of(good[(good["config"] == config) & (good["layer"] == layer)])
                    if sat:
                        _saturation_mark(ax, log2n, "y", n)
                _min_span(ax, pd.concat([sub["low"], sub["high"], sub["mean"]]) / LN2, "y",
                          include=[log2n] if sat else [])
                n_seeds = int(sub["n_seeds"].max())
                ax.set_title(f"{literal(config)}, layer {literal(layer)}" + (f" ({n_seeds} seeds)" if n_seeds > 1 else ""), fontsize=9)
                _time_axis(ax, sub["time"], label)
                ax.set_ylabel(measure_label(measure))
                ax.grid(alpha=0.25, lw=0.5)
                ax.legend(fontsize=6, title="estimator", title_fontsize=6, loc="best")
    return _write_png(fig, path)


FIGURES = {
    "information_plane": information_plane,
    "tradeoff": tradeoff_curves,
    "compression_vs_transfer": compression_vs_transfer,
    "estimators": estimator_comparison,
}


def plot_all(df: pd.DataFrame, out_dir) -> Dict[str, Path]:
    """Draws every figure the table supports into ``out_dir`` as NAME.png; returns {name: path}."""
    out_dir = Path(out_dir)
    done: Dict[str, Path] = {}
    for name, fn in FIGURES.items():
        p = fn(df, out_dir / f"{name}.png")
        if p is not None:
            done[name] = p
    return done


__all__ = ["information_plane", "tradeoff_curves", "compression_vs_transfer", "estimator_comparison",
           "plot_all", "FIGURES", "saturated", "measure_label", "literal", "LABELS"]

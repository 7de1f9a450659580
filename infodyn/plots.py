"""Figures drawn from the tidy results table (matplotlib, Agg backend; nothing needs a display).

Every function takes the table (see :data:`infodyn.tradeoff.COLUMNS`) and a path, writes one PNG,
and returns the path, or None when the table has nothing to draw for that figure. MI axes are in
bits; accuracies are fractions in [0, 1]; time is the table's epoch (else step, else checkpoint
order).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

import pandas as pd

from . import tradeoff as tr

LN2 = math.log(2.0)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _write_png(fig, path) -> Path:
    """Renders ``fig`` to PNG bytes and writes them atomically; closes the figure."""
    import io

    from ._atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _grid(n: int, size=(4.2, 3.6)):
    plt = _plt()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def information_plane(df: pd.DataFrame, path, method: Optional[str] = None) -> Optional[Path]:
    """I(X;T) against I(T;Y) in bits: one row of panels per estimator (or only ``method``), one
    panel per configuration, one trajectory per layer (mean over seeds), points coloured by time
    (a colour bar per panel), arrows pointing forward in time."""
    good = tr.ok_rows(df)
    methods = sorted(good.loc[good["measure"].isin([tr.IXT, tr.ITY]), "method"].unique(),
                     key=lambda m: (m != "binning", m))
    if method is not None:
        methods = [method]
    trajs = [t for t in (tr.trajectories(df, m) for m in methods) if not t.empty]
    if not trajs:
        return None
    plt = _plt()
    label = trajs[0].attrs.get("time_label", "epoch")
    configs = sorted(set().union(*(set(t["config"]) for t in trajs)))
    ncols = len(configs)
    fig, axes = plt.subplots(len(trajs), ncols, figsize=(4.4 * ncols, 3.7 * len(trajs)), squeeze=False,
                             layout="constrained")
    markers = "osD^v<>ph*"
    for row, traj in zip(axes, trajs):
        mean = traj.groupby(["config", "layer", "time"], as_index=False)[["ixt_bits", "ity_bits"]].mean()
        for ax, config in zip(row, configs):
            cg = mean[mean["config"] == config]
            if cg.empty:
                ax.set_visible(False)
                continue
            norm = plt.Normalize(cg["time"].min(), max(cg["time"].max(), cg["time"].min() + 1e-9))
            sc = None
            for i, (layer, lg) in enumerate(sorted(cg.groupby("layer"), key=lambda kv: kv[0])):
                lg = lg.sort_values("time")
                xs, ys = lg["ixt_bits"].to_numpy(), lg["ity_bits"].to_numpy()
                ax.plot(xs, ys, color="0.7", lw=0.8, zorder=1)
                step = max(1, len(xs) // 6)
                for k in range(0, len(xs) - 1, step):
                    if (xs[k + 1], ys[k + 1]) != (xs[k], ys[k]):
                        ax.annotate("", xy=(xs[k + 1], ys[k + 1]), xytext=(xs[k], ys[k]),
                                    arrowprops=dict(arrowstyle="->", color="0.35", lw=0.8), zorder=2)
                sc = ax.scatter(xs, ys, c=lg["time"], cmap="viridis", norm=norm, marker=markers[i % len(markers)],
                                s=26, edgecolors="k", linewidths=0.3, zorder=3, label=layer)
            ax.set_title(f"{config} ({traj['method'].iloc[0]})", fontsize=10)
            ax.set_xlabel("I(X;T) [bits]")
            ax.set_ylabel("I(T;Y) [bits]")
            ax.legend(fontsize=7, loc="lower right", title="layer", title_fontsize=7)
            fig.colorbar(sc, ax=ax, label=label, shrink=0.85)
    return _write_png(fig, path)


def _band(ax, sub: pd.DataFrame, label: str, color=None, scale: float = 1.0, clip=None):
    sub = sub.sort_values("time")
    line, = ax.plot(sub["time"], sub["mean"] * scale, label=label, color=color, lw=1.4)
    if (sub["n_seeds"] > 1).any():
        lo, hi = sub["low"] * scale, sub["high"] * scale
        if clip is not None:
            lo, hi = lo.clip(*clip), hi.clip(*clip)
        ax.fill_between(sub["time"], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


def tradeoff_curves(df: pd.DataFrame, path) -> Optional[Path]:
    """Discriminability (source accuracy, solid) and transferability (target accuracy, dashed)
    over training: one panel per (configuration, layer) that has a transfer measure (else one
    panel per configuration with its source accuracy); 95 % t bands across seeds, clipped to
    [0, 1]."""
    bands = tr.seed_bands(df)
    src = tr.source_measure(df)
    tgt = tr.transfer_measure(df)
    if src[0] is None and tgt[0] is None:
        return None
    label = bands.attrs.get("time_label", "epoch")
    panels = []
    if tgt[0] is not None:
        sel = bands[(bands["measure"] == tgt[0]) & (bands["task"] == tgt[1])]
        panels = sorted({(c, l) for c, l in zip(sel["config"], sel["layer"])})
    if not panels:
        sel = bands[(bands["measure"] == src[0]) & (bands["task"] == src[1])]
        panels = [(c, None) for c in sorted(sel["config"].unique())]
    fig, axes = _grid(len(panels))
    for ax, (config, layer) in zip(axes, panels):
        cb = bands[bands["config"] == config]
        if src[0] is not None:
            s = cb[(cb["measure"] == src[0]) & (cb["task"] == src[1])]
            if src[0] != tr.SOURCE_ACC and layer is not None:
                s = s[s["layer"] == layer]
            if len(s):
                _band(ax, s.groupby("time", as_index=False).mean(numeric_only=True),
                      f"source ({src[0]})", "C0", clip=(0, 1))
        if tgt[0] is not None and layer is not None:
            t = cb[(cb["measure"] == tgt[0]) & (cb["task"] == tgt[1]) & (cb["layer"] == layer)]
            if len(t):
                _band(ax, t.groupby("time", as_index=False).mean(numeric_only=True),
                      f"{tgt[1]} ({tgt[0]})", "C1", clip=(0, 1)).set_linestyle("--")
        n = int(cb["n_seeds"].max()) if len(cb) else 0
        ax.set_title(f"{config}" + (f", layer {layer}" if layer else "") + f" ({n} seed{'s' if n != 1 else ''})",
                     fontsize=10)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy [fraction]")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("discriminability (solid) vs transferability (dashed)", fontsize=10)
    return _write_png(fig, path)


def compression_vs_transfer(df: pd.DataFrame, path, method: Optional[str] = None) -> Optional[Path]:
    """Transfer accuracy against I(X;T) in bits, one panel per layer, coloured by time.

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
    plt = _plt()
    layers = sorted(merged["layer"].unique())
    fig, axes = _grid(len(layers))
    norm = plt.Normalize(merged["time"].min(), max(merged["time"].max(), merged["time"].min() + 1e-9))
    sc = None
    for ax, layer in zip(axes, layers):
        lg = merged[merged["layer"] == layer]
        for i, (config, cg) in enumerate(sorted(lg.groupby("config"), key=lambda kv: kv[0])):
            for _, rg in cg.groupby("run"):
                rg = rg.sort_values("time")
                ax.plot(rg["ixt_bits"], rg["value"], color="0.75", lw=0.7, zorder=1)
            sc = ax.scatter(cg["ixt_bits"], cg["value"], c=cg["time"], cmap="viridis", norm=norm,
                            marker="osD^v"[i % 5], s=22, edgecolors="k", linewidths=0.3, label=config, zorder=2)
        ax.set_title(f"layer {layer}", fontsize=10)
        ax.set_xlabel(f"I(X;T) [bits] ({traj['method'].iloc[0]})")
        ax.set_ylabel(f"{tgt[1]} {tgt[0]} [fraction]")
        ax.legend(fontsize=7)
    if sc is not None:
        fig.colorbar(sc, ax=axes, label=traj.attrs.get("time_label", "epoch"), shrink=0.9)
    return _write_png(fig, path)


def estimator_comparison(df: pd.DataFrame, path) -> Optional[Path]:
    """I(X;T) and I(T;Y) in bits over training by each estimator present, one panel per
    (layer, measure), 95 % bands across seeds. None when only one estimator is in the table."""
    bands = tr.seed_bands(df)
    mi = bands[bands["measure"].isin([tr.IXT, tr.ITY])]
    if mi.empty or mi["method"].nunique() < 2:
        return None
    panels = sorted({(l, m) for l, m in zip(mi["layer"], mi["measure"])})
    fig, axes = _grid(len(panels), size=(3.8, 3.0))
    for ax, (layer, measure) in zip(axes, panels):
        sub = mi[(mi["layer"] == layer) & (mi["measure"] == measure)]
        for (config, method), g in sorted(sub.groupby(["config", "method"]), key=lambda kv: kv[0]):
            _band(ax, g, f"{method} · {config}" if sub["config"].nunique() > 1 else method, scale=1 / LN2)
        ax.set_title(f"{measure}, layer {layer}", fontsize=9)
        ax.set_xlabel(mi.attrs.get("time_label", bands.attrs.get("time_label", "epoch")))
        ax.set_ylabel(f"{measure} [bits]")
        ax.legend(fontsize=6)
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
           "plot_all", "FIGURES"]

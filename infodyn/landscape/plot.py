"""Sharpness against transfer accuracy over training, drawn from the tidy results table.

Reads only the table (columns run, checkpoint, epoch, step, layer, measure, task, value, ...;
see :data:`infodyn.tradeoff.COLUMNS`). Liu et al. (2019) relate transferability to flat minima:
this figure puts the top Hessian eigenvalue beside the transfer accuracy of the same checkpoints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd

from infodyn.plots import _plt, _write_png, literal


def _transfer(good: pd.DataFrame, layer: Optional[str]):
    """Transfer-accuracy rows: (measure, task) as :func:`infodyn.tradeoff.transfer_measure` picks,
    on ``layer`` or else the layer with the highest mean of that accuracy."""
    from infodyn import tradeoff as tr

    name, task = tr._pick(good, tr.TRANSFER_PREFERENCE)
    if name is None:
        return None, None
    rows = good[(good["measure"] == name) & (good["task"] == task)]
    if layer is None:
        layer = rows.groupby("layer")["value"].mean().idxmax()
    elif layer not in set(rows["layer"]):
        raise ValueError(f"no {name} rows for layer {layer!r}; layers with it: {sorted(set(rows['layer']))}")
    return rows[rows["layer"] == layer], f"{name} ({task}, layer {literal(layer)})"


def sharpness_vs_transfer(df: pd.DataFrame, path, *, measure: str = "sharpness",
                          layer: Optional[str] = None) -> Optional[Path]:
    """Two panels: (left) ``measure`` (default the top Hessian eigenvalue; log scale when it spans
    more than a decade) and the
    transfer accuracy over training, one colour per run; (right) transfer accuracy against
    ``measure``, one trajectory per run, points coloured by time.

    Args:
        df: the tidy results table.
        path: the PNG to write (atomically).
        measure: any landscape measure on layer ``model`` (``sharpness``, ``hessian_trace``,
            ``grad_pc``, ``grad_norm``, ``weight_distance_init``, ...).
        layer: the layer whose transfer accuracy is drawn; default the one with the highest mean.

    Returns:
        The path, or None when the table has no good ``measure`` rows. The right panel is left
        out when the table has no transfer accuracy.
    """
    from infodyn import tradeoff as tr

    good = tr.ok_rows(df)
    sharp = good[(good["measure"] == measure) & (good["layer"] == "model")]
    if sharp.empty:
        return None
    label = good.attrs.get("time_label", "epoch")
    acc, acc_label = _transfer(good, layer)
    plt = _plt()
    ncols = 1 if acc is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.8), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    ax2 = ax.twinx() if acc is not None else None
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # log scale only when the values are positive and span more than a decade
    positive = bool((sharp["value"] > 0).all()) and float(sharp["value"].max() / sharp["value"].min()) > 10
    for i, (run, s) in enumerate(sharp.groupby("run", sort=True)):
        c = colors[i % len(colors)]
        s = s.groupby("time")["value"].mean().sort_index()
        ax.plot(s.index, s.to_numpy(), "-o", color=c, ms=3, label=f"{literal(run)}: {literal(measure)}")
        if acc is not None:
            a = acc[acc["run"] == run].groupby("time")["value"].mean().sort_index()
            if len(a):
                ax2.plot(a.index, a.to_numpy(), "--s", color=c, ms=3, alpha=0.8, label=f"{literal(run)}: transfer")
                both = pd.concat([s.rename("m"), a.rename("acc")], axis=1).dropna()
                rx = axes[0, 1]
                rx.plot(both["m"], both["acc"], "-", color=c, alpha=0.5, lw=1)
                rx.scatter(both["m"], both["acc"], c=both.index.to_numpy(float), cmap="viridis", s=18,
                                edgecolors=c, linewidths=0.8, label=literal(run))
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel(label)
    names = {"sharpness": "sharpness: top Hessian eigenvalue", "hessian_trace": "Hessian trace"}
    ax.set_ylabel(names.get(measure, literal(measure)) + (" (log)" if positive else ""))
    ax.set_title(f"{literal(measure)} (solid) and transfer accuracy (dashed)", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        ax2.set_ylabel("transfer accuracy [fraction]")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=6, loc="best")
    if acc is not None:
        rx = axes[0, 1]
        if positive:
            rx.set_xscale("log")
        rx.set_xlabel(literal(measure))
        rx.set_ylabel(f"transfer accuracy [fraction]\n{acc_label}", fontsize=8)
        rx.set_title(f"transfer vs {literal(measure)}, coloured by {label}", fontsize=9)
        if rx.collections:
            fig.colorbar(rx.collections[-1], ax=rx, label=label)
    return _write_png(fig, path)

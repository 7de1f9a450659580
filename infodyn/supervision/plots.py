"""Figures for the supervision study; each takes the study's tables and returns a matplotlib Figure."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

COLORS = {"hard": "#1f77b4", "soft": "#ff7f0e", "posterior": "#2ca02c", "triplet": "#d62728",
          "raw": "#7f7f7f", "none": "#bcbd22"}
SIGNAL_ORDER = ("hard", "soft", "posterior", "triplet")


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # an interactive session already chose its backend
            pass
    import matplotlib.pyplot as plt

    return plt


def _lit(name) -> str:
    """A name drawn literally (``$`` escaped: not matplotlib math text)."""
    return str(name).replace("$", r"\$")


def _signals(df) -> list:
    present = list(dict.fromkeys(df["signal"]))
    return [s for s in SIGNAL_ORDER if s in present] + [s for s in present if s not in SIGNAL_ORDER]


def plot_information(info, title: Optional[str] = None):
    """Bars: the capacity of each signal and the exact information it carries (bits)."""
    plt = _plt()
    sub = info[info["method"] == "exact"] if "method" in info.columns else info
    signals = _signals(sub)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    xs = np.arange(len(signals))
    finite_max = 0.0
    for j, (label, about) in enumerate([("capacity", None), ("about the example", "example"), ("about the class", "class")]):
        vals = []
        for s in signals:
            rows = sub[sub["signal"] == s]
            if about is None:
                v = float(rows["capacity_bits"].iloc[0])
            else:
                r = rows[rows["about"] == about]
                v = float(r["bits"].mean()) if len(r) else math.nan
            vals.append(v)
        finite = [v if math.isfinite(v) else 0.0 for v in vals]
        finite_max = max(finite_max, max(finite))
        bars = ax.bar(xs + (j - 1) * width, finite, width, label=label,
                      color=["white" if about is None else COLORS.get(s, "k") for s in signals],
                      edgecolor=[COLORS.get(s, "k") for s in signals], hatch="//" if about is None else None,
                      alpha=1.0 if about != "class" else 0.55)
        for b, v in zip(bars, vals):
            if math.isinf(v):
                ax.text(b.get_x() + b.get_width() / 2, 0.2, "inf", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(xs)
    ax.set_xticklabels(signals)
    ax.set_ylabel("bits per signal")
    ax.set_ylim(0, finite_max * 1.1 + 0.5)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or "information carried vs capacity (hatched)")
    fig.tight_layout()
    return fig


def _mean_sd(df, by):
    g = df.groupby(by)["value"]
    out = g.mean().to_frame("mean")
    out["sd"] = g.std(ddof=1).fillna(0.0)
    return out.reset_index()


def plot_learning(learning, measures: Sequence[str] = ("source_acc", "transfer_acc", "few_shot_acc")):
    """Performance against number of signals, one panel per (model, measure); mean +- sd over seeds."""
    plt = _plt()
    models = [m for m in dict.fromkeys(learning["model"]) if m != "identity"]
    fig, axes = plt.subplots(len(models), len(measures), figsize=(4 * len(measures), 3.2 * len(models)),
                             squeeze=False)
    trained = learning[learning["budget"] > 0]
    for i, model in enumerate(models):
        for j, measure in enumerate(measures):
            ax = axes[i, j]
            sub = trained[(trained["model"] == model) & (trained["measure"] == measure)]
            for s in _signals(sub):
                ms = _mean_sd(sub[sub["signal"] == s], "budget")
                ax.errorbar(ms["budget"], ms["mean"], yerr=ms["sd"], marker="o", ms=3, capsize=2,
                            color=COLORS.get(s), label=_lit(s))
            ref = learning[(learning["signal"] == "raw") & (learning["measure"] == measure)]
            if len(ref):
                ax.axhline(ref["value"].mean(), color=COLORS["raw"], ls="--", lw=1, label="raw features")
            ax.set_xscale("log")
            ticks = sorted(set(sub["budget"]))
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(int(t)) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("number of signals")
            ax.set_title(f"{_lit(model)}: {_lit(measure)}", fontsize=10)
            if j == 0:
                ax.set_ylabel("accuracy")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_cost_benefit(curve):
    """Performance against total annotation cost per signal; stars mark the best signal at each cost."""
    plt = _plt()
    models = list(dict.fromkeys(curve["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = curve[curve["model"] == model]
        for s in _signals(sub):
            c = sub[sub["signal"] == s].sort_values("cost_seconds")
            ax.errorbar(c["cost_seconds"] / 60, c["value"], yerr=c["value_sd"], color=COLORS.get(s), marker="o",
                        ms=3, capsize=2, label=_lit(s))
            b = c[c["best"]]
            ax.scatter(b["cost_seconds"] / 60, b["value"], marker="*", s=160, color=COLORS.get(s),
                       edgecolor="k", zorder=5)
        ax.set_xscale("log")
        ax.set_xlabel("total annotation cost (minutes)")
        ax.set_ylabel(_lit(sub["measure"].iloc[0]))
        ax.set_title(f"{_lit(model)}: cost-benefit (star = best at that cost)", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_effects(info_sweep=None, learn_sweep=None, measure: str = "few_shot_acc"):
    """For each swept setting: information about the example (bits; dotted = capacity) and,
    where a learning sweep was run, ``measure`` at its budget."""
    plt = _plt()
    params = []
    for df in (info_sweep, learn_sweep):
        if df is not None and len(df):
            params += [p for p in dict.fromkeys(df["param"]) if p not in params]
    rows = int(info_sweep is not None and len(info_sweep) > 0) + int(learn_sweep is not None and len(learn_sweep) > 0)
    if not params or rows == 0:
        raise ValueError("plot_effects needs at least one non-empty sweep table")
    fig, axes = plt.subplots(rows, len(params), figsize=(3.6 * len(params), 3.2 * rows), squeeze=False)
    r = 0
    if info_sweep is not None and len(info_sweep):
        for j, p in enumerate(params):
            ax = axes[r, j]
            sub = info_sweep[(info_sweep["param"] == p) & (info_sweep["about"] == "example")]
            for s in _signals(sub) if len(sub) else []:
                c = sub[sub["signal"] == s].groupby("param_value")[["bits", "capacity_bits"]].mean().reset_index()
                fin = np.isfinite(c["bits"])
                ax.plot(c["param_value"][fin], c["bits"][fin], marker="o", ms=3, color=COLORS.get(s), label=_lit(s))
                capf = np.isfinite(c["capacity_bits"])
                ax.plot(c["param_value"][capf], c["capacity_bits"][capf], ls=":", color=COLORS.get(s))
            ax.set_title(f"I(signal; example) vs {_lit(p)} (posterior: inf)", fontsize=9)
            ax.set_xlabel(p)
            ax.set_ylabel("bits")
            ax.set_yscale("symlog", linthresh=1)
        axes[r, 0].legend(frameon=False, fontsize=8)
        r += 1
    if learn_sweep is not None and len(learn_sweep):
        for j, p in enumerate(params):
            ax = axes[r, j]
            sub = learn_sweep[(learn_sweep["param"] == p) & (learn_sweep["measure"] == measure)]
            if sub.empty:
                ax.axis("off")
                continue
            for s in _signals(sub):
                ms = _mean_sd(sub[sub["signal"] == s], "param_value")
                ax.errorbar(ms["param_value"], ms["mean"], yerr=ms["sd"], marker="o", ms=3, capsize=2,
                            color=COLORS.get(s), label=_lit(s))
            budget = ",".join(str(b) for b in sorted(set(sub["budget"])))
            ax.set_title(f"{_lit(measure)} vs {_lit(p)} (budget {budget})", fontsize=9)
            ax.set_xlabel(p)
        for ax in axes[r]:
            if ax.axison:
                ax.legend(frameon=False, fontsize=8)
                break
    fig.tight_layout()
    return fig

"""The discriminability-transferability trade-off: curves, and the over-compression verdict.

Everything here is a pure function of the tidy results table written by :func:`infodyn.analyze`
(one row per run, checkpoint, layer, measure; see :data:`COLUMNS`), so the same numbers come out
of a notebook, the CLI and the report. Times are the table's ``epoch``, else ``step``, else
checkpoint order; runs of one configuration (same ``config``, different ``seed``) are aggregated.

The verdict (:func:`verdicts`) is taken from the transfer curve itself, per configuration, layer
and transfer protocol; I(X;T) and the effective rank are reported beside it as evidence (the
definition is at :func:`verdicts`). The single-model over-compression score is in
:mod:`infodyn.overcompression` (re-exported here).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from infodyn._stats import t_interval as _t_interval

LN2 = math.log(2.0)

#: The columns of the tidy results table, in order.
COLUMNS = ["run", "config", "seed", "checkpoint", "order", "epoch", "step", "layer", "measure", "task",
           "value", "ci_low", "ci_high", "method", "params", "n", "seconds", "error"]

#: Stable measure names.
IXT, ITY = "I(X;T)", "I(T;Y)"
PROBE, KNN, SOURCE_ACC = "linear_probe_acc", "knn_acc", "source_acc"
FEWSHOT = "fewshot_probe_acc"
RANKME, NC1, SCORE = "rankme", "nc1", "overcompression_score"


def check_table(df: pd.DataFrame, need: Iterable[str] = ("run", "layer", "measure", "value")) -> pd.DataFrame:
    """Raises ValueError naming the missing columns; fills optional columns with defaults."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a pandas DataFrame of results, got {type(df).__name__}")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; it has {list(df.columns)}")
    out = df.copy()
    defaults = {"config": None, "seed": np.nan, "task": "", "method": "", "error": "", "epoch": np.nan,
                "step": np.nan, "order": np.nan, "checkpoint": "", "ci_low": np.nan, "ci_high": np.nan}
    for col, val in defaults.items():
        if col not in out.columns:
            out[col] = val
    out["config"] = out["config"].where(out["config"].notna(), out["run"])
    for col in ("task", "method", "error", "checkpoint"):
        out[col] = out[col].astype(object).where(out[col].notna(), "").astype(str)
    return out


def _time_axis(df: pd.DataFrame) -> Tuple[pd.Series, str]:
    """The time column: epoch when every row has one, else step, else checkpoint order."""
    for col, label in (("epoch", "epoch"), ("step", "step"), ("order", "checkpoint")):
        if col in df.columns and len(df) and df[col].notna().all():
            return df[col].astype(float), label
    raise ValueError("results rows have neither epoch, step nor checkpoint order: cannot order them in time")


def failed_mask(df: pd.DataFrame) -> pd.Series:
    """True for the rows that carry an error message (none when there is no ``error`` column)."""
    if "error" not in df:
        return pd.Series(False, index=df.index)
    return df["error"].fillna("").astype(str) != ""


def failed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that carry an error message."""
    return df[failed_mask(df)]


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without an error and with a finite value, plus a float ``time`` column."""
    df = check_table(df)
    good = df[(df["error"] == "") & np.isfinite(pd.to_numeric(df["value"], errors="coerce"))].copy()
    good["value"] = good["value"].astype(float)
    if len(good):
        good["time"], label = _time_axis(good)
        good.attrs["time_label"] = label
    else:
        good["time"] = pd.Series(dtype=float)
        good.attrs["time_label"] = "epoch"
    return good


def seed_bands(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Aggregates seeds of one configuration: one row per (config, layer, measure, task, method, time).

    Returns columns config, layer, measure, task, method, time, mean, low, high, n_seeds, where
    [low, high] is the Student-t ``level`` interval of the mean across runs (seeds); with a
    single run it collapses to the value itself (use the estimator's own ci_low/ci_high then).
    """
    good = ok_rows(df)
    keys = ["config", "layer", "measure", "task", "method", "time"]
    rows = []
    for key, grp in good.groupby(keys, sort=True, dropna=False):
        m, lo, hi = _t_interval(grp.groupby("run")["value"].mean().to_numpy(), level)
        rows.append(dict(zip(keys, key), mean=m, low=lo, high=hi, n_seeds=grp["run"].nunique()))
    out = pd.DataFrame(rows, columns=keys + ["mean", "low", "high", "n_seeds"])
    out.attrs["time_label"] = good.attrs.get("time_label", "epoch")
    return out


def trajectories(df: pd.DataFrame, method: Optional[str] = None) -> pd.DataFrame:
    """Information-plane trajectories: one row per (run, layer, time) with I(X;T) and I(T;Y).

    Args:
        df: the results table.
        method: the MI estimator (``binning``, ``kde``, ...); default: the first one present,
            preferring ``binning``.

    Returns:
        columns config, run, seed, layer, time, method, ixt_nats, ity_nats, ixt_bits, ity_bits,
        sorted by run, layer, time.
    """
    good = ok_rows(df)
    mi = good[good["measure"].isin([IXT, ITY])]
    cols = ["config", "run", "seed", "layer", "time", "method", "ixt_nats", "ity_nats", "ixt_bits", "ity_bits"]
    if mi.empty:
        return pd.DataFrame(columns=cols)
    methods = sorted(mi["method"].unique(), key=lambda m: (m != "binning", m))
    method = method or methods[0]
    if method not in methods:
        raise ValueError(f"no information-plane rows by {method!r}; the table has {methods}")
    mi = mi[mi["method"] == method]
    wide = mi.pivot_table(index=["config", "run", "seed", "layer", "time"], columns="measure", values="value",
                          aggfunc="mean", dropna=False).reset_index()
    wide = wide.dropna(subset=[c for c in (IXT, ITY) if c in wide.columns])
    wide["method"] = method
    wide["ixt_nats"] = wide.get(IXT, np.nan)
    wide["ity_nats"] = wide.get(ITY, np.nan)
    wide["ixt_bits"] = wide["ixt_nats"] / LN2
    wide["ity_bits"] = wide["ity_nats"] / LN2
    out = wide[cols].sort_values(["run", "layer", "time"]).reset_index(drop=True)
    out.attrs["time_label"] = good.attrs["time_label"]
    return out


def _pick(good: pd.DataFrame, candidates: Sequence[Tuple[str, str]]) -> Tuple[Optional[str], Optional[str]]:
    for measure, task in candidates:
        if ((good["measure"] == measure) & (good["task"] == task)).any():
            return measure, task
    return None, None


TRANSFER_PREFERENCE = [(PROBE, "target"), (KNN, "target"), (PROBE, "source"), (KNN, "source")]
SOURCE_PREFERENCE = [(SOURCE_ACC, "source"), (PROBE, "source"), (KNN, "source")]


def transfer_measure(df: pd.DataFrame) -> Tuple[Optional[str], Optional[str]]:
    """(measure, task) used as 'transfer': the target linear probe when present, else fallbacks."""
    return _pick(ok_rows(df), TRANSFER_PREFERENCE)


def source_measure(df: pd.DataFrame) -> Tuple[Optional[str], Optional[str]]:
    """(measure, task) used as 'discriminability': the model's own head accuracy, else probes."""
    return _pick(ok_rows(df), SOURCE_PREFERENCE)


# ----------------------------------------------------------------------------------------------
# onset verdicts from the transfer curve itself

#: The transfer protocols a verdict is given for, in this order (measure names of the table).
PROTOCOLS = (PROBE, KNN, FEWSHOT)
#: Least fall of a transfer accuracy (absolute, accuracy units) a verdict calls over-compression.
MIN_EFFECT = 0.02
VERDICT_COLUMNS = ["config", "layer", "protocol", "task", "verdict", "onset", "peak_time", "final_time", "peak",
                   "final", "drop", "drop_low", "drop_high", "source_change", "source_noise", "n_seeds", "n_fired",
                   "ixt_change", "ixt_method", "rank_change", "time_label", "sentence"]


def _variance(rows: pd.DataFrame, level: float) -> pd.Series:
    """Sampling variance of each accuracy row: binomial p (1 - p) / n from the ``n`` column, and,
    for the few-shot protocol, plus the variance over draws read off its ci_low/ci_high (a t
    interval of the mean over draws, taken as normal); for other measures the larger of the
    binomial and the interval-derived variance (an interval there is the same sampling error)."""
    from scipy import stats

    p = rows["value"].clip(0, 1)
    n = pd.to_numeric(rows.get("n", pd.Series(np.nan, index=rows.index)), errors="coerce")
    binom = (p * (1 - p) / n).where(n > 0, 0.0).fillna(0.0)
    lo = pd.to_numeric(rows["ci_low"], errors="coerce")
    hi = pd.to_numeric(rows["ci_high"], errors="coerce")
    z = stats.norm.ppf((1 + level) / 2)
    civ = (((hi - lo) / (2 * z)) ** 2).fillna(0.0)
    return binom + civ if (rows["measure"] == FEWSHOT).all() else np.maximum(binom, civ)


def _run_curves(g: pd.DataFrame, level: float) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(values, variances): time x run tables of one measure/layer/task (duplicates averaged)."""
    g = g.assign(var=_variance(g, level))
    vals = g.pivot_table(index="time", columns="run", values="value", aggfunc="mean").sort_index()
    var = g.pivot_table(index="time", columns="run", values="var", aggfunc="mean").sort_index()
    return vals, var.reindex_like(vals)


def _fall_test(vals: pd.DataFrame, var: pd.DataFrame, level: float, min_effect: float) -> Dict[str, Any]:
    """The fall from the peak of the seed-mean curve to its last time, with its interval.

    ``vals``/``var``: time x run, complete rows only. The peak is the first maximum of the mean
    curve before the last time. Half-width of the interval = the larger of (a) the sampling error
    of the mean fall times a Bonferroni normal quantile over the candidate peak times (the peak is
    the largest of them, so a flat noisy curve would otherwise "fall" from its luckiest point),
    and (b) the Student-t interval of the per-seed falls (seed spread; 2+ seeds).
    """
    from scipy import stats

    times = vals.index.to_numpy(dtype=float)
    mean = vals.mean(axis=1).to_numpy()
    k = int(np.argmax(mean[:-1]))
    m = len(times) - 1  # candidate peak times
    s = vals.shape[1]
    d = vals.iloc[k].to_numpy() - vals.iloc[-1].to_numpy()  # per-seed falls
    drop = float(mean[k] - mean[-1])
    se_samp = math.sqrt(float(np.mean(var.iloc[k].to_numpy() + var.iloc[-1].to_numpy())) / s)
    half = float(stats.norm.ppf(1 - (1 - level) / (2 * m))) * se_samp
    if s > 1:
        half = max(half, float(stats.t.ppf((1 + level) / 2, s - 1) * d.std(ddof=1) / math.sqrt(s)))
    return {"k": k, "peak_time": times[k], "final_time": times[-1], "peak": float(mean[k]),
            "final": float(mean[-1]), "drop": drop, "drop_low": drop - half, "drop_high": drop + half,
            "fell": bool(drop - half > 0 and drop >= min_effect)}


def _change(good: pd.DataFrame, t0: float, t1: float, level: float) -> Tuple[float, float]:
    """(mean change from t0 to t1 over runs, its noise half-width) of one measure's rows
    (value at the latest time <= t0 and <= t1 per run; binomial noise from ``n`` and the t
    interval over runs, the larger)."""
    from scipy import stats

    if good.empty:
        return math.nan, math.nan
    vals, var = _run_curves(good, level)

    def at(t):
        sel = vals.index[vals.index <= t]
        i = sel[-1] if len(sel) else vals.index[0]
        return vals.loc[i], var.loc[i]

    (v0, w0), (v1, w1) = at(t0), at(t1)
    diff = (v1 - v0).dropna()
    if diff.empty:
        return math.nan, math.nan
    s = len(diff)
    z = stats.norm.ppf((1 + level) / 2)
    half = z * math.sqrt(float((w0 + w1)[diff.index].mean()) / s)
    if s > 1:
        half = max(half, float(stats.t.ppf((1 + level) / 2, s - 1) * diff.std(ddof=1) / math.sqrt(s)))
    return float(diff.mean()), half


def verdicts(df: pd.DataFrame, level: float = 0.95, min_effect: float = MIN_EFFECT,
             protocols: Sequence[str] = PROTOCOLS) -> pd.DataFrame:
    """Did training over-compress? One verdict per (config, layer, transfer protocol).

    The trigger is the transfer curve itself, never I(X;T). For each protocol present in the
    table (``linear_probe_acc``, ``knn_acc``, ``fewshot_probe_acc`` on the ``target`` task; for a
    configuration without target rows, the same measures on the source's held-out split), the runs of
    one ``config`` (its seeds) are averaged per time and:

    * **peak** = the first maximum of the seed-mean curve before the last checkpoint, at time
      ``peak_time``; **final** = the mean at the last checkpoint common to all seeds;
      **drop** = peak - final, with the interval [drop_low, drop_high] (see below);
    * **source_change** = change of source accuracy (``source_acc``, else the source probe)
      from ``peak_time`` to the last checkpoint, with half-width ``source_noise``;
    * verdict ``"over-compression"`` (with ``onset`` = ``peak_time``) when drop_low > 0, drop >=
      ``min_effect`` and source accuracy rose or held (source_change >= -source_noise, i.e. it
      did not fall by more than its noise); ``"none"`` otherwise (``onset`` NaN); ``"no transfer
      measure"`` for a layer that has none of the protocols (one row, protocol "").

    Uncertainty. Each accuracy carries the binomial sampling variance p (1 - p) / n of the
    samples it was scored on (the table's ``n``); few-shot rows add the variance over draws from
    their own ci_low/ci_high. The interval of the drop is the larger of (a) the sampling error
    of the seed-mean drop times the normal quantile at level ``1 - (1 - level) / (2 m)``
    (Bonferroni over the m candidate peak times: the peak is chosen as the largest point, so
    without it a flat noisy curve would fall from its luckiest checkpoint) and (b) with 2+
    seeds, the Student-t ``level`` interval of the per-seed drops at the common peak time (the
    spread over seeds; seeds that disagree widen it). ``min_effect`` (default 0.02, i.e. two
    points of accuracy; about 4 test images in 180) keeps a statistically clear but negligible
    fall on a huge test set from being called over-compression.

    Evidence (not trigger): ``ixt_change`` = mean change of I(X;T) (nats; KDE preferred, then
    binning, else the first estimator present; ``ixt_method`` names it) and ``rank_change`` =
    change of ``rankme`` (effective rank) of the layer over the same window; NaN when absent.
    ``n_fired``: seeds whose own curve (own peak, sampling interval only) would fire.

    Returns:
        a DataFrame with :data:`VERDICT_COLUMNS`, sorted by config, layer, protocol.
    """
    good = ok_rows(df)
    label = good.attrs.get("time_label", "epoch")
    src_m, src_t = _pick(good, SOURCE_PREFERENCE)
    mi = good[good["measure"] == IXT]
    ixt_method = (sorted(mi["method"].unique(), key=lambda m: (m != "kde", m != "binning", m))[0]
                  if not mi.empty else "")
    layers_all = sorted(set(good.loc[~good["measure"].isin([SOURCE_ACC]), "layer"]))
    rows: List[Dict[str, Any]] = []
    for config in sorted(good["config"].unique()):
        cg = good[good["config"] == config]
        tasks = ["target"] if ((cg["task"] == "target") & cg["measure"].isin(protocols)).any() else ["source"]
        src_rows = cg[(cg["measure"] == src_m) & (cg["task"] == src_t)] if src_m else cg.iloc[:0]
        for layer in layers_all:
            lg = cg[cg["layer"] == layer]
            if lg.empty:
                continue
            present = [p for p in protocols if ((lg["measure"] == p) & lg["task"].isin(tasks)).any()]
            if not present:
                rows.append({"config": config, "layer": layer, "protocol": "", "task": "",
                             "verdict": "no transfer measure", "n_seeds": int(lg["run"].nunique()),
                             "n_fired": 0, "time_label": label, "ixt_method": ixt_method,
                             "sentence": f"no transfer measure at {layer} (run analyze with linear_probe, knn "
                                         f"or fewshot_probe and a target)"})
                continue
            for proto in present:
                pg = lg[(lg["measure"] == proto) & lg["task"].isin(tasks)]
                task = pg["task"].iloc[0]
                vals, var = _run_curves(pg, level)
                complete = vals.notna().all(axis=1)
                vals, var = vals[complete], var[complete]
                base = {"config": config, "layer": layer, "protocol": proto, "task": task,
                        "n_seeds": int(vals.shape[1]), "time_label": label, "ixt_method": ixt_method}
                if len(vals) < 2:
                    rows.append({**base, "verdict": "none", "n_fired": 0,
                                 "sentence": f"none: {task} {proto} has fewer than 2 checkpoints common to "
                                             f"all seeds"})
                    continue
                ft = _fall_test(vals, var, level, min_effect)
                n_fired = sum(_fall_test(vals[[r]], var[[r]], level, min_effect)["fell"] for r in vals.columns)
                sub = src_rows[src_rows["run"].isin(vals.columns)]
                if src_m and src_m != SOURCE_ACC:
                    sub = sub[sub["layer"] == layer]
                sc, sn = _change(sub, ft["peak_time"], ft["final_time"], level)
                ixt = lg[(lg["measure"] == IXT) & (lg["method"] == ixt_method)] if ixt_method else lg.iloc[:0]
                ixt_c = _change(ixt.assign(n=np.nan, ci_low=np.nan, ci_high=np.nan), ft["peak_time"],
                                ft["final_time"], level)[0]
                rk = lg[lg["measure"] == RANKME]
                rk_c = _change(rk.assign(n=np.nan, ci_low=np.nan, ci_high=np.nan), ft["peak_time"],
                               ft["final_time"], level)[0]
                src_ok = np.isfinite(sc) and sc >= -sn
                fired = ft["fell"] and src_ok
                when = f"{label} {ft['peak_time']:g}"
                fall = (f"{task} {proto} fell by {ft['drop']:.3f} [{ft['drop_low']:.3f}, {ft['drop_high']:.3f}] "
                        f"({ft['peak']:.3f} at {when} -> {ft['final']:.3f} at {label} {ft['final_time']:g})")
                if not np.isfinite(sc):
                    src_txt = "source accuracy unknown (no source_acc in the table)"
                elif sc > sn:
                    src_txt = f"source accuracy rose ({sc:+.3f})"
                elif sc >= -sn:
                    src_txt = f"source accuracy held ({sc:+.3f}, within ±{sn:.3f})"
                else:
                    src_txt = f"source accuracy fell too ({sc:+.3f}, beyond ±{sn:.3f})"
                ev = []
                if np.isfinite(ixt_c):
                    ev.append(f"I(X;T) by {ixt_method} {ixt_c:+.2f} nats")
                if np.isfinite(rk_c):
                    ev.append(f"effective rank {rk_c:+.1f}")
                ev_txt = ("; " + ", ".join(ev)) if ev else ""
                seeds_txt = f"; {n_fired}/{vals.shape[1]} seeds alone" if vals.shape[1] > 1 else ""
                if fired:
                    sentence = f"over-compression from {when}: {fall} while {src_txt}{ev_txt}{seeds_txt}"
                elif ft["drop"] <= 0:
                    sentence = f"none: {task} {proto} did not fall (peak {ft['peak']:.3f}, final {ft['final']:.3f})"
                elif not ft["fell"]:
                    why = "within noise" if ft["drop_low"] <= 0 else f"below the minimum effect {min_effect:g}"
                    sentence = f"none: {fall}, {why}{seeds_txt}"
                else:
                    sentence = f"none: {fall} but {src_txt}"
                rows.append({**base, **{k: ft[k] for k in ("peak_time", "final_time", "peak", "final", "drop",
                                                           "drop_low", "drop_high")},
                             "verdict": "over-compression" if fired else "none",
                             "onset": ft["peak_time"] if fired else math.nan,
                             "source_change": sc, "source_noise": sn, "n_fired": int(n_fired),
                             "ixt_change": ixt_c, "rank_change": rk_c, "sentence": sentence})
    out = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    if len(out):
        out = out.sort_values(["config", "layer", "protocol"], kind="stable").reset_index(drop=True)
    out.attrs["time_label"] = label
    return out


def format_verdicts(v: pd.DataFrame) -> str:
    """The verdict table as terminal text: per configuration, one line per layer and protocol."""
    if v.empty:
        return "no verdict: the table has no transfer rows without errors"
    lines = []
    for config, grp in v.groupby("config", sort=True):
        if (grp["verdict"] == "no transfer measure").all():
            lines.append(f"{config}  no transfer measure (no linear_probe, knn or fewshot_probe rows) at "
                         f"{', '.join(grp['layer'])}: no verdict")
            continue
        n = int(grp["n_seeds"].max())
        fired = int((grp["verdict"] == "over-compression").sum())
        lines.append(f"{config}  ({n} seed{'s' if n != 1 else ''}; over-compression in {fired} of {len(grp)} "
                     f"layer x protocol verdicts)")
        for _, r in grp.iterrows():
            lines.append(f"  {r.layer:<10s} {r.sentence}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the single-model over-compression score


# The single-model over-compression score lives in infodyn.overcompression (re-exported here).
from infodyn.overcompression import (OvercompressionScore, effective_rank, overcompression_parts,  # noqa: E402
                                     score_overcompression)
from infodyn.runs.extract import default_layer, layer_features  # noqa: E402  (re-exported)


__all__ = ["COLUMNS", "check_table", "ok_rows", "seed_bands", "trajectories", "transfer_measure", "source_measure",
           "verdicts", "format_verdicts",
           "PROTOCOLS", "MIN_EFFECT", "VERDICT_COLUMNS", "FEWSHOT", "OvercompressionScore",
           "overcompression_parts", "score_overcompression", "layer_features", "default_layer", "effective_rank"]

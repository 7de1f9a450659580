"""infodyn.tradeoff.verdicts: the over-compression verdict from the transfer curve itself.

Synthetic tables with known answers (a fall at a known epoch, flat curves with binomial noise,
a fall together with source accuracy, seeds that disagree), and real known runs
(benchmarks/known_runs.py: a trade-off run and a head-only run, analysed with infodyn.analyze).
"""
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from infodyn import tradeoff as tr

EPOCHS = [0, 2, 5, 10, 20, 40, 80, 160]


def table(curves, source=None, n=1000, measure="knn_acc", task="target", layer="fc2", config="cfg",
          ci=None, epochs=EPOCHS):
    """Rows for each seed's transfer curve (values per epoch) and a source curve (default: rising)."""
    rows = []
    for s, curve in enumerate(curves):
        src = source[s] if source is not None else np.linspace(0.2, 0.99, len(epochs))
        for i, e in enumerate(epochs):
            base = dict(run=f"{config}-seed{s}", config=config, seed=s, checkpoint=f"epoch{e}.pt", order=i, epoch=e,
                        step=np.nan, params="{}", seconds=0.0, error="", ci_low=np.nan, ci_high=np.nan)
            rows.append({**base, "layer": "output", "measure": "source_acc", "task": "source", "value": src[i],
                         "method": "head", "n": 180})
            lo, hi = (curve[i] - ci, curve[i] + ci) if ci is not None else (np.nan, np.nan)
            rows.append({**base, "layer": layer, "measure": measure, "task": task, "value": curve[i],
                         "method": measure, "n": n, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=tr.COLUMNS)


FALL = [0.80, 0.85, 0.90, 0.90, 0.84, 0.78, 0.72, 0.70]  # peak at epoch 5, falls 0.20 by epoch 160


def test_fall_fires_at_the_peak_epoch_with_the_right_drop():
    v = tr.verdicts(table([FALL, FALL, FALL]))
    assert len(v) == 1
    r = v.iloc[0]
    assert r.verdict == "over-compression" and r.onset == 5 and r.peak_time == 5  # first of the tied maxima
    assert r["drop"] == pytest.approx(0.20) and r.peak == pytest.approx(0.90) and r.final == pytest.approx(0.70)
    # identical seeds: the half-width is the sampling term, Bonferroni over the 7 candidate peaks
    se = math.sqrt((0.9 * 0.1 / 1000 + 0.7 * 0.3 / 1000) / 3)
    half = stats.norm.ppf(1 - 0.05 / 14) * se
    assert (r.drop_low, r.drop_high) == pytest.approx((0.20 - half, 0.20 + half))
    assert r.source_change == pytest.approx(0.99 - np.linspace(0.2, 0.99, 8)[2])
    assert r.n_seeds == 3 and r.n_fired == 3
    assert r.sentence.startswith("over-compression from epoch 5: target knn_acc fell by 0.200")
    assert "source accuracy rose" in r.sentence
    assert math.isnan(r.ixt_change) and math.isnan(r.rank_change)  # no evidence rows in this table


def test_flat_curves_within_binomial_noise_do_not_fire():
    rng = np.random.default_rng(0)
    n, fired = 180, 0
    for seeds in [1] * 40 + [3] * 20:  # 8 checkpoints, accuracy 0.8 measured on 180 samples
        curves = [rng.binomial(n, 0.8, size=len(EPOCHS)) / n for _ in range(seeds)]
        fired += tr.verdicts(table(curves, n=n)).iloc[0].verdict == "over-compression"
    assert fired <= 3  # the Bonferroni interval keeps the false-alarm rate at or below 5 % (measured: < 1 %)
    # the same curves judged without the correction (a plain 95 % interval) would fire more often:
    # the peak is the luckiest of 7 points; check one such curve is reported "within noise"
    curve = np.array([0.80, 0.87, 0.79, 0.81, 0.78, 0.82, 0.80, 0.78])
    r = tr.verdicts(table([curve], n=n)).iloc[0]
    plain = stats.norm.ppf(0.975) * math.sqrt(0.87 * 0.13 / n + 0.78 * 0.22 / n)
    assert r["drop"] == pytest.approx(0.09) and r["drop"] > plain  # a naive test would have fired
    assert r.verdict == "none" and "within noise" in r.sentence and r.drop_low < 0


def test_fall_while_source_also_falls_is_not_over_compression():
    src = [np.linspace(0.99, 0.5, len(EPOCHS))] * 3
    r = tr.verdicts(table([FALL] * 3, source=src)).iloc[0]
    assert r.drop_low > 0 and r.verdict == "none" and math.isnan(r.onset)
    assert "source accuracy fell too" in r.sentence
    # source that holds within its noise still allows the verdict
    flat_src = [np.full(len(EPOCHS), 0.95)] * 3
    assert tr.verdicts(table([FALL] * 3, source=flat_src)).iloc[0].verdict == "over-compression"


def test_disagreeing_seeds_widen_the_interval_and_do_not_fire():
    agree = tr.verdicts(table([FALL, FALL, FALL])).iloc[0]
    up = [0.80, 0.82, 0.84, 0.84, 0.86, 0.88, 0.90, 0.92]
    flat = [0.85] * len(EPOCHS)
    r = tr.verdicts(table([FALL, up, flat])).iloc[0]
    assert r.drop_high - r.drop_low > 2 * (agree.drop_high - agree.drop_low)
    d = np.array([FALL[2] - FALL[-1], up[2] - up[-1], flat[2] - flat[-1]])  # at the common peak (epoch 5)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert r.peak_time == 5 and (r.drop_low, r.drop_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r.verdict == "none" and r.n_fired == 1


def test_minimum_effect_and_fewshot_interval():
    small = [0.900, 0.900, 0.900, 0.900, 0.895, 0.890, 0.888, 0.885]  # falls 0.015 on a huge test set
    r = tr.verdicts(table([small], n=10 ** 7)).iloc[0]
    assert r.drop_low > 0 and r.verdict == "none" and "below the minimum effect" in r.sentence
    # few-shot rows: the draws' interval adds to the binomial error; a wide one stops the verdict
    narrow = tr.verdicts(table([FALL], measure="fewshot_probe_acc", ci=0.01)).iloc[0]
    wide = tr.verdicts(table([FALL], measure="fewshot_probe_acc", ci=0.15)).iloc[0]
    assert narrow.verdict == "over-compression" and wide.verdict == "none"
    assert narrow.protocol == tr.FEWSHOT == "fewshot_probe_acc"


def test_protocols_tasks_evidence_and_missing_measures():
    df = table([FALL] * 2)
    extra = []
    for s in range(2):
        for i, e in enumerate(EPOCHS):
            base = dict(run=f"cfg-seed{s}", config="cfg", seed=s, checkpoint=f"epoch{e}.pt", order=i, epoch=e,
                        step=np.nan, params="{}", seconds=0.0, error="", ci_low=np.nan, ci_high=np.nan, n=500)
            extra.append({**base, "layer": "fc2", "measure": "I(X;T)", "task": "source", "value": 1.0 + 0.1 * i,
                          "method": "kde"})
            extra.append({**base, "layer": "fc2", "measure": "I(X;T)", "task": "source", "value": 5.0,
                          "method": "binning"})
            extra.append({**base, "layer": "fc2", "measure": "rankme", "task": "source", "value": 20.0 - i,
                          "method": "rankme"})
            extra.append({**base, "layer": "fc1", "measure": "rankme", "task": "source", "value": 20.0,
                          "method": "rankme"})
            extra.append({**base, "layer": "fc2", "measure": "linear_probe_acc", "task": "source", "value": 0.9,
                          "method": "linear_probe"})
    v = tr.verdicts(pd.concat([df, pd.DataFrame(extra, columns=tr.COLUMNS)], ignore_index=True))
    fc2 = v[v.layer == "fc2"].iloc[0]
    assert fc2.protocol == "knn_acc" and fc2.task == "target"  # target present: source-task probe not judged
    assert fc2.ixt_method == "kde" and fc2.ixt_change == pytest.approx(0.1 * (7 - 2))  # evidence over the window
    assert fc2.rank_change == pytest.approx(-5.0) and "effective rank -5.0" in fc2.sentence
    fc1 = v[v.layer == "fc1"].iloc[0]
    assert fc1.verdict == "no transfer measure" and fc1.protocol == ""
    # without target rows the source task's held-out protocols are judged
    src_only = table([FALL] * 2, task="source")
    r = tr.verdicts(src_only).iloc[0]
    assert r.task == "source" and r.verdict == "over-compression"
    # ... chosen per configuration: one with a target beside one without
    mixed = tr.verdicts(pd.concat([table([FALL] * 2, config="a"), table([FALL] * 2, task="source", config="b")]))
    assert mixed.set_index("config")["task"].to_dict() == {"a": "target", "b": "source"}
    text = tr.format_verdicts(v)
    assert "cfg  (2 seeds; over-compression in 1 of 2" in text and "fc1" in text
    with pytest.raises(ValueError, match="lacks column"):
        tr.verdicts(df.drop(columns=["measure"]))


def test_error_rows_are_ignored():
    df = table([FALL])
    bad = df[df.measure == "knn_acc"].iloc[:1].copy()
    bad["value"], bad["error"], bad["epoch"] = np.nan, "boom", 999
    r = tr.verdicts(pd.concat([df, bad], ignore_index=True)).iloc[0]
    assert r.final_time == 160 and r.verdict == "over-compression"


@pytest.fixture(scope="module")
def known_table(tmp_path_factory):
    """A short trade-off run and a head-only run (30 epochs, 4 checkpoints), k-NN and source accuracy."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from benchmarks.known_runs import make_run
    from infodyn.analysis import analyze

    tmp = tmp_path_factory.mktemp("known")
    runs = [make_run(tmp / "runs", kind, 0, epochs=30, checkpoints=4) for kind in ("tradeoff", "head_only")]
    df = analyze(runs, measures="knn,source_acc", out=tmp / "out", progress=False, threads=1)
    return df


def test_known_runs_fire_on_tradeoff_not_on_head_only(known_table):
    v = tr.verdicts(known_table)
    v = v[v.layer == "fc2"].set_index("config")  # the penultimate layer, where the 16-wide bottleneck collapses
    assert v.loc["tradeoff", "verdict"] == "over-compression"
    assert v.loc["tradeoff", "drop_low"] > 0.05 and v.loc["tradeoff", "source_change"] > 0.5
    assert v.loc["head_only", "verdict"] == "none"
    assert v.loc["head_only", "drop"] == 0.0  # the features never change: transfer is bit-identical

"""infodyn.tradeoff: curves and onset from a synthetic table with known answers; the score."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from infodyn import tradeoff as tr


def synthetic_table(peaks=(3, 4, 5), turn=(4, 5, 6), epochs=12, layers=("fc1", "fc2"), config="ce",
                    source_rises=True):
    """A results table whose answers are known: per seed s, target accuracy peaks at peaks[s],
    I(X;T) peaks at turn[s] and then falls by 30 %, source accuracy rises throughout."""
    rows = []
    for s, (pk, tn) in enumerate(zip(peaks, turn)):
        run = f"{config}-seed{s}"
        for e in range(epochs):
            base = dict(run=run, config=config, seed=s, checkpoint=f"ep{e}.pt", order=e, epoch=e, step=10 * e,
                        ci_low=np.nan, ci_high=np.nan, params="{}", n=100, seconds=0.0, error="")
            src = 0.5 + 0.04 * e if source_rises else 0.9 - 0.04 * e
            rows.append({**base, "layer": "output", "measure": "source_acc", "task": "source", "value": src,
                         "method": "head"})
            for li, layer in enumerate(layers):
                ixt = 2.0 + 0.3 * min(e, tn) - 0.2 * max(0, e - tn) + li * 0.01
                rows.append({**base, "layer": layer, "measure": "I(X;T)", "task": "source", "value": ixt,
                             "method": "binning"})
                rows.append({**base, "layer": layer, "measure": "I(T;Y)", "task": "source",
                             "value": 0.1 + 0.05 * e, "method": "binning"})
                rows.append({**base, "layer": layer, "measure": "I(X;T)", "task": "source", "value": ixt * 0.9,
                             "method": "kde"})
                rows.append({**base, "layer": layer, "measure": "I(T;Y)", "task": "source",
                             "value": 0.08 + 0.05 * e, "method": "kde"})
                rows.append({**base, "layer": layer, "measure": "linear_probe_acc", "task": "target",
                             "value": 0.8 - 0.02 * abs(e - pk), "method": "linear_probe"})
                rows.append({**base, "layer": layer, "measure": "overcompression_score", "task": "source",
                             "value": 0.1 + 0.05 * e, "method": "overcompression"})
    return pd.DataFrame(rows, columns=tr.COLUMNS)


def test_error_rows_are_ignored_and_missing_columns_named():
    df = synthetic_table(peaks=(3,), turn=(4,))
    bad = df.iloc[:1].copy()
    bad["value"], bad["error"], bad["measure"], bad["layer"] = np.nan, "boom", "linear_probe_acc", "fc1"
    bad["task"] = "target"
    clean = tr.verdicts(df)
    out = tr.verdicts(pd.concat([df, bad]))
    pd.testing.assert_frame_equal(out, clean)  # the error row changes nothing
    assert (out.loc[out["layer"] == "fc1", "peak_time"] == 3.0).all()
    with pytest.raises(ValueError, match="lacks column"):
        tr.verdicts(df.drop(columns=["measure"]))


def test_trajectories_and_seed_bands():
    df = synthetic_table()
    traj = tr.trajectories(df)
    assert traj["method"].unique().tolist() == ["binning"]  # binning preferred
    assert len(traj) == 3 * 2 * 12
    r = traj[(traj["run"] == "ce-seed0") & (traj["layer"] == "fc1") & (traj["time"] == 2)].iloc[0]
    assert r["ixt_nats"] == pytest.approx(2.6)
    assert r["ixt_bits"] == pytest.approx(2.6 / math.log(2))
    assert tr.trajectories(df, "kde")["ixt_nats"].max() == pytest.approx(0.9 * traj["ixt_nats"].max())
    with pytest.raises(ValueError, match="no information-plane rows by 'ksg'"):
        tr.trajectories(df, "ksg")
    bands = tr.seed_bands(df)
    b = bands[(bands["measure"] == "linear_probe_acc") & (bands["layer"] == "fc1") & (bands["time"] == 0)].iloc[0]
    vals = np.array([0.8 - 0.02 * 3, 0.8 - 0.02 * 4, 0.8 - 0.02 * 5])
    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / math.sqrt(3)
    assert b["mean"] == pytest.approx(vals.mean())
    assert (b["low"], b["high"]) == pytest.approx((vals.mean() - half, vals.mean() + half))
    assert b["n_seeds"] == 3


def test_time_intervals_are_clipped_to_the_recorded_range():
    from infodyn.tradeoff import _t_interval

    m, lo, hi = _t_interval(np.array([1.0, 2.0, 60.0]), 0.95, (0.0, 60.0))
    assert m == pytest.approx(21.0)
    assert lo == 0.0 and hi == 60.0

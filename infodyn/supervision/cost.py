"""What each signal costs, and the cost-benefit curve: performance against total annotation cost.

Default costs are seconds of annotator time per signal. They are assumptions, not measurements
(the seed paper's crowdsourcing costs could not be obtained); set your own:

=============  ===========  ==============================================================
signal         default (s)  reasoning
=============  ===========  ==============================================================
hard           3.0          one click among the class names (``hard``)
soft (m)       3.0 * m      m annotators' hard labels pooled (``vote`` per vote)
posterior      15.0         one annotator elicits a whole distribution: ~5 hard labels' time
triplet        4.0          look at three items, pick the closer pair
=============  ===========  ==============================================================
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class CostModel:
    """Seconds of annotation per signal (see the module table for the defaults' reasoning)."""

    hard: float = 3.0
    vote: float = 3.0
    posterior: float = 15.0
    triplet: float = 4.0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"cost of {name!r} must be a positive number of seconds, got {value}")

    def per_signal(self, signal: str, votes: Optional[int] = None) -> float:
        """Seconds for one signal of this kind (a ``soft`` label costs ``votes`` votes)."""
        if signal == "hard":
            return self.hard
        if signal == "soft":
            if votes is None or int(votes) < 1:
                raise ValueError(f"the cost of a soft label needs votes >= 1, got {votes}")
            return self.vote * int(votes)
        if signal == "posterior":
            return self.posterior
        if signal == "triplet":
            return self.triplet
        raise ValueError(f"no cost for signal {signal!r}; known: hard, soft, posterior, triplet")

    @classmethod
    def parse(cls, text: str) -> "CostModel":
        """From ``"hard=3,vote=2.5,triplet=4"`` (unnamed signals keep their defaults)."""
        values = {}
        for item in filter(None, (t.strip() for t in text.split(","))):
            if "=" not in item:
                raise ValueError(f"costs expect NAME=SECONDS items, got {item!r} in {text!r}")
            name, value = item.split("=", 1)
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"unknown cost {name!r} in {text!r}; known: {', '.join(cls.__dataclass_fields__)}")
            try:
                values[name] = float(value)
            except ValueError:
                raise ValueError(f"cost {name!r} must be a number of seconds, got {value!r}") from None
        return cls(**values)


def cost_benefit(learning, costs: CostModel = CostModel(), measure: str = "few_shot_acc"):
    """The cost-benefit curve of each signal, with the best signal at each total cost marked.

    Args:
        learning: the table of :func:`infodyn.supervision.learning_curves`.
        costs: a :class:`CostModel`.
        measure: the performance measure (``source_acc``, ``transfer_acc``, ``few_shot_acc``).

    Returns:
        DataFrame with one row per (model, signal, budget): cost_seconds (budget x cost per
        signal), value and value_sd (mean and standard deviation over seeds), n_seeds, and
        ``best``: True where no other signal reaches a higher mean value for a total cost no
        larger than this point's (each signal's value at a cost being the best of its budgets
        that cost no more).
    """
    need = {"signal", "model", "budget", "measure", "value", "seed"}
    missing = need - set(learning.columns)
    if missing:
        raise ValueError(f"learning table lacks columns {sorted(missing)}; it has {list(learning.columns)}")
    sub = learning[(learning["measure"] == measure) & (learning["budget"] > 0)]
    if sub.empty:
        raise ValueError(f"no rows for measure {measure!r} with budget > 0 in the learning table")
    votes = sub.groupby("signal")["votes"].first() if "votes" in sub.columns else {}
    agg = (sub.groupby(["model", "signal", "budget"])["value"]
           .agg(value="mean", value_sd=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, n_seeds="count")
           .reset_index())
    agg["cost_seconds"] = [b * costs.per_signal(s, votes.get(s) if s == "soft" else None)
                           for s, b in zip(agg["signal"], agg["budget"])]
    agg["measure"] = measure
    best = np.zeros(len(agg), dtype=bool)
    for _, grp in agg.groupby("model"):
        for i, row in grp.iterrows():
            others = grp[(grp["signal"] != row["signal"]) & (grp["cost_seconds"] <= row["cost_seconds"])]
            best[agg.index.get_loc(i)] = others.empty or row["value"] >= others["value"].max()
    agg["best"] = best
    return agg[["model", "signal", "budget", "cost_seconds", "measure", "value", "value_sd", "n_seeds", "best"]]


def best_signal(curve, cost_seconds: float, model: Optional[str] = None):
    """The signal with the highest value affordable within ``cost_seconds`` (from :func:`cost_benefit`).

    Returns a dict: signal, budget, value, cost_seconds (of the chosen point), model.
    """
    sub = curve if model is None else curve[curve["model"] == model]
    sub = sub[sub["cost_seconds"] <= cost_seconds]
    if sub.empty:
        cheapest = curve["cost_seconds"].min()
        raise ValueError(f"no signal is affordable within {cost_seconds} s; the cheapest point costs {cheapest} s")
    row = sub.loc[sub["value"].idxmax()]
    return {"signal": row["signal"], "budget": int(row["budget"]), "value": float(row["value"]),
            "cost_seconds": float(row["cost_seconds"]), "model": row["model"]}

"""Informativeness of supervision signals (after Sucholutsky et al., UAI 2023).

How much a hard label, an m-vote soft label, an exact posterior or a triplet comparison can tell
(its capacity), how much it does tell about the latent class structure in a simulated world, how
well a representation learns from each at a given budget, and which one to buy for a given
annotation cost. Assumptions are listed in docs/supervision.md.

    >>> from infodyn.supervision import capacity_bits
    >>> capacity_bits("hard", 10) < capacity_bits("soft", 10, votes=5)
    True

Nothing heavy is imported until used (torch only for learning).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "capacity_bits": "capacity", "capacity_nats": "capacity", "SIGNALS": "capacity",
    "make_task": "simulate", "Task": "simulate", "Sample": "simulate", "hard_labels": "simulate",
    "soft_labels": "simulate", "triplets": "simulate", "vote_probabilities": "simulate",
    "signal_information": "information", "information_table": "information", "plugin_mi": "information",
    "TrainConfig": "learning", "train_encoder": "learning", "evaluate_encoder": "learning",
    "make_eval_sets": "learning", "learning_curves": "learning", "draw_signal": "learning", "embed": "learning",
    "CostModel": "cost", "cost_benefit": "cost", "best_signal": "cost",
    "information_sweep": "effects", "learning_sweep": "effects",
    "run_study": "study", "StudyResult": "study",
    "plot_information": "plots", "plot_learning": "plots", "plot_cost_benefit": "plots", "plot_effects": "plots",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'infodyn.supervision' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)

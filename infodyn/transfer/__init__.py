"""Transferability and representation metrics of frozen features.

- :func:`linear_probe` (multinomial logistic regression, L-BFGS, validated L2 sweep) and
  :func:`knn_accuracy` (DINO's weighted cosine k-NN), :func:`fewshot_probe` (fixed-strength ridge
  classifier on k labelled examples per class, several draws): accuracies in [0, 1].
- :func:`logme`, :func:`hscore`, :func:`leep`, :func:`nce`: closed-form transferability scores.
- :func:`rankme` (effective rank), :func:`nc1` (within-class variability collapse),
  :func:`linear_cka` (similarity of two representations, e.g. drift between checkpoints),
  :func:`head_accuracy` (a checkpoint's own classifier head).

Every function takes numpy arrays or torch tensors and ``device="auto"`` (CUDA when present,
else CPU); each documents its formula, its source and whether higher is better
(``fn.higher_is_better``; :data:`HIGHER_IS_BETTER` collects them by name). This package knows
nothing of runs, analysis or the CLI.
"""
from __future__ import annotations

from .fewshot import DEFAULT_FEWSHOT_L2, FewShotResult, fewshot_probe
from .knn import KNNResult, knn_accuracy
from .probe import DEFAULT_L2_GRID, ProbeResult, linear_probe
from .scores import head_accuracy, hscore, leep, linear_cka, logme, nc1, nce, rankme

HIGHER_IS_BETTER = {
    "linear_probe": True, "knn_accuracy": True, "logme": True, "hscore": True, "leep": True,
    "nce": True, "rankme": True, "fewshot_probe": True, "nc1": False, "linear_cka": True, "head_accuracy": True,
}

__all__ = [
    "linear_probe", "ProbeResult", "DEFAULT_L2_GRID", "knn_accuracy", "KNNResult", "logme",
    "hscore", "leep", "nce", "rankme", "nc1", "linear_cka", "head_accuracy", "HIGHER_IS_BETTER",
    "fewshot_probe", "FewShotResult", "DEFAULT_FEWSHOT_L2",
]

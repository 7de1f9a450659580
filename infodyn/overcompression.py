"""The over-compression score of one layer of one model, chosen by a validity benchmark.

Definition (evidence: ``benchmarks/results/overcompression_validity.md``)::

    score = (C - 1) / max(r_adj, C - 1)            in [0, 1], higher = more over-compressed
    r_adj = r * v ** NC1_WEIGHT                      source only (target=None)
    r_adj = r * v ** NC1_WEIGHT / u ** TARGET_WEIGHT with target=(inputs, labels)

* r: the effective rank of the layer's centred features on the given data (Roy & Vetterli
  2007: exp of the entropy of the normalised singular values; RankMe of the centred features).
* C: the number of source classes; C - 1 is the dimension that C class means span, so
  score = 1 when the features keep no more dimensions than the labels need, 1/2 at twice that,
  -> 0 as they keep many.
* v = NC1 / (1 + NC1) in [0, 1): the source classes' within-class variability relative to their
  between-class spread (NC1 of Papyan et al. 2020, :func:`infodyn.transfer.nc1`); v -> 0 as every
  class collapses to a point, which discounts the rank.
* u = NC1_t / (1 + NC1_t): the same for the *target* classes in the same layer (0 = target
  classes separated, -> 1 = confused); dividing by u ** TARGET_WEIGHT credits a layer that still
  separates the target. ``score.target_aware`` is True and ``score.name`` is
  ``"overcompression_score_target"`` for this form.

How it was chosen: over 48 MLPs of one architecture trained to equal source accuracy with
different losses, dropout, weight decay, widths and training lengths (digits 0-4 -> 5-9), the
effective rank r ranked target transfer (tuned probe, fixed-L2 probe, k-NN, few-shot) better than
every other single measure tried (RankMe of the uncentred features, the class-separation R^2 of
Kornblith et al. 2021, NC1, participation ratios, width-normalised ranks, the KDE label-share,
the earlier mean of three parts); the weights of the family log r + a log v - b log u were then
chosen on a grid by the mean Spearman correlation over the four protocols (a = 0.1 with b = 0
for the source-only score, then b = 1 given a for the target-aware one). The weights add little
to r itself: +0.013 to that mean in sample and +0.000 out of sample (split-half check) for the
source-only score, +0.032 and +0.016 for the target-aware one; r carries nearly all of it.

Properties (tests/test_overcompression.py): invariant to the overall scale of the features and
to rotations of them; unchanged by zero or duplicated columns (same information, wider layer:
comparable across widths; dividing r by the width ranked transfer *worse* in the benchmark,
because wider layers kept more dimensions and transferred better); robust to features of size
1e300 or 1e-300 (rescaled by their largest magnitude first); deterministic.

What it is not: a calibrated probability or a prediction of a transfer accuracy. It ranks
models scored on the same data (similar n: r cannot exceed min(n - 1, d)). Within one long run
it follows the early collapse of the features, not the slow late decline of few-shot and
fixed-probe transfer once source accuracy has saturated (the benchmark's per-run tables; a
larger NC1 weight, a = 0.5, would follow that decline, at the price of ranking models worse:
mean rho 0.67 instead of 0.80). A high source-only score is harmless for a target that needs
only the source labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

__all__ = ["OvercompressionScore", "effective_rank", "class_separation", "confusion", "overcompression_parts",
           "overcompression_from_features", "score_overcompression", "SCORE_NAME", "TARGET_SCORE_NAME",
           "NC1_WEIGHT", "TARGET_WEIGHT"]

#: Names of the two scores (the measure names an analysis table should use).
SCORE_NAME = "overcompression_score"
TARGET_SCORE_NAME = "overcompression_score_target"
#: Exponents of the source and target confusion (chosen by benchmarks/overcompression_validity.py).
NC1_WEIGHT = 0.1
TARGET_WEIGHT = 1.0


@dataclass
class OvercompressionScore:
    """The over-compression score of one layer of one model.

    Attributes:
        score: in [0, 1]; higher = more over-compressed (worse transfer expected):
            ``(C - 1) / max(adjusted_rank, C - 1)`` (see the module docstring).
        parts: the components, each in [0, 1]: ``rank_collapse`` = (C - 1) / max(r, C - 1),
            ``source_confusion`` = v and, with a target, ``target_confusion`` = u.
        layer: the layer measured ("input of <last Linear>" by default).
        n: source samples used; num_classes: source classes (C).
        target_aware: True when a target was given and ``score`` uses it.
        name: ``"overcompression_score"`` or ``"overcompression_score_target"``.
        skipped: components left out, with the reason (none at present).
        extra: numbers behind the score and diagnostics: ``effective_rank`` (r),
            ``adjusted_rank`` (r_adj), ``nc1``, ``class_separation_r2`` (Kornblith et al. 2021,
            not in the score), ``score``, and with a target ``target_nc1``,
            ``target_effective_rank``, ``target_n``, ``target_num_classes`` and
            ``target_knn_acc`` (k-NN accuracy between two seeded halves of the target rows; a
            diagnostic, not in the score).
    """

    score: float
    parts: Dict[str, float]
    layer: str
    n: int
    num_classes: int
    target_aware: bool = False
    name: str = SCORE_NAME
    skipped: Dict[str, str] = field(default_factory=dict)
    extra: Dict[str, float] = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.score)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v:.3f}" for k, v in self.parts.items())
        return (f"OvercompressionScore({self.name}={self.score:.3f} at {self.layer}: {parts}; "
                f"n={self.n}, classes={self.num_classes})")


# ----------------------------------------------------------------------------------------------
# building blocks


def _features(t: Any, name: str) -> np.ndarray:
    """(n, d) float64 features, rescaled by their largest magnitude (so 1e300 or 1e-300 neither
    overflows nor underflows; every measure here is scale-invariant)."""
    from infodyn.estimators import as_samples

    a = as_samples(t, name)
    m = float(np.max(np.abs(a))) if a.size else 0.0
    return a / m if m > 0 else a


def _labels(y: Any, name: str, rows: int, fname: str, fshape) -> np.ndarray:
    from infodyn.estimators import as_labels

    ya = as_labels(y, name)
    if ya.shape[0] != rows:
        raise ValueError(f"{fname} and {name} must have the same number of rows: {fname} {tuple(fshape)}, "
                         f"{name} {ya.shape}")
    return ya


def effective_rank(t: Any, *, device: Any = "cpu") -> float:
    """exp(entropy of the normalised singular values) of the centred (n, d) features
    (Roy & Vetterli 2007; RankMe of the centred features), in [1, min(n - 1, d)]; 0 when every
    row is the same. Invariant to scale, rotation, translation and zero or duplicated columns."""
    from infodyn.transfer import rankme

    a = _features(t, "features")
    centred = a - a.mean(axis=0)
    if not np.any(centred):
        return 0.0
    return rankme(centred, device=device)


def _class_means(a: np.ndarray, ya: np.ndarray) -> np.ndarray:
    means = np.zeros((int(ya.max()) + 1, a.shape[1]))
    np.add.at(means, ya, a)
    return means / np.bincount(ya)[:, None]


def class_separation(t: Any, y: Any) -> float:
    """Kornblith et al. (2021) class separation R^2 = 1 - (mean within-class variance) / (total
    variance) of (n, d) features with labels (n,), in [0, 1]; 1 when every class is a point
    (also for constant features: nothing varies within a class)."""
    a = _features(t, "features")
    ya = _labels(y, "labels", a.shape[0], "features", a.shape)
    total = float(((a - a.mean(axis=0)) ** 2).sum())
    if total <= 0:
        return 1.0
    within = float(((a - _class_means(a, ya)[ya]) ** 2).sum())
    return float(np.clip(1.0 - within / total, 0.0, 1.0))


def confusion(t: Any, y: Any, *, device: Any = "cpu") -> Tuple[float, float]:
    """(NC1 / (1 + NC1), NC1) of features (n, d) with labels (n,); the first is in [0, 1].

    NC1 = tr(S_W S_B^+) / C (:func:`infodyn.transfer.nc1`): 0 when each class is a point, large
    when the classes overlap; NC1 = inf (confusion 1) when all class means coincide."""
    from infodyn.transfer import nc1

    a = _features(t, "features")
    ya = _labels(y, "labels", a.shape[0], "features", a.shape)
    _, ya = np.unique(ya, return_inverse=True)
    ya = ya.reshape(-1)
    means = _class_means(a, ya)
    if not np.any(means - means.mean(axis=0)):
        return 1.0, math.inf
    v = float(nc1(a, ya, device=device))
    return float(v / (1.0 + v)), v


def _subsample(a: np.ndarray, y: np.ndarray, max_samples: int, seed: int):
    if a.shape[0] <= max_samples:
        return a, y
    idx = np.sort(np.random.default_rng(seed).choice(a.shape[0], max_samples, replace=False))
    return a[idx], y[idx]


def _checked(t: Any, y: Any, what: str, max_samples: int, seed: int):
    if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 2:
        raise ValueError(f"max_samples must be an integer >= 2, got {max_samples!r}")
    a = _features(t, f"{what} features")
    ya = _labels(y, f"{what} labels", a.shape[0], f"{what} features", a.shape)
    a, ya = _subsample(a, ya, int(max_samples), seed)
    _, ya = np.unique(ya, return_inverse=True)
    ya = ya.reshape(-1)
    classes = int(ya.max()) + 1
    if classes < 2:
        raise ValueError(f"{what} labels of shape {ya.shape} hold a single class; the score needs at least two")
    if a.shape[0] < 2 * classes:
        raise ValueError(f"too few {what} samples for the score: features {a.shape} with {classes} classes "
                         f"(need at least 2 per class on average)")
    return a, ya, classes


def _half_knn(a: np.ndarray, ya: np.ndarray, seed: int, device: Any) -> float:
    """Diagnostic (not in the score): k-NN accuracy (cosine, k = min(20, half)) of one seeded half
    of the target rows predicting the other half."""
    from infodyn.transfer import knn_accuracy

    idx = np.random.default_rng(seed).permutation(a.shape[0])
    half = a.shape[0] // 2
    tr, te = idx[:half], idx[half:]
    return float(knn_accuracy(a[tr], ya[tr], a[te], ya[te], k=min(20, half), device=device).accuracy)


# ----------------------------------------------------------------------------------------------
# the score


def overcompression_parts(t: Any, y: Any, *, target: Optional[Tuple[Any, Any]] = None, max_samples: int = 2000,
                          seed: int = 0, device: Any = "cpu"
                          ) -> Tuple[Dict[str, float], Dict[str, str], Dict[str, float]]:
    """The components of the score from features ``t`` (n, d) and labels ``y`` (n,).

    Args:
        t, y: the layer's features of the source data and the source labels.
        target: optional (target features (m, d'), target labels (m,)) of the same layer.
        max_samples: seeded subsample size for each of source and target.
        seed: the subsample's seed. device: where the SVD and NC1 run ("cpu", "cuda", "auto").

    Returns:
        (parts, skipped, extra): see :class:`OvercompressionScore`; ``extra["score"]`` is the
        score (the parts alone do not give it: it needs the unclipped rank).
    """
    a, ya, classes = _checked(t, y, "source", max_samples, seed)
    floor = float(max(classes - 1, 1))
    r = effective_rank(a, device=device)
    v, nc = confusion(a, ya, device=device)
    parts = {"rank_collapse": floor / max(r, floor), "source_confusion": v}
    extra: Dict[str, float] = {"n": float(a.shape[0]), "num_classes": float(classes), "effective_rank": r,
                               "nc1": nc, "class_separation_r2": class_separation(a, ya)}
    adj = r * v ** NC1_WEIGHT
    if target is not None:
        if not (isinstance(target, (tuple, list)) and len(target) == 2):
            raise ValueError(f"target must be a (features, labels) pair, got {type(target).__name__}")
        ta, tya, tclasses = _checked(target[0], target[1], "target", max_samples, seed)
        u, nct = confusion(ta, tya, device=device)
        parts["target_confusion"] = u
        extra.update({"target_nc1": nct, "target_effective_rank": effective_rank(ta, device=device),
                      "target_n": float(ta.shape[0]), "target_num_classes": float(tclasses),
                      "target_knn_acc": _half_knn(ta, tya, seed, device)})
        adj = adj / u ** TARGET_WEIGHT if u > 0 else (math.inf if adj > 0 else 0.0)
    extra["adjusted_rank"] = adj
    extra["score"] = floor / max(adj, floor)
    return parts, {}, extra


def overcompression_from_features(t: Any, y: Any, *, target: Optional[Tuple[Any, Any]] = None,
                                  max_samples: int = 2000, seed: int = 0, device: Any = "cpu",
                                  layer: str = "features") -> OvercompressionScore:
    """The over-compression score from features already extracted (the analysis engine's entry).

    Args:
        t: (n, d) features of the source data at one layer; y: (n,) source labels.
        target: optional (features (m, d'), labels (m,)) of a target task at the same layer;
            then the score is the target-aware one (``target_aware=True``).
        max_samples, seed, device: see :func:`overcompression_parts`.
        layer: a name recorded in the result.
    """
    parts, skipped, extra = overcompression_parts(t, y, target=target, max_samples=max_samples, seed=seed,
                                                  device=device)
    aware = "target_confusion" in parts
    return OvercompressionScore(float(extra["score"]), parts, layer, int(extra["n"]), int(extra["num_classes"]),
                                target_aware=aware, name=TARGET_SCORE_NAME if aware else SCORE_NAME,
                                skipped=skipped, extra=extra)


def _resolve_data(data: Any, name: str, seed: int) -> Tuple[Any, Any]:
    """(inputs, labels) from a pair or a data-set name (its test split)."""
    if isinstance(data, str) or hasattr(data, "__fspath__"):
        from infodyn.data import load

        ds = load(str(data), seed=seed)
        return ds.x_test, ds.y_test
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise ValueError(f"{name} must be an (inputs, labels) pair of arrays/tensors or a data-set name, "
                     f"got {type(data).__name__}")


def _numpy(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)


def score_overcompression(model, data: Any, layer: Optional[str] = None, target: Any = None, *,
                          max_samples: int = 2000, seed: int = 0, device: Any = "auto") -> OvercompressionScore:
    """How far one model's layer has collapsed onto its training labels, in [0, 1] (higher = more
    over-compressed, worse transfer expected).

    Source-only (``target=None``): ``(C - 1) / max(r v^0.1, C - 1)``, r the effective rank of the
    layer's centred features on ``data`` and v = NC1 / (1 + NC1) of the source classes. With
    ``target``: ``(C - 1) / max(r v^0.1 / u, C - 1)``, u the same confusion of the target classes
    (``result.target_aware``, ``result.name == "overcompression_score_target"``). See the module
    docstring for the evidence and meaning.

    Args:
        model: a torch.nn.Module with a head.
        data: (inputs, labels) arrays/tensors (inputs as the model takes them, labels (n,)), or a
            data-set name for :func:`infodyn.data.load` (its test split is used).
        layer: a module name (its output is scored); default: the input of the last nn.Linear.
        target: optional (inputs, labels) or name of the task to transfer to.
        max_samples: seeded subsample size of each of source and target.
        seed: subsample seed (and the split seed of a named data set).
        device: "auto" (CUDA when present), "cpu", "cuda".

    Compare scores of models on the same data (similar n): r cannot exceed min(n - 1, d).
    """
    from infodyn.runs.extract import layer_features

    x, y = _resolve_data(data, "data", seed)
    t, desc = layer_features(model, x, layer, device=device)
    tgt = None
    if target is not None:
        xt, yt = _resolve_data(target, "target", seed)
        tt, _ = layer_features(model, xt, layer, device=device)
        tgt = (tt, _numpy(yt))
    return overcompression_from_features(t, _numpy(y), target=tgt, max_samples=max_samples, seed=seed,
                                         device=device, layer=desc)

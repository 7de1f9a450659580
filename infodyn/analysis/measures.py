"""The measure registry: every measure ``infodyn.analyze`` can compute, found by name.

A :class:`Measure` says what it needs and what rows it returns; :mod:`.execute` runs it without
knowing its name. Two scopes:

* ``"layer"``: computed from one layer's features (and labels) of one checkpoint; the engine
  hands it a :class:`LayerInputs` (features of the source, and of the target when it needs one,
  extracted once per checkpoint for every layer).
* ``"checkpoint"``: computed from the model itself (its head accuracy, the loss landscape): one
  set of rows per checkpoint under a fixed layer name (``output``, ``model``).

Each measure's ``compute`` returns a list of :class:`Result`. Parameters a user sets
(``--param NAME.KEY=VALUE``) are checked against ``defaults`` before anything runs.

Transfer protocols (``linear_probe``, ``knn``, ``fewshot_probe``) are scored on test sets as large
as the data allow: the data set's own test split when it holds at least
:data:`MIN_TEST` samples or the user gave the split, else stratified :data:`FOLDS`-fold
cross-fitting over every sample (each sample is tested exactly once, by a probe that never saw
it); ``n`` in the table is the number of samples tested.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import numpy as np

from infodyn._stats import t_interval
from infodyn.overcompression import TARGET_SCORE_NAME as TARGET_SCORE
from infodyn.tradeoff import FEWSHOT, IXT, ITY, KNN, NC1, PROBE, RANKME, SCORE, SOURCE_ACC

OUTPUT_LAYER = "output"
LANDSCAPE_LAYER = "model"  # the layer name of the per-checkpoint loss-landscape rows
MIN_TEST = 1000  # a test split this large is used as it is; smaller ones are cross-fitted
FOLDS = 5


@dataclass
class Result:
    """One row's worth of a measure: (measure, task) value with its provenance. ``layer``
    overrides the job's layer (per-module rows); ``seconds`` and ``error`` are set by measures
    that time, or fail, row by row."""

    measure: str
    task: str
    value: float
    ci: Optional[Tuple[float, float]] = None
    method: str = ""
    params: Dict[str, Any] = field(default_factory=dict)
    n: int = 0
    layer: Optional[str] = None
    seconds: Optional[float] = None
    error: str = ""


@dataclass
class DataInputs:
    """One data set's features at one layer.

    Attributes:
        features: (n_rows, d) float32 features of the extracted rows (a memory map for large sets).
        rows: (n_rows,) sorted positions of those rows in the data set's full order.
        labels: (n_all,) int labels of the full set.
        folds: [(train_positions, test_positions), ...] of the transfer protocol (module doc).
        user_split: the folds are the user's own train/test split.
    """

    features: Any
    rows: np.ndarray
    labels: np.ndarray
    folds: List[Tuple[np.ndarray, np.ndarray]]
    user_split: bool = False

    def at(self, positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(features float64 (k, d), labels (k,)) of the given full-order positions."""
        where = np.searchsorted(self.rows, positions)
        if not (where < len(self.rows)).all() or not (self.rows[np.minimum(where, len(self.rows) - 1)] == positions).all():
            raise AssertionError("positions outside the extracted rows")  # a planning bug, never user input
        return np.asarray(self.features[where], dtype=np.float64), self.labels[positions]


@dataclass
class LayerInputs:
    """What a layer measure sees: the layer, the source (and target) features, the plane sample."""

    layer: str
    source: DataInputs
    target: Optional[DataInputs]
    plane_positions: np.ndarray  # seeded subsample of the source (max_samples) for plane, RankMe, NC1, score
    seed: int
    device: str
    params: Dict[str, Any]
    inputs: Optional[Callable[[np.ndarray], np.ndarray]] = None  # source inputs at positions (neural bounds)

    def plane(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.source.at(self.plane_positions)


@dataclass(frozen=True)
class Measure:
    """A registered measure.

    Attributes:
        name: the name users pass in ``measures=``.
        scope: ``"layer"`` or ``"checkpoint"`` (module doc).
        rows: ``rows(has_target) -> [(measure, task), ...]``: the rows it returns (error rows too).
        compute: ``compute(inputs) -> [Result, ...]`` (LayerInputs for layer measures; the
            engine's checkpoint context for checkpoint measures).
        defaults: the parameters it accepts, with their defaults (None: checked by the
            estimator itself, e.g. the information-plane methods).
        needs: what the engine must prepare, and what the cache key must hold: ``"target"``
            (target features), ``"splits"`` (every source row, for the transfer folds),
            ``"plane"`` (the source subsample of ``max_samples`` rows), ``"history"`` (the run's
            first and previous checkpoints, and the landscape options).
        higher_is_better: per row measure name, for plots and the report.
        version: bump when the computation changes, so cached rows are recomputed.
    """

    name: str
    scope: str
    rows: Callable[[bool], List[Tuple[str, str]]]
    compute: Callable[[Any], List[Result]]
    defaults: Optional[Dict[str, Any]] = None
    needs: FrozenSet[str] = frozenset()
    higher_is_better: Dict[str, Optional[bool]] = field(default_factory=dict)
    version: int = 1
    description: str = ""


REGISTRY: Dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    """Adds ``measure`` to the registry (a name registered twice is an error)."""
    if measure.name in REGISTRY:
        raise ValueError(f"measure {measure.name!r} is already registered")
    REGISTRY[measure.name] = measure
    return measure


def get(name: str) -> Measure:
    """The measure called ``name`` (information-plane methods are registered on first use)."""
    if name not in REGISTRY:
        from infodyn.estimators import planes_available

        if name in planes_available():
            register(_plane_measure(name))
        else:
            _landscape()
    if name not in REGISTRY:
        raise KeyError(name)
    return REGISTRY[name]


def available() -> List[str]:
    """Every measure name: information-plane methods, layer measures, checkpoint measures."""
    from infodyn.estimators import planes_available

    _landscape()
    return sorted(set(planes_available()) | set(REGISTRY))


#: The analysis's own defaults for information-plane estimators (the estimators' defaults are the
#: classic absolute settings, kept for replications: ``--param kde.scale=absolute``). KDE's noise is
#: 3 % of each layer's total feature variance at each checkpoint, so growing ReLU features cannot
#: raise I(X;T): chosen in benchmarks/results/plane_validity.md as the scale-invariant setting that
#: moves and tracks target k-NN transfer best there (Spearman +0.44, partial given the epoch +0.31).
PLANE_DEFAULTS: Dict[str, Dict[str, Any]] = {"kde": {"scale": "relative_total", "noise_var": 0.03}}

DEFAULT_MEASURES = ("binning", "kde", "linear_probe", "knn", "fewshot_probe", "rankme", "source_acc",
                    "overcompression")


def parse_measures(measures) -> List[str]:
    """Checks measure names; a comma-separated string is accepted. Unknown names -> ValueError."""
    if measures is None:
        return list(DEFAULT_MEASURES)
    if isinstance(measures, str):
        measures = [m.strip() for m in measures.split(",") if m.strip()]
    names = available()
    out: List[str] = []
    for m in measures:
        if m not in names:
            close = difflib.get_close_matches(str(m), names, n=3)
            raise ValueError(f"unknown measure {m!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
                             + f"; choose from {', '.join(names)}")
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError("no measures given")
    return out


def check_params(params: Dict[str, Dict[str, Any]], measures: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Parameters per measure, checked: a measure that is not measured, or a name the measure does
    not take, is a ValueError naming it (information-plane estimators check their own names)."""
    from infodyn.estimators import check_params as check_estimator_params
    from infodyn.estimators import planes_available

    out: Dict[str, Dict[str, Any]] = {}
    for name, kv in (params or {}).items():
        if name not in measures:
            raise ValueError(f"parameters given for {name!r} ({', '.join(map(str, kv))}), but {name!r} is not "
                             f"among the measures {', '.join(measures)}")
        if not isinstance(kv, dict):
            raise ValueError(f"parameters for {name!r} must be a mapping of names to values, got {kv!r}")
        defaults = get(name).defaults
        if defaults is not None:
            for key in kv:
                if key not in defaults:
                    close = difflib.get_close_matches(str(key), list(defaults), n=3)
                    raise ValueError(f"measure {name!r} has no parameter {key!r}"
                                     + (f" (did you mean {', '.join(close)}?)" if close else "")
                                     + f"; it takes {', '.join(defaults) or 'none'}")
        elif name in planes_available():
            check_estimator_params(name, dict(kv), plane=True)
        out[name] = dict(kv)
    return out


def settings(name: str, params: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The measure's effective parameters: its defaults updated by the user's."""
    m = get(name)
    return {**PLANE_DEFAULTS.get(name, {}), **(m.defaults or {}), **params.get(name, {})}


# ----------------------------------------------------------------------------------------------
# layer measures


def _plane_measure(method: str) -> Measure:
    def compute(inp: LayerInputs) -> List[Result]:
        from infodyn.estimators import information_plane
        from infodyn.estimators.neural import METHODS as NEURAL

        t, y = inp.plane()
        # neural bounds estimate I(X;T) from samples of X: the flattened inputs
        x = inp.inputs(inp.plane_positions).reshape(len(t), -1) if method in NEURAL and inp.inputs else None
        ip = information_plane(t, y, method=method, x=x, **inp.params)
        return [Result(IXT, "source", ip.i_xt.nats, ip.i_xt.ci, method, ip.i_xt.params, ip.i_xt.n),
                Result(ITY, "source", ip.i_ty.nats, ip.i_ty.ci, method, ip.i_ty.params, ip.i_ty.n)]

    return Measure(method, "layer", lambda has_target: [(IXT, "source"), (ITY, "source")], compute,
                   defaults=None, needs=frozenset({"plane"}), higher_is_better={IXT: None, ITY: True},
                   description=f"information plane by {method}: I(X;T) and I(T;Y) in nats")


def _tasks(inp: LayerInputs):
    yield "source", inp.source
    if inp.target is not None:
        yield "target", inp.target


def _cross_fitted(data: DataInputs, fit_score: Callable) -> Tuple[float, int, List[Dict[str, Any]]]:
    """Accuracy over every fold's test samples: (accuracy, samples tested, per-fold details)."""
    correct, tested, details = 0.0, 0, []
    for train, test in data.folds:
        xa, ya = data.at(train)
        xb, yb = data.at(test)
        acc, detail = fit_score(xa, ya, xb, yb)
        correct += acc * len(test)
        tested += len(test)
        details.append(detail)
    return correct / tested, tested, details


def _protocol_params(data: DataInputs) -> Dict[str, Any]:
    return {"split": "user" if data.user_split else ("test" if len(data.folds) == 1 else f"{len(data.folds)}-fold")}


def _linear_probe(inp: LayerInputs) -> List[Result]:
    from infodyn.transfer import linear_probe

    out = []
    for task, data in _tasks(inp):
        def fit(a, b, c, d):
            res = linear_probe(a, b, c, d, device=inp.device, seed=inp.seed, **inp.params)
            return res.accuracy, {"l2": res.l2, "train_accuracy": res.train_accuracy}

        acc, n, details = _cross_fitted(data, fit)
        out.append(Result(PROBE, task, acc, None, "linear_probe",
                          {**_protocol_params(data), "l2": [d["l2"] for d in details],
                           "train_accuracy": float(np.mean([d["train_accuracy"] for d in details]))}, n))
    return out


def _knn(inp: LayerInputs) -> List[Result]:
    from infodyn.transfer import knn_accuracy

    out = []
    for task, data in _tasks(inp):
        def fit(a, b, c, d):
            res = knn_accuracy(a, b, c, d, device=inp.device, **inp.params)
            return res.accuracy, {"k": res.k, "temperature": res.temperature}

        acc, n, details = _cross_fitted(data, fit)
        out.append(Result(KNN, task, acc, None, "knn", {**_protocol_params(data), **details[0]}, n))
    return out


def _fewshot(inp: LayerInputs) -> List[Result]:
    from infodyn.transfer.fewshot import fewshot_probe

    out = []
    for task, data in _tasks(inp):
        per_draw, tested = [], 0
        for train, test in data.folds:
            xa, ya = data.at(train)
            xb, yb = data.at(test)
            kw = {k: v for k, v in inp.params.items() if v is not None}  # l2=None: the function's default
            res = fewshot_probe(xa, ya, xb, yb, device=inp.device, seed=inp.seed, **kw)
            per_draw.append(np.asarray(res.per_draw, dtype=float) * len(test))
            tested += len(test)
        # draw j of every fold together scores each tested sample once
        draws = np.sum(per_draw, axis=0) / tested
        mean, low, high = t_interval(draws, 0.95, (0.0, 1.0))
        out.append(Result(FEWSHOT, task, mean, (low, high), "fewshot_probe",
                          {**_protocol_params(data), "shots": res.shots, "draws": len(draws), "l2": res.l2,
                           "ci": "t over draws"},
                          tested))
    return out


def _transfer_rows(name: str):
    return lambda has_target: [(name, "source")] + ([(name, "target")] if has_target else [])


def _rankme(inp: LayerInputs) -> List[Result]:
    from infodyn.transfer import rankme

    t, _ = inp.plane()
    return [Result(RANKME, "source", rankme(t, device=inp.device), None, "rankme", {}, len(t))]


def _nc1(inp: LayerInputs) -> List[Result]:
    from infodyn.transfer import nc1

    t, y = inp.plane()
    return [Result(NC1, "source", nc1(t, y, device=inp.device), None, "nc1", {}, len(t))]


def _overcompression(inp: LayerInputs) -> List[Result]:
    from infodyn.overcompression import overcompression_from_features

    t, y = inp.plane()
    kw = {"max_samples": inp.params["max_samples"], "seed": inp.seed, "device": inp.device}
    res = overcompression_from_features(t, y, **kw)
    out = [Result(SCORE, "source", res.score, None, "overcompression", {**res.parts, **res.extra}, res.n)]
    if inp.target is not None:  # the target-aware score, from the target's training rows
        tt, yt = inp.target.at(inp.target.folds[0][0])
        aware = overcompression_from_features(t, y, target=(tt, yt), **kw)
        out.append(Result(TARGET_SCORE, "target", aware.score, None, "overcompression",
                          {**aware.parts, **aware.extra}, aware.n))
    return out


register(Measure("linear_probe", "layer", _transfer_rows(PROBE), _linear_probe,
                 defaults={"l2_grid": None, "val_fraction": 0.2, "max_iter": 500, "tol": 1e-4}, needs=frozenset({"splits", "target"}), higher_is_better={PROBE: True},
                 description="linear probe, L2 strength tuned on a validation split (Kornblith et al. 2019)"))
register(Measure("knn", "layer", _transfer_rows(KNN), _knn, defaults={"k": 20, "temperature": 0.07, "weighted": True},
                 needs=frozenset({"splits", "target"}), higher_is_better={KNN: True},
                 description="weighted k-NN on cosine similarity (Wu et al. 2018)"))
register(Measure("fewshot_probe", "layer", _transfer_rows(FEWSHOT), _fewshot,
                 defaults={"shots": 5, "draws": 20, "l2": None},
                 needs=frozenset({"splits", "target"}), higher_is_better={FEWSHOT: True},
                 description="fixed-strength probe on k labelled examples per class, mean over draws"))
register(Measure("rankme", "layer", lambda has_target: [(RANKME, "source")], _rankme, defaults={},
                 needs=frozenset({"plane"}), higher_is_better={RANKME: True},
                 description="effective rank of the features (Garrido et al. 2023)"))
register(Measure("nc1", "layer", lambda has_target: [(NC1, "source")], _nc1, defaults={},
                 needs=frozenset({"plane"}), higher_is_better={NC1: None},
                 description="within-class variability relative to between-class (Papyan et al. 2020)"))
register(Measure("overcompression", "layer",
                 lambda has_target: [(SCORE, "source")] + ([(TARGET_SCORE, "target")] if has_target else []),
                 _overcompression, defaults={"max_samples": 2000}, needs=frozenset({"plane", "target"}),
                 higher_is_better={SCORE: False, TARGET_SCORE: False}, version=2,
                 description="the over-compression score (infodyn.overcompression), and its target-aware "
                             "version when the run has a target"))


# ----------------------------------------------------------------------------------------------
# checkpoint measures (computed by the engine's checkpoint context)


def _source_acc(ctx) -> List[Result]:
    return ctx.head_accuracy()


def _landscape_measure(name: str):
    return lambda ctx: ctx.landscape(name)


register(Measure("source_acc", "checkpoint", lambda has_target: [(SOURCE_ACC, "source")], _source_acc, defaults={},
                 higher_is_better={SOURCE_ACC: True}, description="the model's own head accuracy on the source test split"))


def _landscape() -> None:
    """Registers the loss-landscape measures (once)."""
    from infodyn.landscape.measures import MEASURES, measure_names

    for name in MEASURES:
        if name not in REGISTRY:
            REGISTRY[name] = Measure(name, "checkpoint",
                                     (lambda n: lambda has_target: [(r, "source") for r in measure_names(n)])(name),
                                     _landscape_measure(name), defaults=None, needs=frozenset({"history"}),
                                     description="loss-landscape measure (infodyn.landscape.measures)")


def layer_of(measure: Measure) -> Optional[str]:
    """The fixed layer name of a checkpoint measure's rows (None for layer measures)."""
    if measure.scope == "layer":
        return None
    return OUTPUT_LAYER if measure.name == "source_acc" else LANDSCAPE_LAYER


__all__ = ["Measure", "Result", "DataInputs", "LayerInputs", "REGISTRY", "register", "get", "available",
           "parse_measures", "check_params", "settings", "DEFAULT_MEASURES", "FEWSHOT", "OUTPUT_LAYER",
           "LANDSCAPE_LAYER", "layer_of"]

"""``infodyn.analyze``: checkpoints x layers x measures -> one tidy table.

The work is split into units, one per (run, checkpoint, layer) plus one per checkpoint for the
model's own head accuracy. Each unit loads its checkpoint, extracts the layer's features on the
run's source (and target) data, computes every requested measure and returns tidy rows. Units
run in parallel with joblib; each finished unit is written atomically to
``OUT/units/<run>/<checkpoint>-<hash>/<layer>.<measures>.json``, so a rerun, or a run that was
interrupted, computes only what is missing. Units that failed are not cached (a rerun retries
them).

The table (see :data:`infodyn.tradeoff.COLUMNS`):

* ``run`` (the manifest's ``name``, default the folder name), ``config`` (the run name without
  its seed part, or the manifest's ``config``), ``seed`` (the manifest's ``seed``, else ``seed<N>`` in the run
  name, e.g. ``tanh-seed3``), ``checkpoint`` (file name),
  ``order`` (position in the run), ``epoch``, ``step``.
* ``layer``, ``measure``, ``task``: measures on the source data have task ``source``; the linear
  probe and k-NN run on both tasks when the manifest names a target (``task`` = ``target``),
  each fitted on that task's train split and scored on its test split.
* ``value`` (MI in nats, accuracies as fractions), ``ci_low``/``ci_high`` (when the method gives
  an interval), ``method``, ``params`` (JSON), ``n`` (samples), ``seconds``, ``error`` (empty when
  the value is good; otherwise the reason and ``value`` is NaN).

Measures (``measures=``): any information-plane method (``binning``, ``kde``, ...; rows
``I(X;T)``/``I(T;Y)`` over the source set's samples, all splits), ``linear_probe``
(``linear_probe_acc``), ``knn`` (``knn_acc``), ``rankme``, ``nc1``, ``source_acc`` (the
checkpoint's head accuracy on the source test split; layer ``output``), ``overcompression``
(``overcompression_score``, see :func:`infodyn.tradeoff.score_overcompression`), and the
loss-landscape measures of :mod:`infodyn.landscape.measures` (``sharpness``, ``hessian_trace``,
``grad_norm``, ``grad_pc``, ``weight_distance``, ``loss_barrier``): one unit per checkpoint,
layer ``model`` (``weight_distance`` also gives one row per module), on the source train split;
distances are from the run's first and previous checkpoints.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from .tradeoff import COLUMNS, IXT, ITY, KNN, NC1, PROBE, RANKME, SCORE, SOURCE_ACC, failed_rows

DEFAULT_MEASURES = ("binning", "kde", "linear_probe", "knn", "rankme", "source_acc", "overcompression")
OTHER_MEASURES = {"linear_probe", "knn", "rankme", "nc1", "source_acc", "overcompression"}
OUTPUT_LAYER = "output"
LANDSCAPE_LAYER = "model"  # the unit (one per checkpoint) that computes the loss-landscape measures
_SEED = re.compile(r"(?:^|[-_.])seed[-_]?(\d+)(?=$|[-_.])", re.IGNORECASE)


def parse_measures(measures: Union[None, str, Sequence[str]]) -> List[str]:
    """Checks measure names; a comma-separated string is accepted. Unknown names -> ValueError."""
    if measures is None:
        return list(DEFAULT_MEASURES)
    if isinstance(measures, str):
        measures = [m.strip() for m in measures.split(",") if m.strip()]
    from infodyn.estimators import planes_available

    planes = set(planes_available())
    out = []
    for m in measures:
        if m not in planes and m not in OTHER_MEASURES and m not in _landscape_measures():
            raise ValueError(f"unknown measure {m!r}; choose from information-plane methods "
                             f"{sorted(planes)}, {sorted(OTHER_MEASURES)} and landscape measures "
                             f"{list(_landscape_measures())}")
        if m not in out:
            out.append(m)
    if not out:
        raise ValueError("no measures given")
    return out


def _landscape_measures() -> Tuple[str, ...]:
    """Loss-landscape measure names (:data:`infodyn.landscape.measures.MEASURES`)."""
    from infodyn.landscape.measures import MEASURES

    return tuple(MEASURES)


# ----------------------------------------------------------------------------------------------
# runs


@dataclass
class Run:
    """One run folder with its manifest, checkpoints and naming."""

    path: Path
    name: str
    config: str
    seed: Optional[int]
    manifest: Any
    manifest_text: str
    checkpoints: List[Any]
    layers: List[str] = field(default_factory=list)


def _is_run(p: Path) -> bool:
    from infodyn.runs import MANIFEST_NAME

    return (p / MANIFEST_NAME).is_file()


def expand_run_dirs(run_dirs: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]) -> List[Path]:
    """Run folders: each given folder that holds ``infodyn.yaml``, else its sub-folders that do."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    out: List[Path] = []
    for d in run_dirs:
        p = Path(d)
        if not p.is_dir():
            raise FileNotFoundError(f"no such run folder: {p}")
        if _is_run(p):
            out.append(p)
            continue
        subs = sorted(s for s in p.iterdir() if s.is_dir() and _is_run(s))
        if not subs:
            raise ValueError(f"{p} holds no infodyn.yaml (nor do its sub-folders); write one with `infodyn init {p}`")
        out.extend(subs)
    return out


def seed_and_config(name: str) -> Tuple[Optional[int], str]:
    """(seed, configuration) from a run name: ``"tanh-seed3"`` -> (3, ``"tanh"``); no seed part ->
    (None, name). Runs that share a configuration are aggregated across seeds."""
    m = _SEED.search(name)
    if not m:
        return None, name
    return int(m.group(1)), (_SEED.sub("", name).strip("-_.") or name)


def open_runs(run_dirs) -> List[Run]:
    """Reads each run's manifest and discovers its checkpoints (errors name the folder)."""
    from infodyn.runs import discover, load_manifest

    paths = expand_run_dirs(run_dirs)
    manifests = [load_manifest(p) for p in paths]
    names = [m.name or p.name for m, p in zip(manifests, paths)]
    runs = []
    for p, manifest, name in zip(paths, manifests, names):
        if names.count(name) > 1:
            name = str(p)
        text = manifest.path.read_text()
        seed, config = seed_and_config(name)
        if manifest.seed is not None:
            seed = manifest.seed
        if manifest.config is not None:
            config = manifest.config
        ckpts = discover(p, manifest.checkpoints)
        if not ckpts:
            raise ValueError(f"{p}: no checkpoint files found")
        runs.append(Run(p, name, config, seed, manifest, text, list(ckpts)))
    return runs


# ----------------------------------------------------------------------------------------------
# units


@dataclass
class Unit:
    """One piece of work: a (checkpoint, layer) of a run, with every measure it must compute."""

    run: str
    config: str
    seed: Optional[int]
    run_dir: str
    checkpoint: str
    order: int
    epoch: Optional[float]
    step: Optional[float]
    layer: str
    measures: List[str]
    cache_file: Optional[str]
    options: Dict[str, Any]

    def base_row(self) -> Dict[str, Any]:
        return {"run": self.run, "config": self.config, "seed": self.seed, "checkpoint": Path(self.checkpoint).name,
                "order": self.order, "epoch": self.epoch, "step": self.step, "layer": self.layer, "task": "",
                "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "method": "", "params": "{}",
                "n": 0, "seconds": 0.0, "error": ""}


def _measure_names(measure: str, has_target: bool) -> List[Tuple[str, str]]:
    if measure in _landscape_measures():
        from infodyn.landscape.measures import measure_names

        return [(name, "source") for name in measure_names(measure)]
    if measure == "linear_probe":
        return [(PROBE, "source")] + ([(PROBE, "target")] if has_target else [])
    if measure == "knn":
        return [(KNN, "source")] + ([(KNN, "target")] if has_target else [])
    if measure == "source_acc":
        return [(SOURCE_ACC, "source")]
    if measure == "rankme":
        return [(RANKME, "source")]
    if measure == "nc1":
        return [(NC1, "source")]
    if measure == "overcompression":
        return [(SCORE, "source")]
    return [(IXT, "source"), (ITY, "source")]


def error_rows(unit: Unit, message: str, has_target: bool) -> List[Dict[str, Any]]:
    rows = []
    for m in unit.measures:
        for name, task in _measure_names(m, has_target):
            r = unit.base_row()
            r.update(measure=name, task=task, error=message, method=m)
            rows.append(r)
    return rows


@lru_cache(maxsize=8)
def _dataset(name: str, seed: int):
    """A data set by name (the manifest already made .npz paths absolute), cached per process."""
    from infodyn.data import load

    return load(name, seed=seed)


def _positions(ds) -> Dict[str, np.ndarray]:
    """Row positions of each split's samples inside ``ds.all()``."""
    sizes = [len(ds.y_train), len(ds.y_val), len(ds.y_test)]
    idx = [ds.idx_train, ds.idx_val, ds.idx_test]
    order = (np.arange(sum(sizes)) if any(i is None for i in idx)
             else np.argsort(np.concatenate(idx), kind="stable"))  # as Dataset.all() orders them
    where = np.empty_like(order)
    where[order] = np.arange(order.size)
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"train": where[:a], "val": where[a:b], "test": where[b:]}


@lru_cache(maxsize=4)
def _manifest(run_dir: str):
    from infodyn.runs import load_manifest

    return load_manifest(run_dir)


def _features(model_fn, x: np.ndarray, layer: str, opts: Dict[str, Any], dataset: str) -> np.ndarray:
    """Features (n, d) of one layer, from the feature cache when present (then the checkpoint
    is not even loaded: ``model_fn`` is only called on a miss)."""
    from infodyn.runs import FeatureCache, cached_features

    cache = FeatureCache(opts["cache_dir"]) if opts.get("cache_dir") else None
    got = cached_features(cache, checkpoint=opts["ckpt_hash"], layers=[layer], dataset=dataset, x=x,
                          model=model_fn, pool=opts.get("pool") or "flatten",
                          batch_size=opts.get("batch_size", 512), device=opts.get("device", "auto"))
    return np.asarray(got[layer], dtype=np.float64).reshape(len(x), -1)


def _rows_for(unit: Unit, measure: str, compute) -> List[Dict[str, Any]]:
    """Runs ``compute()`` -> list of (measure, task, value, ci, method, params, n); failures -> error rows."""
    t0 = time.perf_counter()
    out = []
    try:
        results = compute()
        secs = time.perf_counter() - t0
        for name, task, value, ci, method, params, n in results:
            r = unit.base_row()
            r.update(measure=name, task=task, value=float(value), method=method,
                     params=json.dumps(params, sort_keys=True, default=str), n=int(n), seconds=secs / max(len(results), 1))
            if ci is not None:
                r["ci_low"], r["ci_high"] = float(ci[0]), float(ci[1])
            if not math.isfinite(r["value"]):
                r["error"] = f"{measure} gave a non-finite value on layer {unit.layer}"
                r["value"] = math.nan
            out.append(r)
    except Exception as exc:  # one failed measure must not cost the others
        msg = f"{type(exc).__name__}: {exc}"
        for name, task in _measure_names(measure, unit.options.get("has_target", False)):
            r = unit.base_row()
            r.update(measure=name, task=task, error=msg, method=measure, seconds=time.perf_counter() - t0)
            out.append(r)
    return out


def _subsample(n: int, cap: Optional[int], seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


class _CheckpointFailed(Exception):
    """The checkpoint of a unit could not be loaded into the model."""


def run_unit(unit: Unit) -> List[Dict[str, Any]]:
    """Computes one unit and returns its rows (error rows when its checkpoint could not be used).

    Runs in a joblib worker or in-process (then the caller's torch thread count is restored);
    caches its rows (atomically) when none failed.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(unit.options.get("threads") or before))
    try:
        return _run_unit(unit)
    finally:
        torch.set_num_threads(before)


def _run_unit(unit: Unit) -> List[Dict[str, Any]]:
    opts = unit.options
    has_target = bool(opts.get("has_target"))
    seed = int(opts.get("seed", 0))
    device = opts.get("device", "auto")
    ckpt_name = Path(unit.checkpoint).name
    holder: Dict[str, Any] = {}

    def model_fn():
        """The model with this checkpoint's weights, loaded on first use."""
        if "model" not in holder:
            from infodyn.runs import apply_state, build_model, load_checkpoint

            try:
                model = build_model(_manifest(unit.run_dir))
                apply_state(model, load_checkpoint(unit.checkpoint, trust=opts.get("trust", False)), unit.checkpoint)
            except Exception as exc:
                raise _CheckpointFailed(f"{ckpt_name}: {type(exc).__name__}: {exc}") from exc
            holder["model"] = model.eval()
        return holder["model"]

    try:
        src = _dataset(opts["source"], seed)
        tgt = _dataset(opts["target"], seed) if has_target else None
    except Exception as exc:
        return error_rows(unit, f"data: {type(exc).__name__}: {exc}", has_target)
    rows: List[Dict[str, Any]] = []
    xs, ys = src.all()

    if unit.layer == OUTPUT_LAYER:
        try:
            model = model_fn()
        except _CheckpointFailed as exc:
            return error_rows(unit, str(exc), has_target)

        def head_acc():
            import torch

            from infodyn.estimators import resolve_device

            dev = resolve_device(device)
            model.to(dev)
            with torch.no_grad():
                out = torch.cat([model(torch.as_tensor(src.x_test[i:i + 1024]).to(dev)).float().cpu()
                                 for i in range(0, len(src.x_test), 1024)])
            if out.ndim != 2 or out.shape[1] != src.num_classes:
                recorded = opts.get("recorded_acc")
                if recorded is None:
                    raise ValueError(f"model output has shape {tuple(out.shape)}, not (n, {src.num_classes}) "
                                     "class scores, and the checkpoint records no source_acc")
                return [(SOURCE_ACC, "source", recorded, None, "recorded", {}, 0)]
            acc = float((out.argmax(1).numpy() == src.y_test).mean())
            return [(SOURCE_ACC, "source", acc, None, "head", {"split": "test"}, len(src.y_test))]

        rows += _rows_for(unit, "source_acc", head_acc)
        return _finish(unit, rows)

    if unit.layer == LANDSCAPE_LAYER and opts.get("landscape_unit"):
        return _finish(unit, _landscape_rows(unit, model_fn, src, seed, device))

    try:
        f_src = _features(model_fn, xs, unit.layer, opts, f"{opts['source']}:{seed}")
        f_tgt = None
        if tgt is not None and any(m in ("linear_probe", "knn") for m in unit.measures):
            xt, _ = tgt.all()
            f_tgt = _features(model_fn, xt, unit.layer, opts, f"{opts['target']}:{seed}")
    except _CheckpointFailed as exc:
        return error_rows(unit, str(exc), has_target)
    except Exception as exc:
        return error_rows(unit, f"{ckpt_name}: features of layer {unit.layer!r}: {type(exc).__name__}: {exc}",
                          has_target)

    plane_idx = _subsample(len(ys), opts.get("max_samples"), seed)
    t_plane, y_plane = f_src[plane_idx], ys[plane_idx]
    plane_params = opts.get("plane_params", {})

    def split(ds, feats):
        p = _positions(ds)
        _, y_all = ds.all()
        return feats[p["train"]], y_all[p["train"]], feats[p["test"]], y_all[p["test"]]

    for m in unit.measures:
        if m not in OTHER_MEASURES:
            def plane(m=m):
                from infodyn.estimators import information_plane
                from infodyn.estimators.neural import METHODS as NEURAL

                # neural bounds estimate I(X;T) from samples of X: the flattened inputs
                x_plane = xs[plane_idx].reshape(len(plane_idx), -1) if m in NEURAL else None
                ip = information_plane(t_plane, y_plane, method=m, x=x_plane, **plane_params.get(m, {}))
                return [(IXT, "source", ip.i_xt.nats, ip.i_xt.ci, m, ip.i_xt.params, ip.i_xt.n),
                        (ITY, "source", ip.i_ty.nats, ip.i_ty.ci, m, ip.i_ty.params, ip.i_ty.n)]

            rows += _rows_for(unit, m, plane)
        elif m in ("linear_probe", "knn"):
            def acc(m=m):
                from infodyn.transfer import knn_accuracy, linear_probe

                fn = linear_probe if m == "linear_probe" else knn_accuracy
                name = PROBE if m == "linear_probe" else KNN
                out = []
                for task, ds, feats in (("source", src, f_src), ("target", tgt, f_tgt)):
                    if ds is None or feats is None:
                        continue
                    a, b, c, d = split(ds, feats)
                    if m == "linear_probe":
                        res = fn(a, b, c, d, device=device, seed=seed)
                        params = {"l2": res.l2, "train_accuracy": res.train_accuracy, "n_train": res.n_train}
                    else:  # k-NN has no random choice
                        res = fn(a, b, c, d, device=device)
                        params = {"k": res.k, "temperature": res.temperature, "n_train": res.n_train}
                    out.append((name, task, res.accuracy, None, m, params, len(d)))
                return out

            rows += _rows_for(unit, m, acc)
        elif m == "rankme":
            def rk():
                from infodyn.transfer import rankme

                return [(RANKME, "source", rankme(t_plane, device=device), None, "rankme", {}, len(t_plane))]

            rows += _rows_for(unit, m, rk)
        elif m == "nc1":
            def nc():
                from infodyn.transfer import nc1

                return [(NC1, "source", nc1(t_plane, y_plane, device=device), None, "nc1", {}, len(t_plane))]

            rows += _rows_for(unit, m, nc)
        elif m == "overcompression":
            def oc():
                from .tradeoff import overcompression_parts

                parts, skipped, extra = overcompression_parts(t_plane, y_plane, seed=seed, device=device)
                return [(SCORE, "source", float(np.mean(list(parts.values()))), None, "overcompression",
                         {**parts, **{f"skipped_{k}": v for k, v in skipped.items()}, **extra}, len(t_plane))]

            rows += _rows_for(unit, m, oc)
    return _finish(unit, rows)


def _landscape_rows(unit: Unit, model_fn, src, seed: int, device) -> List[Dict[str, Any]]:
    """The landscape measures of one checkpoint (on the source train split), as table rows.

    ``weight_distance_init`` is measured from the run's first checkpoint, ``weight_distance_prev``
    and ``loss_barrier`` from the previous one (none on the first checkpoint)."""
    from infodyn.landscape.measures import checkpoint_measures
    from infodyn.runs import load_checkpoint

    opts = unit.options
    has_target = bool(opts.get("has_target"))
    try:
        model = model_fn()
    except _CheckpointFailed as exc:
        return error_rows(unit, str(exc), has_target)
    trust = opts.get("trust", False)
    try:
        prev = load_checkpoint(opts["prev_ckpt"], trust=trust) if opts.get("prev_ckpt") else None
        first = load_checkpoint(opts["first_ckpt"], trust=trust) if opts.get("first_ckpt") else None
    except Exception as exc:
        return error_rows(unit, f"{Path(unit.checkpoint).name}: reference checkpoint: {type(exc).__name__}: {exc}",
                          has_target)
    try:
        recs = checkpoint_measures(model, None, prev, first, src.x_train, src.y_train, unit.measures, seed=seed,
                                   device=device, options=opts.get("landscape_options"))
    except Exception as exc:  # bad options or data: every landscape row carries the reason
        return error_rows(unit, f"{type(exc).__name__}: {exc}", has_target)
    rows = []
    for rec in recs:
        r = unit.base_row()
        r.update(rec)
        rows.append(r)
    return rows


_UNIT_FORMAT = 2


def _rows_digest(rows_json: str) -> str:
    return hashlib.sha256(rows_json.encode()).hexdigest()


def _finish(unit: Unit, rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Caches a unit's rows (when none failed): written to a temporary file and renamed
    (``os.replace``), with a sha256 of the rows inside, so a reader never sees half a file and
    a damaged one is recomputed."""
    if unit.cache_file and rows and not any(r["error"] for r in rows):
        from ._atomic import atomic_write_text

        body = json.dumps(rows, default=_json_default, sort_keys=True)
        Path(unit.cache_file).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(unit.cache_file, '{"format": %d, "sha256": "%s", "rows": %s}'
                          % (_UNIT_FORMAT, _rows_digest(body), body))
    return rows


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return str(v)


def _options_key(measures: Sequence[str], opts: Dict[str, Any]) -> str:
    """A short hash of everything that changes a unit's numbers (not the device or the jobs)."""
    keep = {k: opts.get(k) for k in ("seed", "max_samples", "plane_params", "pool", "source", "target")}
    if opts.get("landscape_unit"):  # the numbers depend on the reference checkpoints' contents too
        keep.update({k: opts.get(k) for k in ("landscape_options", "prev_hash", "first_hash")})
    blob = json.dumps({"measures": sorted(measures), **keep}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def plan_units(runs: Sequence[Run], measures: Sequence[str], out: Optional[Path], opts: Dict[str, Any]) -> List[Unit]:
    """Every unit of every run (cached or not), in a deterministic order."""
    from infodyn.runs import file_sha256, resolve_layers

    units = []
    land = set(_landscape_measures())
    landscape = [m for m in measures if m in land]
    layer_measures = [m for m in measures if m != "source_acc" and m not in land]
    for run in runs:
        man = run.manifest
        model = None
        if layer_measures:
            from infodyn.runs import build_model

            model = build_model(man)
            try:
                run.layers = list(resolve_layers(model, man.layers))
            except ValueError as exc:
                raise ValueError(f"{man.path}: key 'layers': {exc}") from None
        target = getattr(man, "data_target", None)
        ropts = {**opts, "source": man.data_source, "target": target, "has_target": bool(target),
                 "pool": opts.get("pool") or getattr(man, "pool", None) or "flatten"}
        hashes = []
        for ck in run.checkpoints:
            try:
                hashes.append(file_sha256(Path(ck.path)))
            except OSError as exc:
                hashes.append(f"unreadable-{exc.errno}")
        for order, ck in enumerate(run.checkpoints):
            path = Path(ck.path)
            h = hashes[order]
            copts = {**ropts, "ckpt_hash": h, "recorded_acc": getattr(ck, "source_acc", None)}
            jobs = [(layer, layer_measures, copts) for layer in run.layers] if layer_measures else []
            if "source_acc" in measures:
                jobs.append((OUTPUT_LAYER, ["source_acc"], copts))
            if landscape:
                prev = run.checkpoints[order - 1] if order else None
                jobs.append((LANDSCAPE_LAYER, landscape, {
                    **copts, "landscape_unit": True, "first_ckpt": str(run.checkpoints[0].path),
                    "first_hash": hashes[0], "prev_ckpt": str(prev.path) if prev is not None else None,
                    "prev_hash": hashes[order - 1] if order else None}))
            for layer, ms, uopts in jobs:
                key = _options_key(ms, uopts)
                cache = (str(out / "units" / _safe(run.name) / f"{_safe(path.stem)}-{h[:12]}" /
                             f"{_safe(layer)}.{key}.json") if out is not None else None)
                units.append(Unit(run.name, run.config, run.seed, str(run.path), str(path), order,
                                  _num(getattr(ck, "epoch", None)), _num(getattr(ck, "step", None)),
                                  layer, list(ms), cache, uopts))
    return units


def _num(v) -> Optional[float]:
    return None if v is None else float(v)


def _cached(unit: Unit) -> Optional[List[Dict[str, Any]]]:
    if not unit.cache_file or not os.path.exists(unit.cache_file):
        return None
    try:
        blob = json.loads(Path(unit.cache_file).read_text())
        rows = blob["rows"]
        ok = (blob.get("format") == _UNIT_FORMAT and isinstance(rows, list) and rows
              and blob.get("sha256") == _rows_digest(json.dumps(rows, sort_keys=True))
              and all(isinstance(r, dict) and set(COLUMNS) <= set(r) for r in rows))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        return None  # a damaged, partial or old-format file is recomputed (and then replaced)
    # the run may have been renamed or re-ordered since: refresh the bookkeeping columns
    base = unit.base_row()
    for r in rows:
        for k in ("run", "config", "seed", "checkpoint", "order", "epoch", "step"):
            r[k] = base[k]
    return rows


def to_frame(rows: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """Rows -> the tidy table with :data:`COLUMNS` in order, sorted deterministically."""
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    for col in ("seed", "order", "epoch", "step"):
        df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
    for col in ("value", "ci_low", "ci_high", "seconds"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").fillna(0).astype(int)
    if len(df):
        df = df.sort_values(["run", "order", "layer", "measure", "task", "method"], kind="stable").reset_index(drop=True)
    df["error"] = df["error"].fillna("")
    return df


def write_table(df: pd.DataFrame, out: Path) -> List[Path]:
    """Writes results.csv (and results.parquet when pyarrow is installed), atomically."""
    from importlib.util import find_spec

    from ._atomic import atomic_write_dataframe

    written = [atomic_write_dataframe(Path(out) / "results.csv", df)]
    if find_spec("pyarrow") is not None:
        written.append(atomic_write_dataframe(Path(out) / "results.parquet", df, index=False))
    return written


def analyze(run_dirs, measures: Union[None, str, Sequence[str]] = None, out: Union[None, str, os.PathLike] = None,
            jobs: int = 1, device: str = "auto", *, seed: int = 0, max_samples: Optional[int] = 4096,
            plane_params: Optional[Dict[str, Dict[str, Any]]] = None, batch_size: int = 512, pool: Optional[str] = None,
            trust: bool = False, progress: bool = True, feature_cache: bool = True,
            threads: Optional[int] = None, landscape_options: Optional[Dict[str, Any]] = None,
            scheduler: Any = None) -> pd.DataFrame:
    """Every measure on every (checkpoint, layer) of one or more runs, as one tidy table.

    Args:
        run_dirs: a run folder (with ``infodyn.yaml``), a folder of run folders, or a list.
        measures: names or a comma-separated string (module doc); default
            :data:`DEFAULT_MEASURES`.
        out: output folder: results.csv (+ .parquet), the per-unit cache ``units/`` and the
            feature cache ``features/``. None keeps everything in memory (no cache).
        jobs: parallel workers (joblib, processes); -1 = one per CPU.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        seed: seeds the data split, subsampling and every measure.
        max_samples: cap on the samples used for the information plane, RankMe, NC1 and the
            score (seeded subsample of the source set); None for all.
        plane_params: per-method estimator parameters, e.g. ``{"kde": {"noise_var": 1e-3}}``.
        batch_size, pool: feature extraction settings (``pool`` for conv maps).
        trust: allow the Python objects checkpoints name (their code runs; only for your own files).
        progress: show a tqdm bar over units.
        feature_cache: keep extracted features under ``OUT/features`` (keyed by checkpoint content).
        threads: torch threads per worker (default 1: the units are many and small, so they
            parallelise across ``jobs``; extra threads per worker slowed a shared machine down
            badly, see benchmarks/results/analyze_throughput.md).
        landscape_options: overrides of :data:`infodyn.landscape.measures.DEFAULTS` for the
            landscape measures (``sharpness``, ``grad_pc``, ``weight_distance``, ...), which run
            once per checkpoint (layer ``model``) on the source train split.

        scheduler: a Dask distributed scheduler address (``"tcp://host:8786"``) or a
            ``distributed.Client``: the units go to that cluster through joblib's dask backend
            (needs ``pip install infodyn[distributed]``); ``jobs`` is then ignored. The workers
            must see the run folders, the data files and ``out`` at the same paths (a shared file
            system) and be able to import the model's code (the manifest's ``model``).

    Returns:
        the table (:data:`infodyn.tradeoff.COLUMNS`); rows of a failed checkpoint carry ``error``.

    Crashes and concurrency: every finished unit is saved atomically (temporary file +
    ``os.replace``, with a checksum of its rows inside); a killed analysis, started again with
    the same arguments, reads the finished units and computes only the rest, and a damaged unit
    file is recomputed. Within one analysis each unit is planned exactly once, so no two workers
    compute the same unit; two analyses sharing ``out`` at the same time may both compute a unit,
    and the atomic writes keep its file whole either way (the rows are the same).
    """
    ms = parse_measures(measures)
    runs = open_runs(run_dirs)
    outp = Path(out) if out is not None else None
    n_jobs = (os.cpu_count() or 1) if jobs == -1 else max(1, int(jobs))
    opts = {"seed": int(seed), "max_samples": max_samples, "plane_params": plane_params or {}, "device": device,
            "batch_size": batch_size, "pool": pool, "trust": trust,
            "threads": threads or 1, "landscape_options": dict(landscape_options) if landscape_options else None,
            "cache_dir": str(outp / "features") if (outp is not None and feature_cache) else None}
    units = plan_units(runs, ms, outp, opts)
    rows: List[Dict[str, Any]] = []
    todo = []
    for u in units:
        got = _cached(u)
        if got is None:
            todo.append(u)
        else:
            rows.extend(got)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"analyze ({len(units) - len(todo)} cached)", unit="unit")
    try:
        if scheduler is not None and todo:
            for got in _on_cluster(scheduler, todo):
                rows.extend(got)
                if bar:
                    bar.update(1)
        elif n_jobs == 1 or len(todo) <= 1:
            for u in todo:
                rows.extend(run_unit(u))
                if bar:
                    bar.update(1)
        else:
            from joblib import Parallel, delayed

            par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
            for got in par(delayed(run_unit)(u) for u in todo):
                rows.extend(got)
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.close()
    df = to_frame(rows)
    if outp is not None:
        write_table(df, outp)
        manifests = {r.name: r.manifest_text for r in runs}
        from ._atomic import atomic_write_text

        atomic_write_text(outp / "manifests.json", json.dumps(manifests, indent=1))
    return df


def _on_cluster(scheduler: Any, todo: Sequence[Unit]):
    """Runs the units on a Dask distributed cluster through joblib's dask backend; yields each
    unit's rows as it finishes."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("scheduler= needs Dask distributed: pip install 'infodyn[distributed]'") from exc
    from joblib import Parallel, delayed, parallel_config

    own = not isinstance(scheduler, Client)
    if own and not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be an address such as 'tcp://127.0.0.1:8786' or a distributed.Client, "
                         f"got {type(scheduler).__name__}")
    client = Client(scheduler) if own else scheduler
    try:
        with parallel_config(backend="dask", wait_for_workers_timeout=60):
            par = Parallel(n_jobs=-1, return_as="generator_unordered")
            yield from par(delayed(run_unit)(u) for u in todo)
    finally:
        if own:
            client.close()


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, checkpoint, error) among the failed rows."""
    bad = failed_rows(df)
    return bad[["run", "checkpoint", "layer", "measure", "error"]].drop_duplicates(["run", "checkpoint", "error"])


__all__ = ["analyze", "DEFAULT_MEASURES", "parse_measures", "open_runs", "expand_run_dirs", "plan_units", "run_unit",
           "to_frame", "write_table", "failures", "Run", "Unit"]

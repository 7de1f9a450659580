"""Running one unit (one checkpoint): load it once, one forward pass over the data for every
layer, then every measure of every layer; each job's rows are cached as soon as they exist.

Memory: only the rows a measure needs go through the network (the seeded plane subsample when
no transfer protocol is measured), features are float32, and a layer's features larger than
:data:`MMAP_BYTES` are read back from the feature cache as a memory map.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import cache
from . import measures as registry
from .measures import DataInputs, LayerInputs, Result
from .plan import Job, Unit

MMAP_BYTES = 256 << 20
SPLITS = ("train", "val", "test")


class CheckpointFailed(Exception):
    """The unit's checkpoint could not be loaded into the model."""


# ----------------------------------------------------------------------------------------------
# data


def _stamp(ref) -> Any:
    """What changes when a file-backed data set is edited (its size and modification time)."""
    try:
        p = Path(getattr(ref, "target", ref)) if isinstance(getattr(ref, "target", ref), str) else None
        if p is not None and p.exists():
            st = p.stat()
            return (st.st_size, st.st_mtime_ns)
    except (OSError, ValueError):
        pass
    return None


_DATA: Dict[Any, Tuple[Any, Any, Optional[str]]] = {}  # (ref, seed) -> (file stamp, data set, its digest)


def forget_data() -> None:
    """Drops the data sets kept in this process (each analysis starts with fresh reads)."""
    _DATA.clear()


def dataset(ref, seed: int, digest: Optional[str] = None):
    """A data set by its manifest reference (a name, a path or a DataSpec), kept per process.

    It is read again when its file's size or modification time changed, or when ``digest`` (the
    content digest the main process computed for this analysis) differs from the one it was read
    under, so a worker never keeps data that were edited since (also files edited in place inside
    a data folder)."""
    from infodyn.data import load

    key, stamp = (ref, int(seed)), _stamp(ref)
    got = _DATA.get(key)
    if got is None or got[0] != stamp or (digest is not None and got[2] not in (None, digest)):
        got = (stamp, load(ref, seed=int(seed)), digest)
        _DATA[key] = got
    elif digest is not None and got[2] is None:
        _DATA[key] = got = (stamp, got[1], digest)
    return got[1]


def data_digest(ref, seed: int) -> str:
    """A digest of the data set's content (inputs after any transform, labels, splits) and of the
    order the analysis reads it in; recorded with the data set kept by :func:`dataset`."""
    ds = dataset(ref, seed)
    p = positions(ds)
    digest = hashlib.sha256(json.dumps([ds.digest] + [p[s].tolist() for s in SPLITS]).encode()).hexdigest()
    dataset(ref, seed, digest)
    return digest


def _in_memory(ds) -> bool:
    return all(getattr(ds, f"idx_{s}", None) is not None for s in SPLITS)


@lru_cache(maxsize=8)
def _full(ds) -> Tuple[Dict[str, np.ndarray], np.ndarray, Any]:
    """(positions of each split in the full order, labels in the full order, the inputs in that
    order: an array, or a split read by index). In-memory sets use the order of ``ds.all()``;
    others train, then val, then test."""
    if _in_memory(ds):
        order = np.argsort(np.concatenate([ds.idx_train, ds.idx_val, ds.idx_test]), kind="stable")
        where = np.empty_like(order)
        where[order] = np.arange(order.size)
        a, b = len(ds.y_train), len(ds.y_train) + len(ds.y_val)
        x, y = ds.all()
        return {"train": where[:a], "val": where[a:b], "test": where[b:]}, y, x
    from infodyn.data import concat

    full = concat([ds.split(s) for s in SPLITS])
    ends = np.cumsum([0] + [len(ds.split(s)) for s in SPLITS])
    return {s: np.arange(ends[i], ends[i + 1]) for i, s in enumerate(SPLITS)}, np.asarray(full.labels), full


def positions(ds) -> Dict[str, np.ndarray]:
    """Row positions of each split's samples in the full order (see :func:`_full`)."""
    return _full(ds)[0]


def labels(ds) -> np.ndarray:
    return _full(ds)[1]


def inputs(ds, pos: np.ndarray) -> np.ndarray:
    """The inputs at full-order positions ``pos`` (read by index for lazily loaded sets)."""
    x = _full(ds)[2]
    return x[pos] if isinstance(x, np.ndarray) else x.read(pos)


def folds(ds, seed: int) -> Tuple[List[Tuple[np.ndarray, np.ndarray]], bool]:
    """The transfer protocol's (train, test) positions (see :mod:`.measures`) and whether they
    are the user's own split."""
    p = positions(ds)
    user = "test" in tuple(getattr(ds, "splits_given", ()) or ())
    if user or len(p["test"]) >= registry.MIN_TEST:
        return [(np.sort(np.concatenate([p["train"], p["val"]])), np.sort(p["test"]))], user
    from sklearn.model_selection import StratifiedKFold

    y = labels(ds)
    counts = np.bincount(y)
    k = int(min(registry.FOLDS, counts[counts > 0].min())) if counts.size else 0
    if k < 2:
        return [(np.sort(np.concatenate([p["train"], p["val"]])), np.sort(p["test"]))], False
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(a), np.sort(b)) for a, b in skf.split(np.zeros(len(y)), y)], False


def subsample(n: int, cap: Optional[int], seed: int) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


# ----------------------------------------------------------------------------------------------
# one checkpoint


class Checkpoint:
    """The model of one unit with its checkpoint's weights, loaded on first use, and the
    checkpoint-scope measures (head accuracy, loss landscape)."""

    def __init__(self, unit: Unit):
        self.unit = unit
        self._model = None
        self._landscape: Optional[List[Dict[str, Any]]] = None

    def model(self):
        if self._model is None:
            from infodyn.runs import checkpoint_name, load_model

            u = self.unit
            try:
                model = load_model(u.manifest, u.checkpoint, trust=u.options.get("trust", False))
            except Exception as exc:
                raise CheckpointFailed(f"{checkpoint_name(u.checkpoint)}: {type(exc).__name__}: {exc}") from exc
            self._model = model.eval()
        return self._model

    def head_accuracy(self) -> List[Result]:
        import torch

        from infodyn.estimators import resolve_device
        from infodyn.tradeoff import SOURCE_ACC

        u = self.unit
        src = dataset(u.options["source"], u.options["seed"], u.options["source_digest"])
        model = self.model()
        dev = resolve_device(u.options.get("device", "auto"))
        model.to(dev)
        test = positions(src)["test"]
        y_test = labels(src)[test]
        with torch.no_grad():
            out = torch.cat([model(torch.as_tensor(inputs(src, test[i:i + 1024])).to(dev)).float().cpu()
                             for i in range(0, len(test), 1024)])
        if out.ndim != 2 or out.shape[1] != src.num_classes:
            recorded = u.options.get("recorded_acc")
            if recorded is None:
                raise ValueError(f"model output has shape {tuple(out.shape)}, not (n, {src.num_classes}) "
                                 "class scores, and the checkpoint records no source_acc")
            return [Result(SOURCE_ACC, "source", recorded, None, "recorded", {}, 0)]
        acc = float((out.argmax(1).numpy() == y_test).mean())
        return [Result(SOURCE_ACC, "source", acc, None, "head", {"split": "test"}, len(y_test))]

    def landscape(self, name: str) -> List[Result]:
        """The rows of one loss-landscape measure. Every landscape measure of the unit is computed
        in one call on first use (they share the model's gradients; source train split);
        ``weight_distance_init`` is measured from the run's first checkpoint, ``weight_distance_prev``
        and ``loss_barrier`` from the previous one (none on the first)."""
        from infodyn.landscape.measures import MEASURES, checkpoint_measures, measure_names
        from infodyn.runs import load_checkpoint

        if self._landscape is None:
            u, opts = self.unit, self.unit.options
            kw = {"trust": opts.get("trust", False), "state_prefix": getattr(u.manifest, "state_prefix", None)}
            src = dataset(opts["source"], opts["seed"], opts["source_digest"])
            prev = load_checkpoint(opts["prev_ckpt"], **kw) if opts.get("prev_ckpt") else None
            first = load_checkpoint(opts["first_ckpt"], **kw) if opts.get("first_ckpt") else None
            train = positions(src)["train"]
            wanted = [j.measure for j in u.jobs if j.measure in MEASURES]
            self._landscape = checkpoint_measures(self.model(), None, prev, first, inputs(src, train),
                                                  labels(src)[train], wanted, seed=opts["seed"],
                                                  device=opts.get("device", "auto"),
                                                  options=opts.get("landscape_options"))
        return [Result(r["measure"], r["task"], r["value"], None if r["ci_low"] != r["ci_low"] else
                       (r["ci_low"], r["ci_high"]), r["method"], json.loads(r["params"]), r["n"], layer=r["layer"],
                       seconds=r["seconds"], error=r["error"])
                for r in self._landscape if r["measure"] in measure_names(name)]


def _rows(unit: Unit, job: Job, compute: Callable[[], List[Result]],
          context: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Runs ``compute()`` for one job; a failure becomes error rows naming the reason.
    ``context`` (how the features were made, how the data were split) joins every row's params."""
    t0 = time.perf_counter()
    try:
        results = compute()
    except Exception as exc:  # one failed measure must not cost the others
        return error_rows(unit, job, f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0)
    secs = time.perf_counter() - t0
    out = []
    for res in results:
        r = unit.base_row(res.layer or job.layer)
        r.update(measure=res.measure, task=res.task, value=float(res.value), method=res.method,
                 params=json.dumps({**(context or {}), **res.params}, sort_keys=True, default=str), n=int(res.n),
                 seconds=res.seconds if res.seconds is not None else secs / max(len(results), 1), error=res.error)
        if res.ci is not None:
            r["ci_low"], r["ci_high"] = float(res.ci[0]), float(res.ci[1])
        if not r["error"] and not math.isfinite(r["value"]):
            r["error"] = f"{job.measure} gave a non-finite value on layer {job.layer}"
        if r["error"]:
            r["value"] = math.nan
        out.append(r)
    return out


def error_rows(unit: Unit, job: Job, message: str, seconds: float = 0.0) -> List[Dict[str, Any]]:
    rows = []
    for name, task in registry.get(job.measure).rows(bool(unit.options.get("has_target"))):
        r = unit.base_row(job.layer)
        r.update(measure=name, task=task, error=message, method=job.measure, seconds=seconds)
        rows.append(r)
    return rows


def _data_inputs(unit: Unit, ds, ref, digest: str, layers: List[str], rows: np.ndarray, ckpt: Checkpoint,
                 fold_list, user: bool) -> Dict[str, DataInputs]:
    """Features of ``layers`` at ``rows`` of one data set (one forward pass for all layers)."""
    from infodyn.runs import FeatureCache, cached_features
    from infodyn.runs.cache import array_digest

    opts = unit.options
    y_all = labels(ds)
    fc = FeatureCache(opts["cache_dir"]) if opts.get("cache_dir") else None

    def extract(names):
        return cached_features(fc, checkpoint=opts["ckpt_hash"], layers=names, dataset=str(ref),
                               x=_rows_view(ds, rows), model=ckpt.model, pool=opts["pool"],
                               batch_size=opts.get("batch_size", 512), device=opts.get("device", "auto"),
                               amp=bool(opts.get("amp")), data_digest=digest + array_digest(rows),
                               extra={"model": opts["model_digest"]}, mmap_bytes=MMAP_BYTES)

    feats = extract(layers)
    return {layer: DataInputs(feats[layer], rows, y_all, fold_list, user) for layer in layers}


def _rows_view(ds, rows: np.ndarray):
    """The inputs at ``rows``: an array for in-memory sets, else a view read batch by batch
    during the forward pass (memory: one batch of inputs)."""
    x = _full(ds)[2]
    return x[rows] if isinstance(x, np.ndarray) else x.take(rows)


def run_unit(unit: Unit) -> List[Dict[str, Any]]:
    """Computes every job of one unit and returns their rows (caching each job's rows when none
    failed). Runs in a worker or in-process; the caller's torch thread count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(unit.options.get("threads") or before))
    try:
        return _run(unit)
    finally:
        torch.set_num_threads(before)


def _finish(job: Job, rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    cache.save(job, rows)
    return rows


def _run(unit: Unit) -> List[Dict[str, Any]]:
    opts = unit.options
    seed = int(opts.get("seed", 0))
    ckpt = Checkpoint(unit)
    rows: List[Dict[str, Any]] = []
    layer_jobs = [j for j in unit.jobs if registry.get(j.measure).scope == "layer"]
    if layer_jobs:
        rows += _layer_jobs(unit, layer_jobs, ckpt, seed)
    for job in unit.jobs:  # checkpoint measures: computed from the model itself
        m = registry.get(job.measure)
        if m.scope != "layer":
            rows += _finish(job, _with_model(unit, [job], ckpt, lambda: _rows(unit, job, lambda: m.compute(ckpt))))
    return rows


def _with_model(unit: Unit, jobs: List[Job], ckpt: Checkpoint, fn) -> List[Dict[str, Any]]:
    try:
        ckpt.model()
    except CheckpointFailed as exc:
        return [r for j in jobs for r in error_rows(unit, j, str(exc))]
    return fn()


def _layer_jobs(unit: Unit, jobs: List[Job], ckpt: Checkpoint, seed: int) -> List[Dict[str, Any]]:
    opts = unit.options
    needs = set().union(*(registry.get(j.measure).needs for j in jobs))
    try:
        src = dataset(opts["source"], seed, opts["source_digest"])
        tgt = (dataset(opts["target"], seed, opts["target_digest"]) if opts.get("has_target") and "target" in needs
               else None)
    except Exception as exc:
        return [r for j in jobs for r in error_rows(unit, j, f"data: {type(exc).__name__}: {exc}")]
    ys = labels(src)
    plane_pos = subsample(len(ys), opts.get("max_samples"), seed)
    src_rows = np.arange(len(ys)) if "splits" in needs else plane_pos
    layers = list(dict.fromkeys(j.layer for j in jobs))
    try:
        src_folds, src_user = folds(src, seed)
        by_layer_src = _data_inputs(unit, src, opts["source"], opts["source_digest"], layers, src_rows, ckpt,
                                    src_folds, src_user)
        by_layer_tgt = {}
        if tgt is not None:
            yt = labels(tgt)
            tgt_folds, tgt_user = folds(tgt, seed)
            by_layer_tgt = _data_inputs(unit, tgt, opts["target"], opts["target_digest"], layers,
                                        np.arange(len(yt)), ckpt, tgt_folds, tgt_user)
    except CheckpointFailed as exc:
        return [r for j in jobs for r in error_rows(unit, j, str(exc))]
    except Exception as exc:
        from infodyn.runs import checkpoint_name

        msg = f"{checkpoint_name(unit.checkpoint)}: features of layer(s) {', '.join(map(repr, layers))}: {type(exc).__name__}: {exc}"
        return [r for j in jobs for r in error_rows(unit, j, msg)]

    from infodyn.runs.extract import layer_pool

    def provenance(layer: str, m) -> Dict[str, Any]:
        """How the layer's features were made, and which splits the data gave or infodyn carved."""
        out = {"pool": layer_pool(opts["pool"], layer), "features": int(by_layer_src[layer].features.shape[1])}
        for task, ds in (("source", src), ("target", tgt if "target" in m.needs else None)):
            sp = getattr(ds, "split_params", None)
            if callable(sp) and "splits" in m.needs:
                out[f"{task}_splits"] = sp().get("splits")
        return out

    rows = []
    for job in jobs:
        m = registry.get(job.measure)
        inp = LayerInputs(job.layer, by_layer_src[job.layer],
                          by_layer_tgt.get(job.layer) if "target" in m.needs else None,
                          plane_pos, seed, opts.get("device", "auto"),
                          registry.settings(job.measure, opts["params"]),
                          inputs=lambda pos: inputs(src, pos))
        rows += _finish(job, _rows(unit, job, lambda: m.compute(inp), provenance(job.layer, m)))
    return rows


__all__ = ["run_unit", "dataset", "forget_data", "data_digest", "positions", "folds", "subsample", "Checkpoint", "CheckpointFailed",
           "error_rows"]

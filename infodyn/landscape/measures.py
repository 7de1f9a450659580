"""Landscape measures of one checkpoint as tidy rows, for ``infodyn analyze`` and for notebooks.

:func:`checkpoint_measures` takes a model of the run's architecture, the checkpoint's state, the
previous and first checkpoints' states and the source data (x, y), and returns one dict per
(measure, layer) with the table's keys ``measure, layer, task, value, ci_low, ci_high, method,
params, n, seconds, error``. A measure that fails gives rows with ``value`` NaN and the reason in
``error`` (the other measures still run); unknown measure names raise ValueError at once.

Measures (name -> rows):

* ``sharpness`` -> ``sharpness`` (top Hessian eigenvalue; interval value +- residual), layer ``model``.
* ``hessian_trace`` -> ``hessian_trace`` (Hutchinson; 95 % normal interval), layer ``model``.
* ``grad_norm`` -> ``grad_norm`` (norm of the full-data gradient), layer ``model``.
* ``grad_pc`` -> ``grad_pc`` (share of minibatch-gradient variance in the first principal
  direction; jackknife interval over minibatches), layer ``model``.
* ``weight_distance`` -> ``weight_distance_init`` (from the first checkpoint) and
  ``weight_distance_prev`` (from the previous one; none for the first), one row per layer
  (module path) and one for the whole ``model``; ``params`` holds the relative distance.
* ``loss_barrier`` -> ``loss_barrier`` (barrier on the straight path from the previous
  checkpoint; none for the first), layer ``model``.

The loss is the mean cross-entropy of ``model(x)`` against integer labels ``y`` (mean squared
error for float targets) unless ``loss_fn(model, (x, y))`` is given. Curvature and gradients use
at most ``max_samples`` samples drawn with ``seed``.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

LAYER = "model"
MEASURES = ("sharpness", "hessian_trace", "grad_norm", "grad_pc", "weight_distance", "loss_barrier")
_NAMES = {"sharpness": ["sharpness"], "hessian_trace": ["hessian_trace"], "grad_norm": ["grad_norm"],
          "grad_pc": ["grad_pc"], "weight_distance": ["weight_distance_init", "weight_distance_prev"],
          "loss_barrier": ["loss_barrier"]}

#: Defaults of ``options``.
DEFAULTS: Dict[str, Any] = {
    "max_samples": 1024,     # samples for curvature, gradient norm and the loss path
    "batch_size": 1024,      # batch size of those passes (memory only; the value does not depend on it;
                             # one batch lets the Hessian products reuse its gradient graph)
    "pc_batch_size": 64,     # minibatch size for grad_pc
    "pc_batches": 16,        # number of minibatches for grad_pc (drawn without replacement while they last)
    "iters": 100, "tol": 1e-4, "eig_method": "lobpcg",
    "trace_samples": 32, "path_points": 11,
    "num_threads": "auto",   # CPU threads ("auto": 1 for models under 200k parameters)
}


def measure_names(measure: str) -> List[str]:
    """The ``measure`` values of the rows one requested measure gives (for error rows)."""
    if measure not in _NAMES:
        raise ValueError(f"unknown landscape measure {measure!r}; choose from {list(MEASURES)}")
    return list(_NAMES[measure])


def parse(measures: Union[str, Sequence[str]]) -> List[str]:
    """Measure names from a list or a comma-separated string; ValueError on unknown names."""
    if isinstance(measures, str):
        measures = [m.strip() for m in measures.split(",") if m.strip()]
    measures = list(measures)
    if not measures:
        raise ValueError(f"no landscape measure given; choose from {list(MEASURES)}")
    for m in measures:
        measure_names(m)
    return measures


def default_loss(model: nn.Module, batch) -> torch.Tensor:
    """Mean cross-entropy for integer labels, mean squared error for float targets."""
    x, y = batch
    out = model(x)
    if y.dtype.is_floating_point:
        if out.shape != y.shape:
            raise ValueError(f"model output has shape {tuple(out.shape)} but the float targets have shape {tuple(y.shape)}")
        return torch.nn.functional.mse_loss(out, y)
    if out.ndim != 2 or out.shape[0] != y.shape[0]:
        raise ValueError(f"model output has shape {tuple(out.shape)}, not (n, classes) scores for {y.shape[0]} labels")
    if int(y.max()) >= out.shape[1] or int(y.min()) < 0:
        raise ValueError(f"labels range over [{int(y.min())}, {int(y.max())}] but the model gives {out.shape[1]} class scores")
    return torch.nn.functional.cross_entropy(out, y)


def _tensors(x, y, what: str):
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{what}: x has shape {tuple(x.shape)} and y {tuple(y.shape)}; they need the same number of rows")
    if x.shape[0] == 0:
        raise ValueError(f"{what}: no samples (x has shape {tuple(x.shape)})")
    if x.dtype == torch.float64:
        x = x.float()
    if not y.dtype.is_floating_point:
        y = y.long()
    return x, y


_PREFIXES = ("module.", "_orig_mod.", "model.")


def _align(ref: Optional[Mapping[str, Any]], keys: set, what: str) -> Optional[Dict[str, Any]]:
    """``ref`` with wrapper prefixes (DataParallel ``module.``, torch.compile ``_orig_mod.``,
    Lightning ``model.``) stripped when that makes its names match the model's."""
    if ref is None:
        return None
    if isinstance(ref, nn.Module):
        ref = ref.state_dict()
    if not isinstance(ref, Mapping):
        raise ValueError(f"{what} must be a state dict, got {type(ref).__name__}")
    ref = dict(ref)
    for _ in range(3):
        if keys <= set(ref):
            break
        stripped = False
        for pre in _PREFIXES:
            if any(k.startswith(pre) for k in ref) and not keys <= set(ref):
                cand = {k[len(pre):] if k.startswith(pre) else k: v for k, v in ref.items()}
                if len(keys & set(cand)) > len(keys & set(ref)):
                    ref, stripped = cand, True
        if not stripped:
            break
    return {k: ref[k] for k in ref if k in keys} if keys <= set(ref) else ref


def _row(measure: str, value: float, ci=None, method: str = "", params=None, n: int = 0, seconds: float = 0.0,
         layer: str = LAYER, error: str = "") -> Dict[str, Any]:
    ok = not error and value is not None and math.isfinite(float(value))
    if not error and not ok:
        error = f"{measure} gave a non-finite value ({value})"
    return {"measure": measure, "layer": layer, "task": "source", "value": float(value) if ok else math.nan,
            "ci_low": float(ci[0]) if (ok and ci is not None) else math.nan,
            "ci_high": float(ci[1]) if (ok and ci is not None) else math.nan,
            "method": method, "params": json.dumps(params or {}, sort_keys=True, default=str), "n": int(n),
            "seconds": float(seconds), "error": error}


def checkpoint_measures(model: nn.Module, state: Optional[Mapping[str, Any]], prev_state: Optional[Mapping[str, Any]],
                        first_state: Optional[Mapping[str, Any]], x: Any, y: Any, measures: Union[str, Sequence[str]],
                        seed: int = 0, *, loss_fn: Optional[Callable] = None, device: Any = "auto",
                        options: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """Every requested landscape measure of one checkpoint, as tidy row dicts (module doc).

    Args:
        model: a module of the run's architecture. When ``state`` is given it is loaded into
            ``model`` (strict); the model is put in eval mode while measuring (mode restored after).
        state: the checkpoint's state dict, or None when ``model`` already holds it.
        prev_state: the previous checkpoint's state dict (None for the first checkpoint).
        first_state: the first checkpoint's (or the initialisation's) state dict; None skips
            ``weight_distance_init``. Both may carry wrapper prefixes (``module.``,
            ``_orig_mod.``, ``model.``) and extra entries; they are matched to the model's names.
        x, y: source training data, (n, ...) inputs and (n,) labels (numpy or torch).
        measures: names (or a comma-separated string) from :data:`MEASURES`.
        seed: seeds the subsample, the minibatches and the start/probe vectors.
        loss_fn: ``loss_fn(model, (x_batch, y_batch)) -> scalar``; default :func:`default_loss`.
        device: "auto" (CUDA when present), a device, or None (leave the model where it is).
        options: overrides of :data:`DEFAULTS`.
    """
    ms = parse(measures)
    opts = dict(DEFAULTS)
    if options:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown landscape option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        opts.update(options)
    loss_fn = loss_fn or default_loss
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint does not fit {type(model).__name__}: {exc}") from exc
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prev_state = _align(prev_state, set(current), "prev_state")
    first_state = _align(first_state, set(current), "first_state")
    x, y = _tensors(x, y, "checkpoint_measures")
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.permutation(n)[:min(n, int(opts["max_samples"]))])
    bs = int(opts["batch_size"])
    xs, ys = x[sub], y[sub]
    full = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, len(sub), bs)]
    was_training = model.training
    model.eval()
    rows: List[Dict[str, Any]] = []
    try:
        for m in ms:
            t0 = time.perf_counter()
            try:
                rows += _one(m, model, current, prev_state, first_state, x, y, full, len(sub), opts, seed,
                             loss_fn, device, rng_seed=seed)
            except Exception as exc:  # one failed measure must not cost the others
                msg = f"{type(exc).__name__}: {exc}"
                rows += [_row(name, math.nan, method=m, error=msg, seconds=time.perf_counter() - t0)
                         for name in measure_names(m)]
    finally:
        model.train(was_training)
    return rows


def _one(m, model, current, prev_state, first_state, x, y, full, n_sub, opts, seed, loss_fn, device, rng_seed):
    from . import gradients, hessian, path, weights

    if m == "sharpness":
        r = hessian.hessian_top_eigenvalue(model, loss_fn, full, iters=int(opts["iters"]), tol=float(opts["tol"]),
                                           seed=seed, method=opts["eig_method"], device=device,
                                           num_threads=opts["num_threads"])
        return [_row("sharpness", r.value, r.ci, f"hessian_{r.method}",
                     {**r.params, "residual": r.residual, "n_hvp": r.n_hvp, "iterations": r.iters,
                      "converged": r.converged}, r.n, r.seconds)]
    if m == "hessian_trace":
        r = hessian.hessian_trace(model, loss_fn, full, samples=int(opts["trace_samples"]), seed=seed, device=device,
                                  num_threads=opts["num_threads"])
        return [_row("hessian_trace", r.value, r.ci, r.method, {**r.params, "stderr": r.stderr}, r.n, r.seconds)]
    if m == "grad_norm":
        s = gradients.gradient_stats(model, loss_fn, full, device=device, num_threads=opts["num_threads"])
        return [_row("grad_norm", s.norm, None, "gradient", {"dim": s.dim}, s.n, s.seconds)]
    if m == "grad_pc":
        pcb, nb = int(opts["pc_batch_size"]), int(opts["pc_batches"])
        perm = np.random.default_rng([rng_seed, 1]).permutation(x.shape[0])[:pcb * nb]
        mini = [(x[perm[i:i + pcb]], y[perm[i:i + pcb]]) for i in range(0, len(perm), pcb)]
        r = gradients.gradient_principal_share(model, loss_fn, mini, device=device,
                                               num_threads=opts["num_threads"])
        return [_row("grad_pc", r.value, r.ci, r.method, {**r.params, "batch_size": pcb, "top": r.top,
                                                           "total": r.total}, r.n, r.seconds)]
    if m == "weight_distance":
        out = []
        for name, ref in (("weight_distance_init", first_state), ("weight_distance_prev", prev_state)):
            if ref is None:
                continue
            t0 = time.perf_counter()
            d = weights.weight_distance(ref, current)
            secs = (time.perf_counter() - t0) / len(d)
            for rec in d.itertuples(index=False):
                out.append(_row(name, rec.distance, None, "l2", {"relative": rec.relative, "norm_ref": rec.norm_a,
                                                                 "n_params": int(rec.n_params)},
                                0, secs, layer=rec.layer))
        return out
    if m == "loss_barrier":
        if prev_state is None:
            return []
        t0 = time.perf_counter()
        df = path.loss_path(model, prev_state, current, loss_fn, full, points=int(opts["path_points"]), device=device,
                            num_threads=opts["num_threads"])
        return [_row("loss_barrier", df.attrs["barrier"], None, "linear_path",
                     {"points": int(opts["path_points"]), "loss_prev": float(df["loss"].iloc[0]),
                      "loss": float(df["loss"].iloc[-1])}, n_sub, time.perf_counter() - t0)]
    raise ValueError(f"unknown landscape measure {m!r}")

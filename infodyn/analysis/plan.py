"""Planning: run folders -> :class:`Run` objects -> one :class:`Unit` per checkpoint.

A unit is one checkpoint of one run with the (layer, measure) jobs still to compute: the engine
loads the checkpoint once and runs the data through the network once for every layer. Each job
has its own cache file, named by a content key (:func:`job_key`) that covers everything that
determines its rows: the checkpoint's bytes, the model (factory, its keyword arguments, the
source of the module that defines it, every manifest setting), the layer, the data content,
the measure and all of its settings, the seed and sample cap, and infodyn's version. An edit
anywhere gives a new key, so an old number is never returned.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import measures as registry

_SEED = re.compile(r"(?:^|[-_.])seed[-_]?(\d+)(?=$|[-_.])", re.IGNORECASE)
#: manifest keys that name or label a run but do not change its numbers
_BOOKKEEPING_KEYS = {"name", "seed", "config", "layers", "checkpoints"}
CACHE_FORMAT = 3


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
    model_digest: str = ""
    listing: str = ""  # what discovery took and skipped, and why (``RunListing.format()``)


def _is_run(p: Path) -> bool:
    from infodyn.runs import MANIFEST_NAME

    return (p / MANIFEST_NAME).is_file()


def expand_run_dirs(run_dirs) -> List[Path]:
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
            raise ValueError(f"{p} holds no infodyn.yaml (nor do its sub-folders); describe the run with "
                             f"`infodyn init {p} --model MODULE:CALLABLE --source DATA --layers LAYER,...`")
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
    """Reads each run's manifest (fresh from disk: an edited manifest is always seen) and
    discovers its checkpoints (errors name the folder)."""
    from infodyn.runs import load_manifest, scan

    paths = expand_run_dirs(run_dirs)
    manifests = [load_manifest(p) for p in paths]
    names = [m.name or p.name for m, p in zip(manifests, paths)]
    runs = []
    for p, manifest, name in zip(paths, manifests, names):
        if names.count(name) > 1:
            name = str(p)
        text = manifest.path.read_text(encoding="utf-8", errors="replace")
        seed, config = seed_and_config(name)
        if manifest.seed is not None:
            seed = manifest.seed
        if manifest.config is not None:
            config = manifest.config
        listing = scan(p, manifest.checkpoints)
        if not listing.checkpoints:
            raise ValueError(f"{p}: no checkpoint files found\n{listing.format()}")
        runs.append(Run(p, name, config, seed, manifest, text, list(listing.checkpoints), listing=listing.format()))
    return runs


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def sha(obj) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


def model_digest(manifest, model) -> str:
    """A digest of what builds the model: every manifest setting but the bookkeeping ones, the
    model's class, and the source files of the factory's module and of the model's class (so an
    edited ``models.py`` beside the manifest is a new model)."""
    from infodyn._files import file_sha256

    raw = {k: v for k, v in (manifest.raw or {}).items() if k not in _BOOKKEEPING_KEYS}
    files = set()
    for obj in (type(model),):
        try:
            files.add(inspect.getsourcefile(obj) or "")
        except (TypeError, OSError):
            pass
    mod_name = manifest.model.partition(":")[0] if ":" in manifest.model else manifest.model.rpartition(".")[0]
    local = manifest.path.parent / (mod_name.replace(".", os.sep) + ".py")
    if local.is_file():
        files.add(str(local))
    sources = {}
    for f in sorted(x for x in files if x):
        try:
            sources[f] = file_sha256(f)
        except OSError:
            sources[f] = "unreadable"
    return sha({"manifest": raw, "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "sources": sorted(sources.values())})


@dataclass
class Job:
    """One (layer, measure) of a checkpoint, with the cache file its rows go to."""

    layer: str
    measure: str
    cache_file: Optional[str]


@dataclass
class Unit:
    """One checkpoint of a run, with every (layer, measure) job still to compute."""

    run: str
    config: str
    seed: Optional[int]
    run_dir: str
    checkpoint: str
    order: int
    epoch: Optional[float]
    step: Optional[float]
    manifest: Any
    jobs: List[Job]
    options: Dict[str, Any]

    def base_row(self, layer: str) -> Dict[str, Any]:
        from infodyn.runs import checkpoint_name

        return {"run": self.run, "config": self.config, "seed": self.seed, "checkpoint": checkpoint_name(self.checkpoint),
                "order": self.order, "epoch": self.epoch, "step": self.step, "layer": layer, "task": "",
                "value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "method": "", "params": "{}",
                "n": 0, "seconds": 0.0, "error": ""}


def job_key(measure: str, layer: str, opts: Dict[str, Any]) -> str:
    """The content key of one job (module doc), as a short hex string."""
    from infodyn import __version__

    m = registry.get(measure)
    key = {"format": CACHE_FORMAT, "infodyn": __version__, "measure": measure, "version": m.version,
           "settings": registry.settings(measure, opts["params"]), "layer": layer, "seed": opts["seed"],
           "checkpoint": opts["ckpt_hash"], "model": opts["model_digest"], "source": opts["source_digest"]}
    if m.scope == "layer":  # features: how they were pooled, and whether in float16 (AMP on CUDA)
        key.update(pool=opts["pool"], amp=bool(opts.get("amp")))
    if "plane" in m.needs:
        key["max_samples"] = opts["max_samples"]
    if "target" in m.needs:
        key["target"] = opts["target_digest"]
    if "history" in m.needs:
        key["history"] = {k: opts.get(k) for k in ("landscape_options", "prev_hash", "first_hash")}
    return sha(key)[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _num(v) -> Optional[float]:
    """A finite float, else None (epochs of 1e300 or 2**63 are kept as given; inf/nan dropped)."""
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def plan_units(runs: Sequence[Run], measures: Sequence[str], out: Optional[Path], opts: Dict[str, Any],
               data_digests: Dict[str, str]) -> List[Unit]:
    """One unit per checkpoint of every run, holding every job (cached or not), in a fixed order.

    ``data_digests`` maps each data reference to its content digest."""
    from infodyn.runs import build_model, checkpoint_sha256, resolve_layers

    units = []
    layer_measures = [m for m in measures if registry.get(m).scope == "layer"]
    ckpt_measures = [m for m in measures if registry.get(m).scope == "checkpoint"]
    for run in runs:
        man = run.manifest
        model = build_model(man, checkpoint=run.checkpoints[0].path)  # (load: model) no second discovery
        run.model_digest = model_digest(man, model)
        if layer_measures:
            try:
                run.layers = list(resolve_layers(model, man.layers))
            except ValueError as exc:
                raise ValueError(f"{man.path}: key 'layers': {exc}") from None
        target = getattr(man, "data_target", None)
        ropts = {**opts, "source": man.data_source, "target": target, "has_target": bool(target),
                 "pool": opts.get("pool") or getattr(man, "pool", None) or "auto",
                 "model_digest": run.model_digest, "source_digest": data_digests[man.data_source],
                 "target_digest": data_digests.get(target) if target else None}
        hashes = []
        for ck in run.checkpoints:
            try:
                hashes.append(checkpoint_sha256(Path(ck.path)))
            except OSError as exc:
                hashes.append(f"unreadable-{exc.errno}")
        for order, ck in enumerate(run.checkpoints):
            path = Path(ck.path)
            prev = run.checkpoints[order - 1] if order else None
            copts = {**ropts, "ckpt_hash": hashes[order], "recorded_acc": getattr(ck, "source_acc", None),
                     "first_ckpt": str(run.checkpoints[0].path), "first_hash": hashes[0],
                     "prev_ckpt": str(prev.path) if prev is not None else None,
                     "prev_hash": hashes[order - 1] if order else None}
            pairs = [(layer, m) for layer in run.layers for m in layer_measures]
            pairs += [(registry.layer_of(registry.get(m)), m) for m in ckpt_measures]
            jobs = []
            for layer, m in pairs:
                cache = (str(out / "units" / _safe(run.name) / f"{_safe(path.stem)}-{hashes[order][:12]}" /
                             f"{_safe(layer)}.{_safe(m)}.{job_key(m, layer, copts)}.json") if out is not None else None)
                jobs.append(Job(layer, m, cache))
            units.append(Unit(run.name, run.config, run.seed, str(run.path), str(path), order,
                              _num(getattr(ck, "epoch", None)), _num(getattr(ck, "step", None)),
                              man, jobs, copts))
    return units


__all__ = ["Run", "Unit", "Job", "open_runs", "expand_run_dirs", "seed_and_config", "plan_units", "job_key",
           "model_digest", "CACHE_FORMAT"]

"""``infodyn.analyze``: checkpoints x layers x measures -> one tidy table."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import pandas as pd

from . import cache
from . import measures as registry
from .cluster import run_all
from .plan import Run, Unit, open_runs, plan_units
from .table import to_frame, write_table

MARKER = ".infodyn-analysis"


class AnalysisInterrupted(KeyboardInterrupt):
    """Ctrl-C during an analysis; ``saved`` of ``total`` jobs are on disk and a rerun resumes."""

    def __init__(self, saved: int, total: int, out: Optional[Path]):
        self.saved, self.total, self.out = saved, total, out
        super().__init__(f"interrupted: {saved} of {total} (checkpoint, layer, measure) results saved"
                         + (f" in {out}; run the same command to resume" if out is not None else
                            " (no --out: nothing kept)"))


def claim_out(out: Path) -> Path:
    """Creates ``out`` or checks that infodyn wrote it (so no user file is ever overwritten).

    A folder an older infodyn analysis wrote (``units/`` + ``manifests.json``) counts as ours."""
    from infodyn._files import claim_output_folder

    if out.is_dir() and not (out / MARKER).exists() and (out / "units").is_dir() and (out / "manifests.json").is_file():
        (out / MARKER).write_text("written by infodyn analyze\n")
    return claim_output_folder(out, MARKER, "infodyn analyze", "choose an empty or new --out folder",
                               "written by infodyn analyze: results, caches, figures and report.html\n")


def _preflight(runs: Sequence[Run], seed: int) -> Dict[str, str]:
    """Loads every data set before anything runs (a mistake there would fail every checkpoint)
    and returns each data reference's content digest. (Measure settings are checked by
    :func:`.measures.check_params`, the first checkpoint by :func:`_check_first_checkpoint`.)"""
    from .execute import data_digest, forget_data

    forget_data()  # data are read afresh for every analysis (edited files, notebooks)
    digests: Dict[str, str] = {}
    for run in runs:
        man = run.manifest
        for key, ref in (("data.source", man.data_source), ("data.target", getattr(man, "data_target", None))):
            if ref is None or ref in digests:
                continue
            try:
                digests[ref] = data_digest(ref, seed)
            except Exception as exc:
                raise ValueError(f"{man.path}: key '{key}' ({ref!r}): {type(exc).__name__}: {exc}") from None
    return digests


def _check_first_checkpoint(run: Run, trust: bool) -> None:
    """Loads the run's first checkpoint into its model; when it fails and the last one fails the
    same way, nothing can succeed: stop with one message."""
    from infodyn.runs import load_model

    def attempt(ck) -> Optional[str]:
        try:
            load_model(run.manifest, ck.path, trust=trust)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    first = attempt(run.checkpoints[0])
    if first is None or len(run.checkpoints) == 1:
        if first is not None:
            raise ValueError(f"run {run.name}: {first}")
        return
    if attempt(run.checkpoints[-1]) is not None:
        raise ValueError(f"run {run.name}: neither its first nor its last checkpoint fits the model "
                         f"({run.manifest.path}: key 'model'); nothing was computed. First: {first}")


def analyze(run_dirs, measures: Union[None, str, Sequence[str]] = None, out: Union[None, str, os.PathLike] = None,
            jobs: int = 1, device: str = "auto", *, seed: int = 0, max_samples: Optional[int] = 4096,
            params: Optional[Dict[str, Dict[str, Any]]] = None,
            plane_params: Optional[Dict[str, Dict[str, Any]]] = None, batch_size: int = 512, pool: Optional[str] = None,
            trust: bool = False, progress: bool = True, feature_cache: bool = True, amp: Optional[bool] = None,
            threads: Optional[int] = None, landscape_options: Optional[Dict[str, Any]] = None,
            scheduler: Any = None) -> pd.DataFrame:
    """Every measure on every (checkpoint, layer) of one or more runs, as one tidy table.

    Each checkpoint is loaded once and the data run through it once (batched, ``no_grad``, eval
    mode) with hooks on every layer; then every measure of every layer is computed. Each
    (checkpoint, layer, measure) result is cached under ``OUT/units`` by a content key (the
    checkpoint's bytes, the model and every manifest setting, the data's content, the measure
    and its settings, infodyn's version): a rerun computes only what is missing or changed.

    Args:
        run_dirs: a run folder (with ``infodyn.yaml``), a folder of run folders, or a list.
        measures: names or a comma-separated string, from :func:`infodyn.analysis.available`
            (information-plane methods, ``linear_probe``, ``knn``, ``fewshot_probe``, ``rankme``,
            ``nc1``, ``overcompression``, ``source_acc``, the landscape measures); default
            :data:`DEFAULT_MEASURES`.
        out: output folder (results.csv (+ .parquet), ``checkpoints.txt`` (what discovery took and
            skipped in each run, and why), ``units/`` and ``features/`` caches). It must
            be new, empty or written by infodyn analyze before: a user's files are never
            overwritten. None keeps everything in memory (no cache).
        jobs: parallel worker processes (joblib), each taking whole checkpoints; -1 = one per CPU.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        seed: seeds the transfer folds, the plane subsample and every measure.
        max_samples: cap on the source samples used for the information plane, RankMe, NC1 and
            the score (seeded subsample, drawn before the forward pass); None for all.
        params: per-measure parameters, e.g. ``{"kde": {"noise_var": 1e-3}, "knn": {"k": 10}}``;
            a name a measure does not take, or a measure not measured, is a ValueError.
        plane_params: the same (older name; merged into ``params``).
        batch_size, pool, amp: feature extraction (``amp`` default: on for CUDA).
        trust: allow the Python objects checkpoints name (their code runs; only your own files).
        progress: a tqdm bar over checkpoints.
        feature_cache: keep extracted features under ``OUT/features``.
        threads: torch threads per worker (default 1).
        landscape_options: overrides of :data:`infodyn.landscape.measures.DEFAULTS`.
        scheduler: a Dask scheduler address or ``distributed.Client`` (checkpoints go to the
            cluster; workers must see the same paths).

    Returns:
        the table (:data:`infodyn.tradeoff.COLUMNS`); rows of a failed checkpoint carry ``error``.

    Raises:
        ValueError: before any work, for a mistake that would fail every checkpoint (data,
            estimator settings, layers, checkpoints that do not fit the model) or a foreign ``out``.
        AnalysisInterrupted: on Ctrl-C, saying how much was saved.
    """
    from infodyn import analysis as pkg  # run_unit looked up at call time (tests count its calls)

    ms = registry.parse_measures(measures)
    merged: Dict[str, Dict[str, Any]] = {}
    for src in (plane_params or {}, params or {}):
        for k, v in src.items():
            merged.setdefault(k, {}).update(v)
    merged = registry.check_params(merged, ms)
    runs = open_runs(run_dirs)
    outp = Path(out) if out is not None else None
    if outp is not None:
        for run in runs:
            if outp.resolve() == run.path.resolve():
                raise ValueError(f"--out {outp} is the run folder {run.path}; choose another folder (nothing was changed)")
        claim_out(outp)
    n_jobs = (os.cpu_count() or 1) if jobs == -1 else max(1, int(jobs))
    from infodyn.estimators import resolve_device

    opts = {"seed": int(seed), "max_samples": max_samples, "params": merged, "device": device,
            "batch_size": batch_size, "pool": pool, "trust": trust,
            "amp": (str(resolve_device(device)).startswith("cuda") if amp is None else bool(amp)),
            "threads": threads or 1, "landscape_options": dict(landscape_options) if landscape_options else None,
            "cache_dir": str(outp / "features") if (outp is not None and feature_cache) else None}
    digests = _preflight(runs, int(seed))
    units = plan_units(runs, ms, outp, opts, digests)
    rows: List[Dict[str, Any]] = []
    todo: List[Unit] = []
    total = sum(len(u.jobs) for u in units)
    for u in units:
        missing = []
        for job in u.jobs:
            got = cache.load(u, job)
            if got is None:
                missing.append(job)
            else:
                rows.extend(got)
        if missing:
            u.jobs = missing
            todo.append(u)
    for run in runs:
        if any(u.run == run.name for u in todo):
            _check_first_checkpoint(run, trust)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"analyze ({len(units) - len(todo)} of {len(units)} checkpoints cached)",
                   unit="checkpoint")
    try:
        for got in run_all(lambda u: pkg.run_unit(u), todo, n_jobs, scheduler):
            rows.extend(got)
            if bar:
                if got:  # which run and checkpoint just finished (tqdm shows elapsed and remaining)
                    bar.set_postfix_str(f"{got[0]['run']} {got[0]['checkpoint']}", refresh=False)
                bar.update(1)
    except KeyboardInterrupt:
        saved = sum(1 for u in units for j in u.jobs if j.cache_file and os.path.exists(j.cache_file))
        saved += total - sum(len(u.jobs) for u in units)
        raise AnalysisInterrupted(saved, total, outp) from None
    finally:
        if bar:
            bar.close()
    df = to_frame(rows)
    if outp is not None:
        write_table(df, outp)
        from infodyn._atomic import atomic_write_text

        atomic_write_text(outp / "manifests.json", json.dumps({r.name: r.manifest_text for r in runs}, indent=1))
        atomic_write_text(outp / "checkpoints.txt", "".join(f"# {r.name} ({r.path})\n{r.listing}\n\n" for r in runs))
    return df


__all__ = ["analyze", "AnalysisInterrupted", "claim_out", "MARKER"]

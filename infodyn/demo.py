"""``infodyn demo``: the main job end to end on bundled data, offline.

It trains small networks while :class:`infodyn.hooks.CheckpointRecorder` saves checkpoints, then
runs :func:`infodyn.analyze` over them and writes the figures and ``report.html``:

* the 12-bit task of Shwartz-Ziv & Tishby with the 12-10-7-5-4-3-2 network, tanh and ReLU
  (information plane over all 4096 patterns: binning with 30 bins, KDE with the absolute noise variance 1e-3);
* digits with a class-split transfer target: trained on ``digits:0-4``, probed on
  ``digits:5-9`` (linear probe, k-NN and few-shot probe on both tasks, RankMe, the
  over-compression score): a trade-off run whose target transfer falls while source accuracy
  rises, beside a control whose transfer holds; the over-compression verdict of each is printed
  (see :func:`plan`).

Layout of the output folder::

    OUT/runs/<run>/          checkpoints + infodyn.yaml (analyse them again with `infodyn analyze`)
    OUT/analysis/<group>/    per-group results and caches
    OUT/results.csv          every row of both groups; OUT/*.png; OUT/report.html

An existing OUT is reused only when an earlier ``infodyn demo`` wrote it (it holds the marker
file ``.infodyn-demo``); anything else is refused, so no user file is overwritten.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

MARKER = ".infodyn-demo"
DONE = "demo-run.json"  # in each run folder once its training finished: the run's settings


@dataclass(frozen=True)
class DemoRun:
    """One training run of the demo."""

    name: str
    source: str
    target: Optional[str]
    model: str
    model_kwargs: Dict
    layers: List[str]
    epochs: int
    checkpoints: int
    lr: float
    batch_size: int
    seed: int


@dataclass(frozen=True)
class Plan:
    runs: List[DemoRun]
    groups: Dict[str, Dict] = field(default_factory=dict)  # group -> {runs, measures, plane_params}


def plan(quick: bool = False) -> Plan:
    """The runs and analyses of the demo (``quick``: fewer epochs, checkpoints and seeds).

    * ``ib12bit-tanh``/``ib12bit-relu``: the 12-10-7-5-4-3-2 network, Adam lr 1e-2, batch 256,
      600 epochs (the classic replication of Saxe et al. 2018; measured over 3 seeds in
      benchmarks/results/ib12bit_replication.md: the deep tanh layers compress by 2-3 bits under
      binning and KDE; ReLU layers barely move under KDE but fall 0.5-0.9 bits under 30-bin binning,
      whose bins widen as the activations grow).
    * ``digits-tradeoff``: the trade-off setting of benchmarks/known_runs.py (MLP 64-[128,16]-5
      ReLU, Adam 1e-3, batch 32, 300 epochs on digits 0-4): source accuracy rises to ~1 while
      transfer to digits 5-9 falls (the verdict fires).
    * ``digits-holds``: the control of the same file (MLP 64-[128,64]-5, Adam 1e-4, 10 epochs):
      source accuracy rises to ~0.85 while transfer stays within noise (no verdict).
    """
    ib_epochs, ib_ckpts = (40, 4) if quick else (600, 12)
    tr_epochs, tr_ckpts, seeds = (30, 4, (0,)) if quick else (300, 12, (0, 1, 2))
    ib_layers = ["fc1", "fc2", "fc3", "fc4", "fc5"] if not quick else ["fc1", "fc3", "fc5"]
    runs = [DemoRun(f"ib12bit-{act}-seed0", "ib12bit", None, "infodyn.models:ib12bit_net", {"activation": act},
                    ib_layers, ib_epochs, ib_ckpts, 1e-2, 256, 0) for act in ("tanh", "relu")]
    runs += [DemoRun(f"digits-tradeoff-seed{s}", "digits:0-4", "digits:5-9", "infodyn.models:mlp",
                     {"in_dim": 64, "hidden": [128, 16], "num_classes": 5, "activation": "relu"},
                     ["fc1", "fc2"], tr_epochs, tr_ckpts, 1e-3, 32, s) for s in seeds]
    runs += [DemoRun(f"digits-holds-seed{s}", "digits:0-4", "digits:5-9", "infodyn.models:mlp",
                     {"in_dim": 64, "hidden": [128, 64], "num_classes": 5, "activation": "relu"},
                     ["fc1", "fc2"], 10, 4 if quick else 8, 1e-4, 32, s) for s in seeds]
    groups = {
        "ib12bit": {"runs": [r.name for r in runs if r.source == "ib12bit"],
                    "measures": ["binning", "kde", "source_acc", "overcompression"],
                    # the classic absolute settings of the replication (analyze's KDE default is relative)
                    "plane_params": {"binning": {"n_bins": 30}, "kde": {"noise_var": 1e-3, "scale": "absolute"}},
                    "max_samples": 1024 if quick else None},  # the full plane is over all 4096 patterns
        "digits": {"runs": [r.name for r in runs if r.source.startswith("digits")],
                   "measures": ["binning", "kde", "linear_probe", "knn", "fewshot_probe", "rankme", "source_acc",
                                "overcompression"],
                   "plane_params": {}, "max_samples": None},
    }
    return Plan(runs, groups)


def prepare_out(out: Path) -> Path:
    """Creates ``out`` or checks that an existing one was written by the demo."""
    from infodyn._files import claim_output_folder

    return claim_output_folder(out, MARKER, "`infodyn demo`", "choose another --out",
                               "written by `infodyn demo`; safe to delete with the folder\n")


def _accuracy(model, x, y) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train(run: DemoRun, run_dir: Path) -> List[Path]:
    """Trains one run with plain cross-entropy (Adam) and records its checkpoints."""
    import torch

    from infodyn.data import load

    ds = load(run.source, seed=0)
    data = {"source": run.source, **({"target": run.target} if run.target else {})}
    manifest = {"model": run.model, "model_kwargs": dict(run.model_kwargs), "data": data,
                "layers": list(run.layers), "name": run.name}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: more threads only add contention
    try:
        return _train(run, run_dir, ds, manifest)
    finally:
        torch.set_num_threads(threads)


def _train(run: DemoRun, run_dir: Path, ds, manifest) -> List[Path]:
    import torch

    from infodyn.hooks import CheckpointRecorder
    from infodyn.runs import build_model, parse_manifest

    torch.manual_seed(run.seed)
    model = build_model(parse_manifest({**manifest, "checkpoints": "epoch*.pt"}, run_dir / "infodyn.yaml"))
    rec = CheckpointRecorder(run_dir, model, log_spaced=run.checkpoints, total_epochs=run.epochs,
                             manifest=manifest, overwrite=True)
    opt = torch.optim.Adam(model.parameters(), lr=run.lr)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    gen = torch.Generator().manual_seed(run.seed)
    rec.step(epoch=0, source_acc=_accuracy(model.eval(), ds.x_test, ds.y_test))
    for epoch in range(1, run.epochs + 1):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), run.batch_size):
            idx = perm[i:i + run.batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        if rec.due(epoch):
            rec.step(epoch=epoch, source_acc=_accuracy(model.eval(), ds.x_test, ds.y_test))
    return rec.saved


# Seconds per unit of work on the reference machine (two CPU cores, --jobs 2), from a measured
# `infodyn demo`: training ~0.75 ms per optimiser step; analysis per (checkpoint, layer) and measure.
# They only seed the remaining-time estimate, which is rescaled by the speed observed so far.
_SEC_PER_STEP = 7.5e-4
_SEC_PER_MEASURE = {"kde": 0.3, "binning": 0.01, "overcompression": 0.08, "linear_probe": 0.3, "knn": 0.05,
                    "fewshot_probe": 0.2, "rankme": 0.01, "nc1": 0.01, "source_acc": 0.002}
_SAMPLES = {"ib12bit": (3481, 4096), "digits": (541, 901)}  # (training samples, all samples) of the bundled sets


def _stage_estimates(p: Plan) -> List[float]:
    """Predicted seconds of each stage (every run's training, then every group's analysis) on the
    reference machine: a prior for the remaining-time estimate, not a promise."""
    import math

    def sizes(source: str):
        return _SAMPLES.get(source.split(":")[0], (1000, 1000))

    out = []
    for run in p.runs:
        out.append(run.epochs * math.ceil(sizes(run.source)[0] / run.batch_size) * _SEC_PER_STEP)
    by_name = {r.name: r for r in p.runs}
    for spec in p.groups.values():
        total = 0.0
        for name in spec["runs"]:
            run = by_name[name]
            n_all = sizes(run.source)[1]
            n = min(n_all, spec.get("max_samples") or n_all)
            for m in spec["measures"]:
                cost = _SEC_PER_MEASURE.get(m, 0.1)
                if m == "kde":
                    cost *= (n / 4096) ** 2
                per = 1 if m == "source_acc" else len(run.layers)
                total += run.checkpoints * per * cost
        out.append(total)
    return out


class _Progress:
    """One line per stage: which stage of how many, elapsed time, and the remaining time predicted
    by the stage estimates scaled by how fast the finished stages went on this machine."""

    def __init__(self, estimates: List[float], log: Callable[[str], None]):
        self.est, self.log, self.t0, self.done = list(estimates), log, time.perf_counter(), 0
        self.spent_est, self.spent = 0.0, 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        speed = self.spent / self.spent_est if self.spent_est > 0.5 else 1.0  # seconds per predicted second
        return max(0.0, sum(self.est[self.done:]) * min(max(speed, 0.2), 20.0))

    @staticmethod
    def _clock(sec: float) -> str:
        return f"{sec:.0f} s" if sec < 90 else f"{sec / 60:.1f} min"

    def start(self, what: str) -> None:
        self.log(f"[{self._clock(self.elapsed()):>7s}] stage {self.done + 1}/{len(self.est)}: {what} "
                 f"(about {self._clock(self.remaining())} left)")
        self._t = time.perf_counter()

    def finish(self, what: str, skipped: bool = False) -> None:
        took = time.perf_counter() - self._t
        if not skipped:  # a reused stage says nothing about this machine's speed
            self.spent += took
            self.spent_est += self.est[self.done]
        self.done += 1
        self.log(f"[{self._clock(self.elapsed()):>7s}]   {what} ({took:.1f} s)")


def run_demo(out="infodyn_demo", quick: bool = False, jobs: int = 1, device: str = "auto",
             progress: bool = True, log: Callable[[str], None] = print):
    """Trains, analyses and reports; returns (table, report path). See the module doc.

    ``log`` receives one line per stage (training of each run, analysis of each group): the
    stage, the elapsed time and an estimate of the time left; ``progress`` adds the analysis'
    own progress bar."""
    import pandas as pd

    from infodyn import plots, report
    from infodyn._atomic import atomic_write_text
    from infodyn.analysis import analyze, write_table
    from infodyn.tradeoff import format_verdicts, verdicts

    out = prepare_out(Path(out))
    p = plan(quick)
    prog = _Progress(_stage_estimates(p), log)
    t0 = prog.t0
    log(f"infodyn demo{' --quick' if quick else ''}: {len(p.runs)} training runs, then {len(p.groups)} analyses, "
        f"into {out}")
    for run in p.runs:
        run_dir = out / "runs" / run.name
        done = run_dir / DONE
        prog.start(f"training {run.name} ({run.epochs} epochs on {run.source})")
        if done.is_file() and json.loads(done.read_text()) == asdict(run):
            prog.finish(f"reused {run.name} (trained by an earlier `infodyn demo`)", skipped=True)
            continue
        saved = train(run, run_dir)
        atomic_write_text(done, json.dumps(asdict(run)))
        prog.finish(f"trained {run.name}: {run.epochs} epochs, {len(saved)} checkpoints")
    tables = []
    for group, spec in p.groups.items():
        prog.start(f"analysing {group}: {len(spec['runs'])} run(s) x {', '.join(spec['measures'])}")
        df = analyze([out / "runs" / name for name in spec["runs"]], measures=spec["measures"],
                     out=out / "analysis" / group, jobs=jobs, device=device, plane_params=spec["plane_params"],
                     progress=progress, threads=1, max_samples=spec["max_samples"])
        tables.append(df)
        prog.finish(f"analysed {group}: {len(df)} rows")
    df = pd.concat(tables, ignore_index=True)
    write_table(df, out)
    log(f"[{prog._clock(prog.elapsed()):>7s}] figures and report")
    figs = plots.plot_all(df, out)
    manifests = {r.name: (out / "runs" / r.name / "infodyn.yaml").read_text() for r in p.runs}
    settings = {"plan": "quick" if quick else "full", "jobs": jobs, "device": device,
                **{f"analysis {g}": {"runs": s["runs"], "measures": s["measures"], "plane_params": s["plane_params"],
                                     "max_samples": s["max_samples"] or "all"} for g, s in p.groups.items()}}
    notes = [f"infodyn demo{' --quick' if quick else ''}: {len(p.runs)} runs trained and analysed in "
             f"{time.perf_counter() - t0:.0f} s."]
    v = verdicts(df)
    path = report.write_report(df, out / "report.html", figs, manifests=manifests, title="infodyn demo", notes=notes,
                               settings=settings, verdicts=v)
    log("")
    log(format_verdicts(v))
    log("")
    log(f"{len(df)} rows -> {out / 'results.csv'}")
    log(f"figures -> {', '.join(str(f) for f in figs.values())}")
    log(f"report -> {path}  (open it in a browser)")
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return df, path


__all__ = ["run_demo", "plan", "prepare_out", "train", "DemoRun", "MARKER"]

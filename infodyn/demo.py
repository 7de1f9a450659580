"""``infodyn demo``: the main job end to end on bundled data, offline.

It trains small networks while :class:`infodyn.hooks.CheckpointRecorder` saves checkpoints, then
runs :func:`infodyn.analyze` over them and writes the figures and ``report.html``:

* the 12-bit task of Shwartz-Ziv & Tishby with the 12-10-7-5-4-3-2 network, tanh and ReLU
  (information plane over all 4096 patterns: binning with 30 bins, KDE with noise variance 1e-3);
* digits with a class-split transfer target: trained on ``digits:0-4``, probed on
  ``digits:5-9`` (linear probe and k-NN on both tasks, RankMe, the over-compression score).

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
    """The runs and analyses of the demo (``quick``: fewer epochs, checkpoints and seeds)."""
    ib_epochs, ib_ckpts = (40, 4) if quick else (400, 12)
    dg_epochs, dg_ckpts, dg_seeds = (25, 4, (0,)) if quick else (150, 12, (0, 1, 2))
    ib_layers = ["fc1", "fc2", "fc3", "fc4", "fc5"] if not quick else ["fc1", "fc3", "fc5"]
    runs = [DemoRun(f"ib12bit-{act}-seed0", "ib12bit", None, "infodyn.models:ib12bit_net", {"activation": act},
                    ib_layers, ib_epochs, ib_ckpts, 3e-3, 256, 0) for act in ("tanh", "relu")]
    runs += [DemoRun(f"digits-seed{s}", "digits:0-4", "digits:5-9", "infodyn.models:mlp",
                     {"in_dim": 64, "hidden": [64, 32], "num_classes": 5, "activation": "relu"},
                     ["fc1", "fc2"], dg_epochs, dg_ckpts, 2e-3, 64, s) for s in dg_seeds]
    groups = {
        "ib12bit": {"runs": [r.name for r in runs if r.source == "ib12bit"],
                    "measures": ["binning", "kde", "source_acc", "overcompression"],
                    "plane_params": {"binning": {"n_bins": 30}, "kde": {"noise_var": 1e-3}},
                    "max_samples": 1024 if quick else None},  # the full plane is over all 4096 patterns
        "digits": {"runs": [r.name for r in runs if r.source.startswith("digits")],
                   "measures": ["binning", "kde", "linear_probe", "knn", "rankme", "source_acc", "overcompression"],
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


def run_demo(out="infodyn_demo", quick: bool = False, jobs: int = 1, device: str = "auto",
             progress: bool = True, log: Callable[[str], None] = print):
    """Trains, analyses and reports; returns (table, report path). See the module doc."""
    import pandas as pd

    from infodyn import plots, report
    from infodyn._atomic import atomic_write_text
    from infodyn.analysis import analyze, write_table
    from infodyn.tradeoff import format_summary, onset

    out = prepare_out(Path(out))
    p = plan(quick)
    t0 = time.perf_counter()
    for run in p.runs:
        t1 = time.perf_counter()
        run_dir = out / "runs" / run.name
        done = run_dir / DONE
        if done.is_file() and json.loads(done.read_text()) == asdict(run):
            log(f"reusing {run.name} (trained by an earlier `infodyn demo`)")
            continue
        saved = train(run, run_dir)
        atomic_write_text(done, json.dumps(asdict(run)))
        log(f"trained {run.name}: {run.epochs} epochs, {len(saved)} checkpoints ({time.perf_counter() - t1:.1f} s)")
    tables = []
    for group, spec in p.groups.items():
        t1 = time.perf_counter()
        df = analyze([out / "runs" / name for name in spec["runs"]], measures=spec["measures"],
                     out=out / "analysis" / group, jobs=jobs, device=device, plane_params=spec["plane_params"],
                     progress=progress, threads=1, max_samples=spec["max_samples"])
        tables.append(df)
        log(f"analysed {group}: {len(df)} rows ({time.perf_counter() - t1:.1f} s)")
    df = pd.concat(tables, ignore_index=True)
    write_table(df, out)
    figs = plots.plot_all(df, out)
    manifests = {r.name: (out / "runs" / r.name / "infodyn.yaml").read_text() for r in p.runs}
    notes = [f"infodyn demo{' --quick' if quick else ''}: {len(p.runs)} runs trained and analysed in "
             f"{time.perf_counter() - t0:.0f} s."]
    path = report.write_report(df, out / "report.html", figs, manifests=manifests, title="infodyn demo", notes=notes)
    log("")
    log(format_summary(onset(df)))
    log("")
    log(f"{len(df)} rows -> {out / 'results.csv'}")
    log(f"figures -> {', '.join(str(f) for f in figs.values())}")
    log(f"report -> {path}  (open it in a browser)")
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return df, path


__all__ = ["run_demo", "plan", "prepare_out", "train", "DemoRun", "MARKER"]

"""The whole study in one call: information vs capacity, learning curves, cost-benefit, effects.

Used by ``infodyn supervision`` and the notebook; every table it makes is tidy and goes into one
CSV with an ``experiment`` column (information, learning, cost_benefit, information_sweep,
learning_sweep) and a ``signal`` column.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence

from .cost import CostModel, cost_benefit
from .effects import SIGNAL_PARAMS, TASK_PARAMS, information_sweep, learning_sweep
from .information import information_table
from .learning import TrainConfig, learning_curves, torch_threads
from .simulate import SIMULATED, make_task

DEFAULT_INFO_SWEEPS = {"classes": (2, 5, 10, 20), "dims": (2, 4, 8, 32), "votes": (1, 2, 5, 10),
                       "noise": (0.0, 0.1, 0.3, 0.6)}
DEFAULT_LEARN_SWEEPS = {"noise": (0.0, 0.2, 0.4), "classes": (5, 10, 20)}


@dataclass
class StudyResult:
    """The tables of one study (pandas DataFrames; sweeps may be None)."""

    information: object
    learning: object
    cost_benefit: object
    information_sweep: Optional[object] = None
    learning_sweep: Optional[object] = None
    settings: Dict[str, object] = field(default_factory=dict)

    def table(self):
        """All tables stacked into one tidy table with an ``experiment`` column."""
        import pandas as pd

        parts = []
        for name in ("information", "learning", "cost_benefit", "information_sweep", "learning_sweep"):
            df = getattr(self, name)
            if df is not None and len(df):
                parts.append(df.assign(experiment=name))
        out = pd.concat(parts, ignore_index=True, sort=False)
        first = ["experiment", "signal", "model", "budget", "cost_seconds", "seed", "measure", "value",
                 "about", "method", "bits", "capacity_bits", "param", "param_value"]
        cols = [c for c in first if c in out.columns] + [c for c in out.columns if c not in first]
        return out[cols]

    def save(self, out: str, plots: bool = True) -> Dict[str, Path]:
        """Writes ``supervision.csv`` and the PNG plots into the folder ``out`` (atomically per file)."""
        outdir = Path(out)
        outdir.mkdir(parents=True, exist_ok=True)
        written = {"table": _atomic(outdir / "supervision.csv", lambda p: self.table().to_csv(p, index=False))}
        if plots:
            from . import plots as P
            import matplotlib.pyplot as plt

            figs = {"information": P.plot_information(self.information),
                    "learning": P.plot_learning(self.learning),
                    "cost_benefit": P.plot_cost_benefit(self.cost_benefit)}
            if self.information_sweep is not None or self.learning_sweep is not None:
                figs["effects"] = P.plot_effects(self.information_sweep, self.learning_sweep,
                                                 measure=str(self.settings.get("measure", "few_shot_acc")))
            for name, fig in figs.items():
                written[name] = _atomic(outdir / f"{name}.png", lambda p, f=fig: f.savefig(p, dpi=110, format="png"))
                plt.close(fig)
        return written


def _atomic(path: Path, write) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def run_study(
    *,
    classes: int = 10,
    dims: int = 32,
    votes: int = 5,
    noise: float = 0.0,
    seeds: Sequence[int] = (0, 1, 2),
    budgets: Sequence[int] = (20, 50, 100, 200, 500),
    models: Sequence[str] = ("linear", "mlp"),
    signals: Sequence[str] = ("hard", "soft", "posterior", "triplet"),
    task_kwargs: Optional[dict] = None,
    costs: CostModel = CostModel(),
    measure: str = "few_shot_acc",
    info_n: int = 2000,
    info_methods: Sequence[str] = ("exact", "plugin", "ksg"),
    info_sweeps: Optional[Dict[str, Sequence]] = None,
    learn_sweeps: Optional[Dict[str, Sequence]] = None,
    sweep_budget: int = 100,
    config: TrainConfig = TrainConfig(),
    device: str = "auto",
    num_threads: Optional[int] = 1,
    progress=None,
) -> StudyResult:
    """Runs the study. ``info_sweeps`` / ``learn_sweeps``: {setting: values} (None = the defaults
    DEFAULT_INFO_SWEEPS / DEFAULT_LEARN_SWEEPS, {} = none; sweeps use the exact method).
    ``info_methods``: methods of the information table ("exact", "plugin", "mc", or any infodyn
    estimator name, e.g. "gaussian", "ksg"). ``num_threads``: torch CPU threads for the whole study
    (1 is fastest for these small problems; None leaves torch's setting). ``progress``: a
    callable(str) or None."""
    bad = [m for m in models if m not in ("linear", "mlp")]
    if bad or not models:
        raise ValueError(f"models must be among linear, mlp; got {list(models)}")
    bad = [x for x in signals if x not in SIMULATED]
    if bad or not signals:
        raise ValueError(f"signals must be among {', '.join(SIMULATED)}; got {list(signals)}")
    if not budgets or min(int(b) for b in budgets) < 1:
        raise ValueError(f"budgets must be >= 1, got {list(budgets)}")
    for sweeps in (info_sweeps or {}, learn_sweeps or {}):
        unknown = [p for p in sweeps if p not in TASK_PARAMS + SIGNAL_PARAMS]
        if unknown:
            raise ValueError(f"cannot sweep {unknown}; known: {', '.join(TASK_PARAMS + SIGNAL_PARAMS)}")
    seeds = [int(x) for x in seeds]
    with torch_threads(num_threads):  # small problems: one thread is fastest, and no thrashing
        return _run(classes, dims, votes, noise, seeds, budgets, models, signals, task_kwargs, costs, measure,
                    info_n, info_methods, info_sweeps, learn_sweeps, sweep_budget, config, device, progress)


def _run(classes, dims, votes, noise, seeds, budgets, models, signals, task_kwargs, costs, measure, info_n,
         info_methods, info_sweeps, learn_sweeps, sweep_budget, config, device, progress):
    say = progress or (lambda _msg: None)
    task_kw = {"classes": classes, "dims": dims, **(task_kwargs or {})}
    base = {**task_kw, "votes": votes, "noise": noise}
    info_sweeps = DEFAULT_INFO_SWEEPS if info_sweeps is None else info_sweeps
    learn_sweeps = DEFAULT_LEARN_SWEEPS if learn_sweeps is None else learn_sweeps

    say("information vs capacity")
    infos = []
    for seed in seeds:
        task = make_task(seed=int(seed), **task_kw)
        infos.append(information_table(task, signals=signals, votes=votes, noise=noise, n=info_n, seed=int(seed),
                                       methods=info_methods,
                                       extra={"seed": int(seed), "classes": classes, "dims": dims}))
    import pandas as pd

    info = pd.concat(infos, ignore_index=True)
    say("learning curves")
    learning = learning_curves(signals=signals, budgets=budgets, models=models, seeds=seeds, votes=votes,
                               noise=noise, task_kwargs=task_kw, config=config, device=device)
    curve = cost_benefit(learning, costs, measure)
    isw = lsw = None
    if info_sweeps:
        say(f"information sweeps: {', '.join(info_sweeps)}")
        isw = pd.concat([information_sweep(p, v, base=base, signals=signals, n=min(info_n, 1000), seeds=seeds[:1])
                         for p, v in info_sweeps.items()], ignore_index=True)
    if learn_sweeps:
        say(f"learning sweeps: {', '.join(learn_sweeps)}")
        lsw = pd.concat([learning_sweep(p, v, base=base, budgets=(sweep_budget,), signals=signals,
                                        models=models[:1], seeds=seeds, config=config, device=device)
                         for p, v in learn_sweeps.items()], ignore_index=True)
    settings = {"classes": classes, "dims": dims, "votes": votes, "noise": noise, "seeds": list(seeds),
                "budgets": list(budgets), "models": list(models), "measure": measure, "costs": asdict(costs)}
    return StudyResult(info, learning, curve, isw, lsw, settings)

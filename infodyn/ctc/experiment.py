"""Plain cross-entropy against CTC under the same budget: the discriminability-transferability
reproduction behind ``benchmarks/ctc_tradeoff.py`` (and meant for ``infodyn demo --ctc``).

For each data set (a class split of bundled data: train on classes 0-4, transfer to 5-9), each
seed and each method (``ce``, ``ctc``) it trains the same network with the same optimiser,
schedule (:class:`~infodyn.ctc.schedule.CTCSchedule`: weight decay doubled in stage 1, cosine
learning rate, restart at 0.1 x lr at the switch; the baseline gets the very same schedule),
epochs, batch order and initial weights; only the loss differs. A
:class:`~infodyn.hooks.CheckpointRecorder` saves checkpoints, :func:`infodyn.analyze` measures
each checkpoint's penultimate layer (source accuracy, linear probe and k-NN on source and target,
I(X;T) and I(T;Y)), and :func:`run_tradeoff` writes the tidy table, a markdown summary and a
figure.

Output folder layout::

    OUT/runs/<data>-<method>-seed<k>/   checkpoints + infodyn.yaml (re-analyse with `infodyn analyze`)
    OUT/analysis/                       analysis cache
    OUT/results.csv                     every row (tidy)
    OUT/ctc_tradeoff.md, OUT/ctc_tradeoff.png
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Arms: plain cross-entropy, CTC with the softmax InfoNCE stage 2 (this package's default) and
#: CTC with the reference code's binary NCE stage 2.
METHODS = ("ce", "ctc", "ctcnce")
LABELS = {"ce": "CE", "ctc": "CTC (InfoNCE)", "ctcnce": "CTC (binary NCE)"}
MARKER = ".infodyn-ctc-tradeoff"
MEASURES = ("binning", "kde", "linear_probe", "knn", "rankme", "source_acc")
# Unbounded ReLU features over ~10^3 samples saturate the default estimators at log n (every
# sample its own bin / kernel): two equal-width bins over the layer's range and a kernel of
# variance 1 keep I(X;T) below that cap and comparable across checkpoints.
PLANE_PARAMS = {"binning": {"n_bins": 2}, "kde": {"noise_var": 1.0}}


@dataclass(frozen=True)
class Config:
    """One data set's training and CTC settings (identical for both methods)."""

    data: str
    source: str
    target: str
    model: str
    model_kwargs: Dict
    layer: str                       # the penultimate layer's name (the feature CTC acts on)
    epochs: int
    switch_epoch: int
    checkpoints: Tuple[int, ...]
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_size: int = 64
    num_negatives: int = 256
    alpha: float = 0.5
    beta: float = 1.0
    tau_instance: float = 0.1
    tau_contrast: float = 0.1
    proj_dim: int = 64


def _points(epochs: int, switch: int, n: int) -> Tuple[int, ...]:
    pts = set(np.linspace(0, epochs, n).round().astype(int).tolist()) | {switch}
    return tuple(sorted(pts))


def configs(quick: bool = False) -> Dict[str, Config]:
    """The settings per data set. Full: 120 epochs (switch at 80, the reference's 2/3);
    quick: 30 epochs (switch at 20)."""
    epochs, switch, n = (30, 20, 6) if quick else (120, 80, 9)
    pts = _points(epochs, switch, n)
    return {
        "digits": Config("digits", "digits:0-4", "digits:5-9", "infodyn.models:mlp",
                         {"in_dim": 64, "hidden": [128, 64], "num_classes": 5, "activation": "relu"},
                         "fc2", epochs, switch, pts, num_negatives=256),
        "mnist1d": Config("mnist1d", "mnist1d:0-4", "mnist1d:5-9", "infodyn.models:small_cnn",
                          {"in_channels": 1, "num_classes": 5, "width": 16, "input_shape": [1, 40],
                           "hidden": 64},
                          "fc1", epochs, switch, pts, num_negatives=512),
    }


def penultimate(model, x):
    """The input of the classifier ``model.out`` for :mod:`infodyn.models` networks, (B, d)."""
    from infodyn.models import MLP, SmallCNN

    if isinstance(model, MLP):
        h = x.reshape(x.shape[0], -1)
        for i in range(1, model.n_hidden + 1):
            h = getattr(model, f"fc{i}")(h)
        return h
    if isinstance(model, SmallCNN):
        if model.input_shape is not None:
            x = x.reshape(x.shape[0], *model.input_shape)
        h = model.pool(model.conv1(x))
        return model.fc1(model.gap(model.conv2(h)).flatten(1))
    raise ValueError(f"penultimate() knows infodyn.models MLP and SmallCNN, not {type(model).__name__}")


def _accuracy(model, x, y) -> float:
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train(was)
    return acc


def train_run(cfg: Config, method: str, seed: int, run_dir: Path, device: str = "cpu") -> Dict:
    """Trains one run and records its checkpoints; returns ``{"saved", "seconds", "log"}``.

    ``log`` holds one row per epoch: epoch, lr, weight decay, mean cross-entropy and CTC loss
    (nats), source test accuracy.
    """
    import torch
    import torch.nn.functional as F

    from infodyn.ctc import CTC, CTCSchedule
    from infodyn.data import load
    from infodyn.hooks import CheckpointRecorder
    from infodyn.runs import build_model, parse_manifest

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ds = load(cfg.source, seed=0)
    manifest = {"model": cfg.model, "model_kwargs": dict(cfg.model_kwargs),
                "data": {"source": cfg.source, "target": cfg.target}, "layers": [cfg.layer],
                "name": run_dir.name}
    torch.manual_seed(seed)  # the same initial weights for both methods
    model = build_model(parse_manifest({**manifest, "checkpoints": "epoch*.pt"},
                                       run_dir / "infodyn.yaml")).to(device)
    rec = CheckpointRecorder(run_dir, model, at_epochs=list(cfg.checkpoints),
                             total_epochs=cfg.epochs, manifest=manifest, overwrite=True)
    x = torch.from_numpy(ds.x_train).to(device)
    y = torch.from_numpy(ds.y_train).to(device)
    xt, yt = torch.from_numpy(ds.x_test).to(device), torch.from_numpy(ds.y_test).to(device)
    n = len(y)
    ctc = None
    params = list(model.parameters())
    if method != "ce":
        ctc = CTC(model, penultimate, n, ds.num_classes, cfg.switch_epoch, total_epochs=cfg.epochs,
                  alpha=cfg.alpha, beta=cfg.beta, tau_instance=cfg.tau_instance,
                  tau_contrast=cfg.tau_contrast, num_negatives=min(cfg.num_negatives, n - 1),
                  proj_dim=cfg.proj_dim, seed=seed, labels=ds.y_train,
                  contrast="nce" if method == "ctcnce" else "infonce")
        params += list(ctc.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    sched = CTCSchedule(opt, total_epochs=cfg.epochs, switch_epoch=cfg.switch_epoch)
    gen = torch.Generator().manual_seed(seed)  # the same batch order for both methods
    refill = [(x[i:i + 512], y[i:i + 512], torch.arange(i, min(i + 512, n))) for i in range(0, n, 512)]
    rec.step(epoch=0, source_acc=_accuracy(model, xt, yt))
    log = []
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        (lr, wd), *_ = sched.set(epoch - 1)
        model.train()
        perm = torch.randperm(n, generator=gen)
        ce_sum = ctc_sum = 0.0
        steps = 0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = x[idx.to(device)], y[idx.to(device)]
            f = penultimate(model, xb)
            ce = F.cross_entropy(model.out(f), yb)
            loss = ce
            if ctc is not None:
                extra = ctc.loss(xb, f, yb, idx)
                loss = ce + extra
                ctc_sum += float(extra.detach())
            opt.zero_grad()
            loss.backward()
            opt.step()
            ce_sum += float(ce.detach())
            steps += 1
        if ctc is not None:
            ctc.end_epoch(epoch, refill)
        acc = _accuracy(model, xt, yt)
        log.append({"epoch": epoch, "lr": lr, "weight_decay": wd, "ce": ce_sum / steps,
                    "ctc": ctc_sum / steps, "source_acc": acc})
        rec.step(epoch=epoch, source_acc=acc)
    return {"saved": rec.saved, "seconds": time.perf_counter() - t0, "log": log}


def prepare_out(out: Path) -> Path:
    """Creates ``out``, or checks that an existing, non-empty one was written by
    :func:`run_tradeoff` (marker file :data:`MARKER`): no user file is overwritten."""
    from infodyn._files import claim_output_folder

    return claim_output_folder(out, MARKER, "the CTC experiment", "choose another output folder",
                               "written by infodyn.ctc.experiment.run_tradeoff; safe to delete\n")


def run_name(data: str, method: str, seed: int) -> str:
    return f"{data}-{method}-seed{seed}"


def run_tradeoff(out="ctc_tradeoff", quick: bool = False, seeds: Optional[Sequence[int]] = None,
                 data: Sequence[str] = ("digits", "mnist1d"), methods: Sequence[str] = METHODS,
                 measures: Sequence[str] = MEASURES,
                 jobs: int = 1, device: str = "auto", progress: bool = False,
                 log: Callable[[str], None] = print):
    """Trains plain CE and CTC runs, analyses their checkpoints and writes the table, summary and
    figure into ``out``. Returns ``(table, summary)`` (pandas).

    Args:
        out: output folder (created; an existing one is reused only if this function wrote it).
        quick: 30 epochs and 2 seeds instead of 120 epochs and 3 seeds.
        seeds: override the seeds. data: data sets (keys of :func:`configs`).
        methods: arms out of :data:`METHODS` (``"ce"`` is the baseline of the paired table).
        measures: :func:`infodyn.analyze` measures.
        jobs: analysis workers. device: for training and analysis ("auto": CUDA when present).
    """
    import pandas as pd
    import torch

    from infodyn.analysis import analyze, write_table
    from infodyn.tradeoff import failed_rows

    cfgs = configs(quick)
    unknown = [d for d in data if d not in cfgs]
    if unknown:
        raise ValueError(f"unknown data set(s) {unknown}; choose from {sorted(cfgs)}")
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown method(s) {bad or methods}; choose from {METHODS}")
    out = prepare_out(Path(out))
    seeds = tuple(seeds) if seeds is not None else ((0, 1) if quick else (0, 1, 2))
    from infodyn.estimators.base import resolve_device

    dev = str(resolve_device(device))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: more threads only add contention
    t0 = time.perf_counter()
    logs = []
    seconds: Dict[Tuple[str, str], List[float]] = {}
    try:
        for d in data:
            for seed in seeds:
                for method in methods:
                    name = run_name(d, method, seed)
                    r = train_run(cfgs[d], method, seed, out / "runs" / name, dev)
                    seconds.setdefault((d, method), []).append(r["seconds"])
                    logs += [{"run": name, "data": d, "method": method, "seed": seed, **row}
                             for row in r["log"]]
                    log(f"trained {name}: {cfgs[d].epochs} epochs, {len(r['saved'])} checkpoints, "
                        f"final source acc {r['log'][-1]['source_acc']:.3f} ({r['seconds']:.1f} s)")
    finally:
        torch.set_num_threads(threads)
    t_train = time.perf_counter() - t0
    pd.DataFrame(logs).to_csv(out / "training_log.csv", index=False)
    t1 = time.perf_counter()
    df = analyze([out / "runs" / run_name(d, m, s) for d in data for s in seeds for m in methods],
                 measures=list(measures), out=out / "analysis", jobs=jobs, device=device,
                 plane_params=PLANE_PARAMS,
                 progress=progress, threads=1)
    t_analysis = time.perf_counter() - t1
    bad = failed_rows(df)
    if len(bad):
        log(f"{len(bad)} analysis row(s) failed, e.g. {bad['error'].iloc[0]}")
    write_table(df, out)
    summary = summarise(df, cfgs)
    fig = plot(df, cfgs, out / "ctc_tradeoff.png")
    md = markdown(summary, cfgs, data, seeds, quick, t_train, t_analysis, fig.name, seconds,
                  paired(df))
    (out / "ctc_tradeoff.md").write_text(md)
    log(md)
    return df, summary


# ----------------------------------------------------------------------------------------------
# summary, markdown, figure

KEYS = {  # (measure, task) -> short column name
    ("source_acc", "source"): "source_acc",
    ("linear_probe_acc", "target"): "target_probe",
    ("knn_acc", "target"): "target_knn",
    ("linear_probe_acc", "source"): "source_probe",
    ("rankme", "source"): "rankme",
}


def _curves(df):
    """Rows: data, arm (ce/ctc), seed, epoch; columns: source_acc, target_probe, target_knn,
    source_probe and one ``I(X;T) <method>`` column per estimator."""
    import pandas as pd

    from infodyn.tradeoff import failed_mask

    d = df[~failed_mask(df)].copy()
    parts = d["run"].str.rsplit("-", n=2, expand=True)
    d["data"], d["arm"] = parts[0], parts[1]
    d["seed"] = parts[2].str.replace("seed", "").astype(int)
    names = []
    for (m, task), short in KEYS.items():
        names.append(d[(d["measure"] == m) & (d["task"] == task)].assign(col=short))
    ixt = d[d["measure"] == "I(X;T)"]
    names.append(ixt.assign(col="I(X;T) " + ixt["method"].astype(str)))
    ity = d[d["measure"] == "I(T;Y)"]
    names.append(ity.assign(col="I(T;Y) " + ity["method"].astype(str)))
    long = pd.concat(names, ignore_index=True)
    wide = long.pivot_table(index=["data", "arm", "seed", "epoch"], columns="col", values="value",
                            aggfunc="mean").reset_index()
    wide.columns.name = None
    return wide


def summarise(df, cfgs: Dict[str, Config]):
    """Per data set and method, mean and standard deviation over seeds of: final source accuracy;
    the target linear-probe and k-NN accuracy at their best checkpoint, at the switch and at the
    end, and the late fall (best minus final); I(X;T) at the switch and at the end."""
    import pandas as pd

    w = _curves(df)
    rows = []
    for (d, m, s), g in w.groupby(["data", "arm", "seed"]):
        g = g.sort_values("epoch")
        sw = cfgs[d].switch_epoch
        first, at_sw, last = g.iloc[0], g[g["epoch"] == sw].iloc[0], g.iloc[-1]
        r = {"data": d, "method": m, "seed": s, "source_acc_final": last.get("source_acc")}
        for k in ("target_probe", "target_knn"):
            if k in g:
                r[f"{k}_init"] = first[k]
                r[f"{k}_best"] = g[k].max()
                r[f"{k}_best_epoch"] = int(g.loc[g[k].idxmax(), "epoch"])
                r[f"{k}_switch"] = at_sw[k]
                r[f"{k}_final"] = last[k]
                r[f"{k}_late_fall"] = g[k].max() - last[k]
        for c in g.columns:
            if c.startswith("I(X;T)") or c == "rankme":
                r[f"{c} switch"], r[f"{c} final"] = at_sw[c], last[c]
        rows.append(r)
    per_seed = pd.DataFrame(rows)
    num = [c for c in per_seed.columns if c not in ("data", "method", "seed")]
    agg = per_seed.groupby(["data", "method"])[num].agg(["mean", "std"])
    return agg


PAIRED = (("source_acc", "source acc", True), ("target_probe", "target probe", True),
          ("target_knn", "target k-NN", True), ("I(X;T) kde", "I(X;T) kde", False),
          ("I(X;T) binning", "I(X;T) binning", False), ("rankme", "RankMe", False))


def paired(df):
    """Each CTC arm minus CE at the last checkpoint, per data set and seed (the arms of a seed
    share initial weights and batch order). Returns one row per (data set, arm): for each
    quantity the mean and sd of the difference over seeds and how many seeds the arm was higher."""
    import pandas as pd

    w = _curves(df)
    last = (w.sort_values("epoch").groupby(["data", "arm", "seed"]).tail(1)
            .set_index(["data", "seed", "arm"]).sort_index())
    rows = []
    arms = [a for a in METHODS if a != "ce" and a in set(w["arm"])]
    for d in dict.fromkeys(w["data"]):
        for arm in arms:
            r = {"data": d, "arm": arm}
            for k, _, _ in PAIRED:
                if k not in last:
                    continue
                sub = last.loc[d, k].unstack("arm")
                if "ce" not in sub or arm not in sub:
                    continue
                diff = (sub[arm] - sub["ce"]).dropna()
                r[f"{k} mean"] = diff.mean()
                r[f"{k} sd"] = diff.std(ddof=1) if len(diff) > 1 else 0.0
                r[f"{k} wins"] = f"{int((diff > 0).sum())}/{len(diff)}"
            rows.append(r)
    return pd.DataFrame(rows)


def paired_markdown(p) -> List[str]:
    keys = [(k, h, pct) for k, h, pct in PAIRED if f"{k} mean" in p]
    lines = ["CTC minus CE at the end of training, paired by seed (mean ± sd; seeds where CTC is "
             "higher). Accuracies in points, I(X;T) in nats:", "",
             "| data | arm | " + " | ".join(f"Δ {h}" for _, h, _ in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for _, r in p.iterrows():
        cells = [f"{_fmt(r[f'{k} mean'], r[f'{k} sd'], pct)} ({r[f'{k} wins']})"
                 if isinstance(r.get(f"{k} wins"), str) else "" for k, _, pct in keys]
        lines.append(f"| {r['data']} | {r['arm']} − ce | " + " | ".join(cells) + " |")
    return lines + [""]


def _fmt(mean, std, pct=True, key=""):
    if key.endswith("_epoch"):
        return f"{mean:.0f} ± {std:.0f}"
    if pct:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{mean:.2f} ± {std:.2f}"


def markdown(summary, cfgs, data, seeds, quick, t_train, t_analysis, fig_name,
             seconds: Optional[Dict[Tuple[str, str], List[float]]] = None, pairs=None) -> str:
    """The summary as a markdown page: settings, one row per (data, method), the figure."""
    lines = [f"# Plain cross-entropy vs Contrastive Temporal Coding{' (quick)' if quick else ''}", ""]
    for d in data:
        c = cfgs[d]
        lines.append(f"- **{d}**: train on `{c.source}`, transfer to `{c.target}`; `{c.model}` "
                     f"{c.model_kwargs}, feature `{c.layer}`; {c.epochs} epochs, switch at "
                     f"{c.switch_epoch}; SGD lr {c.lr} momentum 0.9, weight decay {c.weight_decay} "
                     f"(x2 in stage 1), batch {c.batch_size}, cosine lr, restart at 0.1 x lr at the "
                     f"switch (both methods); CTC alpha {c.alpha}, beta {c.beta}, tau "
                     f"{c.tau_instance}/{c.tau_contrast}, K = {c.num_negatives}, stage 2 InfoNCE (`ctc`) "
                     f"or binary NCE (`ctcnce`); "
                     f"checkpoints at epochs {list(c.checkpoints)}.")
    lines += [f"- seeds {list(seeds)}; mean ± sd over seeds; accuracies in %, I(X;T) in nats "
              f"(over all source samples). Training {t_train:.0f} s, analysis {t_analysis:.0f} s "
              f"on a shared 2-core CPU machine (timings are noisy)."]
    for d in data:
        if seconds and (d, "ce") in seconds:
            ce = np.mean(seconds[(d, "ce")])
            parts = [f"{LABELS[m]} {np.mean(seconds[(d, m)]):.1f} s "
                     f"({np.mean(seconds[(d, m)]) / ce:.1f}x CE)" for m in METHODS
                     if m != "ce" and (d, m) in seconds]
            lines.append(f"- {d}: training time per run (same process, 1 thread): CE {ce:.1f} s"
                         + "".join(", " + p for p in parts) + ".")
    lines.append("")
    cols = [("source_acc_final", "source acc (end)", True),
            ("target_probe_init", "target probe (init)", True),
            ("target_probe_best", "target probe (best)", True),
            ("target_probe_best_epoch", "best epoch", False),
            ("target_probe_switch", "target probe (switch)", True),
            ("target_probe_final", "target probe (end)", True),
            ("target_probe_late_fall", "probe late fall", True),
            ("target_knn_init", "target k-NN (init)", True),
            ("target_knn_best", "target k-NN (best)", True),
            ("target_knn_best_epoch", "best epoch", False),
            ("target_knn_final", "target k-NN (end)", True),
            ("target_knn_late_fall", "k-NN late fall", True)]
    mi = sorted({c[0].rsplit(" ", 1)[0] for c in summary.columns
                 if c[0].startswith("I(X;T)") or c[0].startswith("rankme")})
    cols += [(f"{c} {when}", f"{c} @{label}", False) for c in mi
             for when, label in (("switch", "switch"), ("final", "end"))]
    lines.append("| data | method | " + " | ".join(h for _, h, _ in cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    for (d, m), row in summary.iterrows():
        cells = [_fmt(row[(k, "mean")], row[(k, "std")] if not np.isnan(row[(k, "std")]) else 0.0, p, k)
                 if (k, "mean") in row.index else "" for k, _, p in cols]
        lines.append(f"| {d} | {m} | " + " | ".join(cells) + " |")
    lines.append("")
    if pairs is not None and len(pairs):
        lines += paired_markdown(pairs)
    lines += [f"![curves]({fig_name})", ""]
    return "\n".join(lines)


def plot(df, cfgs, path: Path):
    """Source accuracy, target probe, target k-NN and I(X;T) against epoch, one row per data
    set, CE and CTC as mean lines with a min-max band over seeds; the switch as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = _curves(df)
    datas = list(dict.fromkeys(w["data"]))
    mi_cols = sorted(c for c in w.columns if c.startswith("I(X;T)"))
    panels = [("source_acc", "source accuracy"), ("target_probe", "target linear probe"),
              ("target_knn", "target k-NN")] + [(c, c + " [nats]") for c in mi_cols]
    if "rankme" in w:
        panels.append(("rankme", "RankMe (effective rank)"))
    fig, axes = plt.subplots(len(datas), len(panels), figsize=(3.2 * len(panels), 2.8 * len(datas)),
                             squeeze=False)
    colours = {"ce": "tab:blue", "ctc": "tab:orange", "ctcnce": "tab:green"}
    for i, d in enumerate(datas):
        for j, (col, title) in enumerate(panels):
            ax = axes[i, j]
            for m in METHODS:
                g = w[(w["data"] == d) & (w["arm"] == m)]
                if col not in g or g[col].isna().all():
                    continue
                s = g.groupby("epoch")[col].agg(["mean", "min", "max"])
                ax.plot(s.index, s["mean"], color=colours[m], label=LABELS[m], marker=".")
                ax.fill_between(s.index, s["min"], s["max"], color=colours[m], alpha=0.2)
            ax.axvline(cfgs[d].switch_epoch, color="grey", ls=":", lw=1)
            ax.set_title(f"{d}: {title}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

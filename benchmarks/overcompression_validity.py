"""Which measure of a layer ranks target transfer across models trained to equal source accuracy?

Run:  .venv/bin/python benchmarks/overcompression_validity.py [--models 48] [--boot 2000]
Writes benchmarks/results/overcompression_validity.md (and a per-model CSV beside it) and prints it.

Population. ``--models`` MLPs of one architecture (``infodyn.models.mlp(64, (w, w), 5, "relu")``)
on digits:0-4 (source), each with its own seed and a configuration drawn from: loss (cross-entropy,
label smoothing 0.1 / 0.3, MSE on one-hot targets, cross-entropy + logit penalty, sigmoid / BCE;
cycled so each loss gets the same number of models), dropout after each hidden layer (0, 0.2,
0.5), L2 weight decay (0, 1e-4, 1e-3; Adam, lr 1e-3, batch 64), width w (32, 64, 128, 256) and
training length. Every model trains until its source *train* accuracy reaches ``--reach``
(0.99) and then for a drawn number of extra epochs (0, 25, 100, 300): equal source accuracy,
different time spent past it. The held-out source accuracy of each model is in the per-model
table and its spread in the header.

Features. The penultimate layer (``fc2``, the input of the last linear layer, the score's
default) on the held-out source rows (val + test, 360) for source-only measures, and on the
target digits:5-9 train split (537 rows, labels used by the target-aware measures), the data a
user would pass as ``target=``.

Transfer protocols (digits:5-9, all 896 rows, 4-fold stratified cross-fitting so every target
row is a test row once; accuracy pooled over the folds):
  * ``probe_tuned``  infodyn's linear probe, L2 strength chosen on a validation split
    (``infodyn.transfer.linear_probe``);
  * ``probe_fixed``  the same probe at one fixed strength, l2 = ``FIXED_L2`` (per-sample scale,
    standardised features);
  * ``knn``          ``infodyn.transfer.knn_accuracy`` (cosine, k = 20, DINO's weighted vote);
  * ``fewshot``      5 labelled examples per class, 20 draws: ``infodyn.transfer.fewshot_probe``.

Candidates: every measure listed in ``CANDIDATES`` below (source features) and ``TARGET_CANDIDATES``
(target features). Reported: Spearman's rank correlation of each with each protocol's accuracy
over the models, with a percentile bootstrap 95 % interval (models resampled, ``--boot`` times),
and the paired bootstrap interval of |rho(score)| - |rho(baseline)| against RankMe and the
class-separation R^2.

Checkpoint sequences. A few long runs (configurations in ``SEQUENCE_RUNS``), each evaluated at
log-spaced epochs; pooled over runs, the partial rank correlation of each candidate with transfer
given the epoch (Spearman partial correlation: Pearson on ranks, epoch rank partialled out), with
a bootstrap interval over checkpoints. The "tradeoff" runs of ``benchmarks/known_runs.py``
(``make_run(root, "tradeoff", seed)``, seeds 0-2) are added.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

LOSSES = ["ce", "ls0.1", "ls0.3", "mse", "logit_penalty", "sigmoid"]
DROPOUTS = [0.0, 0.2, 0.5]
DECAYS = [0.0, 1e-4, 1e-3]
WIDTHS = [32, 64, 128, 256]
EXTRA_EPOCHS = [0, 25, 100, 300]
LOGIT_PENALTY = 5e-3
FIXED_L2 = 1e-2
SHOTS, DRAWS = 5, 20
FOLDS = 4
PROTOCOLS = ["probe_tuned", "probe_fixed", "knn", "fewshot"]
SEQUENCE_RUNS = [  # (name, loss, dropout, weight decay, width, epochs)
    ("seq-ce-w128", "ce", 0.0, 0.0, 128, 300),
    ("seq-ce-w32", "ce", 0.0, 0.0, 32, 300),
    ("seq-ls0.3-w64", "ls0.3", 0.0, 0.0, 64, 300),
    ("seq-mse-w128", "mse", 0.0, 0.0, 128, 300),
    ("seq-sigmoid-w64", "sigmoid", 0.0, 1e-4, 64, 300),
    ("seq-ce-drop-w256", "ce", 0.5, 0.0, 256, 300),
]
SEQUENCE_EPOCHS = [1, 2, 3, 5, 8, 13, 20, 32, 50, 80, 130, 200, 300]


# ----------------------------------------------------------------------------------------------
# training


def loss_fn(name: str):
    import torch
    import torch.nn.functional as F

    def onehot(y, c):
        return F.one_hot(y, c).to(torch.float32)

    if name == "ce":
        return lambda z, y: F.cross_entropy(z, y)
    if name.startswith("ls"):
        a = float(name[2:])
        return lambda z, y: F.cross_entropy(z, y, label_smoothing=a)
    if name == "mse":
        return lambda z, y: ((z - onehot(y, z.shape[1])) ** 2).sum(1).mean()
    if name == "logit_penalty":
        return lambda z, y: F.cross_entropy(z, y) + LOGIT_PENALTY * (z ** 2).sum(1).mean()
    if name == "sigmoid":
        return lambda z, y: F.binary_cross_entropy_with_logits(z, onehot(y, z.shape[1]), reduction="none").sum(1).mean()
    raise ValueError(f"unknown loss {name!r}")


def build(width: int, dropout: float, seed: int):
    import torch
    import torch.nn.functional as F

    from infodyn.models import mlp

    torch.manual_seed(seed)
    model = mlp(64, (width, width), 5, "relu")
    if dropout > 0:  # dropout after each hidden layer, active only in training mode
        for name in ("fc1", "fc2"):
            getattr(model, name).register_forward_hook(lambda mod, _inp, out: F.dropout(out, dropout, mod.training))
    return model


def train_accuracy(model, x, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc


def train(cfg: dict, src, *, reach: float, max_reach_epochs: int = 600, snapshots=None):
    """Train one model; returns (model, epoch at which train accuracy reached ``reach``, total
    epochs, {epoch: state_dict} for the ``snapshots`` epochs)."""
    import copy

    import torch

    model = build(cfg["width"], cfg["dropout"], cfg["seed"])
    opt = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=cfg["wd"])
    lf = loss_fn(cfg["loss"])
    x, y = torch.from_numpy(src.x_train), torch.from_numpy(src.y_train)
    gen = torch.Generator().manual_seed(cfg["seed"])
    reached, epoch, total = None, 0, cfg.get("epochs")
    snaps = {}
    if snapshots and 0 in snapshots:
        snaps[0] = copy.deepcopy(model.state_dict())
    model.train()
    while True:
        epoch += 1
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            lf(model(x[idx]), y[idx]).backward()
            opt.step()
        if snapshots and epoch in snapshots:
            snaps[epoch] = copy.deepcopy(model.state_dict())
        if total is None and reached is None and (train_accuracy(model, x, y) >= reach or epoch >= max_reach_epochs):
            reached = epoch
            total = epoch + cfg["extra"]
        if total is not None and epoch >= total:
            break
    model.eval()
    return model, reached, epoch, snaps


def penultimate(model, x: np.ndarray) -> np.ndarray:
    from infodyn.tradeoff import layer_features

    t, _ = layer_features(model, x, device="cpu")
    return t


# ----------------------------------------------------------------------------------------------
# candidate measures (independent numpy implementations, not the score's code)


def _spectrum(t: np.ndarray) -> np.ndarray:
    """Eigenvalues (descending) of the covariance of the centred (n, d) features, scaled to sum 1."""
    c = t - t.mean(0)
    s = np.linalg.svd(c, compute_uv=False) ** 2
    return s / s.sum()


def _erank_from(lam: np.ndarray) -> float:
    """exp(entropy of the normalised singular values) from covariance eigenvalues lam."""
    s = np.sqrt(np.clip(lam, 0, None))
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _class_stats(t: np.ndarray, y: np.ndarray):
    classes = np.unique(y)
    means = np.stack([t[y == c].mean(0) for c in classes])
    resid = t - means[np.searchsorted(classes, y)]
    return classes, means, resid


def source_candidates(t: np.ndarray, y: np.ndarray, *, seed: int = 0) -> dict:
    """Every source-side candidate of one (n, d) feature matrix with labels (n,)."""
    from infodyn.estimators import information_plane
    from infodyn.transfer import nc1, rankme

    n, d = t.shape
    classes, means, resid = _class_stats(t, y)
    c = len(classes)
    lam = _spectrum(t)
    er = _erank_from(lam)
    total = float(((t - t.mean(0)) ** 2).sum())
    within = float((resid ** 2).sum())
    r2 = 1 - within / total
    lam_w = _spectrum(resid)
    er_w = _erank_from(lam_w)
    r_max = min(n, d)
    out = {
        "rankme": rankme(t, device="cpu"),  # uncentred, as published
        "erank": er,  # centred
        "erank_frac": er / r_max,
        "rank_collapse": float(np.clip((math.log(r_max) - math.log(er)) / (math.log(r_max) - math.log(c - 1)), 0, 1)),
        "class_sep_r2": r2,
        "nc1": nc1(t, y, device="cpu"),
        "pr": float(1.0 / (lam ** 2).sum()),  # participation ratio of the covariance
        "pr_frac": float(1.0 / (lam ** 2).sum()) / r_max,
        "topC1_share": float(lam[:c - 1].sum()),  # variance share of the top C-1 principal axes
        "within_erank": er_w,  # effective rank of the within-class residuals
        "within_erank_frac": er_w / min(n - c, d),
        "within_pr": float(1.0 / (lam_w ** 2).sum()),
    }
    # the old label-share part (KDE plane on unit-variance features, noise 0.1)
    scaled = (t - t.mean(0)) / math.sqrt(total / n)
    plane = information_plane(scaled, y, method="kde", noise_var=0.1, device="cpu")
    counts = np.bincount(np.searchsorted(classes, y)).astype(float)
    h_y = float(-(counts / n * np.log(counts / n)).sum())
    out["label_share"] = float(np.clip(1 - max(plane.i_xt.nats - plane.i_ty.nats, 0) / (math.log(n) - h_y), 0, 1))
    out["old_score"] = (out["label_share"] + out["rank_collapse"] + out["class_sep_r2"]) / 3
    return out


def target_candidates(t: np.ndarray, y: np.ndarray) -> dict:
    """Target-side candidates (features of the target inputs, with target labels)."""
    from infodyn.transfer import logme, nc1

    n, d = t.shape
    classes, _, resid = _class_stats(t, y)
    lam = _spectrum(t)
    er = _erank_from(lam)
    total = float(((t - t.mean(0)) ** 2).sum())
    return {
        "t_erank": er,
        "t_erank_frac": er / min(n, d),
        "t_pr": float(1.0 / (lam ** 2).sum()),
        "t_class_sep_r2": 1 - float((resid ** 2).sum()) / total,
        "t_nc1": nc1(t, y, device="cpu"),
        "t_logme": logme(t, y, device="cpu"),
        "t_within_erank": _erank_from(_spectrum(resid)),
    }


# ----------------------------------------------------------------------------------------------
# transfer protocols


def folds(y: np.ndarray, k: int, seed: int):
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def transfer(t: np.ndarray, y: np.ndarray, fold: np.ndarray) -> dict:
    """Accuracy of each protocol, pooled over the cross-fitting folds."""
    from infodyn.transfer import fewshot_probe, knn_accuracy, linear_probe

    correct = {p: 0.0 for p in PROTOCOLS}
    for k in np.unique(fold):
        tr, te = fold != k, fold == k
        a = (t[tr], y[tr], t[te], y[te])
        m = te.sum()
        correct["probe_tuned"] += linear_probe(*a, device="cpu", seed=int(k)).accuracy * m
        correct["probe_fixed"] += linear_probe(*a, l2_grid=[FIXED_L2], device="cpu").accuracy * m
        correct["knn"] += knn_accuracy(*a, device="cpu").accuracy * m
        correct["fewshot"] += fewshot_probe(*a, shots=SHOTS, draws=DRAWS, seed=int(k), device="cpu").accuracy * m
    return {p: v / len(y) for p, v in correct.items()}


# ----------------------------------------------------------------------------------------------
# statistics


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / den


def spearman_boot(x: np.ndarray, y: np.ndarray, idx: np.ndarray):
    """Spearman rho of x and y, and its values over bootstrap index rows ``idx`` (B, n)."""
    rho = float(_pearson_rows(_ranks(x), _ranks(y)))
    boots = _pearson_rows(_ranks(x[idx]), _ranks(y[idx]))
    return rho, boots


def partial_spearman(x, y, z):
    """Spearman partial correlation of x and y given z (rows of 2-d arrays, or 1-d)."""
    rx, ry, rz = _ranks(x), _ranks(y), _ranks(z)
    rxy, rxz, ryz = _pearson_rows(rx, ry), _pearson_rows(rx, rz), _pearson_rows(ry, rz)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))


def ci(boots: np.ndarray):
    b = boots[np.isfinite(boots)]
    return float(np.percentile(b, 2.5)), float(np.percentile(b, 97.5))


# ----------------------------------------------------------------------------------------------
# the score under test


def final_scores(t_src, y_src, t_tgt, y_tgt) -> dict:
    """The library's score (source only, and target-aware) on the same features."""
    from infodyn.overcompression import overcompression_from_features

    s = overcompression_from_features(t_src, y_src)
    st = overcompression_from_features(t_src, y_src, target=(t_tgt, y_tgt))
    return {"score": s.score, "score_target": st.score}


# ----------------------------------------------------------------------------------------------


def population(n_models: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    cfgs = []
    for i in range(n_models):
        cfgs.append({"model": f"m{i:02d}", "seed": 1000 + i, "loss": LOSSES[i % len(LOSSES)],
                     "dropout": float(rng.choice(DROPOUTS)), "wd": float(rng.choice(DECAYS)),
                     "width": int(rng.choice(WIDTHS)), "extra": int(rng.choice(EXTRA_EPOCHS))})
    return cfgs


def measure_model(model, src, tgt, fold, t_all_x, t_all_y) -> dict:
    xs = np.concatenate([src.x_val, src.x_test])
    ys = np.concatenate([src.y_val, src.y_test])
    ts = penultimate(model, xs)
    tt_train = penultimate(model, tgt.x_train)
    t_all = penultimate(model, t_all_x)
    row = {}
    import torch

    with torch.no_grad():
        row["source_acc"] = float((model(torch.from_numpy(xs)).argmax(1).numpy() == ys).mean())
    row.update(source_candidates(ts, ys))
    row.update(target_candidates(tt_train, tgt.y_train))
    row.update(transfer(t_all, t_all_y, fold))
    row.update(final_scores(ts, ys, tt_train, tgt.y_train))
    return row


def sequence_table(src, tgt, fold, t_all_x, t_all_y, reach: float) -> pd.DataFrame:
    rows = []
    for name, loss, drop, wd, width, epochs in SEQUENCE_RUNS:
        cfg = {"seed": 7, "loss": loss, "dropout": drop, "wd": wd, "width": width, "epochs": epochs, "extra": 0}
        _, _, _, snaps = train(cfg, src, reach=reach, snapshots=set(SEQUENCE_EPOCHS))
        model = build(width, drop, cfg["seed"])
        for ep in SEQUENCE_EPOCHS:
            model.load_state_dict(snaps[ep])
            model.eval()
            rows.append({"run": name, "epoch": ep,
                         **measure_model(model, src, tgt, fold, t_all_x, t_all_y)})
    rows += known_run_rows(src, tgt, fold, t_all_x, t_all_y)
    return pd.DataFrame(rows)


def known_run_rows(src, tgt, fold, t_all_x, t_all_y) -> list:
    """Checkpoints of the "tradeoff" runs of benchmarks/known_runs.py (seeds 0-2)."""
    from known_runs import checkpoint_models, make_run

    rows = []
    with tempfile.TemporaryDirectory(prefix="infodyn-ocv-") as tmp:
        for seed in range(3):
            for info, model in checkpoint_models(make_run(Path(tmp), "tradeoff", seed)):
                rows.append({"run": f"tradeoff-seed{seed}", "epoch": float(info.epoch),
                             **measure_model(model, src, tgt, fold, t_all_x, t_all_y)})
    return rows


def main() -> int:
    import torch

    from infodyn.data import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=48)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--reach", type=float, default=0.99)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sequence", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "overcompression_validity.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.time()
    src = load("digits:0-4", seed=0)
    tgt = load("digits:5-9", seed=0)
    t_all_x = np.concatenate([tgt.x_train, tgt.x_val, tgt.x_test])
    t_all_y = np.concatenate([tgt.y_train, tgt.y_val, tgt.y_test])
    fold = folds(t_all_y, FOLDS, seed=0)

    rows = []
    for cfg in population(args.models, args.seed):
        t0 = time.time()
        model, reached, epochs, _ = train(cfg, src, reach=args.reach)
        row = {**cfg, "reached_at": reached, "epochs": epochs}
        row.update(measure_model(model, src, tgt, fold, t_all_x, t_all_y))
        row["seconds"] = time.time() - t0
        rows.append(row)
        print(f"{cfg['model']} {cfg['loss']:>13s} w={cfg['width']:<3d} drop={cfg['dropout']} wd={cfg['wd']} "
              f"epochs={epochs:<4d} src={row['source_acc']:.3f} tuned={row['probe_tuned']:.3f} "
              f"fixed={row['probe_fixed']:.3f} knn={row['knn']:.3f} few={row['fewshot']:.3f} "
              f"erank={row['erank']:.1f} ({row['seconds']:.1f} s)", flush=True)
    pop = pd.DataFrame(rows)
    out = Path(args.out)
    pop.to_csv(out.with_suffix(".models.csv"), index=False)
    seq = None
    if not args.no_sequence:
        seq = sequence_table(src, tgt, fold, t_all_x, t_all_y, args.reach)
        seq.to_csv(out.with_suffix(".sequence.csv"), index=False)
    text = report(pop, seq, args, time.time() - t_start)
    out.write_text(text)
    print(text)
    return 0


def candidate_columns(df: pd.DataFrame) -> list:
    from_src = ["rankme", "erank", "erank_frac", "rank_collapse", "class_sep_r2", "nc1", "pr", "pr_frac",
                "topC1_share", "within_erank", "within_erank_frac", "within_pr", "label_share", "old_score"]
    from_tgt = ["t_erank", "t_erank_frac", "t_pr", "t_class_sep_r2", "t_nc1", "t_logme", "t_within_erank"]
    return from_src + from_tgt + ["score", "score_target"]


def markdown(df: pd.DataFrame) -> list:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.3g}"
        return str(v)

    out = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return out


def report(pop: pd.DataFrame, seq, args, seconds: float) -> str:
    rng = np.random.default_rng(args.seed)
    n = len(pop)
    idx = rng.integers(0, n, size=(args.boot, n))
    cands = candidate_columns(pop)
    lines = [
        "# Over-compression candidates against target transfer, across models",
        "",
        f"`.venv/bin/python benchmarks/overcompression_validity.py --models {args.models} --boot {args.boot} "
        f"--reach {args.reach} --seed {args.seed}` ({seconds / 60:.1f} min, 1 thread).",
        "",
        f"{n} MLPs 64-w-w-5 (ReLU) on digits:0-4, each trained until source train accuracy >= {args.reach}, then "
        f"for 0-300 more epochs. Held-out source accuracy (360 rows): median {pop.source_acc.median():.3f}, "
        f"range {pop.source_acc.min():.3f}-{pop.source_acc.max():.3f}, IQR "
        f"{pop.source_acc.quantile(.25):.3f}-{pop.source_acc.quantile(.75):.3f}. Measures at fc2 (the input of "
        "the last linear layer); source measures on the held-out source rows, `t_*` measures on the target "
        "(digits:5-9) train split with its labels. Transfer to digits:5-9, 4-fold cross-fitting over all 896 rows; "
        f"protocols: probe_tuned (validated L2), probe_fixed (l2 = {FIXED_L2}), knn (cosine, k = 20), "
        f"fewshot ({SHOTS} shots/class, {DRAWS} draws; infodyn.transfer.fewshot.fewshot_probe).",
        "",
        "Transfer spread over the models: " + ", ".join(
            f"{p} {pop[p].min():.3f}-{pop[p].max():.3f} (median {pop[p].median():.3f})" for p in PROTOCOLS) + ".",
        "",
        "## Spearman rank correlation with target accuracy (bootstrap 95 % interval over models)",
        "",
        "Sign: + means higher values go with better transfer. A score of over-compression should be negative.",
        "",
        "| candidate | " + " | ".join(PROTOCOLS) + " |",
        "|---|" + "---|" * len(PROTOCOLS),
    ]
    boots = {}
    for c in cands:
        cells = []
        for p in PROTOCOLS:
            rho, b = spearman_boot(pop[c].to_numpy(float), pop[p].to_numpy(float), idx)
            boots[(c, p)] = (rho, b)
            lo, hi = ci(b)
            cells.append(f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines += selection_report(pop, args)
    lines += ["", "## The score against the baselines", "",
              "Paired bootstrap (models resampled) of the difference in oriented correlation: -rho(score) - "
              "s * rho(baseline), s = +1 for RankMe and the effective rank (higher = better transfer expected), "
              "-1 for the class-separation R^2 (higher = worse, Kornblith et al. 2021). Positive = the score "
              "ranks transfer better.", "",
              "| score | baseline | " + " | ".join(PROTOCOLS) + " |", "|---|---|" + "---|" * len(PROTOCOLS)]
    for s in ("score", "score_target"):
        for base in ("rankme", "class_sep_r2", "erank"):
            cells = []
            for p in PROTOCOLS:
                sign = -1.0 if base == "class_sep_r2" else 1.0
                d0 = -boots[(s, p)][0] - sign * boots[(base, p)][0]
                db = -boots[(s, p)][1] - sign * boots[(base, p)][1]
                lo, hi = ci(db)
                cells.append(f"{d0:+.2f} [{lo:+.2f}, {hi:+.2f}]")
            lines.append(f"| {s} | {base} | " + " | ".join(cells) + " |")
    lines += ["", "## Correlation with the configuration", "",
              "Spearman of each candidate with training length (total epochs) and width over the models.", "",
              "| candidate | epochs | width |", "|---|---|---|"]
    for c in cands + PROTOCOLS + ["source_acc"]:
        r_e = float(_pearson_rows(_ranks(pop[c].to_numpy(float)), _ranks(pop["epochs"].to_numpy(float))))
        r_w = float(_pearson_rows(_ranks(pop[c].to_numpy(float)), _ranks(pop["width"].to_numpy(float))))
        lines.append(f"| {c} | {r_e:+.2f} | {r_w:+.2f} |")
    if seq is not None and len(seq):
        lines += sequence_report(seq, cands, args)
        lines += weight_tradeoff(pop, seq)
    lines += ["", "## Per-model table", ""]
    show = ["model", "loss", "dropout", "wd", "width", "reached_at", "epochs", "source_acc", *PROTOCOLS,
            "rankme", "erank", "class_sep_r2", "nc1", "within_erank", "t_erank", "old_score", "score", "score_target"]
    lines += markdown(pop[show])
    lines += ["", f"All candidate columns per model: `{Path(args.out).with_suffix('.models.csv').name}`."]
    return "\n".join(lines) + "\n"


NC1_GRID = [0.0, 0.05, 0.1, 0.25, 0.5]
TARGET_GRID = [0.0, 0.25, 0.5, 1.0, 2.0]


def family(df: pd.DataFrame, a: float, b: float) -> np.ndarray:
    """log r + a log v - b log u (higher = better transfer expected): r effective rank, v and u
    the source and target NC1 / (1 + NC1). The score is a decreasing map of this."""
    v = df["nc1"] / (1 + df["nc1"])
    u = df["t_nc1"] / (1 + df["t_nc1"])
    return (np.log(df["erank"]) + a * np.log(v) - b * np.log(u)).to_numpy(float)


def mean_rho(df: pd.DataFrame, a: float, b: float) -> float:
    x = family(df, a, b)
    return float(np.mean([_pearson_rows(_ranks(x), _ranks(df[p].to_numpy(float))) for p in PROTOCOLS]))


def choose(df: pd.DataFrame, target: bool):
    """(a, b): a maximises the source-only criterion (b = 0); with a target, b then maximises it
    given that a (nested, so one NC1 weight serves both scores)."""
    a = max(NC1_GRID, key=lambda w: mean_rho(df, w, 0.0))
    if not target:
        return a, 0.0
    return a, max(TARGET_GRID, key=lambda w: mean_rho(df, a, w))


def selection_report(pop: pd.DataFrame, args) -> list:
    """The weights of the score's family, chosen on this table, and a split-half check."""
    from infodyn import overcompression as oc

    lines = ["", "## Choosing the score's weights", "",
             "Family: f = log r + a log v - b log u (r = effective rank of the centred source features, v and u = "
             "NC1 / (1 + NC1) of the source and of the target classes); score = (C - 1) / max(exp f, C - 1), "
             "a decreasing map of f. Criterion: the mean over the four protocols of Spearman(f, accuracy) on "
             "the population above; a is chosen with b = 0 (the source-only score), then b given that a (the "
             "target-aware score). The whole grid is shown.", "",
             "| a \\ b | " + " | ".join(f"{b:g}" for b in TARGET_GRID) + " |", "|---|" + "---|" * len(TARGET_GRID)]
    for a in NC1_GRID:
        lines.append(f"| {a:g} | " + " | ".join(f"{mean_rho(pop, a, b):+.3f}" for b in TARGET_GRID) + " |")
    a_s, _ = choose(pop, False)
    a_t, b_t = choose(pop, True)
    rng = np.random.default_rng(args.seed + 2)
    gains = {False: [], True: []}
    for _ in range(200):
        perm = rng.permutation(len(pop))
        fit, held = pop.iloc[perm[: len(pop) // 2]], pop.iloc[perm[len(pop) // 2:]]
        for tgt in (False, True):
            ab = choose(fit, tgt)
            gains[tgt].append(mean_rho(held, *ab) - mean_rho(held, 0.0, 0.0))
    lines += ["", f"Chosen: source-only a = {a_s:g} (mean rho {mean_rho(pop, a_s, 0):+.3f}; r alone "
              f"{mean_rho(pop, 0, 0):+.3f}); target-aware a = {a_t:g}, b = {b_t:g} "
              f"(mean rho {mean_rho(pop, a_t, b_t):+.3f}).",
              f"In infodyn/overcompression.py: NC1_WEIGHT = {oc.NC1_WEIGHT:g}, TARGET_WEIGHT = {oc.TARGET_WEIGHT:g}"
              + (" (match)." if (oc.NC1_WEIGHT, oc.TARGET_WEIGHT) == (a_s, b_t) else
                 " (DIFFERENT from the choice above: update the module)."),
              f"Split-half check (200 random halves: weights chosen on one half, mean rho on the other, minus r "
              f"alone's): source-only gain {np.mean(gains[False]):+.3f} (positive in "
              f"{np.mean(np.array(gains[False]) > 0):.0%} of splits), target-aware {np.mean(gains[True]):+.3f} "
              f"({np.mean(np.array(gains[True]) > 0):.0%}): what the weights add to r itself out of sample."]
    return lines


def weight_tradeoff(pop: pd.DataFrame, seq: pd.DataFrame) -> list:
    """How the NC1 weight a trades ranking across models against tracking transfer within runs."""
    lines = ["", "## The NC1 weight a: ranking across models against tracking within runs", "",
             "f = log r + a log v (source-only family; higher f = better transfer expected). Across models: mean over "
             "protocols of Spearman(f, accuracy) on the population. Within runs: median over the sequence runs of "
             "Spearman(f, accuracy) over each run's checkpoints, all of them / epoch >= 7, per protocol.", "",
             "| a | across models | within runs, all: " + ", ".join(PROTOCOLS) + " | within runs, epoch >= 7 |",
             "|---|---|---|---|"]
    for a in NC1_GRID + [1.0]:
        cells = []
        for part in (seq, seq[seq.epoch >= 7]):
            meds = [np.nanmedian([float(_pearson_rows(_ranks(family(g, a, 0.0)), _ranks(g[p].to_numpy(float))))
                                  for _, g in part.groupby("run")]) for p in PROTOCOLS]
            cells.append(" ".join(f"{m:+.2f}" for m in meds))
        lines.append(f"| {a:g} | {mean_rho(pop, a, 0.0):+.3f} | {cells[0]} | {cells[1]} |")
    return lines


def sequence_report(seq: pd.DataFrame, cands: list, args) -> list:
    rng = np.random.default_rng(args.seed + 1)
    n = len(seq)
    idx = rng.integers(0, n, size=(args.boot, n))
    ep = seq["epoch"].to_numpy(float)
    runs = ", ".join(sorted(seq.run.unique()))
    lines = ["", "## Over checkpoint sequences: partial rank correlation with transfer given the epoch", "",
             f"{n} checkpoints of {seq.run.nunique()} runs ({runs}); epochs {SEQUENCE_EPOCHS}. Pooled over runs; "
             "partial Spearman of candidate and accuracy with the epoch partialled out; bootstrap 95 % interval "
             "over checkpoints. Last column: Spearman of the candidate with the epoch.", "",
             "Transfer range over the checkpoints: " + ", ".join(
                 f"{p} {seq[p].min():.3f}-{seq[p].max():.3f}" for p in PROTOCOLS) + ".", "",
             "| candidate | " + " | ".join(PROTOCOLS) + " | rho(candidate, epoch) |",
             "|---|" + "---|" * (len(PROTOCOLS) + 1)]
    for c in cands:
        if c not in seq:
            continue
        x = seq[c].to_numpy(float)
        cells = []
        for p in PROTOCOLS:
            yv = seq[p].to_numpy(float)
            r = float(partial_spearman(x, yv, ep))
            b = partial_spearman(x[idx], yv[idx], ep[idx])
            lo, hi = ci(b)
            cells.append(f"{r:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        r_ep = float(_pearson_rows(_ranks(x), _ranks(ep)))
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {r_ep:+.2f} |")
    key = [c for c in ("rankme", "erank", "class_sep_r2", "nc1", "old_score", "t_nc1", "score", "score_target")
           if c in seq]
    trade = seq[seq.run.str.startswith("tradeoff")]
    if len(trade):
        lines += ["", f"The same, on the {trade.run.nunique()} seeds of known_runs' \"tradeoff\" run only "
                  f"({len(trade)} checkpoints; MLP 64-128-16-5, fc2 is 16 wide):", "",
                  "| candidate | " + " | ".join(PROTOCOLS) + " | rho(candidate, epoch) |",
                  "|---|" + "---|" * (len(PROTOCOLS) + 1)]
        te = trade["epoch"].to_numpy(float)
        tidx = rng.integers(0, len(trade), size=(args.boot, len(trade)))
        for c in key:
            x = trade[c].to_numpy(float)
            cells = []
            for p in PROTOCOLS:
                yv = trade[p].to_numpy(float)
                lo, hi = ci(partial_spearman(x[tidx], yv[tidx], te[tidx]))
                cells.append(f"{float(partial_spearman(x, yv, te)):+.2f} [{lo:+.2f}, {hi:+.2f}]")
            lines.append(f"| {c} | " + " | ".join(cells) + f" | {float(_pearson_rows(_ranks(x), _ranks(te))):+.2f} |")
    lines += ["", "Within each run (no pooling): Spearman of the candidate with accuracy over that run's checkpoints, "
              "median over the runs [min, max]; first over all checkpoints, then over the late ones (epoch >= 7, "
              "after source accuracy has nearly saturated).", "",
              "| candidate | checkpoints | " + " | ".join(PROTOCOLS) + " |", "|---|---|" + "---|" * len(PROTOCOLS)]
    for c in key:
        for label, part in (("all", seq), ("epoch >= 7", seq[seq.epoch >= 7])):
            cells = []
            for p in PROTOCOLS:
                rs = [float(_pearson_rows(_ranks(g[c].to_numpy(float)), _ranks(g[p].to_numpy(float))))
                      for _, g in part.groupby("run")]
                cells.append(f"{np.nanmedian(rs):+.2f} [{np.nanmin(rs):+.2f}, {np.nanmax(rs):+.2f}]")
            lines.append(f"| {c} | {label} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())

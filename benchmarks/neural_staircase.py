"""The MI staircase of Poole et al. (2019) for every neural bound in infodyn.

Run from the repository root:

    .venv/bin/python benchmarks/neural_staircase.py            # full run (about 10 min on a busy 2-core box)
    .venv/bin/python benchmarks/neural_staircase.py --quick    # a smoke run (no files written)

Twenty independent Gaussian pairs (x_i, y_i) with a common correlation rho; the true MI
I = -10 log(1 - rho^2) is stepped through 2, 4, 6, 8, 10 nats, ``--steps`` training steps per
level, a fresh batch of 64 drawn at every step (as in the paper). The cubic variant feeds y^3
/ sqrt(15) instead of y (same MI: an invertible map; the constant
keeps the scale near 1, as infodyn's own standardisation would, harder critic). Every bound trains its own separable critic (two MLPs
20 -> 256 -> 256 -> 32, ReLU, Adam 5e-4); the value recorded at a step is the bound on that
step's fresh batch before the update, so it is never measured on data the critic trained on.

Writes benchmarks/results/neural_staircase.md (mean, bias and per-batch standard deviation over
the second half of each level) and benchmarks/results/neural_staircase.png (estimates against
the truth), and prints the table. Timings are from a shared, busy machine and are only indicative.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from infodyn.estimators.neural.critics import Baseline, make_critic
from infodyn.estimators.neural.train import DEFAULTS, METHODS, Objective

ROOT = Path(__file__).resolve().parent.parent
OUT_MD = ROOT / "benchmarks" / "results" / "neural_staircase.md"
OUT_PNG = ROOT / "benchmarks" / "results" / "neural_staircase.png"
LEVELS = (2.0, 4.0, 6.0, 8.0, 10.0)
DIM, BATCH, LR = 20, 64, 5e-4
CUBE_SD = math.sqrt(15.0)  # sd of z^3 for z ~ N(0, 1): a fixed rescaling, MI unchanged


def rho_for(mi: float, d: int = DIM) -> float:
    return math.sqrt(1 - math.exp(-2 * mi / d))


def run(method: str, cubic: bool, steps: int, seed: int) -> np.ndarray:
    """Per-step bound values (nats), shape (len(LEVELS) * steps,)."""
    torch.manual_seed(seed)
    critic = make_critic("separable", DIM, DIM, (256, 256), 32, "relu")
    params = list(critic.parameters())
    baseline = None
    if method in ("tuba", "interpolated"):
        baseline = Baseline(DIM, (64,), "relu")
        params += list(baseline.parameters())
    opt = torch.optim.Adam(params, lr=LR)
    obj = Objective(method, dict(DEFAULTS))
    rng = np.random.default_rng(seed)
    out = np.empty(len(LEVELS) * steps)
    k = 0
    for mi in LEVELS:
        rho = rho_for(mi)
        for _ in range(steps):
            x = rng.normal(size=(BATCH, DIM))
            y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(BATCH, DIM))
            if cubic:
                y = y**3 / CUBE_SD
            xt = torch.as_tensor(x, dtype=torch.float32)
            yt = torch.as_tensor(y, dtype=torch.float32)
            s = critic(xt, yt)
            log_b = baseline(yt) if baseline is not None else None
            with torch.no_grad():
                out[k] = float(obj.value(s, log_b))
            loss = -obj.objective(s, log_b)
            if not torch.isfinite(loss):  # diverged: record the rest as NaN, reported as such
                out[k:] = np.nan
                return out
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k += 1
    return out


def ema(v: np.ndarray, rate: float = 0.01) -> np.ndarray:
    out = np.empty_like(v)
    m = v[0]
    for i, a in enumerate(v):
        m = a if not np.isfinite(m) else (1 - rate) * m + rate * a
        out[i] = m
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps per MI level")
    ap.add_argument("--quick", action="store_true", help="100 steps per level, two bounds, nothing written")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # small networks: one thread is fastest, and the machine is shared
    steps = 100 if args.quick else args.steps
    methods = ("infonce", "smile") if args.quick else METHODS

    curves, secs = {}, {}
    for cubic in (False, True):
        for m in methods:
            t0 = time.perf_counter()
            curves[(m, cubic)] = run(m, cubic, steps, args.seed)
            secs[(m, cubic)] = time.perf_counter() - t0
            print(f"{m:13s} {'cubic' if cubic else 'gaussian':8s} {secs[(m, cubic)]:.0f}s", flush=True)

    lines = [
        "# Neural MI bounds on the staircase of Poole et al. (2019)",
        "",
        f"{DIM} independent Gaussian pairs, true MI stepped through {', '.join(f'{v:g}' for v in LEVELS)} nats, "
        f"{steps} steps per level, a fresh batch of {BATCH} per step; separable critic (256, 256) -> 32, "
        f"Adam {LR:g}, seed {args.seed}, 1 CPU thread. Columns per level: mean / bias / per-batch SD of the "
        "bound over the second half of the level's steps (nats); 'diverged': non-finite loss, training stopped. InfoNCE is capped at "
        f"log {BATCH} = {math.log(BATCH):.2f} nats. Cubic: y -> y^3 / sqrt(15) (same MI). "
        "Seconds: wall time of the whole run on a shared, busy machine (indicative only).",
        "",
        "| problem | bound | " + " | ".join(f"I = {v:g}" for v in LEVELS) + " | seconds |",
        "|---|---|" + "---|" * len(LEVELS) + "---|",
    ]
    for cubic in (False, True):
        for m in methods:
            v = curves[(m, cubic)].reshape(len(LEVELS), steps)[:, steps // 2:]
            cells = []
            for mi, row in zip(LEVELS, v):
                if not np.all(np.isfinite(row)):
                    cells.append("diverged")
                    continue
                cells.append(f"{row.mean():.2f} / {row.mean() - mi:+.2f} / {row.std():.2f}")
            lines.append(f"| {'cubic' if cubic else 'gaussian'} | {m} | " + " | ".join(cells)
                         + f" | {secs[(m, cubic)]:.0f} |")
    lines += ["", f"Command: `.venv/bin/python benchmarks/neural_staircase.py --steps {steps}`",
              f"Plot: `benchmarks/results/{OUT_PNG.name}`", ""]
    text = "\n".join(lines)
    print(text)
    if args.quick:
        return
    OUT_MD.parent.mkdir(parents=True, exist_ok=True)
    OUT_MD.write_text(text)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = np.repeat(LEVELS, steps)
    fig, axes = plt.subplots(2, len(methods), figsize=(2.6 * len(methods), 5.2), sharex=True, sharey=True)
    for r, cubic in enumerate((False, True)):
        for c, m in enumerate(methods):
            ax = axes[r, c]
            v = curves[(m, cubic)]
            ax.plot(np.clip(v, -2, 14), color="C0", alpha=0.25, lw=0.5)
            ax.plot(ema(np.clip(v, -2, 14)), color="C0", lw=1.2)
            ax.plot(truth, color="k", lw=1.0)
            if m == "infonce":
                ax.axhline(math.log(BATCH), color="grey", ls=":", lw=0.8)
            ax.set_ylim(-1, 12)
            ax.set_title(f"{m} ({'cubic' if cubic else 'Gaussian'})", fontsize=9)
            if c == 0:
                ax.set_ylabel("MI (nats)")
            if r == 1:
                ax.set_xlabel("step")
    fig.suptitle("Neural MI bounds on the staircase (black: true MI; light: per batch; dark: EMA)", fontsize=10)
    fig.tight_layout()
    fig.savefig(OUT_PNG, dpi=110)
    print(f"wrote {OUT_MD} and {OUT_PNG}")


if __name__ == "__main__":
    main()

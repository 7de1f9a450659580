"""Speed and accuracy of infodyn's neural MI bounds against torch-mist, side by side.

Run from the repository root:

    .venv/bin/python benchmarks/neural_speed.py            # full table (about 10-20 min on a busy 2-core box)
    .venv/bin/python benchmarks/neural_speed.py --quick    # a smoke run

The peer, torch-mist, pins numpy<2, so it lives in its own virtual environment,
benchmarks/.venv-torchmist (git-ignored), which this script creates on first use with
``pip install torch==<the torch of .venv> torch-mist "numpy<2" pandas`` (torch first and pinned so
that pip does not pull CUDA wheels; torch-mist imports pandas without declaring it) and runs in
a subprocess (benchmarks/_torchmist_peer.py) that writes its results as JSON.

Both sides get the same problem (20-dimensional correlated Gaussians, true MI 2 nats, n = 20,000),
the same critic architecture, batch size, learning rate (Adam 5e-4), number of steps (no early
stopping on either side), every other sample of a batch as a negative (torch-mist
``neg_samples=0``), and one CPU thread. Time per step is the time of the whole estimate call
divided by the steps, so it includes data handling and the evaluation of the held-out value;
we report CPU time (process time: robust to the other jobs on a shared machine) and wall time.
Runs of the two libraries are interleaved so that changes in machine load hit both alike; the
wall-clock numbers are still noisy on a shared machine.

Writes benchmarks/results/neural_speed.md and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "benchmarks" / ".venv-torchmist"
PEER_PY = PEER_VENV / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "neural_speed.md"


def ensure_peer_venv() -> None:
    if PEER_PY.exists():
        ok = subprocess.run([str(PEER_PY), "-c", "import torch_mist, pandas"], capture_output=True)
        if ok.returncode == 0:
            return
    torch_version = torch.__version__.split("+")[0]
    if not PEER_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_PY), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [f"torch=={torch_version}"], check=True)
    subprocess.run(pip + [f"torch=={torch_version}", "torch-mist", "numpy<2", "pandas"], check=True)


def gaussian_problem(n: int, d: int, mi: float, seed: int):
    rho = np.sqrt(1 - np.exp(-2 * mi / d))
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    y = rho * x + np.sqrt(1 - rho**2) * r.normal(size=(n, d))
    return x, y


def run_infodyn(x, y, cfg) -> dict:
    import infodyn

    t0, c0 = time.perf_counter(), time.process_time()
    est = infodyn.estimate_mi(
        x, y, method=cfg["method"], critic=cfg["critic"], hidden=tuple(cfg["hidden"]),
        embed_dim=cfg["embed_dim"], batch_size=cfg["batch_size"], max_steps=cfg["steps"],
        patience=10**9, lr=cfg["lr"], seed=cfg["seed"], num_threads=1, device="cpu",
    )
    return {"nats": est.nats, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def run_peer(cfg, data_path: str, workdir: str) -> dict:
    spec = os.path.join(workdir, "spec.json")
    out = os.path.join(workdir, "out.json")
    json.dump({"threads": 1, "runs": [{**cfg, "data": data_path}]}, open(spec, "w"))
    res = subprocess.run([str(PEER_PY), str(ROOT / "benchmarks" / "_torchmist_peer.py"), spec, out],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"torch-mist run failed for {cfg}:\n{res.stderr[-3000:]}")
    return json.load(open(out))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps, two methods (smoke run)")
    args = ap.parse_args()
    ensure_peer_venv()
    torch.set_num_threads(1)

    n, d, mi, seed = 20000, 20, 2.0, 0
    x, y = gaussian_problem(n, d, mi, seed)
    n_test = int(0.2 * n)
    base = dict(hidden=[256, 256], embed_dim=32, batch_size=128, lr=5e-4, seed=0)
    if args.quick:
        configs = [dict(base, method=m, critic="separable", steps=100) for m in ("infonce", "smile")]
    else:
        configs = [dict(base, method=m, critic="separable", steps=1500)
                   for m in ("infonce", "nwj", "mine", "smile", "js")]
        configs += [dict(base, method=m, critic="concat", hidden=[128, 128], steps=400) for m in ("infonce", "smile")]

    run_infodyn(x[:2000], y[:2000], dict(configs[0], steps=10))  # warm-up, as the peer does
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npz")
        # torch-mist: train on the first 80% (it holds out 10% of that for validation), test on the rest;
        # infodyn splits the whole set 70/10/20 itself
        np.savez(data_path, x_train=x[:-n_test], y_train=y[:-n_test], x_test=x[-n_test:], y_test=y[-n_test:])
        for cfg in configs:
            ours = run_infodyn(x, y, cfg)
            peer = run_peer(cfg, data_path, tmp)
            rows.append((cfg, ours, peer))
            print(cfg["method"], cfg["critic"], "infodyn", ours, "torch-mist", peer, flush=True)

    lines = [
        "# Neural MI bounds: infodyn vs torch-mist",
        "",
        f"Problem: {d}-dim correlated Gaussians, true MI {mi} nats, n = {n}; Adam lr 5e-4, batch 128, "
        "all in-batch negatives, fixed steps (no early stopping), 1 CPU thread each, "
        f"torch {torch.__version__}. Time per step = whole estimate call / steps (ms). "
        "CPU = process time, wall = elapsed (shared, busy 2-core machine: wall times are noisy). "
        "Error = |estimate - truth| in nats on each library's held-out test split. No GPU was available "
        "to this run, so there is no GPU column.",
        "",
        "| method | critic (hidden) | steps | infodyn CPU ms/step | torch-mist CPU ms/step | CPU speed-up | "
        "infodyn wall ms/step | torch-mist wall ms/step | wall speed-up | infodyn error | torch-mist error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cfg, ours, peer in rows:
        s = cfg["steps"]
        oc, pc = 1e3 * ours["cpu_seconds"] / s, 1e3 * peer["cpu_seconds"] / s
        ow, pw = 1e3 * ours["seconds"] / s, 1e3 * peer["seconds"] / s
        lines.append(
            f"| {cfg['method']} | {cfg['critic']} {tuple(cfg['hidden'])} | {s} | {oc:.2f} | {pc:.2f} | {pc / oc:.1f}x | "
            f"{ow:.2f} | {pw:.2f} | {pw / ow:.1f}x | {abs(ours['nats'] - mi):.3f} | {abs(peer['nats'] - mi):.3f} |"
        )
    lines += ["", f"Command: `.venv/bin/python benchmarks/neural_speed.py{' --quick' if args.quick else ''}`", ""]
    text = "\n".join(lines)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

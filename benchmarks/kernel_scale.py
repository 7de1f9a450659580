"""KDE and matrix-based Renyi at large n: time and peak memory (no n x n matrix held whole).

Run:  .venv/bin/python benchmarks/kernel_scale.py [--sizes 5000 50000] [--d 10]   (about 10-15 min on a busy 2-core CPU)
Writes benchmarks/results/kernel_scale.md and prints it.

Each case runs in a fresh subprocess, which reports its wall time and its peak resident memory
(ru_maxrss; on CUDA also torch.cuda.max_memory_allocated) and CPU seconds (user + system; less
sensitive than wall time to other load on a shared machine). "base RSS" is the process after
imports and data generation, so peak - base is what the estimator added. The last column is what
one dense n x n float64 matrix would take. Cases:

* ``kde labels``: estimate_mi(t, y, method="kde") with 10 classes (the information-plane I(T;Y)
  computation; I(X;T) comes from the same pass);
* ``kde continuous``: estimate_mi(x, y) with a continuous 1-D y (three log-sum-exps per block);
* ``renyi alpha=2``: exact at any n by the blocked sum of squared Gram entries;
* ``renyi alpha=1.01``: the eigendecomposition path on a seeded subsample of max_samples=1000 rows
  (what it computes beyond max_samples; see infodyn/estimators/renyi.py).

A shared, busy 2-core CPU machine without a GPU: times are noisy and pessimistic.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "kde labels": dict(method="kde", labels=True, params={"noise_var": 0.1}),
    "kde continuous": dict(method="kde", labels=False, params={"noise_var": 0.1}),
    "renyi alpha=2": dict(method="renyi", labels=False, params={"alpha": 2.0}),
    "renyi alpha=1.01": dict(method="renyi", labels=False, params={"alpha": 1.01}),
}


def child(case: str, n: int, d: int) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from infodyn.estimators import estimate_mi

    spec = CASES[case]
    r = np.random.default_rng(0)
    y_lab = r.integers(0, 10, size=n)
    x = np.tanh(y_lab[:, None] * 0.2 + r.normal(size=(n, d)))
    y = y_lab if spec["labels"] else x[:, :1] + r.normal(size=(n, 1))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    base = ru0.ru_maxrss / 1024
    t0 = time.perf_counter()
    est = estimate_mi(x, y, method=spec["method"], **spec["params"])
    secs = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"seconds": secs, "cpu_seconds": cpu, "base_mb": base, "peak_mb": peak, "gpu_mb": gpu, "nats": est.nats,
                      "params": {k: v for k, v in est.params.items() if k in ("path", "n_used", "subsampled")}}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kernel_scale.md"))
    ap.add_argument("--child", nargs=3, metavar=("CASE", "N", "D"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [
        "# KDE and Renyi at large n: time and peak memory",
        "",
        f"d = {args.d}, device {dev}, torch {torch.__version__}; each case in a fresh process. "
        f"Shared busy 2-core machine (1-min load average {os.getloadavg()[0]:.1f} at the start): wall times "
        "are noisy, CPU seconds are the cleaner figure. No case holds an n x n matrix: compare peak RSS "
        "with the last column.",
        f"Command: `.venv/bin/python benchmarks/kernel_scale.py --sizes {' '.join(map(str, args.sizes))} --d {args.d}`",
        "",
        "| case | n | wall s | CPU s | peak RSS (MiB) | base RSS (MiB) | GPU peak (MiB) | value (nats) | path | dense n x n float64 (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in args.cases:
        for n in args.sizes:
            proc = subprocess.run([sys.executable, __file__, "--child", case, str(n), str(args.d)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                lines.append(f"| {case} | {n} | FAILED (rc {proc.returncode}) | | | | | {proc.stderr.strip()[-120:]} | |")
                print(proc.stderr, file=sys.stderr)
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            p = res["params"]
            path = p.get("path", "blocked log-sum-exp")
            if p.get("subsampled"):
                path += f", subsample {p['n_used']}"
            gpu = "-" if res["gpu_mb"] is None else f"{res['gpu_mb']:.0f}"
            lines.append(f"| {case} | {n} | {res['seconds']:.1f} | {res['cpu_seconds']:.1f} | {res['peak_mb']:.0f} | {res['base_mb']:.0f} | "
                         f"{gpu} | {res['nats']:.4f} | {path} | {n * n * 8 / 2**20:.0f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

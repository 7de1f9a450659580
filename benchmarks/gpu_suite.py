"""Every CUDA path of infodyn in one command, for a machine with a GPU (issue 18).

Run:  .venv/bin/python benchmarks/gpu_suite.py            # on the GPU machine, < 8 min on one modern GPU
      .venv/bin/python benchmarks/gpu_suite.py --device cpu --quick   # a smoke run of the same code on CPU
Writes benchmarks/results/gpu_suite.md (and analyze_scale_gpu.md) and prints them; the smoke run
only prints.

Steps, each timed and kept when the next fails:
1. `pytest -m gpu`: the CUDA tests (estimators, probes, k-NN, feature extraction, AMP), which skip
   without a device.
2. GPU columns: the workloads of mi_speed (KSG n = 20k, 8+8 dims; binning 100k x 512; KDE), transfer_speed (linear probe and k-NN on 10k x 512 training rows, 2k test rows,
   10 classes), neural_speed (InfoNCE and SMILE at their defaults on 20k samples of 5+5-dim
   Gaussians), each on CUDA beside the same call on CPU (one thread), values compared; KDE at
   n = 20k (the CPU side of n = 50k alone takes half a minute). Each side is called once to warm
   up before the timed call.
3. analyze_scale at the full sizes (`benchmarks/analyze_scale.py --gpu`).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    value = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return value, time.perf_counter() - t0


def workloads(quick: bool):
    """(name, fn(device) -> float) pairs: the GPU columns of mi_speed, transfer_speed, neural_speed."""
    from infodyn.estimators import estimate_mi, information_plane
    from infodyn.transfer import knn_accuracy, linear_probe

    rng = np.random.default_rng(0)
    s = 10 if quick else 1
    n_ksg, d = 20000 // s, 8
    z = rng.normal(size=(n_ksg, d))
    x_ksg, y_ksg = z, 0.6 * z + 0.8 * rng.normal(size=(n_ksg, d))
    t_bin = np.tanh(rng.normal(size=(100000 // s, 512 // s)))
    y_bin = rng.integers(0, 10, len(t_bin))
    n_kde = 20000 // s
    t_kde, y_kde = rng.normal(size=(n_kde, 16)), rng.integers(0, 10, n_kde)
    centres = rng.normal(size=(10, 512 // s))
    y_tr, y_te = rng.integers(0, 10, 10000 // s), rng.integers(0, 10, 2000 // s)
    x_tr = centres[y_tr] + 2.0 * rng.normal(size=(len(y_tr), centres.shape[1]))
    x_te = centres[y_te] + 2.0 * rng.normal(size=(len(y_te), centres.shape[1]))
    cov_n = 20000 // s
    a = rng.normal(size=(cov_n, 5))
    b = 0.8 * a + 0.6 * rng.normal(size=(cov_n, 5))
    return [
        ("ksg n=%d d=%d+%d" % (n_ksg, d, d), lambda dev: estimate_mi(x_ksg, y_ksg, "ksg", device=dev).nats),
        ("binning %dx%d" % t_bin.shape, lambda dev: information_plane(t_bin, y_bin, method="binning", device=dev).i_xt.nats),
        ("kde n=%d" % n_kde, lambda dev: information_plane(t_kde, y_kde, method="kde", device=dev).i_xt.nats),
        ("linear probe %dx%d" % x_tr.shape, lambda dev: linear_probe(x_tr, y_tr, x_te, y_te, device=dev).accuracy),
        ("k-NN %dx%d" % x_tr.shape, lambda dev: knn_accuracy(x_tr, y_tr, x_te, y_te, device=dev).accuracy),
        ("infonce n=%d 5+5" % cov_n, lambda dev: estimate_mi(a, b, "infonce", device=dev, **({"max_steps": 50} if quick else {})).nats),
        ("smile n=%d 5+5" % cov_n, lambda dev: estimate_mi(a, b, "smile", device=dev, **({"max_steps": 50} if quick else {})).nats),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tenth sizes, no analyze_scale (smoke run)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    lines = ["# gpu_suite", "", "Command: `.venv/bin/python benchmarks/gpu_suite.py"
             + (f" --device {args.device}" if args.device != "cuda" else "") + (" --quick" if args.quick else "") + "`",
             f"Device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'}; "
             f"torch {torch.__version__}.", ""]
    t0 = time.perf_counter()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", str(ROOT / "tests")],
                           capture_output=True, text=True)
    tail = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
    lines += ["## CUDA tests (`pytest -m gpu`)", "", f"exit {tests.returncode}: {tail} ({time.perf_counter() - t0:.0f} s)", ""]
    lines += ["## GPU columns", "", "| workload | CPU (s) | %s (s) | speed-up | CPU value | %s value |" % (args.device, args.device),
              "|---|---|---|---|---|---|"]
    for name, fn in workloads(args.quick):
        try:
            fn("cpu")  # warm-up: compiled kernels, first-call allocations
            v_cpu, t_cpu = timed(lambda: fn("cpu"), "cpu")
            fn(args.device)  # warm-up: CUDA context, kernels
            v_dev, t_dev = timed(lambda: fn(args.device), args.device)
            lines.append(f"| {name} | {t_cpu:.3f} | {t_dev:.3f} | {t_cpu / t_dev:.1f}x | {v_cpu:.4f} | {v_dev:.4f} |")
        except Exception as exc:  # keep the rest of the suite
            lines.append(f"| {name} | failed: {type(exc).__name__}: {str(exc)[:200]} | | | | |")
        print(lines[-1], flush=True)
    if not args.quick:
        scale = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "analyze_scale.py"), "--gpu"],
                               capture_output=True, text=True)
        lines += ["", "## analyze_scale --gpu", "", f"exit {scale.returncode}; table in benchmarks/results/analyze_scale_gpu.md"
                  + ("" if scale.returncode == 0 else f": {scale.stderr[-1500:]}")]
    lines += ["", f"Total {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    if args.device.startswith("cuda") and not args.quick:  # a smoke run leaves the committed table alone
        (ROOT / "benchmarks" / "results" / "gpu_suite.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

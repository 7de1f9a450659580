"""KSG neighbour-search backends side by side: the measurements behind ``ksg(algorithm="auto")``
and the compiled kernels' rows per block.

Run:  .venv/bin/python benchmarks/ksg_backends.py            (about 6 minutes on 2 cores)
      .venv/bin/python benchmarks/ksg_backends.py --quick    (n = 20000 only; under a minute)

Everything is single-threaded (cKDTree and compiled kernels with one worker, torch one thread).
Data: x ~ N(0, I_d), y = 0.6 x + noise (d dimensions each), k = 3, variant 1. Every backend's
counts are compared with the compiled kernel's, so each row also checks exactness.

1. tree (scipy cKDTree) against the compiled kernels over n and d per side, both norms at
   n = 20000: where "auto" switches (``TREE_MAX_DIM_COMPILED`` and the n >= 50000 rule).
2. compiled against torch brute force (the float64 Gram GEMM) for the Euclidean norm in many
   dimensions: where "auto" hands over to brute force (``COMPILED_MAX_EUCLIDEAN_DIM``).
3. rows per block at n = 100000: the buffer budget (``BUFFER_BYTES``) against 16 rows.
4. the first compiled call of a fresh process, which loads the kernels from numba's on-disk cache.

Writes benchmarks/results/ksg_backends.md and prints it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infodyn.estimators import _knn_compiled as kc  # noqa: E402
from infodyn.estimators import knn  # noqa: E402


def data(n: int, d: int, seed: int = 0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    return x, 0.6 * x + 0.8 * r.normal(size=(n, d))


def compiled(x, y, norm: str):
    kk = np.full(x.shape[0], 3, dtype=np.int64)
    return kc._run(x, y, np.empty(0, dtype=np.int64), kk, 1, norm == "euclidean", 1)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def backends(n, dims, norms, log):
    rows = []
    for d in dims:
        x, y = data(n, d)
        for norm in norms:
            tc, ref = timed(lambda: compiled(x, y, norm))
            tt, tree = timed(lambda: knn._ksg_tree(x, y, 3, 1, norm, 1))
            same = bool(np.array_equal(tree[0], ref[0]) and np.array_equal(tree[1], ref[1]))
            auto = knn._choose("auto", knn.resolve_device("cpu"), n, (d, d), norm)
            rows.append((n, d, norm, tt, tc, same, auto))
            log(f"n={n} d={d}+{d} {norm}: tree {tt:.2f} s, compiled {tc:.2f} s, same={same}, auto={auto}")
    return rows


def against_brute(cases, log):
    import torch

    out = []
    cpu = torch.device("cpu")
    for n, d in cases:
        x, y = data(n, d)
        tc, ref = timed(lambda: compiled(x, y, "euclidean"))
        tb, got = timed(lambda: knn._ksg_brute(knn._Space(x, "euclidean", cpu), knn._Space(y, "euclidean", cpu),
                                               3, 1, 256.0))
        same = bool(np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1]))
        auto = knn._choose("auto", cpu, n, (d, d), "euclidean")
        out.append((n, d, tc, tb, same, auto))
        log(f"euclidean n={n} d={d}+{d}: compiled {tc:.2f} s, brute {tb:.2f} s, same={same}, auto={auto}")
    return out


def rows_per_block(n, dims, log):
    out = []
    for d in dims:
        x, y = data(n, d)
        budget = kc._rows_per_block(n)
        t_budget, ref = timed(lambda: compiled(x, y, "max"))
        saved = kc.BUFFER_BYTES
        kc.BUFFER_BYTES = 1 << 40  # no budget: R_MAX rows
        try:
            t_max, got = timed(lambda: compiled(x, y, "max"))
        finally:
            kc.BUFFER_BYTES = saved
        out.append((n, d, budget, t_budget, kc.R_MAX, t_max, bool(np.array_equal(ref[0], got[0]))))
        log(f"n={n} d={d}+{d}: {budget} rows {t_budget:.2f} s, {kc.R_MAX} rows {t_max:.2f} s")
    return out



_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from infodyn.estimators import _knn_compiled as kc
kc.ksg_counts(np.random.default_rng(0).normal(size=(50, 2)), np.random.default_rng(1).normal(size=(50, 2)), 3, 1, False)
print(time.perf_counter() - t0)
"""


def first_call() -> float:
    """Seconds of import + first call in a fresh process (the cache is warm: main() ran a call)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _FIRST_CALL], capture_output=True, text=True, check=True,
                         cwd=str(ROOT))
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 20000 only")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ksg_backends.md"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    log = lambda m: print(m, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    compiled(*data(50, 2), "max")  # load (or compile) the kernels outside the timings
    table = backends(20000, [1, 2, 3, 4, 8], ("max", "euclidean"), log)
    if not args.quick:
        table += backends(50000, [2, 3, 4], ("max",), log) + backends(100000, [2, 3, 4], ("max",), log)
    brute = against_brute([(5000, 16), (5000, 32), (5000, 64), (5000, 96), (5000, 128), (2000, 512)], log)
    rpb = [] if args.quick else rows_per_block(100000, [3, 8], log)
    loads = sorted(first_call() for _ in range(3))
    L = [
        "# KSG backends: tree against compiled kernels",
        "",
        f"Command: `.venv/bin/python benchmarks/ksg_backends.py{' --quick' if args.quick else ''}`. "
        f"One thread everywhere; {platform.machine()}, 2 cores; torch {torch.__version__}, numpy {np.__version__}. "
        f"Total {time.perf_counter() - t0:.0f} s. k = 3, variant 1; 'same counts' compares the tree's neighbour "
        "counts with the compiled kernel's, element by element.",
        "",
        "## 1. tree (cKDTree) against compiled, seconds",
        "",
        "| n | d per side | norm | tree s | compiled s | faster | same counts | auto picks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, d, norm, tt, tc, same, auto in table:
        L.append(f"| {n} | {d} | {norm} | {tt:.2f} | {tc:.2f} | {'tree' if tt < tc else 'compiled'} "
                 f"{max(tt, tc) / min(tt, tc):.1f}x | {same} | {auto} |")
    L += ["", "## 2. compiled against torch brute force (float64 Gram GEMM), Euclidean norm, seconds", "",
          "| n | d per side | compiled s | brute s | faster | same counts | auto picks |", "|---|---|---|---|---|---|---|"]
    for n, d, tc, tb, same, auto in brute:
        L.append(f"| {n} | {d} | {tc:.2f} | {tb:.2f} | {'compiled' if tc < tb else 'brute'} "
                 f"{max(tc, tb) / min(tc, tb):.1f}x | {same} | {auto} |")
    if rpb:
        L += ["", f"## 3. rows per block at n = 100000 (budget BUFFER_BYTES = {kc.BUFFER_BYTES >> 20} MiB), max norm", "",
              "| d per side | budget rows | s | rows | s | same counts |", "|---|---|---|---|---|---|"]
        for n, d, rb, tb, rm, tm, same in rpb:
            L.append(f"| {d} | {rb} | {tb:.2f} | {rm} | {tm:.2f} | {same} |")
    L += ["", "## 4. first compiled call in a fresh process (import + load from numba's cache + 50 points)", "",
          f"Three fresh processes: {', '.join(f'{t:.2f}' for t in loads)} s. (The first call after installing or "
          "changing the kernels compiles them instead; benchmarks/results/mi_speed.md reports that run's time.)"]
    text = "\n".join(L) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

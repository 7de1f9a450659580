"""Speed of the classical MI estimators over n and d, side by side with peer implementations.

Run:  .venv/bin/python benchmarks/mi_speed.py             (about 15-25 min on the busy shared 2-core machine)
      .venv/bin/python benchmarks/mi_speed.py --quick     (n in {1k, 5k}, d in {1, 8}; a few minutes)
Options: --cap S (skip a cell whose predicted time exceeds S seconds, default 40), --no-50k (leave
out the KDE/Renyi n=50k runs), --no-binning-100k.

Everything runs single-threaded (torch.set_num_threads(1), cKDTree workers=1), like the peers
(scikit-learn's KDTree and ennemi's cKDTree are single-threaded): on a machine shared by several
jobs, multi-threaded torch spin-waits and its times become meaningless. The ratios, measured in
the same process minutes apart, are what to read.

Peers: scikit-learn ``mutual_info_regression`` (d = 1; it standardises and jitters like infodyn's
ksg) and ennemi's multivariate KSG (``ennemi._entropy_estimators._estimate_single_mi``, the function
behind its public API, which takes one-dimensional y only; called on standardised data, as ennemi's
own preprocessing does). Data: x ~ N(0, I_d), y = 0.6 x + 0.8 noise (d dims each).

Writes benchmarks/results/mi_speed.md and prints it.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import infodyn  # noqa: E402
from infodyn.estimators import available  # noqa: E402

NS = [1000, 5000, 20000, 100000]
DS = [1, 8, 64, 512]
# method -> (params, exponent assumed before two points are measured)
OURS = {
    "ksg": ({"workers": 1}, 2.0),
    "binning": ({}, 1.2),
    "kde": ({}, 2.0),
    "renyi": ({}, 1.0),
    "gaussian": ({}, 1.0),
}


def data(n: int, d: int, seed: int = 0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d))
    return x, 0.6 * x + 0.8 * r.normal(size=(n, d))


def peer_sklearn(x, y, k=3):
    from sklearn.feature_selection import mutual_info_regression

    return float(mutual_info_regression(x, y[:, 0], n_neighbors=k, random_state=0)[0])


def peer_ennemi(x, y, k=3):
    from ennemi._entropy_estimators import _estimate_single_mi

    return float(_estimate_single_mi(x / x.std(0), y / y.std(0), k))


def _ratio(peer_s, ours_s):
    r = peer_s / ours_s
    return f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def timed(fn):
    t0 = time.perf_counter()
    v = fn()
    return time.perf_counter() - t0, v


def predict(points, n, expo0):
    """Predicted seconds at n from the measured (n, s) points (log-log slope of the last two)."""
    if not points:
        return 0.0
    if len(points) >= 2 and points[-1][1] > 0.05 and points[-2][1] > 0.05:
        (n1, t1), (n2, t2) = points[-2], points[-1]
        expo = max(1.0, math.log(t2 / t1) / math.log(n2 / n1))
    else:
        expo = expo0
    n_last, t_last = points[-1]
    return t_last * (n / n_last) ** expo


def fit_exponent(points):
    pts = [(n, t) for n, t in points if t > 0.05]
    if len(pts) < 2:
        return None
    a = np.log([p[0] for p in pts])
    b = np.log([p[1] for p in pts])
    return float(np.polyfit(a, b, 1)[0])


def grid(ns, ds, cap, budget_s, log):
    rows, expo = [], []
    t_start = time.perf_counter()
    have = set(available())
    runners = []
    for name, (params, e0) in OURS.items():
        if name in have:
            runners.append((name, lambda x, y, m=name, p=params: infodyn.estimate_mi(x, y, method=m, **p).nats, e0))
    runners.append(("peer: sklearn (d=1) / ennemi (d>1)", None, 2.0))
    for d in ds:
        for name, fn, e0 in runners:
            if fn is None:
                fn = (lambda x, y: peer_sklearn(x, y)) if d == 1 else peer_ennemi
            pts = []
            for n in ns:
                key = (n == 20000 and d == 8)  # the target cell always runs
                pred = predict(pts, n, e0)
                spent = time.perf_counter() - t_start
                if not key and (pred > cap or spent + pred > budget_s):
                    rows.append((name, d, n, None, None, f"skipped: predicted {pred:.0f} s > cap {cap:.0f} s"
                                 if pred > cap else "skipped: total budget"))
                    log(f"{name:36s} d={d:4d} n={n:6d} skipped (predicted {pred:.0f} s)")
                    continue
                x, y = data(n, d)
                try:
                    s, v = timed(lambda: fn(x, y))
                except Exception as exc:  # recorded, not hidden
                    rows.append((name, d, n, None, None, f"{type(exc).__name__}: {str(exc)[:50]}"))
                    continue
                pts.append((n, s))
                rows.append((name, d, n, s, v, ""))
                log(f"{name:36s} d={d:4d} n={n:6d} {s:8.2f} s  {v:.4f} nats")
            expo.append((name, d, fit_exponent(pts), len(pts)))
    return rows, expo


def target(log, k=3, repeats=3):
    """KSG vs ennemi at n=20k, d=8 and vs sklearn at n=20k, d=1: median of ``repeats`` runs,
    peer and infodyn alternating. Max norm (the peers' norm) for the value check; the default
    (Euclidean) norm is timed too."""
    out, out_first = [], []
    for d, peer_name, peer in ((8, "ennemi", peer_ennemi), (1, "sklearn", peer_sklearn)):
        x, y = data(20000, d)
        runs = {"peer": []}
        cases = [("auto", "max"), ("compiled", "max"), ("brute", "max"), ("auto", None)]
        first = timed(lambda: infodyn.estimate_mi(x[:50], y[:50], method="ksg", algorithm="compiled", workers=1))
        log(f"first compiled call (loads or compiles the numba kernels): {first[0]:.2f} s")
        out_first.append(first[0])
        for _ in range(repeats):
            runs["peer"].append(timed(lambda: peer(x, y, k)))
            for algo, norm in cases:
                s, est = timed(lambda: infodyn.estimate_mi(x, y, method="ksg", k=k, norm=norm, workers=1,
                                                           algorithm=algo))
                runs.setdefault((algo, norm), []).append((s, est.nats, est.params["algorithm"], est.params["norm"]))
        ps = float(np.median([r[0] for r in runs["peer"]]))
        pv = runs["peer"][0][1]
        res = {}
        for key in cases:
            rr = runs[key]
            res[key] = (float(np.median([r[0] for r in rr])), rr[0][1], rr[0][2], rr[0][3], len(rr))
        out.append((d, peer_name, ps, pv, res))
        log(f"target d={d}: {peer_name} {ps:.2f} s {pv:.6f}; " + "; ".join(
            f"{a}/{r[3]}({r[2]}) {r[0]:.2f} s {r[1]:.6f}" for a, r in res.items()))
    return out, max(out_first)


def binning_vs_unique(n=100000, d=512, n_bins=30, seed=0):
    """H(binned T) for T (n, d): infodyn's binning information plane vs np.digitize + np.unique."""
    r = np.random.default_rng(seed)
    t = np.tanh(r.normal(size=(n, d)) * 0.8)
    labels = r.integers(0, 2, n)

    def peer():
        lo, hi = t.min(0), t.max(0)
        codes = np.empty(t.shape, dtype=np.int16)
        for j in range(d):
            edges = np.linspace(lo[j], hi[j], n_bins + 1)[1:-1]
            codes[:, j] = np.digitize(t[:, j], edges)
        _, counts = np.unique(codes, axis=0, return_counts=True)
        p = counts / n
        return float(-(p * np.log(p)).sum())

    ps, pv = timed(peer)
    s, plane = timed(lambda: infodyn.information_plane(t, labels, method="binning", n_bins=n_bins))
    return ps, pv, s, plane.i_xt.nats


_CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
import infodyn
r = np.random.default_rng(0)
x = r.normal(size=({n}, {d})); y = 0.6 * x + 0.8 * r.normal(size=({n}, {d}))
def hwm():  # peak resident set of this process in KiB (VmHWM; ru_maxrss survives exec on Linux)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = hwm()
t0 = time.perf_counter()
est = infodyn.estimate_mi(x, y, method={method!r}, **{params!r})
s = time.perf_counter() - t0
print(json.dumps(dict(s=s, v=est.nats, peak=hwm(), base=base,
                      params={{k: str(v) for k, v in est.params.items()}})))
"""


def large_n(method, params=None, n=50000, d=8, timeout=900):
    code = _CHILD.format(root=str(ROOT), n=n, d=d, method=method, params=dict(params or {}))
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1][:100] if p.stderr else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cap", type=float, default=40.0, help="skip cells predicted slower than this (s)")
    ap.add_argument("--budget", type=float, default=900.0, help="total seconds for the grid")
    ap.add_argument("--no-50k", dest="big", action="store_false")
    ap.add_argument("--no-binning-100k", dest="bin100k", action="store_false")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mi_speed.md"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    log = lambda m: print(m, flush=True)  # noqa: E731
    t_all = time.perf_counter()
    ns = [1000, 5000] if args.quick else NS
    ds = [1, 8] if args.quick else DS
    tgt, first_compiled = target(log)
    rows, expo = grid(ns, ds, args.cap, args.budget, log)
    binrow = binning_vs_unique() if (args.bin100k and not args.quick) else None
    if binrow:
        log(f"binning 100k x 512: np.unique {binrow[0]:.2f} s, infodyn {binrow[2]:.2f} s")
    big = {}
    if args.big and not args.quick:
        for label, m, p in (("kde", "kde", {}), ("renyi (default: subsample)", "renyi", {}),
                            ("renyi alpha=2 (all n, blocked)", "renyi", {"alpha": 2.0})):
            if m in available():
                big[label] = large_n(m, p)
                log(f"{label} n=50000: {big[label]}")
    total = time.perf_counter() - t_all

    from infodyn.estimators import knn

    L = [
        "# MI estimators: speed over n and d, with peers",
        "",
        f"Single-threaded on both sides (torch 1 thread, cKDTree and compiled kernels workers=1); torch {torch.__version__}, "
        f"numpy {np.__version__}, {platform.machine()}, a 2-core machine shared with other jobs "
        f"(load average often 8-12): absolute times are noisy and slow, read the ratios. Total {total:.0f} s.",
        f"Command: `.venv/bin/python benchmarks/mi_speed.py{' --quick' if args.quick else ''}`",
        "",
        "## Target: KSG vs the peer at n = 20000 (k = 3; the max norm is the peers' norm, the Euclidean is infodyn's default)",
        "",
        "| d (each side) | peer | peer s | infodyn ksg | infodyn s | speed-up | peer nats | infodyn nats | difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d, pn, ps, pv, res in tgt:
        for (algo, _), (s, v, used, norm, reps) in res.items():
            diff = f"{abs(v - pv):.1e}" if norm == "max" else "(other norm)"
            L.append(f"| {d} | {pn} | {ps:.2f} | {algo} ({used}), norm={norm}, median of {reps} | {s:.2f} | "
                     f"{_ratio(ps, s)} | {pv:.6f} | {v:.6f} | {diff} |")
    L += [
        "",
        f"ksg defaults: norm={knn.DEFAULT_NORM!r}; algorithm='auto' on CPU takes the tree up to joint dimension "
        f"{knn.TREE_MAX_DIM_COMPILED} (dx + dy; 6 from n = 50000), the compiled numba kernels above it (brute force "
        f"in torch blocks for the Euclidean norm above {knn.COMPILED_MAX_EUCLIDEAN_DIM} dimensions per space), and "
        "brute force on CUDA.",
        "",
        f"The first compiled call in a process loads the kernels from numba's on-disk cache, or compiles them when "
        f"they are new or changed ({first_compiled:.2f} s here, timed separately on 50 points; "
        "benchmarks/results/ksg_backends.md times the load alone). The timings above exclude it.",
        "",
        "## Grid: seconds per estimate (default parameters; '-' = skipped, reason given)",
        "",
        "| estimator | d | " + " | ".join(f"n={n}" for n in ns) + " | growth exponent in n |",
        "|---|---|" + "---|" * len(ns) + "---|",
    ]
    ex = {(nm, d): (e, c) for nm, d, e, c in expo}
    names = list(dict.fromkeys(r[0] for r in rows))
    notes = []
    for nm in names:
        for d in ds:
            cells = []
            for n in ns:
                r = next((r for r in rows if r[0] == nm and r[1] == d and r[2] == n), None)
                if r is None or r[3] is None:
                    cells.append("-")
                    if r is not None:
                        notes.append(f"{nm}, d={d}, n={n}: {r[5]}")
                else:
                    cells.append(f"{r[3]:.2f}")
            e, c = ex.get((nm, d), (None, 0))
            L.append(f"| {nm} | {d} | " + " | ".join(cells) + f" | {'-' if e is None else f'{e:.2f}'} |")
    L += ["", "Skipped cells:", ""] + [f"- {t}" for t in notes]
    L += ["", "Values (nats) of the grid, for reference:", "",
          "| estimator | d | " + " | ".join(f"n={n}" for n in ns) + " |", "|---|---|" + "---|" * len(ns)]
    for nm in names:
        for d in ds:
            cells = []
            for n in ns:
                r = next((r for r in rows if r[0] == nm and r[1] == d and r[2] == n), None)
                cells.append("-" if r is None or r[4] is None else f"{r[4]:.4f}")
            L.append(f"| {nm} | {d} | " + " | ".join(cells) + " |")
    if binrow:
        ps, pv, s, v = binrow
        L += ["", "## Binning of 100000 x 512 activations (30 equal-width bins per unit): H(binned T)", "",
              "| peer: np.digitize + np.unique(axis=0) s | infodyn information_plane('binning') s | speed-up | peer nats | infodyn nats |",
              "|---|---|---|---|---|",
              f"| {ps:.2f} | {s:.2f} | {ps / s:.1f}x | {pv:.6f} | {v:.6f} |"]
        own = ROOT / "benchmarks" / "results" / "binning_speed.md"
        if own.exists():
            L.append(f"\nThe binning module's own benchmark: {own.relative_to(ROOT)}.")
    if big:
        L += ["", "## KDE and Renyi at n = 50000, d = 8 (fresh process each; peak RSS = VmHWM of that process)", "",
              "| method | seconds | nats | peak RSS MiB | RSS before MiB | dense n x n float64 would be MiB | params |",
              "|---|---|---|---|---|---|---|"]
        for m, r in big.items():
            if "error" in r:
                L.append(f"| {m} | - | - | - | - | {50000**2 * 8 / 2**20:.0f} | {r['error']} |")
            else:
                p = ", ".join(f"{k}={v}" for k, v in r["params"].items())
                L.append(f"| {m} | {r['s']:.1f} | {r['v']:.4f} | {r['peak'] / 1024:.0f} | {r['base'] / 1024:.0f} | "
                         f"{50000**2 * 8 / 2**20:.0f} | {p} |")
    text = "\n".join(L) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

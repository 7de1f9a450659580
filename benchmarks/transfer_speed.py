"""Speed of infodyn.transfer against its peers, side by side in one process.

Run:  .venv/bin/python benchmarks/transfer_speed.py [--repeats 3] [--threads 1] [--n-train 10000] [--quick]
Writes benchmarks/results/transfer_speed.md and prints it. About 3-8 minutes on 2 busy CPU cores.

Data: synthetic and seeded: 10 classes with Gaussian class means (scale 0.12 per coordinate)
plus unit Gaussian noise, 512 features; 10,000 training rows and 2,000 test rows.

1. Linear probe: infodyn's 10-value L2 sweep (torch L-BFGS, warm starts, float32) against
   scikit-learn's LogisticRegression(lbfgs) over the same grid, the same stratified validation
   split and the same standardisation, each grid value mapped to C = 1 / (l2 * n), both with
   tol=1e-4 and max_iter=500, then the refit on all training rows at the chosen strength.
   Target: >= 3x faster at equal test accuracy.
2. k-NN (k=20): infodyn's majority vote (and DINO's weighted vote) against
   KNeighborsClassifier(metric="cosine", algorithm="brute"), fit + predict.
   Target: >= 5x faster with identical predictions.
3. LogME: infodyn's torch implementation against the reference numpy formulation of the
   fixed-point algorithm (You et al. 2022; re-implemented below from the published algorithm:
   SVD through the Gram matrix, per-class loop, at most 11 steps, relative tolerance 1e-3,
   1e-5 added to the update denominators).

Both sides run with the same thread count (``--threads``, default 1, set for torch and, via
threadpoolctl, for numpy/scipy BLAS). Times are the minimum over ``--repeats`` runs of the
process CPU time (``time.process_time``) and, separately, of wall-clock time. The development
machine is shared by several jobs: wall-clock times there mostly measure the wait for a core,
so the ratios are taken from CPU time, which with one thread is the work actually done.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infodyn.transfer import DEFAULT_L2_GRID, knn_accuracy, linear_probe, logme  # noqa: E402
from infodyn.transfer import knn as knn_mod  # noqa: E402
from infodyn.transfer import probe as probe_mod  # noqa: E402
from infodyn.transfer.probe import stratified_split  # noqa: E402


def make_data(n_train, n_test, d=512, c=10, scale=0.12, seed=0):
    r = np.random.default_rng(seed)
    means = r.normal(size=(c, d)) * scale
    y = r.integers(0, c, n_train + n_test)
    x = means[y] + r.normal(size=(n_train + n_test, d))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


class Timing:
    """Best CPU and wall seconds over repeats."""

    def __init__(self, cpu, wall):
        self.cpu, self.wall = cpu, wall

    def __truediv__(self, other):  # speed-up ratio, on CPU time
        return self.cpu / other.cpu


def timed(fn, repeats):
    cpu, wall, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        cpu = min(cpu, time.process_time() - c)
        wall = min(wall, time.perf_counter() - t)
    return Timing(cpu, wall), out


# ------------------------------------------------------------------------------ probe


def sklearn_probe(xtr, ytr, xte, yte, grid, val_fraction=0.2, seed=0, max_iter=500, warm=False):
    tr, va = stratified_split(ytr, val_fraction, seed)
    sc = StandardScaler().fit(xtr[tr])
    a, b = sc.transform(xtr[tr]), sc.transform(xtr[va])
    scores = []
    model = LogisticRegression(max_iter=max_iter, tol=1e-4, warm_start=warm)
    for l2 in sorted(grid, reverse=True):
        model.set_params(C=1.0 / (l2 * len(tr)))
        model.fit(a, ytr[tr])
        scores.append((model.score(b, ytr[va]), l2))
    best_l2 = max(scores)[1]
    sc = StandardScaler().fit(xtr)
    final = LogisticRegression(C=1.0 / (best_l2 * len(xtr)), max_iter=max_iter, tol=1e-4)
    final.fit(sc.transform(xtr), ytr)
    return final.score(sc.transform(xte), yte), best_l2


# ------------------------------------------------------------------------------ LogME reference


def logme_reference(f, y):
    """Reference numpy formulation of the fixed-point LogME (You et al., JMLR 2022)."""
    f = f.astype(np.float64)
    n, d = f.shape
    if n > d:
        _, s2, vh = np.linalg.svd(f.T @ f)  # s2: eigenvalues of F^T F
        s = np.sqrt(s2)
        rank = int(np.sum(s > 1e-10))
        s, vh = s[:rank], vh[:rank]
        u = (f @ vh.T) / s
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    sigma = (s**2)[:, None]
    evidences = []
    for c in range(int(y.max()) + 1):
        t_ = (y == c).astype(np.float64)[:, None]
        x = u.T @ t_
        x2 = x**2
        res_x2 = (t_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
              - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(ev / n)
    return float(np.mean(evidences))


# ------------------------------------------------------------------------------ k-NN profile


def knn_profile(xtr, ytr, xte, yte, top=7):
    """[(operator, self CPU ms)] of one majority-vote knn_accuracy run, largest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        knn_accuracy(xtr, ytr, xte, yte, k=20, weighted=False)
    ev = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1000) for e in ev[:top]]


# ------------------------------------------------------------------------------ building blocks


def building_blocks(repeats=20):
    """[(operation, infodyn's way, ms, the alternative, ms)]: single operations behind choices in
    probe.py (the column std) and knn.py (bfloat16, not int8, products), best of ``repeats``."""
    r = np.random.default_rng(1)
    f32 = lambda *s: torch.from_numpy(r.normal(size=s).astype(np.float32))  # noqa: E731
    big = f32(10000, 512)
    q16, t16 = f32(2000, 512).bfloat16(), f32(10000, 512).bfloat16()
    q8 = torch.randint(-127, 128, (2000, 512), dtype=torch.int8)
    t8 = torch.randint(-127, 128, (512, 10000), dtype=torch.int8)

    def ms(fn):
        return 1e3 * timed(fn, repeats)[0].wall

    return [
        ("column std of (10000, 512) float32", "two passes", ms(lambda: probe_mod._moments(big)),
         "torch std", ms(lambda: (big.mean(0), big.std(0, unbiased=False)))),
        ("similarities (2000, 512) by (512, 10000)", "bfloat16 mm", ms(lambda: torch.mm(q16, t16.T)),
         "int8 torch._int_mm", ms(lambda: torch._int_mm(q8, t8))),
    ]


# ------------------------------------------------------------------------------ main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=2_000)
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and numpy alike")
    ap.add_argument("--quick", action="store_true", help="one repeat, skip the warm-start sklearn row")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transfer_speed.md"))
    args = ap.parse_args(argv)
    reps = 1 if args.quick else args.repeats
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    xtr, ytr, xte, yte = make_data(args.n_train, args.n_test)
    grid = list(DEFAULT_L2_GRID)
    lines = []
    say = lines.append

    # warm-up: first-use costs (torch.optim imports torch._dynamo; oneDNN kernels) are not timed
    linear_probe(xtr[:200], ytr[:200], xte[:50], yte[:50], l2_grid=[1e-2])
    knn_accuracy(xtr[:500], ytr[:500], xte[:50], yte[:50])

    # 1. probe -------------------------------------------------------------------------------
    t_ours, res = timed(lambda: linear_probe(xtr, ytr, xte, yte, seed=0), reps)
    t_sk, (sk_acc, sk_l2) = timed(lambda: sklearn_probe(xtr, ytr, xte, yte, grid), reps)
    rows = [("infodyn linear_probe (torch L-BFGS, warm starts, float32)", t_ours, res.accuracy, res.l2),
            ("sklearn LogisticRegression(lbfgs), same grid and split", t_sk, sk_acc, sk_l2)]
    if not args.quick:
        t_skw, (skw_acc, skw_l2) = timed(lambda: sklearn_probe(xtr, ytr, xte, yte, grid, warm=True), 1)
        rows.append(("sklearn, warm_start=True (1 run)", t_skw, skw_acc, skw_l2))
    say(f"## Linear probe: 10-value L2 sweep + refit ({args.n_train} x 512 train, {args.n_test} test, 10 classes)\n")
    say("| method | CPU s | wall s | test accuracy | chosen l2 | speed-up of infodyn (CPU) |")
    say("|---|---:|---:|---:|---:|---:|")
    for name, t, acc, l2 in rows:
        say(f"| {name} | {t.cpu:.2f} | {t.wall:.2f} | {acc:.4f} | {l2:.3g} | {t / t_ours:.1f}x |")
    say(f"\nAccuracy difference infodyn - sklearn: {100 * (res.accuracy - sk_acc):+.2f} points. "
        f"infodyn L-BFGS iterations per grid value: {res.sweep.iterations.tolist()} "
        f"(strongest penalty last in this list; the sweep runs from it downwards).\n")

    # 2. k-NN ---------------------------------------------------------------------------------
    stats = {}
    knn_mod.knn_neighbours(torch.from_numpy(xtr), torch.from_numpy(xte), 20, None, stats)
    t_maj, maj = timed(lambda: knn_accuracy(xtr, ytr, xte, yte, k=20, weighted=False), reps)
    t_w, wres = timed(lambda: knn_accuracy(xtr, ytr, xte, yte, k=20, weighted=True), reps)
    compiled = knn_mod._compiled_kernels
    knn_mod._compiled_kernels = lambda: None  # the torch first stage, as without numba
    t_tf, tf = timed(lambda: knn_accuracy(xtr, ytr, xte, yte, k=20, weighted=False), reps)
    knn_mod._compiled_kernels = compiled

    def sk_knn():
        m = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute").fit(xtr, ytr)
        return m.predict(xte)

    t_skk, sk_pred = timed(sk_knn, reps)
    same = int(np.sum(sk_pred == maj.predictions))
    say(f"## k-NN, k=20, cosine ({args.n_train} train x {args.n_test} test x 512)\n")
    say("| method | CPU s | wall s | accuracy | predictions identical to sklearn | speed-up of infodyn (CPU) |")
    say("|---|---:|---:|---:|---:|---:|")
    say(f"| infodyn knn_accuracy, majority vote | {t_maj.cpu:.3f} | {t_maj.wall:.3f} | {maj.accuracy:.4f} | {same}/{len(yte)} | {t_skk / t_maj:.1f}x |")
    say(f"| infodyn knn_accuracy, DINO weighted vote (T=0.07) | {t_w.cpu:.3f} | {t_w.wall:.3f} | {wres.accuracy:.4f} | - | {t_skk / t_w:.1f}x |")
    say(f"| infodyn knn_accuracy, majority vote, torch first stage (no numba) | {t_tf.cpu:.3f} | {t_tf.wall:.3f} | {tf.accuracy:.4f} | {int(np.sum(sk_pred == tf.predictions))}/{len(yte)} | {t_skk / t_tf:.1f}x |")
    say(f"| sklearn KNeighborsClassifier(cosine, brute), fit + predict | {t_skk.cpu:.3f} | {t_skk.wall:.3f} | {np.mean(sk_pred == yte):.4f} | - | 1.0x |")
    say(f"\nTest rows settled per stage of the certified search: {stats} "
        f"(bfloat16 products on CPU: {knn_mod._cpu_has_bf16()}).\n")
    say("Where infodyn's majority-vote time goes (torch.profiler, one run, self CPU ms of the "
        "largest operators; infodyn::knn_settle_compiled is the numba first stage; the profiler adds some overhead): "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in knn_profile(xtr, ytr, xte, yte)) + ".\n")

    # 3. LogME --------------------------------------------------------------------------------
    f = np.concatenate([xtr, xte])
    y = np.concatenate([ytr, yte])
    t_l, v_l = timed(lambda: logme(f, y), reps)
    t_le, v_le = timed(lambda: logme(f, y, eps=1e-5), reps)
    t_r, v_r = timed(lambda: logme_reference(f, y), reps)
    say(f"## LogME ({f.shape[0]} x 512, 10 classes)\n")
    say("| method | CPU s | wall s | LogME (nats/sample) | difference from reference | speed-up (CPU) |")
    say("|---|---:|---:|---:|---:|---:|")
    say(f"| infodyn logme (exact maximum: eps=0, tol 1e-8) | {t_l.cpu:.3f} | {t_l.wall:.3f} | {v_l:.8f} | {v_l - v_r:+.2e} | {t_r / t_l:.1f}x |")
    say(f"| infodyn logme(eps=1e-5) (reference's denominators) | {t_le.cpu:.3f} | {t_le.wall:.3f} | {v_le:.8f} | {v_le - v_r:+.2e} | {t_r / t_le:.1f}x |")
    say(f"| reference numpy formulation (JMLR fixed point) | {t_r.cpu:.3f} | {t_r.wall:.3f} | {v_r:.8f} | 0 | 1.0x |")

    # 4. building blocks ---------------------------------------------------------------------
    say("\n## Building blocks behind the choices above (ms, best of 20, one thread)\n")
    say("| operation | infodyn's way | ms | alternative | ms |")
    say("|---|---|---:|---|---:|")
    for op, ours, t_o, alt, t_a in building_blocks():
        say(f"| {op} | {ours} | {t_o:.2f} | {alt} | {t_a:.2f} |")

    head = [
        "# transfer_speed: infodyn.transfer against its peers\n",
        f"Command: `.venv/bin/python benchmarks/transfer_speed.py{' --quick' if args.quick else ''}"
        f"{'' if args.threads == 1 else f' --threads {args.threads}'}` "
        f"(repeats={reps}, best of). Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end of the run), torch {torch.__version__}; "
        f"{args.threads} thread(s) for torch and numpy alike; CPU only (no GPU was available). "
        f"Speed-ups are ratios of CPU time (see the script's docstring). "
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n",
    ]
    text = "\n".join(head + lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(text)


if __name__ == "__main__":
    main()

"""``infodyn supervision --out OUT``: the informativeness-of-supervision study on simulated data.

Writes OUT/supervision.csv (one tidy table, ``experiment`` and ``signal`` columns) and the plots
OUT/information.png, learning.png, cost_benefit.png, effects.png.
"""
from __future__ import annotations

import sys
import time


def _ints(text: str, name: str):
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--{name} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError(f"--{name} is empty")
    return values


def _sweeps(items, name):
    """["noise=0,0.2", "classes=5,10"] -> {"noise": [0.0, 0.2], "classes": [5, 10]}; ["none"] -> {}."""
    if items is None:
        return None
    out = {}
    for item in items:
        if item == "none":
            return {}
        if "=" not in item:
            raise ValueError(f"--{name} expects SETTING=V1,V2,..., got {item!r}")
        key, vals = item.split("=", 1)
        try:
            out[key] = [int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in vals.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--{name} {key}: values must be numbers, got {vals!r}") from None
    return out


def run(args) -> int:
    from infodyn.supervision import CostModel, TrainConfig, run_study

    t0 = time.perf_counter()
    costs = CostModel.parse(args.costs) if args.costs else CostModel()
    seeds = list(range(args.seeds))
    if not seeds:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    task_kwargs = {"transfer_classes": args.transfer_classes, "latent_dims": args.latent_dims,
                   "separation": args.separation, "spread": args.spread, "superclasses": args.superclasses}
    config = TrainConfig(rep_dim=args.rep_dim, steps=args.steps)
    info_sweeps = _sweeps(args.info_sweep, "info-sweep")
    learn_sweeps = _sweeps(args.learn_sweep, "learn-sweep")
    if args.no_sweeps:
        info_sweeps, learn_sweeps = {}, {}
    say = (lambda m: print(f"[{time.perf_counter() - t0:6.1f} s] {m}", file=sys.stderr)) if not args.quiet else None
    result = run_study(
        classes=args.classes, dims=args.dims, votes=args.votes, noise=args.noise, seeds=seeds,
        budgets=_ints(args.budgets, "budgets"), models=[m for m in args.models.split(",") if m],
        signals=[s for s in args.signals.split(",") if s], task_kwargs=task_kwargs, costs=costs,
        measure=args.measure, info_n=args.info_n, info_methods=[m for m in args.info_methods.split(",") if m], info_sweeps=info_sweeps, learn_sweeps=learn_sweeps,
        sweep_budget=args.sweep_budget, config=config, device=args.device, progress=say,
    )
    written = result.save(args.out, plots=not args.no_plots)
    curve = result.cost_benefit
    best = curve[curve["best"]].sort_values(["model", "cost_seconds"])
    print(f"best signal by total cost ({args.measure}):")
    for _, r in best.iterrows():
        print(f"  {r['model']:6s} {r['cost_seconds'] / 60:8.1f} min  {r['signal']:9s} x{int(r['budget']):<5d} "
              f"{r['value']:.3f}")
    for name, path in written.items():
        print(f"wrote {path}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "supervision", help="informativeness of supervision signals: capacity, information, cost-benefit",
        description="Simulate hard labels, m-vote soft labels, exact posteriors and triplets; measure the "
                    "information each carries against its capacity, learn representations from each over a "
                    "range of budgets, and draw the cost-benefit curve (see docs/supervision.md).")
    p.add_argument("--out", required=True, help="output folder (created); supervision.csv and PNG plots go here")
    p.add_argument("--classes", type=int, default=10, help="source classes k")
    p.add_argument("--dims", type=int, default=32, help="feature dimension d")
    p.add_argument("--votes", type=int, default=5, help="annotators per soft label m")
    p.add_argument("--noise", type=float, default=0.0, help="probability an answer is random")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds 0..N-1")
    p.add_argument("--budgets", default="20,50,100,200,500", help="numbers of signals")
    p.add_argument("--models", default="linear,mlp", help="encoders: linear,mlp")
    p.add_argument("--signals", default="hard,soft,posterior,triplet", help="signals to compare")
    p.add_argument("--measure", default="few_shot_acc", choices=("source_acc", "transfer_acc", "few_shot_acc"),
                   help="performance measure of the cost-benefit curve")
    p.add_argument("--costs", help="seconds per signal (default: hard=3,vote=3,posterior=15,triplet=4)")
    p.add_argument("--transfer-classes", dest="transfer_classes", type=int, default=5, help="held-out classes")
    p.add_argument("--latent-dims", dest="latent_dims", type=int, default=8, help="class subspace dimension")
    p.add_argument("--separation", type=float, default=4.0, help="expected distance between prototypes")
    p.add_argument("--spread", type=float, default=1.0, help="within-class standard deviation per dim")
    p.add_argument("--superclasses", type=int, default=0, help="super-classes in a hierarchy (0 = none)")
    p.add_argument("--rep-dim", dest="rep_dim", type=int, default=8, help="representation dimension")
    p.add_argument("--steps", type=int, default=200, help="full-batch Adam steps per encoder")
    p.add_argument("--info-n", dest="info_n", type=int, default=2000, help="examples for the information table")
    p.add_argument("--info-methods", dest="info_methods", default="exact,plugin,ksg",
                   help="information methods: exact, plugin, mc, or infodyn estimators such as gaussian, ksg "
                        "(default exact,plugin,ksg)")
    p.add_argument("--info-sweep", dest="info_sweep", action="append", metavar="SETTING=V1,V2",
                   help="information sweep (repeatable; 'none' for none); default classes, dims, votes, noise")
    p.add_argument("--learn-sweep", dest="learn_sweep", action="append", metavar="SETTING=V1,V2",
                   help="learning sweep at --sweep-budget (repeatable; 'none'); default noise and classes")
    p.add_argument("--sweep-budget", dest="sweep_budget", type=int, default=100, help="budget of learning sweeps")
    p.add_argument("--no-sweeps", dest="no_sweeps", action="store_true", help="skip both sweeps")
    p.add_argument("--no-plots", dest="no_plots", action="store_true", help="write the CSV only")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)

"""``infodyn ctc-demo [--out DIR] [--quick]``: plain cross-entropy vs CTC on bundled data."""
from __future__ import annotations


def run(args) -> int:
    from infodyn.ctc.experiment import run_tradeoff
    from infodyn.tradeoff import failed_rows

    df, _ = run_tradeoff(args.out, quick=args.quick, seeds=args.seeds, data=args.data,
                         methods=args.methods,
                         jobs=args.jobs, device=args.device, progress=not args.no_progress)
    bad = failed_rows(df)
    if len(bad):
        print(f"{len(bad)} row(s) failed; see the 'error' column of {args.out}/results.csv")
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ctc-demo", help="train plain cross-entropy and CTC side by side, compare transfer",
        description="The discriminability-transferability reproduction on bundled data: digits 0-4 "
                    "(MLP) and MNIST-1D 0-4 (small CNN), each transferred to classes 5-9. Both arms "
                    "share initial weights, batch order, schedule and epochs; checkpoints are "
                    "analysed with `infodyn analyze`. Writes OUT/ctc_tradeoff.md, "
                    "OUT/ctc_tradeoff.png and OUT/results.csv. About 10-15 minutes on two CPU "
                    "cores; --quick about 3.")
    p.add_argument("--out", default="infodyn_ctc", help="output folder (an existing one is reused only if "
                                                        "ctc-demo wrote it)")
    p.add_argument("--quick", action="store_true", help="30 epochs and 2 seeds instead of 120 and 3")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="training seeds (default: 0 1 2, with --quick 0 1)")
    p.add_argument("--data", nargs="+", default=["digits", "mnist1d"], choices=["digits", "mnist1d"],
                   help="data sets: digits (MLP) and MNIST-1D (small CNN; needs the mnist1d package)")
    p.add_argument("--methods", nargs="+", default=["ce", "ctc", "ctcnce"],
                   choices=["ce", "ctc", "ctcnce"],
                   help="arms: plain CE, CTC with InfoNCE, CTC with the reference binary NCE")
    p.add_argument("--jobs", type=int, default=1, help="parallel analysis worker processes (-1: one per CPU)")
    p.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu" or "cuda"')
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)

"""``infodyn demo [--out DIR] [--quick]``: train small networks on bundled data, analyse, report."""
from __future__ import annotations


def run(args) -> int:
    if args.ctc:  # the CTC reproduction with its defaults: `infodyn ctc-demo` has every option
        from infodyn.cli import ctc_demo

        args.out = args.out or "infodyn_ctc"
        args.seeds, args.data, args.methods = None, ["digits", "mnist1d"], ["ce", "ctc", "ctcnce"]
        return ctc_demo.run(args)
    from infodyn.demo import run_demo
    from infodyn.tradeoff import failed_rows

    df, _ = run_demo(args.out or "infodyn_demo", quick=args.quick, jobs=args.jobs, device=args.device, progress=not args.no_progress)
    bad = failed_rows(df)
    if len(bad):
        print(f"{len(bad)} row(s) failed; see the report's Failures section")
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train small networks on bundled data, analyse them, write the report",
                       description="The main job on bundled data, offline: trains the 12-bit task (tanh and "
                                   "ReLU) and digits 0-4 (target: digits 5-9) while recording checkpoints, "
                                   "runs the full analysis and writes OUT/report.html. 2 to 5 minutes on two "
                                   "CPU cores (measured: 133 s on a lightly loaded two-core machine, 312 s on "
                                   "a busy one); each stage prints the elapsed time and an estimate of the "
                                   "time left.")
    p.add_argument("--out", default=None, help="output folder (default ./infodyn_demo, or ./infodyn_ctc with "
                                                "--ctc; an existing folder is reused only if the demo wrote it)")
    p.add_argument("--ctc", action="store_true", help="instead: plain cross-entropy against Contrastive Temporal "
                                                      "Coding on digits and MNIST-1D (as `infodyn ctc-demo`)")
    p.add_argument("--quick", action="store_true", help="fewer epochs, checkpoints and seeds: a smoke test (40-70 s)")
    p.add_argument("--jobs", type=int, default=2, help="parallel analysis worker processes (-1: one per CPU)")
    p.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu" or "cuda"')
    p.add_argument("--no-progress", dest="no_progress", action="store_true",
                   help="no progress bars (the stage lines with elapsed and remaining time still print)")
    p.set_defaults(func=run)

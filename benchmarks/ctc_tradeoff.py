"""Plain cross-entropy vs Contrastive Temporal Coding: the discriminability-transferability
trade-off on bundled data (digits 0-4 -> 5-9 with an MLP; MNIST-1D 0-4 -> 5-9 with a small CNN).

Arms: plain CE, CTC with a softmax InfoNCE stage 2 (ctc), CTC with the reference binary NCE (ctcnce).
Same network, initial weights, batch order, optimiser, schedule (weight decay x2 in stage 1,
cosine lr, restart at 0.1 x lr at the switch) and epochs for every arm; only the loss differs.
Checkpoints are recorded with infodyn.hooks.CheckpointRecorder and measured with infodyn.analyze
(source accuracy, linear probe and k-NN on source and target, I(X;T)/I(T;Y) by binning and KDE,
RankMe) on the penultimate layer. See infodyn/ctc/experiment.py.

Run (from the repository root):

    .venv/bin/python benchmarks/ctc_tradeoff.py            # 3 arms, 3 seeds, 120 epochs: ~8-15 min on 2 busy cores
    .venv/bin/python benchmarks/ctc_tradeoff.py --quick    # 2 seeds, 30 epochs: ~3 min

Writes benchmarks/results/ctc_tradeoff{,_quick}.md and .png (and prints the table); the runs,
checkpoints and the tidy table go to --work (default: a new temporary folder).
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from infodyn.ctc.experiment import run_tradeoff  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="30 epochs, 2 seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="override the seeds")
    p.add_argument("--data", nargs="+", default=["digits", "mnist1d"])
    p.add_argument("--methods", nargs="+", default=["ce", "ctc", "ctcnce"])
    p.add_argument("--work", default=None, help="folder for runs and tables (default: a temp folder)")
    p.add_argument("--jobs", type=int, default=1, help="analysis workers")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="ctc_tradeoff_"))
    print(f"work folder: {work}")
    t0 = time.perf_counter()
    run_tradeoff(work, quick=args.quick, seeds=args.seeds, data=args.data,
                 methods=args.methods, jobs=args.jobs,
                 device=args.device)
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    stem = "ctc_tradeoff_quick" if args.quick else "ctc_tradeoff"
    md = (work / "ctc_tradeoff.md").read_text().replace("(ctc_tradeoff.png)", f"({stem}.png)")
    md += (f"\nCommand: `.venv/bin/python benchmarks/ctc_tradeoff.py{' --quick' if args.quick else ''}`; "
           f"total {time.perf_counter() - t0:.0f} s. Per-checkpoint values: `results.csv` in the work "
           f"folder (not committed).\n")
    (results / f"{stem}.md").write_text(md)
    shutil.copyfile(work / "ctc_tradeoff.png", results / f"{stem}.png")
    print(f"wrote {results / (stem + '.md')} and {results / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

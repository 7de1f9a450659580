"""Do the onset verdicts fire on a known trade-off and stay silent on the controls?

Run:  .venv/bin/python benchmarks/onset_validity.py [--seeds 3] [--jobs 1]
Writes benchmarks/results/onset_validity.md and prints it.

Runs: the three kinds of benchmarks/known_runs.py (digits 0-4 -> 5-9, MLP ReLU, plain
cross-entropy): ``tradeoff`` (positive control), ``head_only`` (body frozen: features never
change) and ``holds`` (brief gentle training: transfer within noise), ``--seeds`` seeds each.
Every checkpoint is analysed by :func:`infodyn.analyze` at fc1 and fc2 with the measures
linear_probe (L2 tuned on validation), knn, fewshot_probe (5 shots, 20 draws, ridge l2 = 1),
source_acc, rankme and kde (I(X;T), evidence only), then :func:`infodyn.tradeoff.verdicts` gives
one verdict per run kind (its seeds together), layer and protocol; the per-seed verdicts
(each seed alone) are counted in ``n_fired``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEASURES = "linear_probe,knn,fewshot_probe,source_acc,rankme,kde"


def main() -> int:
    import torch

    from benchmarks.known_runs import KINDS, make_run
    from infodyn.analysis import analyze
    from infodyn.cli.plot import read_table
    from infodyn.tradeoff import verdicts

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--keep", default="", help="also save the results table (CSV) here")
    ap.add_argument("--table", default="", help="judge this saved results table (from --keep) instead of training")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.table:  # judge a saved table again (after a change to the verdict code)
        df = read_table(args.table)
        t_train = 0.0
    else:
        tmp = Path(tempfile.mkdtemp(prefix="infodyn-onset-"))
        try:
            runs = [make_run(tmp / "runs", kind, s) for kind in KINDS for s in range(args.seeds)]
            t_train = time.perf_counter() - t0
            df = analyze(runs, measures=MEASURES, out=tmp / "out", jobs=args.jobs, threads=1, progress=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        bad = df[df["error"] != ""]
        assert bad.empty, bad[["run", "layer", "measure", "error"]].head().to_string()
        if args.keep:
            df.to_csv(args.keep, index=False)
    v = verdicts(df)
    seconds = time.perf_counter() - t0
    cmd = f"python benchmarks/onset_validity.py --seeds {args.seeds} --jobs {args.jobs}"
    timing = (f"{seconds:.0f} s on CPU, of which {t_train:.0f} s training; one thread per job" if not args.table
              else "verdicts recomputed from the table saved by that command with --keep")
    lines = ["# Onset verdicts on known trade-off and control runs", "",
             f"`{cmd}` ({timing}).", "",
             "Runs from `benchmarks/known_runs.py` (digits:0-4 -> digits:5-9, MLP ReLU, plain cross-entropy, "
             f"{args.seeds} seeds each): tradeoff = 64-[128,16]-5, Adam 1e-3, 300 epochs (positive control); "
             "head_only = same network, only the head trains (features frozen); holds = 64-[128,64]-5, Adam 1e-4, "
             "10 epochs (transfer within noise). `infodyn.analyze(measures=\"" + MEASURES + "\")`, then "
             "`infodyn.tradeoff.verdicts(df)` (level 0.95, minimum effect 0.02). Each verdict pools the seeds of "
             "a kind; `seeds firing alone` counts the seeds whose own curve fires. Protocol n = target samples "
             "tested (cross-fitted over the whole target set).", "",
             "| kind | layer | protocol | verdict | onset | peak -> final | drop [95% CI] | source change | "
             "seeds firing alone | I(X;T) kde change (nats) | eff. rank change |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in v.iterrows():
        lines.append(f"| {r.config} | {r.layer} | {r.protocol} | **{r.verdict}** | "
                     f"{'' if r.onset != r.onset else f'{r.onset:g}'} | {r.peak:.3f} (ep {r.peak_time:g}) -> "
                     f"{r.final:.3f} | {r['drop']:+.3f} [{r.drop_low:+.3f}, {r.drop_high:+.3f}] | "
                     f"{r.source_change:+.3f} ± {r.source_noise:.3f} | {r.n_fired}/{r.n_seeds} | "
                     f"{r.ixt_change:+.2f} | {r.rank_change:+.1f} |")
    fired = v[v["verdict"] == "over-compression"].groupby("config").size()
    total = v.groupby("config").size()
    lines += ["", "Verdicts that fired, per kind: " + ", ".join(
        f"{k} {int(fired.get(k, 0))}/{int(n)}" for k, n in total.items()) + ".", ""]
    ok_pos = bool(fired.get("tradeoff", 0) > 0)
    ok_neg = int(fired.get("head_only", 0)) == 0 and int(fired.get("holds", 0)) == 0
    lines.append(f"Fires on the trade-off: {'yes' if ok_pos else 'NO'}; silent on both controls: "
                 f"{'yes' if ok_neg else 'NO'}.")
    lines += ["", "Sentences:", ""] + [f"- {r.config} {r.layer}: {r.sentence}" for _, r in v.iterrows()]
    text = "\n".join(lines) + "\n"
    out = ROOT / "benchmarks" / "results" / "onset_validity.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0 if ok_pos and ok_neg else 1


if __name__ == "__main__":
    sys.exit(main())

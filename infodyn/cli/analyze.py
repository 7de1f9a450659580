"""``infodyn analyze RUN_DIR [RUN_DIR...] --out OUT``: every measure on every checkpoint and layer."""
from __future__ import annotations

import sys
from pathlib import Path


def _plane_params(items):
    """``--param kde.noise_var=0.001`` -> {"kde": {"noise_var": 0.001}} (any measure's parameter)."""
    from infodyn._text import parse_scalar

    out = {}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"--param expects MEASURE.NAME=VALUE (e.g. kde.noise_var=0.001), got {item!r}")
        key, value = item.split("=", 1)
        method, name = key.split(".", 1)
        out.setdefault(method, {})[name] = parse_scalar(value)
    return out


def report_outputs(df, out: Path, runs_manifests=None, settings=None, verdicts=None):
    """Figures + report.html for a finished table; returns (figures, report path). ``settings``
    (the analysis's arguments) go to the top of the report; ``verdicts`` when already computed."""
    from infodyn import plots, report

    figs = plots.plot_all(df, out)
    if len(df) and (df["measure"] == "sharpness").any():
        from infodyn.landscape.plot import sharpness_vs_transfer

        p = sharpness_vs_transfer(df, out / "sharpness_vs_transfer.png")
        if p is not None:
            figs["sharpness_vs_transfer"] = p
    path = report.write_report(df, out / "report.html", figs, manifests=runs_manifests, settings=settings,
                               csv=out / "results.csv", verdicts=verdicts)
    return figs, path


def run(args) -> int:
    import errno
    import json

    from infodyn.analysis import AnalysisInterrupted, analyze, failures
    from infodyn.tradeoff import format_verdicts, verdicts

    out = Path(args.out)
    params = _plane_params(args.param)
    try:
        df = analyze(args.run_dirs, measures=args.measures, out=out, jobs=args.jobs, device=args.device,
                     seed=args.seed, max_samples=args.max_samples or None, params=params,
                     batch_size=args.batch_size, trust=args.trust_pickle, progress=not args.no_progress,
                     scheduler=args.scheduler)
    except AnalysisInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except ConnectionError as exc:
        print(f"infodyn analyze: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only or full --out: what finished is already saved
        why = {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
               errno.EROFS: "the file system is read-only", errno.EPERM: "permission denied"}.get(exc.errno, exc.strerror or str(exc))
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"infodyn analyze: error: cannot write to {out}{where}: {why}; results finished so far are kept, "
              "run the same command to resume", file=sys.stderr)
        return 2
    from infodyn.analysis import parse_measures
    from infodyn.analysis.measures import settings as measure_settings

    manifests = json.loads((out / "manifests.json").read_text()) if (out / "manifests.json").exists() else None
    ms = parse_measures(args.measures)
    effective = {m: measure_settings(m, params) for m in ms}
    settings = {"measures": ", ".join(ms), "seed": args.seed, "max_samples": args.max_samples or "all",
                "device": args.device, "parameters (defaults included)": {m: p for m, p in effective.items() if p}}
    v = verdicts(df)
    figs, rep = report_outputs(df, out, manifests, settings, v)
    print(f"\n{len(df)} rows -> {out / 'results.csv'}")
    print(f"report -> {rep}  ({len(figs)} figures)")
    print("\n" + format_verdicts(v))
    bad = failures(df)
    if len(bad):
        print(f"\n{bad['checkpoint'].nunique()} checkpoint(s) failed:", file=sys.stderr)
        for error, grp in bad.groupby("error", sort=False):  # each reason said once
            where = ", ".join(f"{r}/{c}" for r, c in grp[["run", "checkpoint"]].drop_duplicates().itertuples(index=False))
            print(f"  {where}: {error}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="measure every checkpoint x layer of one or more runs",
                       description="Discover, load and measure every checkpoint and layer of one or more run "
                                   "folders (each with an infodyn.yaml; a folder of run folders works too). "
                                   "Writes OUT/results.csv, the figures and OUT/report.html. Exit code 1 when "
                                   "any checkpoint failed.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a folder of checkpoints with an infodyn.yaml (write one with `infodyn init`), or a "
                        "folder of such folders")
    p.add_argument("--out", required=True, help="output folder (results, cache, figures, report)")
    p.add_argument("--measures", default=None,
                   help="comma-separated measures: the information-plane methods binning, kde, gaussian, "
                        "infonce, mine, nwj, tuba, js, smile, interpolated; the transfer and representation "
                        "measures linear_probe, knn, fewshot_probe, rankme, nc1, source_acc, overcompression; "
                        "the loss-landscape measures sharpness, hessian_trace, grad_norm, grad_pc, "
                        "weight_distance, loss_barrier (default: binning, kde, linear_probe, knn, fewshot_probe, "
                        "rankme, source_acc, overcompression)")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (-1: one per CPU)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask distributed scheduler (e.g. tcp://10.0.0.5:8786): run the units on that cluster "
                        "instead of local --jobs (pip install 'infodyn[distributed]'). Workers need the run "
                        "folders, data and --out at the same paths and the model's code importable")
    p.add_argument("--device", default="auto", help='"auto" (CUDA when present), "cpu" or "cuda"')
    p.add_argument("--seed", type=int, default=0,
                   help="seed of every random choice (sample cap, probes' splits, neural critics)")
    p.add_argument("--max-samples", dest="max_samples", type=int, default=4096,
                   help="cap on source samples for the information plane, RankMe, NC1 and the score (0: all)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=512,
                   help="samples per forward pass when extracting layer features")
    p.add_argument("--param", action="append", metavar="METHOD.NAME=VALUE",
                   help="estimator parameter, e.g. kde.noise_var=0.001 or binning.n_bins=30")
    p.add_argument("--trust-pickle", dest="trust_pickle", action="store_true",
                   help="load checkpoints that hold pickled Python objects: the classes and functions they name are imported and allowed (runs code; only for your own files)")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

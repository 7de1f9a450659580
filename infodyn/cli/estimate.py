"""``infodyn estimate X Y --method ksg``: one MI estimate from two array files."""
from __future__ import annotations

import json
from pathlib import Path

from infodyn._text import parse_scalar


def _load_array(path: str):
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such file: {p}")
    if p.suffix == ".npy":
        return np.load(p, allow_pickle=False)
    if p.suffix in (".csv", ".txt"):
        return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None)
    raise ValueError(f"{p}: expected a .npy, .csv or .txt array file")


def run(args) -> int:
    from infodyn.estimators import estimate_mi

    x, y = _load_array(args.x), _load_array(args.y)
    params = {}
    for name in ("k", "n_bins", "bin_width", "noise_var", "alpha", "seed", "device"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    for item in args.param or []:
        if "=" not in item:
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key] = parse_scalar(value)
    est = estimate_mi(x, y, method=args.method, ci=args.ci, **params)
    if args.json:
        print(json.dumps(est.to_dict(), default=str))
    else:
        print(est)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("estimate", help="estimate I(X;Y) from two .npy/.csv arrays",
                       description="Estimate the mutual information between two arrays of samples (rows).")
    p.add_argument("x", help="samples of X: .npy, .csv or .txt, shape (n,) or (n, dx)")
    p.add_argument("y", help="samples of Y (integer labels are treated as discrete)")
    p.add_argument("--method", default="ksg", help="estimator name (list them with `infodyn estimators`)")
    p.add_argument("--k", type=int, help="neighbours for ksg (default 3)")
    p.add_argument("--n-bins", dest="n_bins", type=int, help="bins per dimension for binning (default 30)")
    p.add_argument("--bin-width", dest="bin_width", type=float,
                   help="bin width for binning with bin_rule fixed_width (instead of --n-bins)")
    p.add_argument("--noise-var", dest="noise_var", type=float,
                   help="variance of the Gaussian noise added to X for kde and kde_lower: the resolution")
    p.add_argument("--alpha", type=float, help="order of the Renyi entropy for renyi (default 1.01), or the "
                                               "InfoNCE/TUBA mix for interpolated")
    p.add_argument("--seed", type=int, help="seed of every random choice: subsampling, critic training "
                                            "(default 0)")
    p.add_argument("--device", help='"auto" (CUDA when present), "cpu" or "cuda" (default: auto)')
    p.add_argument("--ci", type=float, metavar="LEVEL",
                   help="also a confidence interval at this level, e.g. 0.95: a bootstrap over rows for "
                        "gaussian, half-sample subsampling for binning, ksg, kde and renyi, the spread over test "
                        "batches for the neural bounds")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="any other method parameter")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)

    q = sub.add_parser("estimators", help="list the available MI estimators",
                       description="List the MI estimators `infodyn estimate --method` and `estimate_mi` take.")
    q.set_defaults(func=_list)


def _list(args) -> int:
    from infodyn.estimators import available, get

    for name in available():
        print(f"{name:14s} {get(name).description}")
    return 0

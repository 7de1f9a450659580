"""``infodyn init RUN_DIR --model MOD:FN --source DATA``: write a run manifest (infodyn.yaml).

``infodyn init RUN_DIR --list`` writes nothing: it lists the checkpoints the analysis would
take, in order, with their kind (file, lightning, timm, hf, accelerate), epoch (epochs
completed; library conventions converted and said), step and where the order came from, then
what was skipped and why (optimizer states, copies such as ``last``/``model_best``, deeper
sub-folders, another run's folder) and any ordering or mixed-run problem.
"""
from __future__ import annotations

from pathlib import Path


def _kwargs(text):
    import yaml

    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--model-kwargs is not a YAML/JSON mapping: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--model-kwargs must be a mapping such as '{{width: 32}}', got {text!r}")
    return value


def _layers(values):
    out = []
    for v in values or []:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _data_path(value, root: Path):
    """A .npz path given on the command line (relative to the working directory) rewritten
    relative to the run folder, which is how the manifest reads it."""
    import os

    if value and value.endswith(".npz") and not Path(value).is_absolute():
        if not Path(value).exists():
            raise FileNotFoundError(f"no such data file: {value}")
        return os.path.relpath(Path(value).resolve(), root.resolve())
    return value


def list_checkpoints(root: Path, pattern=None, trust: bool = False) -> int:
    """Print what discovery takes and skips in ``root`` (``infodyn init --list``)."""
    import warnings

    from infodyn.runs import scan
    from infodyn.runs.manifest import MANIFEST_NAME

    if pattern is None and (root / MANIFEST_NAME).is_file():
        try:
            from infodyn.runs import load_manifest

            pattern = load_manifest(root).checkpoints
        except (ValueError, OSError):
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the listing says it all
        listing = scan(root, pattern, trust=trust, warn=False)
    print(listing.format())
    return 0


def run(args) -> int:
    from infodyn.runs import build_model, parse_manifest, resolve_layers, write_manifest
    from infodyn.runs.manifest import MANIFEST_NAME, manifest_dict

    root = Path(args.run_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: RUN_DIR must be a folder")
    if args.list:
        return list_checkpoints(root, args.checkpoints, trust=args.trust_pickle)
    missing = [flag for flag, v in (("--model", args.model), ("--source", args.source)) if not v]
    if missing:
        raise ValueError(f"infodyn init needs {' and '.join(missing)} (or --list to only list "
                         "the checkpoints)")
    kwargs = _kwargs(args.model_kwargs)
    args.source, args.target = (_data_path(v, root) for v in (args.source, args.target))
    layers = _layers(args.layers)
    check = not args.no_check
    # what both the probe and the written manifest say
    given = dict(model=args.model, source=args.source, target=args.target, model_kwargs=kwargs,
                 checkpoints=args.checkpoints, state_prefix=args.state_prefix, load=args.load)
    model = None
    if check or not layers or args.list_layers:
        # Imports and runs the model callable: it is the user's own code, named on this command.
        probe = parse_manifest(manifest_dict(layers=layers or ["*"], **given), root / MANIFEST_NAME)
        model = build_model(probe)
    if args.list_layers:
        for name, mod in model.named_modules():
            if name:
                n_par = sum(p.numel() for p in mod.parameters(recurse=False))
                print(f"{name:30s} {type(mod).__name__}" + (f"  ({n_par} parameters)" if n_par else ""))
        return 0
    if not layers:
        layers = [name for name, mod in model.named_modules()
                  if name and "." not in name and any(True for _ in mod.parameters())]
        if not layers:
            raise ValueError(f"{args.model} has no top-level modules with parameters; name the "
                             "layers with --layers")
        print(f"layers (all top-level modules with parameters): {', '.join(layers)}")
    elif model is not None:
        resolve_layers(model, layers)
    manifest = manifest_dict(layers=layers, name=args.name, pool=args.pool, seed=args.seed,
                             config=args.config, **given)
    root.mkdir(parents=True, exist_ok=True)
    path = write_manifest(root, manifest, overwrite=args.force)
    print(f"wrote {path}")
    return 0


def _pool(value: str) -> str:
    """``--pool`` checked against infodyn.runs.extract's pool names."""
    import argparse

    from infodyn.runs.extract import check_pool

    try:
        check_pool(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "init", help="write a run manifest (infodyn.yaml) for a folder of checkpoints",
        description="Write RUN_DIR/infodyn.yaml: the model callable, the data and the layers to "
                    "analyse. The model callable is imported and run (to check the layer "
                    "names) unless --no-check is given; `infodyn analyze` runs it too.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder holding the checkpoints")
    p.add_argument("--model", metavar="MODULE:CALLABLE",
                   help="importable callable returning the nn.Module, e.g. infodyn.models:mlp "
                        "(required unless --list)")
    p.add_argument("--model-kwargs", dest="model_kwargs", metavar="MAPPING",
                   help="keyword arguments as YAML/JSON, e.g. '{in_dim: 64, hidden: [32, 16]}'")
    p.add_argument("--source", help="source data set name or .npz path (required unless --list)")
    p.add_argument("--target", help="optional target data set for transfer measures")
    p.add_argument("--layers", nargs="+", metavar="LAYER",
                   help="layer names or glob patterns (space or comma separated); default: every "
                        "top-level module with parameters")
    p.add_argument("--checkpoints", metavar="GLOB", help="which files are checkpoints (default: all "
                   ".pt/.pth/.pth.tar/.ckpt/.safetensors/.bin files and Hugging Face / accelerate "
                   "checkpoint folders at the shallowest level that holds any)")
    p.add_argument("--state-prefix", dest="state_prefix", metavar="PREFIX",
                   help="load only the checkpoint keys under this sub-module prefix, e.g. 'net.' "
                        "for a LightningModule whose network is self.net")
    p.add_argument("--load", choices=("state_dict", "model"),
                   help="'model': the model callable receives each checkpoint path and loads it "
                        "itself (e.g. transformers:AutoModelForSequenceClassification.from_pretrained"
                        " on Hugging Face checkpoint folders); default 'state_dict'")
    p.add_argument("--list", action="store_true",
                   help="list the checkpoints found (order, kind, epoch, step) and what was skipped "
                        "and why; writes nothing")
    p.add_argument("--trust-pickle", dest="trust_pickle", action="store_true",
                   help="with --list: read checkpoints that hold pickled Python objects (their code "
                        "runs; only for your own files)")
    p.add_argument("--name", help="the run's name in result tables (default: the folder's name)")
    p.add_argument("--pool", type=_pool, metavar="POOL",
                   help="how a layer's output becomes one vector per sample: auto (conv maps averaged over space, "
                        "token outputs over tokens), avg, max, avgHxW (e.g. avg2x2), flatten, cls or mean "
                        "(default: auto; per-layer choices go in the manifest's pool mapping)")
    p.add_argument("--seed", type=int, help="the run's seed (default: read from the name, e.g. tanh-seed3)")
    p.add_argument("--config", help="the configuration the run belongs to, aggregated across seeds "
                   "(default: the name without its seed part)")
    p.add_argument("--no-check", dest="no_check", action="store_true",
                   help="do not import the model to check the layer names")
    p.add_argument("--force", action="store_true", help="replace an existing, different manifest")
    p.add_argument("--list-layers", dest="list_layers", action="store_true",
                   help="print the model's module names (for --layers) and write nothing")
    p.set_defaults(func=run)

"""``infodyn init RUN_DIR --model MOD:FN --source DATA``: write a run manifest (infodyn.yaml)."""
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


def run(args) -> int:
    from infodyn.runs import build_model, parse_manifest, resolve_layers, write_manifest
    from infodyn.runs.manifest import MANIFEST_NAME, manifest_dict

    root = Path(args.run_dir)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: RUN_DIR must be a folder")
    kwargs = _kwargs(args.model_kwargs)
    args.source, args.target = (_data_path(v, root) for v in (args.source, args.target))
    layers = _layers(args.layers)
    check = not args.no_check
    model = None
    if check or not layers or args.list_layers:
        # Imports and runs the model callable: it is the user's own code, named on this command.
        probe = parse_manifest(manifest_dict(model=args.model, source=args.source, target=args.target,
                                             layers=layers or ["*"], model_kwargs=kwargs),
                               root / MANIFEST_NAME)
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
    manifest = manifest_dict(model=args.model, source=args.source, target=args.target,
                             layers=layers, model_kwargs=kwargs, checkpoints=args.checkpoints,
                             name=args.name, pool=args.pool, seed=args.seed, config=args.config)
    root.mkdir(parents=True, exist_ok=True)
    path = write_manifest(root, manifest, overwrite=args.force)
    print(f"wrote {path}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "init", help="write a run manifest (infodyn.yaml) for a folder of checkpoints",
        description="Write RUN_DIR/infodyn.yaml: the model callable, the data and the layers to "
                    "analyse. The model callable is imported and run (to check the layer "
                    "names) unless --no-check is given; `infodyn analyze` runs it too.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder holding the checkpoints")
    p.add_argument("--model", required=True, metavar="MODULE:CALLABLE",
                   help="importable callable returning the nn.Module, e.g. infodyn.models:mlp")
    p.add_argument("--model-kwargs", dest="model_kwargs", metavar="MAPPING",
                   help="keyword arguments as YAML/JSON, e.g. '{in_dim: 64, hidden: [32, 16]}'")
    p.add_argument("--source", required=True, help="source data set name or .npz path")
    p.add_argument("--target", help="optional target data set for transfer measures")
    p.add_argument("--layers", nargs="+", metavar="LAYER",
                   help="layer names or glob patterns (space or comma separated); default: every "
                        "top-level module with parameters")
    p.add_argument("--checkpoints", metavar="GLOB", help="which files are checkpoints (default: all "
                   ".pt/.pth/.ckpt/.safetensors/.bin files)")
    p.add_argument("--name", help="the run's name in result tables (default: the folder's name)")
    p.add_argument("--pool", choices=("flatten", "avg"), help="how conv maps become vectors")
    p.add_argument("--seed", type=int, help="the run's seed (default: read from the name, e.g. tanh-seed3)")
    p.add_argument("--config", help="the configuration the run belongs to, aggregated across seeds "
                   "(default: the name without its seed part)")
    p.add_argument("--no-check", dest="no_check", action="store_true",
                   help="do not import the model to check the layer names")
    p.add_argument("--force", action="store_true", help="replace an existing, different manifest")
    p.add_argument("--list-layers", dest="list_layers", action="store_true",
                   help="print the model's module names (for --layers) and write nothing")
    p.set_defaults(func=run)

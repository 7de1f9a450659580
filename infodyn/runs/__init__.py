"""Checkpoint sequences: find and order them, load them safely, read the run manifest, extract
layer features (with a disk cache).

    from infodyn.runs import discover, load_checkpoint, load_manifest, build_model, apply_state
    m = load_manifest("runs/mlp")                 # RUN_DIR/infodyn.yaml
    model = build_model(m)                        # imports and runs the manifest's callable
    layers = resolve_layers(model, m.layers)
    for info in discover(m.run_dir, m.checkpoints):     # files and HF/accelerate folders
        apply_state(model, load_checkpoint(info.path, state_prefix=m.state_prefix), info.path)
        # or, for every manifest (including `load: model`): model = load_model(m, info.path)
        feats = extract_features(model, x, layers)  # {layer: float32 (n, d)}

Submodules: ``discover``, ``load``, ``manifest``, ``extract``, ``cache``. Nothing heavy is
imported until a function is used (torch is imported lazily inside the functions).
"""
from infodyn.runs.cache import FeatureCache, array_digest, cached_features
from infodyn.runs.discover import (AmbiguousOrderWarning, CheckpointInfo, MixedRunsWarning, RunListing,
                                   discover, parse_filename, scan)
from infodyn.runs.extract import extract_features, resolve_layers
from infodyn.runs.load import (CHECKPOINT_SUFFIXES, CheckpointError, apply_state, checkpoint_name,
                               checkpoint_sha256, load_checkpoint, load_checkpoint_with_meta,
                               load_model, read_meta, select_prefix, unwrap_state)
# A checkpoint's content hash: for a file its bytes' sha256 (as infodyn._files.file_sha256), for
# a Hugging Face / accelerate folder the hashes of its weight files (shards) and config.json.
file_sha256 = checkpoint_sha256
from infodyn.runs.manifest import (MANIFEST_NAME, RunManifest, build_model, load_manifest,
                                   manifest_dict, parse_manifest, write_manifest)

__all__ = [
    "discover", "scan", "RunListing", "CheckpointInfo", "AmbiguousOrderWarning", "MixedRunsWarning",
    "parse_filename",
    "load_checkpoint", "load_checkpoint_with_meta", "read_meta", "unwrap_state", "apply_state",
    "load_model", "select_prefix", "checkpoint_sha256", "checkpoint_name",
    "CheckpointError", "CHECKPOINT_SUFFIXES",
    "load_manifest", "parse_manifest", "write_manifest", "manifest_dict", "RunManifest",
    "build_model", "MANIFEST_NAME",
    "resolve_layers", "extract_features",
    "FeatureCache", "cached_features", "file_sha256", "array_digest",
]

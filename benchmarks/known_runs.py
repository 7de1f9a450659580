"""Checkpoint sequences whose transfer behaviour is known, on bundled data (digits 0-4 -> 5-9).

Importable (``from benchmarks.known_runs import make_run``, or with ``benchmarks/`` on the path)
and runnable (``python benchmarks/known_runs.py [--seeds 3]`` prints the measured curves)::

    run_dir = make_run(root, "tradeoff", seed=0)      # -> root/tradeoff-seed0, ready for infodyn.analyze
    df = infodyn.analyze(run_dir, measures="knn,source_acc")

Every run trains ``infodyn.models:mlp`` (ReLU) with plain cross-entropy and Adam (batch 32, no
weight decay) on the train split of ``digits:0-4`` (541 images, 8x8, loaded with seed 0) and
records checkpoints with :class:`infodyn.hooks.CheckpointRecorder` (log-spaced epochs including
epoch 0; ``source_acc`` = accuracy of the model's own head on the source test split, 180 images).
The manifest names the target ``digits:5-9``, the layers ``fc1`` and ``fc2`` (``fc2`` is the
penultimate layer, the input of the head ``out``), ``config`` = the kind and ``seed``. The seed
sets the initial weights and the batch order; the data split is fixed.

Kinds (settings in :data:`KINDS`):

* ``"tradeoff"`` (positive control): MLP 64-[128, 16]-5, Adam lr 1e-3, 300 epochs. The 16-wide
  penultimate layer collapses onto the source classes: source accuracy rises to 0.99-1.00 while
  target transfer falls well beyond sampling noise.
* ``"head_only"`` (negative control 1): the same network and schedule, but only the head ``out``
  trains; ``fc1``/``fc2`` stay at their random initialisation, so every transfer measure of those
  layers is exactly the same at every checkpoint, while source accuracy rises.
* ``"holds"`` (negative control 2): MLP 64-[128, 64]-5, Adam lr 1e-4, 10 epochs: brief, gentle
  training. Source accuracy rises from ~0.2 to 0.82-0.91 while target transfer stays within noise
  of its initial value. (Trained on in the same way, k-NN transfer starts to fall by epoch 15-20:
  transfer "holds" here because training stops early, not because the network is immune.)

Measured at fc2 (``python benchmarks/known_runs.py --seeds 3``, seeds 0-2, CPU; target k-NN =
infodyn's weighted cosine k-NN and fixed probe = :func:`infodyn.transfer.linear_probe` with the
single L2 strength 1e-2, both fitted on the target's train+val splits (717 images) and scored on
its test split (179 images, so one image = 0.0056); source = own head on the source test split
(180 images)). Ranges over the seeds, "first -> best (epoch) -> last checkpoint":

* tradeoff:  source 0.20-0.22 -> 0.99-1.00; k-NN 0.80-0.92 -> 0.81-0.92 (epoch 0-1) -> 0.715-0.726;
  fixed probe 0.85-0.91 -> 0.86-0.94 (epoch 0-2) -> 0.63-0.74; effective rank 9.8-12.0 -> 6.5-7.7.
  Falls from the best: k-NN 0.095-0.19, probe 0.17-0.23.
* head_only: source 0.20-0.22 -> 0.75-0.84; k-NN, probe and rank bit-identical at every checkpoint.
* holds:     source 0.19-0.23 -> 0.82-0.91; k-NN 0.93-0.96 -> 0.94-0.97 (epoch 1-2) -> 0.90-0.95
  (falls 0.016-0.040, about 1-1.5 binomial standard errors of a difference); fixed probe
  0.93-0.97 -> 0.94-0.97 (no fall at the last checkpoint: 0.944, 0.961, 0.966 = best); rank
  36-40 -> 31-33.

The same runs through ``infodyn.analyze`` (every target sample tested by cross-fitting) and
:func:`infodyn.tradeoff.verdicts`: benchmarks/results/onset_validity.md (the verdict fires on the
trade-off runs and on neither control).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

if TYPE_CHECKING:  # annotations only
    import pandas as pd
    import torch

    from infodyn.runs import CheckpointInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOURCE, TARGET = "digits:0-4", "digits:5-9"
LAYERS = ["fc1", "fc2"]


@dataclass(frozen=True)
class Setting:
    """How one kind of known run is trained."""

    hidden: Tuple[int, ...]
    lr: float
    epochs: int
    checkpoints: int
    train: str  # "all" or "head" (only the last Linear, ``out``)
    batch_size: int = 32
    expect: str = ""  # what the run is known to do (documentation)


KINDS: Dict[str, Setting] = {
    "tradeoff": Setting((128, 16), 1e-3, 300, 12, "all",
                        expect="target transfer falls while source accuracy rises to ~1"),
    "head_only": Setting((128, 16), 1e-3, 300, 12, "head",
                         expect="features frozen: transfer constant, source accuracy rises"),
    "holds": Setting((128, 64), 1e-4, 10, 8, "all",
                     expect="brief gentle training: transfer within noise, source accuracy rises"),
}


def manifest_for(kind: str, seed: int, setting: Setting) -> dict:
    """The run manifest (``infodyn.yaml``) of a known run."""
    return {"model": "infodyn.models:mlp",
            "model_kwargs": {"in_dim": 64, "hidden": list(setting.hidden), "num_classes": 5,
                             "activation": "relu"},
            "data": {"source": SOURCE, "target": TARGET}, "layers": list(LAYERS),
            "name": f"{kind}-seed{seed}", "seed": int(seed), "config": kind}


def make_run(root: Union[str, Path], kind: str, seed: int = 0, *, epochs: Optional[int] = None,
             checkpoints: Optional[int] = None, overwrite: bool = True) -> Path:
    """Trains one known run and saves its checkpoints; returns ``root/<kind>-seed<seed>``.

    Args:
        root: parent folder (created).
        kind: ``"tradeoff"``, ``"head_only"`` or ``"holds"`` (see the module doc and :data:`KINDS`).
        seed: initial weights and batch order (integer >= 0).
        epochs: training length; default the kind's (300, 300, 10). Fewer epochs give a shorter
            run with the same settings (the tests use this), not the documented behaviour.
        checkpoints: number of log-spaced checkpoints over [0, epochs], both ends included;
            default the kind's (12, 12, 8).
        overwrite: replace the manifest of an earlier run in the same folder.

    Takes 1-4 s of one CPU thread for the default settings.
    """
    import torch

    from infodyn.data import load
    from infodyn.hooks import CheckpointRecorder
    from infodyn.models import mlp

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    s = KINDS[kind]
    epochs = s.epochs if epochs is None else int(epochs)
    checkpoints = s.checkpoints if checkpoints is None else int(checkpoints)
    run_dir = Path(root) / f"{kind}-seed{seed}"
    ds = load(SOURCE, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny network: more threads only add contention (and nondeterminism)
    try:
        torch.manual_seed(seed)
        model = mlp(64, s.hidden, 5, "relu")
        rec = CheckpointRecorder(run_dir, model, log_spaced=checkpoints, total_epochs=epochs,
                                 manifest=manifest_for(kind, seed, s), overwrite=overwrite)
        params = list(model.parameters()) if s.train == "all" else list(model.out.parameters())
        if s.train == "head":
            for p in model.parameters():
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=s.lr)
        x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
        xte, yte = torch.from_numpy(ds.x_test), ds.y_test
        gen = torch.Generator().manual_seed(seed)

        def acc() -> float:
            with torch.no_grad():
                return float((model(xte).argmax(1).numpy() == yte).mean())

        rec.step(epoch=0, source_acc=acc())
        for epoch in range(1, epochs + 1):
            perm = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), s.batch_size):
                idx = perm[i:i + s.batch_size]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            if rec.due(epoch):
                rec.step(epoch=epoch, source_acc=acc())
    finally:
        torch.set_num_threads(threads)
    return run_dir


def make_runs(root: Union[str, Path], kinds=tuple(KINDS), seeds=(0, 1, 2), **kw) -> List[Path]:
    """:func:`make_run` for every kind and seed; returns the run folders."""
    return [make_run(root, k, s, **kw) for k in kinds for s in seeds]


def checkpoint_models(run_dir: Union[str, Path], which: Optional[Sequence[int]] = None
                      ) -> Iterator[Tuple["CheckpointInfo", "torch.nn.Module"]]:
    """(checkpoint, model) for the checkpoints of a run, earliest first.

    Each model is the manifest's model with that checkpoint's weights, in eval mode
    (:func:`infodyn.runs.load_model`). ``which``: positions in the discovered list (``(0, -1)``
    = the first and the last checkpoint); default all.
    """
    from infodyn.runs import discover, load_manifest, load_model

    m = load_manifest(run_dir)
    infos = discover(m.run_dir, m.checkpoints)
    for info in (infos if which is None else [infos[i] for i in which]):
        yield info, load_model(m, info.path)


def transfer_curve(run_dir: Union[str, Path], layer: str = "fc2", l2: float = 1e-2) -> "pd.DataFrame":
    """Quick per-checkpoint transfer numbers of one run (independent of infodyn.analyze).

    Returns one row per checkpoint: epoch, source_acc (stored in the checkpoint), knn_acc and
    probe_acc (target digits:5-9: fitted on train+val, 717 images, scored on test, 179 images;
    probe = linear_probe with the single L2 strength ``l2``), rank (RankMe of the centred target
    train features).
    """
    import pandas as pd

    from infodyn.data import load
    from infodyn.overcompression import effective_rank
    from infodyn.runs import extract_features
    from infodyn.transfer import knn_accuracy, linear_probe

    tgt = load(TARGET, seed=0)
    xtr = np.concatenate([tgt.x_train, tgt.x_val])
    ytr = np.concatenate([tgt.y_train, tgt.y_val])
    rows = []
    for info, model in checkpoint_models(run_dir):
        a = extract_features(model, xtr, [layer])[layer].astype(np.float64)
        b = extract_features(model, tgt.x_test, [layer])[layer].astype(np.float64)
        rows.append({"epoch": info.epoch, "source_acc": info.source_acc,
                     "knn_acc": knn_accuracy(a, ytr, b, tgt.y_test, device="cpu").accuracy,
                     "probe_acc": linear_probe(a, ytr, b, tgt.y_test, l2_grid=[l2], device="cpu").accuracy,
                     "rank": effective_rank(a, device="cpu")})
    return pd.DataFrame(rows)


def main() -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="infodyn-known-") as tmp:
        for kind in args.kinds.split(","):
            for seed in range(args.seeds):
                c = transfer_curve(make_run(tmp, kind, seed))
                best_k, best_p = c["knn_acc"].idxmax(), c["probe_acc"].idxmax()
                f, l = c.iloc[0], c.iloc[-1]
                print(f"{kind:<9s} seed {seed}: source {f.source_acc:.3f} -> {l.source_acc:.3f}; "
                      f"k-NN {f.knn_acc:.3f} -> best {c.knn_acc.max():.3f} (epoch {c.epoch[best_k]}) -> "
                      f"{l.knn_acc:.3f}; probe {f.probe_acc:.3f} -> best {c.probe_acc.max():.3f} "
                      f"(epoch {c.epoch[best_p]}) -> {l.probe_acc:.3f}; rank {f['rank']:.1f} -> {l['rank']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

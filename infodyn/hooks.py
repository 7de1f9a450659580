"""Record checkpoints from a user's own training loop, ready for ``infodyn analyze``.

::

    from infodyn.hooks import CheckpointRecorder
    rec = CheckpointRecorder("runs/mlp", model, log_spaced=20, total_epochs=300,
                             manifest=dict(model="infodyn.models:mlp",
                                           model_kwargs=dict(in_dim=64, hidden=[32, 16]),
                                           data="digits", layers=["fc1", "fc2"]))
    rec.step(epoch=0, source_acc=evaluate(model))      # the initial weights
    for epoch in range(1, 301):
        train_one_epoch(model)
        rec.step(epoch=epoch, source_acc=evaluate(model))  # saves only when due

Each saved file is ``{'state_dict', 'epoch', 'step', 'source_acc', ...}`` (tensors copied to CPU,
written atomically), named ``epoch000012.pt`` (or ``step0004500.pt`` when counting steps), and
loads with ``torch.load(weights_only=True)``. The manifest (``infodyn.yaml``) is written when the
recorder is created; an existing different manifest is an error unless ``overwrite=True``.

One folder, one run: every file carries the recorder's ``run_id``. A recorder created in a
folder that already holds recorder checkpoints (``epoch*.pt``/``step*.pt``) refuses to start, so
that a second run cannot replace the first one's files and leave a folder that mixes two runs;
``resume=True`` continues the run found there (its ``run_id`` is kept, and re-saving an epoch it
already saved is allowed); ``overwrite=True`` starts a new run there and deletes the earlier
run's recorder files first. Otherwise a file of another run is never replaced.
"""
from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

__all__ = ["CheckpointRecorder", "log_spaced_points"]


def log_spaced_points(n: int, total: int) -> List[int]:
    """``n`` distinct integers in [0, total], about evenly spaced in log(1 + t), including both ends.

    When ``n`` exceeds ``total + 1`` every integer in [0, total] is returned.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"log_spaced must be a positive integer, got {n!r}")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"the total number of epochs/steps must be a non-negative integer, got {total!r}")
    if n >= total + 1:
        return list(range(total + 1))
    if n == 1:
        return [total]
    points: List[int] = []
    for i in range(n):
        # Lay out the remaining points on the log scale from the last one taken, so that rounding
        # collisions at the low end push points up instead of losing them.
        v = int(round(math.exp(math.log(total + 1) * i / (n - 1)) - 1))
        lo = points[-1] + 1 if points else 0
        hi = total - (n - 1 - i)  # leave room for the points still to come
        points.append(min(max(v, lo), hi))
    return points


class CheckpointRecorder:
    """Save state dicts at chosen epochs (or steps) and write the run manifest.

    Exactly one schedule: ``every=k`` (multiples of k, starting at 0, plus the last one when a
    total is given), ``at_epochs=[...]`` / ``at_steps=[...]`` (explicit), or ``log_spaced=N``
    with ``total_epochs`` / ``total_steps`` (N points log-spaced over [0, total]). Schedules count
    epochs unless ``at_steps`` or ``total_steps`` is given (then steps).

    Args:
        run_dir: folder for the checkpoints and ``infodyn.yaml`` (created).
        model: the ``nn.Module`` being trained (DataParallel/DDP/``torch.compile`` wrappers are
            unwrapped so the saved keys carry no wrapper prefix).
        manifest: mapping with ``model``, optional ``model_kwargs``, ``data`` (a name, or
            ``{source, target}``), ``layers`` and optional ``checkpoints``; written as the run's
            manifest. None: write none.
        overwrite: replace an existing, different manifest (otherwise ValueError), and start a
            new run in a folder that holds an earlier run's checkpoints: those recorder files
            (``epoch*.pt``/``step*.pt``) are deleted first, so the folder holds one run.
        resume: continue the run whose checkpoints the folder already holds (after a crash or
            a restart). Without it a folder holding recorder checkpoints is refused.

    Attributes:
        run_id: a random hex id stored in every file of this run (kept when resuming).
    """

    def __init__(self, run_dir: Union[str, Path], model, *, every: Optional[int] = None,
                 at_epochs: Optional[Iterable[int]] = None, at_steps: Optional[Iterable[int]] = None,
                 log_spaced: Optional[int] = None, total_epochs: Optional[int] = None,
                 total_steps: Optional[int] = None, manifest: Optional[Dict[str, Any]] = None,
                 overwrite: bool = False, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.model = model
        schedules = [s for s in (every, at_epochs, at_steps, log_spaced) if s is not None]
        if len(schedules) != 1:
            raise ValueError("give exactly one schedule: every=, at_epochs=, at_steps= or log_spaced=")
        if total_epochs is not None and total_steps is not None:
            raise ValueError("give total_epochs or total_steps, not both")
        if at_epochs is not None and total_steps is not None or at_steps is not None and total_epochs is not None:
            raise ValueError("at_epochs goes with total_epochs, at_steps with total_steps")
        self.unit = "step" if (at_steps is not None or total_steps is not None) else "epoch"
        self.total = total_steps if self.unit == "step" else total_epochs
        if self.total is not None and (isinstance(self.total, bool) or not isinstance(self.total, int)
                                       or self.total < 0):
            raise ValueError(f"total_{self.unit}s must be a non-negative integer, got {self.total!r}")
        self.every = None
        self.points: Optional[set] = None
        if every is not None:
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise ValueError(f"every must be a positive integer, got {every!r}")
            self.every = every
        elif log_spaced is not None:
            if self.total is None:
                raise ValueError("log_spaced needs total_epochs (or total_steps)")
            self.points = set(log_spaced_points(log_spaced, self.total))
        else:
            pts = list(at_epochs if at_epochs is not None else at_steps)
            if not pts or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pts):
                raise ValueError(f"at_{self.unit}s must be non-negative integers, got {pts!r}")
            self.points = set(pts)
        self.saved: List[Path] = []
        self._done: set = set()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume and overwrite:
            raise ValueError("give resume=True (continue the run in the folder) or overwrite=True "
                             "(replace it), not both")
        self.run_id = self._claim_folder(resume, overwrite)
        self.manifest_path: Optional[Path] = None
        if manifest is not None:
            self.manifest_path = self._write_manifest(manifest, overwrite)

    # -- schedule -------------------------------------------------------------------------------

    def schedule(self) -> Optional[List[int]]:
        """The epochs/steps that will be saved (None for an open-ended ``every`` schedule)."""
        if self.points is not None:
            return sorted(self.points)
        if self.total is None:
            return None
        return sorted(set(range(0, self.total + 1, self.every)) | {self.total})

    def due(self, value: int) -> bool:
        """Whether epoch/step ``value`` is in the schedule (and not saved yet)."""
        if value in self._done:
            return False
        if self.points is not None:
            return value in self.points
        return value % self.every == 0 or (self.total is not None and value == self.total)

    # -- saving ---------------------------------------------------------------------------------

    def step(self, *, epoch: Optional[int] = None, step: Optional[int] = None,
             source_acc: Optional[float] = None, **extra) -> Optional[Path]:
        """Call after each epoch (or step); saves a checkpoint when the schedule says so.

        ``epoch=0`` (or ``step=0``) means the initial weights. ``extra`` scalar values (a loss,
        say) are stored in the file too. Returns the saved file, or None.
        """
        value = epoch if self.unit == "epoch" else step
        if value is None:
            raise ValueError(f"this recorder counts {self.unit}s: pass {self.unit}=")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{self.unit} must be a non-negative integer, got {value!r}")
        if not self.due(value):
            return None
        return self.save(epoch=epoch, step=step, source_acc=source_acc, **extra)

    def save(self, *, epoch: Optional[int] = None, step: Optional[int] = None,
             source_acc: Optional[float] = None, **extra) -> Path:
        """Save a checkpoint now, whatever the schedule; returns the file."""
        import torch

        from infodyn._atomic import atomic_torch_save

        value = epoch if self.unit == "epoch" else step
        if value is None:
            raise ValueError(f"this recorder names files by {self.unit}: pass {self.unit}=")
        if source_acc is not None and not math.isfinite(float(source_acc)):
            raise ValueError(f"source_acc must be finite, got {source_acc!r}")
        module = self.model
        for attr in ("_orig_mod", "module"):  # torch.compile, then DataParallel/DDP
            inner = getattr(module, attr, None)
            if isinstance(inner, torch.nn.Module):
                module = inner
        state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        payload = {"state_dict": state, "epoch": epoch, "step": step,
                   "source_acc": None if source_acc is None else float(source_acc),
                   "run_id": self.run_id}  # reserved too: save(run_id=...) must not replace it
        for k, v in extra.items():
            if k in payload:
                raise ValueError(f"extra key {k!r} clashes with a reserved key")
            if hasattr(v, "item"):
                v = v.item()
            if not isinstance(v, (int, float, str, bool, type(None))):
                raise ValueError(f"extra value {k!r} must be a plain scalar or string, got "
                                 f"{type(v).__name__} (it must load with weights_only=True)")
            payload[k] = v
        width = 6 if self.unit == "epoch" else 9
        path = self.run_dir / f"{self.unit}{value:0{width}d}.pt"
        if path.exists() and self._owner(path) != self.run_id:
            raise ValueError(f"{path} belongs to another run (written by another "
                             "CheckpointRecorder); not replaced. Record this run in its own folder.")
        atomic_torch_save(path, payload)
        self._done.add(value)
        self.saved.append(path)
        return path

    # -- one folder, one run ---------------------------------------------------------------------

    @staticmethod
    def _owner(path: Path) -> Optional[str]:
        """The run_id stored in a recorder file (None: unreadable, or written without one)."""
        from infodyn.runs.load import read_meta

        try:
            return read_meta(path).get("run_id")
        except Exception:
            return None

    def _existing(self) -> List[Path]:
        return sorted(p for pattern in ("epoch*.pt", "step*.pt") for p in self.run_dir.glob(pattern)
                      if p.is_file())

    def _claim_folder(self, resume: bool, overwrite: bool) -> str:
        """This run's id: a new one for an empty folder, the folder's run's when resuming."""
        existing = self._existing()
        if existing and overwrite:
            for p in existing:
                p.unlink()
            existing = []
        if not existing:
            return uuid.uuid4().hex
        if not resume:
            shown = ", ".join(p.name for p in existing[:4]) + (
                f", ... ({len(existing)} files)" if len(existing) > 4 else "")
            raise ValueError(
                f"{self.run_dir} already holds the checkpoints of a run ({shown}). A second run "
                "recorded here would replace its files and leave a folder that mixes two runs. "
                "Record this run in a new folder, pass resume=True to continue that run, or "
                "overwrite=True to delete its checkpoints and start again.")
        owners = {self._owner(p) for p in existing} - {None}
        if len(owners) > 1:
            raise ValueError(f"{self.run_dir} already mixes {len(owners)} runs; resume=True cannot "
                             "tell which to continue. Record this run in a new folder.")
        return owners.pop() if owners else uuid.uuid4().hex

    def _write_manifest(self, manifest: Dict[str, Any], overwrite: bool) -> Path:
        from infodyn.runs.manifest import write_manifest

        m = dict(manifest)
        m.setdefault("checkpoints", f"{self.unit}*.pt")
        return write_manifest(self.run_dir, m, overwrite=overwrite)

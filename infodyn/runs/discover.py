"""Find the checkpoints of a run folder and put them in training order.

Order: by the step or epoch stored inside each file (``global_step``/``step``/``iteration``,
``epoch``/``current_epoch``; safetensors: the header metadata), else by the numbers in the file
names (``epoch=3-step=300.ckpt``, ``ckpt_step1200.pt``, ``model_17.pth``), else by name. An
:class:`AmbiguousOrderWarning` says when the order rests on weak evidence: keys taken partly from
contents and partly from names, ties, file names that disagree with the contents, names with
several unlabelled numbers, or no numbers at all.

Reading the step/epoch memory-maps zip-format files (only the small pickled header is read),
and uses the same safe loader as :mod:`infodyn.runs.load`: a file that cannot be read safely is
still listed, with its ``error`` set, so that the caller can report it and go on.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

from infodyn.runs.load import CHECKPOINT_SUFFIXES, read_meta

__all__ = ["CheckpointInfo", "AmbiguousOrderWarning", "discover", "parse_filename"]

# Files that sit beside model checkpoints in common trainers but hold no model weights.
_NOT_MODELS = {"optimizer", "scheduler", "scaler", "training_args", "trainer_state", "optim"}

_EPOCH_RE = re.compile(r"(?<![a-z])(?:epoch|ep)[=_\-]?(\d+)", re.IGNORECASE)
_STEP_RE = re.compile(r"(?<![a-z])(?:global_step|step|steps|iteration|iter)[=_\-]?(\d+)",
                      re.IGNORECASE)
_NUM_RE = re.compile(r"\d+")


class AmbiguousOrderWarning(UserWarning):
    """The checkpoint order could not be established from unambiguous evidence."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file in a run.

    Attributes:
        path: the file.
        step: training step (from the contents, else a ``step``/``iter`` label in the name).
        epoch: epoch (from the contents, else an ``epoch``/``ep`` label in the name).
        order_source: ``"content"`` when the key that ordered this file came from inside it,
            ``"filename"`` when it came from the name (or the name's sort order).
        number: the file name's last unlabelled number (``model_17.pth`` -> 17), if any.
        source_acc: the source accuracy stored in the file, if any.
        error: why the contents could not be read during discovery (the file is still listed;
            loading it will raise the same error), else None.
    """

    path: Path
    step: Optional[int]
    epoch: Optional[int]
    order_source: str
    number: Optional[int] = None
    source_acc: Optional[float] = None
    error: Optional[str] = None

    @property
    def name(self) -> str:
        return self.path.name


def parse_filename(name: str) -> Tuple[Optional[int], Optional[int], Optional[int], int]:
    """(epoch, step, bare number, count of bare numbers) from a file name."""
    stem = Path(name).name
    for suffix in CHECKPOINT_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    epoch_m = _EPOCH_RE.search(stem)
    step_m = _STEP_RE.search(stem)
    spans = [m.span(1) for m in (epoch_m, step_m) if m]
    bare = [int(m.group()) for m in _NUM_RE.finditer(stem)
            if not any(a <= m.start() < b for a, b in spans)]
    return (int(epoch_m.group(1)) if epoch_m else None,
            int(step_m.group(1)) if step_m else None,
            bare[-1] if bare else None, len(bare))


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _candidates(root: Path, pattern: Optional[str]) -> List[Path]:
    if pattern:
        if Path(pattern).is_absolute():
            raise ValueError(f"checkpoint pattern {pattern!r} must be relative to the run folder {root}")
        files = [p for p in root.glob(pattern) if p.is_file()]
    else:
        files = [p for p in root.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES
                 and p.stem.lower() not in _NOT_MODELS
                 and not p.stem.lower().startswith("rng_state")]
    # Hidden files include the temporaries of atomic writes (".name.XXXX.tmp").
    return sorted((p for p in files if not p.name.startswith(".")), key=lambda p: _natural_key(p.name))


def discover(run_dir: Union[str, Path], pattern: Optional[str] = None, *,
             read_content: bool = True, trust: bool = False) -> List[CheckpointInfo]:
    """List a run's checkpoints in training order.

    Args:
        run_dir: the folder (not searched recursively unless ``pattern`` says ``**``).
        pattern: a glob relative to ``run_dir`` (``"*.pt"``, ``"ckpts/**/*.ckpt"``); default:
            every ``.pt``/``.pth``/``.ckpt``/``.safetensors``/``.bin`` file directly in it,
            except optimizer/scheduler/scaler/training-args/RNG-state files.
        read_content: read step/epoch from inside the files (default); False orders by names.
        trust: passed to the loader for files that hold pickled Python objects (see ``load``).

    Returns:
        CheckpointInfo list, earliest first. Warns (:class:`AmbiguousOrderWarning`) when the
        order is ambiguous.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        ValueError: it holds no checkpoint file matching ``pattern``.
    """
    root = Path(run_dir)
    if not root.exists():
        raise FileNotFoundError(f"no such run folder: {root}")
    if not root.is_dir():
        raise ValueError(f"{root}: expected a folder of checkpoints, got a file")
    files = _candidates(root, pattern)
    if not files:
        looked = pattern or "*" + ", *".join(CHECKPOINT_SUFFIXES)
        raise ValueError(f"{root}: no checkpoint files found (looked for {looked})")

    rows = []
    for path in files:
        f_epoch, f_step, number, n_bare = parse_filename(path.name)
        meta, error = {}, None
        if read_content:
            try:
                meta = read_meta(path, trust=trust)
            except (ValueError, OSError) as exc:
                error = str(exc)
        rows.append(dict(path=path, c_epoch=meta.get("epoch"), c_step=meta.get("step"),
                         f_epoch=f_epoch, f_step=f_step, number=number, n_bare=n_bare,
                         acc=meta.get("source_acc"), error=error))
    return _order(root, rows)


def _order(root: Path, rows) -> List[CheckpointInfo]:
    notes = []

    def value(r, kind):
        c, f = r[f"c_{kind}"], r[f"f_{kind}"]
        return (c, "content") if c is not None else (f, "filename") if f is not None else (None, None)

    primary = next((k for k in ("step", "epoch") if all(value(r, k)[0] is not None for r in rows)),
                   None)
    if primary:
        secondary = "epoch" if primary == "step" else "step"
        keyed = [((value(r, primary)[0],
                   value(r, secondary)[0] if value(r, secondary)[0] is not None else -1), r,
                  value(r, primary)[1]) for r in rows]
        # Unreadable files (reported through .error) take their place from the name silently.
        sources = {s for _, r, s in keyed if r["error"] is None}
        if len(sources) > 1:
            names = [r["path"].name for _, r, s in keyed if s == "filename" and r["error"] is None][:5]
            notes.append(f"the {primary} comes from inside some files but only from the file "
                         f"name of others ({', '.join(names)})")
    elif all(r["number"] is not None for r in rows):
        keyed = [((r["number"],), r, "filename") for r in rows]
        many = [r["path"].name for r in rows if r["n_bare"] > 1][:5]
        if many:
            notes.append(f"file names hold several unlabelled numbers; ordered by the last one "
                         f"({', '.join(many)})")
        if any(r["c_step"] is not None or r["c_epoch"] is not None for r in rows):
            notes.append("only some files store a step or epoch; ordered by file-name numbers")
    else:
        keyed = [((i,), r, "filename") for i, r in enumerate(rows)]  # already in natural name order
        notes.append("neither the contents nor the file names give a step or epoch for every "
                     "file; ordered by name")

    keyed.sort(key=lambda t: (t[0], _natural_key(t[1]["path"].name)))
    keys = [k for k, _, _ in keyed]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        names = [r["path"].name for k, r, _ in keyed if k in dupes][:6]
        notes.append(f"several files share the same position ({', '.join(names)}); ties broken "
                     "by name")
    if primary and any(s == "content" for _, _, s in keyed):
        # Do the names, where they carry a number, tell the same story as the contents?
        by_name = [(r[f"f_{primary}"] if r[f"f_{primary}"] is not None else r["number"])
                   for _, r, _ in keyed]
        if all(v is not None for v in by_name) and any(
                b < a for a, b in zip(by_name, by_name[1:])):
            notes.append(f"the numbers in the file names disagree with the {primary} stored in "
                         "the files; ordered by the stored values")
    if notes:
        warnings.warn(f"{root}: checkpoint order is ambiguous: " + "; ".join(notes),
                      AmbiguousOrderWarning, stacklevel=3)

    out = []
    for _, r, source in keyed:
        out.append(CheckpointInfo(
            path=r["path"],
            step=r["c_step"] if r["c_step"] is not None else r["f_step"],
            epoch=r["c_epoch"] if r["c_epoch"] is not None else r["f_epoch"],
            order_source=source, number=r["number"], source_acc=r["acc"], error=r["error"]))
    return out

"""Find the checkpoints of a run folder and put them in training order.

What is found (no pattern given): checkpoint files (``.pt``, ``.pth``, ``.pth.tar``, ``.ckpt``,
``.safetensors``, ``.bin``) and checkpoint *folders* (Hugging Face ``save_pretrained`` / Trainer
``checkpoint-N/``, accelerate ``save_state`` ``checkpoint_N/``: a folder holding
``model.safetensors``, ``pytorch_model.bin`` or their sharded index is one checkpoint, named by
the folder). The run folder is searched down to :data:`MAX_DEPTH` sub-folder levels
(``checkpoints/``, ``lightning_logs/version_0/checkpoints/``); the shallowest level holding
checkpoints is taken and deeper ones are listed as skipped, as are optimizer / scheduler /
RNG-state / training-args files, timm's temporary files, sub-folders that hold another run's
``infodyn.yaml``, and copies: ``last``/``latest``/``best``/``model_best`` files at the position of
another checkpoint, and any checkpoint with the same position and the same weights as one
already taken. :func:`scan` returns the whole listing (``infodyn init --list RUN`` prints it);
:func:`discover` returns the checkpoints.

Order: by the step or epoch stored inside each file (``global_step``/``step``/``iteration``,
``epoch``/``current_epoch``; safetensors: the header metadata; Hugging Face folders:
``trainer_state.json``), else by the numbers in the names (``epoch=3-step=300.ckpt``,
``ckpt_step1200.pt``, ``model_17.pth``, ``checkpoint-500/`` = step 500 for Hugging Face), else
by name. An :class:`AmbiguousOrderWarning` says when the order rests on weak evidence: keys
taken partly from contents and partly from names, ties, file names that disagree with the
contents, names with several unlabelled numbers, or no numbers at all. A
:class:`MixedRunsWarning` says when a folder seems to hold two runs (two checkpoints with
different weights at one position, or files of several ``CheckpointRecorder`` runs).

Epochs follow infodyn's convention (epochs completed; 0 = the initial weights): Lightning's
``epoch=E`` (the state after epoch E) becomes E + 1, timm's stored epoch index E becomes E + 1;
each converted checkpoint says so in ``CheckpointInfo.convention`` and in the listing.

Reading the step/epoch memory-maps zip-format files (only the small pickled header is read),
and uses the same safe loader as :mod:`infodyn.runs.load`: a file that cannot be read safely is
still listed, with its ``error`` set, so that the caller can report it and go on. A stored
epoch or step that is absurd (``10**400``, ``1e300``, ``2**63``) is ignored with a note on that
checkpoint (``CheckpointInfo.notes``) and a warning; a file name that is not valid UTF-8 is
read all the same and shown with U+FFFD in its name.
"""
from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from infodyn.runs.load import (CHECKPOINT_SUFFIXES, FOLDER_WEIGHTS, CheckpointError,
                               checkpoint_name, folder_kind, index_shards, is_checkpoint_name,
                               read_meta, split_suffix)

__all__ = ["CheckpointInfo", "AmbiguousOrderWarning", "MixedRunsWarning", "RunListing", "discover",
           "scan", "parse_filename", "MAX_DEPTH"]

MAX_DEPTH = 4  # sub-folder levels searched below the run folder when no pattern is given

# Files that sit beside model checkpoints in common trainers but hold no model weights.
_NOT_MODELS = {"optimizer", "scheduler", "scaler", "training_args", "trainer_state", "optim"}
# ... and these name prefixes (accelerate: optimizer_1.bin, scheduler_1.bin, sampler.bin,
# dl_state_dict.bin; Hugging Face: rng_state_0.pth).
_NOT_MODEL_PREFIXES = ("rng_state", "optimizer_", "scheduler_", "sampler", "dl_state_dict",
                       "random_states")
# timm's CheckpointSaver writes these, then renames them.
_TEMPORARIES = {"tmp.pth.tar", "recovery_tmp.pth.tar"}
# Names of copies of another checkpoint (timm, Lightning's save_last, many scripts).
_ALIASES = {"last", "latest", "best", "model_best", "checkpoint_best", "best_model", "last_model"}

_EPOCH_RE = re.compile(r"(?<![a-z])(?:epoch|ep)[=_\-]?(\d+)", re.IGNORECASE)
_STEP_RE = re.compile(r"(?<![a-z])(?:global_step|step|steps|iteration|iter)[=_\-]?(\d+)",
                      re.IGNORECASE)
_NUM_RE = re.compile(r"\d+")
_MAX_DIGITS = 16  # 2**53 has 16 digits


class AmbiguousOrderWarning(UserWarning):
    """The checkpoint order could not be established from unambiguous evidence."""


class MixedRunsWarning(AmbiguousOrderWarning):
    """The folder seems to hold checkpoints of more than one training run."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint (a file, or a Hugging Face / accelerate folder) in a run.

    Attributes:
        path: the file or folder.
        step: training step (from the contents, else a ``step``/``iter`` label in the name).
        epoch: epochs completed (0 = initial weights; from the contents, converted from the
            library's convention, else an ``epoch``/``ep`` label in the name); a float for
            Hugging Face's fractional epochs.
        order_source: ``"content"`` when the key that ordered this file came from inside it,
            ``"filename"`` when it came from the name (or the name's sort order).
        number: the file name's last unlabelled number (``model_17.pth`` -> 17), if any.
        source_acc: the source accuracy stored in the file, if any.
        error: why the contents could not be read during discovery (the file is still listed;
            loading it will raise the same error), else None.
        kind: ``"file"``, ``"lightning"``, ``"timm"``, ``"hf"``, ``"accelerate"`` or ``"folder"``.
        convention: how the stored epoch was converted (``"Lightning epoch=0, saved at the end
            of that epoch: 1 completed epochs"``), or "".
        epoch_stored: the epoch as the file stores it, where it was converted.
        notes: problems with this checkpoint alone (an ignored out-of-range epoch, a non-UTF-8
            name).
        run_id: the id of the :class:`~infodyn.hooks.CheckpointRecorder` run that wrote it.
    """

    path: Path
    step: Optional[int]
    epoch: Optional[Union[int, float]]
    order_source: str
    number: Optional[int] = None
    source_acc: Optional[float] = None
    error: Optional[str] = None
    kind: str = "file"
    convention: str = ""
    epoch_stored: Optional[int] = None
    notes: Tuple[str, ...] = ()
    run_id: Optional[str] = None

    @property
    def name(self) -> str:
        """The file's (or folder's) name, printable (non-UTF-8 bytes shown as U+FFFD)."""
        return checkpoint_name(self.path)


@dataclass
class RunListing:
    """What :func:`scan` found in a run folder.

    Attributes:
        root: the run folder.
        checkpoints: the checkpoints taken, in training order.
        skipped: (path, reason) for each candidate left out.
        notes: order and mixed-run problems (each also given as a warning).
    """

    root: Path
    checkpoints: List[CheckpointInfo]
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def _rel(self, p: Path) -> str:
        return _rel_name(self.root, p)

    def format(self) -> str:
        """A plain-text listing: the checkpoints taken (order, kind, epoch, step, where the
        order came from, the epoch convention), then what was skipped and why, then notes."""
        lines = [f"{checkpoint_name(self.root)}: {len(self.checkpoints)} checkpoint(s) taken, "
                 f"{len(self.skipped)} skipped"]
        rows = [("#", "checkpoint", "kind", "epoch", "step", "order from", "notes")]
        for i, c in enumerate(self.checkpoints):
            extra = [c.convention] if c.convention else []
            extra += list(c.notes)
            if c.error:
                extra.append(f"UNREADABLE: {c.error}")
            rows.append((str(i), self._rel(c.path) + ("/" if c.path.is_dir() else ""), c.kind,
                         "-" if c.epoch is None else f"{c.epoch:g}",
                         "-" if c.step is None else str(c.step), c.order_source, "; ".join(extra)))
        widths = [max(len(r[k]) for r in rows) for k in range(6)]
        for r in rows:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r[:6], widths)) + "  " + r[6])
        lines.append("epoch = epochs completed (0 = the initial weights); library epochs are "
                     "converted as noted.")
        if self.skipped:
            lines.append("skipped:")
            for p, why in self.skipped:
                lines.append(f"  {self._rel(p)}: {why}")
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  {n}" for n in self.notes)
        return "\n".join(lines)


def _rel_name(root: Path, p: Path) -> str:
    """``p`` relative to ``root``, printable (non-UTF-8 bytes shown as U+FFFD)."""
    try:
        rel = p.relative_to(root)
    except ValueError:
        rel = p
    return "/".join(checkpoint_name(Path(part)) for part in rel.parts) or checkpoint_name(p)


def _int_or_none(text: str) -> Optional[int]:
    return int(text) if len(text) <= _MAX_DIGITS else None


def parse_filename(name: str) -> Tuple[Optional[int], Optional[int], Optional[int], int]:
    """(epoch, step, bare number, count of bare numbers) from a file name.

    Numbers of more than 16 digits (beyond 2**53) are treated as absent."""
    stem = split_suffix(Path(name).name)[0]
    epoch_m = _EPOCH_RE.search(stem)
    step_m = _STEP_RE.search(stem)
    spans = [m.span(1) for m in (epoch_m, step_m) if m]
    bare = [_int_or_none(m.group()) for m in _NUM_RE.finditer(stem)
            if not any(a <= m.start() < b for a, b in spans)]
    return (_int_or_none(epoch_m.group(1)) if epoch_m else None,
            _int_or_none(step_m.group(1)) if step_m else None,
            bare[-1] if bare else None, len(bare))


def _natural_key(name: str):
    return [(0, int(t), "") if t.isdigit() and len(t) <= 300 else (1, 0, t.lower())
            for t in re.split(r"(\d+)", name)]


def _why_not(path: Path) -> Optional[str]:
    """Why a file with a checkpoint suffix is not a model checkpoint, or None."""
    name = path.name
    if name in _TEMPORARIES:
        return "timm's temporary file (renamed when the save completes)"
    stem = split_suffix(name)[0].lower()
    if stem in _NOT_MODELS or stem.startswith(_NOT_MODEL_PREFIXES):
        return "optimizer/scheduler/scaler/RNG/sampler state or training arguments, not model weights"
    return None


def _walk(root: Path) -> Tuple[List[Tuple[int, Path, str]], List[Tuple[Path, str]]]:
    """(depth, path, kind) of every checkpoint file or folder down to MAX_DEPTH (kind:
    ``"file"`` or the folder's :func:`folder_kind`), and what was skipped. Hidden (dot) files
    and folders are passed over without a word."""
    found: List[Tuple[int, Path, str]] = []
    skipped: List[Tuple[Path, str]] = []

    def visit(folder: Path, depth: int):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: _natural_key(e.name))
        except OSError as exc:
            skipped.append((folder, f"could not be listed ({exc.strerror or exc})"))
            return
        own: set = set()
        kind = folder_kind(folder) if depth == 0 else None
        if kind is not None:
            # The run folder is itself a Hugging Face / accelerate folder (Trainer.save_model at
            # the end of training): its weight files (and shards) are one checkpoint.
            found.append((0, folder, kind))
            own = _weight_names(folder)
        for e in entries:
            if e.name.startswith("."):
                continue  # hidden, or a temporary file being written
            p = folder / e.name
            try:
                is_dir = e.is_dir(follow_symlinks=False)  # no loops, no escape through links
                is_file = e.is_file()
            except OSError:
                continue
            if e.name in own:
                continue
            if is_dir:
                if e.name == "__pycache__":
                    continue
                if (p / "infodyn.yaml").is_file():
                    skipped.append((p, "another run (it has its own infodyn.yaml)"))
                    continue
                sub = folder_kind(p)
                if sub is not None:
                    found.append((depth, p, sub))
                elif depth < MAX_DEPTH:
                    visit(p, depth + 1)
            elif is_file and is_checkpoint_name(e.name):
                why = _why_not(p)
                if why:
                    skipped.append((p, why))
                else:
                    found.append((depth, p, "file"))

    visit(root, 0)
    return found, skipped


def _weight_names(folder: Path) -> set:
    """Names of a checkpoint folder's weight files: every file named like one
    (:data:`~infodyn.runs.load.FOLDER_WEIGHTS`, safetensors and .bin variants alike) and the
    shards each index lists (none for an index that cannot be read: loading says why)."""
    names = {n for n in FOLDER_WEIGHTS if (folder / n).is_file()}
    for index in [n for n in names if n.endswith(".index.json")]:
        try:
            names.update(index_shards(folder / index)[0])
        except (OSError, CheckpointError):
            pass
    return names


def _candidates(root: Path, pattern: Optional[str]
                ) -> Tuple[List[Tuple[Path, str]], List[Tuple[Path, str]]]:
    """(path, kind) of the checkpoints to take, in natural name order (kind: ``"file"`` or the
    folder's :func:`folder_kind`), and (path, reason) of what was skipped."""
    if pattern:
        if Path(pattern).is_absolute():
            raise ValueError(f"checkpoint pattern {pattern!r} must be relative to the run folder {root}")
        if ".." in Path(pattern).parts:
            raise ValueError(f"checkpoint pattern {pattern!r} must stay inside the run folder {root} "
                             "(no '..')")
        base = root.resolve()
        files, skipped = [], []
        for p in root.glob(pattern):
            if p.name.startswith("."):
                continue
            try:
                p.resolve().relative_to(base)
            except ValueError:
                skipped.append((p, "outside the run folder (a link pointing out of it)"))
                continue
            kind = "file" if p.is_file() else folder_kind(p) if p.is_dir() else None
            if kind is not None:
                files.append((p, kind))
        return sorted(files, key=lambda t: _natural_key(str(t[0].relative_to(root)))), skipped
    found, skipped = _walk(root)
    if not found:
        return [], skipped
    top = min(d for d, _, _ in found)
    taken = [(p, kind) for d, p, kind in found if d == top]
    for d, p, _ in found:
        if d != top:
            skipped.append((p, f"in a sub-folder {d - top} level(s) below the checkpoints taken "
                               "(name it with a checkpoints: glob to use it instead)"))
    return sorted(taken, key=lambda t: _natural_key(str(t[0].relative_to(root)))), skipped


def discover(run_dir: Union[str, Path], pattern: Optional[str] = None, *,
             read_content: bool = True, trust: bool = False) -> List[CheckpointInfo]:
    """List a run's checkpoints in training order (see the module docstring).

    Args:
        run_dir: the folder.
        pattern: a glob relative to ``run_dir`` (``"*.pt"``, ``"ckpts/**/*.ckpt"``,
            ``"checkpoint-*"`` for Hugging Face folders); default: every checkpoint file and
            folder at the shallowest level (down to :data:`MAX_DEPTH`) that holds any, except
            optimizer/scheduler/scaler/training-args/RNG-state files and copies.
        read_content: read step/epoch from inside the files (default); False orders by names.
        trust: passed to the loader for files that hold pickled Python objects (see ``load``).

    Returns:
        CheckpointInfo list, earliest first. Warns (:class:`AmbiguousOrderWarning`,
        :class:`MixedRunsWarning`) when the order is ambiguous or the folder mixes runs.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        ValueError: it holds no checkpoint matching ``pattern``.
    """
    return scan(run_dir, pattern, read_content=read_content, trust=trust, _stacklevel=4).checkpoints


def scan(run_dir: Union[str, Path], pattern: Optional[str] = None, *, read_content: bool = True,
         trust: bool = False, warn: bool = True, _stacklevel: int = 3) -> RunListing:
    """Like :func:`discover`, but returns the whole :class:`RunListing`: the checkpoints taken,
    what was skipped and why, and the notes (``listing.format()`` prints it). ``warn=False``
    gives the notes without warnings."""
    root = Path(run_dir)
    if not root.exists():
        raise FileNotFoundError(f"no such run folder: {root}")
    if not root.is_dir():
        raise ValueError(f"{root}: expected a folder of checkpoints, got a file")
    files, skipped = _candidates(root, pattern)
    if not files:
        looked = pattern or ("*" + ", *".join(CHECKPOINT_SUFFIXES)
                             + f" and Hugging Face / accelerate checkpoint folders, down to "
                               f"{MAX_DEPTH} sub-folder levels")
        seen = "; ".join(f"{_rel_name(root, p)}: {why}" for p, why in skipped[:5])
        raise ValueError(f"{root}: no checkpoint files found (looked for {looked})"
                         + (f"; found only: {seen}" if seen else ""))

    rows = [_row(path, kind, read_content=read_content, trust=trust) for path, kind in files]
    if len(rows) > 1:
        # The run folder's own final model with no recorded position would spoil the order of
        # the others: list it as skipped (a checkpoints: glob can still name it).
        for r in rows:
            if r["path"] == root and all(r[k] is None for k in ("c_epoch", "c_step", "f_epoch", "f_step")):
                rows.remove(r)
                skipped.append((root, "the run folder's own model files (saved at the end, no epoch "
                                      "or step recorded); name them with a checkpoints: glob to use them"))
                break
    listing = _order(root, rows, trust=trust)
    listing.skipped = skipped + listing.skipped
    if warn:
        for c in listing.checkpoints:
            for n in c.notes:
                warnings.warn(f"{root}: {_rel_name(root, c.path)}: {n}", AmbiguousOrderWarning,
                              stacklevel=_stacklevel)
        mixed = [n for n in listing.notes if n.startswith(_MIXED)]
        other = [n for n in listing.notes if not n.startswith(_MIXED)]
        if other:
            warnings.warn(f"{root}: checkpoint order is ambiguous: " + "; ".join(other),
                          AmbiguousOrderWarning, stacklevel=_stacklevel)
        for n in mixed:
            warnings.warn(f"{root}: {n}", MixedRunsWarning, stacklevel=_stacklevel)
    return listing


_MIXED = "the folder seems to mix runs"


def _row(path: Path, kind: str, *, read_content: bool, trust: bool) -> Dict[str, Any]:
    """What the name and (``read_content``) the contents say of one checkpoint; ``kind``:
    ``"file"`` or the folder's :func:`folder_kind`."""
    f_epoch, f_step, number, n_bare = parse_filename(path.name)
    notes: List[str] = []
    if checkpoint_name(path) != path.name:
        notes.append("its name is not valid UTF-8 (shown with U+FFFD)")
    if (kind == "hf" and f_step is None and f_epoch is None and number is not None
            and path.name.lower().startswith("checkpoint")):
        f_step = number  # Hugging Face Trainer names folders checkpoint-<global_step>
    meta: Dict[str, Any] = {}
    error = None
    if read_content:
        try:
            meta = read_meta(path, trust=trust, kind=None if kind == "file" else kind)
        except Exception as exc:  # one bad checkpoint must not stop the listing
            error = str(exc) or type(exc).__name__
    notes += list(meta.get("warnings") or [])
    # timm's recovery-E-B (batch B of epoch E, saved mid-epoch) comes after the end of epoch E - 1
    sub = number if (meta.get("kind") == "timm" and path.name.startswith("recovery")
                     and n_bare >= 2) else None
    return dict(path=path, sub=sub, c_epoch=meta.get("epoch"), c_step=meta.get("step"),
                f_epoch=f_epoch, f_step=f_step, number=number, n_bare=n_bare,
                acc=meta.get("source_acc"), error=error, kind=meta.get("kind") or kind,
                convention=meta.get("convention", ""), epoch_stored=meta.get("epoch_stored"),
                notes=notes, run_id=meta.get("run_id"))


def _order(root: Path, rows, *, trust: bool = False) -> RunListing:
    notes: List[str] = []

    def rel(p: Path) -> str:  # names relative to the run folder in every note
        return _rel_name(root, p)

    def value(r, kind):
        c, f = r[f"c_{kind}"], r[f"f_{kind}"]
        return (c, "content") if c is not None else (f, "filename") if f is not None else (None, None)

    primary = next((k for k in ("step", "epoch") if all(value(r, k)[0] is not None for r in rows)),
                   None)
    if primary:
        secondary = "epoch" if primary == "step" else "step"
        keyed = [((value(r, primary)[0],
                   value(r, secondary)[0] if value(r, secondary)[0] is not None
                   else r.get("sub") if r.get("sub") is not None else -1), r,
                  value(r, primary)[1]) for r in rows]
        # Unreadable files (reported through .error) take their place from the name silently.
        sources = {s for _, r, s in keyed if r["error"] is None}
        if len(sources) > 1:
            names = [rel(r["path"]) for _, r, s in keyed
                     if s == "filename" and r["error"] is None][:5]
            notes.append(f"the {primary} comes from inside some files but only from the file "
                         f"name of others ({', '.join(names)})")
    elif all(r["number"] is not None for r in rows):
        keyed = [((r["number"],), r, "filename") for r in rows]
        many = [rel(r["path"]) for r in rows if r["n_bare"] > 1][:5]
        if many:
            notes.append(f"file names hold several unlabelled numbers; ordered by the last one "
                         f"({', '.join(many)})")
        if any(r["c_step"] is not None or r["c_epoch"] is not None for r in rows):
            notes.append("only some files store a step or epoch; ordered by file-name numbers")
    else:
        keyed = [((i,), r, "filename") for i, r in enumerate(rows)]  # already in natural name order
        notes.append("neither the contents nor the file names give a step or epoch for every "
                     "file; ordered by name")

    keyed.sort(key=lambda t: (t[0], _natural_key(rel(t[1]["path"]))))
    keyed, skipped, mixed = _drop_copies(keyed, rel, trust=trust)
    dupes = sorted(k for k, n in Counter(k for k, _, _ in keyed).items() if n > 1)
    if dupes:
        names = [rel(r["path"]) for k, r, _ in keyed if k in dupes][:6]
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
    if mixed:
        notes.append(f"{_MIXED}: {', '.join(mixed[:4])} hold different weights at the same "
                     f"position; keep one run per folder")
    run_ids = sorted({r["run_id"] for _, r, _ in keyed if r["run_id"]})
    if len(run_ids) > 1:
        notes.append(f"{_MIXED}: its files were written by {len(run_ids)} different "
                     f"CheckpointRecorder runs ({', '.join(i[:8] for i in run_ids[:4])})")

    out = []
    for _, r, source in keyed:
        out.append(CheckpointInfo(
            path=r["path"],
            step=r["c_step"] if r["c_step"] is not None else r["f_step"],
            epoch=r["c_epoch"] if r["c_epoch"] is not None else r["f_epoch"],
            order_source=source, number=r["number"], source_acc=r["acc"], error=r["error"],
            kind=r["kind"], convention=r["convention"], epoch_stored=r["epoch_stored"],
            notes=tuple(r["notes"]), run_id=r["run_id"]))
    return RunListing(root=root, checkpoints=out, skipped=skipped, notes=notes)


def _is_alias(path: Path) -> bool:
    return split_suffix(path.name)[0].lower() in _ALIASES


def _drop_copies(keyed, rel, *, trust: bool = False):
    """Leave out copies among checkpoints that share a position: alias-named files (last,
    best, ...) beside a regular one, and files whose weights equal one already kept. ``rel``
    names a path in the notes. Returns (kept, skipped, names of different-weight ties that
    suggest mixed runs)."""
    groups: Dict[Any, list] = {}
    for item in keyed:
        groups.setdefault(item[0], []).append(item)
    kept, skipped, mixed = [], [], []
    for item in keyed:
        group = groups[item[0]]
        if len(group) == 1:
            kept.append(item)
            continue
        if item is not group[0]:
            continue  # the whole group is handled at its first member
        # Regular names first, so that 'last'/'best' are the ones left out.
        ordered = sorted(group, key=lambda t: _is_alias(t[1]["path"]))
        regular = [t for t in ordered if not _is_alias(t[1]["path"])]
        taken: list = []
        for t in ordered:
            r = t[1]
            if regular and _is_alias(r["path"]):
                skipped.append((r["path"], f"a '{split_suffix(r['path'].name)[0]}' copy at the position of "
                                           f"{rel(regular[0][1]['path'])}"))
                continue
            twin = next((k for k in taken if _same_weights(k[1]["path"], r["path"], trust)), None)
            if twin is not None:
                skipped.append((r["path"], f"same position and same weights as "
                                           f"{rel(twin[1]['path'])}"))
                continue
            taken.append(t)
        if len(taken) > 1:
            mixed.extend(rel(t[1]["path"]) for t in taken)
        kept.extend(taken)
    return kept, skipped, mixed


def _same_weights(a: Path, b: Path, trust: bool = False) -> bool:
    """Whether two checkpoints hold the same bytes, or the same tensors (unreadable: False)."""
    from infodyn.runs.load import checkpoint_sha256, load_checkpoint

    try:
        if checkpoint_sha256(a) == checkpoint_sha256(b):
            return True
        import torch

        sa, sb = load_checkpoint(a, trust=trust), load_checkpoint(b, trust=trust)
        return set(sa) == set(sb) and all(
            sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k])
            for k in sa)
    except Exception:
        return False

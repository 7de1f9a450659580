"""Training a critic for one bound and reporting the bound on held-out data.

The data are split once (seeded) into train / validation / test parts. The critic is trained
with Adam on minibatches of the train part; every ``eval_every`` steps the bound is evaluated
on the validation part and the best critic so far is kept; training stops after ``patience``
evaluations without improvement or at ``max_steps``. The reported value is the mean of the
bound over disjoint test batches (never seen in training or model selection), and its interval
is the normal interval from the spread of those batch values.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..base import RawEstimate, reject_unknown, resolve_device
from . import bounds
from .critics import Baseline, make_critic

METHODS = ("mine", "nwj", "infonce", "tuba", "js", "smile", "interpolated")

DEFAULTS: Dict[str, Any] = {
    "critic": "separable",      # separable | concat (= joint) | bilinear
    "hidden": (256, 256),       # hidden widths of each MLP
    "embed_dim": 32,            # output width of the separable / bilinear encoders
    "activation": "relu",
    "batch_size": 128,
    "max_steps": 3000,
    "lr": 5e-4,
    "weight_decay": 0.0,
    "eval_every": 100,          # steps between validation evaluations
    "patience": 5,              # validation evaluations without improvement before stopping
    "min_delta": 1e-3,          # nats; smaller gains do not count as improvement
    "val_frac": 0.1,
    "test_frac": 0.2,
    "standardize": True,        # z-score continuous columns with train statistics
    "clip": 5.0,                # SMILE's tau
    "alpha": 0.01,              # interpolated bound's mixture weight
    "ema_rate": 0.01,           # MINE's moving-average rate
    "baseline_hidden": (64,),   # TUBA / interpolated learned baseline log a(y)
    "amp": False,               # bfloat16 autocast for the critic on CUDA (ignored on CPU)
    "num_threads": "auto",      # CPU threads while training; see _threads
    "seed": 0,
    "device": "auto",
}

_USES_BASELINE = ("tuba", "interpolated")
_Z95 = 1.959963984540054


def _widths(v: Any, name: str, method: str) -> Tuple[int, ...]:
    """Layer widths from a sequence, a single int, or a string such as "256,256" (the CLI)."""
    if isinstance(v, str):
        v = [t for t in v.replace(" ", "").split(",") if t]
    elif isinstance(v, (int, np.integer)):
        v = [v]
    try:
        out = tuple(int(h) for h in v)
    except (TypeError, ValueError):
        raise ValueError(f"{method}: {name} must be a sequence of positive layer widths, got {v!r}") from None
    if any(h < 1 for h in out):
        raise ValueError(f"{method}: {name} must be a sequence of positive layer widths, got {v!r}")
    return out


def _resolve(method: str, params: Dict[str, Any]) -> Dict[str, Any]:
    reject_unknown(method, {k: params[k] for k in set(params) - set(DEFAULTS)}, DEFAULTS)
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v is not None or k == "clip"}}
    p["hidden"] = _widths(p["hidden"], "hidden", method)
    p["baseline_hidden"] = _widths(p["baseline_hidden"], "baseline_hidden", method)
    for key in ("batch_size", "max_steps", "eval_every", "patience", "embed_dim"):
        if int(p[key]) < 1:
            raise ValueError(f"{method}: {key} must be a positive integer, got {p[key]!r}")
        p[key] = int(p[key])
    if p["batch_size"] < 2:
        raise ValueError(f"{method}: batch_size must be at least 2, got {p['batch_size']}")
    if not (p["lr"] > 0 and math.isfinite(p["lr"])):
        raise ValueError(f"{method}: lr must be a positive finite number, got {p['lr']!r}")
    for key in ("val_frac", "test_frac"):
        if not 0 < p[key] < 1:
            raise ValueError(f"{method}: {key} must lie in (0, 1), got {p[key]!r}")
    if p["val_frac"] + p["test_frac"] >= 0.9:
        raise ValueError(f"{method}: val_frac + test_frac must leave at least 10% for training, got "
                         f"{p['val_frac']} + {p['test_frac']}")
    if p["clip"] is not None and not p["clip"] > 0:
        raise ValueError(f"{method}: clip must be positive or None, got {p['clip']!r}")
    if not 0 < p["ema_rate"] <= 1:
        raise ValueError(f"{method}: ema_rate must lie in (0, 1], got {p['ema_rate']!r}")
    p["seed"] = int(p["seed"] or 0)
    return p


def _threads(p: Dict[str, Any], dev: torch.device) -> int:
    """CPU threads to train with. "auto": 1 for the separable and bilinear critics, whose per-step
    matrices (B x hidden) are too small to gain from intra-op threads; on a busy machine extra
    threads spin-wait and made a default call 30-70x slower (measured on a shared 2-core box).
    The concat critic (B^2 x hidden per step) keeps torch's current setting."""
    n = p["num_threads"]
    if dev.type != "cpu":
        return torch.get_num_threads()
    if n == "auto":
        return 1 if p["critic"] in ("separable", "bilinear") else torch.get_num_threads()
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"num_threads must be a positive integer or 'auto', got {n!r}")
    return int(n)


def _one_hot(codes: np.ndarray) -> np.ndarray:
    k = int(codes.max()) + 1
    out = np.zeros((codes.shape[0], k))
    out[np.arange(codes.shape[0]), codes] = 1.0
    return out


def _split(n: int, p: Dict[str, Any], method: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_test = max(2, int(round(p["test_frac"] * n)))
    n_val = max(2, int(round(p["val_frac"] * n)))
    n_train = n - n_test - n_val
    if n_train < 2:
        raise ValueError(f"{method}: {n} samples are too few to split into train/validation/test "
                         f"({n_train}/{n_val}/{n_test})")
    perm = np.random.default_rng(p["seed"]).permutation(n)
    return perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]


def _standardize(a: np.ndarray, train: np.ndarray) -> np.ndarray:
    mu = a[train].mean(0)
    sd = a[train].std(0)
    sd[sd == 0] = 1.0
    return (a - mu) / sd


class Objective:
    """The training objective (``objective``, may keep state: MINE's moving average) and the
    reported value (``value``) of one method, on a batch's (B, B) scores; ``p`` as in DEFAULTS."""

    def __init__(self, method: str, p: Dict[str, Any]):
        self.method, self.p = method, p
        self.log_ema: Optional[torch.Tensor] = None

    def objective(self, s: torch.Tensor, log_b: Optional[torch.Tensor]) -> torch.Tensor:
        m = self.method
        if m == "mine":
            obj, self.log_ema = bounds.mine_objective(s, self.log_ema, self.p["ema_rate"])
            return obj
        return self.value(s, log_b)

    def value(self, s: torch.Tensor, log_b: Optional[torch.Tensor]) -> torch.Tensor:
        m = self.method
        if m == "infonce":
            return bounds.infonce(s)
        if m == "nwj":
            return bounds.nwj(s)
        if m == "mine":
            return bounds.dv(s)
        if m == "tuba":
            return bounds.tuba(s, log_b)
        if m == "js":
            return bounds.js(s)
        if m == "smile":
            return bounds.smile(s, self.p["clip"])
        if m == "interpolated":
            return bounds.interpolated(s, log_b, self.p["alpha"])
        raise ValueError(f"unknown neural bound {m!r}; choose one of {', '.join(METHODS)}")


# MINE's DV value is a log-sum-exp, so a diverging critic does not overflow to inf/NaN the way
# NWJ's exp(f) does: it returns finite but absurd numbers (lr=10 gave -1.3e6 nats). A constant
# critic scores exactly 0 under DV, so a best validation value or a reported value below
# -_MINE_FLOOR nats means the critic did worse than not learning at all; a training-batch value
# beyond _MINE_CEIL nats in magnitude (e^1000 distinguishable states) means the scores exploded.
_MINE_FLOOR = 1.0
_MINE_CEIL = 1e3


def _diverged(method: str, step: int, p: Dict[str, Any], what: str = "non-finite loss") -> ValueError:
    hint = "" if method == "smile" else f", or method='smile' with clip={p['clip'] or 5.0} (clipping bounds the variance)"
    return ValueError(
        f"{method}: the critic diverged ({what} by step {step} with lr={p['lr']:g}); "
        f"try a smaller learning rate such as lr={p['lr'] / 10:g}{hint}"
    )


def _mine_check(step: int, p: Dict[str, Any], value: float, where: str, peak: float = 0.0) -> None:
    """Raise the divergence error when MINE's DV value is absurd (see _MINE_FLOOR, _MINE_CEIL)."""
    if peak > _MINE_CEIL:
        raise _diverged("mine", step, p, f"|DV| of a training batch reached {peak:.3g} nats")
    if value < -_MINE_FLOOR:
        raise _diverged("mine", step, p, f"{where} DV value {value:.4g} nats, below the 0 of a constant critic")


def estimate(x: np.ndarray, y: np.ndarray, method: str, **params: Any) -> RawEstimate:
    """Trains a critic for ``method`` and returns the held-out bound in nats.

    Args:
        x: float64 (n, dx).
        y: float64 (n, dy), or int64 (n,) class codes (one-hot encoded for the critic).
        method: one of :data:`METHODS`.
        **params: see :data:`DEFAULTS` (units: lr per step, fractions of n, clip in nats).

    Returns:
        RawEstimate(nats, ci=(low, high) 95% normal interval over test batches or None when there
        is a single test batch, params=every resolved parameter plus n_train/n_val/n_test,
        steps, best_step, test_batches, device).
    """
    if method not in METHODS:
        raise ValueError(f"unknown neural bound {method!r}; choose one of {', '.join(METHODS)}")
    p = _resolve(method, params)
    dev = resolve_device(p["device"])
    threads = _threads(p, dev)
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        raw = _estimate(x, y, method, p, dev)
    finally:
        if threads != before:
            torch.set_num_threads(before)
    raw.params["num_threads"] = threads
    return raw


def _estimate(x: np.ndarray, y: np.ndarray, method: str, p: Dict[str, Any], dev: torch.device) -> RawEstimate:
    """The body of :func:`estimate` with resolved parameters ``p`` on device ``dev``."""
    amp = bool(p["amp"]) and dev.type == "cuda"
    n = x.shape[0]
    train, val, test = _split(n, p, method)
    if y.ndim == 1:
        y = _one_hot(y)
    elif p["standardize"]:
        y = _standardize(y, train)
    if p["standardize"]:
        x = _standardize(x, train)
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    yt = torch.as_tensor(y, dtype=torch.float32, device=dev)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p["seed"])
        critic = make_critic(p["critic"], x.shape[1], y.shape[1], p["hidden"], p["embed_dim"], p["activation"])
        baseline = Baseline(y.shape[1], p["baseline_hidden"], p["activation"]) if method in _USES_BASELINE else None
    critic.to(dev)
    modules = torch.nn.ModuleList([critic] + ([baseline.to(dev)] if baseline is not None else []))
    opt = torch.optim.Adam(modules.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    bound = Objective(method, p)

    def scores_of(idx: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        xb, yb = xt[idx], yt[idx]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            s = critic(xb, yb)
            log_b = baseline(yb) if baseline is not None else None
        return s.float(), (log_b.float() if log_b is not None else None)

    def batches(idx: np.ndarray, b: int) -> List[torch.Tensor]:
        b = min(b, idx.shape[0])
        k = idx.shape[0] // b
        return [torch.as_tensor(idx[i * b:(i + 1) * b], device=dev) for i in range(k)]

    @torch.no_grad()
    def evaluate(idx_batches: List[torch.Tensor]) -> np.ndarray:
        modules.eval()
        vals = torch.stack([bound.value(*scores_of(ib)) for ib in idx_batches])
        modules.train()
        return vals.double().cpu().numpy()

    bsz = min(p["batch_size"], train.shape[0])
    val_batches = batches(val, p["batch_size"])
    test_batches = batches(test, p["batch_size"])
    rng = np.random.default_rng(p["seed"] + 1)
    per_epoch = train.shape[0] // bsz
    epoch_idx = None
    bad = torch.zeros((), dtype=torch.bool, device=dev)
    peak = torch.zeros((), dtype=torch.float32, device=dev)  # MINE: largest |loss| so far
    best_val, best_state, best_step, since_best = -math.inf, None, 0, 0
    step = 0
    while step < p["max_steps"]:
        if step % per_epoch == 0:
            epoch_idx = torch.as_tensor(rng.permutation(train)[: per_epoch * bsz], device=dev).view(per_epoch, bsz)
        s, log_b = scores_of(epoch_idx[step % per_epoch])
        loss = -bound.objective(s, log_b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bad |= ~torch.isfinite(loss.detach())
        if method == "mine":
            peak = torch.maximum(peak, loss.detach().abs())
        step += 1
        if step % p["eval_every"] == 0 or step == p["max_steps"]:
            if bool(bad):
                raise _diverged(method, step, p)
            if method == "mine":  # a value of 0 passes the floor test: only the peak is checked
                _mine_check(step, p, 0.0, "training", float(peak))
            v = float(evaluate(val_batches).mean())
            if not math.isfinite(v):
                raise _diverged(method, step, p)
            if v > best_val + p["min_delta"] or best_state is None:
                best_val, best_step, since_best = v, step, 0
                best_state = copy.deepcopy(modules.state_dict())
            else:
                since_best += 1
                if since_best >= p["patience"]:
                    break
    if method == "mine":
        _mine_check(step, p, best_val, "best validation")
    modules.load_state_dict(best_state)
    vals = evaluate(test_batches)
    if not np.all(np.isfinite(vals)):
        raise _diverged(method, step, p)
    est = float(vals.mean())
    if method == "mine":
        _mine_check(step, p, est, "held-out")
    ci = None
    if vals.size > 1:
        half = _Z95 * float(vals.std(ddof=1)) / math.sqrt(vals.size)
        ci = (est - half, est + half)
        if method == "infonce":  # the bound itself cannot exceed log(eval batch); neither may its interval
            cap = math.log(test_batches[0].numel())
            ci = (min(ci[0], cap), min(ci[1], cap))
    used = dict(p)
    used.update(device=str(dev), amp=amp, n_train=int(train.shape[0]), n_val=int(val.shape[0]),
                n_test=int(test.shape[0]), steps=step, best_step=best_step, test_batches=int(vals.size),
                eval_batch_size=int(test_batches[0].numel()), val_nats=best_val)
    return RawEstimate(est, ci, used)

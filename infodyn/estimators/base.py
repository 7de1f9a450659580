"""The mutual-information estimator interface: result type, registry, input checks, device choice.

This module imports nothing else of infodyn, so every estimator family (and every test) can
depend on it without cycles.

An estimator is a plain function registered by name::

    @register("ksg", symmetric=True, min_samples=lambda p: p.get("k", 3) + 1)
    def ksg(x, y, *, k=3, device="auto", seed=0, **params) -> float | RawEstimate: ...

It receives ``x`` and ``y`` already checked and converted to float64 numpy arrays of shape
(n, dx) and (n, dy), or (n,) integer labels for ``y`` when ``y`` is discrete. It returns the
estimate in nats, either as a float or as a :class:`RawEstimate` carrying its own confidence
interval and any parameters it resolved (the bin width it chose, say). :func:`estimate_mi`
adds the timing, the bootstrap interval, units and bookkeeping.
"""
from __future__ import annotations

import difflib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import numpy as np

LN2 = math.log(2.0)


@dataclass(frozen=True)
class MIEstimate:
    """One mutual-information estimate.

    Attributes:
        nats: the estimate in nats.
        ci: a (low, high) confidence interval in nats, or None when the method gives none.
        method: the registered estimator name.
        params: every parameter that determined the value (including resolved defaults).
        n: number of samples used.
        seconds: wall-clock time taken.
    """

    nats: float
    ci: Optional[Tuple[float, float]]
    method: str
    params: Dict[str, Any]
    n: int
    seconds: float

    @property
    def bits(self) -> float:
        return self.nats / LN2

    @property
    def ci_bits(self) -> Optional[Tuple[float, float]]:
        return None if self.ci is None else (self.ci[0] / LN2, self.ci[1] / LN2)

    def __float__(self) -> float:
        return float(self.nats)

    def __repr__(self) -> str:
        ci = "" if self.ci is None else f", 95% CI [{self.ci[0]:.4f}, {self.ci[1]:.4f}]"
        return f"MIEstimate({self.method}: {self.nats:.4f} nats = {self.bits:.4f} bits{ci}, n={self.n})"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "method": self.method,
            "nats": self.nats,
            "bits": self.bits,
            "ci_low": None if self.ci is None else self.ci[0],
            "ci_high": None if self.ci is None else self.ci[1],
            "n": self.n,
            "seconds": self.seconds,
            "params": dict(self.params),
        }


@dataclass
class RawEstimate:
    """What an estimator function may return instead of a bare float (all values in nats)."""

    nats: float
    ci: Optional[Tuple[float, float]] = None
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    fn: Callable[..., Any]
    symmetric: bool
    min_samples: Callable[[Dict[str, Any]], int]
    discrete_y: bool  # accepts integer labels for y (passed as a 1-D int array)
    description: str
    resampling: str  # how estimate_mi(ci=...) resamples rows: "subsample" or "bootstrap"


_REGISTRY: Dict[str, EstimatorSpec] = {}


def register(
    name: str,
    *,
    symmetric: bool = True,
    min_samples: Callable[[Dict[str, Any]], int] | int = 2,
    discrete_y: bool = True,
    description: str = "",
    resampling: str = "subsample",
):
    """Decorator that registers an estimator function under ``name``.

    ``resampling`` picks the interval of ``estimate_mi(ci=...)``: ``"bootstrap"`` resamples rows
    with replacement, which suits plug-in estimators (binning, Gaussian); ``"subsample"`` (the
    default) draws half the rows without replacement, because duplicated rows sit at distance zero
    and bias distance-based estimators (k-NN, kernels) upwards.
    """
    if resampling not in ("subsample", "bootstrap"):
        raise ValueError(f"resampling must be 'subsample' or 'bootstrap', got {resampling!r}")

    def deco(fn):
        ms = min_samples if callable(min_samples) else (lambda _p, m=min_samples: m)
        doc = description or (fn.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = EstimatorSpec(name, fn, symmetric, ms, discrete_y, doc, resampling)
        return fn

    return deco


def registry() -> Dict[str, EstimatorSpec]:
    return _REGISTRY


# ----------------------------------------------------------------------------------------------
# parameter names

#: names every estimator and information-plane rule accepts, used or not: ``estimate_mi(ci=...)``
#: passes ``seed`` on to seed its resampling, and ``device`` is the library-wide device choice
COMMON_PARAMS = ("seed", "device")


def accepted_params(fn: Callable[..., Any]) -> Tuple[str, ...]:
    """The parameter names an estimator or plane function takes, sorted.

    ``fn.accepted_params`` when the function sets it (functions that take ``**params`` and check
    them elsewhere, like the neural bounds), else its keyword-only parameters (minus a plane's ``x``).
    """
    explicit = getattr(fn, "accepted_params", None)
    if explicit is not None:
        return tuple(sorted(explicit))
    sig = inspect.signature(fn)
    return tuple(sorted(p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "x"))


def reject_unknown(method: str, unknown: Dict[str, Any], accepted: Iterable[str], *, what: str = "estimator") -> None:
    """Raises ValueError when ``unknown`` (the keyword arguments a method did not take) is not empty.

    The message names the method, each unknown name with its closest accepted names (by
    :func:`difflib.get_close_matches`), and every accepted name, e.g.
    ``kde got unknown parameter 'noise_vr' (did you mean 'noise_var'?); kde accepts: ...``.
    A misspelt setting is therefore never silently ignored.
    """
    if not unknown:
        return
    names = sorted(set(accepted))
    parts = []
    for bad in sorted(unknown):
        close = difflib.get_close_matches(str(bad), names, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"{bad!r}{hint}")
    label = "parameter" if len(parts) == 1 else "parameters"
    raise ValueError(
        f"{what} {method!r} got unknown {label} {', '.join(parts)}; {method} accepts: {', '.join(names)}"
    )


def rms_scale(a: np.ndarray) -> float:
    """The RMS spread sqrt(tr Cov(a) / d) of samples ``a`` (n, d): the square root of the mean
    per-dimension (population) variance, in a's units; 1.0 for constant data.

    The scale-invariant (``scale="relative"``) settings of the kde and binning estimators divide
    a variable by it: a statistic of degree 1 in the data, so (c a) / rms_scale(c a) = a / rms_scale(a).
    """
    m = float(np.max(np.abs(a), initial=0.0))
    if not (m > 0 and math.isfinite(m)):
        return 1.0
    s = m * math.sqrt(float(np.mean(np.var(a / m, axis=0))))  # divided by m first: no overflow at 1e300
    return s if s > 0 and math.isfinite(s) else 1.0


#: the scale settings of the noise-based estimators (kde, the gaussian plane)
NOISE_SCALES = ("absolute", "relative", "relative_total")


def noise_unit(a: np.ndarray, scale: str) -> float:
    """The length, in a's units, whose square is the unit of a noise-based estimator's ``noise_var``.

    ``"absolute"``: 1 (noise_var in a's units squared). ``"relative"``: the RMS spread
    sqrt(tr Cov(a) / d) (noise_var a fraction of the mean per-dimension variance).
    ``"relative_total"``: sqrt(tr Cov(a)), the root of the total variance, i.e. of half the mean
    squared distance between two samples, so that one noise_var means the same for layers of any
    width. Dividing a by this length and reading noise_var as it is gives the estimate; the length
    itself (not its square) is returned so that features near 1e300 do not overflow. Raises
    ValueError naming the choices for any other ``scale``.
    """
    check_noise_scale(scale)
    if scale == "absolute":
        return 1.0
    return rms_scale(a) * (math.sqrt(a.shape[1]) if scale == "relative_total" else 1.0)


def check_noise_scale(scale: Any) -> str:
    """``scale`` when it is one of :data:`NOISE_SCALES`; else ValueError naming the choices."""
    if scale not in NOISE_SCALES:
        raise ValueError(f"scale must be one of {NOISE_SCALES} (relative: noise_var as a fraction of the features' "
                         f"mean per-dimension variance; relative_total: of their total variance), got {scale!r}")
    return scale


def check_noise_var(noise_var: Any) -> float:
    """``noise_var`` as a float when it is a finite number > 0 (a noise variance); else ValueError."""
    try:
        v = float(noise_var)
    except (TypeError, ValueError):
        v = float("nan")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"noise_var must be a positive number, got {noise_var!r}")
    return v


def noise_rescale(a: np.ndarray, scale: str, noise_var: float, params: Dict[str, Any], suffix: str = "") -> np.ndarray:
    """``a`` (n, d) in the units a noise-based estimator works in (``noise_var`` then applies as it
    is): ``a / noise_unit(a, scale)``, ``a`` itself for ``"absolute"``. Records the resolved unit in
    ``params``: ``feature_scale`` + suffix (the length) and ``noise_var_abs`` + suffix (noise_var
    in a's units squared)."""
    if scale == "absolute":
        return a
    u = noise_unit(a, scale)
    params["feature_scale" + suffix] = u
    params["noise_var_abs" + suffix] = float(noise_var) * u * u
    return a / u


def identify_rows(y: np.ndarray) -> np.ndarray:
    """(n,) int64 codes of the distinct rows of a 2-D array ``y`` (n, k) (one-hot labels -> class codes)."""
    _, codes = np.unique(y, axis=0, return_inverse=True)
    return codes.reshape(-1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# input checks


def _to_numpy(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype} with shape {arr.shape}")
    return arr


def is_discrete(a: Any) -> bool:
    """True for 1-D (or (n, 1)) integer or boolean arrays: treated as class labels."""
    arr = _to_numpy(a, "array")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr.ndim == 1 and (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_)


def as_2d(a: Any, name: str):
    """``a`` (a numpy array or a tensor) as (n, d): 1-D input is n samples of one feature.
    Raises ValueError naming ``name`` and the shape for >2-D or empty input."""
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, d), got shape {tuple(a.shape)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(a.shape)}")
    return a


def as_samples(a: Any, name: str = "x") -> np.ndarray:
    """Checks and converts ``a`` to a float64 array of shape (n, d).

    Raises ValueError naming ``name`` and the shape for non-numeric, empty, >2-D or non-finite input.
    """
    arr = as_2d(_to_numpy(a, name), name).astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} of shape {arr.shape} contains NaN or inf in {bad} row(s)")
    return arr


def as_labels(a: Any, name: str = "y") -> np.ndarray:
    """Checks and converts class labels to a 1-D int64 array of codes 0..C-1."""
    arr = _to_numpy(a, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} labels must be 1-D (n,), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} of shape {arr.shape} contains NaN or inf")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)


def check_pair(x: Any, y: Any, *, discrete_y_ok: bool = True) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Checks an (x, y) pair. Returns (x as (n, dx) float64, y, y_is_discrete)."""
    y_disc = discrete_y_ok and is_discrete(y)
    xa = as_samples(x, "x")
    ya = as_labels(y, "y") if y_disc else as_samples(y, "y")
    if xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"x and y must have the same number of rows: x has shape {xa.shape}, y has shape {ya.shape}"
        )
    return xa, ya, y_disc


def resolve_device(device: Any = "auto"):
    """'auto' -> CUDA when present, else CPU. Returns a torch.device."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available on this machine")
    return dev


# ----------------------------------------------------------------------------------------------
# the entry point


def _call(spec: EstimatorSpec, x, y, params) -> RawEstimate:
    out = spec.fn(x, y, **params)
    if isinstance(out, RawEstimate):
        raw = out
    else:
        raw = RawEstimate(float(out))
    if not math.isfinite(raw.nats):
        raise ValueError(
            f"estimator {spec.name!r} produced a non-finite value ({raw.nats}) on x {x.shape}, y {y.shape}"
        )
    return raw


def resampled_ci(
    spec: EstimatorSpec, x: np.ndarray, y: np.ndarray, params: Dict[str, Any], estimate: float,
    level: float, n_boot: int, seed: int,
) -> Tuple[float, float]:
    """A seeded interval for the sampling variability of ``estimate`` (nats).

    ``bootstrap``: percentile interval over rows resampled with replacement.
    ``subsample``: m = n // 2 rows without replacement; the spread of the replicates around their
    mean, scaled by sqrt(m / n) (Politis and Romano's rate-sqrt(n) subsampling), centred on the
    full-sample estimate. It describes variance only: an estimator's bias (k-NN and kernel
    estimators are biased at finite n) is not inside it.
    """
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    m = n // 2 if spec.resampling == "subsample" else n
    if m < spec.min_samples(params):
        raise ValueError(f"too few samples ({n}) for a {spec.resampling} interval with {spec.name}")
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.choice(n, size=m, replace=False) if spec.resampling == "subsample" else rng.integers(0, n, size=n)
        vals[b] = _call(spec, x[idx], y[idx], params).nats
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    if spec.resampling == "bootstrap":
        lo, hi = np.quantile(vals, [lo_q, hi_q])
        return float(lo), float(hi)
    spread = np.quantile(vals - vals.mean(), [lo_q, hi_q]) * np.sqrt(m / n)
    return float(estimate + spread[0]), float(estimate + spread[1])


def estimate_mi(
    x: Any,
    y: Any,
    method: str = "ksg",
    *,
    ci: Optional[float] = None,
    n_boot: int = 100,
    **params: Any,
) -> MIEstimate:
    """Estimates the mutual information I(X;Y) in nats.

    Args:
        x: samples of X, shape (n,) or (n, dx); numpy array, list or torch tensor.
        y: samples of Y, shape (n,) or (n, dy), or (n,) integer class labels.
        method: a name from :func:`infodyn.estimators.available`.
        ci: confidence level (e.g. 0.95) for a seeded resampling interval over rows (see
            :func:`resampled_ci`: bootstrap or subsampling, per method); None for none. Methods
            that give their own interval (the neural bounds) report that instead.
        n_boot: resampling replicates.
        **params: method parameters. Shared names: ``k`` (neighbours), ``n_bins``,
            ``bin_width``, ``noise_var``, ``alpha``, ``scale``; every method accepts ``seed`` and
            ``device`` ("auto" = CUDA when present). A name the method does not take raises
            ValueError naming the closest valid ones (``infodyn.estimators.parameters(method)``).

    Returns:
        MIEstimate with ``nats``, ``bits``, ``ci``, ``method``, ``params``, ``n``, ``seconds``.
    """
    from . import get  # the registry filled with every family

    spec = get(method)
    xa, ya, _ = check_pair(x, y, discrete_y_ok=spec.discrete_y)
    need = spec.min_samples(params)
    if xa.shape[0] < need:
        raise ValueError(
            f"{method} needs at least {need} samples with parameters {params}; x has shape {xa.shape}"
        )
    t0 = time.perf_counter()
    raw = _call(spec, xa, ya, params)
    interval = raw.ci
    if ci is not None and interval is None:
        if not 0 < ci < 1:
            raise ValueError(f"ci must be a confidence level in (0, 1), got {ci}")
        interval = resampled_ci(spec, xa, ya, params, raw.nats, ci, n_boot, int(params.get("seed", 0) or 0))
    seconds = time.perf_counter() - t0
    used = {**params, **raw.params}
    if ci is not None:
        used.setdefault("ci_level", ci)
    return MIEstimate(float(raw.nats), interval, method, used, int(xa.shape[0]), seconds)


# ----------------------------------------------------------------------------------------------
# information plane


@dataclass(frozen=True)
class InformationPlane:
    """I(X;T) and I(T;Y) for one layer output T (both :class:`MIEstimate`, in nats)."""

    i_xt: MIEstimate
    i_ty: MIEstimate

    def __iter__(self):
        return iter((self.i_xt, self.i_ty))


_PLANES: Dict[str, Callable[..., Tuple[Any, Any]]] = {}


def register_plane(name: str):
    """Registers ``fn(t, y, *, x=None, **params) -> (RawEstimate|float, RawEstimate|float)`` in nats.

    ``t`` arrives as float64 (n, d), ``y`` as int labels (n,) or float (n, dy), ``x`` as float64
    (n, dx) or None.
    """

    def deco(fn):
        _PLANES[name] = fn
        return fn

    return deco


def planes() -> Dict[str, Callable[..., Tuple[Any, Any]]]:
    return _PLANES

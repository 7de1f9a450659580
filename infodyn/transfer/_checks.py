"""Input checks and conversions shared by the transfer metrics.

Features stay on their device when they are torch tensors (no round trip through numpy);
labels, which are small, are converted to int64 codes 0..C-1 on the host. Every failure is a
ValueError that names the argument and its shape.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from infodyn.estimators.base import as_2d, resolve_device  # noqa: F401  (resolve_device re-exported for the metrics)


def _shape(a: Any) -> Tuple[int, ...]:
    return tuple(getattr(a, "shape", np.shape(a)))


def as_features(a: Any, name: str, device: torch.device, dtype=torch.float64) -> torch.Tensor:
    """Checks ``a`` and returns it as a (n, d) tensor of ``dtype`` on ``device``.

    1-D input is read as n samples of one feature. Raises ValueError naming ``name`` and the
    shape for non-numeric, empty, >2-D or non-finite input.
    """
    if isinstance(a, torch.Tensor):
        t = a.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be real-valued, got dtype {t.dtype} with shape {tuple(t.shape)}")
    else:
        try:
            arr = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"{name} could not be read as an array: {exc}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"{name} must be real-valued, got dtype {arr.dtype} with shape {arr.shape}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    t = as_2d(t, name).to(device=device, dtype=dtype)
    # one pass: a row holding NaN or inf has a non-finite sum; an overflowing sum of finite
    # values is told apart by the exact check that follows
    if not bool(torch.isfinite(t.sum(dim=1)).all()):
        bad = int((~torch.isfinite(t)).any(dim=1).sum())
        if bad:
            raise ValueError(f"{name} of shape {tuple(t.shape)} contains NaN or inf in {bad} row(s)")
    return t


def as_label_array(a: Any, name: str) -> np.ndarray:
    """Checks 1-D labels (or (n, 1)) and returns them as a numpy array (values unchanged)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise ValueError(f"{name} could not be read as an array: {exc}") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} labels must be 1-D (n,), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if arr.dtype == object or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} labels must be numbers or strings, got dtype {arr.dtype} with shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} of shape {arr.shape} contains NaN or inf in {bad} entr(y/ies)")
    return arr


def check_rows(x_shape: Tuple[int, ...], y_shape: Tuple[int, ...], x_name: str, y_name: str) -> None:
    if x_shape[0] != y_shape[0]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same number of rows: {x_name} has shape "
            f"{tuple(x_shape)}, {y_name} has shape {tuple(y_shape)}"
        )


def encode_labels(
    y: Any, name: str, *, n_rows: Optional[int] = None, x_name: str = "features",
    x_shape: Optional[Tuple[int, ...]] = None, min_classes: int = 2,
) -> Tuple[np.ndarray, np.ndarray]:
    """Labels -> (codes int64 (n,) in 0..C-1, classes (C,) sorted original values).

    Raises ValueError when the rows differ from the features', when there are fewer than
    ``min_classes`` classes, or when there are no more samples than classes (every class a
    singleton: no within-class statistics and no validation split can be formed).
    """
    arr = as_label_array(y, name)
    if n_rows is not None and arr.shape[0] != n_rows:
        check_rows(x_shape if x_shape is not None else (n_rows,), arr.shape, x_name, name)
    classes, codes = np.unique(arr, return_inverse=True)
    n, c = arr.shape[0], classes.shape[0]
    if c < min_classes:
        raise ValueError(
            f"{name} has only {c} class(es) ({classes[:5].tolist()}) among its {n} samples "
            f"(shape {arr.shape}); at least {min_classes} classes are needed"
        )
    if n <= c:
        raise ValueError(
            f"{name} has {n} samples (shape {arr.shape}) in {c} classes: fewer samples than "
            f"classes, or one each; need more samples than classes"
        )
    return codes.astype(np.int64).reshape(-1), classes


def as_probabilities(p: Any, name: str, device: torch.device, atol: float = 1e-4) -> torch.Tensor:
    """(n, Z) rows of class probabilities (non-negative, summing to 1 within ``atol``), float64."""
    t = as_features(p, name, device)
    if t.shape[1] < 2:
        raise ValueError(f"{name} must hold probabilities over at least 2 source classes, got shape {tuple(t.shape)}")
    if bool((t < 0).any()):
        raise ValueError(f"{name} of shape {tuple(t.shape)} has negative entries: pass probabilities, not logits")
    err = (t.sum(1) - 1).abs()
    if bool((err > atol).any()):
        i = int(err.argmax())
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} has rows that do not sum to 1 (row {i} sums to "
            f"{float(t[i].sum()):.6g}): pass softmax probabilities, not logits"
        )
    return t / t.sum(1, keepdim=True)


def check_train_test(x_train: Any, y_train: Any, x_test: Any, y_test: Any, device: torch.device,
                            dtype=torch.float64) -> Tuple[torch.Tensor, np.ndarray, np.ndarray,
                                                          torch.Tensor, np.ndarray]:
    """Checks a (train, test) pair of feature/label sets as the probes take them.

    Returns (x_train (n, d) tensor, y_train codes (n,), classes (C,), x_test (m, d) tensor,
    y_test as given (m,)). Raises ValueError naming the argument and shapes on any mismatch.
    """
    xtr = as_features(x_train, "x_train", device, dtype)
    xte = as_features(x_test, "x_test", device, dtype)
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"x_train and x_test must have the same number of features: shapes "
            f"{tuple(xtr.shape)} and {tuple(xte.shape)}"
        )
    codes, classes = encode_labels(y_train, "y_train", n_rows=xtr.shape[0], x_name="x_train",
                                   x_shape=tuple(xtr.shape))
    yte = as_label_array(y_test, "y_test")
    check_rows(tuple(xte.shape), yte.shape, "x_test", "y_test")
    return xtr, codes, classes, xte, yte

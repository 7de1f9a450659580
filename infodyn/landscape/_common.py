"""Shared plumbing of the landscape measures: batch sources, devices, parameters, checked losses.

The loss over the data is the batch-size-weighted mean of ``loss_fn(model, batch)`` over the
batches, so with a mean-reduced ``loss_fn`` it is the mean loss over every sample. The size of a
batch is the number of rows of its first tensor (a tensor, or the first tensor found in a
tuple/list/dict); a batch without a tensor counts as 1.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn

BatchSource = Callable[[], Iterator[Any]]


def as_batch_source(batches: Any) -> BatchSource:
    """A callable returning a fresh iterator over the batches.

    Accepts a list/tuple of batches, any re-iterable object (a ``DataLoader``, say) or a callable
    returning a new iterator each time. A one-shot iterator or generator is refused (the
    measures pass over the data several times), as is a source with no batches.
    """
    if callable(batches) and not isinstance(batches, (nn.Module, torch.Tensor)):
        def source():
            it = batches()
            if it is None:
                raise ValueError("the batches callable returned None, not an iterator over batches")
            return iter(it)
    elif isinstance(batches, Iterator):
        raise ValueError(f"batches is a one-shot {type(batches).__name__}: the measures pass over the data several "
                         "times; pass a list of batches or a callable returning a fresh iterator")
    elif isinstance(batches, torch.Tensor):
        raise ValueError(f"batches is a single tensor of shape {tuple(batches.shape)}; wrap it in a list: [batch]")
    elif isinstance(batches, Iterable):
        def source():
            return iter(batches)
    else:
        raise ValueError(f"batches must be a list of batches, a re-iterable (DataLoader) or a callable returning "
                         f"an iterator, got {type(batches).__name__}")
    return source


def batch_size(batch: Any) -> int:
    """Rows of the first tensor in ``batch`` (1 when there is none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for b in batch:
            if isinstance(b, torch.Tensor) or hasattr(b, "shape"):
                shape = getattr(b, "shape", ())
                return int(shape[0]) if len(shape) else 1
    return 1


def to_device(batch: Any, device: torch.device) -> Any:
    """Moves every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(b, device) for b in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def model_device(model: nn.Module, device: Any = None) -> torch.device:
    """``device=None``: where the model's parameters are; otherwise the model is moved there
    (``"auto"``: CUDA when present, else CPU)."""
    if device is not None:
        from infodyn.estimators.base import resolve_device

        dev = resolve_device(device)
        model.to(dev)
        return dev
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def trainable(model: nn.Module) -> Tuple[List[str], List[torch.Tensor]]:
    """Names and tensors of the parameters that require gradients; ValueError when there are none."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{type(model).__name__} has no parameter that requires gradients")
    return [n for n, _ in named], [p for _, p in named]


_NOISY = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)


def warn_if_training(model: nn.Module, what: str) -> None:
    """Warns when the model is in train mode with dropout or batch norm: the loss then changes
    from one evaluation to the next (dropout) or with the batch (batch norm), and batch norm's
    running statistics are updated by every pass."""
    if not model.training:
        return
    noisy = [n or type(m).__name__ for n, m in model.named_modules() if isinstance(m, _NOISY)]
    if noisy:
        shown = ", ".join(noisy[:4]) + (", ..." if len(noisy) > 4 else "")
        warnings.warn(f"{what}: the model is in train mode with dropout/batch-norm modules ({shown}); the loss is "
                      "then random or batch-dependent and the estimate noisy. Call model.eval() first.",
                      RuntimeWarning, stacklevel=3)


def checked_loss(model: nn.Module, loss_fn: Callable, batch: Any, index: int, need_grad: bool = True) -> torch.Tensor:
    """``loss_fn(model, batch)`` checked: a finite scalar tensor that (when ``need_grad``)
    depends on the parameters."""
    loss = loss_fn(model, batch)
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"loss_fn must return a scalar torch tensor, got {type(loss).__name__} on batch {index}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar, got a tensor of shape {tuple(loss.shape)} on batch {index}")
    loss = loss.reshape(())
    if need_grad and not loss.requires_grad:
        raise ValueError(f"the loss on batch {index} does not depend on the model's parameters (it has no gradient); "
                         "loss_fn must compute the loss from model(...) outputs, outside torch.no_grad()")
    if not torch.isfinite(loss.detach()):
        raise ValueError(f"loss_fn gave a non-finite loss ({float(loss.detach())}) on batch {index}")
    return loss


def grads(loss: torch.Tensor, params: List[torch.Tensor], create_graph: bool, index: int) -> List[torch.Tensor]:
    """Gradient of ``loss`` w.r.t. ``params`` (zeros for unused ones); ValueError when none is used."""
    got = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    if all(g is None for g in got):
        raise ValueError(f"the loss on batch {index} does not depend on any trainable parameter of the model")
    return [torch.zeros_like(p) if g is None else g for g, p in zip(got, params)]


def flat(tensors: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vec: torch.Tensor, like: List[torch.Tensor]) -> List[torch.Tensor]:
    out, i = [], 0
    for p in like:
        out.append(vec[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


def no_batches(what: str) -> ValueError:
    return ValueError(f"{what}: batches yielded no batch")


def seeded_normal(n: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal vector drawn on the CPU from ``seed`` (same numbers on every device)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def seeded_rademacher(n: int, seed: int, device: torch.device, dtype: torch.dtype,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    g = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, (n,), generator=g) * 2 - 1).to(device=device, dtype=dtype)


#: Below this many trainable parameters, "auto" runs CPU work on one thread.
SMALL_MODEL = 200_000


class cpu_threads:
    """Context: torch's CPU thread count for the measures, restored on exit.

    ``"auto"``: one thread on CPU for models under :data:`SMALL_MODEL` parameters, whose per-op
    matrices are too small to gain from intra-op threads; on a busy machine the extra threads
    spin-wait, and a sharpness call on a small MLP ran 20x slower with 2 threads than with 1
    (measured on a shared 2-core box). Otherwise (or on CUDA) torch's setting is kept.
    An integer sets the count.
    """

    def __init__(self, model: nn.Module, num_threads: Any = "auto"):
        if num_threads != "auto" and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                      or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or 'auto', got {num_threads!r}")
        self.want = num_threads
        self.model = model

    def __enter__(self):
        self.before = torch.get_num_threads()
        n = self.want
        if n == "auto":
            params = list(self.model.parameters()) if isinstance(self.model, nn.Module) else []
            on_cpu = all(p.device.type == "cpu" for p in params)
            small = sum(p.numel() for p in params) < SMALL_MODEL
            n = 1 if (on_cpu and small) else self.before
        self.n = n
        if n != self.before:
            torch.set_num_threads(n)
        return self

    def __exit__(self, *exc):
        if self.n != self.before:
            torch.set_num_threads(self.before)
        return False

"""Critics f(x, y) that score every pair of a batch: ``critic(x, y)[i, j] = f(x_i, y_j)``.

* ``separable``: two encoders and an inner product, f = g(x) . h(y). B forward passes per
  side, cheap; the default.
* ``concat`` (alias ``joint``): one MLP on the concatenation [x_i, y_j] of every pair, B^2
  forward passes, the most expressive. The first layer is split, W [x; y] = W_x x + W_y y, so
  the (B, B, dx + dy) concatenation is never built.
* ``bilinear``: f = g(x)^T W h(y) with encoders g, h (identity when ``hidden=()``).

Also a ``Baseline``: a small MLP for log a(y), used by the TUBA and interpolated bounds.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch
from torch import nn

_ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
}

CRITICS = ("separable", "concat", "joint", "bilinear")


def activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}") from None


def mlp(d_in: int, hidden: Sequence[int], d_out: int, act: str) -> nn.Sequential:
    """Linear layers d_in -> hidden... -> d_out with ``act`` between them (none after the last)."""
    layers = []
    d = d_in
    for h in hidden:
        layers += [nn.Linear(d, int(h)), activation(act)]
        d = int(h)
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


class SeparableCritic(nn.Module):
    """f(x, y) = g(x) . h(y); g, h MLPs (dx or dy) -> hidden -> embed_dim. Scores (B, B)."""

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (256, 256), embed_dim: int = 32,
                 act: str = "relu"):
        super().__init__()
        self.g = mlp(dx, hidden, embed_dim, act)
        self.h = mlp(dy, hidden, embed_dim, act)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.h(y).t()


class BilinearCritic(nn.Module):
    """f(x, y) = g(x)^T W h(y); with ``hidden=()`` g and h are the identity and W is (dx, dy)."""

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (256, 256), embed_dim: int = 32,
                 act: str = "relu"):
        super().__init__()
        if len(hidden) == 0:
            self.g, self.h = nn.Identity(), nn.Identity()
            ex, ey = dx, dy
        else:
            self.g = mlp(dx, hidden, embed_dim, act)
            self.h = mlp(dy, hidden, embed_dim, act)
            ex = ey = embed_dim
        self.w = nn.Parameter(torch.randn(ex, ey) / (ex * ey) ** 0.25)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(x) @ self.w @ self.h(y).t()


class ConcatCritic(nn.Module):
    """f(x, y) = MLP([x; y]) evaluated on all B^2 pairs; scores (B, B)."""

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (256, 256), act: str = "relu"):
        super().__init__()
        if len(hidden) == 0:
            raise ValueError("the concat critic needs at least one hidden layer, got hidden=()")
        h0 = int(hidden[0])
        self.wx = nn.Linear(dx, h0)
        self.wy = nn.Linear(dy, h0, bias=False)
        self.rest = nn.Sequential(activation(act), *mlp(h0, hidden[1:], 1, act))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        first = self.wx(x)[:, None, :] + self.wy(y)[None, :, :]  # (B, B, h0)
        return self.rest(first).squeeze(-1)


class Baseline(nn.Module):
    """log a(y): an MLP dy -> hidden -> 1, output (B,)."""

    def __init__(self, dy: int, hidden: Sequence[int] = (64,), act: str = "relu"):
        super().__init__()
        self.net = mlp(dy, hidden, 1, act)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y).squeeze(-1)


def make_critic(kind: str, dx: int, dy: int, hidden: Sequence[int], embed_dim: int, act: str) -> nn.Module:
    """Builds a critic by name (see :data:`CRITICS`)."""
    if kind == "separable":
        return SeparableCritic(dx, dy, hidden, embed_dim, act)
    if kind in ("concat", "joint"):
        return ConcatCritic(dx, dy, hidden, act)
    if kind == "bilinear":
        return BilinearCritic(dx, dy, hidden, embed_dim, act)
    raise ValueError(f"unknown critic {kind!r}; choose one of {', '.join(CRITICS)}")

"""Small built-in models with named layers, usable from a run manifest.

::

    model: infodyn.models:mlp
    model_kwargs: {in_dim: 12, hidden: [10, 7, 5, 4, 3], num_classes: 2, activation: tanh}
    layers: [fc1, fc2, fc3, fc4, fc5, out]

Layer names (for ``layers:`` in a manifest and for hooks):

- :func:`mlp`: ``fc1`` ... ``fcK`` are the hidden layers' outputs *after* the activation (the
  representation T of the information plane), ``fcI.linear`` the same layer before it, ``out`` the
  logits.
- :func:`small_cnn`: ``conv1``, ``conv2`` (after ReLU, before pooling; feature maps of shape
  (n, width, ...) and (n, 2*width, ...)), ``fc1`` (hidden dense layer after ReLU), ``out``
  (logits).

:func:`ib12bit_net` is the 12-10-7-5-4-3-2 tanh network of Shwartz-Ziv & Tishby (2017), equal to
``mlp(12, (10, 7, 5, 4, 3), 2, "tanh")``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["mlp", "small_cnn", "ib12bit_net", "resnet18", "MLP", "SmallCNN", "ResNet"]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


class Dense(nn.Module):
    """A linear layer followed by an activation; hooks on the block see the activation's output."""

    def __init__(self, in_dim: int, out_dim: int, activation: str):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.act = _activation(activation)

    def forward(self, x):
        return self.act(self.linear(x))


class MLP(nn.Module):
    """Fully connected network; inputs of shape (n, *shape) are flattened to (n, in_dim)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], num_classes: int, activation: str):
        super().__init__()
        self.in_dim = in_dim
        width = in_dim
        for i, h in enumerate(hidden, start=1):
            setattr(self, f"fc{i}", Dense(width, h, activation))
            width = h
        self.n_hidden = len(hidden)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_dim:
            raise ValueError(f"mlp expects inputs with {self.in_dim} features per sample, got "
                             f"shape {tuple(x.shape)} after flattening")
        for i in range(1, self.n_hidden + 1):
            x = getattr(self, f"fc{i}")(x)
        return self.out(x)


def mlp(in_dim: int, hidden: Sequence[int] = (64, 32), num_classes: int = 10,
        activation: str = "tanh") -> MLP:
    """A multilayer perceptron with layers ``fc1``..``fcK`` (post-activation) and ``out`` (logits).

    Args:
        in_dim: input features (inputs of any shape (n, ...) are flattened).
        hidden: widths of the hidden layers.
        num_classes: output logits.
        activation: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"gelu"``.
    """
    _positive_int(in_dim, "in_dim")
    _positive_int(num_classes, "num_classes")
    hidden = [int(h) for h in ([hidden] if isinstance(hidden, int) else hidden)]
    for h in hidden:
        _positive_int(h, "each hidden width")
    _activation(activation)
    return MLP(in_dim, hidden, num_classes, activation)


def ib12bit_net(activation: str = "tanh") -> MLP:
    """The 12-10-7-5-4-3-2 network of Shwartz-Ziv & Tishby (2017): ``fc1``..``fc5``, ``out``."""
    return mlp(12, (10, 7, 5, 4, 3), 2, activation)


class ConvBlock(nn.Module):
    """Convolution (kernel 3, 'same' padding) and ReLU."""

    def __init__(self, c_in: int, c_out: int, dims: int):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.conv = conv(c_in, c_out, kernel_size=3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class SmallCNN(nn.Module):
    """conv1 -> pool -> conv2 -> global average pool -> fc1 -> out."""

    def __init__(self, in_channels: int, num_classes: int, width: int,
                 input_shape: Optional[Sequence[int]], hidden: int):
        super().__init__()
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        dims = 2 if self.input_shape is None else len(self.input_shape) - 1
        self.dims = dims
        self.in_channels = in_channels
        self.conv1 = ConvBlock(in_channels, width, dims)
        self.pool = (nn.MaxPool2d if dims == 2 else nn.MaxPool1d)(2, ceil_mode=True)
        self.conv2 = ConvBlock(width, 2 * width, dims)
        self.gap = (nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool1d)(1)
        self.fc1 = Dense(2 * width, hidden, "relu")
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x):
        if self.input_shape is not None:
            x = x.reshape(x.shape[0], *self.input_shape)
        elif x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"small_cnn expects inputs of shape (n, {self.in_channels}, ...) "
                             f"with {self.dims} spatial dims, got {tuple(x.shape)}; pass "
                             "input_shape to reshape flat inputs")
        x = self.pool(self.conv1(x))
        x = self.gap(self.conv2(x)).flatten(1)
        return self.out(self.fc1(x))


def small_cnn(in_channels: int = 1, num_classes: int = 10, width: int = 16,
              input_shape: Optional[Sequence[int]] = None, hidden: int = 32) -> SmallCNN:
    """A two-block CNN with layers ``conv1``, ``conv2``, ``fc1`` and ``out``.

    Args:
        in_channels: input channels C.
        num_classes: output logits.
        width: channels of ``conv1`` (``conv2`` has twice as many).
        input_shape: (C, H, W) for 2-d or (C, L) for 1-d convolutions; flat inputs (n, C*H*W)
            are reshaped to it (digits: ``[1, 8, 8]``; MNIST-1D: ``[1, 40]``). Default: 2-d,
            inputs already (n, C, H, W) (or (n, H, W) when C is 1).
        hidden: width of ``fc1``.
    """
    _positive_int(in_channels, "in_channels")
    _positive_int(num_classes, "num_classes")
    _positive_int(width, "width")
    _positive_int(hidden, "hidden")
    if input_shape is not None:
        input_shape = [int(s) for s in input_shape]
        if len(input_shape) not in (2, 3) or input_shape[0] != in_channels or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, L) or (C, H, W) with C = in_channels = "
                             f"{in_channels}, got {input_shape}")
    return SmallCNN(in_channels, num_classes, width, input_shape, hidden)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max pool): ``stem``, ``layer1``..``layer4``
    (feature maps (n, w, 32, 32) .. (n, 8w, 4, 4)), ``pool`` (the (n, 8w) penultimate features)
    and ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, width: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        chans = [width, 2 * width, 4 * width, 8 * width]
        c_in, layers = width, []
        for i, c in enumerate(chans):
            layers.append(nn.Sequential(BasicBlock(c_in, c, 1 if i == 0 else 2), BasicBlock(c, c, 1)))
            c_in = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.pool(x))


def resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> ResNet:
    """ResNet-18 (11.2 M parameters at ``width=64``) for (n, C, 32, 32) inputs, written here so
    that nothing depends on torchvision; ``width`` scales every stage's channels."""
    _positive_int(num_classes, "num_classes")
    _positive_int(in_channels, "in_channels")
    _positive_int(width, "width")
    return ResNet(in_channels, num_classes, width)

"""Models built by name: `build_model(name, input_shape, output_dim, **options)`.

- ``mlp``: fully connected ReLU net ([OnlineIS] Fig. 2 uses a 3-layer MLP).
- ``small_cnn``: conv16-conv32-fc64-fc10, CPU-sized (106k parameters on 28x28); ``bn=True`` adds batch norm.
- ``resnet18/34/50``: the CIFAR form (3x3 stem, stride 1, no max-pool).
- ``siren``: sine activations with the SIREN initialisation ([OnlineIS] Fig. 4).
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn


def mlp(input_shape, output_dim, hidden=(256, 256), activation="relu"):
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    dims = [math.prod(input_shape), *hidden]
    layers = [nn.Flatten()]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), act()]
    layers.append(nn.Linear(dims[-1], output_dim))
    return nn.Sequential(*layers)


def small_cnn(input_shape, output_dim, width=16, hidden=64, bn=False):
    """``bn``: batch norm after each convolution (conv-BN-ReLU, the convolutions then without bias), as the papers'
    networks have; off by default (the study's cpu runs so far)."""
    c, h, w = input_shape
    flat = 2 * width * (h // 4) * (w // 4)
    conv = lambda cin, cout: ([nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)] if bn
                              else [nn.Conv2d(cin, cout, 3, padding=1)])
    return nn.Sequential(
        *conv(c, width), nn.ReLU(), nn.MaxPool2d(2),
        *conv(width, 2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, output_dim))


class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(out)) + self.short(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, cout, stride):
        super().__init__()
        e = self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, e * cout, 1, bias=False), nn.BatchNorm2d(e * cout))
        self.short = nn.Sequential()
        if stride != 1 or cin != e * cout:
            self.short = nn.Sequential(nn.Conv2d(cin, e * cout, 1, stride, bias=False), nn.BatchNorm2d(e * cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem with stride 1 and no max-pool (He et al. 2016, CIFAR variant)."""

    def __init__(self, block, blocks, input_shape, output_dim, width=64):
        super().__init__()
        c = input_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i, nb in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(nb):
                layers.append(block(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout * block.expansion
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, output_dim)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _Sine(nn.Module):
    def __init__(self, lin, w0):
        super().__init__()
        self.lin, self.w0 = lin, w0

    def forward(self, x):
        return torch.sin(self.w0 * self.lin(x))


def siren(input_shape, output_dim, hidden=(256, 256, 256), w0=30.0):
    """SIREN (Sitzmann et al. 2020): sin(w0 W x + b), first layer U(-1/d, 1/d), others U(-sqrt(6/d)/w0, .)."""
    dims = [math.prod(input_shape), *hidden]
    layers = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        lin = nn.Linear(a, b)
        bound = 1 / a if k == 0 else math.sqrt(6 / a) / w0
        nn.init.uniform_(lin.weight, -bound, bound)
        layers.append(_Sine(lin, w0))
    last = nn.Linear(dims[-1], output_dim)
    nn.init.uniform_(last.weight, -math.sqrt(6 / dims[-1]) / w0, math.sqrt(6 / dims[-1]) / w0)
    return nn.Sequential(nn.Flatten(), *layers, last)


MODELS = {
    "mlp": mlp,
    "small_cnn": small_cnn,
    "resnet18": partial(ResNet, _Basic, (2, 2, 2, 2)),
    "resnet34": partial(ResNet, _Basic, (3, 4, 6, 3)),
    "resnet50": partial(ResNet, _Bottleneck, (3, 4, 6, 3)),
    "siren": siren,
}


def build_model(name: str, input_shape, output_dim: int, *, seed: int | None = None, **options) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (without batch) and ``output_dim`` outputs.

    With ``seed`` the initialisation uses a private generator state (the global
    RNG is saved and restored, so library code leaves it as it found it).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    if seed is None:
        return MODELS[name](tuple(input_shape), int(output_dim), **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](tuple(input_shape), int(output_dim), **options)

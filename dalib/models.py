"""Backbones and the one ``Classifier`` every method shares: backbone + optional bottleneck + head."""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from scenarios.errors import InputError, reject_unknown


class MLP(nn.Module):
    """Fully connected backbone: ``[Linear -> BatchNorm -> ReLU -> Dropout] x len(hidden)``."""

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...] = (256, 256),
                 batch_norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h) if batch_norm else nn.Identity(),
                       nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _conv_block(c_in: int, c_out: int, kernel: int, batch_norm: bool) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2 if kernel == 3 else 0),
            nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(), nn.ReLU(inplace=True)]


class LeNet(nn.Module):
    """LeNet-style backbone for 28 x 28 and 32 x 32 digits (LeCun et al. 1998), with batch norm,
    as used for digit adaptation benchmarks (Ganin & Lempitsky 2015)."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 32, features: int = 500,
                 batch_norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        c = input_shape[0]
        self.conv = nn.Sequential(*_conv_block(c, width, 5, batch_norm), nn.MaxPool2d(2),
                                  *_conv_block(width, 2 * width, 5, batch_norm), nn.MaxPool2d(2),
                                  nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(2, *input_shape)).shape[1]
        self.fc = nn.Sequential(nn.Linear(flat, features),
                                nn.BatchNorm1d(features) if batch_norm else nn.Identity(),
                                nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.out_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class SmallCNN(nn.Module):
    """Three 3x3 conv blocks (conv -> BN -> ReLU -> pool) and global average pooling."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 32, batch_norm: bool = True,
                 ) -> None:
        super().__init__()
        c = input_shape[0]
        self.body = nn.Sequential(
            *_conv_block(c, width, 3, batch_norm), nn.MaxPool2d(2),
            *_conv_block(width, 2 * width, 3, batch_norm), nn.MaxPool2d(2),
            *_conv_block(2 * width, 4 * width, 3, batch_norm), nn.AdaptiveAvgPool2d(1),
            nn.Flatten())
        self.out_features = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResNet(nn.Module):
    """A torchvision ResNet without its ``fc`` layer (grey inputs are repeated to 3 channels).

    Block names ``layer1`` ... ``layer4`` are kept, so freezing by name works.
    """

    def __init__(self, input_shape: tuple[int, ...], name: str = "resnet18") -> None:
        super().__init__()
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
        self.out_features = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.grey = input_shape[0] == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if self.grey else x)


BACKBONES = {"mlp": MLP, "lenet": LeNet, "cnn": SmallCNN, "resnet": ResNet}


class Classifier(nn.Module):
    """``head(bottleneck(backbone(x)))``; :meth:`features` returns the bottleneck output."""

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone.out_features
        self.bottleneck: nn.Module = nn.Identity()
        if bottleneck:
            self.bottleneck = nn.Sequential(nn.Linear(width, bottleneck),
                                            nn.BatchNorm1d(bottleneck), nn.ReLU(inplace=True))
            width = bottleneck
        self.feature_dim = width
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def auto_arch(input_shape: tuple[int, ...]) -> str:
    """``mlp`` for vectors and small images (up to 16 x 16), ``lenet`` for larger ones."""
    if len(input_shape) < 3 or input_shape[-1] * input_shape[-2] <= 256:
        return "mlp"
    return "lenet"


def build_model(input_shape: tuple[int, ...], num_classes: int, arch: str = "auto",
                bottleneck: int = 0, **options) -> Classifier:
    """A ``Classifier`` from the suite's ``[model]`` table; unknown options are errors."""
    arch = auto_arch(input_shape) if arch == "auto" else arch
    if arch.startswith("resnet") and arch != "resnet":
        options = {"name": arch, **options}
        arch = "resnet"
    if arch not in BACKBONES:
        raise InputError("model.arch", f"is {arch!r}",
                         expected=f"auto, {', '.join(sorted(BACKBONES))} or resnet18/34/50")
    cls = BACKBONES[arch]
    allowed = set(inspect.signature(cls).parameters) - {"input_shape"} | {"arch", "bottleneck"}
    reject_unknown(options, allowed, what=f"option of {arch!r}", field="model")
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    if arch in ("lenet", "cnn", "resnet") and len(input_shape) != 3:
        raise InputError("model.arch", f"{arch!r} needs images but inputs have shape {input_shape}",
                         expected="arch = 'mlp' for vector data")
    return Classifier(cls(tuple(input_shape), **options), num_classes, bottleneck)

"""Backbones and the one ``Classifier`` every method shares: backbone + optional bottleneck + head."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from scenarios import checks
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

    Block names ``layer1`` ... ``layer4`` are kept, so freezing by name works. ``weights`` is
    a local file (a torchvision state dict, loaded with ``weights_only=True``) or the name of
    torchvision's weights (``IMAGENET1K_V1``), read from torch's hub cache only: nothing is
    ever downloaded.
    """

    def __init__(self, input_shape: tuple[int, ...], name: str = "resnet18",
                 weights: str | None = None) -> None:
        super().__init__()
        import torchvision

        resnets = [n for n in torchvision.models.list_models(torchvision.models)
                   if n.startswith("resnet")]
        if name not in resnets:
            raise InputError("model.arch", f"is {name!r}", expected=f"one of {', '.join(resnets)}")
        net = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            try:
                net.load_state_dict(_resnet_weights(name, weights))
            except RuntimeError as exc:
                raise InputError("model.weights", f"{weights!r} does not fit {name} "
                                 f"({str(exc).splitlines()[0]})",
                                 expected=f"a state dict of torchvision's {name}") from None
        self.out_features = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.grey = input_shape[0] == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if self.grey else x)


def _load_state_dict(path) -> dict:
    """A state dict from a file (``weights_only``: no code runs), or an input error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and format errors all mean the same to a user
        raise InputError("model.weights", f"{str(path)!r} cannot be read as weights "
                         f"({type(exc).__name__})", expected="a state dict saved with "
                         "torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise InputError("model.weights", f"{str(path)!r} is not a state dict",
                         expected="a dict of tensors saved with torch.save(model.state_dict(), "
                         "path)")
    return state


def _resnet_weights(name: str, weights: str) -> dict:
    """A ResNet state dict from a local file or torchvision's named weights (from the hub
    cache only), or an error saying where to put the file."""
    from pathlib import Path

    import torchvision

    if Path(weights).expanduser().is_file():
        return _load_state_dict(Path(weights).expanduser())
    try:
        enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        raise InputError("model.weights", f"{weights!r} is neither a file nor a weights name "
                         f"of {name}", expected="a path to a state dict or one of "
                         + ", ".join(w.name for w in torchvision.models.get_model_weights(name))
                         ) from None
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if target.is_file():
        return _load_state_dict(target)
    raise InputError("model.weights", f"{weights!r} is not in torch's hub cache (dalib never "
                     f"downloads)", expected=f"the file {Path(enum.url).name} (from {enum.url}) "
                     f"at {target}, or weights = 'path/to/file.pth'")


BACKBONES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "lenet": LeNet, "cnn": SmallCNN,
                                                  "resnet": ResNet}
OPTION_CHECKS = {
    "hidden": partial(checks.number_list, low=1, high=65536, integer=True, min_length=0,
                      max_length=100),
    "dropout": lambda v, f: checks.number(v, f, low=0, high=0.99, what="a fraction in [0, 1)"),
    "width": partial(checks.integer, low=1, high=4096),
    "features": partial(checks.integer, low=1, high=65536),
    "batch_norm": checks.boolean,
    "name": checks.string,
    "weights": checks.string,
}


class Classifier(nn.Module):
    """``head(bottleneck(backbone(x)))``; :meth:`features` returns the bottleneck output."""

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck: int = 0,
                 width: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone.out_features if width is None else width
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


def blocks(model: Classifier) -> list[tuple[str, nn.Module]]:
    """The model's trainable blocks from input to output: ``stem``, ``layer1`` ... ``layer4``
    for a torchvision ResNet, else ``block1``, ``block2``, ... (one per Linear or Conv2d layer
    with the layers after it); then ``bottleneck`` (when there is one) and ``head``."""
    backbone = model.backbone
    out: list[tuple[str, nn.Module]] = []
    if isinstance(backbone, ResNet):
        net = backbone.net
        out.append(("stem", nn.ModuleList([net.conv1, net.bn1])))
        out += [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
    else:
        groups: list[list[nn.Module]] = []
        for m in backbone.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                groups.append([m])
            elif groups and not list(m.children()):
                groups[-1].append(m)
        out += [(f"block{i + 1}", nn.ModuleList(g)) for i, g in enumerate(groups)]
    if not isinstance(model.bottleneck, nn.Identity):
        out.append(("bottleneck", model.bottleneck))
    return out + [("head", model.head)]


def freeze(model: Classifier, upto: int | str) -> list[nn.Module]:
    """Freeze the first ``upto`` blocks of :func:`blocks` (a count), every block up to and
    including the one named ``upto``, or with ``"all"`` everything but the head: their
    parameters stop requiring gradients. Returns the frozen blocks (keep them in eval mode
    so batch-norm statistics stay too)."""
    named = blocks(model)
    frozen = [m for _, m in named[:frozen_count(named, upto)]]
    for m in frozen:
        m.requires_grad_(False)
    return frozen


def frozen_count(named: list[tuple[str, nn.Module]], upto: int | str) -> int:
    """How many of the blocks ``named`` a ``freeze`` value covers, or an input error."""
    names = [n for n, _ in named]
    if upto == "all":
        count = len(named) - 1
    elif isinstance(upto, str):
        if upto not in names:
            raise InputError("freeze", f"is {upto!r}", expected=f"a count, 'all' or one of "
                             f"{', '.join(names)}")
        count = names.index(upto) + 1
    else:
        if isinstance(upto, bool) or not isinstance(upto, int) or not 0 <= upto < len(named):
            raise InputError("freeze", f"is {upto}", expected=f"0 .. {len(named) - 1} blocks "
                             f"({', '.join(names)})")
        count = upto
    return count


def auto_arch(input_shape: tuple[int, ...]) -> str:
    """``mlp`` for vectors and small images (up to 16 x 16), ``lenet`` for larger ones."""
    if len(input_shape) < 3 or input_shape[-1] * input_shape[-2] <= 256:
        return "mlp"
    return "lenet"


def build_model(input_shape: tuple[int, ...], num_classes: int, arch: str = "auto",
                bottleneck: int = 0, **options) -> Classifier:
    """A ``Classifier`` from the suite's ``[model]`` table; unknown options are errors."""
    if not isinstance(arch, str):
        raise InputError("model.arch", f"is {arch!r}", expected="a backbone name")
    arch = auto_arch(input_shape) if arch == "auto" else arch
    checks.integer(bottleneck, "model.bottleneck", 0, 65536)
    for key, value in options.items():
        if key in OPTION_CHECKS:
            OPTION_CHECKS[key](value, f"model.{key}")
    if arch.startswith("resnet") and arch != "resnet":
        options = {"name": arch, **options}
        arch = "resnet"
    if arch not in BACKBONES:
        raise InputError("model.arch", f"is {arch!r}",
                         expected=f"auto, {', '.join(sorted(BACKBONES))} or resnet18/34/50")
    cls = BACKBONES[arch]  # a class or a registered factory(input_shape, **options)
    params = list(inspect.signature(cls).parameters.values())[1:]  # after input_shape
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        reject_unknown(options, {p.name for p in params} | {"arch", "bottleneck"},
                       what=f"option of {arch!r}", field="model")
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    if arch in ("lenet", "cnn", "resnet") and len(input_shape) != 3:
        raise InputError("model.arch", f"{arch!r} needs images but inputs have shape {input_shape}",
                         expected="arch = 'mlp' for vector data")
    try:
        backbone = cls(tuple(input_shape), **options)
        if not isinstance(backbone, nn.Module):
            raise InputError("model.arch", f"{arch!r} built a {type(backbone).__name__}",
                             expected="a backbone factory that returns an nn.Module")
        width = feature_width(backbone, tuple(input_shape))
    except (RuntimeError, ValueError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError("model.arch", f"{arch!r} cannot take inputs of shape "
                         f"{tuple(input_shape)} ({str(exc).splitlines()[0]})",
                         expected="a backbone for this input size (mlp, cnn, or a resize "
                         "shift)") from None
    return Classifier(backbone, num_classes, bottleneck, width)


def feature_width(backbone: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The width of a backbone's feature vectors: its ``out_features`` attribute, else the
    output of one forward pass on two zero inputs (in eval mode, without gradients)."""
    width = getattr(backbone, "out_features", None)
    if isinstance(width, int) and not isinstance(width, bool) and width > 0:
        return width
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        out = backbone(torch.zeros(2, *input_shape))
        backbone.train(was)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise InputError("model.arch", f"the backbone's output has shape "
                         f"{tuple(getattr(out, 'shape', ()))}",
                         expected="a batch of feature vectors (N x D)")
    return int(out.shape[1])

"""Backbones and the one ``Classifier`` every method shares: backbone + optional bottleneck + head."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from dalib.pack.modules import packable
from dalib.pretrained import FAMILIES, Torchvision
from dalib.sequences import SIGNAL_BACKBONES, TOKEN_BACKBONES
from scenarios import checks
from scenarios.errors import InputError, reject_unknown


@packable
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


@packable
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


@packable
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


class MNISTCNN(nn.Module):
    """DomainBed's network for Colored and Rotated MNIST (Gulrajani & Lopez-Paz, ICLR 2021):
    four 3x3 convolutions of 64, 128, 128 and 128 channels (the second with stride 2), each
    followed by ReLU and group normalisation (8 groups), then global average pooling to 128
    features. Group norm has no packed form: its runs train alone."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        c, layers = input_shape[0], []
        for c_in, c_out, stride in ((c, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, padding=1), nn.ReLU(inplace=True),
                       nn.GroupNorm(8, c_out)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


BACKBONES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "lenet": LeNet, "cnn": SmallCNN,
                                                  "mnist-cnn": MNISTCNN,
                                                  "torchvision": Torchvision,
                                                  **TOKEN_BACKBONES, **SIGNAL_BACKBONES}
OPTION_CHECKS = {
    "hidden": partial(checks.number_list, low=1, high=65536, integer=True, min_length=0,
                      max_length=100),
    "dropout": lambda v, f: checks.number(v, f, low=0, high=0.99, what="a fraction in [0, 1)"),
    "width": partial(checks.integer, low=1, high=4096),
    "features": partial(checks.integer, low=1, high=65536),
    "batch_norm": checks.boolean,
    "name": checks.string,
    "weights": checks.string,
    "image_size": partial(checks.integer, low=1, high=4096),
    "frozen_bn": checks.boolean,
    "vocab": partial(checks.integer, low=16, high=2**24),
    "dim": partial(checks.integer, low=1, high=65536),
    "layers": partial(checks.integer, low=1, high=64),
    "heads": partial(checks.integer, low=1, high=256),
}


@packable
class Normalize(nn.Module):
    """``(x - mean) / std`` per channel (per feature for vectors), constants of the model."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, dims: int) -> None:
        super().__init__()
        shape = (1, -1) + (1,) * (dims - 2)
        self.register_buffer("mean", mean.float().reshape(shape))
        self.register_buffer("std", std.float().clamp_min(1e-6).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


IMAGENET = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
NORMALIZE = ("none", "imagenet", "dataset")


def normalizer(kind: str, input_shape: tuple[int, ...], reference: torch.Tensor | None
               ) -> nn.Module:
    """The input normalisation ``kind``: ``none``, ``imagenet`` (the statistics pretrained
    torchvision weights expect; grey inputs get their channel average) or ``dataset``
    (per-channel mean and std of ``reference``, the source training inputs)."""
    if kind == "none":
        return nn.Identity()
    if kind == "imagenet":
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise InputError("model.normalize", f"is 'imagenet' but inputs have shape "
                             f"{input_shape}", expected="1- or 3-channel images")
        mean, std = IMAGENET if input_shape[0] == 3 else (IMAGENET[0].mean()[None],
                                                          IMAGENET[1].mean()[None])
        return Normalize(mean, std, len(input_shape) + 1)
    if reference is None:
        raise InputError("model.normalize", "is 'dataset' without data to measure",
                         expected="'imagenet' or 'none'")
    dims = [0] + list(range(2, reference.dim()))
    return Normalize(reference.float().mean(dims), reference.float().std(dims),
                     reference.dim())


@packable
class Classifier(nn.Module):
    """``head(bottleneck(backbone(normalize(x))))``; :meth:`features` returns the bottleneck
    output."""

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck: int = 0,
                 width: int | None = None, normalize: nn.Module | None = None) -> None:
        super().__init__()
        self.normalize = normalize or nn.Identity()
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
        return self.bottleneck(self.backbone(self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def blocks(model: Classifier) -> list[tuple[str, nn.Module]]:
    """The model's trainable blocks from input to output: the stages a backbone names
    (torchvision models: ``stem``, ``layer1`` ... ``layer4`` of a ResNet, see
    :meth:`~dalib.pretrained.Torchvision.blocks`), else ``block1``, ``block2``, ... (one per
    Linear or Conv2d layer with the layers after it); then ``bottleneck`` (when there is one)
    and ``head``."""
    backbone = model.backbone
    out: list[tuple[str, nn.Module]] = []
    if hasattr(backbone, "blocks"):  # a backbone that names its stages (Torchvision)
        out += backbone.blocks()
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
    """``mlp`` for vectors and small images (up to 16 x 16), ``lenet`` for larger ones,
    ``cnn1d`` for 1-D signals (channels x length); token sequences are ``embedding-bag``
    (:func:`model_for`)."""
    if len(input_shape) == 2:
        return "cnn1d"
    if len(input_shape) < 3 or input_shape[-1] * input_shape[-2] <= 256:
        return "mlp"
    return "lenet"


def model_for(data, **options) -> Classifier:
    """:func:`build_model` for a scenario's data (a transfer scenario or a stream), with its
    source training inputs (a stream's first task) as the ``dataset`` normalisation's
    reference."""
    source = data.source if hasattr(data, "source") else data.tasks[0].train
    reference = source.x[:10_000] if options.get("normalize") == "dataset" else None
    vocab = source.meta.get("vocab")  # token ids (scenarios.text): a text backbone
    if vocab is not None:
        options = {"arch": "embedding-bag", **options}
        if options["arch"] in TOKEN_BACKBONES:
            options.setdefault("vocab", vocab)
    return build_model(data.input_shape, data.num_classes, reference=reference, **options)


def build_model(input_shape: tuple[int, ...], num_classes: int, arch: str = "auto",
                bottleneck: int = 0, normalize: str = "none",
                reference: torch.Tensor | None = None, init: str | None = None,
                **options) -> Classifier:
    """A ``Classifier`` from the suite's ``[model]`` table; unknown options are errors.
    ``normalize`` (see :func:`normalizer`) standardises the inputs inside the model; ``init``
    names a model file a sweep kept (:mod:`dalib.kept`) to start from. Any sequence stands
    for a list (``hidden=(400, 400)``)."""
    options, bottleneck = checks.plain(options), checks.plain(bottleneck)
    checks.string(normalize, "model.normalize", NORMALIZE)
    if not isinstance(arch, str):
        raise InputError("model.arch", f"is {arch!r}", expected="a backbone name")
    arch = auto_arch(input_shape) if arch == "auto" else arch
    checks.integer(bottleneck, "model.bottleneck", 0, 65536)
    for key, value in options.items():
        if key in OPTION_CHECKS:
            OPTION_CHECKS[key](value, f"model.{key}")
    if arch.startswith(FAMILIES) and arch not in BACKBONES:  # resnet50, vit_b_16, ...
        options = {"name": "resnet18" if arch == "resnet" else arch, **options}
        arch = "torchvision"
    chosen = f"torchvision:{options.get('name', 'resnet18')}" if arch == "torchvision" else arch
    if arch not in BACKBONES:
        raise InputError("model.arch", f"is {arch!r}",
                         expected=f"auto, {', '.join(sorted(BACKBONES))} or a torchvision "
                         "model of the families " + ", ".join(FAMILIES))
    cls = BACKBONES[arch]  # a class or a registered factory(input_shape, **options)
    params = list(inspect.signature(cls).parameters.values())[1:]  # after input_shape
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        reject_unknown(options, {p.name for p in params} | {"arch", "bottleneck", "normalize"},
                       what=f"option of {arch!r}", field="model")
    if "hidden" in options:
        options["hidden"] = tuple(options["hidden"])
    if arch in ("lenet", "cnn", "mnist-cnn", "torchvision") and len(input_shape) != 3:
        raise InputError("model.arch", f"{arch!r} needs images but inputs have shape {input_shape}",
                         expected="arch = 'mlp' for vector data")
    if arch in SIGNAL_BACKBONES and len(input_shape) != 2:
        raise InputError("model.arch", f"{arch!r} needs 1-D signals (channels x length) but "
                         f"inputs have shape {input_shape}", expected="an npz file with "
                         "layout = 'NCL', 'NLC' or 'NL'")
    if arch in TOKEN_BACKBONES and "vocab" not in options:
        raise InputError("model.arch", f"{arch!r} needs token ids, but the inputs are not text",
                         expected="a text data table ({ text = FILE, column = ... })")
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
    model = Classifier(backbone, num_classes, bottleneck, width,
                       normalizer(normalize, tuple(input_shape), reference))
    model.arch = chosen  # the backbone ``arch = "auto"`` chose, named in every run's record
    if init is not None:
        from dalib.kept import load_into

        load_into(model, checks.string(init, "model.init"))
    return model


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

"""Packed modules: S copies of one network trained side by side as one network.

A packed tensor carries the runs in a leading dimension: ``(S, B, ...)`` where a single run
has ``(B, ...)``. :func:`pack` turns S modules of the same structure into one module over
packed tensors, each run keeping its own weights: linear layers become one batched matrix
product over stacked weights (``baddbmm``), convolutions one grouped convolution (groups =
runs), batch norm one normalisation over runs x channels, so no run's statistics or
gradients touch another's. Consecutive convolution-type layers work in a channels layout
``(B, S * C, H, W)`` and convert back to ``(S, B, ...)`` where the segment ends.
:func:`unpack_into` copies run s's weights back into an ordinary module, by name.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class Layout(nn.Module):
    """A layer of a convolution segment: ``enter`` converts ``(S, B, C, H, W)`` input to the
    channels layout, ``leave`` converts the output back."""

    runs = 1
    enter = leave = False

    def into(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enter:
            return x
        s, b = x.shape[:2]
        return x.transpose(0, 1).reshape(b, s * x.shape[2], *x.shape[3:])

    def out(self, x: torch.Tensor) -> torch.Tensor:
        if not self.leave:
            return x
        b, sc = x.shape[:2]
        return x.view(b, self.runs, sc // self.runs, *x.shape[2:]).transpose(0, 1)


class _Linear(torch.autograd.Function):
    """``x W^T + b`` over runs, with the weight gradient computed in the weight's own layout
    (autograd's transposed product and copy cost twice the time on a CPU)."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                ) -> torch.Tensor:
        if bias is None:
            return torch.bmm(x, weight.mT)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.mT)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.mT.contiguous(), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class PackedLinear(nn.Module):
    """S linear layers: ``x (S, B, in) -> (S, B, out)`` with weights ``(S, out, in)``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = None if layers[0].bias is None else nn.Parameter(
            torch.stack([m.bias.detach() for m in layers]))
        self.out_features, self.in_features = layers[0].out_features, layers[0].in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[1:-1]
        y = _Linear.apply(x.reshape(x.shape[0], -1, x.shape[-1]), self.weight, self.bias)
        return y.view(x.shape[0], *lead, self.out_features)


class PackedBatchNorm(Layout):
    """S batch norms as one over ``S x C`` channels (1d on ``(S, B, C)``, 2d in a segment)."""

    def __init__(self, norms: list[nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        first = norms[0]
        self.runs, self.num_features = len(norms), first.num_features
        self.eps, self.momentum = first.eps, first.momentum
        self.affine, self.track_running_stats = first.affine, first.track_running_stats
        if self.affine:
            self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in norms]))
            self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in norms]))
        if self.track_running_stats:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, torch.stack([getattr(m, name) for m in norms]))
        self.two_d = isinstance(first, nn.BatchNorm2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.two_d:
            y = self._norm(self.into(x))
            return self.out(y)
        s, c = self.runs, self.num_features
        flat = x.transpose(0, 1).reshape(-1, s * c)  # (B, S * C)
        return self._norm(flat).view(-1, s, c).transpose(0, 1)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        training = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # the cumulative average, as nn.BatchNorm
                momentum = 1.0 / float(self.num_batches_tracked[0])
        flat = [None if (t := getattr(self, name, None)) is None else t.reshape(-1)
                for name in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(x, *flat, training, momentum or 0.0, self.eps)


class PackedConv2d(Layout):
    """S convolutions as one grouped convolution in the channels layout."""

    def __init__(self, convs: list[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        if first.groups != 1 or first.padding_mode != "zeros":
            raise ValueError("grouped or non-zero-padded convolutions do not pack")
        self.runs = len(convs)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in convs]))
        self.bias = None if first.bias is None else nn.Parameter(
            torch.stack([m.bias.detach() for m in convs]))
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(0, 1)
        b = None if self.bias is None else self.bias.flatten()
        y = F.conv2d(self.into(x), w, b, self.stride, self.padding, self.dilation,
                     groups=self.runs)
        return self.out(y)


class Segment(Layout):
    """A stateless layer (activation, pooling) inside a convolution segment."""

    def __init__(self, layer: nn.Module, runs: int) -> None:
        super().__init__()
        self.layer, self.runs = layer, runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layer(self.into(x)))


STATELESS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.ELU, nn.SiLU)
SPATIAL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CONV_LAYOUT = (nn.Conv2d, nn.BatchNorm2d, *SPATIAL, *STATELESS)
# modules whose forward works on packed tensors once their children are packed and their own
# tensors stacked (registered by the modules that define them, see :func:`packable`)
CONTAINERS: set[type] = {nn.Sequential, nn.ModuleList, nn.ModuleDict}


def packable(cls: type) -> type:
    """Mark a module class whose forward is written for any number of leading dimensions (so
    packed children and stacked own tensors make it a packed module)."""
    CONTAINERS.add(cls)
    return cls


def pack_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be packed, or None."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Dropout) and m.p > 0:
            return f"dropout ({name}) draws from the global random stream"
        if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros"):
            return f"{name} is a grouped or non-zero-padded convolution"
        if not (type(m) in CONTAINERS or isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.Flatten,
                                                        nn.Dropout, *CONV_LAYOUT))):
            return f"{type(m).__name__} ({name or 'the model'}) has no packed form"
    return None


def _flatten(layer: nn.Flatten) -> nn.Flatten:
    if layer.start_dim < 0 and layer.end_dim < 0:
        return copy.deepcopy(layer)
    return nn.Flatten(layer.start_dim + 1, layer.end_dim if layer.end_dim < 0
                      else layer.end_dim + 1)


def _leaf(mods: list[nn.Module]) -> nn.Module:
    first = mods[0]
    if isinstance(first, nn.Linear):
        return PackedLinear(mods)
    if isinstance(first, nn.Conv2d):
        return PackedConv2d(mods)
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        return PackedBatchNorm(mods)
    if isinstance(first, nn.Flatten):
        return _flatten(first)
    if isinstance(first, (nn.Dropout, *STATELESS)):
        return copy.deepcopy(first)
    raise ValueError(f"{type(first).__name__} has no packed form")


def _sequential(mods: list[nn.Sequential]) -> nn.Sequential:
    """Pack layer by layer; runs of convolution-type layers form segments in the channels
    layout, entered at their first layer and left at their last."""
    children = [[m[i] for m in mods] for i in range(len(mods[0]))]
    out: list[nn.Module] = []
    segment: list[Layout] = []

    def close() -> None:
        if segment:
            segment[0].enter, segment[-1].leave = True, True
            segment.clear()

    for group in children:
        first = group[0]
        if isinstance(first, nn.Conv2d) or (segment and isinstance(first, CONV_LAYOUT)):
            layer = _leaf(group) if isinstance(first, nn.Conv2d | nn.BatchNorm2d) \
                else Segment(copy.deepcopy(first), len(mods))
            segment.append(layer)
            out.append(layer)
            continue
        close()
        out.append(_pack(group))
    close()
    return nn.Sequential(*out)


def _pack(mods: list[nn.Module]) -> nn.Module:
    first = mods[0]
    if isinstance(first, nn.Sequential):
        return _sequential(mods)
    if type(first) not in CONTAINERS:
        return _leaf(mods)
    shell = copy.copy(first)
    shell._parameters, shell._buffers, shell._modules = {}, {}, {}
    for name, p in first.named_parameters(recurse=False):
        shell.register_parameter(name, None if p is None else nn.Parameter(
            torch.stack([m._parameters[name].detach() for m in mods]),
            requires_grad=p.requires_grad))
    for name in first._buffers:
        shell.register_buffer(name, torch.stack([m._buffers[name] for m in mods]))
    for name in first._modules:
        shell._modules[name] = _pack([m._modules[name] for m in mods])
    return shell


def pack(modules: list[nn.Module]) -> nn.Module:
    """One module over packed tensors ``(S, B, ...)`` from S modules of the same structure
    (:func:`pack_reason` says why a module cannot be packed). Parameters keep their
    ``requires_grad`` and their names; each run's tensors are its module's, copied."""
    reason = pack_reason(modules[0])
    if reason:
        raise ValueError(reason)
    packed = _pack(modules)
    frozen = {n for n, p in modules[0].named_parameters() if not p.requires_grad}
    for n, p in packed.named_parameters():
        p.requires_grad_(n not in frozen)
    return packed.train(modules[0].training)


@torch.no_grad()
def unpack_into(packed: nn.Module, run: int, module: nn.Module) -> None:
    """Copy run ``run``'s parameters and buffers of ``packed`` into ``module``."""
    source = dict(packed.named_parameters())
    source.update(packed.named_buffers())
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        t.copy_(source[name][run])

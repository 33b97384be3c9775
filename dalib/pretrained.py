"""Torchvision's pretrained families as backbones: ResNet, VGG, Inception v3, MobileNet v2/v3,
EfficientNet and ViT, each without its last classification layer (dalib adds its bottleneck
and head), with its stages named for freezing.

``weights`` is a local file (a torchvision state dict, loaded with ``weights_only=True``) or the
name of torchvision's weights (``IMAGENET1K_V1``) read from torch's hub cache only: nothing is
ever downloaded. Grey inputs are repeated to 3 channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from scenarios.errors import InputError

FAMILIES = ("resnet", "vgg", "inception", "mobilenet", "efficientnet", "vit")


def known_models() -> list[str]:
    """Torchvision's classification models of the supported families."""
    import torchvision

    return [n for n in torchvision.models.list_models(torchvision.models)
            if n.startswith(FAMILIES)]


class _Params(nn.Module):
    """Parameters that belong to no layer (ViT's class token and position embedding), held
    as one block so they freeze with it."""

    def __init__(self, **params: nn.Parameter) -> None:
        super().__init__()
        for name, p in params.items():
            self.register_parameter(name, p)


class Torchvision(nn.Module):
    """A torchvision classification network (``name``, e.g. ``resnet50``, ``vgg16_bn``,
    ``inception_v3``, ``mobilenet_v3_small``, ``efficientnet_b0``, ``vit_b_16``) without its
    last linear layer. ``image_size`` sets a ViT's input size when it has no weights.
    ``frozen_bn``: batch norm layers keep their (pretrained) running statistics in training,
    as DomainBed's ResNet does (``domainbed/networks.py``, ``freeze_bn``); their scale and
    shift still train."""

    def __init__(self, input_shape: tuple[int, ...], name: str = "resnet18",
                 weights: str | None = None, image_size: int | None = None,
                 frozen_bn: bool = False) -> None:
        super().__init__()
        import torchvision

        known = known_models()
        if name not in known:
            raise InputError("model.arch", f"is {name!r}", expected=f"one of {', '.join(known)}")
        extra = {}
        if name.startswith("inception"):
            extra = {"aux_logits": weights is not None, "init_weights": weights is None}
        if name.startswith("vit"):
            if image_size is not None and weights is not None:
                raise InputError("model.image_size", "is set with weights", expected="the "
                                 "pretrained size (leave image_size out)")
            extra = {"image_size": image_size or input_shape[-1]}
        elif image_size is not None:
            raise InputError("model.image_size", f"is set for {name}", expected="image_size "
                             "only for ViT models")
        net = torchvision.models.get_model(name, weights=None, **extra)
        if weights is not None:
            try:
                net.load_state_dict(_weights(name, weights))
            except RuntimeError as exc:
                raise InputError("model.weights", f"{weights!r} does not fit {name} "
                                 f"({str(exc).splitlines()[0]})",
                                 expected=f"a state dict of torchvision's {name}") from None
        if name.startswith("inception"):
            net.aux_logits, net.AuxLogits = False, None
        self.out_features = _drop_last_linear(net)
        self.net = net
        self.name = name
        self.grey = input_shape[0] == 1

        self.frozen_bn = frozen_bn

    def train(self, mode: bool = True) -> Torchvision:
        super().train(mode)
        if mode and self.frozen_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.expand(-1, 3, -1, -1) if self.grey else x)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The network's stages from input to output (what ``freeze`` counts and names)."""
        net = self.net
        if self.name.startswith("resnet"):
            return [("stem", nn.ModuleList([net.conv1, net.bn1]))] + \
                [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
        if self.name.startswith("vgg"):
            out, stage = [], []
            for layer in net.features:
                stage.append(layer)
                if isinstance(layer, nn.MaxPool2d):
                    out.append((f"block{len(out) + 1}", nn.ModuleList(stage)))
                    stage = []
            return out + [("classifier", net.classifier)]
        if self.name.startswith("vit"):
            stem = nn.ModuleList([net.conv_proj, _Params(class_token=net.class_token,
                                                         pos_embedding=net.encoder.pos_embedding)])
            return [("stem", stem)] + [(f"layer{i}", layer) for i, layer in
                                       enumerate(net.encoder.layers)] + [("norm", net.encoder.ln)]
        if self.name.startswith("inception"):
            return [(n, m) for n, m in net.named_children() if any(True for _ in m.parameters())]
        # mobilenet, efficientnet: the stages of ``features``, then the classifier's layers
        out = [(f"features{i}", m) for i, m in enumerate(net.features)]
        if any(True for _ in net.classifier.parameters()):
            out.append(("classifier", net.classifier))
        return out


def _drop_last_linear(net: nn.Module) -> int:
    """Replace the network's last linear layer (``fc``, ``classifier[-1]``, ``heads.head``)
    by the identity; returns that layer's input width."""
    for attr in ("fc", "classifier", "heads"):
        holder = getattr(net, attr, None)
        if isinstance(holder, nn.Linear):
            setattr(net, attr, nn.Identity())
            return holder.in_features
        if isinstance(holder, nn.Sequential):
            index = max(i for i, m in enumerate(holder) if isinstance(m, nn.Linear))
            width = holder[index].in_features
            holder[index] = nn.Identity()
            return width
    raise InputError("model.arch", f"{type(net).__name__} has no fc, classifier or heads layer",
                     expected="a torchvision classification model")


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


def _weights(name: str, weights: str) -> dict:
    """A state dict from a local file or torchvision's named weights (from the hub cache
    only), or an error saying where to put the file."""
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

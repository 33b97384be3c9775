import pytest
import torch

from dalib.models import build_model
from scenarios.errors import InputError


def test_unknown_model_option_and_arch():
    with pytest.raises(InputError, match="model.depth: unknown option of 'mlp'"):
        build_model((1, 8, 8), 10, depth=3)
    with pytest.raises(InputError, match="model.arch: is 'vgg'"):
        build_model((1, 8, 8), 10, arch="vgg")
    with pytest.raises(InputError, match="needs images"):
        build_model((20,), 3, arch="lenet")


def test_resnet_backbone_keeps_block_names():
    model = build_model((1, 32, 32), 10, arch="resnet18")
    names = {n for n, _ in model.backbone.net.named_children()}
    assert {"layer1", "layer4"} <= names
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)

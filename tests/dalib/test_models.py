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


def test_input_normalisation_inside_the_model():
    from dalib.models import IMAGENET

    ref = torch.rand(50, 3, 8, 8) * 0.5 + 0.2
    model = build_model((3, 8, 8), 4, normalize="dataset", reference=ref)
    z = model.normalize(ref)
    assert z.mean(dim=(0, 2, 3)).abs().max() < 1e-5 and (z.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    imagenet = build_model((3, 8, 8), 4, normalize="imagenet")
    assert torch.allclose(imagenet.normalize.mean.flatten(), IMAGENET[0])
    with pytest.raises(InputError, match="model.normalize: is 'imagenet' but inputs"):
        build_model((20,), 4, normalize="imagenet")
    with pytest.raises(InputError, match="model.normalize: is 'z'"):
        build_model((20,), 4, normalize="z")


def test_crop_flip_keeps_the_image_at_full_scale_up_to_a_mirror():
    from dalib.augment import random_resized_crop_flip

    x = torch.rand(64, 3, 10, 10)
    y = random_resized_crop_flip(x, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1))
    same = (y - x).abs().flatten(1).amax(1) < 1e-5
    mirrored = (y - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert (same | mirrored).all() and same.any() and mirrored.any()
    crops = random_resized_crop_flip(x, torch.Generator().manual_seed(0))
    assert crops.shape == x.shape and not torch.allclose(crops, x)

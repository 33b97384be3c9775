"""Torchvision's pretrained families as backbones, built without weights (nothing is
downloaded): each lists its stages, and a frozen stage gets no gradient while the rest does."""

import pytest
import torch

from dalib.models import blocks, build_model, freeze
from dalib.pretrained import _drop_last_linear
from scenarios.errors import InputError

FAMILIES = [  # (arch, input shape, options, first block names, width)
    ("resnet18", (1, 32, 32), {}, ["stem", "layer1", "layer2", "layer3", "layer4"], 512),
    ("vgg11", (3, 32, 32), {}, ["block1", "block2", "block3", "block4", "block5", "classifier"],
     4096),
    ("inception_v3", (3, 75, 75), {}, ["Conv2d_1a_3x3", "Conv2d_2a_3x3"], 2048),
    ("mobilenet_v3_small", (3, 32, 32), {}, ["features0", "features1"], 1024),
    ("efficientnet_b0", (3, 32, 32), {}, ["features0", "features1"], 1280),
    ("vit_b_16", (3, 32, 32), {"image_size": 32}, ["stem", "layer0", "layer1"], 768),
]


@pytest.mark.parametrize("arch, shape, options, first, width", FAMILIES,
                         ids=[f[0] for f in FAMILIES])
def test_family_blocks_and_a_frozen_forward_backward(arch, shape, options, first, width):
    torch.manual_seed(0)
    model = build_model(shape, 5, arch=arch, bottleneck=16, **options)
    names = [n for n, _ in blocks(model)]
    assert names[:len(first)] == first and names[-2:] == ["bottleneck", "head"]
    assert model.backbone.out_features == width
    frozen = freeze(model, first[1])  # everything up to and including the second stage
    model.train()
    for m in frozen:
        m.eval()
    model(torch.randn(2, *shape)).sum().backward()
    named = dict(blocks(model))
    for name in first[:2]:
        assert all(p.grad is None and not p.requires_grad for p in named[name].parameters())
    assert model.head.weight.grad is not None
    later = [p for _, m in blocks(model)[2:-2] for p in m.parameters()]
    assert later and any(p.grad is not None and p.grad.abs().sum() > 0 for p in later)


def test_unknown_names_and_misplaced_options_are_input_errors():
    with pytest.raises(InputError, match="model.arch: is 'vgg99'"):
        build_model((3, 32, 32), 5, arch="vgg99")
    with pytest.raises(InputError, match="model.image_size: is set for resnet18"):
        build_model((3, 32, 32), 5, arch="resnet18", image_size=32)
    with pytest.raises(InputError, match="no fc, classifier or heads"):
        _drop_last_linear(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_frozen_batch_norm_keeps_its_statistics_in_training_and_its_affine_trains():
    """DomainBed's ResNet: batch norm in eval mode while the network trains."""
    from dalib.models import build_model

    model = build_model((3, 32, 32), 5, arch="torchvision", name="resnet18", frozen_bn=True)
    model.train()
    bn = model.backbone.net.bn1
    before = bn.running_mean.clone()
    loss = model(torch.rand(4, 3, 32, 32)).sum()
    loss.backward()
    # same computation: statistics no kernel updated keep their exact bits
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert bn.weight.grad is not None and model.backbone.net.conv1.training
    plain = build_model((3, 32, 32), 5, arch="torchvision", name="resnet18").train()
    plain(torch.rand(4, 3, 32, 32))
    # same computation: a trained batch moves the statistics off their zero start
    assert not torch.equal(plain.backbone.net.bn1.running_mean, torch.zeros(64))

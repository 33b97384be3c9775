"""Inductive transfer: freezing, discriminative learning rates, L2-SP, BSS and weights files."""

import pytest
import torch

from dalib.engine import Batch
from dalib.models import blocks, build_model, freeze
from dalib.registry import REGISTRY
from scenarios.errors import InputError


def _batch(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g),
                 None)


def _tune(name, params=None, steps=6):
    torch.manual_seed(0)
    model = build_model((1, 8, 8), 10, bottleneck=32)
    method = REGISTRY[name].build(model, {"pretrain": 0.5, **(params or {})})
    method.total_steps = steps
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for i in range(steps):
        method.update({"source": _batch(seed=i), "target_labelled": _batch(seed=100 + i)})
    return method, before


def test_linear_probe_changes_only_the_head_after_pretraining():
    method, _ = _tune("linear-probe", steps=4)  # two source steps, then two target steps
    assert method.tuning
    model = method.model
    start = {k: v.clone() for k, v in model.state_dict().items()}
    for i in range(3):
        method.update({"source": _batch(seed=i), "target_labelled": _batch(seed=50 + i)})
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], start[k])}
    assert changed == {"head.weight", "head.bias"}  # BN statistics of frozen blocks kept too
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("head"))


def test_finetune_top_freezes_by_depth_and_by_name():
    method, _ = _tune("finetune-top", {"freeze": 1})
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, p in method.model.named_parameters()
             if not p.requires_grad}
    assert names == {"backbone.body"} and not all(
        p.requires_grad for p in method.model.backbone.parameters())
    resnet = build_model((1, 32, 32), 10, arch="resnet18")
    frozen = freeze(resnet, "layer2")
    assert [n for n, _ in blocks(resnet)][:3] == ["stem", "layer1", "layer2"] and len(frozen) == 3
    assert not any(p.requires_grad for p in resnet.backbone.net.layer2.parameters())
    assert all(p.requires_grad for p in resnet.backbone.net.layer3.parameters())
    with pytest.raises(InputError, match="layer9"):
        freeze(resnet, "layer9")


def test_discriminative_learning_rates():
    method, _ = _tune("finetune-full", {"lr": 1e-2, "backbone_lr": 0.1})
    lrs = sorted(g["lr"] for g in method.optimizer.param_groups)
    assert lrs == pytest.approx([1e-3, 1e-2])


def test_l2_sp_is_zero_at_the_starting_point_and_grows_away_from_it():
    method, _ = _tune("l2-sp", {"alpha": 0.1, "beta": 0.0}, steps=2)
    method.start_finetuning()  # a fresh start point: the weights as they are now
    feats = method.model.features(_batch().x)
    assert float(method.penalty(feats)["l2_sp"].detach()) == 0.0
    with torch.no_grad():
        p = next(method.model.backbone.parameters())
        p.add_(1.0)
    assert float(method.penalty(feats)["l2_sp"].detach()) == pytest.approx(0.5 * 0.1 * p.numel(), rel=1e-4)
    assert all(g["weight_decay"] == 0.0 for g in method.optimizer.param_groups[1:])


def test_bss_shrinks_the_smallest_singular_values():
    method, _ = _tune("bss", {"eta": 0.5, "k": 2}, steps=2)
    f = torch.randn(16, 8)
    s = torch.linalg.svdvals(f)
    assert float(method.penalty(f)["bss"]) == pytest.approx(0.5 * float((s[-2:] ** 2).sum()))


def test_resnet_weights_from_a_file_and_a_clear_error_offline(tmp_path, monkeypatch):
    import torchvision

    net = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(net.state_dict(), path)
    model = build_model((3, 32, 32), 10, arch="resnet18", weights=str(path))
    assert torch.equal(model.backbone.net.conv1.weight, net.conv1.weight)
    with pytest.raises(InputError, match="neither a file nor a weights name"):
        build_model((3, 32, 32), 10, arch="resnet18", weights="nope")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(InputError, match=r"hub/checkpoints/resnet18-.*\.pth"):
        build_model((3, 32, 32), 10, arch="resnet18", weights="IMAGENET1K_V1")

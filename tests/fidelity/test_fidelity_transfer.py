"""Inductive transfer: the fine-tuning losses on fixed tensors against the papers and TLlib's
``tllib/regularization`` (L2-SP of Li et al. 2018, BSS of Chen et al. 2019) and the gate of
Wang et al. 2019 (no published code: its equations), transcribed here, not from dalib."""

import torch
import torch.nn.functional as F

from dalib.adaptation.base import Outputs
from dalib.engine import Batch
from dalib.models import build_model
from dalib.registry import build_method

C, D = 4, 6


def _tuning(name, **options):
    torch.manual_seed(0)
    method = build_method(name, build_model((D,), C, hidden=(8, 8), batch_norm=False),
                          augmentation="none", weight_decay=0.0, **options)
    method.total_steps, method.updates = 10, 9  # in the fine-tuning phase
    return method


def _labelled(seed=0, n=12):
    g = torch.Generator().manual_seed(seed)
    return {"source": Batch(torch.randn(n, D, generator=g), torch.randint(0, C, (n,),
                                                                            generator=g), None),
            "target_labelled": Batch(torch.randn(n, D, generator=g),
                                     torch.randint(0, C, (n,), generator=g), None)}


def test_finetuning_is_the_target_cross_entropy_with_frozen_blocks():
    for name, frozen in (("finetune-full", 0), ("finetune-top", 1), ("linear-probe", 2)):
        method = _tuning(name)
        batch = _labelled()
        loss, _ = method.loss(batch)  # starts the fine-tuning phase
        lab = batch["target_labelled"]
        assert torch.allclose(loss, F.cross_entropy(method.model(lab.x), lab.y), atol=1e-6)
        linear = [m for m in method.model.backbone.modules() if isinstance(m, torch.nn.Linear)]
        assert [all(not p.requires_grad for p in m.parameters()) for m in linear] == \
            [i < frozen for i in range(len(linear))], name
        groups = method.optimizer.param_groups  # the backbone at backbone_lr x the rate
        if frozen < 2:
            assert {g["lr"] for g in groups} == {1e-3, 1e-3 * 0.1}, name


def test_l2_sp_is_li_et_als_penalty():
    method = _tuning("l2-sp", alpha=0.3, beta=0.2)
    batch = _labelled(1)
    method.loss(batch)
    w0 = {n: p.detach().clone() for n, p in method.model.named_parameters()
          if not n.startswith("head")}
    with torch.no_grad():
        for p in method.model.parameters():
            p.add_(0.05)
    lab = batch["target_labelled"]
    # alpha / 2 ||w - w0||^2 over the pretrained weights + beta / 2 ||w_head||^2 (weights)
    sp = sum(((p - w0[n]) ** 2).sum() for n, p in method.model.named_parameters()
             if n in w0)
    reference = F.cross_entropy(method.model(lab.x), lab.y) + 0.3 / 2 * sp \
        + 0.2 / 2 * (method.model.head.weight ** 2).sum()
    loss, _ = method.loss(batch)
    assert torch.allclose(loss, reference, rtol=1e-5)


def test_bss_is_tllibs_batch_spectral_shrinkage():
    method = _tuning("bss", eta=0.5, k=2)
    batch = _labelled(2)
    method.loss(batch)
    lab = batch["target_labelled"]
    feature = method.model.features(lab.x)
    _, s, _ = torch.svd(feature.t())  # BatchSpectralShrinkage.forward
    bss = sum(torch.pow(s[s.size(0) - 1 - i], 2) for i in range(2))
    reference = F.cross_entropy(method.model.head(feature), lab.y) + 0.5 * bss
    assert torch.allclose(method.loss(batch)[0], reference, rtol=1e-4)


def test_gate_weights_are_the_density_ratio_of_its_discriminator():
    torch.manual_seed(0)
    method = build_method("gate", build_model((D,), C, hidden=(8,), batch_norm=False))
    gate = method.terms["gate"]
    gate.eval()
    g = torch.Generator().manual_seed(3)
    fs, fl = torch.randn(10, 8, generator=g), torch.randn(5, 8, generator=g)
    ys, yl = torch.randint(0, C, (10,), generator=g), torch.randint(0, C, (5,), generator=g)
    out = Outputs(ys, None, None, fs, None, None, None, yl, fl)
    # Wang et al. 2019: w = p_T(x, y) / p_S(x, y) = exp(logit) of the (feature, label)
    # discriminator, normalised to mean 1 in the batch and clipped at max_weight
    logit = gate.discriminator(torch.cat([fs, F.one_hot(ys, C).float()], 1))
    ratio = logit.clamp(-10, 10).exp()
    reference = (ratio / ratio.mean()).clamp_max(gate.max_weight)
    assert torch.allclose(gate.source_weights(out), reference, atol=1e-6)
    d = gate.discriminator(torch.cat([torch.cat([fl, F.one_hot(yl, C).float()], 1),
                                      torch.cat([fs, F.one_hot(ys, C).float()], 1)]))
    critic = 0.5 * (F.binary_cross_entropy_with_logits(d[:5], torch.ones(5))
                    + F.binary_cross_entropy_with_logits(d[5:], torch.zeros(10)))
    assert torch.allclose(gate(out), critic, atol=1e-6)

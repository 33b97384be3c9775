"""Open-set adaptation: OSBP's and OVANet's losses and predictions on fixed tensors against
the references transcribed here (TLlib ``tllib/alignment/osbp.py`` and
``examples/domain_adaptation/openset_domain_adaptation/osbp.py``; VisionLearningGroup/OVANet
``train.py``, ``utils/loss.py`` and ``eval.py``), not from dalib."""

import math

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.models import build_model
from dalib.openset.base import open_scores
from dalib.registry import build_method

N, K, D = 8, 4, 6
PLAIN = {"augmentation": "none", "weight_decay": 0.0}


def _setup(name, **options):
    torch.manual_seed(0)
    model = build_model((D,), K, hidden=(8,), batch_norm=False)
    method = build_method(name, model, **PLAIN, **options)
    g = torch.Generator().manual_seed(1)
    xs, xt = torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)
    ys = torch.randint(0, K, (N,), generator=g)
    return method, {"source": Batch(xs, ys, None), "target": Batch(xt, None, None)}


def tllib_unknown_bce(y, t=0.5):
    """TLlib's ``UnknownClassBinaryCrossEntropy.forward``."""
    softmax_output = F.softmax(y, dim=1)
    unknown_class_prob = softmax_output[:, -1].contiguous().view(-1, 1)
    known_class_prob = 1. - unknown_class_prob
    unknown_target = torch.ones((y.size(0), 1)) * t
    known_target = 1. - unknown_target
    return - torch.mean(unknown_target * torch.log(unknown_class_prob + 1e-6)) \
        - torch.mean(known_target * torch.log(known_class_prob + 1e-6))


def test_osbp_is_tllib_open_set_backpropagation():
    for t in (0.5, 0.3):
        method, batch = _setup("osbp", t=t)
        model = method.model
        # TLlib's classifier: one linear layer of K + 1 outputs on the bottleneck features
        w = torch.cat([model.head.weight, method.unknown.weight])
        b = torch.cat([model.head.bias, method.unknown.bias])
        y_s = F.linear(model.features(batch["source"].x), w, b)
        f_t = model.features(batch["target"].x)
        y_t = F.linear(f_t, w, b)
        reference = F.cross_entropy(y_s, batch["source"].y) + tllib_unknown_bce(y_t, t)
        loss, _ = method.loss(batch)
        assert torch.allclose(loss, reference, atol=1e-6)
        # the backbone's gradient from the target term is the reversed one (coefficient 1):
        # the loss's gradient equals the source term's minus the plain target term's
        params = list(model.backbone.parameters())
        grads = torch.autograd.grad(loss, params)
        src = torch.autograd.grad(F.cross_entropy(y_s, batch["source"].y), params,
                                  retain_graph=True)
        tgt = torch.autograd.grad(tllib_unknown_bce(y_t, t), params)
        for g, a, c in zip(grads, src, tgt, strict=True):
            assert torch.allclose(g, a - c, atol=1e-6)
    # prediction: the argmax over the K + 1 outputs
    with torch.no_grad():
        x = batch["target"].x
        scores = open_scores(method, x)
        assert torch.equal(scores.argmax(1), F.linear(model.features(x), w, b).argmax(1))


def ovanet_reference(out_s, out_open, label_s, out_open_t, multi=0.1):
    """OVANet ``train.py``'s loss, ``ova_loss`` and ``open_entropy`` of ``utils/loss.py``."""
    out_open = out_open.view(out_s.size(0), 2, -1)
    label_s_sp = torch.zeros((out_open.size(0), out_open.size(2))).long()
    label_range = torch.arange(0, out_open.size(0)).long()
    label_s_sp[label_range, label_s] = 1
    loss_s = F.cross_entropy(out_s, label_s)
    out_open = F.softmax(out_open, 1)
    label_sp_neg = 1 - label_s_sp
    open_loss_pos = torch.mean(torch.sum(-torch.log(out_open[:, 1, :] + 1e-8) * label_s_sp, 1))
    open_loss_neg = torch.mean(torch.max(-torch.log(out_open[:, 0, :] + 1e-8) * label_sp_neg,
                                         1)[0])
    loss_open = 0.5 * (open_loss_pos + open_loss_neg)
    out_open_t = F.softmax(out_open_t.view(out_open_t.size(0), 2, -1), 1)
    ent_open = torch.mean(torch.mean(torch.sum(-out_open_t * torch.log(out_open_t + 1e-8), 1), 1))
    return loss_s + loss_open + multi * ent_open


def test_ovanet_is_the_references_one_vs_all_loss_and_rejection():
    for multi in (0.1, 0.5):
        method, batch = _setup("ovanet", weight=multi)
        model = method.model
        with torch.no_grad():  # give the one-vs-all layer rows of several norms
            method.ova.weight.mul_(torch.linspace(0.5, 3.0, 2 * K)[:, None])
        loss, _ = method.loss(batch)  # renormalises the rows first (C2.weight_norm())
        w = method.ova.weight
        assert torch.allclose(w.norm(dim=1), torch.ones(2 * K), atol=1e-6)
        f_s, f_t = model.features(batch["source"].x), model.features(batch["target"].x)
        reference = ovanet_reference(model.head(f_s), f_s @ w.T, batch["source"].y, f_t @ w.T,
                                     multi)
        assert torch.allclose(loss, reference, atol=1e-6)
    # eval.py: the closed-set argmax c, unknown (K) where p("not c") of classifier c > 0.5
    with torch.no_grad():
        x = torch.randn(64, D, generator=torch.Generator().manual_seed(2)) * 3
        feats = model.features(x)
        pred = model.head(feats).argmax(1)
        out_open = F.softmax((feats @ w.T).view(64, 2, -1), 1)
        pred_unk = out_open[torch.arange(64), 0, pred]
        pred[pred_unk > 0.5] = K
        assert torch.equal(open_scores(method, x).argmax(1), pred)
        assert 0 < int((pred == K).sum()) < 64  # both outcomes occur


def test_closed_set_methods_reject_by_dances_entropy_threshold():
    method, batch = _setup("dann")
    with torch.no_grad():
        x = torch.randn(64, D, generator=torch.Generator().manual_seed(3)) * 4
        p = F.softmax(method.model(x), 1)
        ent = -(p * torch.log(p)).sum(1)
        pred = p.argmax(1)
        pred[ent > math.log(K) / 2] = K  # DANCE eval.py: thr = log(num_class) / 2
        assert torch.equal(open_scores(method, x).argmax(1), pred)
        assert 0 < int((pred == K).sum()) < 64

"""Test-time adaptation: each method's loss and update on fixed tensors against the authors'
code, transcribed here (DequanWang/tent ``tent.py``; mr-eric-niu/EATA ``eata.py``;
mr-eric-niu/SAR ``sar.py``; tim-learn/SHOT ``object/image_target.py``; qinenergy/cotta
``cotta.py``; BIT-DA/RoTTA ``core/adapter/rotta.py``, ``core/utils/memory.py``; fiveai/LAME),
not from dalib."""

import copy
import math

import torch
import torch.nn.functional as F

from dalib.models import build_model
from dalib.registry import build_method

C = 10


def _method(name, **options):
    torch.manual_seed(0)
    model = build_model((1, 8, 8), C, arch="cnn", width=4)
    with torch.no_grad():  # confident predictions: some samples pass the entropy filters
        model.head.weight.mul_(40.0)
    method = build_method(name, model, **options)
    source = type("S", (), {"x": torch.rand(128, 1, 8, 8, generator=torch.Generator()
                                           .manual_seed(1))})()
    method.start({"source_val": source})
    return method


def _batch(seed=0, n=16):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def softmax_entropy(x):  # tent.py
    return -(x.softmax(1) * x.log_softmax(1)).sum(1)


def _params(method):
    return [p.detach().clone() for p in method.adapted_parameters()]


def test_bn_predicts_with_each_batchs_statistics():
    method = _method("bn")
    x = _batch()
    bns = [m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    reference = copy.deepcopy(method.model).eval()
    for m in reference.modules():  # Schneider et al. 2020: full adaptation, N = 0
        if isinstance(m, torch.nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    assert bns and torch.allclose(method.step(x), reference(x), atol=1e-5)


def test_tent_step_is_the_mean_entropy_descent():
    method = _method("tent", optimizer="sgd", momentum=0.0, lr=0.1)
    x = _batch(1)
    model = copy.deepcopy(method.model)
    params = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
              for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    loss = softmax_entropy(model(x)).mean(0)  # forward_and_adapt
    loss.backward()
    opt.step()
    method.step(x)
    for a, b in zip(method.adapted_parameters(), params, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def _eata_reference(method, x, e_margin, d_margin, fisher_alpha, current):
    """forward_and_adapt_eata's loss, the selected count and the new moving average."""
    outputs = method.model(x)
    entropys = softmax_entropy(outputs)
    ids1 = torch.where(entropys < e_margin)
    entropys = entropys[ids1]
    ids2 = torch.where(ids1[0] > -0.1)
    if current is not None:
        cos = F.cosine_similarity(current.unsqueeze(0), outputs[ids1].softmax(1), dim=1)
        ids2 = torch.where(torch.abs(cos) < d_margin)
        entropys = entropys[ids2]
    selected = outputs[ids1][ids2].softmax(1)
    new = (selected.mean(0) if current is None else 0.9 * current + 0.1 * selected.mean(0)) \
        if len(selected) else current
    coeff = 1 / torch.exp(entropys.clone().detach() - e_margin)
    loss = entropys.mul(coeff).mean(0)
    ewc = sum(fisher_alpha * (f * (p - a) ** 2).sum() for f, p, a in
              zip(method.fisher, method.adapted_parameters(), method.anchor, strict=True))
    return loss + ewc, len(entropys), new


def test_eata_loss_selection_and_fisher_are_the_references():
    method = _method("eata", margin=0.4, fisher_weight=2000.0, fisher_samples=128)
    e_margin = 0.4 * math.log(C)
    assert method.redundancy is None  # the class-count rule: 0.4 below 1,000 classes
    # the Fisher of main.py: squared gradients of the cross-entropy at the predicted label,
    # batches of 64, averaged over the batches
    model = copy.deepcopy(method.model)
    model.load_state_dict(method.initial)
    params = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
              for p in m.parameters()]
    fisher = [torch.zeros_like(p) for p in params]
    source = torch.rand(128, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for part in source.split(64):
        model.zero_grad()
        out = model(part)
        F.cross_entropy(out, out.max(1)[1]).backward()
        for f, p in zip(fisher, params, strict=True):
            f += p.grad ** 2 / 2
    for a, b in zip(method.fisher, fisher, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-10)
    counts = []
    for seed in range(3):  # the second and third batches test the redundancy filter
        x = _batch(seed + 2)
        current = None if method.average is None else method.average.clone()
        with torch.no_grad():
            state = copy.deepcopy(method.model.state_dict())
        expected, count, new = _eata_reference(method, x, e_margin, 0.4, 2000.0, current)
        method.model.load_state_dict(state)  # the reference's forward moved the statistics
        method.average = current
        value = method.loss(method.model(x))
        if count:
            assert torch.allclose(value, expected, rtol=1e-5)
        assert method.chosen == count
        assert (new is None and method.average is None) or torch.allclose(method.average, new)
        counts.append((count, int((softmax_entropy(method.model(x)) < e_margin).sum())))
    assert counts[0][0] > 0 and any(c < confident for c, confident in counts[1:]), counts


def test_eata_takes_no_step_when_nothing_is_selected():
    method = _method("eata", margin=1e-6)  # nothing is that confident
    before = _params(method)
    method.step(_batch(5))
    assert all(torch.equal(a, b) for a, b in zip(before, _params(method), strict=True))


def test_rdumb_is_eta_with_periodic_resets():
    method = _method("rdumb", reset_every=2)
    assert method.fisher_weight == 0.0  # ETA: EATA without the Fisher anchor
    start = _params(method)
    resets = []
    method.reset = lambda original=method.reset: (resets.append(len(resets)), original())
    for seed in range(2):
        method.step(_batch(seed))
    moved = _params(method)
    assert resets == [] and not all(torch.equal(a, b) for a, b in zip(start, moved,
                                                                        strict=True))
    method.step(_batch(9))  # the third batch starts from the source model
    assert resets == [0]


def test_sar_step_is_the_references_sam_step_with_both_filters():
    method = _method("sar", optimizer="sgd", momentum=0.0, lr=0.1, rho=0.05)
    margin = 0.4 * math.log(C)
    x = _batch(6)
    model = copy.deepcopy(method.model)
    names = {id(p) for p in method.adapted_parameters()}
    mine = dict(method.model.named_parameters())
    params = [p for n, p in model.named_parameters() if id(mine[n]) in names]
    outputs = model(x)  # forward_and_adapt_sar
    entropys = softmax_entropy(outputs)
    ids1 = torch.where(entropys < margin)
    entropys[ids1].mean(0).backward()
    grads = [p.grad.clone() for p in params]
    norm = torch.norm(torch.stack([g.norm(p=2) for g in grads]), p=2)
    eps = [g * (0.05 / (norm + 1e-12)) for g in grads]
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.add_(e)
    model.zero_grad()
    entropys2 = softmax_entropy(model(x))[ids1]
    ids2 = torch.where(entropys2 < margin)
    second = entropys2[ids2].mean(0)
    second.backward()
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p.sub_(e)
            p -= 0.1 * p.grad
    method.step(x)
    for a, b in zip(method.adapted_parameters(), params, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert math.isclose(method.ema, float(second), rel_tol=1e-5)  # update_ema: first value
    # the top block's norms (a ResNet's layer4) are not adapted
    from dalib.testtime.entropy import top_block
    frozen = {id(p) for p in top_block(method.model).parameters()}
    assert frozen and not frozen & {id(p) for p in method.adapted_parameters()}


def test_sar_keeps_its_moving_average_when_no_sample_is_reliable():
    method = _method("sar", margin=1e-6, reset_below=0.2)
    for seed in range(3):
        method.step(_batch(seed))
    assert method.ema is None  # the reference skips NaN losses: no reset is triggered


def test_shot_loss_is_information_maximisation_plus_centroid_pseudo_labels():
    from scipy.spatial.distance import cdist
    method = _method("shot", diversity=1.0, pseudo=0.3)
    x = _batch(7, 32)
    feats = method.model.features(x)
    logits = method.model.head(feats)
    # obtain_label: features with 1 appended, L2-normalised, soft then hard centroids
    all_fea = torch.cat((feats.detach(), torch.ones(len(x), 1)), 1)
    all_fea = (all_fea.t() / torch.norm(all_fea, p=2, dim=1)).t().numpy()
    aff = F.softmax(logits, 1).detach().numpy()
    predict = aff.argmax(1)
    initc = aff.T.dot(all_fea) / (1e-8 + aff.sum(axis=0)[:, None])
    labelset = torch.bincount(torch.from_numpy(predict), minlength=C).numpy()
    labelset = labelset.nonzero()[0]
    pred_label = labelset[cdist(all_fea, initc[labelset], "cosine").argmin(axis=1)]
    aff = torch.eye(C).numpy()[pred_label]
    initc = aff.T.dot(all_fea) / (1e-8 + aff.sum(axis=0)[:, None])
    pred_label = labelset[cdist(all_fea, initc[labelset], "cosine").argmin(axis=1)]
    from dalib.testtime.entropy import shot_labels
    assert (shot_labels(feats.detach(), F.softmax(logits, 1).detach()).numpy()
            == pred_label).all()
    softmax_out = F.softmax(logits, 1)
    entropy_loss = torch.mean(-(softmax_out * torch.log(softmax_out + 1e-5)).sum(1))
    msoftmax = softmax_out.mean(0)
    entropy_loss -= torch.sum(-msoftmax * torch.log(msoftmax + 1e-5))
    reference = 0.3 * F.cross_entropy(logits, torch.from_numpy(pred_label)) + entropy_loss
    model = copy.deepcopy(method.model)
    opt = torch.optim.AdamW([p for n, p in model.named_parameters()
                             if not n.startswith("head")], lr=1e-3, weight_decay=0.0)
    f2 = model.features(x)
    l2 = model.head(f2)
    p2 = F.softmax(l2, 1)
    m2 = p2.mean(0)
    (0.3 * F.cross_entropy(l2, torch.from_numpy(pred_label))
     + torch.mean(-(p2 * torch.log(p2 + 1e-5)).sum(1))
     + torch.sum(m2 * torch.log(m2 + 1e-5))).backward()
    opt.step()
    assert torch.isfinite(reference)
    method.step(x)
    for (n, a), b in zip(method.model.named_parameters(), model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), n


def test_cotta_step_is_the_references():
    method = _method("cotta", augmentations=3, threshold=1.0, restore=0.0,
                     optimizer="sgd", momentum=0.0, lr=0.1)  # threshold 1: always augment
    x = _batch(8)
    student, teacher = copy.deepcopy(method.model), copy.deepcopy(method.teacher)
    from dalib.augment import tta_view
    g = copy.deepcopy(method.generator)
    outputs = student(x)
    with torch.no_grad():  # anchor mean confidence < threshold: averaged augmented logits
        outputs_ema = torch.stack([teacher(tta_view(x, g, True)) for _ in range(3)]).mean(0)
    loss = (-(outputs_ema.softmax(1) * outputs.log_softmax(1)).sum(1)).mean(0)
    loss.backward()
    with torch.no_grad():
        for p in student.parameters():
            p -= 0.1 * p.grad
        for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
            t.copy_(0.999 * t + 0.001 * s)  # update_ema_variables
    predicted = method.step(x)
    assert torch.allclose(predicted, outputs_ema, atol=1e-5)  # the averaged logits predict
    for a, b in zip(method.model.parameters(), student.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(method.teacher.parameters(), teacher.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_rotta_memory_is_the_references_cstu():
    method = _method("rotta", capacity=4)

    class CSTU:  # core/utils/memory.py, transcribed
        def __init__(self, capacity, num_class):
            self.capacity, self.num_class = capacity, num_class
            self.per_class = capacity / num_class
            self.data = [[] for _ in range(num_class)]

        def score(self, age, u):
            return 1 / (1 + math.exp(-age / self.capacity)) + u / math.log(self.num_class)

        def add(self, x, label, u):
            if self.remove(label, self.score(0, u)):
                self.data[label].append([x, u, 0])
            for items in self.data:
                for item in items:
                    item[2] += 1

        def remove(self, cls, base):
            occupied = sum(len(d) for d in self.data)
            if len(self.data[cls]) < self.per_class:
                if occupied < self.capacity:
                    return True
                counts = [len(d) for d in self.data]
                return self.remove_from([c for c, n in enumerate(counts) if n == max(counts)],
                                        base)
            return self.remove_from([cls], base)

        def remove_from(self, classes, base):
            best = None
            for c in classes:
                for i, item in enumerate(self.data[c]):
                    s = self.score(item[2], item[1])
                    if best is None or s >= best[0]:
                        best = (s, c, i)
            if best is None:
                return True
            if best[0] > base:
                self.data[best[1]].pop(best[2])
                return True
            return False

    reference = CSTU(4, C)
    g = torch.Generator().manual_seed(3)
    for i in range(40):
        label = int(torch.randint(0, 3, (1,), generator=g))
        u = float(torch.rand((), generator=g)) * 2
        reference.add(i, label, u)
        method.remember(i, label, u, C)
    kept = sorted((item[0], item[2]) for items in reference.data for item in items)
    assert sorted((m[0], m[3]) for m in method.memory) == kept


def test_rotta_robust_norm_and_learning_step():
    from dalib.testtime.teacher import RobustBatchNorm
    bn = torch.nn.BatchNorm2d(3)
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(2.0)
    bn.__class__ = RobustBatchNorm
    bn.alpha = 0.05
    x = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    b_var, b_mean = torch.var_mean(x, dim=[0, 2, 3], unbiased=False)  # RobustBN2d.forward
    mean = 0.95 * 0.5 + 0.05 * b_mean
    var = 0.95 * 2.0 + 0.05 * b_var
    expected = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps)
    expected = expected * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    bn.train()
    assert torch.allclose(bn(x), expected, atol=1e-6)
    assert torch.allclose(bn.running_mean, mean) and torch.allclose(bn.running_var, var)
    bn.eval()  # evaluation: the stored statistics
    stored = (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + bn.eps)
    assert torch.allclose(bn(x), stored * bn.weight.view(1, -1, 1, 1)
                          + bn.bias.view(1, -1, 1, 1), atol=1e-6)
    # timeliness_reweighting: exp(-a) / (1 + exp(-a)), a = age / capacity
    method = _method("rotta", capacity=4, update_every=4)
    for i, item in enumerate(_batch(1, 4)):
        method.remember(item, i, 0.5, C)
    ages = torch.tensor([m[3] / 4 for m in method.memory])
    weight = torch.exp(-ages) / (1 + torch.exp(-ages))
    assert torch.allclose(weight, torch.tensor([0.2689, 0.3208, 0.3775, 0.4378]), atol=1e-4)


def test_lame_is_the_references_laplacian_optimisation():
    from dalib.testtime.output import lame_assignment
    g = torch.Generator().manual_seed(9)
    probs = F.softmax(torch.randn(12, C, generator=g) * 2, 1)
    feats = F.normalize(torch.randn(12, 5, generator=g), dim=1)
    unary = -torch.log(probs + 1e-10)  # LAME.forward, kNN_affinity(knn=5)
    dist = torch.norm(feats.unsqueeze(0) - feats.unsqueeze(1), dim=-1, p=2)
    knn_index = dist.topk(6, -1, largest=False).indices[:, 1:]
    kernel = torch.zeros(12, 12).scatter_(dim=-1, index=knn_index, value=1.0)
    y = (-unary).softmax(-1)
    for _ in range(100):  # laplacian_optimization (max_steps 100)
        y = (-unary + kernel.matmul(y)).softmax(-1)
    assert torch.allclose(lame_assignment(probs, feats, 5, 100), y, atol=1e-4)

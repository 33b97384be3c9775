"""Domain generalization and multi-source methods: each loss (and the two-step updates) on
fixed tensors against DomainBed's ``domainbed/algorithms.py`` (facebookresearch/DomainBed)
and the papers, transcribed here, not from dalib."""

import copy

import torch
import torch.nn.functional as F
from torch import autograd

from dalib.engine import Batch
from dalib.models import build_model
from dalib.registry import build_method

C, ENVS, PER = 5, 3, 6  # classes, environments, samples per environment
PLAIN = {"augmentation": "none", "weight_decay": 0.0}


class _Feeds:
    envs = ("a", "b", "c")


def _method(name, **options):
    torch.manual_seed(0)
    method = build_method(name, build_model((1, 4, 4), C, hidden=(8,), batch_norm=False),
                          **PLAIN, **options)
    method.total_steps = 100
    method.prepare({"source": _Feeds()})
    return method


def _minibatches(seed=0):
    """DomainBed's ``minibatches``: one (x, y) per environment; dalib's pooled batch."""
    g = torch.Generator().manual_seed(seed)
    parts = [(torch.rand(PER, 1, 4, 4, generator=g), torch.randint(0, C, (PER,), generator=g))
             for _ in range(ENVS)]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    env = torch.arange(ENVS).repeat_interleave(PER)
    return parts, {"source": Batch(x, y, None, env)}


def _irm_penalty(logits, y):  # DomainBed's IRM._irm_penalty
    scale = torch.tensor(1.0).requires_grad_()
    loss_1 = F.cross_entropy(logits[::2] * scale, y[::2])
    loss_2 = F.cross_entropy(logits[1::2] * scale, y[1::2])
    grad_1 = autograd.grad(loss_1, [scale], create_graph=True)[0]
    grad_2 = autograd.grad(loss_2, [scale], create_graph=True)[0]
    return torch.sum(grad_1 * grad_2)


def test_irm_is_domainbeds_irm_after_the_anneal():
    method = _method("irm", weight=100.0, anneal=0.1)
    method.updates = 50  # past the warm-up: the full weight
    parts, batch = _minibatches()
    nll = sum(F.cross_entropy(method.model(x), y) for x, y in parts) / ENVS
    penalty = sum(_irm_penalty(method.model(x), y) for x, y in parts) / ENVS
    loss, _ = method.loss(batch)
    assert torch.allclose(loss, nll + 100.0 * penalty, rtol=1e-5)
    method.updates = 5  # warm-up: weight 1
    loss, _ = method.loss(batch)
    assert torch.allclose(loss, nll + penalty, rtol=1e-5)


def test_vrex_is_domainbeds_vrex():
    method = _method("vrex", weight=10.0, anneal=0.0)
    parts, batch = _minibatches(1)
    losses = torch.stack([F.cross_entropy(method.model(x), y) for x, y in parts])
    mean = losses.mean()
    reference = mean + 10.0 * ((losses - mean) ** 2).mean()
    assert torch.allclose(method.loss(batch)[0], reference, rtol=1e-5)


def test_groupdro_is_domainbeds_groupdro():
    method = _method("groupdro", eta=0.5)
    parts, batch = _minibatches(2)
    q = torch.ones(ENVS) / ENVS
    losses = torch.stack([F.cross_entropy(method.model(x), y) for x, y in parts])
    q = q * (0.5 * losses.detach()).exp()
    q = q / q.sum()
    assert torch.allclose(method.loss(batch)[0], torch.dot(losses, q), rtol=1e-5)


def test_coral_and_mmd_are_domainbeds_penalties():
    parts, batch = _minibatches(3)

    def coral(x, y):  # DomainBed's AbstractMMD.mmd, kernel_type "mean_cov"
        mean_x, mean_y = x.mean(0, keepdim=True), y.mean(0, keepdim=True)
        cent_x, cent_y = x - mean_x, y - mean_y
        cova_x = cent_x.t() @ cent_x / (len(x) - 1)
        cova_y = cent_y.t() @ cent_y / (len(y) - 1)
        return (mean_x - mean_y).pow(2).mean() + (cova_x - cova_y).pow(2).mean()

    def mmd(x, y):  # kernel_type "gaussian", gammas 1e-3 ... 1e3
        def kernel(a, b):
            d = (a.pow(2).sum(-1, keepdim=True) - 2 * a @ b.T
                 + b.pow(2).sum(-1, keepdim=True).T).clamp_min(1e-30)
            return sum(torch.exp(-g * d) for g in (0.001, 0.01, 0.1, 1, 10, 100, 1000))
        return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()

    for name, distance in (("coral", coral), ("mmd", mmd)):
        method = _method(name, weight=2.0)
        feats = [method.model.features(x) for x, _ in parts]
        objective = sum(F.cross_entropy(method.model.head(f), y)
                        for f, (_, y) in zip(feats, parts, strict=True)) / ENVS
        penalty = sum(distance(feats[i], feats[j]) for i in range(ENVS)
                      for j in range(i + 1, ENVS)) / (ENVS * (ENVS - 1) / 2)
        loss, _ = method.loss(batch)
        assert torch.allclose(loss, objective + 2.0 * penalty, rtol=1e-4, atol=1e-6), name


def test_mixup_mixes_inputs_and_labels_with_one_weight():
    method = _method("mixup", alpha=0.2)
    _, batch = _minibatches(4)
    x, y, env = batch["source"].x, batch["source"].y, batch["source"].env
    state = (method.generator.get_state(), copy.deepcopy(method.rng))
    loss, _ = method.loss(batch)
    method.generator.set_state(state[0])
    from dalib.generalization.mixing import partners
    j = partners(env, method.generator)
    lam = float(state[1].beta(0.2, 0.2))
    assert (env[j] != env).all()  # each sample mixed with another environment's
    logits = method.model(lam * x + (1 - lam) * x[j])  # Zhang et al. 2018; DomainBed's Mixup
    reference = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[j])
    assert torch.allclose(loss, reference, rtol=1e-5)


def test_dann_and_cdann_updates_are_domainbeds_alternating_steps():
    for name, conditional in (("dann-domains", False), ("cdan-domains", True)):
        method = _method(name, lr=0.01)
        parts, batch = _minibatches(5)
        model, disc, emb = (copy.deepcopy(m) for m in (method.model, method.discriminator,
                                                       method.embedding))
        disc_opt = torch.optim.AdamW([*disc.parameters(), *emb.parameters()], lr=0.01,
                                     betas=(0.5, 0.9), weight_decay=0.0)
        gen_opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.5, 0.9),
                                    weight_decay=0.0)
        for count in (1, 2):  # AbstractDANN.update: update_count 1 -> gen step, 2 -> disc
            all_x = torch.cat([x for x, _ in parts])
            all_y = torch.cat([y for _, y in parts])
            all_z = model.features(all_x)
            disc_input = all_z + emb(all_y) if conditional else all_z
            disc_out = disc(disc_input)
            disc_labels = torch.arange(ENVS).repeat_interleave(PER)
            if conditional:  # class_balance
                y_counts = F.one_hot(all_y).sum(dim=0)
                weights = 1.0 / (y_counts[all_y] * y_counts.shape[0]).float()
                disc_loss = (weights * F.cross_entropy(disc_out, disc_labels,
                                                       reduction="none")).sum()
            else:
                disc_loss = F.cross_entropy(disc_out, disc_labels)
            if count % 2 < 1:
                disc_opt.zero_grad()
                disc_loss.backward()
                disc_opt.step()
            else:
                gen_loss = F.cross_entropy(model.head(all_z), all_y) - disc_loss
                disc_opt.zero_grad()
                gen_opt.zero_grad()
                gen_loss.backward()
                gen_opt.step()
            method.update(batch)
        for mine, ref in ((method.model, model), (method.discriminator, disc),
                          (method.embedding, emb)):
            for a, b in zip(mine.parameters(), ref.parameters(), strict=True):
                assert torch.allclose(a, b, atol=1e-6), name


def test_fish_update_is_domainbeds_fish_with_the_inner_state_kept():
    method = _method("fish", meta_lr=0.5, lr=0.01)
    parts, batch = _minibatches(6)
    network = copy.deepcopy(method.model)
    inner_state = None
    for _ in range(2):
        inner = copy.deepcopy(network)  # create_clone
        opt = torch.optim.AdamW(inner.parameters(), lr=0.01, weight_decay=0.0)
        if inner_state is not None:
            opt.load_state_dict(inner_state)
        for x, y in parts:
            loss = F.cross_entropy(inner(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        inner_state = opt.state_dict()
        with torch.no_grad():
            for p, q in zip(network.parameters(), inner.parameters(), strict=True):
                p += 0.5 * (q - p)
        method.update(batch)
    for a, b in zip(method.model.parameters(), network.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_mixstyle_mixes_normalised_maps_with_detached_statistics():
    from dalib.generalization.style import mix_statistics
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4, 3, 5, 5, generator=g)
    partner = torch.tensor([1, 0, 3, 2])
    lam = torch.tensor([0.1, 0.5, 0.9, 0.3])
    # MixStyle.forward of KaiyangZhou/mixstyle-release (eps 1e-6, statistics detached)
    mu = x.mean(dim=[2, 3], keepdim=True)
    sig = (x.var(dim=[2, 3], keepdim=True) + 1e-6).sqrt()
    x_normed = (x - mu.detach()) / sig.detach()
    lmda = lam.view(4, 1, 1, 1)
    mu_mix = mu * lmda + mu[partner] * (1 - lmda)
    sig_mix = sig * lmda + sig[partner] * (1 - lmda)
    assert torch.allclose(mix_statistics(x, partner, lam), x_normed * sig_mix + mu_mix,
                          atol=1e-5)
    model = build_model((3, 32, 32), C, arch="torchvision", name="resnet18")
    from dalib.generalization.style import convolutional_outputs
    targets = convolutional_outputs(model, 2)
    net = model.backbone.net
    assert targets[0] is net.layer1 and targets[1] is net.layer2  # the paper's positions


def test_m3sda_is_the_papers_moment_distance():
    method = _method("m3sda", weight=1.0, order=2)
    from dalib.generalization.alignment import Groups, moment_distance
    g = torch.Generator().manual_seed(8)
    feats = torch.randn(3 * PER, 8, generator=g)
    domain = torch.arange(3).repeat_interleave(PER)
    groups = Groups(feats, domain, 3)
    parts = [feats[domain == d] for d in range(3)]

    def k_moment(a, b, k):  # Peng et al. 2019, eq. (1): || E[x^k] - E[y^k] ||_2
        ma = a.mean(0) if k == 1 else (a - a.mean(0)).pow(k).mean(0)
        mb = b.mean(0) if k == 1 else (b - b.mean(0)).pow(k).mean(0)
        return (ma - mb).norm()

    reference = sum(k_moment(parts[i], parts[j], k) for i in range(3) for j in range(i + 1, 3)
                    for k in (1, 2)) / 3
    assert torch.allclose(moment_distance(groups, 2), reference, rtol=1e-4)
    assert method.order == 2


def _random_pairs_of_minibatches(minibatches, perm):
    """DomainBed's ``random_pairs_of_minibatches`` (``lib/misc.py``), its permutation given."""
    pairs = []
    for i in range(len(minibatches)):
        j = i + 1 if i < (len(minibatches) - 1) else 0
        xi, yi = minibatches[perm[i]][0], minibatches[perm[i]][1]
        xj, yj = minibatches[perm[j]][0], minibatches[perm[j]][1]
        min_n = min(len(xi), len(xj))
        pairs.append(((xi[:min_n], yi[:min_n]), (xj[:min_n], yj[:min_n])))
    return pairs


def test_mldg_update_is_domainbeds_first_order_mldg():
    for beta in (1.0, 0.5):
        method = _method("mldg", beta=beta, lr=0.01)
        parts, batch = _minibatches(7)
        parts[2] = (parts[2][0][:4], parts[2][1][:4])  # an environment with fewer samples
        keep = torch.cat([torch.arange(12), torch.arange(12, 16)])
        batch = {"source": Batch(*(t[keep] for t in (batch["source"].x, batch["source"].y)),
                                 None, batch["source"].env[keep])}
        network = copy.deepcopy(method.model)
        optimizer = torch.optim.AdamW(network.parameters(), lr=0.01, weight_decay=0.0)
        state = method.pair_generator.get_state()
        perm = torch.randperm(ENVS, generator=torch.Generator().set_state(state)).tolist()
        # DomainBed MLDG.update
        num_mb = len(parts)
        optimizer.zero_grad()
        for p in network.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for (xi, yi), (xj, yj) in _random_pairs_of_minibatches(parts, perm):
            inner_net = copy.deepcopy(network)
            inner_opt = torch.optim.Adam(inner_net.parameters(), lr=0.01, weight_decay=0.0)
            inner_obj = F.cross_entropy(inner_net(xi), yi)
            inner_opt.zero_grad()
            inner_obj.backward()
            inner_opt.step()
            for p_tgt, p_src in zip(network.parameters(), inner_net.parameters(), strict=True):
                if p_src.grad is not None:
                    p_tgt.grad.data.add_(p_src.grad.data / num_mb)
            loss_inner_j = F.cross_entropy(inner_net(xj), yj)
            grad_inner_j = autograd.grad(loss_inner_j, inner_net.parameters(), allow_unused=True)
            for p, g_j in zip(network.parameters(), grad_inner_j, strict=True):
                if g_j is not None:
                    p.grad.data.add_(beta * g_j.data / num_mb)
        optimizer.step()
        method.update(batch)
        for a, b in zip(method.model.parameters(), network.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6)


def _sagnet_randomize(x, what, alpha, idx_swap, eps=1e-5):
    """DomainBed's ``SagNet.randomize``, its random draws given."""
    sizes = x.size()
    if len(sizes) == 4:
        x = x.view(sizes[0], sizes[1], -1)
        alpha = alpha.unsqueeze(-1)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True)
    x = (x - mean) / (var + eps).sqrt()
    if what == "style":
        mean = alpha * mean + (1 - alpha) * mean[idx_swap]
        var = alpha * var + (1 - alpha) * var[idx_swap]
    else:
        x = x[idx_swap].detach()
    x = x * (var + eps).sqrt() + mean
    return x.view(*sizes)


def test_sagnet_update_is_domainbeds_three_steps():
    method = _method("sagnet", lr=0.01, adversary_weight=0.3)
    _, batch = _minibatches(8)
    m = copy.deepcopy(method.model)
    style = copy.deepcopy(method.style_head)
    draws = torch.Generator().set_state(method.draws.get_state())
    n = len(batch["source"].y)

    def draw():
        return torch.rand(n, 1, generator=draws), torch.randperm(n, generator=draws)

    opt_f = torch.optim.AdamW([*m.backbone.parameters(), *m.bottleneck.parameters()], lr=0.01,
                              weight_decay=0.0)
    opt_c = torch.optim.AdamW(m.head.parameters(), lr=0.01, weight_decay=0.0)
    opt_s = torch.optim.AdamW(style.parameters(), lr=0.01, weight_decay=0.0)
    all_x, all_y = batch["source"].x, batch["source"].y
    opt_f.zero_grad()
    opt_c.zero_grad()
    loss_c = F.cross_entropy(m.head(_sagnet_randomize(m.features(all_x), "style", *draw())), all_y)
    loss_c.backward()
    opt_f.step()
    opt_c.step()
    opt_s.zero_grad()
    loss_s = F.cross_entropy(style(_sagnet_randomize(m.features(all_x), "content", *draw())),
                             all_y)
    loss_s.backward()
    opt_s.step()
    opt_f.zero_grad()
    loss_adv = -F.log_softmax(style(_sagnet_randomize(m.features(all_x), "content", *draw())),
                              dim=1).mean(1).mean()
    (loss_adv * 0.3).backward()
    opt_f.step()
    logs = method.update(batch)
    assert torch.allclose(logs["loss"], loss_c, atol=1e-6)
    assert torch.allclose(logs["style"], loss_s, atol=1e-6)
    for a, b in [*zip(method.model.parameters(), m.parameters(), strict=True),
                 *zip(method.style_head.parameters(), style.parameters(), strict=True)]:
        assert torch.allclose(a, b, atol=1e-6)


def test_m3sda_beta_steps_are_the_papers_classifier_pairs():
    """M3SDA-beta (Peng et al. 2019, section 4; the released ``solver_MSDA.py``'s
    ``train_MSDA`` steps with one pair per source): (A) the features and every classifier
    fit the sources plus the weighted moment distance of sources and target; (B) the
    classifiers, features fixed, fit their sources minus each pair's discrepancy on the
    target (MCD's mean absolute difference of probabilities); (C) ``num_k`` feature steps
    on the pairs' summed discrepancy. Plain SGD, so each step is ``p -= lr * grad``."""
    lr, weight, num_k = 0.1, 0.5, 2
    method = _method("m3sda-beta", optimizer="sgd", momentum=0.0, lr=lr, weight=weight,
                     order=2, num_k=num_k)
    heads = [copy.deepcopy(h) for h in method.classifiers()]
    assert len(heads) == 2 * ENVS  # a pair per source domain
    g_net = copy.deepcopy(torch.nn.Sequential(method.model.backbone, method.model.bottleneck))
    parts, batch = _minibatches(3)
    xt = torch.rand(PER, 1, 4, 4, generator=torch.Generator().manual_seed(9))
    batch["target"] = Batch(xt, None, None)

    def sgd(params, loss):
        grads = autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, gr in zip(params, grads, strict=True):
                if gr is not None:
                    p -= lr * gr

    def moments(domains):  # Peng et al. 2019, eq. (1), mean over pairs of domains
        def k_moment(a, b, k):
            ma = a.mean(0) if k == 1 else (a - a.mean(0)).pow(k).mean(0)
            mb = b.mean(0) if k == 1 else (b - b.mean(0)).pow(k).mean(0)
            return (ma - mb).norm()
        pairs = [(i, j) for i in range(len(domains)) for j in range(i + 1, len(domains))]
        return sum(k_moment(domains[i], domains[j], k) for i, j in pairs
                   for k in (1, 2)) / len(pairs)

    def own_sources(feats_per_source):  # classifier pair i on source i
        return sum(F.cross_entropy(heads[2 * i + c](f), y)
                   for i, (f, (_, y)) in enumerate(zip(feats_per_source, parts, strict=True))
                   for c in (0, 1))

    def discrepancy(f):
        return sum((F.softmax(heads[2 * i](f), 1) - F.softmax(heads[2 * i + 1](f), 1))
                   .abs().mean() for i in range(ENVS))

    g_params = list(g_net.parameters())
    h_params = [p for h in heads for p in h.parameters()]
    feats = [g_net(x) for x, _ in parts]
    sgd(g_params + h_params, own_sources(feats) + weight * moments(feats + [g_net(xt)]))
    with torch.no_grad():
        feats, ft = [g_net(x) for x, _ in parts], g_net(xt)
    sgd(h_params, own_sources(feats) - discrepancy(ft))
    for _ in range(num_k):
        sgd(g_params, discrepancy(g_net(xt)))
    method.update(batch)
    for a, b in zip([*method.model.backbone.parameters(), *method.model.bottleneck.parameters(),
                     *[p for h in method.classifiers() for p in h.parameters()]],
                    g_params + h_params, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # the released code's variant: one pair shared by every source
    shared = _method("m3sda-beta", pairs="shared")
    assert len(shared.classifiers()) == 2

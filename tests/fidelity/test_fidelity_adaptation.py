"""Domain adaptation and transfer baselines: each method's loss (and MCD's update) on fixed
tensors against the reference formula, transcribed here from the paper and the reference
code each docstring names (TLlib ``tllib/alignment/*.py``, ``tllib/self_training/*.py``;
mil-tokyo/MCD_DA; Britefury/self-ensemble-visual-domain-adapt), not from dalib."""

import copy

import torch
import torch.nn.functional as F

from dalib.adaptation.base import Outputs
from dalib.models import build_model
from dalib.registry import build_method

N, C, D, W = 8, 4, 6, 8  # batch, classes, input and feature widths
PLAIN = {"augmentation": "none", "weight_decay": 0.0}


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, W, generator=g), torch.randn(N, W, generator=g),
            torch.randn(N, C, generator=g), torch.randn(N, C, generator=g),
            torch.randint(0, C, (N,), generator=g))


def _term(name, **options):
    torch.manual_seed(0)
    method = build_method(name, build_model((D,), C, hidden=(8,), batch_norm=False),
                          **PLAIN, **options)
    term = method.terms[name]
    term.eval()  # discriminators without dropout or batch statistics
    return method, term


def _out(fs, ft, ls, lt, ys):
    return Outputs(ys, None, None, fs, ft, ls, lt)


def tllib_bce(d, label, weight=None):
    """TLlib's ``DomainAdversarialLoss.bce``: torch's (weighted) binary cross-entropy, mean."""
    return F.binary_cross_entropy(torch.sigmoid(d), torch.full_like(d, label), weight=weight)


def tllib_entropy(p):
    """``tllib/modules/entropy.py``: -sum p log(p + 1e-5)."""
    return -(p * torch.log(p + 1e-5)).sum(1)


def test_dann_is_tllib_domain_adversarial_loss():
    fs, ft, ls, lt, ys = _tensors()
    _, term = _term("dann")
    d = term.discriminator(torch.cat([fs, ft]))
    reference = 0.5 * (tllib_bce(d[:N], 1.0) + tllib_bce(d[N:], 0.0))
    assert torch.allclose(term(_out(fs, ft, ls, lt, ys)), reference, atol=1e-6)


def test_cdan_and_cdan_e_are_tllib_conditional_loss():
    fs, ft, ls, lt, ys = _tensors(1)
    for entropy_conditioning in (False, True):
        _, term = _term("cdan-e" if entropy_conditioning else "cdan")
        g = F.softmax(torch.cat([ls, lt]), 1)
        f = torch.cat([fs, ft])
        h = torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).view(2 * N, -1)  # MultiLinearMap
        d = term.discriminator(h)
        label = torch.cat([torch.ones(N), torch.zeros(N)])
        if entropy_conditioning:
            w = 1.0 + torch.exp(-tllib_entropy(g))
            w = w / w.sum() * 2 * N
            reference = F.binary_cross_entropy(torch.sigmoid(d), label, weight=w)
        else:
            reference = F.binary_cross_entropy(torch.sigmoid(d), label)
        assert torch.allclose(term(_out(fs, ft, ls, lt, ys)), reference, atol=1e-4)


def test_mdd_is_tllib_margin_disparity_discrepancy():
    fs, ft, ls, lt, ys = _tensors(2)
    _, term = _term("mdd")
    y_s_adv, y_t_adv = term.adversary(fs), term.adversary(ft)
    source = F.cross_entropy(y_s_adv, ls.argmax(1))
    target = -F.nll_loss(torch.log(torch.clamp(1.0 - F.softmax(y_t_adv, 1) + 1e-6, max=1.0)),
                         lt.argmax(1))
    reference = -(-4.0 * source + target)  # transfer_loss = -mdd(...), margin 4
    assert torch.allclose(term(_out(fs, ft, ls, lt, ys)), reference, atol=1e-5)


def test_dan_is_tllib_multiple_kernel_mmd():
    fs, ft, ls, lt, ys = _tensors(3)
    _, term = _term("dan")

    def mkmmd(zs, zt):  # MultipleKernelMaximumMeanDiscrepancy(linear=False), GaussianKernel
        z = torch.cat([zs, zt])
        d2 = ((z.unsqueeze(0) - z.unsqueeze(1)) ** 2).sum(2)
        k = sum(torch.exp(-d2 / (2 * a * d2.mean())) for a in (2 ** -3, 2 ** -2, 2 ** -1, 1, 2))
        index = torch.zeros(2 * N, 2 * N)
        for i in range(N):
            for j in range(N):
                if i != j:
                    index[i, j] = index[i + N, j + N] = 1.0 / (N * (N - 1))
                index[i, j + N] = index[i + N, j] = -1.0 / (N * N)
        return (k * index).sum() + 2.0 / (N - 1)

    reference = mkmmd(fs, ft) + mkmmd(ls, lt)
    constant = 2 * 2.0 / (N - 1)  # TLlib's constant, which moves no gradient
    assert torch.allclose(term(_out(fs, ft, ls, lt, ys)) + constant, reference, atol=1e-5)


def test_deep_coral_is_the_papers_frobenius_distance():
    fs, ft, ls, lt, ys = _tensors(4)
    _, term = _term("deep-coral")
    cs, ct = torch.cov(ls.T), torch.cov(lt.T)  # Sun & Saenko 2016, eq. (1): / 4 d^2
    reference = ((cs - ct) ** 2).sum() / (4 * C * C)
    assert torch.allclose(term(_out(fs, ft, ls, lt, ys)), reference, atol=1e-6)


def test_mcc_is_tllib_minimum_class_confusion():
    fs, ft, ls, lt, ys = _tensors(5)
    _, term = _term("mcc")
    p = F.softmax(lt / 2.5, 1)
    w = 1 + torch.exp(-tllib_entropy(p))
    w = (N * w / w.sum()).unsqueeze(1)
    m = (p * w).T @ p
    m = m / m.sum(1)  # TLlib's broadcast: column j over row sum j
    reference = (m.sum() - torch.trace(m)) / C
    assert torch.allclose(term(_out(fs, ft, ls, lt, ys)), reference, atol=1e-4)


def test_entmin_and_im_are_the_papers_objectives():
    fs, ft, ls, lt, ys = _tensors(6)
    p = F.softmax(lt, 1)
    _, entmin = _term("entmin")  # Grandvalet & Bengio 2004: mean entropy
    assert torch.allclose(entmin(_out(fs, ft, ls, lt, ys)), (-(p * p.log()).sum(1)).mean(),
                          atol=1e-5)
    _, im = _term("im")  # SHOT's information maximisation (object/image_target.py)
    mean = p.mean(0)
    reference = tllib_entropy(p).mean() - (-(mean * torch.log(mean + 1e-5)).sum())
    assert torch.allclose(im(_out(fs, ft, ls, lt, ys)), reference, atol=1e-4)


def test_pseudo_label_keeps_the_most_confident_portion_of_each_class():
    torch.manual_seed(0)
    method, term = _term("pseudo-label")
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, D, generator=g)
    term.target = type("T", (), {"x": x, "y": None, "name": "t", "__len__": lambda s: 40})()
    term.relabel(0.5)
    with torch.no_grad():
        probs = F.softmax(method.model.eval()(x), 1)
    conf, pred = probs.max(1)
    expected = set()
    for c in pred.unique():  # CBST (Zou et al. 2018): per class, the top portion by confidence
        idx = torch.nonzero(pred == c).flatten()
        keep = max(1, round(0.5 * len(idx)))
        expected |= set(idx[conf[idx].argsort(descending=True)[:keep]].tolist())
    assert set(term.kept.tolist()) == expected
    assert torch.equal(term.labels, pred[term.kept])


def test_fixmatch_is_tllib_confidence_based_self_training():
    fs, ft, ls, lt, ys = _tensors(8)
    method, term = _term("fixmatch", threshold=0.5)
    xt = torch.randn(N, D)
    out = Outputs(ys, xt, xt, fs, ft, ls, lt)
    torch.manual_seed(1)
    method.generator.manual_seed(3)
    value = term(out)
    method.generator.manual_seed(3)
    strong = method.model(term._strong(xt, method))
    confidence, pseudo = F.softmax(lt, 1).max(1)  # ConfidenceBasedSelfTrainingLoss
    reference = (F.cross_entropy(strong, pseudo, reduction="none")
                 * (confidence > 0.5).float()).mean()
    assert torch.allclose(value, reference, atol=1e-6)


def test_mean_teacher_is_french_et_al_self_ensembling_loss():
    fs, ft, ls, lt, ys = _tensors(9)
    method, term = _term("mean-teacher", threshold=0.2, weight=3.0)
    xt = torch.randn(N, D)
    out = Outputs(ys, xt, xt, fs, ft, ls, lt)
    with torch.no_grad():
        teacher = F.softmax(term.predictor.train()(xt), 1)
    student = F.softmax(lt, 1)
    # compute_aug_loss: squared difference averaged over classes, confidence mask, batch mean
    mask = (teacher.max(1)[0] > 0.2).float()
    aug = (((student - teacher) ** 2).mean(1) * mask).mean()
    # class balance: bce(mean prediction, 1/C) averaged, times C, times the mask's mean
    avg = student.mean(0)
    t = 1.0 / C
    bce = -(t * torch.log(avg + 1e-6) + (1 - t) * torch.log(1 - avg + 1e-6))
    balance = bce.mean() * C * mask.mean()
    reference = 3.0 * aug + 0.005 * balance  # unsup_weight 3, cls_balance 0.005
    assert torch.allclose(term.weight * term(out), reference, atol=1e-6)
    assert not term.joint  # each domain in its own forward pass, as the reference


def test_pada_is_tllib_partial_adversarial_loss():
    torch.manual_seed(0)
    method, term = _term("pada", ema=0.0)
    fs, ft, ls, lt, ys = _tensors(10)
    out = _out(fs, ft, ls, lt, ys)
    out.source_weight = w = term.source_weights(out)
    gamma = F.softmax(lt / 0.1, 1).mean(0)  # AutomaticUpdateClassWeightModule, T = 0.1
    gamma = gamma / gamma.max()
    # the classifier loss: torch's class-weighted cross-entropy, sum(w ce) / sum(w)
    reference_cls = F.cross_entropy(ls, ys, weight=gamma)
    from dalib.method import cross_entropy
    assert torch.allclose(cross_entropy(ls, ys, w), reference_cls, atol=1e-6)
    # the domain loss: source weights gamma_y rescaled to mean 1
    d = term.discriminator(torch.cat([fs, ft]))
    ws = gamma[ys] / gamma[ys].mean()
    reference = 0.5 * (tllib_bce(d[:N], 1.0, ws) + tllib_bce(d[N:], 0.0))
    assert torch.allclose(term(out), reference, atol=1e-5)


def test_mcd_update_is_mcd_da_three_steps():
    torch.manual_seed(0)
    model = build_model((D,), C, hidden=(8,), batch_norm=True)
    method = build_method("mcd", model, optimizer="sgd", momentum=0.0, lr=0.1, num_k=2,
                          **PLAIN)
    g = torch.Generator().manual_seed(11)
    xs, xt = torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)
    ys = torch.randint(0, C, (N,), generator=g)
    # the reference on copies: G = backbone, C1 = head, C2 = head2, plain SGD
    G = copy.deepcopy(model.backbone)
    C1, C2 = copy.deepcopy(model.head), copy.deepcopy(method.head2)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.1)
    opt_c = torch.optim.SGD([*C1.parameters(), *C2.parameters()], lr=0.1)

    def discrepancy(a, b):
        return torch.mean(torch.abs(F.softmax(a, 1) - F.softmax(b, 1)))

    def zero():
        opt_g.zero_grad()
        opt_c.zero_grad()

    f = G(xs)  # step A
    (F.cross_entropy(C1(f), ys) + F.cross_entropy(C2(f), ys)).backward()
    opt_g.step()
    opt_c.step()
    zero()
    fs, ft = G(xs), G(xt)  # step B: separate forward passes
    (F.cross_entropy(C1(fs), ys) + F.cross_entropy(C2(fs), ys)
     - discrepancy(C1(ft), C2(ft))).backward()
    opt_c.step()
    zero()
    for _ in range(2):  # step C
        ft = G(xt)
        discrepancy(C1(ft), C2(ft)).backward()
        opt_g.step()
        zero()
    from dalib.engine import Batch
    method.update({"source": Batch(xs, ys, None), "target": Batch(xt, None, None)})
    for mine, ref in ((model.backbone, G), (model.head, C1), (method.head2, C2)):
        for a, b in zip(mine.state_dict().values(), ref.state_dict().values(), strict=True):
            assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_supervised_baselines_are_cross_entropy_of_their_feeds():
    from dalib.engine import Batch
    g = torch.Generator().manual_seed(12)
    x, y = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)
    xl, yl = torch.randn(4, D, generator=g), torch.randint(0, C, (4,), generator=g)
    feeds = {"source": Batch(x, y, None), "target_labelled": Batch(xl, yl, None),
             "target_oracle": Batch(xl, yl, None)}
    for name, parts in (("source-only", ["source"]), ("target-only", ["target_labelled"]),
                        ("source+target", ["source", "target_labelled"]),
                        ("target-oracle", ["target_oracle"]), ("erm", ["source"])):
        torch.manual_seed(0)
        method = build_method(name, build_model((D,), C, hidden=(8,), batch_norm=False),
                              **PLAIN)
        loss, _ = method.loss({k: feeds[k] for k in method.needs})
        reference = sum(F.cross_entropy(method.model(feeds[p].x), feeds[p].y) for p in parts)
        assert torch.allclose(loss, reference, atol=1e-6), name


def test_adabn_statistics_are_the_targets_mean_and_variance():
    torch.manual_seed(0)
    method = build_method("adabn", build_model((D,), C, hidden=(8,), batch_norm=True),
                          **PLAIN)
    target = torch.randn(300, D) * 3 + 1
    method.prepare({"target": type("T", (), {"x": target})()})
    method.estimate_target_statistics()
    bn = next(m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    first = next(m for m in method.model.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():  # Li et al. 2017: the layer's input statistics over the target
        h = first(target)
    assert torch.allclose(bn.running_mean, h.mean(0), atol=1e-4)
    assert torch.allclose(bn.running_var, h.var(0), rtol=1e-3)

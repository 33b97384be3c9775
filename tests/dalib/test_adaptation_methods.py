"""Every adaptation method trains on real digits: finite losses, usable predictions, and its
own parameters (discriminators, heads, teachers) handled as documented."""

import pytest
import torch

from dalib.engine import Budget, Trace, accuracy, fit_transfer, seed_everything
from dalib.models import build_model
from dalib.registry import REGISTRY, check_method
from scenarios.datasets import load_uci_digits
from scenarios.errors import InputError
from scenarios.transfer import build_transfer

ADAPTATION = sorted(n for n, e in REGISTRY.items() if e.kind == "transfer"
                    and "target_labelled" not in e.needs and "target_oracle" not in e.needs)


@pytest.fixture(scope="module")
def scenario():
    uci = load_uci_digits()
    return build_transfer("t", uci, uci, seed=0, target_shifts=[{"name": "rotate", "degrees": 20}])


@pytest.mark.parametrize("name", ADAPTATION + ["dann+mcc+pseudo-label"])
def test_method_trains_and_predicts(scenario, name):
    seed_everything(0)
    arch = "cnn" if name == "mixstyle" else "auto"  # style mixing needs feature maps
    # rsd: a batch must span a proper subspace of the features (batch < width)
    width = 128 if name == "rsd" else 64
    model = build_model(scenario.input_shape, scenario.num_classes, bottleneck=width, arch=arch)
    # a fast teacher, so that 40 steps move it away from the random init
    params = {"ema": 0.8} if name == "mean-teacher" else {}
    method = check_method(name, params, "transfer").build(model, params)
    trace = Trace(log_every=10)
    fit_transfer(method, scenario, Budget(steps=40, batch_size=64), torch.device("cpu"), 0, trace)
    curves = trace.to_dict()
    assert all(torch.isfinite(torch.tensor(v)).all() for k, v in curves.items() if k != "step")
    assert method.updates == 40
    # far above chance on the (unrotated) source after 40 steps
    assert accuracy(method, scenario.source_test) > 50


def test_terms_train_their_own_parameters(scenario):
    model = build_model(scenario.input_shape, scenario.num_classes)
    method = check_method("dann", {}, "transfer").build(model, {})
    disc = method.terms["dann"].discriminator
    before = [p.clone() for p in disc.parameters()]
    fit_transfer(method, scenario, Budget(steps=5), torch.device("cpu"), 0, Trace())
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters(), strict=True))


def test_mean_teacher_is_an_average_of_the_student(scenario):
    model = build_model(scenario.input_shape, scenario.num_classes)
    method = check_method("mean-teacher", {"ema": 0.5}, "transfer").build(model, {"ema": 0.5})
    teacher = method.terms["mean-teacher"].predictor
    old = [p.clone() for p in teacher.parameters()]
    fit_transfer(method, scenario, Budget(steps=1), torch.device("cpu"), 0, Trace())
    for o, t, s in zip(old, teacher.parameters(), model.parameters(), strict=True):
        assert torch.allclose(t, 0.5 * o + 0.5 * s)
        assert not t.requires_grad


def test_pseudo_labels_are_class_balanced():
    uci = load_uci_digits()
    sc = build_transfer("t", uci, uci, seed=0)
    model = build_model(sc.input_shape, sc.num_classes)
    method = check_method("pseudo-label", {}, "transfer").build(model, {"rounds": 1,
                                                                        "start": 0.5})
    fit_transfer(method, sc, Budget(steps=60), torch.device("cpu"), 0, Trace())
    term = method.terms["pseudo-label"]
    counts = torch.bincount(term.labels, minlength=10)
    # half of each predicted class is kept: every class present, none crowding out the rest
    assert (counts > 0).all() and counts.max() < 3 * counts.min()
    assert len(term.kept) == pytest.approx(0.5 * len(sc.target_train), rel=0.05)


def test_combination_options_are_checked():
    entry = check_method("dann+mcc", {"mcc": {"temperature": 2.0}, "lr": 1e-3}, "transfer")
    assert entry.terms == ("dann", "mcc")
    with pytest.raises(InputError, match="methods.mcc.temp: unknown option of 'mcc'"):
        check_method("dann+mcc", {"mcc": {"temp": 2.0}}, "transfer")
    with pytest.raises(InputError, match="unknown hyperparameter of 'dann'"):
        check_method("dann", {"temperature": 2.0}, "transfer")
    with pytest.raises(InputError, match="unknown method 'dann\\+mcd'"):
        check_method("dann+mcd", {}, "transfer")


def test_structural_flags_are_not_hyperparameters():
    for name in ("source-only", "target-only", "target-oracle"):
        with pytest.raises(InputError, match="unknown hyperparameter"):
            check_method(name, {"joint": True}, "transfer")
    with pytest.raises(InputError, match="unknown hyperparameter"):
        check_method("naive", {"data": "source"}, "stream")


@pytest.mark.parametrize("name", ["gate", "dann+gate", "source+target", "linear-probe",
                                  "finetune-top", "finetune-full", "l2-sp", "bss",
                                  "finetune-full[gate]"])
def test_methods_with_target_labels_train_and_predict(name):
    params = {"gate": True} if name.endswith("[gate]") else {}
    name = name.removesuffix("[gate]")
    uci = load_uci_digits()
    sc = build_transfer("t", uci, uci, seed=0, k=3,
                        target_shifts=[{"name": "rotate", "degrees": 20}])
    seed_everything(0)
    model = build_model(sc.input_shape, sc.num_classes, bottleneck=64)
    method = check_method(name, params, "transfer").build(model, params)
    assert "target_labelled" in method.needs
    fit_transfer(method, sc, Budget(steps=40, batch_size=64), torch.device("cpu"), 0, Trace())
    assert accuracy(method, sc.target_test) > 30  # far above chance after 40 steps


def _outputs(feat_s, ys, feat_l, yl, logits_t=None):
    from dalib.adaptation.base import Outputs

    n = len(feat_s)
    logits_t = torch.zeros(n, 4) if logits_t is None else logits_t
    return Outputs(ys, None, None, feat_s, feat_s, torch.zeros(n, 4), logits_t, yl, feat_l,
                   torch.zeros(len(yl), 4))


def test_gate_down_weights_source_pairs_unlike_the_target():
    torch.manual_seed(0)
    model = build_model((16,), 4, bottleneck=8)
    gate = check_method("gate", {}, "transfer").build(model, {}).terms["gate"]
    centres = torch.randn(4, 8) * 3
    opt = torch.optim.Adam(gate.discriminator.parameters(), lr=1e-2)

    def sample(n, noisy):
        y = torch.randint(0, 4, (n,))
        f = centres[y] + torch.randn(n, 8) * 0.3
        return f, (y + torch.randint(1, 4, (n,))) % 4 if noisy else y

    for _ in range(200):
        (fc, yc), (fn, yn), (fl, yl) = sample(32, False), sample(32, True), sample(32, False)
        loss = gate(_outputs(torch.cat([fc, fn]), torch.cat([yc, yn]), fl, yl))
        opt.zero_grad()
        loss.backward()
        opt.step()
    gate.eval()
    (fc, yc), (fn, yn) = sample(200, False), sample(200, True)
    w = gate.source_weights(_outputs(torch.cat([fc, fn]), torch.cat([yc, yn]), fc[:4], yc[:4]))
    assert w[:200].mean() > 3 * w[200:].mean()
    assert float(w.max()) <= gate.max_weight


def test_pada_down_weights_classes_the_target_lacks():
    model = build_model((16,), 4, bottleneck=8)
    pada = check_method("pada", {"ema": 0.5}, "transfer").build(model, {"ema": 0.5}
                                                               ).terms["pada"]
    logits_t = torch.tensor([[5.0, 5.0, -5.0, -5.0]]).repeat(16, 1)  # target: classes 0, 1
    for _ in range(10):
        out = _outputs(torch.randn(16, 8), torch.randint(0, 4, (16,)), torch.randn(2, 8),
                       torch.zeros(2, dtype=torch.long), logits_t)
        w = pada.source_weights(out)
    gamma = pada.gamma()
    assert gamma[:2].min() > 0.99 and gamma[2:].max() < 0.01
    expected = gamma[out.ys]  # normalised to mean 1 in the batch (sum(w ce) / sum(w))
    assert torch.allclose(w, expected / expected.mean())
    # DANN's domain loss counts the source samples by these weights
    out.source_weight = w
    loss = pada(out)
    out.source_weight = None
    assert not torch.isclose(loss, pada(out))

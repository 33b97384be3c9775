import math

import pytest
import torch

from dalib.augment import random_shift
from dalib.engine import Batch, Budget, Sampler, resolve_device
from dalib.models import build_model
from scenarios.datasets import load_uci_digits


def test_sampler_visits_every_sample_once_per_epoch():
    d = load_uci_digits()
    s = Sampler(d, 100, torch.Generator().manual_seed(0))
    seen = torch.cat([s.next().y for _ in range(len(d) // 100)])
    assert len(seen) == 1700
    assert torch.equal(torch.bincount(seen, minlength=10).clamp(max=1), torch.ones(10, dtype=torch.long))
    unlabelled = Sampler(d, 32, torch.Generator().manual_seed(0), labelled=False).next()
    assert unlabelled.y is None and unlabelled.x.shape == (32, 1, 8, 8)
    small = Sampler(d.subset(torch.arange(10)), 64, torch.Generator().manual_seed(0))
    assert small.next().x.shape[0] == 10


def test_random_shift_translates_by_at_most_one_pixel():
    x = torch.zeros(500, 1, 8, 8)
    x[:, :, 3, 4] = 1.0
    out = random_shift(x, 1, torch.Generator().manual_seed(0))
    pos = out.flatten(1).argmax(1)
    rows, cols = pos // 8, pos % 8
    assert out.sum(dim=(1, 2, 3)).eq(1).all()
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}
    vec = torch.ones(4, 10)
    assert random_shift(vec, 1) is vec


def test_budget_epochs_to_steps():
    assert Budget(epochs=2, batch_size=64).steps_for(640) == 20
    assert Budget(steps=7).steps_for(10_000) == 7


def test_models_by_input_shape():
    assert build_model((1, 8, 8), 10).backbone.__class__.__name__ == "MLP"
    lenet = build_model((1, 28, 28), 10)
    assert lenet.backbone.__class__.__name__ == "LeNet"
    assert lenet(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    cnn = build_model((3, 32, 32), 5, arch="cnn", bottleneck=64)
    assert cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 5) and cnn.feature_dim == 64
    mlp = build_model((20,), 3, hidden=[16])
    assert mlp(torch.zeros(4, 20)).shape == (4, 3)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"


def test_importing_dalib_does_not_import_avalanche():
    import subprocess
    import sys

    code = ("import sys, dalib, dalib.cli, dalib.runner, dalib.registry; "
            "sys.exit('avalanche' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("schedule, at_end", [
    ("constant", 1.0), ("anneal", 11.0 ** -0.75), ("cosine", 0.0)])
def test_lr_schedule_follows_progress_for_every_parameter_group(schedule, at_end):
    """Ganin & Lempitsky's annealing lr (1 + 10 p)^-0.75 and cosine decay, on the model's and
    the discriminator's parameter groups alike."""
    from dalib.registry import check_method

    model = build_model((1, 8, 8), 10, bottleneck=16)
    method = check_method("dann", {"schedule": schedule, "lr": 0.01}, "transfer").build(
        model, {"schedule": schedule, "lr": 0.01})
    method.total_steps = 10
    batch = {k: Batch(torch.rand(8, 1, 8, 8), torch.arange(8) % 10, None)
             for k in ("source", "target")}
    seen = []
    for _ in range(10):
        method.update(batch)
        seen.append([g["lr"] for g in method.optimizer.param_groups])
    assert len(seen[0]) == 2  # the model and the domain discriminator
    for lrs, p in ((seen[5], 0.5), (seen[9], 0.9)):
        want = 0.01 * {"constant": 1.0, "anneal": (1 + 10 * p) ** -0.75,
                       "cosine": 0.5 * (1 + math.cos(math.pi * p))}[schedule]
        assert lrs == pytest.approx([want, want])
    method.updates = 10
    method.schedule_lr(method.optimizer)
    assert method.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * at_end, abs=1e-12)


def test_placement_keeps_inputs_over_the_budget_on_the_host(monkeypatch):
    from dalib.engine import Placement
    from scenarios.datasets import load_uci_digits

    uci = load_uci_digits()
    size = uci.x.element_size() * uci.x.nelement()
    monkeypatch.setenv("DALIB_DEVICE_MEMORY", str(int(1.5 * size)))
    place = Placement(torch.device("cpu"))
    first, second = place(uci), place(uci)
    assert place.left == pytest.approx(0.5 * size)  # the second did not fit: left on the host
    assert first.x.device.type == second.x.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-to-GPU batches need a GPU")
def test_host_held_inputs_train_the_same_model_as_device_held_ones(monkeypatch):
    from dalib.engine import Budget, Trace, fit_transfer, seed_everything
    from dalib.models import build_model
    from dalib.registry import check_method
    from scenarios.datasets import load_uci_digits
    from scenarios.transfer import build_transfer

    uci = load_uci_digits()
    sc = build_transfer("t", uci, uci, seed=0, target_shifts=[{"name": "rotate", "degrees": 30}])
    weights = []
    for budget in ("1e12", "0"):
        monkeypatch.setenv("DALIB_DEVICE_MEMORY", budget)
        seed_everything(0)
        method = check_method("dann", {}, "transfer").build(
            build_model(sc.input_shape, sc.num_classes).cuda(), {})
        fit_transfer(method, sc, Budget(steps=30), torch.device("cuda"), 0, Trace())
        weights.append(method.model.head.weight.detach().cpu())
    assert torch.allclose(weights[0], weights[1], atol=1e-5)


def test_planned_steps_are_the_steps_the_loops_train():
    import dalib
    from dalib.engine import Trace, fit_stream, fit_transfer, planned_steps
    from scenarios import build_stream, build_transfer

    uci = load_uci_digits()
    budget = Budget(epochs=0.5, batch_size=64)
    stream = build_stream("split", "split", [uci], seed=0, tasks=3, protocol="class-il")
    naive = dalib.build_method("naive", build_model(stream.input_shape, stream.num_classes))
    fit_stream(naive, stream, budget, torch.device("cpu"), 0, Trace())
    assert planned_steps(stream, budget) == naive.total_steps == naive.updates
    sc = build_transfer("rot", uci, uci, seed=0, k=0)
    method = dalib.build_method("source-only", build_model(sc.input_shape, sc.num_classes))
    steps = fit_transfer(method, sc, budget, torch.device("cpu"), 0, Trace())
    assert planned_steps(sc, budget) == steps == method.updates

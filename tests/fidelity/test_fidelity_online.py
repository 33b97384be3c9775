"""Online, task-free strategies on fixed tensors against the references transcribed here
(optimass/Maximally_Interfered_Retrieval ``mir.py``, ``retrieve_replay_update``;
drimpossible/GDumb ``src/main.py`` and the paper's greedy sampler), not from dalib."""

import copy

import torch
import torch.nn.functional as F

from dalib.continual.buffers import Buffer
from dalib.continual.online import pass_rates
from dalib.engine import Batch
from dalib.models import build_model
from dalib.registry import build_method

C, D, N = 4, 6, 10
PLAIN = {"augmentation": "none", "weight_decay": 0.0, "shift": 0}


def _batch(seed, n=N):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, D, generator=g), torch.randint(0, C, (n,), generator=g),
                 torch.zeros(n, dtype=torch.long))


def test_mir_replays_the_most_interfered_buffer_rows_as_er_mir():
    torch.manual_seed(0)
    method = build_method("mir", build_model((D,), C, hidden=(8,), batch_norm=False),
                          memory=40, subsample=12, optimizer="sgd", lr=0.3, momentum=0.0,
                          **PLAIN)
    for s in range(4):  # fill the buffer
        old = _batch(10 + s)
        method.buffer.add(old.x, old.y, old.task)
    incoming = _batch(1)
    model = copy.deepcopy(method.model)
    memory_x, memory_y = method.buffer.x.clone(), method.buffer.y.clone()
    state = method.cpu_generator.get_state()
    loss, _ = method.loss({"train": incoming})
    # the reference, on a copy of the model, with the same 12 candidates
    method.cpu_generator.set_state(state)
    subsample = torch.randperm(40, generator=method.cpu_generator)[:12]
    bx, by = memory_x[subsample], memory_y[subsample]
    loss_a = F.cross_entropy(model(incoming.x), incoming.y, reduction="none")
    ce_in = loss_a.sum() / loss_a.size(0)
    model.zero_grad()
    ce_in.backward(retain_graph=True)
    model_temp = copy.deepcopy(model)  # get_future_step_parameters: p - lr * grad
    with torch.no_grad():
        for p_temp, p in zip(model_temp.parameters(), model.parameters(), strict=True):
            p_temp -= 0.3 * p.grad
        pre_loss = F.cross_entropy(model(bx), by, reduction="none")
        post_loss = F.cross_entropy(model_temp(bx), by, reduction="none")
        big_ind = (post_loss - pre_loss).sort(descending=True)[1][:N]
    reference = ce_in + F.cross_entropy(model(bx[big_ind]), by[big_ind])
    assert torch.allclose(loss, reference, atol=1e-6)
    # the incoming batch was offered to the reservoir after the retrieval
    assert method.buffer.seen == 50 and not torch.equal(method.buffer.x, memory_x)


def test_gdumb_pass_rates_are_the_references_warm_start_and_sgdr():
    # src/main.py's experiment(): a real SGD and CosineAnnealingWarmRestarts(T_0=1, T_mult=2)
    params = [torch.zeros(1, requires_grad=True)]
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-6)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=1,
                                                                     T_mult=2, eta_min=0.0005)
    expected = []
    for epoch in range(40):
        if epoch <= 0:
            for param_group in optimizer.param_groups:
                param_group["lr"] = 0.05 * 0.1
        elif epoch == 1:
            for param_group in optimizer.param_groups:
                param_group["lr"] = 0.05
        else:
            scheduler.step()
        expected.append(optimizer.param_groups[0]["lr"])
    assert pass_rates(40, 0.05, 0.0005) == expected  # same computation: exact
    assert min(expected) < 0.001 and expected.count(0.05) >= 4  # restarts happen


def test_gdumb_memory_is_the_papers_greedy_class_balanced_sampler():
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.zeros(30, dtype=torch.long), torch.randint(0, 3, (60,),
                                                                           generator=g)])
    ours = Buffer(12, "greedy", torch.Generator().manual_seed(1))
    counts: dict[int, int] = {}  # the paper's Algorithm 1 on class counts alone
    for i, y in enumerate(labels.tolist()):
        x = torch.tensor([[float(i)]])
        ours.add(x, torch.tensor([y]), torch.zeros(1, dtype=torch.long))
        if sum(counts.values()) < 12:
            counts[y] = counts.get(y, 0) + 1
        elif counts.get(y, 0) < max(counts.values()):
            largest = max(counts, key=lambda c: (counts[c], -c))
            counts[largest] -= 1  # which of several largest classes loses one: any
            counts[y] = counts.get(y, 0) + 1
        kept = torch.bincount(ours.y[:len(ours)], minlength=3).tolist()
        assert sorted(kept) == sorted(counts.get(c, 0) for c in range(3)), i
    assert sorted(kept) == [4, 4, 4]  # balanced at the end

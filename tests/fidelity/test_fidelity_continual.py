"""Continual-learning strategies: penalties, importances, distillation and replay losses on
fixed tensors against the reference code, transcribed here (Avalanche ``training/plugins``;
GT-RIPL/Continual-Learning-Benchmark ``agents/regularization.py``; mammoth ``models/er.py``,
``models/der.py``; Zenke et al.'s SI; Chaudhry et al.'s A-GEM), not from dalib."""

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.models import build_model
from dalib.registry import build_method
from scenarios.domain import Domain

C, D, N = 4, 6, 16
PLAIN = {"augmentation": "none", "weight_decay": 0.0, "shift": 0}


def _method(name, **options):
    torch.manual_seed(0)
    return build_method(name, build_model((D,), C, hidden=(8,), batch_norm=False),
                        **PLAIN, **options)


def _task(seed, classes=(0, 1), task_id=0, n=N):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    y = torch.tensor(classes)[torch.randint(0, len(classes), (n,), generator=g)]
    t = torch.full((n,), task_id)
    return SimpleNamespace(id=task_id, classes=tuple(classes),
                           train=SimpleNamespace(x=x, y=y, task=t))


def _batch(task):
    return {"train": Batch(task.train.x, task.train.y, task.train.task)}


def test_naive_is_the_tasks_cross_entropy():
    method = _method("naive")
    task = _task(0)
    loss, _ = method.loss(_batch(task))
    assert torch.allclose(loss, F.cross_entropy(method.model(task.train.x), task.train.y))


def test_ewc_penalty_and_both_fisher_estimates():
    # the per-sample Fisher of a linear model (closed form) and of one with batch norm
    # (per-sample gradients) against the reference's sample-by-sample loop
    for fisher, batch_norm in (("batch", False), ("sample", False), ("sample", True)):
        torch.manual_seed(0)
        method = build_method("ewc", build_model((D,), C, hidden=(8,), batch_norm=batch_norm),
                              **PLAIN, strength=3.0, fisher=fisher)
        task = _task(1, n=100)
        model = copy.deepcopy(method.model)
        params = list(model.parameters())
        imp = [torch.zeros_like(p) for p in params]
        if fisher == "batch":  # Avalanche EWCPlugin.compute_importances: batches of 64
            batches = 0
            for i in range(0, 100, 64):
                model.zero_grad()
                F.cross_entropy(model(task.train.x[i:i + 64]), task.train.y[i:i + 64]).backward()
                for f, p in zip(imp, params, strict=True):
                    f += p.grad ** 2
                batches += 1
            imp = [f / batches for f in imp]
        else:  # Hsu et al.'s EWC.calculate_importance: eval mode, batch size 1, the
            model.eval()  # predicted label
            for i in range(100):
                model.zero_grad()
                out = model(task.train.x[i:i + 1])
                F.cross_entropy(out, out.max(1)[1]).backward()
                for f, p in zip(imp, params, strict=True):
                    f += p.grad ** 2 / 100
        method.after_task(task)
        for a, b in zip(method.importances[0], imp, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-9), fisher
        with torch.no_grad():
            for p in method.model.parameters():
                p.add_(0.1)
        # Avalanche's penalty: lambda * sum imp (theta - theta*)^2 (no 1/2)
        reference = 3.0 * sum((f * 0.1 ** 2).sum() for f in imp)
        assert torch.allclose(method.extra_loss(_batch(task)["train"])[0], reference,
                              rtol=1e-3), fisher


def test_si_importance_is_zenkes_path_integral():
    method = _method("si", strength=1.0, xi=0.1, optimizer="sgd", momentum=0.0, lr=0.1)
    task = _task(2)
    method.before_task(task)
    start = [p.detach().clone() for p in method.model.parameters()]
    path = [torch.zeros_like(p) for p in start]
    for _ in range(3):
        prev = [p.detach().clone() for p in method.model.parameters()]
        method.update(_batch(task))
        for w, p, q in zip(path, method.model.parameters(), prev, strict=True):
            # SGD at 0.1: grad = (prev - p) / 0.1; w -= grad * delta
            w -= ((q - p.detach()) / 0.1) * (p.detach() - q)
    omega = [(w / ((p.detach() - s) ** 2 + 0.1)).clamp_min(0)
             for w, p, s in zip(path, method.model.parameters(), start, strict=True)]
    for a, b in zip(method.importance(task), omega, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-7)


def test_mas_importance_accumulates_on_one_anchor():
    method = _method("mas", strength=1.0)
    assert method.mode == "online" and method.decay == 1.0
    tasks = [_task(3, n=64), _task(4, (2, 3), 1, n=64)]
    model = copy.deepcopy(method.model)
    total = [torch.zeros_like(p) for p in model.parameters()]
    for task in tasks:
        model.load_state_dict(method.model.state_dict())
        model.zero_grad()  # Avalanche MASPlugin: |grad| of the squared output norm, batch mean
        torch.norm(model(task.train.x), p="fro", dim=1).pow(2).mean().backward()
        for f, p in zip(total, model.parameters(), strict=True):
            f += p.grad.abs()  # Hsu et al.: accumulated over tasks in one slot
        method.after_task(task)
    assert len(method.anchors) == 1
    for a, b in zip(method.importances[0], total, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-9)


def test_lwf_is_avalanches_distillation_and_per_head_under_task_il():
    method = _method("lwf", alpha=1.0, temperature=2.0)
    first, second = _task(5), _task(6, (2, 3), 1)
    method.after_task(first)
    method.before_task(second)
    batch = _batch(second)["train"]
    out, prev = method.model(batch.x), method.teacher(batch.x)

    def distillation(o, p):  # LwFPlugin._distillation_loss
        log_p = torch.log_softmax(o / 2.0, dim=1)
        q = torch.softmax(p / 2.0, dim=1)
        return F.kl_div(log_p, q, reduction="batchmean")

    value, _ = method.extra_loss(batch)
    assert torch.allclose(value, distillation(out[:, [0, 1]], prev[:, [0, 1]]), atol=1e-6)
    method.class_mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    method.heads = [[0], [1]]  # two earlier one-class heads: one softmax each, summed
    value, _ = method.extra_loss(batch)
    expected = distillation(out[:, [0]], prev[:, [0]]) + distillation(out[:, [1]], prev[:, [1]])
    assert torch.allclose(value, expected, atol=1e-6)


def test_lwf_weighted_by_contexts_is_van_de_vens_train_a_batch():
    method = _method("lwf", alpha=1.0, temperature=2.0, weighting="contexts")
    tasks = [_task(5), _task(6, (2, 3), 1), _task(7, (0, 1, 2, 3), 2)]
    method.after_task(tasks[0])
    method.after_task(tasks[1])
    method.before_task(tasks[2])  # the third task: rnt = 1/3
    batch = _batch(tasks[2])
    current = batch["train"]
    out, prev = method.model(current.x), method.teacher(current.x)
    loss_cur = F.cross_entropy(out, current.y)
    # models/utils/loss_functions.py loss_fn_kd (norm=False): soft-target cross-entropy
    targets = torch.softmax(prev[:, :4] / 2.0, dim=1)
    loss_replay = -(targets * torch.log_softmax(out[:, :4] / 2.0, dim=1)).sum(1).mean()
    rnt = 1 / 3
    reference = rnt * loss_cur + (1 - rnt) * loss_replay
    entropy = -(targets * targets.log()).sum(1).mean()  # a constant: KL = cross-entropy - H
    value, _ = method.loss(batch)
    assert torch.allclose(value, reference - (1 - rnt) * entropy, atol=1e-6)
    grads = torch.autograd.grad(value, list(method.model.parameters()))
    out = method.model(current.x)
    again = rnt * F.cross_entropy(out, current.y) + (1 - rnt) * -(
        targets * torch.log_softmax(out[:, :4] / 2.0, dim=1)).sum(1).mean()
    for a, b in zip(grads, torch.autograd.grad(again, list(method.model.parameters())),
                    strict=True):
        assert torch.allclose(a, b, atol=1e-6)  # the same gradients as the reference
    first = _method("lwf", weighting="contexts")  # the first task: the cross-entropy alone
    loss, _ = first.loss(_batch(tasks[0]))
    assert torch.allclose(loss, F.cross_entropy(first.model(tasks[0].train.x),
                                                tasks[0].train.y), atol=1e-6)


def _snapshot(buffer):
    """The buffer as it is now, drawing as it would next."""
    generator, buffer.generator = buffer.generator, None
    copied = copy.deepcopy(buffer)
    buffer.generator = generator
    copied.generator = torch.Generator().set_state(generator.get_state())
    return copied


def test_replay_is_mammoths_er_and_der_its_der():
    method = _method("replay", memory=8)
    first, second = _task(7), _task(8, (2, 3), 1)
    method.loss(_batch(first))  # fills the buffer
    before = _snapshot(method.buffer)
    loss, _ = method.loss(_batch(second))
    bx, by, _ = before.sample(N)
    x = torch.cat([second.train.x, bx])  # er.py: one cross-entropy over the concatenation
    y = torch.cat([second.train.y, by])
    assert torch.allclose(loss, F.cross_entropy(method.model(x), y), atol=1e-6)

    for name in ("der", "der++"):
        der = _method(name, alpha=0.3, memory=8)
        der.loss(_batch(first))
        before = _snapshot(der.buffer)
        value, _ = der.loss(_batch(second))
        bx, _, _, bz = before.sample(N)
        reference = F.cross_entropy(der.model(second.train.x), second.train.y) \
            + 0.3 * F.mse_loss(der.model(bx), bz)
        if name == "der++":
            bx2, by2, _, _ = before.sample(N)
            reference = reference + der.beta * F.cross_entropy(der.model(bx2), by2)
        assert torch.allclose(value, reference, atol=1e-6), name


def test_class_balanced_buffer_is_class_balancing_reservoir_sampling():
    from dalib.continual.buffers import Buffer
    buffer = Buffer(6, "class-balanced", torch.Generator().manual_seed(0))
    for t in range(4):  # the same two classes in every task (domain-IL)
        buffer.add(torch.full((30, 1), float(t)), torch.arange(30) % 2, torch.full((30,), t))
    counts = torch.bincount(buffer.y)
    assert counts.tolist() == [3, 3]  # balanced
    assert len(set(buffer.task.tolist())) > 1  # refreshed within each class, not frozen


def test_agem_projects_as_chaudhry_et_al():
    method = _method("agem", memory=16, sample_size=16, optimizer="sgd", momentum=0.0, lr=0.1)
    first, second = _task(9), _task(10, (2, 3), 1)
    method.after_task(first)
    model = copy.deepcopy(method.model)
    gen = copy.deepcopy(method.cpu_generator)
    x, y, t = method.stored[0]
    idx = torch.randint(0, len(y), (16,), generator=gen)
    model.zero_grad()
    F.cross_entropy(model(x[idx]), y[idx]).backward()
    ref = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()
    F.cross_entropy(model(second.train.x), second.train.y).backward()
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    dotg = torch.dot(g, ref)  # AGEMPlugin.after_backward
    if dotg < 0:
        g = g - ref * dotg / torch.dot(ref, ref)
    expected = torch.cat([p.detach().flatten() for p in model.parameters()]) - 0.1 * g
    method.update(_batch(second))
    got = torch.cat([p.detach().flatten() for p in method.model.parameters()])
    assert torch.allclose(got, expected, atol=1e-6)


def test_cumulative_and_joint_train_on_every_task_seen():
    cumulative = _method("cumulative")
    first = _task(11)
    cumulative.after_task(first)
    x, y, _ = cumulative.past[0]
    assert torch.equal(x, first.train.x) and torch.equal(y, first.train.y)
    joint = _method("joint")
    assert joint.joint  # one training run over the union of the tasks (the upper bound)


def test_class_il_trains_and_evaluates_the_classes_seen_so_far():
    from scenarios.stream import Stream, Task
    parts = [SimpleNamespace(x=None) for _ in range(2)]
    stream = Stream("s", (Task(0, parts[0], parts[0], (0, 1)), Task(1, parts[1], parts[1],
                                                                      (2, 3))),
                    "class-il", ("0", "1", "2", "3"))
    assert stream.active_mask(0).tolist() == [True, True, False, False]
    assert stream.active_mask(1).tolist() == [True, True, True, True]
    method = _method("naive")
    method.active = stream.active_mask(0)
    task = _task(13)
    # Hsu et al.: valid_out_dim; van de Ven et al.: active_classes
    reference = F.cross_entropy(method.model(task.train.x)[:, :2], task.train.y)
    assert torch.allclose(method.loss(_batch(task))[0], reference, atol=1e-6)


def test_rehearsal_is_hsu_et_als_naive_rehearsal():
    # GT-RIPL/Continual-Learning-Benchmark agents/exp_replay.py, Naive_Rehearsal.learn_batch,
    # transcribed on sample ids: the training set is the memory's storages repeated
    # max(N // memory_size, 1) times plus the task's data; after the task every storage keeps
    # its first memory_size // task_count samples and the new task stores a random draw
    memory, sizes = 30, [50, 70, 20, 95]
    tasks, start = [], 0
    for tid, n in enumerate(sizes):
        ids = torch.arange(start, start + n, dtype=torch.float32)
        start += n
        tasks.append(SimpleNamespace(id=tid, train=Domain(
            f"task{tid}", ids[:, None].expand(n, D).contiguous(), torch.zeros(n, dtype=torch.long),
            tuple(str(c) for c in range(C)), task=torch.full((n,), tid))))
    method = _method("rehearsal", memory=memory)
    g = torch.Generator()
    g.set_state(method.cpu_generator.get_state())
    task_memory, expected_sizes = [], []
    for task_count, task in enumerate(tasks, 1):
        ids = task.train.x[:, 0].long().tolist()
        dataset_list = list(task_memory) * max(len(ids) // memory, 1) + [ids]
        dataset = sorted(i for storage in dataset_list for i in storage)
        assert sorted(method.task_data(task).x[:, 0].long().tolist()) == dataset
        expected_sizes.append(len(dataset))
        num_sample_per_task = min(len(ids), memory // task_count)
        task_memory = [storage[:num_sample_per_task] for storage in task_memory]
        randind = torch.randperm(len(ids), generator=g)[:num_sample_per_task]
        task_memory.append([ids[i] for i in randind])
        method.after_task(task)
    assert method.task_sizes(tasks) == expected_sizes
    assert expected_sizes[1] == 70 + 30 * 2 and expected_sizes[3] == 95 + 30 * 3  # 1:1 copies

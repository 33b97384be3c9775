import numpy as np
import pytest
import torch

from scenarios.datasets import load_uci_digits
from scenarios.domain import from_arrays
from scenarios.errors import InputError
from scenarios.shifts import apply_shifts
from scenarios.stream import build_stream


@pytest.fixture(scope="module")
def uci():
    return load_uci_digits()


def test_split_class_il_tasks_hold_their_classes(uci):
    s = build_stream("s", "split", [uci], seed=0, tasks=5)
    assert s.protocol == "class-il" and len(s.tasks) == 5
    assert [t.classes for t in s.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for t in s.tasks:
        assert set(t.train.y.tolist()) == set(t.test.y.tolist()) == set(t.classes)
        assert bool((t.train.task == t.id).all())
    assert sum(len(t.train) + len(t.test) for t in s.tasks) == len(uci)
    assert s.class_mask() is None


def test_split_task_il_mask_and_custom_groups(uci):
    s = build_stream("s", "split", [uci], seed=0, classes=[[0, 5, 9], [1, 2]], protocol="task-il")
    mask = s.class_mask()
    assert mask.shape == (2, 10)
    assert mask[0].nonzero().flatten().tolist() == [0, 5, 9]
    assert mask[1].nonzero().flatten().tolist() == [1, 2]


def test_split_domain_il_relabels_by_position(uci):
    s = build_stream("s", "split", [uci], seed=0, tasks=5, protocol="domain-il")
    assert s.num_classes == 2
    for t in s.tasks:
        assert set(t.train.y.tolist()) == {0, 1}
    orig = build_stream("s", "split", [uci], seed=0, tasks=5)
    assert torch.equal(s.tasks[2].train.y, orig.tasks[2].train.y - 4)


def test_permuted_and_rotated(uci):
    p = build_stream("p", "permuted", [uci], seed=0, tasks=3)
    assert p.protocol == "domain-il" and len(p.tasks) == 3
    assert not torch.equal(p.tasks[1].train.x, p.tasks[0].train.x)
    assert torch.equal(p.tasks[1].train.y, p.tasks[0].train.y)
    # the same permutation is applied to a task's train and test images
    x0 = p.tasks[0].train.x.flatten(1)
    x1 = p.tasks[1].train.x.flatten(1)
    t0, t1 = p.tasks[0].test.x.flatten(1), p.tasks[1].test.x.flatten(1)
    perm = [int((x1[:, j:j + 1] == x0).all(0).nonzero()[0]) if (x1[:, j:j + 1] == x0).all(0).any()
            else -1 for j in range(64)]
    ok = [j for j in range(64) if perm[j] >= 0 and x0[:, perm[j]].std() > 0]
    assert ok and all(torch.equal(t1[:, j], t0[:, perm[j]]) for j in ok)
    r = build_stream("r", "rotated", [uci], seed=0, angles=[0, 90])
    assert len(r.tasks) == 2 and not torch.equal(r.tasks[1].test.x, r.tasks[0].test.x)


def test_domain_sequence(uci):
    inv = apply_shifts(uci, [{"name": "invert"}], np.random.default_rng(0))
    s = build_stream("d", "domains", [uci, inv], seed=0)
    assert len(s.tasks) == 2 and s.protocol == "domain-il"
    assert float(s.tasks[1].train.x.mean()) > 0.5 > float(s.tasks[0].train.x.mean())


def test_task_array_stream():
    rng = np.random.default_rng(0)
    d = from_arrays(rng.random((90, 4)).astype(np.float32), np.tile([0, 1, 2], 30),
                    task=np.repeat([0, 1, 2], 30))
    s = build_stream("t", "task-array", [d], seed=0, test_fraction=0.2)
    assert len(s.tasks) == 3
    for t in s.tasks:
        assert len(t.train) == 24 and len(t.test) == 6


def test_stream_errors(uci):
    with pytest.raises(InputError, match="protocol: is 'x'"):
        build_stream("s", "split", [uci], seed=0, protocol="x")
    with pytest.raises(InputError, match="tasks: is 11"):
        build_stream("s", "split", [uci], seed=0, tasks=11)
    with pytest.raises(InputError, match="disjoint"):
        build_stream("s", "split", [uci], seed=0, classes=[[0, 1], [1, 2]])
    with pytest.raises(InputError, match="array named task"):
        build_stream("s", "task-array", [uci], seed=0)
    one = uci.subset(torch.nonzero(uci.y < 2).flatten())
    with pytest.raises(InputError, match="empty train set"):
        build_stream("s", "split", [one], seed=0, classes=[[0], [5]])


def test_blurry_boundaries_move_a_share_of_each_tasks_samples_to_the_others(uci):
    clean = build_stream("s", "split", [uci], seed=3, tasks=5)
    s = build_stream("s", "split", [uci], seed=3, tasks=5, online=True, blurry=20, anytime=2)
    assert s.online and s.anytime == 2
    assert sum(len(t.train) for t in s.tasks) == sum(len(t.train) for t in clean.tasks)
    assert [len(t.test) for t in s.tasks] == [len(t.test) for t in clean.tasks]
    foreign = []
    for t in s.tasks:
        outside = ~torch.isin(t.train.y, torch.tensor(t.classes))
        assert torch.equal(outside, t.train.task != t.id)  # a moved sample keeps its task id
        foreign.append(float(outside.float().mean()))
    assert 0.12 < np.mean(foreign) < 0.28, foreign  # about 20% moved in, 20% out
    # every training sample is still there, once
    rows = sorted(map(tuple, torch.cat([t.train.x.flatten(1) for t in s.tasks]).tolist()))
    assert rows == sorted(map(tuple, torch.cat([t.train.x.flatten(1) for t in clean.tasks])
                              .tolist()))
    again = build_stream("s", "split", [uci], seed=3, tasks=5, online=True, blurry=20)
    assert all(torch.equal(a.train.y, b.train.y) for a, b in zip(s.tasks, again.tasks,
                                                                    strict=True))

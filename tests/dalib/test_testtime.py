"""Test-time adaptation: streams of shifts, the source model trained once per seed and shared
by the runs that adapt it (its identity in theirs), the online protocol (predict, then
adapt) checked by hand from saved predictions, resumes, and the methods' own mechanics."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dalib.cli import main
from dalib.models import build_model
from dalib.registry import build_method
from dalib.runspec import expand
from dalib.testtime.base import batch_statistics
from dalib.testtime.output import lame_assignment
from scenarios.suite import parse_suite
from scenarios.testtime import stream_order

SUITE = """seeds = {seeds}
[budget]
steps = {steps}
batch_size = 64
[model]
arch = "cnn"
width = 8
[[scenario]]
name = "c"
kind = "test-time"
source = {{ dataset = "uci-digits" }}
corruptions = ["gaussian-noise", "fog"]
test_batch_size = 32
{extra}
methods = {methods}
"""


def _write(tmp_path, seeds=1, steps=30, methods='["bn", "tent"]', extra=""):
    path = tmp_path / "s.toml"
    path.write_text(SUITE.format(seeds=seeds, steps=steps, methods=methods, extra=extra))
    return path


def _records(out):
    return {(r["method"], r["seed"]): r for r in
            (json.loads(p.read_text()) for p in (out / "runs").glob("*.json"))}


def test_online_error_is_recomputed_by_hand_from_the_saved_predictions(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path)), "--out", str(out), "--no-report"]) == 0
    records = _records(out)
    assert set(records) == {("source-only", 0), ("bn", 0), ("tent", 0)}
    for r in records.values():
        assert r["status"] == "ok", r.get("error")
        o = r["online"]
        pred, label, domain = (np.array(o[k]) for k in ("pred", "label", "domain"))
        assert o["names"] == ["gaussian-noise-5", "fog-5"]
        assert (np.diff(domain) >= 0).all()  # fixed order: all noise, then all fog
        assert r["metrics"]["online_error"] == pytest.approx(100 * np.mean(pred != label))
        for d, name in enumerate(o["names"]):
            m = domain == d
            assert r["metrics"][f"online_error[{name}]"] == pytest.approx(
                100 * np.mean(pred[m] != label[m]))
    # the adapting runs start from the source run's model, named in their record
    source = records[("source-only", 0)]
    assert records[("tent", 0)]["init_from"] == source["run_id"]
    assert (out / "models" / f"{source['run_id']}.pt").is_file()
    # the stream is the same for every method of a seed
    assert records[("bn", 0)]["online"]["label"] == source["online"]["label"]


def test_a_changed_source_model_changes_the_runs_that_adapt_it(tmp_path):
    def ids(steps, extra=""):
        suite = parse_suite(__import__("tomllib").loads(
            _write(tmp_path, steps=steps, extra=extra).read_text()), tmp_path / "s.toml")
        return {r.method.name: r.run_id for r in expand(suite)}

    base = ids(30)
    longer = ids(40)  # another source training budget: every run changes
    assert base.keys() == {"source-only", "bn", "tent"}
    assert all(base[m] != longer[m] for m in base)
    suite = parse_suite(__import__("tomllib").loads(_write(
        tmp_path, methods='["bn", { name = "tent", lr = 0.01 }]').read_text()),
        tmp_path / "s.toml")
    runs = {r.method.name: r for r in expand(suite)}
    assert runs["source-only"].run_id == base["source-only"]  # a test-time setting: the
    assert runs["tent"].run_id != base["tent"]  # source model is shared, tent changes
    assert runs["tent"].config()["init_from"] == runs["source-only"].config_hash


def test_a_chain_resumes_after_losing_its_source_model(tmp_path):
    path = _write(tmp_path, seeds=2)
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["run", str(path), "--out", str(full), "--no-report"]) == 0
    assert main(["run", str(path), "--out", str(part), "--no-report"]) == 0
    for model in (part / "models").glob("*.pt"):
        model.unlink()  # as if the sweep had died before the models were kept
    tent = [p for p in (part / "runs").glob("*.json") if "-tent-" in p.name]
    for p in tent:
        p.unlink()
    assert main(["run", str(path), "--out", str(part), "--no-report"]) == 0
    assert len(list((part / "models").glob("*.pt"))) == 2  # re-trained, once per seed

    def table(out):
        t = pd.read_csv(out / "results.csv")
        return t.sort_values(["scenario", "method", "seed", "metric"], ignore_index=True)

    pd.testing.assert_frame_equal(table(full), table(part))


def test_episodic_tent_predicts_what_batch_statistics_predict():
    """Episodic: every batch meets the source model, and Tent's predictions are made before
    its update, so they are those of batch-norm statistics alone."""
    torch.manual_seed(0)
    model = build_model((1, 8, 8), 10, arch="cnn", width=8)
    x = torch.rand(3, 16, 1, 8, 8)
    methods = {}
    for name in ("bn", "tent"):
        m = build_method(name, build_model((1, 8, 8), 10, arch="cnn", width=8))
        m.model.load_state_dict(model.state_dict())
        m.start({})
        methods[name] = m
    for batch in x:
        methods["tent"].reset()
        methods["bn"].reset()
        assert torch.allclose(methods["tent"].step(batch), methods["bn"].step(batch),
                              atol=1e-6)
    # continual Tent moves only the normalisation layers' affine parameters
    tent = methods["tent"]
    before = {n: p.clone() for n, p in tent.model.named_parameters()}
    for batch in x:
        tent.step(batch)
    # same computation: frozen parameters keep their exact bits
    moved = {n for n, p in tent.model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(".bn" in n or "BatchNorm" in n or n.split(".")[-2].isdigit()
                         for n in moved)
    assert all(p.dim() == 1 for n, p in tent.model.named_parameters() if n in moved)


def test_rdumb_returns_to_the_source_model_every_reset_every_batches():
    torch.manual_seed(0)
    m = build_method("rdumb", build_model((1, 8, 8), 10, arch="cnn", width=8),
                     reset_every=2, margin=10.0)
    m.start({})
    initial = {k: v.clone() for k, v in m.model.state_dict().items()}
    x = torch.rand(16, 1, 8, 8)
    m.step(x)
    m.step(x)
    # same computation: an untouched state keeps its exact bits
    assert any(not torch.equal(v, initial[k]) for k, v in m.model.state_dict().items())
    m.step(x)  # the third batch starts from the source model again
    weights = {n: p for n, p in m.model.named_parameters()}
    # same computation: a reset copies the source weights back
    assert all(torch.equal(initial[n], p) or p.dim() == 1 for n, p in weights.items())


def test_lame_keeps_confident_isolated_predictions_and_smooths_neighbours():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.45, 0.55]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.05]])  # the third beside the first
    z = lame_assignment(probs, feats, knn=1, iterations=50)
    assert z[2].argmax() == 0 and z[0].argmax() == 0  # pulled to its neighbour's class
    assert torch.allclose(z.sum(1), torch.ones(3))


def test_stream_orders_cycles_and_non_iid_labels():
    rng = np.random.default_rng(0)
    labels = [np.array([2, 0, 1, 0]), np.array([1, 1, 0])]
    d, i, c = stream_order([4, 3], labels, rng, order="random", cycles=3, label_order="sorted")
    assert len(d) == 3 * 7 and list(np.unique(c)) == [0, 1, 2]
    for cycle in range(3):  # each cycle visits each domain once, its samples by class
        part_d, part_i = d[c == cycle], i[c == cycle]
        assert sorted(set(part_d)) == [0, 1]
        for dom in (0, 1):
            assert list(labels[dom][part_i[part_d == dom]]) == sorted(labels[dom])


def test_test_time_options_are_checked_before_anything_runs(tmp_path, capsys):
    for extra, expected in (('severity = 7', "severity"), ('order = "shuffled"', "order"),
                            ('init_from = "dann"', "init_from")):
        path = _write(tmp_path, extra=extra)
        assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err, err
        assert not (tmp_path / "o").exists()


def test_batch_statistics_mode_keeps_dropout_off():
    model = build_model((1, 8, 8), 10, arch="mlp", dropout=0.5)
    batch_statistics(model)
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))


@pytest.mark.parametrize("name", sorted(n for n, e in __import__(
    "dalib.registry", fromlist=["REGISTRY"]).REGISTRY.items() if e.kind == "test-time"))
def test_every_test_time_method_predicts_then_adapts(name):
    torch.manual_seed(0)
    m = build_method(name, build_model((1, 8, 8), 10, arch="cnn", width=8))
    source = build_model((1, 8, 8), 10, arch="cnn", width=8).state_dict()
    m.model.load_state_dict(source)
    m.start({})
    for _ in range(3):
        logits = m.step(torch.rand(16, 1, 8, 8))
        assert logits.shape == (16, 10) and torch.isfinite(logits).all()
    m.reset()  # back to the source model
    # same computation: a reset copies the source weights back
    assert all(torch.equal(v, source[k]) for k, v in m.model.state_dict().items())


USER_METHOD = '''
import torch
from dalib.plugins import register_method
from dalib.testtime.base import TestTimeMethod, entropy_of


class ConfidentTent(TestTimeMethod):
    """Entropy of the confident half of each batch (a user's test-time method)."""

    def step(self, x):
        logits = self.model(x)
        ent = entropy_of(logits)
        loss = ent[ent <= ent.median()].mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return logits.detach()


register_method("confident-tent", ConfidentTent, kind="test-time",
                description="a user's entropy minimisation on the confident half")
'''


def test_a_users_test_time_method_is_a_plugin_of_the_same_shape(tmp_path):
    (tmp_path / "my_tta.py").write_text(USER_METHOD)
    path = _write(tmp_path, methods='["confident-tent", "tent"]',
                  extra='order = "random"\ncycles = 2\nlabels = "sorted"')
    path.write_text('plugins = ["my_tta.py"]\n' + path.read_text())
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    records = _records(out)
    mine = records[("confident-tent", 0)]
    assert mine["status"] == "ok" and mine["init_from"] == records[("source-only", 0)]["run_id"]
    cycles = np.array(mine["online"]["cycle"])
    assert sorted(set(cycles)) == [0, 1] and "online_error_cycle[1]" in mine["metrics"]


def test_dirichlet_streams_hold_few_classes_per_stretch():
    from scenarios.testtime import dirichlet_order

    y = np.repeat(np.arange(10), 150)
    order = dirichlet_order(y, np.random.default_rng(0))
    assert sorted(order) == list(range(len(y)))  # every sample once
    batches = y[order][:1472].reshape(23, 64)
    iid = y[np.random.default_rng(0).permutation(len(y))][:1472].reshape(23, 64)
    share = np.mean([np.bincount(b).max() / 64 for b in batches])
    assert share > 2 * np.mean([np.bincount(b).max() / 64 for b in iid])


def test_offline_source_free_adaptation_adapts_first_then_predicts(tmp_path):
    """mode = "offline": passes of adaptation over the unlabelled stream, then predictions
    without adapting. BN statistics have no state to learn, so their predictions are the
    online ones; Tent's are those of its adapted model."""
    online, offline = tmp_path / "online", tmp_path / "offline"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main(["run", str(_write(tmp_path / "a")), "--out", str(online), "--no-report"]) == 0
    assert main(["run", str(_write(tmp_path / "b", extra='mode = "offline"\nadapt_epochs = 2')),
                 "--out", str(offline), "--no-report"]) == 0
    a, b = _records(online), _records(offline)
    assert b[("bn", 0)]["online"]["mode"] == "offline"
    assert a[("bn", 0)]["online"]["pred"] == b[("bn", 0)]["online"]["pred"]
    assert a[("tent", 0)]["online"]["pred"] != b[("tent", 0)]["online"]["pred"]
    # the source model is the same: the stream's mode is not part of what it learns from
    assert a[("source-only", 0)]["metrics"]["source_acc"] == \
        b[("source-only", 0)]["metrics"]["source_acc"]
    bad = _write(tmp_path, extra="adapt_epochs = 2")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_packed_test_time_runs_adapt_as_their_separate_runs_do(tmp_path):
    """bn and tent over three seeds as one pack (each seed its own source model and
    stream): the predictions of their separate runs, up to float rounding."""
    path = _write(tmp_path, seeds=3)
    packed, alone = tmp_path / "packed", tmp_path / "alone"
    assert main(["run", str(path), "--out", str(packed), "--no-report"]) == 0
    assert main(["run", str(path), "--out", str(alone), "--no-report", "--pack", "off"]) == 0
    a, b = _records(packed), _records(alone)
    for seed in range(3):
        for name in ("bn", "tent"):
            assert a[(name, seed)]["pack"] == {"size": 3, "index": seed}
            same = np.mean(np.array(a[(name, seed)]["online"]["pred"])
                           == np.array(b[(name, seed)]["online"]["pred"]))
            assert same > 0.99, (name, seed, same)
            assert abs(a[(name, seed)]["metrics"]["source_acc"]
                       - b[(name, seed)]["metrics"]["source_acc"]) < 1.0


def test_a_replaced_or_damaged_source_model_is_trained_again_never_adapted(tmp_path):
    path = _write(tmp_path, seeds=2)
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["run", str(path), "--out", str(full), "--no-report"]) == 0
    assert main(["run", str(path), "--out", str(part), "--no-report"]) == 0
    models = sorted((part / "models").glob("*.pt"), key=lambda p: "-s1-" in p.name)
    records = _records(part)
    assert records["source-only", 0]["model_digest"] != records["source-only", 1]["model_digest"]
    seed0, seed1 = models
    seed0.write_bytes(seed1.read_bytes())  # seed 1's model in seed 0's place
    for p in (part / "runs").glob("*-tent-*.json"):
        p.unlink()
    assert main(["run", str(path), "--out", str(part), "--no-report"]) == 0
    assert _records(part)["tent", 0]["metrics"] == _records(full)["tent", 0]["metrics"]
    seed1.write_bytes(seed1.read_bytes()[:100])  # damaged
    for p in (part / "runs").glob("*-bn-s1-*.json"):
        p.unlink()
    assert main(["run", str(path), "--out", str(part), "--no-report"]) == 0
    assert _records(part)["bn", 1]["metrics"] == _records(full)["bn", 1]["metrics"]
    assert {p.name for p in (part / "models").glob("*.pt")} == \
        {p.name for p in (full / "models").glob("*.pt")}


NO_NORM = 'arch = "mlp"\nbatch_norm = false'


@pytest.mark.parametrize("methods, model, batch, message", [
    ('["tent"]', NO_NORM, 32, "model: has no normalisation layer for 'tent'"),
    ('["bn"]', NO_NORM, 32, "model: has no batch norm for 'bn'"),
    ('["eata"]', NO_NORM, 32, "model: has no normalisation layer for 'eata'"),
    # one sample left in the last batch through the MLP's BatchNorm1d
    ('["tent"]', 'arch = "mlp"', None, "test_batch_size: leaves a batch "
     "of 1 sample(s) that 'tent' cannot normalise"),
])
def test_test_time_methods_that_cannot_adapt_are_refused_before_running(
        tmp_path, capsys, methods, model, batch, message):
    # the stream: one corruption of UCI digits' other half; a batch size that leaves one
    # sample over where none is given
    text = SUITE.format(seeds=1, steps=5, methods=methods, extra="").replace(
        'arch = "cnn"\nwidth = 8', model).replace('["gaussian-noise", "fog"]', '["fog"]')
    path = tmp_path / "s.toml"
    if batch is None:
        suite = parse_suite(__import__("tomllib").loads(text), path)
        n = len(suite.scenarios[0].build(0, None).stream)
        batch = next(b for b in range(2, n) if n % b == 1)
    path.write_text(text.replace("test_batch_size = 32", f"test_batch_size = {batch}"))
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_an_empty_test_time_stream_is_refused():
    from scenarios import build_transfer
    from scenarios.datasets import load_uci_digits
    from scenarios.errors import InputError
    from scenarios.testtime import build_test_time

    uci = load_uci_digits()
    offline = build_transfer("t", uci, uci, seed=0)
    empty = offline.target_test.subset(torch.arange(0), "empty")
    for domains in ([], [("empty", empty)]):
        with pytest.raises(InputError, match="domains: give an empty stream"):
            build_test_time("c", offline, domains, seed=0, batch_size=8)

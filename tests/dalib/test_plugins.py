"""Researchers' own methods, terms, backbones and datasets, through the public API only: a
plugin file named in a suite runs like the built-ins, in worker processes too, and an edit
to it re-runs exactly the runs that use it."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dalib
from dalib.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def example(tmp_path):
    """The example plugin and suite, copied, with a shorter budget."""
    shutil.copy(EXAMPLES / "my_plugin.py", tmp_path / "my_plugin.py")
    text = (EXAMPLES / "suite.toml").read_text().replace("steps = 150", "steps = 10")
    (tmp_path / "suite.toml").write_text(text)
    return tmp_path


@pytest.mark.slow  # three sweeps of 14 runs, two of them in a process pool
def test_example_plugin_runs_in_workers_resumes_and_reruns_what_an_edit_touches(example,
                                                                                capsys):
    suite, out = str(example / "suite.toml"), str(example / "out")
    assert main(["run", suite, "--out", out, "--jobs", "2", "--no-report"]) == 0
    table = pd.read_csv(Path(out) / "results.csv")
    assert set(table["method"]) == {"source-only", "dann", "afn", "dann+afn", "im",
                                    "label-smoothing[smoothing=0.2]"}
    assert (table["status"] == "ok").all() and table["run_id"].nunique() == 14
    record = json.loads(next(Path(out, "runs").glob("uci-rot30-afn-s0-*.json")).read_text())
    assert list(record["config"]["plugins"]) == ["my_plugin.py"]
    # the user's term, method and backbone are written for packs: their seeds train as one
    for pattern in ("uci-rot30-afn-s1-", "uci-rot30-dann+afn-s0-", "uci-rot30-label-smooth",
                    "uci-rot30-tiny-cnn-dann-s0-"):
        packed = json.loads(next(Path(out, "runs").glob(f"{pattern}*.json")).read_text())
        assert packed["pack"]["size"] == 2 and "reason" not in packed["pack"], pattern
    capsys.readouterr()
    assert main(["run", suite, "--out", out, "--no-report"]) == 0
    assert capsys.readouterr().out.count(" cached ") == 14
    # an edit to the plugin re-runs the runs that use it: its backbone (scenario 1), its
    # term and its method (scenario 2), not source-only or im on the built-in backbone
    plugin = example / "my_plugin.py"
    plugin.write_text(plugin.read_text() + "\n# edited\n")
    assert main(["run", suite, "--out", out, "--jobs", "2", "--no-report"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    rerun = sorted({ln.split()[1] + " " + ln.split()[2] for ln in lines if " ok " in ln})
    cached = sorted({ln.split()[1] + " " + ln.split()[2] for ln in lines if " cached " in ln})
    assert rerun == ["uci-rot30 afn", "uci-rot30 dann+afn",
                     "uci-rot30 label-smoothing[smoothing=0.2]",
                     "uci-rot30-tiny-cnn dann", "uci-rot30-tiny-cnn source-only"]
    assert cached == ["uci-rot30 im", "uci-rot30 source-only"]
    assert len(list(Path(out, "stale").glob("*.json"))) == 10


def test_plugin_dataset_backbone_and_term_from_the_command_line(tmp_path, capsys):
    (tmp_path / "ext.py").write_text('''
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import dalib


class Digits(torch.utils.data.Dataset):
    """UCI digits as a torch Dataset of (image tensor, label) pairs."""

    def __init__(self, invert):
        d = load_digits()
        self.x = torch.as_tensor(d.images[:, None] / 16.0, dtype=torch.float32)
        self.x = 1 - self.x if invert else self.x
        self.y = d.target
        self.classes = [str(c) for c in range(10)]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@dalib.register_dataset("my-digits")
def my_digits(root, invert=False):
    return Digits(invert)


@dalib.register_dataset("my-arrays")
def my_arrays(root):
    d = load_digits()
    return (d.images * 16).astype(np.uint8), d.target


class Flat(nn.Module):  # no out_features attribute: the width is found by a forward pass
    def __init__(self, shape):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), 48), nn.ReLU())

    def forward(self, x):
        return self.net(x)


dalib.register_backbone("flat", lambda input_shape: Flat(input_shape))


class Shrink(dalib.Term):
    """Feature norm penalty on the target."""

    def forward(self, out):
        return out.feat_t.pow(2).mean()


dalib.register_term("shrink", Shrink)
''')
    (tmp_path / "s.toml").write_text('''
name = "cli-plugin"
seeds = 1
[budget]
steps = 30
[model]
arch = "flat"
[[scenario]]
name = "inv"
kind = "transfer"
source = { dataset = "my-digits" }
target = { dataset = "my-digits", invert = true }
methods = ["source-only", "dann+shrink"]
[[scenario]]
name = "arr"
kind = "stream"
data = { dataset = "my-arrays" }
stream = "split"
tasks = 2
methods = ["naive"]
''')
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"),
                 "--plugin", str(tmp_path / "ext.py"), "--no-report"]) == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(table["method"]) == {"source-only", "dann+shrink", "naive"}
    assert main(["list", "--plugin", str(tmp_path / "ext.py")]) == 0
    listing = capsys.readouterr().out
    assert "shrink" in listing and "[plugin ext.py]" in listing and "my-digits" in listing


@pytest.mark.parametrize("content, expected", [
    ("raise RuntimeError('broken on purpose')", "failed to load (RuntimeError: broken on purpose)"),
    ("import dalib_no_such_module", "failed to load (ModuleNotFoundError"),
])
def test_a_broken_plugin_is_one_line_exit_2(tmp_path, capsys, content, expected):
    (tmp_path / "bad.py").write_text(content + "\n")
    (tmp_path / "s.toml").write_text('plugins = ["bad.py"]\n[[scenario]]\nkind = "transfer"\n'
                                     'source = { dataset = "uci-digits" }\n'
                                     'target = { dataset = "uci-digits" }\n'
                                     'methods = ["source-only"]\n')
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plugins:" in err and expected in err, err
    assert not (tmp_path / "out").exists()
    assert main(["run", "quick", "--out", str(tmp_path / "o2"), "--plugin", "nope.py"]) == 2
    assert "--plugin: file" in capsys.readouterr().err


def test_from_arrays_and_from_dataset_build_the_same_domain():
    from sklearn.datasets import load_digits

    from scenarios import from_arrays, from_dataset

    d = load_digits()
    x = (d.images * 16).astype(np.uint8)
    a = from_arrays(x, d.target, name="arrays")
    ds = torch.utils.data.TensorDataset(torch.as_tensor(x), torch.as_tensor(d.target))
    b = from_dataset(ds, name="dataset")
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.classes == b.classes


def test_registered_names_reach_the_registry():
    from dalib.registry import REGISTRY, lookup

    @dalib.register_method("test-only-method", kind="stream")
    class Mine(dalib.Method):
        needs = ("train",)

    try:
        assert REGISTRY["test-only-method"].cls is Mine
        assert REGISTRY["test-only-method"].kind == "stream"
        assert lookup("dann+im") is not None
    finally:
        del REGISTRY["test-only-method"]


def test_build_method_checks_options_as_a_suite_does():
    from dalib.models import build_model
    from scenarios import InputError

    model = build_model((1, 8, 8), 10)
    dann = dalib.build_method("dann", model, weight=0.5, lr=3e-4)
    assert dann.name == "dann" and dann.optimizer.param_groups[0]["lr"] == 3e-4
    replay = dalib.build_method("replay", build_model((1, 8, 8), 10), memory=20)
    assert replay.name == "replay" and replay.buffer.size == 20
    both = dalib.build_method("dann+mcc", build_model((1, 8, 8), 10), mcc={"weight": 0.3})
    assert both.name == "dann+mcc"
    with pytest.raises(InputError, match="memroy"):
        dalib.build_method("replay", model, memroy=20)
    with pytest.raises(InputError, match="unknown method 'dnn'"):
        dalib.build_method("dnn", model)
    with pytest.raises(InputError, match="lr"):
        dalib.build_method("dann", model, lr=-1.0)


@pytest.fixture
def registry_snapshot():
    """The method tables as they are, restored after the test (a plugin may replace entries)."""
    from dalib import entries, plugins

    saved = (dict(entries.REGISTRY), dict(entries.TERMS), dict(plugins.OWNERS))
    yield
    for table, old in zip((entries.REGISTRY, entries.TERMS, plugins.OWNERS), saved, strict=True):
        table.clear()
        table.update(old)


TAKES = '''import dalib


@dalib.register_method("source-only"{replace})
class Mine(dalib.Method):
    """Source-only that trains on nothing."""
    needs = ("source",)

    def loss(self, batch):
        return 0.0 * self.model(batch["source"].x).sum(), {{}}
'''


@pytest.mark.parametrize("content, name", [
    (TAKES.format(replace=""), "method 'source-only', which the built-in method already has"),
    ("import dalib\n\n\n@dalib.register_term('dann')\nclass T(dalib.Term):\n"
     "    def forward(self, out):\n        return 0\n",
     "method 'dann', which the built-in method already has"),
    ("import dalib\n\n\n@dalib.register_backbone('mlp')\ndef mlp(shape):\n    return None\n",
     "backbone 'mlp', which the built-in backbone already has"),
    ("import dalib\n\n\n@dalib.register_dataset('mnist')\ndef m(root):\n    return None\n",
     "dataset 'mnist', which the built-in dataset already has"),
])
def test_a_plugin_cannot_take_a_built_in_name_unless_it_says_replace(tmp_path, capsys, content,
                                                                    name, registry_snapshot):
    (tmp_path / "takes.py").write_text(content)
    (tmp_path / "s.toml").write_text('plugins = ["takes.py"]\n[budget]\nsteps = 5\n'
                                     '[[scenario]]\nkind = "transfer"\n'
                                     'source = { dataset = "uci-digits" }\n'
                                     'target = { dataset = "uci-digits" }\n'
                                     'methods = ["source-only", "dann"]\n')
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path / "takes.py") in err and name in err, err
    assert "replace=True" in err and not (tmp_path / "out").exists()
    from dalib.registry import REGISTRY

    assert REGISTRY["source-only"].origin is None and REGISTRY["dann"].origin is None


def test_a_plugin_that_says_replace_replaces_and_its_runs_name_it(tmp_path, registry_snapshot):
    (tmp_path / "takes.py").write_text(TAKES.format(replace=", replace=True"))
    (tmp_path / "s.toml").write_text('plugins = ["takes.py"]\nseeds = 1\n[budget]\nsteps = 5\n'
                                     '[[scenario]]\nkind = "transfer"\n'
                                     'source = { dataset = "uci-digits" }\n'
                                     'target = { dataset = "uci-digits" }\n'
                                     'methods = ["source-only", "dann"]\n')
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"),
                 "--no-report"]) == 0
    records = {r["method"]: r for r in (json.loads(p.read_text())
                                        for p in (tmp_path / "out" / "runs").glob("*.json"))}
    assert list(records["source-only"]["config"]["plugins"]) == ["takes.py"]
    assert "plugins" not in records["dann"]["config"]
    # the replacement trains nothing: its source accuracy is the untrained model's
    assert records["source-only"]["metrics"]["source_acc"] < 40


def test_registering_a_taken_name_in_python_is_refused_but_a_name_can_be_registered_again(
        registry_snapshot):
    with pytest.raises(ValueError, match="'dann', which the built-in method already has"):
        dalib.register_method("dann", dalib.Method)
    dalib.register_method("mine-again", dalib.Method)
    dalib.register_method("mine-again", dalib.Method)  # a notebook cell run twice


def test_a_term_that_returns_a_vector_is_a_failed_run_with_its_reason(tmp_path, capsys,
                                                                    registry_snapshot):
    (tmp_path / "vec.py").write_text("import dalib\n\n\n@dalib.register_term('per-sample')\n"
                                     "class PerSample(dalib.Term):\n"
                                     "    def forward(self, out):\n"
                                     "        return (out.feat_s ** 2).mean(1)  # no batch mean\n")
    (tmp_path / "s.toml").write_text('plugins = ["vec.py"]\nseeds = 2\n[budget]\nsteps = 5\n'
                                     '[[scenario]]\nkind = "transfer"\n'
                                     'source = { dataset = "uci-digits" }\n'
                                     'target = { dataset = "uci-digits" }\n'
                                     'methods = ["source-only", "per-sample"]\n')
    run = ["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--no-report"]
    for _ in range(2):  # a re-run trains the failed runs again, and fails them again
        assert main(run) == 1
        table = pd.read_csv(tmp_path / "out" / "results.csv")
        failed = table[table["status"] == "failed"]
        assert set(failed["method"]) == {"per-sample"} and failed["seed"].nunique() == 2
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*per*")]
    assert {r["error"] for r in records} == {
        "ValueError: the loss 'per-sample' is (64,), expected a scalar tensor per run (a term "
        "or loss reduces over the batch, e.g. with .mean())"}
    assert "internal error" not in capsys.readouterr().err


def test_an_undocumented_plugin_method_is_listed_without_its_base_class_docstring(tmp_path,
                                                                                   capsys):
    from dalib.adaptation.base import Adaptation

    (tmp_path / "bare.py").write_text('''
import dalib
from dalib.adaptation.base import Adaptation


@dalib.register_method("bare-method", kind="transfer")
class Bare(Adaptation):
    pass
''')
    code = main(["list", "--plugin", str(tmp_path / "bare.py")])
    listing = capsys.readouterr().out
    line = next((x for x in listing.splitlines() if "bare-method" in x), listing)
    assert code == 0 and "(no description" in line, line
    base = " ".join((Adaptation.__doc__ or "").split())[:30]
    assert base not in line

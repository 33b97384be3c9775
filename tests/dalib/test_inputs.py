"""Every input is checked before anything runs: exit 2, one line naming the file (or flag), the
field and the expectation, and nothing written to --out."""

import numpy as np
import pytest
import torch

from dalib.cli import main

SUITE = """
name = "inputs"
seeds = 1
[budget]
steps = 20
batch_size = 32

[[scenario]]
name = "t"
kind = "transfer"
source = {{ npz = "{src}" }}
target = {{ npz = "{tgt}" }}
k = 3
methods = ["source-only", "dann", "finetune-top"]

[[scenario]]
name = "s"
kind = "stream"
data = {{ npz = "{src}" }}
stream = "split"
tasks = 5
methods = ["naive"]
"""


def _write(tmp_path, digits_npz, edit=lambda t: t) -> str:
    src, tgt = digits_npz
    path = tmp_path / "inputs.toml"
    path.write_text(edit(SUITE).format(src=src.name, tgt=tgt.name))
    return str(path)


def _method(table: str):
    return lambda t: t.replace('"dann", "finetune-top"]', f'{table}, "finetune-top"]')


def _model(line: str):
    return lambda t: t.replace("[budget]", f"[model]\n{line}\n[budget]")


def _shift(table: str):
    return lambda t: t.replace('target = {{ npz = "{tgt}" }}',
                               'target = {{ npz = "{tgt}", shifts = [' + table + "] }}")


BAD_SUITES = [
    (_method('{{ name = "dann", lr = -1 }}'), "methods[1].lr: is -1"),
    (_method('{{ name = "dann", lr = "fast" }}'), "methods[1].lr: is 'fast'"),
    (_method('{{ name = "dann", lr = true }}'), "methods[1].lr: is True"),
    (_method('{{ name = "dann", lr = nan }}'), "methods[1].lr: is nan"),
    (_method('{{ name = "dann", lr = inf }}'), "methods[1].lr: is inf"),
    (_method('{{ name = "dann", weight_decay = -0.1 }}'), "weight_decay: is -0.1"),
    (_method('{{ name = "dann", momentum = 2.0 }}'), "momentum: is 2.0"),
    (_method('{{ name = "dann", weight = -1.0 }}'), "methods[1].weight: is -1.0"),
    (_method('{{ name = "dann", weight = "big" }}'), "methods[1].weight: is 'big'"),
    (_method('{{ name = "dann+mcc", mcc = {{ weight = nan }} }}'), "mcc.weight: is nan"),
    (_method('{{ name = "finetune-top", freeze = "layer9" }}'),
     "methods[1].freeze: is 'layer9' (expected a count, 'all' or one of block1"),
    (_method('{{ name = "finetune-top", freeze = 99 }}'), "methods[1].freeze: is 99"),
    (_method('{{ name = "finetune-top", freeze = 1.5 }}'), "freeze: is 1.5"),
    (_method('{{ name = "dann", reset_optimizer = true }}'), "unknown hyperparameter"),
    (lambda t: t.replace("steps = 20", "epochs = nan"), "budget.epochs: is nan"),
    (lambda t: t.replace("steps = 20", "epochs = inf"), "budget.epochs: is inf"),
    (lambda t: t.replace("steps = 20", "epochs = 1e12"), "budget.epochs: is 1000000000000.0"),
    (lambda t: t.replace("steps = 20", "steps = 0"), "budget.steps: is 0"),
    (lambda t: t.replace("steps = 20", "steps = 2.5"), "budget.steps: is 2.5"),
    (lambda t: t.replace("batch_size = 32", "batch_size = true"), "budget.batch_size: is True"),
    (lambda t: t.replace("seeds = 1", "seeds = [true]"), "seeds[0]: is True"),
    (lambda t: t.replace("seeds = 1", "seeds = [-1]"), "seeds[0]: is -1"),
    (lambda t: t.replace("seeds = 1", "seeds = [4294967296]"), "seeds[0]: is 4294967296"),
    (lambda t: t.replace("seeds = 1", "seeds = 1000000"), "seeds: is 1000000"),
    (lambda t: t.replace("seeds = 1", "seeds = 0"), "seeds: is 0"),
    (lambda t: t.replace("tasks = 5", "tasks = 0"), "scenario[1].tasks: is 0"),
    (lambda t: t.replace("tasks = 5", "tasks = 1"), "scenario[1].tasks: is 1"),
    (lambda t: t.replace("tasks = 5", "tasks = 11"), "scenario[1].tasks: is 11 (expected 2..10"),
    (lambda t: t.replace("tasks = 5", 'tasks = "5"'), "scenario[1].tasks: is '5'"),
    (lambda t: t.replace("tasks = 5", 'protocol = "both"'), "scenario[1].protocol: is 'both'"),
    (_model('arch = "resnet999"'), "model.arch: is 'resnet999'"),
    (_model("arch = 5"), "model.arch: is 5"),
    (_model("hidden = [-1]"), "model.hidden[0]: is -1"),
    (_model('hidden = "256"'), "model.hidden: is '256'"),
    (_model("dropout = 1.5"), "model.dropout: is 1.5"),
    (_model("bottleneck = -3"), "model.bottleneck: is -3"),
    (_shift('{{ name = "rotate", degrees = nan }}'), "shifts[0].degrees: is nan"),
    (_shift('{{ name = "rotate", degrees = "left" }}'), "shifts[0].degrees: is 'left'"),
    (_shift('{{ name = "class-subset", classes = [1.5, 2] }}'), "classes[0]: is 1.5"),
    (_shift('{{ name = "noise", std = -1 }}'), "shifts[0].std: is -1"),
    (_shift('{{ name = "label-noise", rate = 2 }}'), "shifts[0].rate: is 2"),
    (_shift('{{ name = ["rotate"] }}'), "unknown shift"),
    (lambda t: t.replace('{{ npz = "{tgt}" }}', '{{ npz = "{tgt}", layout = "HWC" }}'),
     "layout: is 'HWC'"),
    (lambda t: t.replace('name = "t"', 'name = ""'), "scenario[0].name: is empty"),
]


@pytest.mark.parametrize("edit, expected", BAD_SUITES)
def test_bad_suite_exits_2_with_one_line_and_writes_nothing(tmp_path, digits_npz, capsys,
                                                            edit, expected):
    suite = _write(tmp_path, digits_npz, edit)
    out = tmp_path / "out"
    assert main(["run", suite, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"dalib: error: {suite}: "), err
    assert expected in err, err
    assert not out.exists()


def _cli_case(tmp_path, digits_npz, case: str) -> tuple[list[str], str]:
    """Arguments of a bad ``dalib run`` and the text its error must hold."""
    suite = _write(tmp_path, digits_npz)
    if case == "not-utf8":
        path = tmp_path / "latin.toml"
        path.write_bytes(b'name = "caf\xe9"\n')
        return [str(path)], "toml: is not UTF-8 text"
    if case == "deep":
        path = tmp_path / "deep.toml"
        path.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
        return [str(path)], "toml: is nested too deeply"
    if case == "huge-labels":
        x = np.zeros((20, 8, 8), np.uint8)
        np.savez(tmp_path / "huge.npz", x=x, y=np.arange(20) * 10**8)
        return [_write(tmp_path, digits_npz, lambda t: t.replace('"{src}"', '"huge.npz"'))], \
            "y: has label 1900000000"
    if case == "csv-as-npz":
        (tmp_path / "table.npz").write_text("x,y\n0.1,1\n")
        return [_write(tmp_path, digits_npz, lambda t: t.replace('"{src}"', '"table.npz"'))], \
            "npz: is not an .npz archive"
    if case == "ambiguous-layout":
        np.savez(tmp_path / "amb.npz", x=np.zeros((20, 3, 4, 3), np.uint8), y=np.arange(20) % 2)
        return [_write(tmp_path, digits_npz, lambda t: t.replace('"{src}"', '"amb.npz"'))], \
            "layout: is ambiguous for x of shape (20, 3, 4, 3)"
    if case == "domain-array-unused":
        np.savez(tmp_path / "multi.npz", x=np.zeros((20, 8, 8), np.uint8),
                 y=np.arange(20) % 2, domain=np.arange(20) % 2)
        return [_write(tmp_path, digits_npz, lambda t: t.replace('"{src}"', '"multi.npz"'))], \
            "domain: array holds 2 domains (0, 1) (expected domain = VALUE"
    if case == "weights-not-a-state-dict":
        (tmp_path / "w.pth").write_text("not weights")
        return [_write(tmp_path, digits_npz, _model('arch = "resnet18"\nweights = "'
                                                    + str(tmp_path / "w.pth") + '"'))], \
            "model.weights: '" + str(tmp_path / "w.pth") + "' cannot be read as weights"
    if case == "named-weights-not-cached":
        return [_write(tmp_path, digits_npz, _model('arch = "resnet18"\nweights = '
                                                    '"IMAGENET1K_V1"'))], \
            "is not in torch's hub cache (dalib never downloads)"
    flags = {"cuda": (["--device", "cuda"], "--device: is 'cuda' but this machine has 0 CUDA"),
             "device-typo": (["--device", "gpu"], "--device: is 'gpu'"),
             "seeds-flag": (["--seeds", "100000"], "--seeds: is 100000"),
             "jobs-high": (["--jobs", "100000"], "--jobs: is 100000"),
             "jobs-negative": (["--jobs", "-1"], "--jobs: is -1")}
    return [suite, *flags[case][0]], flags[case][1]


CLI_CASES = ["not-utf8", "deep", "huge-labels", "csv-as-npz", "ambiguous-layout",
             "domain-array-unused", "weights-not-a-state-dict", "named-weights-not-cached",
             "device-typo", "seeds-flag", "jobs-high", "jobs-negative"]
if not torch.cuda.is_available():
    CLI_CASES.append("cuda")


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_files_and_flags_exit_2(tmp_path, digits_npz, capsys, case, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    args, expected = _cli_case(tmp_path, digits_npz, case)
    out = tmp_path / "out"
    assert main(["run", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err, err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "empty", "under-a-file"])
def test_bad_out_exits_2(tmp_path, digits_npz, capsys, kind):
    suite = _write(tmp_path, digits_npz)
    (tmp_path / "afile").write_text("x")
    out = {"file": str(tmp_path / "afile"), "empty": "",
           "under-a-file": str(tmp_path / "afile" / "sub")}[kind]
    assert main(["run", suite, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--out:" in err and err.count("\n") == 1
    assert (tmp_path / "afile").read_text() == "x"


def test_rgb_arrays_and_multi_domain_files_are_read_as_meant(tmp_path):
    from scenarios.domain import load_npz

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 12, 10, 3), dtype=np.uint8)  # N x H x W x 3
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(30) % 3, domain=np.repeat(["a", "b"], 15))
    d = load_npz(tmp_path / "rgb.npz", domain="b")
    assert d.input_shape == (3, 12, 10) and len(d) == 15
    assert torch.equal(d.x[0, 2], torch.as_tensor(x[15, :, :, 2] / 255.0, dtype=torch.float32))
    nchw = load_npz(tmp_path / "rgb.npz", domain="a", layout="NHWC")
    assert nchw.input_shape == (3, 12, 10)

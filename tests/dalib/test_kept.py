"""Trained models kept by a sweep: written per run with its identity and preprocessing,
loadable for inference with the accuracy the run reported, re-made when missing, and usable
as another run's starting point."""

import json

import pytest
import torch

import dalib
from dalib.cli import main
from dalib.engine import accuracy
from scenarios.errors import InputError
from scenarios.suite import load_suite

SUITE = """name = "keep"
seeds = 2
keep_models = true
[budget]
steps = 40
batch_size = 32
checkpoints = 2
[model]
arch = "mlp"
hidden = [32]
[[scenario]]
name = "rot"
kind = "transfer"
source = { dataset = "uci-digits" }
target = { dataset = "uci-digits", shifts = [{ name = "rotate", degrees = 30 }] }
methods = ["source-only", "dann"]
[[scenario]]
name = "split"
kind = "stream"
data = { dataset = "uci-digits" }
stream = "split"
tasks = 2
budget = { epochs = 1 }
methods = ["naive"]
"""


def records(out):
    return {r["run_id"]: r for r in (json.loads(p.read_text())
                                     for p in (out / "runs").rglob("*.json"))}


def test_a_kept_model_loads_with_the_accuracy_its_run_reported(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    found = records(out)
    assert len(found) == 6
    suite = load_suite(str(path))
    for record in found.values():
        file = out / record["model_file"]
        assert file.is_file() and record["model_file"] == f"models/{record['run_id']}.pt"
        model = dalib.load_model(file)
        info = model.info
        assert info["run_id"] == record["run_id"] and info["config_hash"] == record["config_hash"]
        assert info["model"] == {"arch": "mlp", "hidden": [32]}
        assert info["preprocessing"]["data"] and info["weights"] == "after the last step"
        if record["kind"] == "transfer":
            sc = next(s for s in suite.scenarios if s.name == "rot").build(record["seed"])
            method = dalib.build_method("source-only", model)
            assert accuracy(method, sc.target_test) == pytest.approx(
                record["metrics"]["target_acc_last"], abs=1e-4)  # the same predictions
            assert info["classes"] == list(sc.source.classes)


def test_a_missing_kept_model_is_made_again_with_the_same_numbers(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace('methods = ["source-only", "dann"]', 'methods = ["dann"]'))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    before = records(out)
    victim = next(r for r in before.values() if r["kind"] == "transfer")
    (out / victim["model_file"]).unlink()
    assert main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    after = records(out)
    assert (out / victim["model_file"]).is_file()
    assert {k: r["metrics"] for k, r in after.items()} == \
        {k: r["metrics"] for k, r in before.items()}


def test_without_keep_models_nothing_is_kept_and_the_flag_keeps_them(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace("keep_models = true\n", ""))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    assert not (out / "models").exists()
    assert main(["run", str(path), "--out", str(out), "--no-report", "--keep-models"]) == 0
    assert len(list((out / "models").glob("*.pt"))) == 6


def test_a_kept_model_starts_another_run_and_its_file_is_part_of_the_identity(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--no-report"]) == 0
    first = next(r for r in records(out).values() if r["method"] == "source-only")
    kept = out / first["model_file"]
    model = dalib.load_model(kept)
    again = dalib.load_model(kept)
    from dalib.models import build_model

    started = build_model((64,), 10, arch="mlp", hidden=[32], init=str(kept))
    for a, b in zip(started.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    with pytest.raises(InputError, match="does not fit this model"):
        build_model((64,), 10, arch="mlp", hidden=[16], init=str(kept))
    follow = tmp_path / "f.toml"
    follow.write_text(SUITE.replace("keep_models = true\n", "").replace(
        'hidden = [32]', f'hidden = [32]\ninit = "{kept}"').split("[[scenario]]\nname = \"split\"")[0]
        .replace('methods = ["source-only", "dann"]', 'methods = ["dann"]'))
    ids = {s.name: s.fingerprints for s in load_suite(str(follow)).scenarios}
    assert str(kept) in ids["rot"]
    assert main(["run", str(follow), "--out", str(tmp_path / "o2"), "--no-report"]) == 0


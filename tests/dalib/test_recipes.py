"""Recipes: a suite names a reference library's training recipe; every method takes the
settings it has, the suite's own keys and a method's options override it, and the run's
identity holds the resolved values."""

import subprocess
import sys

import pytest

from dalib.runspec import expand
from scenarios.errors import InputError
from scenarios.recipes import RECIPES
from scenarios.suite import load_suite

SUITE = """
name = "r"
seeds = 1
recipe = "tllib"
[budget]
steps = 4
[model]
arch = "mlp"
[[scenario]]
name = "a"
kind = "transfer"
source = { dataset = "uci-digits" }
target = { dataset = "uci-digits", shifts = [{ name = "rotate", degrees = 30 }] }
methods = ["dann", { name = "source-only", lr = 0.1 }, "finetune-full"]
"""


def _runs(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return {r.method.label: r for r in expand(load_suite(str(path)))}


def test_a_recipe_reaches_every_method_under_its_own_keys(tmp_path):
    runs = _runs(tmp_path, SUITE)
    dann = runs["dann"].params
    assert {k: dann[k] for k in ("optimizer", "lr", "schedule", "backbone_lr")} == \
        {"optimizer": "sgd", "lr": 0.01, "schedule": "inverse", "backbone_lr": 0.1}
    assert runs["source-only[lr=0.1]"].params["lr"] == 0.1  # a method's option wins
    sc = runs["dann"].scenario
    assert sc.model == {"bottleneck": 256, "arch": "mlp"} and sc.budget["batch_size"] == 32
    config = runs["dann"].config()
    assert config["params"]["weight_decay"] == 1e-3  # in the run's identity
    plain = _runs(tmp_path, SUITE.replace('recipe = "tllib"\n', ""))["dann"]
    assert plain.config_hash != runs["dann"].config_hash


def test_suite_keys_override_the_recipe_and_model_keys_apply_where_taken(tmp_path):
    text = SUITE.replace('recipe = "tllib"', 'recipe = "domainbed"').replace(
        "[budget]\nsteps = 4", "[budget]\nsteps = 4\nbatch_size = 100\n[optim]\nlr = 0.5")
    runs = _runs(tmp_path, text)
    assert runs["dann"].params["lr"] == 0.5
    assert runs["dann"].scenario.budget["batch_size"] == 100
    assert runs["dann"].scenario.model["batch_norm"] is False
    torchvision = _runs(tmp_path, text.replace('arch = "mlp"', 'arch = "torchvision"'))
    assert "batch_norm" not in torchvision["dann"].scenario.model


def test_a_scenario_may_name_its_own_recipe(tmp_path):
    text = SUITE.replace('kind = "transfer"', 'kind = "transfer"\nrecipe = "domainbed"')
    assert _runs(tmp_path, text)["dann"].params["optimizer"] == "adam"


def test_an_unknown_recipe_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace('"tllib"', '"tlib"'))
    with pytest.raises(InputError) as err:
        load_suite(str(path))
    assert err.value.field == "recipe" and "tllib" in str(err.value)
    out = subprocess.run([sys.executable, "-m", "dalib.cli", "run", str(path), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode == 2 and "recipe" in out.stderr and not (tmp_path / "o").exists()


def test_recipes_name_their_source():
    assert set(RECIPES) == {"tllib", "domainbed", "avalanche"}
    assert all(r.source and r.optim for r in RECIPES.values())

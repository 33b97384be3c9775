"""Reproduction entries: the header is checked before anything runs (one error naming the
field), every built-in entry loads at full and smoke size, and the smoke overrides apply."""

import textwrap

import pytest

from scenarios.errors import InputError
from scenarios.reproduction import entries, size_variant
from scenarios.suite import load_suite

ENTRY = """
name = "tiny"
seeds = 5
[budget]
epochs = 2
batch_size = 64
[reproduction]
citation = "A. Author. A paper. 2020"
source = "Table 1"
protocol = "as published"
[reproduction.smoke]
seeds = 2
budget = { steps = 3 }
scenario = { tasks = 2 }
[[reproduction.value]]
scenario = "split"
method = "naive"
metric = "acc"
published = 20.0
spread = 1.0
spread_kind = "sd"
[[scenario]]
name = "split"
kind = "stream"
data = { dataset = "uci-digits" }
stream = "split"
tasks = 5
budget = { epochs = 3 }
methods = ["naive", { name = "ewc", strength = 10 }]
"""


def _write(tmp_path, text):
    path = tmp_path / "entry.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_row_stands_for_one_value_per_scenario_with_its_shared_keys(tmp_path):
    two = ENTRY.replace('[[scenario]]\nname = "split"',
                        '[[scenario]]\nname = "split-b"\nkind = "stream"\ndata = { dataset = '
                        '"uci-digits" }\nmethods = ["naive"]\n[[scenario]]\nname = "split"')
    row = two.replace("[[scenario]]", """[[reproduction.row]]
method = "naive"
metric = "acc"
published = { split = 21.0, split-b = 22.5 }
cause = "shorter training"
[[scenario]]""", 1)
    values = load_suite(str(_write(tmp_path, row))).reproduction.values
    one_by_one = two.replace("[[scenario]]", "".join(f"""[[reproduction.value]]
scenario = "{name}"
method = "naive"
metric = "acc"
published = {v}
cause = "shorter training"
""" for name, v in (("split", 21.0), ("split-b", 22.5))) + "[[scenario]]", 1)
    assert values[1:] == load_suite(str(_write(tmp_path, one_by_one))).reproduction.values[1:]
    assert [v.cell.scenarios for v in values[1:]] == [("split",), ("split-b",)]
    spread = load_suite(str(_write(tmp_path, row.replace(
        'cause = "shorter training"', 'spread = { split = 1.0, split-b = 0.5 }\n'
        'spread_kind = "se"')))).reproduction.values
    assert [(v.spread, v.spread_kind) for v in spread[1:]] == [(1.0, "se"), (0.5, "se")]
    for bad, field in ((row.replace("split-b = 22.5", 'split-b = "x"'),
                        "reproduction.row[0][split-b].published"),
                       (row.replace("split-b = 22.5", "split-c = 22.5"),
                        "reproduction.row[0][split-c].scenario"),
                       (row.replace('cause = "shorter training"', "spread = 1.0"),
                        "reproduction.row[0].spread"),
                       (row.replace("published = { split = 21.0, split-b = 22.5 }",
                                    "published = 21.0"), "reproduction.row[0].published"),
                       (row.replace('cause = "shorter training"', "spread = { split = 1.0 }"),
                        "reproduction.row[0].spread"),
                       (row.replace('cause = "shorter training"',
                                    'spread = { split = 1.0, split-b = 0.5 }\nspread_kind = "x"'),
                        "reproduction.row[0][split].spread_kind")):
        with pytest.raises(InputError) as err:
            load_suite(str(_write(tmp_path, bad)))
        assert err.value.field == field, (field, str(err.value))


def test_entry_loads_and_smoke_overrides(tmp_path):
    path = _write(tmp_path, ENTRY)
    full = load_suite(str(path))
    assert full.seeds == tuple(range(5)) and full.scenarios[0].budget["epochs"] == 3
    rep = full.reproduction
    assert rep.values[0].published == 20.0 and rep.values[0].spread_kind == "sd"
    smoke = load_suite(str(path), size="smoke")
    assert smoke.seeds == (0, 1)
    assert smoke.scenarios[0].budget == {"steps": 3, "batch_size": 64}  # steps replace epochs
    assert smoke.scenarios[0].options["tasks"] == 2


@pytest.mark.parametrize("old,new,field", [
    ('citation = "A. Author. A paper. 2020"\n', "", "reproduction.citation"),
    ('method = "naive"', 'method = "ewc"', "reproduction.value[0].method"),
    ('scenario = "split"\nmethod', 'scenario = "nope"\nmethod', "reproduction.value[0].scenario"),
    ('spread_kind = "sd"', 'spread_kind = "none"', "reproduction.value[0].spread_kind"),
    ("published = 20.0\n", 'published = "high"\n', "reproduction.value[0].published"),
    ("[reproduction.smoke]", "colour = 1\n[reproduction.smoke]", "reproduction.colour"),
])
def test_bad_header_is_one_error_naming_the_field(tmp_path, old, new, field):
    assert old in ENTRY
    path = _write(tmp_path, ENTRY.replace(old, new, 1))
    with pytest.raises(InputError) as err:
        load_suite(str(path))
    assert err.value.field == field and str(path) in str(err.value)


def test_value_without_published_needs_a_reason(tmp_path):
    path = _write(tmp_path, ENTRY.replace("published = 20.0\nspread = 1.0\nspread_kind = \"sd\"\n",
                                          ""))
    with pytest.raises(InputError, match="reproduction.value.0..note"):
        load_suite(str(path))


def test_smoke_needs_an_entry(tmp_path):
    path = _write(tmp_path, ENTRY.split("[reproduction]")[0] + ENTRY.split("[[scenario]]")[1]
                  .join(["[[scenario]]", ""]))
    with pytest.raises(InputError, match="reproduction: is missing"):
        load_suite(str(path), size="smoke")


def test_protocol_as_a_table_of_settings(tmp_path):
    path = _write(tmp_path, ENTRY.replace('protocol = "as published"',
                                          '[reproduction.protocol]\narchitecture = "MLP 400-400"\n'
                                          'lr = 0.001\nmemory = [1100, 4400]\n[reproduction.x]'
                                          ).replace("[reproduction.x]\n", "", 1))
    rep = load_suite(str(path)).reproduction
    assert rep.protocol == "architecture: MLP 400-400; lr: 0.001; memory: 1100, 4400"


def test_size_variants_leave_the_original_alone():
    raw = {"seeds": 5, "budget": {"epochs": 4}, "model": {"arch": "mlp", "hidden": [8]},
           "scenario": [{"name": "a", "cycles": 8}, {"name": "b", "cycles": 8}],
           "reproduction": {"smoke": {"budget": {"steps": 2}, "scenario": {"cycles": 1}},
                            "published": {"seeds": 10, "model": {"arch": "cnn"},
                                          "scenario": {"b": {"cycles": 20}}}}}
    out = size_variant(raw, "smoke")
    assert out["budget"] == {"steps": 2} and out["scenario"][0]["cycles"] == 1
    assert raw["budget"] == {"epochs": 4} and raw["scenario"][0]["cycles"] == 8
    out = size_variant(raw, "published")
    assert out["seeds"] == 10 and out["model"] == {"arch": "cnn"}  # the MLP's keys dropped
    assert [t["cycles"] for t in out["scenario"]] == [8, 20]  # keys for scenario b alone
    assert size_variant(raw, "reduced") is raw and raw["scenario"][1]["cycles"] == 8


@pytest.mark.parametrize("name", sorted(entries()))
def test_builtin_entries_load_at_both_sizes(name):
    full = load_suite(str(entries()[name]))
    smoke = load_suite(str(entries()[name]), size="smoke")
    rep = full.reproduction
    assert rep is not None and rep.citation and rep.protocol and (rep.values or rep.shapes)
    assert len(full.seeds) >= 5  # the ledger's intervals rest on at least 5 seeds
    assert len(smoke.seeds) < len(full.seeds)
    published = load_suite(str(entries()[name]), size="published")  # declared and loadable
    assert rep.published and [sc.name for sc in published.scenarios] == \
        [sc.name for sc in full.scenarios]


CHECK = """[[reproduction.check]]
name = "longer"
what = "6 epochs per task"
seeds = 3
budget = { epochs = 6 }
methods = ["naive"]
scenarios = ["split"]
"""


def test_a_check_is_the_reduced_size_with_its_keys_and_the_smoke_size_still_wins(tmp_path):
    path = _write(tmp_path, ENTRY.replace('spread_kind = "sd"\n',
                                          'spread_kind = "sd"\ncause = "fewer epochs"\n' + CHECK))
    rep = load_suite(str(path)).reproduction
    assert rep.values[0].cause == "fewer epochs"
    (check,) = rep.checks
    assert (check.name, check.methods, check.scenarios) == ("longer", ("naive",), ("split",))
    longer = load_suite(str(path), check="longer")
    assert longer.seeds == (0, 1, 2) and longer.scenarios[0].budget["epochs"] == 6
    smoke = load_suite(str(path), size="smoke", check="longer")
    assert smoke.seeds == (0, 1) and smoke.scenarios[0].budget == {"steps": 3, "batch_size": 64}
    with pytest.raises(InputError, match="no check named 'short'"):
        load_suite(str(path), check="short")


@pytest.mark.parametrize("old,new,field", [
    ('name = "longer"', 'name = "published"', "reproduction.check[0].name"),
    ('what = "6 epochs per task"\n', "", "reproduction.check[0].what"),
    ('scenarios = ["split"]', 'scenarios = ["other"]', "reproduction.check[0].scenarios"),
    ('methods = ["naive"]', 'methods = "naive"', "reproduction.check[0].methods"),
    ('seeds = 3\n', 'steps = 3\n', "reproduction.check[0].steps"),
])
def test_a_bad_check_is_one_error_naming_its_field(tmp_path, old, new, field):
    path = _write(tmp_path, ENTRY.replace('spread_kind = "sd"\n', 'spread_kind = "sd"\n'
                                          + CHECK.replace(old, new, 1)))
    with pytest.raises(InputError) as err:
        load_suite(str(path))
    assert err.value.field.startswith(field) and str(path) in str(err.value)


@pytest.mark.parametrize("name", sorted(entries()))
def test_every_builtin_published_value_states_its_likely_cause_should_it_miss(name):
    rep = load_suite(str(entries()[name])).reproduction
    assert all(v.cause for v in rep.values if v.published is not None), name

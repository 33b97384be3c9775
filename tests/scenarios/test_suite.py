import pytest

from scenarios.errors import InputError
from scenarios.suite import builtin_suites, load_suite


def _write(tmp_path, text):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


GOOD = """
name = "mine"
seeds = [0, 4]
[budget]
steps = 20
[[scenario]]
name = "a"
kind = "transfer"
source = { dataset = "uci-digits" }
target = { dataset = "uci-digits", shifts = [{ name = "noise", std = 0.1 }] }
k = 2
methods = ["source-only", { name = "target-only", lr = 0.01 }]
"""


def test_builtin_quick_suite_parses():
    assert "quick" in builtin_suites()
    s = load_suite("quick")
    assert [sc.kind for sc in s.scenarios] == ["transfer", "stream"]
    assert s.seeds == (0, 1, 2)


def test_user_suite_and_method_labels(tmp_path):
    s = load_suite(str(_write(tmp_path, GOOD)))
    sc = s.scenarios[0]
    assert s.seeds == (0, 4) and sc.budget == {"steps": 20}
    assert [m.label for m in sc.methods] == ["source-only", "target-only[lr=0.01]"]
    data = sc.build(seed=0)
    assert data.k == 2 and len(data.source) + len(data.target_train) > 1000


def test_optim_defaults_reach_every_method_and_scenarios_override_them(tmp_path):
    text = GOOD.replace("[budget]", '[optim]\nschedule = "cosine"\nlr = 0.01\n[budget]')
    text += 'optim = { lr = 0.1 }\n'
    sc = load_suite(str(_write(tmp_path, text))).scenarios[0]
    assert sc.optim == {"schedule": "cosine", "lr": 0.1}


def test_a_top_level_method_list_serves_every_scenario_without_its_own(tmp_path):
    text = GOOD.replace('[budget]', 'methods = ["source-only", "dann"]\n[budget]')
    second = GOOD.split("[[scenario]]")[1].replace('name = "a"', 'name = "b"')
    text = text.replace('methods = ["source-only", { name = "target-only", lr = 0.01 }]\n', '')
    text += "[[scenario]]" + second  # b keeps its own list
    s = load_suite(str(_write(tmp_path, text)))
    assert [[m.label for m in sc.methods] for sc in s.scenarios] == [
        ["source-only", "dann"], ["source-only", "target-only[lr=0.01]"]]
    bad = text.replace('methods = ["source-only", "dann"]', 'methods = ["source-only", 3]')
    with pytest.raises(InputError) as err:
        load_suite(str(_write(tmp_path, bad)))
    assert err.value.field == "methods[1]"
    none = GOOD.replace('methods = ["source-only", { name = "target-only", lr = 0.01 }]\n', '')
    with pytest.raises(InputError, match="suite's top level") as err:
        load_suite(str(_write(tmp_path, none)))
    assert err.value.field == "scenario[0].methods"


@pytest.mark.parametrize("edit, field, expected", [
    (lambda t: t.replace('[budget]', 'optim = 3\n[budget]'), "optim", "a table"),
    (lambda t: t.replace('k = 2', 'k = 2\ncolour = 1'), "scenario[0].colour", "one of"),
    (lambda t: t.replace('seeds = [0, 4]', 'seeds = "x"'), "seeds", "a count in 1.."),
    (lambda t: t.replace('"uci-digits" }\ntarget', '"svhn" }\ntarget'),
     "scenario[0].source.dataset", "one of"),
    (lambda t: t.replace('"noise", std', '"blur", std'), "scenario[0].target.shifts[0].name",
     "one of"),
    (lambda t: t.replace('kind = "transfer"', 'kind = "both"'), "scenario[0].kind", "'transfer'"),
    (lambda t: t.replace('k = 2', 'k = -1'), "scenario[0].k", ">= 0"),
    (lambda t: t.replace('steps = 20', 'steps = 20\nepochs = 1'), "budget", "one of them"),
    (lambda t: t.replace('methods = [', 'methods = ["source-only", '), "scenario[0].methods",
     "distinct"),
    (lambda t: t + '\n[[scenario]]\nname = "a"\nkind = "stream"\ndata = {dataset = "mnist"}\n'
     'methods = ["naive"]\n', "scenario.name", "distinct"),
    (lambda t: t.replace('[budget]', '[budjet]'), "budjet", "one of"),
])
def test_suite_errors_name_file_and_field(tmp_path, edit, field, expected):
    path = _write(tmp_path, edit(GOOD))
    with pytest.raises(InputError) as err:
        load_suite(str(path))
    msg = str(err.value)
    assert msg.startswith(f"{path}: {field}:"), msg
    assert expected in msg


def test_malformed_toml_and_missing_suite(tmp_path):
    path = _write(tmp_path, "name = \n")
    with pytest.raises(InputError, match="malformed"):
        load_suite(str(path))
    with pytest.raises(InputError, match="no file or built-in suite named 'nosuch'"):
        load_suite("nosuch")


def test_open_set_key_is_checked_and_builds_an_open_set_scenario(tmp_path):
    text = GOOD.replace("k = 2", "open_set = true").replace(
        '{ dataset = "uci-digits" }',
        '{ dataset = "uci-digits", shifts = [{ name = "class-subset", classes = [0, 1] }] }', 1)
    data = load_suite(str(_write(tmp_path, text))).scenarios[0].build(seed=0)
    assert data.open_set and data.num_classes == 2 and data.target_test.classes[-1] == "unknown"
    for bad, match in (('open_set = "yes"', "scenario\\[0\\].open_set: is 'yes'"),
                       ("open_set = true\nk = 2", "scenario\\[0\\].k: is 2 in an open-set")):
        with pytest.raises(InputError, match=match):
            load_suite(str(_write(tmp_path, GOOD.replace("k = 2", bad))))


def test_task_free_stream_keys_are_checked(tmp_path):
    stream = """
name = "s"
[[scenario]]
name = "a"
kind = "stream"
data = { dataset = "uci-digits" }
methods = ["naive"]
"""
    s = load_suite(str(_write(tmp_path, stream + "online = true\nblurry = 15\nanytime = 2\n")))
    data = s.scenarios[0].build(seed=0)
    assert data.online and data.anytime == 2
    for extra, match in (("blurry = 10\n", "blurry: is 10 in a stream with task boundaries"),
                         ("online = 1\n", "online: is 1"),
                         ("online = true\nblurry = 100\n", "blurry: is 100"),
                         ("online = true\nanytime = 0\n", "anytime: is 0")):
        with pytest.raises(InputError, match=match):
            load_suite(str(_write(tmp_path, stream + extra)))

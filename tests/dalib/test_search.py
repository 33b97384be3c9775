"""Hyperparameter search: grids and random spaces expand into runs, and the configuration each
seed gets is the one the criterion picks from the records, whatever the target test labels."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dalib.cli import main
from dalib.search import configurations, selection_rows
from dalib.selection import HIGHER_IS_BETTER, pick
from dalib.store import load_records
from scenarios.errors import InputError
from scenarios.suite import MethodSpec

SUITE = """
name = "search"
seeds = 2
[budget]
steps = 40
checkpoints = 3
[search]
{search}
[[scenario]]
name = "rot"
kind = "transfer"
source = {{ dataset = "uci-digits" }}
target = {{ dataset = "uci-digits", shifts = [{{ name = "rotate", degrees = 30 }}] }}
methods = ["source-only", {methods}]
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    (root / "s.toml").write_text(SUITE.format(
        search='select = "dev"',
        methods='{ name = "dann", weight = [0.1, 1.0] }, '
                '{ name = "dann+mcc", mcc = { weight = [0.1, 0.5] } }'))
    assert main(["run", str(root / "s.toml"), "--out", str(root / "out"), "--no-report"]) == 0
    return root / "out"


def test_grid_runs_every_configuration_and_selects_per_seed_by_the_criterion(grid):
    table = pd.read_csv(grid / "results.csv")
    assert {"dann[weight=0.1]", "dann[weight=1.0]", "dann", "dann+mcc",
            "dann+mcc[mcc={'weight': 0.1}]"} <= set(table["method"])
    records = load_records(grid)
    for seed in (0, 1):
        runs = [r for r in records if r["seed"] == seed and r.get("search", {}).get("group")
                == "dann"]
        assert len(runs) == 2
        # independently: each configuration's DEV pick, then the lowest DEV risk
        best = min(runs, key=lambda r: pick(r["checkpoints"], "dev")["dev"])
        rows = table[(table.method == "dann") & (table.seed == seed)].set_index("metric")
        assert rows.loc["selected_trial", "value"] == best["search"]["trial"]
        chosen = pick(best["checkpoints"], "dev")["target_acc"]
        assert rows.loc["target_acc", "value"] == pytest.approx(chosen)
        oracle = max(pick(r["checkpoints"], "dev")["target_acc"] for r in runs)
        assert rows.loc["target_acc_oracle_hp", "value"] == pytest.approx(oracle)
        assert rows.loc["selection_regret", "value"] == pytest.approx(oracle - chosen)
        assert "gain_over_source_only" in set(rows.index)


def test_poisoned_target_test_labels_change_no_choice(grid):
    records = load_records(grid)
    before = {(r["method"], r["seed"]): r["value"] for r in selection_rows(records)
              if r["metric"] == "selected_trial"}
    rng = np.random.default_rng(0)
    poisoned = copy.deepcopy(records)
    for r in poisoned:  # what wrong test labels would do: every test accuracy changes
        for c in r.get("checkpoints", []):
            c["target_acc"] = float(rng.uniform(0, 100))
    after = {(r["method"], r["seed"]): r["value"] for r in selection_rows(poisoned)
             if r["metric"] == "selected_trial"}
    assert before == after and len(before) == 4


def _headline(records: list[dict], out: Path) -> pd.DataFrame:
    """The report's "Which method is best" table, built from these records."""
    from analysis.report import build_report
    from dalib.store import results_from_records

    build_report(results_from_records(records), out, records=records)
    text = (out / "report.md").read_text()
    part = text[text.index("## Which method is best"):].split("\n\n")[1].splitlines()
    header = [c.strip() for c in part[0].strip("|").split("|")]
    return pd.DataFrame([[c.strip() for c in line.strip("|").split("|")] for line in part[2:]],
                        columns=header)


def test_no_headline_is_chosen_on_target_test_labels(grid, tmp_path):
    """A configuration that no seed's selection chose, given perfect target test accuracy
    (what choosing on test labels would find): the headline ranks methods only (a searched
    method by its selected configuration), so it neither names that configuration nor moves."""
    records = load_records(grid)
    first = _headline(records, tmp_path / "before")
    chosen = {(r["method"], r["seed"]): r["value"] for r in selection_rows(records)
              if r["metric"] == "selected_trial"}
    unchosen = next(r for r in records if (r.get("search") or {}).get("group") == "dann"
                    and all(chosen[("dann", seed)] != r["search"]["trial"] for seed in (0, 1)))
    label = unchosen["method"]
    poisoned = copy.deepcopy(records)
    for r in poisoned:
        if r["method"] == label:
            for c in r["checkpoints"]:
                c["target_acc"] = 100.0
            r["metrics"] = {k: 100.0 if k.startswith("target_acc") else v
                            for k, v in r["metrics"].items()}
    after = _headline(poisoned, tmp_path / "after")
    methods = {m for m in (r["method"] for r in records)} - {r["method"] for r in records
                                                                 if r.get("search")}
    best = first["best method"].str.replace(r".*best mean: (.*)\)$", r"\1", regex=True)
    assert best.str.strip("*").isin(methods | {"dann", "dann+mcc"}).all(), best
    pd.testing.assert_frame_equal(first, after)  # the same names and numbers
    table = pd.read_csv(tmp_path / "after" / "tables" / "configurations-transfer.csv")
    assert label in set(table["configuration"])  # it is shown, among the configurations


def test_random_search_draws_the_same_configurations_for_every_seed_and_level_mean(tmp_path):
    (tmp_path / "s.toml").write_text(SUITE.format(
        search='kind = "random"\ntrials = 3\nseed = 7\nlevel = "mean"\nselect = "entropy"',
        methods='{ name = "dann", lr = { log_uniform = [1e-4, 1e-2] }, weight = [0.3, 1.0] }'))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--no-report"]) == 0
    records = [r for r in load_records(out) if r.get("search")]
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["seed"], set()).add(r["method"])
    assert len(by_seed[0]) == 3 and by_seed[0] == by_seed[1]
    table = pd.read_csv(out / "results.csv")
    trials = table[(table.method == "dann") & (table.metric == "selected_trial")]["value"]
    assert trials.nunique() == 1  # level mean: one configuration for both seeds
    mean = {}
    for r in records:
        mean.setdefault(r["search"]["trial"], []).append(pick(r["checkpoints"], "entropy")["entropy"])
    sign = 1 if HIGHER_IS_BETTER["entropy"] else -1
    assert trials.iloc[0] == max(mean, key=lambda t: sign * np.mean(mean[t]))
    # resume: every configuration x seed is a run, all cached
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--no-report"]) == 0


@pytest.mark.parametrize("params, search, expected", [
    ({"weight": []}, {}, "weight: is an empty list"),
    ({"lr": {"log_uniform": [0, 1]}}, {"kind": "random", "trials": 2}, "lr.log_uniform"),
    ({"lr": {"uniform": [1, 1]}}, {"kind": "random", "trials": 2}, "low < high"),
    ({"lr": {"uniform": [0.1, 1]}}, {}, "distribution in a grid search"),
    ({"weight": [1.0]}, {"kind": "random"}, "search.trials: missing"),
    ({"weight": [1.0]}, {"kind": "bayes"}, "search.kind: is 'bayes'"),
    ({"weight": [1.0]}, {"select": "oracle"}, "search.select: is 'oracle'"),
    ({"weight": [1.0]}, {"colour": 1}, "search.colour: unknown search setting"),
])
def test_bad_spaces_are_input_errors(params, search, expected):
    with pytest.raises(InputError, match=expected):
        configurations(MethodSpec("dann", params), search)


def test_a_bad_space_in_a_suite_exits_2_naming_the_field(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SUITE.format(search="", methods='{ name = "dann", '
                                                  'weight = { uniform = [0.1, 1] } }'))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "scenario[0].methods[1].weight: is a uniform distribution in a grid search" in err
    assert not Path(tmp_path / "out").exists()


def test_search_info_is_in_the_record_not_in_the_identity(grid):
    record = json.loads(next((grid / "runs").glob("rot-dann_weight_0.1*.json")).read_text())
    assert record["search"] == {"group": "dann", "trial": 0, "select": "dev", "level": "seed"}
    assert "search" not in record["config"]


def test_the_report_holds_the_validator_study(grid, tmp_path):
    assert main(["report", str(grid), "--out", str(tmp_path / "rep")]) == 0
    study = pd.read_csv(tmp_path / "rep" / "tables" / "validators.csv")
    assert set(study["validator"]) == {"dev", "snd", "entropy", "source-val", "im", "bnm", "iwcv"}
    assert study["best"].sum() == 1 and study["spearman"].between(-1, 1).all()
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Validators: which criterion chooses best?" in text
    assert (tmp_path / "rep" / "figures" / "transfer-validators.png").is_file()


STREAM = """
name = "stream-search"
seeds = 2
[budget]
steps = 30
[[scenario]]
name = "split"
kind = "stream"
data = {{ dataset = "uci-digits" }}
stream = "split"
tasks = 3
{val}
methods = ["naive", {{ name = "ewc", strength = [1.0, 100000.0] }}]
"""


def test_streams_select_on_the_validation_parts_of_their_tasks(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(STREAM.format(val=""))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "no")]) == 2
    assert "val_fraction: is not set but methods search" in capsys.readouterr().err
    (tmp_path / "s.toml").write_text(STREAM.format(val="val_fraction = 0.2"))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(out), "--no-report"]) == 0
    records = load_records(out)
    table = pd.read_csv(out / "results.csv")
    for seed in (0, 1):
        runs = sorted((r for r in records if r["seed"] == seed and r.get("search")),
                      key=lambda r: r["search"]["trial"])
        assert len(runs) == 2 and all(len(r["accuracy_matrix_val"]) == 4 for r in runs)
        best = max(runs, key=lambda r: np.mean(r["accuracy_matrix_val"][-1]))
        rows = table[(table.method == "ewc") & (table.seed == seed)].set_index("metric")["value"]
        assert rows["selected_trial"] == best["search"]["trial"]
        assert rows["acc"] == pytest.approx(best["metrics"]["acc"])
        oracle = max(r["metrics"]["acc"] for r in runs)
        assert rows["selection_regret"] == pytest.approx(oracle - best["metrics"]["acc"])
    poisoned = copy.deepcopy(records)
    for r in poisoned:  # other test accuracies: the choice reads the validation parts only
        r["metrics"]["acc"] = float(np.random.default_rng(r["seed"]).uniform(0, 100))
    assert [r["value"] for r in selection_rows(poisoned) if r["metric"] == "selected_trial"] \
        == [r["value"] for r in selection_rows(records) if r["metric"] == "selected_trial"]


def test_the_report_names_each_selected_configuration(grid, tmp_path):
    assert main(["report", str(grid), "--out", str(tmp_path / "rep")]) == 0
    selected = pd.read_csv(tmp_path / "rep" / "tables" / "selected-transfer.csv")
    table = pd.read_csv(grid / "results.csv")
    for r in selected.to_dict("records"):
        trial = table[(table.method == r["method"]) & (table.seed == r["seed"])
                      & (table.metric == "selected_trial")]["value"].item()
        record = next(x for x in load_records(grid) if x["method"] == r["selected_config"]
                      and x["seed"] == r["seed"])
        assert record["search"]["trial"] == trial and record["search"]["group"] == r["method"]
    assert len(selected) == 4

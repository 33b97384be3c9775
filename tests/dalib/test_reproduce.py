"""``dalib reproduce`` end to end: a user's entry (written as a hidden one would be) runs,
resumes, and its ledger rows equal the numbers recomputed by hand from the run records; bad
entries stop before anything runs; every built-in entry runs at its smoke size (slow)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import dalib
from dalib.cli import main
from dalib.commands.reproduce import ledger_entry
from scenarios.reproduction import entries, missing
from scenarios.suite import load_suite

ENTRY = """
# A user's ledger entry: Split UCI digits, class-incremental, fine-tuning against replay.
name = "user-entry"
seeds = 5

[budget]
epochs = 2
batch_size = 64

[reproduction]
citation = "A. Author. A continual paper. 2021"
source = "Table 1"
protocol = "Split digits, 5 tasks, an MLP, 2 epochs per task"
published_seeds = 3
differences = [{ what = "UCI digits instead of MNIST", direction = "lower accuracy" }]

[reproduction.smoke]
seeds = 3
budget = { steps = 4 }

[[reproduction.value]]
scenario = "split"
method = "naive"
metric = "acc"
published = 19.5
spread = 0.4
spread_kind = "sd"

[[reproduction.value]]
scenario = "split"
method = "replay[memory=200]"
metric = "acc"
published = 85.0

[[reproduction.shape]]
claim = "replay forgets less than fine-tuning"
left = { scenario = "split", method = "replay[memory=200]", metric = "acc" }
relation = ">"
right = { scenario = "split", method = "naive", metric = "acc" }

[[scenario]]
name = "split"
kind = "stream"
data = { dataset = "uci-digits" }
stream = "split"
tasks = 5
methods = ["naive", { name = "replay", memory = 200 }]
"""


def _records(out):
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def test_user_entry_ledger_rows_equal_the_records(tmp_path, capsys):
    path = tmp_path / "user-entry.toml"
    path.write_text(ENTRY)
    out = tmp_path / "ledger"
    assert main(["reproduce", "--entry", str(path), "--smoke", "--out", str(out)]) == 0
    records = _records(out / "user-entry")
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    values = pd.read_csv(out / "ledger-values.csv")
    for method, published in (("naive", 19.5), ("replay[memory=200]", 85.0)):
        acc = [r["metrics"]["acc"] for r in records if r["method"] == method]
        row = values[values["cell"] == f"split / {method} / acc"].iloc[0]
        lo, hi = stats.t.interval(0.95, len(acc) - 1, loc=np.mean(acc), scale=stats.sem(acc))
        assert row["seeds"] == 3 and row["entry"] == "user-entry"
        assert (row["mean"], row["lo"], row["hi"]) == pytest.approx((np.mean(acc), lo, hi))
        assert row["difference"] == pytest.approx(np.mean(acc) - published)
        assert bool(row["inside"]) == (lo <= published <= hi)
    claims = pd.read_csv(out / "ledger-claims.csv")
    assert claims.iloc[0]["seeds"] == 3 and claims.iloc[0]["verdict"] in (
        "holds", "reversed", "not resolved")
    text = (out / "ledger.md").read_text()
    assert "## user-entry" in text and "19.50 ± 0.40 (sd)" in text
    assert "A. Author. A continual paper. 2021" in text and "UCI digits instead of MNIST" in text
    assert (out / "ledger-figures" / "user-entry.png").stat().st_size > 0
    # the stamp: in every record, and summarised on the page and in both tables
    stamp = records[0]["stamp"]
    assert stamp["dalib"] == dalib.__version__ and stamp["torch"] == torch.__version__
    assert stamp["kernels"] == torch.backends.cpu.get_cpu_capability().lower()
    assert stamp["threads"] == records[0]["settings"]["threads"] and stamp["device"] == "cpu"
    assert f"Stamp: dalib {dalib.__version__} (commit " in text and "CPU kernels" in text
    assert values.iloc[0]["stamp_data"].startswith("uci-digits/digits.csv.gz ")
    assert values.iloc[0]["stamp_torch"] == torch.__version__ and claims.iloc[0]["stamp_dalib"]
    assert "different stamps" not in text
    # a second run resumes: nothing trains again, the same ledger
    capsys.readouterr()
    assert main(["reproduce", "--entry", str(path), "--smoke", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count(" cached ") == 6
    assert pd.read_csv(out / "ledger-values.csv").equals(values)
    # a run missing from the records: the entry says so and its rows rest on what is there
    sorted((out / "user-entry" / "runs").glob("split-naive-s0-*.json"))[0].unlink()
    entry = ledger_entry("user-entry", load_suite(str(path), size="smoke"), out / "user-entry",
                         "smoke")
    assert entry["runs"] == "5 / 6" and "Incomplete: 5 of 6 runs finished" in entry["cost"]
    assert entry["values"].iloc[0]["seeds"] == 2


@pytest.mark.parametrize("edit,message", [
    (("method = \"naive\"\nmetric", "method = \"ewc\"\nmetric"), "reproduction.value[0].method"),
    (("[reproduction]", "[reproduced]"), "reproduced: unknown key"),
    (("metric = \"acc\"\npublished = 19.5", "metric = \"accuracy\"\npublished = 19.5"),
     "reproduction.value[0].metric: is 'accuracy' (expected a metric of stream runs"),
    (("metric = \"acc\" }\nrelation", "metric = \"bwt_\" }\nrelation"),
     "reproduction.shape[0].left.metric: is 'bwt_'"),
    (("metric = \"acc\" }\n\n[[scenario]]", "metric = \"target_acc\" }\n\n[[scenario]]"),
     "reproduction.shape[0].right.metric: is 'target_acc'"),
])
def test_bad_entry_exits_2_and_writes_nothing(tmp_path, capsys, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(ENTRY.replace(*edit, 1))
    out = tmp_path / "ledger"
    assert main(["reproduce", "--entry", str(path), "--smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_two_entries_of_one_name_exit_2(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.toml").write_text(ENTRY.replace("19.5", f"19.{len(folder)}"))
    out = tmp_path / "ledger"
    assert main(["reproduce", "--entry", str(tmp_path / "a" / "x.toml"), "--entry",
                 str(tmp_path / "b" / "x.toml"), "--smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--entry: names two entries called 'x'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_entry_and_plain_suite_exit_2(tmp_path, capsys):
    assert main(["reproduce", "--entry", "no-such-entry", "--out", str(tmp_path / "o")]) == 2
    assert "--entry" in capsys.readouterr().err
    assert main(["reproduce", "--entry", "scenarios/suites/quick.toml", "--smoke",
                 "--out", str(tmp_path / "o")]) == 2
    assert "reproduction: is missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


RUNNABLE = [n for n, p in entries().items()
            if not missing(load_suite(str(p), size="smoke").reproduction, None, "auto", "smoke")]


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_every_builtin_entry_runs_at_smoke_size(tmp_path, name):
    out = tmp_path / "ledger"
    assert main(["reproduce", "--smoke", "--entry", name, "--out", str(out)]) == 0
    text = (out / "ledger.md").read_text()
    values = pd.read_csv(out / "ledger-values.csv")
    claims = pd.read_csv(out / "ledger-claims.csv")
    assert f"## {name}" in text and (out / "ledger-figures" / f"{name}.png").is_file()
    rep = load_suite(str(entries()[name])).reproduction
    assert (values["entry"] == name).sum() == len(rep.values)
    assert (claims["entry"] == name).sum() == len(rep.shapes)
    # its value rows (an entry may hold claims only) have dalib's number from the smoke
    # seeds, wherever the metric exists
    assert len(rep.values) == 0 or (values["seeds"] >= 1).mean() > 0.8, values


def test_the_ledger_lists_entries_whose_data_or_device_is_not_here(tmp_path, monkeypatch):
    """An entry whose benchmark copy (or GPU) is missing is listed with what it needs, and
    the entries that can run still run."""
    import scenarios.reproduction

    folder = tmp_path / "entries"
    folder.mkdir()
    for name in ("tllib-office31", "wang2019-negative-transfer"):
        (folder / f"{name}.toml").write_text(entries()[name].read_text())
    monkeypatch.setattr(scenarios.reproduction, "ENTRIES_DIR", folder)
    out = tmp_path / "ledger"
    assert main(["reproduce", "--smoke", "--out", str(out), "--no-checks"]) == 0
    text = (out / "ledger.md").read_text()
    office = text.split("## tllib-office31")[1].split("\n## ")[0]
    assert "Not run here (smoke size): it needs" in office or torch.cuda.is_available()
    assert "## wang2019-negative-transfer" in text
    values = pd.read_csv(out / "ledger-values.csv")
    assert (values[values["entry"] == "wang2019-negative-transfer"]["seeds"] >= 1).all()


def _sized_entry(tmp_path, published: str):
    text = ENTRY.replace("[reproduction.smoke]", published + "\n[reproduction.smoke]")
    path = tmp_path / "user-entry.toml"
    path.write_text(text)
    return path


def test_the_published_size_runs_where_its_data_is_and_the_page_says_which_size(tmp_path):
    path = _sized_entry(tmp_path, """[reproduction.published]
seeds = 2
budget = { steps = 6 }
requires = { samples = { uci-digits = 1797 } }
note = "the paper's 2 seeds on the whole UCI set"
""")
    out = tmp_path / "out"
    assert main(["reproduce", "--entry", str(path), "--size", "published", "--out",
                 str(out)]) == 0
    records = _records(out / "user-entry")
    assert len(records) == 4 and {r["seed"] for r in records} == {0, 1}
    assert all(r["config"]["budget"]["steps"] == 6 for r in records)
    values = pd.read_csv(out / "ledger-values.csv")
    assert set(values["size"]) == {"published"}
    text = (out / "ledger.md").read_text()
    assert "at published size" in text and "`dalib reproduce --size published`" in text
    assert "Cost (published size): 4 runs" in text
    assert ("Size: these numbers come from the entry's published size. Published size: the "
            "paper's 2 seeds") in text
    assert "it needs uci-digits with 1,797 samples" in text


@pytest.mark.parametrize("requires, says", [
    ("{ samples = { mnist = 70000 } }", "it needs 'mnist' with 70,000 samples ("),
    ("{ device = \"cuda\" }", "it needs a CUDA device"),
    ("{ samples = { places365-c = 750000 } }", "it needs the dataset 'places365-c', which this dalib "
                                             "cannot read")])
def test_the_published_size_is_refused_in_one_line_where_its_data_or_device_is_missing(
        tmp_path, capsys, requires, says):
    if "cuda" in requires and torch.cuda.is_available():
        pytest.skip("this machine has the CUDA device the entry asks for")
    path = _sized_entry(tmp_path, f"[reproduction.published]\nseeds = 10\nrequires = {requires}\n")
    out = tmp_path / "out"
    assert main(["reproduce", "--entry", str(path), "--size", "published", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err and "user-entry" in err
    assert not out.exists()  # nothing written


def test_every_builtin_entry_declares_its_published_size():
    for name, path in entries().items():
        rep = load_suite(str(path)).reproduction
        assert rep.published and rep.published.get("note"), name


def test_a_check_runs_its_methods_into_its_folder_and_the_page_shows_what_it_measured(
        tmp_path):
    text = ENTRY.replace('spread_kind = "sd"\n', 'spread_kind = "sd"\ncause = "Too few steps."\n'
                         '\n[[reproduction.check]]\nname = "longer"\nwhat = "twice the epochs"\n'
                         'budget = { epochs = 4 }\nmethods = ["naive"]\n', 1)
    path = tmp_path / "user-entry.toml"
    path.write_text(text.replace("published = 19.5", "published = 101.0"))
    out = tmp_path / "ledger"
    assert main(["reproduce", "--entry", str(path), "--smoke", "--out", str(out)]) == 0
    checked = _records(out / "checks" / "user-entry" / "longer")
    assert {r["method"] for r in checked} == {"naive"} and len(checked) == 3  # smoke seeds
    acc = [r["metrics"]["acc"] for r in checked]
    row = pd.read_csv(out / "ledger-values.csv").iloc[0]
    assert row["check"] == "longer" and row["check_seeds"] == 3
    assert row["check_mean"] == pytest.approx(np.mean(acc)) and not row["check_inside"]
    page = (out / "ledger.md").read_text()
    assert "Outside the published interval, and the likely cause:" in page
    assert "Too few steps. *Measured* with twice the epochs (check longer): " in page
    assert "Its checks: 3 runs of 3, " in page
    # --no-checks leaves them out, the ledger without the measurement
    assert main(["reproduce", "--entry", str(path), "--smoke", "--no-checks", "--out",
                 str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "checks").exists()
    assert "*Measured*" not in (tmp_path / "plain" / "ledger.md").read_text()


def test_run_takes_a_subset_of_scenarios_and_method_labels_with_commas(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    plain = ENTRY.split("[reproduction]")[0] + "[[scenario]]" + ENTRY.split("[[scenario]]")[1]
    other = """
[[scenario]]
name = "other"
kind = "stream"
data = { dataset = "uci-digits" }
stream = "split"
tasks = 5
methods = ["naive", { name = "ewc", strength = 1, fisher = "sample" }]
"""
    suite.write_text(plain + other)
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--seeds", "1", "--scenarios", "other",
                 "--methods", "ewc[fisher=sample,strength=1]", "--no-report"]) == 0
    assert [(r["scenario"], r["method"]) for r in _records(out)] == \
        [("other", "ewc[fisher=sample,strength=1]")]
    assert main(["run", str(suite), "--out", str(tmp_path / "x"), "--scenarios", "nope"]) == 2
    assert "--scenarios: 'nope' is not in suite" in capsys.readouterr().err


def test_an_entry_whose_benchmark_is_not_here_is_listed_not_run_and_refused_by_name(
        tmp_path, capsys):
    """A benchmark entry (its data and GPU named in ``[reproduction] requires``) is skipped
    by a plain ``dalib reproduce`` with its reason on the page, and refused in one line when
    asked for by name."""
    path = tmp_path / "bench-entry.toml"
    path.write_text(ENTRY.replace("[reproduction]\n", "[reproduction]\nrequires = { samples = "
                                  "{ office31 = 4110 } }\n", 1))
    out = tmp_path / "out"
    assert main(["reproduce", "--entry", str(path), "--smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "entry 'bench-entry' cannot run at that size here: it needs 'office31'" in err
    assert not out.exists()
    suite = load_suite(str(path))
    lacking = missing(suite.reproduction, None, "auto", "smoke")
    assert "no copy found" in lacking
    entry = ledger_entry("bench-entry", suite, out / "bench-entry", "smoke", absent=lacking)
    assert entry["runs"].startswith("0 / ")
    assert entry["cost"].startswith("Not run here (smoke size): it needs 'office31'")
    assert len(entry["values"]) == len(suite.reproduction.values)

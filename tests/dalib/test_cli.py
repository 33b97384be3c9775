"""The command line end to end: user suites over .npz files, bad input, resume."""

import json

import numpy as np
import pandas as pd
import pytest

from dalib.cli import main

USER_SUITE = """
name = "user"
seeds = 2
[budget]
steps = 60
batch_size = 64

[[scenario]]
name = "npz-transfer"
kind = "transfer"
source = {{ npz = "{src}" }}
target = {{ npz = "{tgt}" }}
k = {k}
methods = ["source-only", "target-only", "target-oracle"]

[[scenario]]
name = "npz-stream"
kind = "stream"
data = {{ npz = "{tgt}" }}
stream = "task-array"
methods = ["naive", "joint"]
"""


def _suite(tmp_path, digits_npz, k=3, text=USER_SUITE):
    src, tgt = digits_npz
    path = tmp_path / "user.toml"
    # relative npz paths resolve against the suite file's folder
    path.write_text(text.format(src=src.name, tgt=tgt.name, k=k))
    return path


def test_user_npz_suite_yields_transfer_and_stream_metrics(tmp_path, digits_npz, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path, digits_npz)), "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:6]) == ["suite", "scenario", "method", "seed", "metric", "value"]
    t = table[table.scenario == "npz-transfer"]
    assert set(t.metric) >= {"target_acc", "source_acc", "ntg", "gain_over_source_only"}
    assert sorted(t[t.metric == "target_acc"].method.unique()) == ["source-only", "target-only",
                                                                   "target-oracle"]
    s = table[table.scenario == "npz-stream"]
    assert set(s[s.method == "naive"].metric) == {"acc", "bwt", "fwt", "forgetting",
                                                  "intransigence"}
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 10
    naive = next(r for r in records if r["method"] == "naive")
    assert np.array(naive["accuracy_matrix"]).shape == (4, 3)  # row 0 + 3 tasks
    printed = capsys.readouterr().out
    assert "target-oracle" in printed and "±" in printed
    # dalib run ends with the report, figures embedded in the HTML
    html = (out / "report.html").read_text()
    assert "npz-transfer" in html and "data:image/png;base64," in html
    assert "Which method is best" in (out / "report.md").read_text()
    # every number in the table comes from the records
    r0 = next(r for r in records if r["method"] == "source-only" and r["seed"] == 0)
    row = t[(t.method == "source-only") & (t.seed == 0) & (t.metric == "target_acc")]
    assert row.value.item() == pytest.approx(r0["metrics"]["target_acc"])


def test_rerun_skips_finished_runs_and_rebuilds_the_same_table(tmp_path, digits_npz, capsys):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--seeds", "1", "--no-report"]) == 0
    assert not (out / "report.html").exists()
    first = pd.read_csv(out / "results.csv")
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(["run", str(suite), "--out", str(out), "--seeds", "1", "--no-report"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamps
    pd.testing.assert_frame_equal(first, pd.read_csv(out / "results.csv"))
    assert main(["report", str(out)]) == 0


def test_report_on_hand_made_tables_and_merged_directories(tmp_path, capsys):
    rows = [(sc, m, seed, "target_acc", v + seed)
            for seed in range(3) for sc in ("a", "b")
            for m, v in (("source-only", 60.0), ("dann", 70.0))]
    table = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])
    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
        table.to_csv(tmp_path / name / "results.csv", index=False)
    assert main(["report", str(tmp_path / "v1"), "--markdown"]) == 0
    text = capsys.readouterr().out
    # 3 seeds: Student-t intervals, no winner called, nothing marked significant
    assert "| a | dann | 71.00 [68.52, 73.48] | 10.00 [10.00, 10.00] |" in text
    assert "| a | target acc | dann |" in text and "none called: 3 seeds" in text
    assert (tmp_path / "v1" / "report.html").is_file()
    # same scenarios, methods and seeds in both: names get the directory as suffix
    merged = tmp_path / "merged"
    assert main(["report", str(tmp_path / "v1"), str(tmp_path / "v2" / "results.csv"),
                 "--out", str(merged), "--ci", "t"]) == 0
    text = (merged / "report.md").read_text()
    assert "| a | dann @ v1 |" in text and "| a | dann @ v2 |" in text
    assert "Student-t" in text


def test_report_names_the_file_and_column_of_a_bad_table(tmp_path, capsys):
    bad = tmp_path / "mine.csv"
    bad.write_text("scenario,method,metric,value\na,dann,target_acc,70\n")
    assert main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "mine.csv" in err and "seed" in err
    assert not (tmp_path / "r" / "report.html").exists()
    assert main(["report", str(tmp_path / "nothing-here")]) == 2
    assert "neither a run directory" in capsys.readouterr().err


def test_same_seed_same_numbers(tmp_path, digits_npz):
    suite = _suite(tmp_path, digits_npz)
    for name in ("a", "b"):
        assert main(["run", str(suite), "--out", str(tmp_path / name), "--seeds", "1",
                     "--methods", "source-only,naive", "--no-report"]) == 0
    a, b = (pd.read_csv(tmp_path / n / "results.csv") for n in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)  # one machine, one thread count: bit for bit


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, digits_npz, capsys):
    text = USER_SUITE.replace('methods = ["source-only", "target-only", "target-oracle"]',
                              'methods = ["source-only", {{ name = "target-only", lr = 1e6, '
                              'optimizer = "sgd" }}]')
    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path, digits_npz, text=text)), "--out", str(out),
                 "--seeds", "1"]) == 1
    table = pd.read_csv(out / "results.csv")
    failed = table[table.status == "failed"]
    assert failed.method.unique().tolist() == ["target-only[lr=1000000.0,optimizer=sgd]"]
    assert sorted(table[table.status == "ok"].method.unique()) == ["joint", "naive", "source-only"]
    record = json.loads(next((out / "runs").glob("*target-only*.json")).read_text())
    assert "diverged" in record["error"]
    report = (out / "report.md").read_text()
    failures = report[report.index("## Failed runs"):report.index("## Environment")]
    assert "target-only[lr=1000000.0,optimizer=sgd]" in failures and "diverged" in failures


def _bad_npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


GOOD_X = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
GOOD_Y = np.arange(40) % 4


@pytest.mark.parametrize("case, expected", [
    ("malformed", "malformed"),
    ("unknown-key", "scenario[0].colour: unknown key"),
    ("unknown-method", "scenario[0].methods[0]: unknown method 'dann2'"),
    ("unknown-dataset", "scenario[0].source.dataset: unknown dataset 'svhn9'"),
    ("unknown-shift", "scenario[0].target.shifts[0].name: unknown shift 'blur'"),
    ("bad-hyperparameter", "scenario[0].methods[2].momentom: unknown hyperparameter"),
    ("npz-no-x", "x: missing"),
    ("npz-no-y", "y: missing"),
    ("npz-lengths", "y: has shape (39,) but x has 40 samples"),
    ("npz-nan", "x: has NaN or inf values in 1 samples"),
    ("npz-label-range", "y: has label 7 (expected labels in [0, 4))"),
    ("npz-empty", "x: is empty"),
    ("npz-float32-overflow", "x: has 64 values beyond float32's range (first 1e+39 in sample 5)"),
    ("npz-complex", "x: has dtype complex128 (expected real numbers"),
    ("npz-complex-labels", "y: has dtype complex128 (expected integers)"),
    ("npz-layout", "layout: is 'NCHW' but x has shape (40, 8, 8, 1): that reads 8 channels"),
    ("empty-task", "empty train set"),
    ("k-too-large", "k: is 80 but class"),
    ("k-zero-target-only", "k: is 0 but 'target-only'"),
    ("stream-method-in-transfer", "'naive' is a stream method"),
    ("unknown-optim", "user.toml: optim.colour: unknown optimizer setting"),  # top level
    ("scenario-optim", "scenario[1].optim.lr: is 0 (expected a finite number > 0"),
    ("top-model", "user.toml: model.arch: is 'mlpx'"),
    ("scenario-model", "scenario[1].model.hidden[0]: is 0"),
    ("top-optim-value", "user.toml: optim.lr: is -1 (expected a finite number > 0"),
    ("target-shift-at-build", "scenario[0].target.shifts[0].classes: is [11, 12]"),
    ("batch-of-one", "user.toml: budget.batch_size: is 1 but the model cannot train on one"),
    ("bad-schedule", "user.toml: optim.schedule: is 'linear' (expected one of constant"),
    ("method-schedule", "scenario[0].methods[0].schedule: is 'linear' (expected one of"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, digits_npz, capsys, case, expected):
    src, tgt = digits_npz
    text, k = USER_SUITE, 3
    if case == "malformed":
        text = text.replace("seeds = 2", "seeds = = 2")
    elif case == "unknown-key":
        text = text.replace("k = {k}", "k = {k}\ncolour = 1")
    elif case == "unknown-method":
        text = text.replace('"source-only", "target-only"', '"dann2", "target-only"')
    elif case == "unknown-dataset":
        text = text.replace('source = {{ npz = "{src}" }}', 'source = {{ dataset = "svhn9" }}')
    elif case == "unknown-shift":
        text = text.replace('target = {{ npz = "{tgt}" }}',
                            'target = {{ npz = "{tgt}", shifts = [{{ name = "blur" }}] }}')
    elif case == "bad-hyperparameter":
        text = text.replace('"target-oracle"]', '{{ name = "target-oracle", momentom = 0.5 }}]')
    elif case == "k-too-large":
        k = 80
    elif case == "k-zero-target-only":
        k = 0
    elif case == "unknown-optim":
        text = text.replace("[budget]", "[optim]\ncolour = 1\n[budget]")
    elif case == "scenario-optim":
        text += "[scenario.optim]\nlr = 0\n"
    elif case == "top-model":
        text = text.replace("[budget]", "[model]\narch = 'mlpx'\n[budget]")
    elif case == "scenario-model":
        text += "[scenario.model]\nhidden = [0]\n"
    elif case == "top-optim-value":
        text = text.replace("[budget]", "[optim]\nlr = -1\n[budget]")
    elif case == "target-shift-at-build":
        text = text.replace('target = {{ npz = "{tgt}" }}',
                            'target = {{ npz = "{tgt}", shifts = [{{ name = "class-subset", '
                            'classes = [11, 12] }}] }}')
    elif case == "batch-of-one":
        text = text.replace("batch_size = 64", "batch_size = 1")
    elif case == "method-schedule":
        text = text.replace('["source-only", "target-only"', '[{{ name = "source-only", '
                            'schedule = "linear" }}, "target-only"')
    elif case == "bad-schedule":
        text = text.replace("[budget]", '[optim]\nschedule = "linear"\n[budget]')
    elif case == "stream-method-in-transfer":
        text = text.replace('"target-oracle"]', '"naive"]')
    elif case.startswith("npz") or case == "empty-task":
        arrays = {"npz-no-x": {"y": GOOD_Y}, "npz-no-y": {"x": GOOD_X},
                  "npz-lengths": {"x": GOOD_X, "y": GOOD_Y[:-1]},
                  "npz-nan": {"x": np.where(np.arange(40)[:, None, None] == 3, np.nan, GOOD_X),
                              "y": GOOD_Y},
                  "npz-label-range": {"x": GOOD_X, "y": np.where(GOOD_Y == 3, 7, GOOD_Y),
                                      "classes": np.array(list("abcd"))},
                  "npz-empty": {"x": GOOD_X[:0], "y": GOOD_Y[:0]},
                  "npz-float32-overflow": {"x": np.where(np.arange(40)[:, None, None] == 5,
                                                         1e39, GOOD_X.astype(np.float64)),
                                           "y": GOOD_Y},
                  "npz-complex": {"x": GOOD_X + 1j * np.where(GOOD_X > 0.5, np.nan, 0),
                                  "y": GOOD_Y},
                  "npz-complex-labels": {"x": GOOD_X, "y": GOOD_Y + 0j},
                  "npz-layout": {"x": GOOD_X[..., None], "y": GOOD_Y},
                  "empty-task": {"x": GOOD_X, "y": GOOD_Y % 3, "classes": np.array(list("abcd"))},
                  }[case]
        bad = _bad_npz(tmp_path, **arrays)
        if case == "empty-task":
            text = text.replace('stream = "task-array"', 'stream = "split"\nclasses = [[0], [3]]')
            text = text.replace('data = {{ npz = "{tgt}" }}', f'data = {{{{ npz = "{bad.name}" }}}}')
        else:
            layout = ', layout = "NCHW"' if case == "npz-layout" else ""
            text = text.replace('source = {{ npz = "{src}" }}',
                                f'source = {{{{ npz = "{bad.name}"{layout} }}}}')
    suite = _suite(tmp_path, digits_npz, k=k, text=text)
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert expected in err, err
    assert "bad.npz" in err if case.startswith("npz") else str(suite) in err
    assert not out.exists()


@pytest.mark.parametrize("flags, expected", [
    (["--jobs", "0"], "--jobs: is 0"),
    (["--jobs", "2", "--executor", "ray"], "--jobs: is 2 with --executor ray"),
    (["--pack", "0"], "--pack: is '0'"),
    (["--pack", "many"], "--pack: is 'many'"),
    (["--threads", "0"], "--threads: is 0"),
])
def test_conflicting_ways_to_run_exit_2(tmp_path, digits_npz, capsys, flags, expected):
    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path, digits_npz)), "--out", str(out), *flags]) == 2
    assert expected in capsys.readouterr().err and not out.exists()


def test_list_and_data_commands(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("uci-digits", "mnist", "label-noise", "source-only", "target-oracle", "naive",
                 "joint", "quick"):
        assert name in text
    assert main(["data"]) == 0
    assert "mnist: ok (10000 samples)" in capsys.readouterr().out


def test_editing_a_suite_retires_records_of_the_old_configuration(tmp_path, digits_npz):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    args = ["run", str(suite), "--out", str(out), "--seeds", "1", "--methods", "source-only"]
    assert main(args) == 0
    suite.write_text(suite.read_text().replace("steps = 60", "steps = 30"))
    assert main(args) == 0
    table = pd.read_csv(out / "results.csv")
    assert len(table[(table.metric == "target_acc") & (table.method == "source-only")]) == 1
    assert len(list((out / "stale").glob("*.json"))) == 1


def test_report_on_a_directory_without_finished_runs_says_so(tmp_path, capsys):
    (tmp_path / "sweep" / "runs").mkdir(parents=True)
    assert main(["report", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds no run records yet" in err and "dalib status" in err
    assert not (tmp_path / "sweep" / "report.html").exists()

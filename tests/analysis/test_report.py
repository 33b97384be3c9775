"""The report on results tables made by hand: files, numbers, figures, self-contained HTML."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report, cell, diff_cell, prepare, significance
from analysis.stats import aggregate, compare

SEEDS = range(6)


def hand_table() -> pd.DataFrame:
    """Two transfer scenarios (dann clearly better on one, tied on the other) and a stream,
    written the way a user of another tool would: no run ids, no status column."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in SEEDS:
        for sc, means in (("easy", {"source-only": 80, "dann": 88, "target-oracle": 97}),
                          ("tied", {"source-only": 70, "dann": 70.2, "target-oracle": 95})):
            for method, mu in means.items():
                rows.append((sc, method, seed, "target_acc", mu + rng.normal(0, 1)))
                rows.append((sc, method, seed, "source_acc", 97 + rng.normal(0, 0.5)))
        for method, (acc, forget) in {"naive": (20, 80), "ewc": (21, 78),
                                      "replay": (85, 10)}.items():
            rows.append(("split", method, seed, "acc", acc + rng.normal(0, 1)))
            rows.append(("split", method, seed, "bwt", -forget + rng.normal(0, 1)))
            rows.append(("split", method, seed, "forgetting", forget + rng.normal(0, 1)))
    return pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])


def md_rows(text: str, first_header: str) -> list[list[str]]:
    """The rows of the first Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, build_report(hand_table(), out)


def test_expected_files_tables_and_figures(report):
    out, files = report
    assert files["markdown"].is_file() and files["html"].is_file()
    # fewer scenarios than metrics: one figure per scenario (easy, tied, split), a panel per
    # metric (transfer: target acc, gain, source acc, source drop; stream: acc, bwt, forgetting)
    assert sorted(p.name for p in files["figures"] if p.suffix == ".png") == [
        "easy-metrics.png", "split-metrics.png", "tied-metrics.png"]
    for png in (f for f in files["figures"] if f.suffix == ".png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        import matplotlib.image

        img = matplotlib.image.imread(png)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img[..., :3].std() > 0.05  # not a blank canvas
    assert all(f.with_suffix(".svg").read_text().lstrip().startswith(("<?xml", "<svg"))
               for f in files["figures"])
    assert {p.name for p in files["tables"]} == {"aggregate.csv", "comparisons.csv",
                                                 "average_rank-transfer.csv"}


def test_every_number_equals_the_analysis_functions(report):
    out, files = report
    text = files["markdown"].read_text()
    agg = aggregate(prepare(hand_table()))  # with the derived gain rows
    table = md_rows(text, "scenario | method | target acc")
    assert len(table) == 6
    for sc, method, target, *_ in table:
        row = agg[(agg.scenario == sc) & (agg.method == method) & (agg.metric == "target_acc")]
        assert target.strip("*") == cell(row.iloc[0])
    for sc, metric, method, n, diff, p, sig in md_rows(text, "scenario | metric | method"):
        c = compare(hand_table(), sc, {"target acc": "target_acc", "ACC": "acc",
                                       "forgetting": "forgetting"}[metric], method,
                    "source-only" if sc != "split" else "naive")
        assert (diff, p, sig, int(n)) == (diff_cell(c), f"{c['p_wilcoxon']:.3f}",
                                          significance(c), c["n"])
        # 6 seeds: the paired interval decides (and says what more seeds would do)
        assert sig == "yes (CI)" or sig.startswith("no (CI; "), sig
    csv = pd.read_csv(out / "tables" / "aggregate.csv")
    assert np.allclose(csv["mean"], agg["mean"]) and np.allclose(csv["ci_low"], agg["ci_low"])


def test_first_screen_names_the_best_and_bolds_it_only_when_significant(report):
    text = report[1]["markdown"].read_text()
    best = {r[0]: r for r in md_rows(text, "scenario | metric | best method")}
    assert best["easy"][2] == "**dann**"  # the oracle upper bound is not a contender
    assert best["easy"][6].startswith("source-only: +") and best["easy"][6].endswith("*")
    assert best["easy"][7] == "called (6 seeds)"
    assert best["tied"][2] in ("dann", "source-only")  # not bold: no separation
    # a lead of about 0.2 points: too small to matter, whatever more seeds would show
    assert best["tied"][7].startswith("none called: the lead (") and \
        "too small to matter" in best["tied"][7]
    assert best["split"][2] == "**replay**"
    gains = md_rows(text, "scenario | method | target acc")
    easy_dann = next(r for r in gains if r[:2] == ["easy", "dann"])
    assert easy_dann[2].startswith("**") and easy_dann[3].endswith("*")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts, self.tables = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        self.links += [v for k, v in attrs if k in ("href", "src") and v and "://" in v]
        self.scripts += tag == "script"
        self.tables += tag == "table"


def test_html_is_self_contained_with_every_figure_embedded(report):
    out, files = report
    page = _Page()
    page.feed(files["html"].read_text())
    assert page.links == [] and page.scripts == 0
    assert len(page.images) == len(files["figures"]) // 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert page.tables == len(re.findall(r"^\| --- \|", files["markdown"].read_text(), re.M))


def test_more_scenarios_than_metrics_give_one_figure_per_metric(tmp_path):
    t = hand_table()
    t = t[t["scenario"] != "split"]
    many = pd.concat([t.assign(scenario=f"{sc}{i}") for i in range(3) for sc in ("easy",)]
                     + [t])
    files = build_report(many, tmp_path)
    assert sorted(p.name for p in files["figures"] if p.suffix == ".png") == [
        "transfer-gain_over_source_only.png", "transfer-source_acc.png",
        "transfer-source_drop.png", "transfer-target_acc.png"]


def test_every_caption_says_what_its_figure_shows(tmp_path):
    rows, records = [], []
    for seed in range(5):
        for method, acc in (("naive", 20.0), ("replay", 80.0), ("joint", 95.0)):
            R = np.tril(np.full((4, 3), 95.0), -1)
            R[0], R[3, :2] = 10.0, acc
            if method == "joint":
                R = np.stack([R[0], np.full(3, acc)])
            records.append({"scenario": "s", "method": method, "seed": seed, "status": "ok",
                            "accuracy_matrix": R.tolist(),
                            "curves": {"step": [0, 10], "loss": [2.0, 1.0]}})
            rows.append(("s", method, seed, "acc", float(R[-1].mean()) + seed))
            rows.append(("s", method, seed, "forgetting", 95.0 - acc + seed))
    table = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])
    files = build_report(table, tmp_path, records=records)
    text = files["markdown"].read_text()
    captions = dict(re.findall(r"^\*(.+?)\* \(also `figures/([^`]+)\.svg`\)$", text, re.M))
    captions = {name: caption for caption, name in captions.items()}
    assert set(captions) == {"s-metrics", "s-accuracy-matrix", "s-task-curves", "s-training"}
    assert "upper-bound references are grey" in captions["s-metrics"].lower()
    assert "row 'after task i'" in captions["s-accuracy-matrix"]
    assert "falling line is forgetting" in captions["s-task-curves"]
    assert "training loss" in captions["s-training"]
    from analysis.plots import matrix_rows

    assert matrix_rows(np.zeros((4, 3))) == ["before training", "after task 1", "after task 2",
                                             "after task 3"]
    assert matrix_rows(np.zeros((2, 3))) == ["before training", "after all tasks"]


def test_records_add_matrices_curves_and_tsne(tmp_path):
    rng = np.random.default_rng(0)
    rows, records, feats = [], [], {}
    for seed in range(2):
        for method, a in (("naive", 20.0), ("replay", 80.0)):
            R = np.tril(np.full((4, 3), 95.0), -1)
            R[0] = 10.0
            R[3, :2] = a
            records.append({"run_id": f"s-{method}-{seed}", "scenario": "s", "method": method,
                            "seed": seed, "status": "ok", "accuracy_matrix": R.tolist(),
                            "curves": {"step": [0, 10], "loss": [2.0, 1.0]},
                            "anytime_curve": [[64, 90.0], [128, a], [192, a / 2]],
                            "versions": {"torch": "x"}, "device": "cpu",
                            "timings": {"total_s": 6.0}})
            rows.append(("s", method, seed, "acc", float(R[3].mean())))
        for method in ("source-only", "dann"):
            rows.append(("t", method, seed, "target_acc", 70.0 + 10 * (method == "dann") + seed))
            feats[("t", method, str(seed))] = {
                "source": rng.normal(size=(40, 8)), "target": rng.normal(size=(40, 8)) + 1,
                "y_source": rng.integers(0, 10, 40), "y_target": rng.integers(0, 10, 40)}
    table = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])
    files = build_report(table, tmp_path, records=records, features=feats)
    names = {p.stem for p in files["figures"]}
    assert {"s-accuracy-matrix", "s-task-curves", "s-training", "s-anytime", "t-tsne"} <= names
    assert "compute time | 0.4 min" in files["markdown"].read_text()


def test_missing_columns_and_bad_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="lacks column.*seed"):
        build_report(hand_table().drop(columns="seed"), tmp_path)
    bad = hand_table().astype({"value": object})
    bad.loc[3, "value"] = "n/a%"
    with pytest.raises(ValueError, match="column value, row 4: 'n/a%'"):
        build_report(bad, tmp_path)
    assert not (tmp_path / "report.html").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian package `chromium`)")
def test_html_renders_in_headless_chromium_without_console_messages(report, tmp_path):
    out, files = report
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    url = files["html"].resolve().as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    assert dom.stdout.count("<img") == len(files["figures"]) // 2
    assert "CONSOLE" not in dom.stderr, dom.stderr
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,2000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    import matplotlib.image

    assert matplotlib.image.imread(shot)[..., :3].std() > 0.05
    # no horizontal overflow of the page at 1400 or 1000 px (wide tables scroll in their own
    # box), and figures two per row at 1400 px, one per row at 1000 px
    probe = tmp_path / "probe.html"
    # and the headline table ("Which method is best") wraps instead of scrolling, at both
    probe.write_text(files["html"].read_text().replace(
        "</body>", "<script>const f = [...document.querySelectorAll('figure')]"
        ".map(e => e.getBoundingClientRect().left); const h = document.querySelector("
        "'.scroll'); document.body.setAttribute('data-probe', "
        "String(document.documentElement.scrollWidth - window.innerWidth) + ' ' + "
        "String(new Set(f).size) + ' ' + String(h.scrollWidth - h.clientWidth))</script></body>"))
    for width, columns in ((1400, 2), (1000, 1), (900, 1)):
        dom = subprocess.run([CHROMIUM, *flags, f"--window-size={width},900", "--dump-dom",
                              probe.resolve().as_uri()], capture_output=True, text=True,
                             timeout=120)
        found = re.search(r'data-probe="(-?\d+) (\d+) (-?\d+)"', dom.stdout)
        assert found is not None, dom.stdout[:300]
        assert int(found.group(1)) <= 0 and int(found.group(2)) == columns, (width, found[0])
        assert int(found.group(3)) <= 0, (width, "the headline table scrolls", found[0])


def test_negative_transfer_figures_and_transferability_tau(tmp_path):
    rng = np.random.default_rng(0)
    rows, records = [], []
    for i, rate in enumerate([0.0, 0.5, 0.9, 1.0]):
        sc = f"noise{rate}-k5"
        records.append({"scenario": sc, "method": "source-only", "seed": 0, "status": "ok",
                        "config": {"data": {"source": {"dataset": "mnist", "shifts": [
                            {"name": "label-noise", "rate": rate}]}, "k": 5}}})
        for seed in range(3):
            rows += [(sc, "target-only", seed, "target_acc", 80 + rng.normal()),
                     (sc, "source-only", seed, "target_acc", 85 - 20 * i + rng.normal()),
                     (sc, "source-only", seed, "logme", 1.0 - i + 0.1 * rng.normal()),
                     (sc, "source+target", seed, "target_acc", 90 - 5 * i + rng.normal())]
    table = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])
    files = build_report(table, tmp_path, records=records)
    names = {p.name for p in files["figures"]}
    assert {"transfer-ntg-heatmap.png", "transfer-ntg-vs-noise.png"} <= names
    text = files["markdown"].read_text()
    acc = {r[0]: r[1] for r in md_rows(text, "tau with target acc")}
    ntg = {r[0]: r[1] for r in md_rows(text, "tau with NTG")}
    assert acc["source-only"] == acc["source+target"] == "1.00"  # accuracy falls with LogME
    assert ntg["source-only"] == ntg["source+target"] == "-1.00"
    from analysis.transferability import score_correlations

    tau = score_correlations(prepare(table)).set_index(["method", "metric"])["tau"]
    assert acc["target-only"] == f"{tau['target-only', 'target_acc']:.2f}"


def test_three_seeds_call_no_winner_and_mark_nothing_significant(tmp_path):
    """A clear, consistent difference over 3 seeds: the report calls no winner, bolds
    nothing, stars nothing and says that 3 seeds are too few; one seed shows n = 1."""
    t = hand_table()
    files = build_report(t[t["seed"] < 3], tmp_path / "three")
    text = files["markdown"].read_text()
    best = {r[0]: r for r in md_rows(text, "scenario | metric | best method")}
    assert best["easy"][2] == "dann"  # the best mean, not bold: no verdict from 3 seeds
    # and how many seeds would give one at the difference the three show
    assert re.fullmatch(r"none called: 3 seeds; about \d+ seeds would \(80% power at "
                        r"[+-]\d+\.\d\d\)", best["easy"][7]), best["easy"][7]
    assert "**" not in text.split("## Failed runs")[0]
    assert not re.search(r"\d \*", text)
    assert "no winner can be called" in text
    assert all(r[-1].startswith("not assessed") for r in md_rows(text, "scenario | metric | method"))
    one = build_report(t[t["seed"] == 0], tmp_path / "one")["markdown"].read_text()
    assert "(n = 1)" in one and "± 0.00" not in one


def test_every_selected_number_has_its_last_checkpoint_beside_it_and_far_picks_are_flagged(
        tmp_path):
    """A TENT-like method whose selection picked its source-phase checkpoint (9% on the
    target) where its last checkpoint reached 33%: the table shows both and flags it."""
    rows = []
    for seed in range(5):
        for method, picked, last in (("source-only", 30.0, 31.0), ("tent", 9.0, 33.0)):
            rows += [("rot", method, seed, "target_acc", picked + seed * 0.1),
                     ("rot", method, seed, "target_acc_last", last + seed * 0.1)]
    files = build_report(pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric",
                                                     "value"]), tmp_path)
    text = files["markdown"].read_text()
    table = {r[1]: r for r in md_rows(text, "scenario | method | target acc")}
    header = next(ln for ln in text.splitlines() if ln.startswith("| scenario | method | "
                                                                  "target acc"))
    assert header.startswith("| scenario | method | target acc | last |")
    assert table["tent"][2].endswith("†") and table["tent"][3].startswith("33.20")
    assert not table["source-only"][2].endswith("†")
    assert "tent in rot (-24.0 points against last: selection cost that much)" in text
    best = {r[0]: r for r in md_rows(text, "scenario | metric | best method")}
    assert best["rot"][2] == "**source-only**" and best["rot"][4].startswith("31.20")


def test_leave_one_domain_out_families_get_domainbeds_table(tmp_path):
    """Scenarios named FAMILY/DOMAIN: one row per method, a column per held-out domain and
    the average, taken per seed over the domains (hand-computed here)."""
    rows = []
    for seed in range(3):
        for domain, erm, irm in (("a", 80.0, 70.0), ("b", 60.0, 66.0)):
            rows += [(f"fam/{domain}", "erm", seed, "target_acc", erm + seed),
                     (f"fam/{domain}", "irm", seed, "target_acc", irm - seed)]
    files = build_report(pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric",
                                                     "value"]), tmp_path)
    table = {r[0]: r for r in md_rows(files["markdown"].read_text(), "method | a | b")}
    assert table["erm"][1].startswith("81.00 [") and table["erm"][2].startswith("61.00 [")
    assert table["erm"][3].startswith("71.00 [") and table["irm"][3].startswith("67.00 [")
    csv = pd.read_csv(tmp_path / "tables" / "domains-fam-target_acc.csv").set_index("method")
    assert csv.loc["erm", "average"] == 71.0 and csv.loc["irm", "b"] == 65.0
    # without source-only, domain generalization methods are compared with ERM, paired
    paired = md_rows(files["markdown"].read_text(), "scenario | metric | method | seeds")
    assert {(r[0], r[2]) for r in paired} == {("fam/a", "irm"), ("fam/b", "irm")}
    assert "Transfer: each method against erm (paired)" in files["markdown"].read_text()


def test_domainbeds_published_numbers_sit_beside_its_datasets(tmp_path):
    """A family built from the built-in colored-mnist gets DomainBed's published row under
    each method it has (training-domain validation), with what differs stated."""
    rows, records = [], []
    domains = ("+90%", "+80%", "-90%")
    for held in domains:
        data = {"family": "cm", "held_out": held, "target_data": "none",
                "source": [{"dataset": "colored-mnist", "domain": d} for d in domains
                           if d != held],
                "target": {"dataset": "colored-mnist", "domain": held}}
        for seed in range(2):
            for method in ("erm", "fish"):
                rows += [(f"cm/{held}", method, seed, "target_acc", 50.0 + seed)]
                records.append({"scenario": f"cm/{held}", "method": method, "seed": seed,
                                "status": "ok", "selection": "source-val", "arch": "mlp",
                                "config": {"data": data, "model": {},
                                           "budget": {"steps": 600, "batch_size": 256}}})
    files = build_report(pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric",
                                                     "value"]), tmp_path, records=records)
    text = files["markdown"].read_text()
    table = {r[0]: r for r in md_rows(text, "method | +90% | +80% | -90%")}
    assert table["DomainBed erm (published)"][1:] == ["71.7 ± 0.1", "72.9 ± 0.2",
                                                      "10.0 ± 0.1", "51.5"]
    assert "DomainBed fish (published)" not in table  # not in DomainBed's table
    assert "the local 10,000 MNIST digits (DomainBed: 70,000)" in text
    assert "arch mlp (DomainBed: its MNIST CNN)" in text


def test_test_time_adaptation_that_hurts_is_named_per_domain():
    """An adapting method whose online error on one domain is above the unadapted model's
    on every one of 4 seeds (paired) is named there, and only there."""
    from analysis.report.testtime import hurts

    rows = []
    for seed in range(4):
        for method, fog, noise in (("source-only", 40.0, 80.0), ("tent", 45.0 + seed % 2,
                                                                  30.0)):
            rows += [("c", method, seed, "online_error[fog-5]", fog),
                     ("c", method, seed, "online_error[noise-5]", noise)]
    ok = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"]).assign(
        status="ok")
    assert hurts(ok, "c", ["fog-5", "noise-5"]) == [["tent", "fog-5", "+5.50 [4.58, 6.42]"]]


def _newcomer_table() -> pd.DataFrame:
    """What a newcomer's sweep holds: a leave-one-domain-out family with its validation runs,
    a stream with the joint reference, and a test-time stream visited c, a, b."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in SEEDS:
        for sc in ("fam/0", "fam/0/validate-1", "fam/0/validate-2"):
            for method, mu in (("erm", 60), ("coral", 62)):
                rows.append((sc, method, seed, "target_acc", mu + rng.normal(0, 1)))
        for method, (acc, intr) in {"naive": (20, 5), "ewc": (20.02, -3),
                                    "joint": (95, np.nan)}.items():
            rows.append(("split", method, seed, "acc", acc + rng.normal(0, 0.01)))
            if not np.isnan(intr):
                rows.append(("split", method, seed, "intransigence", intr + rng.normal(0, 1)))
        for method in ("tent", "bn", "source-only"):
            rows.append(("tta", method, seed, "online_error", 30 + rng.normal(0, 1)))
            rows.append(("tta", method, seed, "collapsed", float(seed == 0)))
            for d in ("a", "b", "c"):  # as a results table sorts them
                rows.append(("tta", method, seed, f"online_error[{d}]", 30 + rng.normal(0, 1)))
    return pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])


def test_a_newcomer_reads_results_not_machinery(tmp_path):
    table = _newcomer_table()
    records = [{"scenario": "tta", "method": "tent", "seed": 0, "status": "ok",
                "run_id": "r", "online": {"names": ["c", "a", "b"], "domain": [0, 1, 2],
                                          "pred": [0, 0, 0], "label": [0, 0, 0],
                                          "cycle": [0, 0, 0], "batch_size": 1}}]
    text = build_report(table, tmp_path, records=records)["markdown"].read_text()
    assert "validate-" not in text  # the selection's runs are not results
    assert "| split | ACC | joint |" not in text  # a reference, never compared
    ewc = next(x for x in text.splitlines() if x.startswith("| split | ACC | ewc | 6 |"))
    assert "practically equal: the 95% CI lies within ±0.5 points" in ewc, ewc
    best = next(x for x in text.splitlines() if x.startswith("| split | ACC |"))
    assert "**ewc**" not in best and "too small to matter" in best, best
    assert "negative values mean the method learnt those tasks better" in text
    domains = md_rows(text, "method | c | a | b")  # the stream's order
    assert [r[0] for r in domains] == ["tent", "bn", "source-only"]  # the table's order
    collapsed = aggregate(table[(table["metric"] == "collapsed") & (table["method"] == "bn")])
    lo, hi = collapsed[["ci_low", "ci_high"]].iloc[0]
    assert 0 <= lo < 1 / 6 < hi <= 1  # 1 of 6 seeds: a Wilson interval inside [0, 1]
    assert re.search(r"about \d+ seeds would decide", text) or "seeds would decide" not in text
    assert not re.search(r"about \d+\.\d+ seeds", text)


def test_significance_says_when_a_difference_is_too_small_to_matter():
    base = {"metric": "target_acc", "n": 6, "significant": False, "seeds_needed": 44.0}
    assert "about 44 seeds would decide" in significance({**base, "diff": 2.0, "ci_low": -1.0,
                                                          "ci_high": 5.0})
    small = significance({**base, "diff": 0.02, "ci_low": -0.9, "ci_high": 0.94})
    assert "too small to matter" in small and "44" not in small
    equal = significance({**base, "diff": 0.02, "ci_low": -0.1, "ci_high": 0.14})
    assert "practically equal" in equal
    share = significance({**base, "metric": "final_majority_share", "diff": 0.02,
                          "ci_low": -0.1, "ci_high": 0.14})
    assert "about 44 seeds" in share  # not in points: no band


def test_open_set_scenarios_are_ranked_by_the_h_score(tmp_path):
    """A method with the better closed accuracy but the worse H-score does not win an
    open-set scenario; the table shows OS* and UNK beside the H-score."""
    rows = []
    for seed in range(5):
        for method, acc, hos in (("source-only", 80 + seed, 30 + seed), ("osbp", 70 + seed,
                                                                         90 - seed)):
            rows += [("open", method, seed, "target_acc", acc), ("open", method, seed, "hos", hos),
                     ("open", method, seed, "known_acc", 95.0),
                     ("open", method, seed, "unknown_recall", hos / 2)]
    t = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])
    text = build_report(t, tmp_path / "open")["markdown"].read_text()
    best = md_rows(text, "scenario | metric | best method")[0]
    assert best[1] == "H-score (HOS)" and best[2] == "**osbp**", best
    header = next(line for line in text.splitlines() if line.startswith("| scenario | method"))
    assert "H-score (HOS)" in header and "unknown recall" in header

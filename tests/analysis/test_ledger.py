"""The ledger's numbers by hand: a published value against dalib's mean and t interval, the
mean over scenarios seed by seed, and the verdict of a claim on paired differences."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import ledger


def _results(rows):
    return pd.DataFrame([{"scenario": s, "method": m, "seed": seed, "metric": k, "value": v,
                          "status": "ok"} for s, m, seed, k, v in rows])


def _cell(scenarios, method="a", metric="acc"):
    return {"scenarios": scenarios, "method": method, "metric": metric}


def test_value_row_by_hand():
    acc = [80.0, 82.0, 85.0, 81.0, 84.0]
    results = _results([("s", "a", i, "acc", v) for i, v in enumerate(acc)]
                       + [("s", "b", 0, "acc", 10.0)])
    table = ledger.value_table(results, [
        {"cell": _cell(["s"]), "published": 83.0, "spread": 0.5, "spread_kind": "se",
         "checked": True, "note": ""},
        {"cell": _cell(["s"]), "published": 90.0, "spread": None, "spread_kind": "none",
         "checked": True, "note": ""}])
    half = stats.t.ppf(0.975, 4) * np.std(acc, ddof=1) / np.sqrt(5)
    row = table.iloc[0]
    assert row["seeds"] == 5
    assert row["mean"] == pytest.approx(np.mean(acc))
    assert row["lo"] == pytest.approx(np.mean(acc) - half)
    assert row["hi"] == pytest.approx(np.mean(acc) + half)
    assert row["difference"] == pytest.approx(np.mean(acc) - 83.0)
    assert bool(table.iloc[0]["inside"]) and not bool(table.iloc[1]["inside"])
    assert ledger.published_cell(row) == "83.00 ± 0.50 (se)"


def test_mean_over_scenarios_is_per_seed_and_needs_every_scenario():
    results = _results([("x", "a", 0, "acc", 10.0), ("y", "a", 0, "acc", 20.0),
                        ("x", "a", 1, "acc", 30.0), ("y", "a", 1, "acc", 50.0),
                        ("x", "a", 2, "acc", 99.0)])  # seed 2 lacks y: left out
    values = ledger.cell_values(results, _cell(["x", "y"]))
    assert values.to_dict() == {0: 15.0, 1: 40.0}
    assert ledger.label(_cell(["x", "y"])) == "mean(x, y) / a / acc"
    assert ledger.label(_cell(["f/+90%", "f/-90%"])) == "f/mean(+90%, -90%) / a / acc"


def test_failed_runs_are_not_counted_and_missing_published_is_not_compared():
    results = _results([("s", "a", 0, "acc", 50.0), ("s", "a", 1, "acc", 60.0)])
    results.loc[1, "status"] = "failed"
    table = ledger.value_table(results, [{"cell": _cell(["s"]), "published": None,
                                          "spread": None, "spread_kind": "none",
                                          "checked": True, "note": "not readable"}])
    row = table.iloc[0]
    assert row["seeds"] == 1 and row["mean"] == 50.0 and np.isnan(row["lo"])
    assert row["inside"] is None and ledger.published_cell(row) == "not given"


@pytest.mark.parametrize("relation,left,verdict", [
    (">", [5.0, 6.0, 7.0, 6.5], "holds"), ("<", [5.0, 6.0, 7.0, 6.5], "reversed"),
    (">", [-1.0, 1.0, -2.0, 2.0], "not resolved")])
def test_shape_verdicts_on_paired_differences(relation, left, verdict):
    right = [1.0, 2.0, 3.0, 2.0]
    results = _results([("s", "a", i, "acc", v) for i, v in enumerate(left)]
                       + [("s", "b", i, "acc", v) for i, v in enumerate(right)])
    table = ledger.shape_table(results, [{"claim": "c", "left": _cell(["s"]),
                                          "relation": relation,
                                          "right": _cell(["s"], method="b"), "note": ""}])
    diff = np.subtract(left, right)
    row = table.iloc[0]
    assert row["difference"] == pytest.approx(diff.mean())
    assert (row["lo"], row["hi"]) == pytest.approx(stats.t.interval(
        0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff)))
    assert row["verdict"] == verdict


def test_shape_against_a_number_and_counts():
    results = _results([("s", "a", i, "ntg", v) for i, v in enumerate([1.0, 2.0, 1.5])])
    shapes = ledger.shape_table(results, [{"claim": "above zero", "left": _cell(["s"], metric="ntg"),
                                           "relation": ">", "right": 0.0, "note": ""}])
    assert shapes.iloc[0]["verdict"] == "holds" and shapes.iloc[0]["right"] == 0.0
    values = ledger.value_table(results, [{"cell": _cell(["s"], metric="ntg"), "published": 9.0,
                                           "spread": None, "spread_kind": "none",
                                           "checked": False, "note": ""}])
    assert ledger.counts(values, shapes) == {"inside": 0, "outside": 1, "not compared": 0,
                                             "holds": 1, "reversed": 0, "not resolved": 0,
                                             "fragile": 1}  # 2 seeds left: no verdict
    text = ledger.entry_markdown({"name": "e", "citation": "A. B. Paper. 2020", "source": "Table 1",
                                  "url": "", "protocol": "p", "published_seeds": 3,
                                  "differences": [("data", "lower")], "values": values,
                                  "shapes": shapes, "cost": "Cost: 1 run."})
    assert "9.00 (quoted, unchecked)" in text and "| above zero |" in text
    assert "*Expected effect:* lower" in text and "holds" in text


def test_a_verdict_states_its_power_robustness_and_the_seeds_it_needs():
    # 8 paired differences: all but one far above zero; the held-out check drops each seed
    diffs = [3.0, 3.5, 2.5, 3.2, 2.8, 3.1, 2.9, -9.0]
    results = _results([("s", "a", i, "acc", 10.0 + d) for i, d in enumerate(diffs)]
                       + [("s", "b", i, "acc", 10.0) for i in range(len(diffs))])
    claim = {"claim": "a beats b", "left": _cell(["s"]), "relation": ">",
             "right": _cell(["s"], method="b"), "note": ""}
    row = ledger.shape_table(results, [claim]).iloc[0]
    d = np.array(diffs)
    assert row["verdict"] == "not resolved"  # the outlier widens the interval across zero
    # leaving the outlier out resolves it: not robust
    kept = d[:-1]
    assert stats.t.interval(0.95, 6, loc=kept.mean(), scale=stats.sem(kept))[0] > 0
    assert not row["robust"]
    # power: the difference resolved 4 times in 5 at this spread, by the noncentral t
    effect = row["resolvable"] / d.std(ddof=1)
    crit = stats.t.ppf(0.975, 7)
    power = stats.nct.sf(crit, 7, effect * np.sqrt(8)) + stats.nct.cdf(-crit, 7, effect * np.sqrt(8))
    assert power == pytest.approx(0.8, abs=1e-6)
    assert row["seeds_needed"] > 8
    text = ledger.verdict_cell(row)
    assert "(fragile: one seed left out resolves it)" in text and f"about {row['seeds_needed']} seeds" in text
    # a steady effect: holds, and holds with any seed left out
    steady = _results([("s", "a", i, "acc", 10.0 + d) for i, d in enumerate(diffs[:-1])]
                      + [("s", "b", i, "acc", 10.0) for i in range(7)])
    row = ledger.shape_table(steady, [claim]).iloc[0]
    assert row["verdict"] == "holds" and row["robust"] and ledger.verdict_cell(row) == "holds"


def test_detectable_effect_matches_the_paired_t_test_power_tables():
    """10 pairs of standardised differences resolve an effect of about 1.0 sd at 80% power
    (Cohen 1988: d = 1.0 needs 10 pairs)."""
    from analysis.stats import detectable_effect

    z = np.random.default_rng(1).normal(size=10)
    z = (z - z.mean()) / z.std(ddof=1)
    assert detectable_effect(z) == pytest.approx(1.0, abs=0.01)
    assert detectable_effect(3 * z) == pytest.approx(3 * detectable_effect(z))
    assert np.isnan(detectable_effect([1.0])) and detectable_effect([2.0, 2.0]) == 0.0


def test_an_entry_stamp_names_its_software_machine_and_data_and_says_when_they_differ():
    base = {"dalib": "0.6.0", "commit": "abc", "dirty": False, "torch": "2.14.1", "cuda": None,
            "python": "3.11.7", "device": "cpu", "device_name": "Xeon, 2 cores",
            "kernels": "avx2", "threads": 1, "date": "2026-12-06"}
    files = {"config": {"files": {"mnist/train-images": "d1"}}}
    one = [{"stamp": base, **files}, {"stamp": {**base, "date": "2026-12-07"}, **files}]
    stamp = ledger.entry_stamp(one)
    assert stamp["mixed"] == "" and stamp["date"] == "2026-12-06 to 2026-12-07"
    assert stamp["dirty"] == "no" and stamp["cuda"] == "unknown" and stamp["threads"] == "1"
    assert stamp["data"] == "mnist/train-images d1"
    text = ledger.stamp_markdown(stamp)
    assert "dalib 0.6.0 (commit abc; uncommitted changes: no)" in text
    assert "different stamps" not in text
    mixed = one + [{"stamp": {**base, "threads": 2},
                    "config": {"files": {"mnist/train-images": "d2"}}}, {"finished": "2026-12-08"}]
    stamp = ledger.entry_stamp(mixed)
    assert stamp["threads"] == "1 | 2 | unknown" and stamp["date"].endswith("2026-12-08")
    assert stamp["mixed"].split(", ") == [f for f in ledger.STAMP_FIELDS if f != "cuda"] + ["data"]
    assert "**The runs of this entry were made under different stamps**" in \
        ledger.stamp_markdown(stamp)


def test_a_value_outside_states_its_cause_and_the_value_its_check_measured():
    acc, longer = [80.0, 82.0, 85.0, 81.0, 84.0], [89.0, 91.0, 90.0]
    results = _results([("s", "a", i, "acc", v) for i, v in enumerate(acc)])
    check = _results([("s", "a", i, "acc", v) for i, v in enumerate(longer)])
    values = [{"cell": _cell(["s"]), "published": 90.0, "spread": None, "spread_kind": "none",
               "checked": True, "note": "", "cause": "Too few steps."},
              {"cell": _cell(["s"]), "published": 83.0, "spread": None, "spread_kind": "none",
               "checked": True, "note": ""},
              {"cell": _cell(["s"], "b"), "published": 5.0, "spread": None,
               "spread_kind": "none", "checked": True, "note": ""}]
    table = ledger.value_table(results, values, [("more", "4x the steps", check)])
    row = table.iloc[0]
    half = stats.t.ppf(0.975, 2) * np.std(longer, ddof=1) / np.sqrt(3)
    assert row["check"] == "more" and row["check_seeds"] == 3
    assert (row["check_lo"], row["check_hi"]) == pytest.approx((90 - half, 90 + half))
    assert bool(row["check_inside"]) and not bool(row["inside"])
    text = "\n".join(ledger.outside_markdown(table))
    assert ("- s / a / acc (-7.60 from the published value): Too few steps. *Measured* with "
            f"4x the steps (check more): 90.00 [{90 - half:.2f}, {90 + half:.2f}] over 3 seeds; "
            "the published value is inside.") in text
    assert "s / a / acc (-0.60" not in text  # inside: not listed
    assert table.iloc[2]["seeds"] == 0 and "s / b / acc" not in text  # not compared
    without = ledger.value_table(results, values[:1])
    assert "Too few steps." in "\n".join(ledger.outside_markdown(without))
    assert pd.isna(without.iloc[0]["check"])
    no_cause = ledger.value_table(results, [{**values[0], "cause": ""}])
    assert "(-7.60 from the published value): not identified." in \
        "\n".join(ledger.outside_markdown(no_cause))

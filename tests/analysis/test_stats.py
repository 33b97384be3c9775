"""Intervals, paired tests and ranks over seeds, checked by hand and on synthetic data."""

import numpy as np
import pandas as pd
import pytest

from analysis.stats import (
    aggregate,
    average_rank,
    bootstrap_interval,
    compare,
    t_interval,
    wilcoxon_p,
)


def test_t_interval_by_hand():
    lo, hi = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(n)
    assert lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert all(v != v for v in t_interval([1.0]))  # NaN for n < 2


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    v = [3.0, 5.0, 4.0, 6.0, 2.0]
    assert bootstrap_interval(v) == bootstrap_interval(v)
    lo, hi = bootstrap_interval(v)
    assert lo < 4.0 < hi and 2.0 <= lo and hi <= 6.0
    assert all(x != x for x in bootstrap_interval([1.0]))


@pytest.mark.parametrize("n", [5, 20])
def test_bootstrap_covers_the_true_mean_at_about_the_nominal_rate(n):
    rng = np.random.default_rng(1)
    trials = 400
    hits = 0
    for i in range(trials):
        lo, hi = bootstrap_interval(rng.normal(10.0, 2.0, n), resamples=2000, seed=i)
        hits += lo <= 10.0 <= hi
    # 95% nominal; 400 trials give a binomial sd of 1.1 points
    assert 0.915 <= hits / trials <= 0.98


def _paired(shift: float, n: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.normal(80.0, 3.0, n)  # seeds differ a lot; pairing removes that
    rows = []
    for s in range(n):
        rows.append({"scenario": "a", "method": "base", "seed": s, "metric": "acc",
                     "value": base[s]})
        rows.append({"scenario": "a", "method": "new", "seed": s, "metric": "acc",
                     "value": base[s] + shift + rng.normal(0, 0.3)})
    return pd.DataFrame(rows)


def test_paired_comparison_detects_a_known_shift_and_not_a_null_one():
    shifted = compare(_paired(1.0), "a", "acc", "new", "base")
    assert shifted["n"] == 8
    assert shifted["significant"] and shifted["ci_low"] > 0
    assert shifted["p_wilcoxon"] == pytest.approx(2 / 2 ** 8)  # every pair positive
    assert shifted["diff"] == pytest.approx(1.0, abs=0.3)
    false_alarms = sum(compare(_paired(0.0, seed=s), "a", "acc", "new", "base")["significant"]
                       for s in range(100))
    assert false_alarms <= 10  # about 5 expected at the 95% level


def test_wilcoxon_needs_nonzero_differences():
    assert wilcoxon_p([0.0, 0.0, 0.0]) != wilcoxon_p([0.0, 0.0, 0.0])  # NaN
    assert wilcoxon_p([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == pytest.approx(2 / 64)


def test_aggregate_gives_mean_std_n_and_interval():
    t = _paired(1.0)
    agg = aggregate(t)
    row = agg[agg.method == "new"].iloc[0]
    vals = t[t.method == "new"]["value"]
    assert row["mean"] == pytest.approx(vals.mean()) and row["n"] == 8
    assert row["std"] == pytest.approx(vals.std(ddof=1))
    # the default is Student-t; bootstrap only from 10 seeds on (8 here: t)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(t_interval(vals))
    assert (aggregate(t, ci="bootstrap").iloc[0][["ci_low", "ci_high"]].tolist()
            == pytest.approx(list(t_interval(t[t.method == "base"]["value"]))))
    many = pd.concat([t.assign(seed=t["seed"] + 100 * i) for i in range(2)])
    vals16 = many[many.method == "new"]["value"]
    row16 = aggregate(many, ci="bootstrap").query("method == 'new'").iloc[0]
    assert (row16["ci_low"], row16["ci_high"]) == pytest.approx(bootstrap_interval(vals16))
    failed = t.assign(status=["ok"] * 15 + ["failed"])
    assert aggregate(failed)["n"].tolist() == [8, 7]


def test_accuracy_intervals_stay_within_0_and_100_and_differences_do_not():
    rows = [("s", "m", seed, metric, value) for seed, value in enumerate([99.0, 100.0, 96.0])
            for metric in ("target_acc", "acc", "ntg")]
    agg = aggregate(pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric",
                                                "value"])).set_index("metric")
    lo, hi = t_interval([99.0, 100.0, 96.0])
    assert hi > 100
    assert agg.loc["target_acc", "ci_high"] == agg.loc["acc", "ci_high"] == 100.0
    assert agg.loc["target_acc", "ci_low"] == pytest.approx(lo)
    assert (agg.loc["ntg", "ci_low"], agg.loc["ntg", "ci_high"]) == pytest.approx((lo, hi))


def test_average_rank_by_hand():
    means = {"s1": {"a": 90, "b": 80, "c": 70}, "s2": {"a": 60, "b": 75, "c": 60},
             "s3": {"b": 50, "c": 40}}
    rows = [{"scenario": sc, "method": m, "seed": 0, "metric": "acc", "value": v}
            for sc, d in means.items() for m, v in d.items()]
    ar = average_rank(pd.DataFrame(rows), "acc").set_index("method")
    # ranks: s1 a1 b2 c3; s2 b1, a and c tie at 2.5; s3 b1 c2
    assert ar.loc["a", "average_rank"] == pytest.approx((1 + 2.5) / 2)
    assert ar.loc["b", "average_rank"] == pytest.approx((2 + 1 + 1) / 3)
    assert ar.loc["c", "average_rank"] == pytest.approx((3 + 2.5 + 2) / 3)
    assert ar.index[0] == "b" and ar.loc["a", "scenarios"] == 2
    # lower is better for forgetting
    forget = pd.DataFrame(rows).assign(metric="forgetting")
    assert average_rank(forget, "forgetting").iloc[0]["method"] == "c"


def test_seeds_needed_matches_the_paired_t_test_power_tables():
    """Differences with an exact standardised effect d (mean d, sd 1): the paired t-test
    needs 34 pairs for d = 0.5, 15 for d = 0.8 and 10 for d = 1.0 at 80% power and
    alpha = 0.05 two-sided (Cohen 1988; G*Power gives the same)."""
    from analysis.stats import MIN_SEEDS, seeds_needed

    z = np.random.default_rng(1).normal(size=10)
    z = (z - z.mean()) / z.std(ddof=1)
    assert [seeds_needed(z + d) for d in (0.5, 0.8, 1.0)] == [34, 15, 10]
    assert seeds_needed(z + 3.0) == MIN_SEEDS  # never fewer than a verdict takes
    assert seeds_needed(z) is None and seeds_needed([1.0]) is None
    assert seeds_needed(z + 0.01) is None  # beyond 1000

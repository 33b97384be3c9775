import pandas as pd
import pytest

from analysis.stats import aggregate, summary_table
from analysis.transfer import gain, negative_transfer_gap, transfer_gaps


def test_ntg_sign_convention():
    # using the source made it worse: positive gap means negative transfer
    assert negative_transfer_gap(80.0, 70.0) == 10.0
    assert negative_transfer_gap(60.0, 75.0) == -15.0
    assert gain(75.0, 60.0) == 15.0


def _table():
    rows = []
    for seed, (to, so, da) in enumerate([(70, 60, 75), (72, 58, 71)]):
        for method, v in (("target-only", to), ("source-only", so), ("dann", da)):
            rows.append({"suite": "s", "scenario": "a", "method": method, "seed": seed,
                         "metric": "target_acc", "value": float(v)})
    return pd.DataFrame(rows)


def test_transfer_gaps_per_seed():
    gaps = transfer_gaps(_table())
    ntg = gaps[(gaps.metric == "ntg") & (gaps.method == "dann")].sort_values("seed")
    assert ntg["value"].tolist() == [70 - 75, 72 - 71]
    so = gaps[(gaps.metric == "ntg") & (gaps.method == "source-only")].sort_values("seed")
    assert so["value"].tolist() == [10, 14]
    g = gaps[(gaps.metric == "gain_over_source_only") & (gaps.method == "dann")]
    assert sorted(g["value"]) == sorted([75 - 60, 71 - 58])
    # the reference has no gap to itself
    assert not ((gaps.method == "target-only") & (gaps.metric == "ntg")).any()


def test_source_drop_against_source_only():
    rows = _table()
    src = rows.assign(metric="source_acc", value=[95.0, 97.0, 90.0, 94.0, 96.0, 91.0])
    gaps = transfer_gaps(pd.concat([rows, src]))
    drop = gaps[(gaps.metric == "source_drop") & (gaps.method == "dann")].sort_values("seed")
    assert drop["value"].tolist() == [97 - 90, 96 - 91]


def test_aggregate_mean_std():
    agg = aggregate(_table())
    row = agg[agg.method == "dann"].iloc[0]
    assert row["mean"] == pytest.approx(73.0)
    assert row["std"] == pytest.approx(2.8284271, rel=1e-6)  # sample std of 75, 71
    assert row["n"] == 2
    table = summary_table(_table(), ["target_acc"])
    assert table.loc[("a", "dann"), "target_acc"] == "73.00 ± 2.83"

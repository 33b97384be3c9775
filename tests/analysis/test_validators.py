"""The validator study on a hand-made checkpoint table: correlations and regrets by hand."""

import numpy as np
import pandas as pd
import pytest

from analysis.validators import validator_study


def test_study_by_hand():
    # one scenario, one method, two seeds, three candidates each
    rows = []
    for seed, accs, good, bad in ((0, [50, 70, 90], [1, 2, 3], [3, 2, 1]),
                                  (1, [60, 80, 40], [2, 3, 1], [1, 2, 3])):
        for a, g, b in zip(accs, good, bad, strict=True):
            rows.append({"scenario": "s", "method": "m", "seed": seed, "target_acc": a,
                         "good": g, "bad": b, "risk": -g})
    study = validator_study(pd.DataFrame(rows), {"good": True, "bad": True, "risk": False})
    by = study.set_index("validator")
    # good picks the best candidate in both seeds; bad picks 50 (seed 0) and 40 (seed 1)
    assert by.loc["good", "regret"] == 0 and by.loc["bad", "regret"] == pytest.approx((40 + 40) / 2)
    assert by.loc["risk", "regret"] == 0  # lower is better, signed before ranking
    from scipy import stats
    acc = [50, 70, 90, 60, 80, 40]
    assert by.loc["good", "spearman"] == pytest.approx(stats.spearmanr([1, 2, 3, 2, 3, 1], acc)
                                                       .statistic)
    assert by.loc["good", "best"] and not by.loc["bad", "best"]
    assert (by["candidates"] == 6).all()
    assert np.isnan(validator_study(pd.DataFrame(rows).assign(good=1.0),
                                    {"good": True}).loc[0, "spearman"])

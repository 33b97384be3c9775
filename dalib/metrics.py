"""The metric names a sweep's results hold, by scenario kind: what a ledger entry or a user's
analysis may name (a misspelled name is refused rather than reported as missing)."""

from __future__ import annotations

import re

from scenarios.suite import REGRESSION_CRITERIA, SELECTION_CRITERIA

TRANSFER = {"target_acc", "source_acc", "target_train_acc", "selected_step",
            "target_acc_oracle", "converged", "ntg", "gain_over_source_only", "source_drop",
            "leep", "nce", "logme", "h_score", "pad",
            "known_acc", "unknown_recall", "hos", "hos_last", "hos_oracle",  # open set
            *(f"target_acc_{c.replace('-', '_')}" for c in SELECTION_CRITERIA),
            # regression
            "target_rmse", "target_mae", "source_rmse", "source_mae", "target_train_rmse",
            "target_rmse_oracle", "ntg_rmse", "gain_over_source_only_rmse", "source_drop_rmse",
            *(f"target_rmse_{c.replace('-', '_')}" for c in REGRESSION_CRITERIA)}
STREAM = {"acc", "bwt", "fwt", "forgetting", "intransigence", "acc_val", "converged",
          "anytime_acc"}
TEST_TIME = {"online_error", "majority_share", "final_majority_share", "collapsed",
             "source_acc", "converged"}
# metrics with an argument: a stream's domain or cycle; a validator pooled over methods
INDEXED = {"test-time": ("online_error", "online_error_cycle")}
POOLED = ("spearman",)
KINDS = {"transfer": TRANSFER, "stream": STREAM, "test-time": TEST_TIME}


def known(kind: str, metric: str, method: str = "") -> bool:
    """Whether a run of a scenario of ``kind`` reports ``metric`` (``method = "all"``: numbers
    pooled over a seed's methods, ``spearman[VALIDATOR]``)."""
    found = re.fullmatch(r"([a-z_]+)\[(.+)\]", metric)
    if method == "all":
        return bool(found) and found.group(1) in POOLED
    if found:
        return found.group(1) in INDEXED.get(kind, ())
    return metric in KINDS.get(kind, set())


def names(kind: str) -> str:
    """The metric names of ``kind`` for an error message."""
    indexed = [f"{m}[...]" for m in INDEXED.get(kind, ())]
    return ", ".join(sorted(KINDS.get(kind, set())) + indexed)

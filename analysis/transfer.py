"""Transfer metrics: the negative transfer gap and the gain over source-only.

NTG (Wang et al., "Characterizing and Avoiding Negative Transfer", CVPR 2019):
``NTG = acc(target-only) - acc(with source)``, in points; positive means the source hurt. In
a regression scenario ``NTG = RMSE(with source) - RMSE(target-only)``, in the target's
units, with the same sign.
"""

from __future__ import annotations

import pandas as pd


def negative_transfer_gap(target_only_acc: float, with_source_acc: float) -> float:
    """Points by which using the source is worse than the target-only reference."""
    return float(target_only_acc) - float(with_source_acc)


def gain(method_acc: float, baseline_acc: float) -> float:
    """Points gained over a baseline (e.g. source-only)."""
    return float(method_acc) - float(baseline_acc)


def source_drop(source_only_acc: float, method_acc: float) -> float:
    """Points of held-out source accuracy lost against the source-only model of the same seed:
    how much adapting to the target made the model forget the source."""
    return float(source_only_acc) - float(method_acc)


def transfer_gaps(results: pd.DataFrame, target_only: str = "target-only",
                  source_only: str = "source-only") -> pd.DataFrame:
    """Rows ``ntg`` (from ``target_acc`` against ``target_only``), ``gain_over_source_only``
    (``target_acc`` against ``source_only``) and ``source_drop`` (``source_acc`` against
    ``source_only``), and in regression scenarios ``ntg_rmse``, ``gain_over_source_only_rmse``
    and ``source_drop_rmse`` from the RMSEs (an error's rise is an accuracy's fall: positive
    NTG still means the source hurt), for every method of every scenario and seed where the
    reference ran,
    from a tidy table (``scenario, method, seed, metric, value``; other columns are carried
    from the method's own row)."""
    keys = ["scenario", "seed"] + (["suite"] if "suite" in results else [])
    out = []
    for metric, ref, name, fn in (
            ("target_acc", target_only, "ntg", lambda m, r: negative_transfer_gap(r, m)),
            ("target_acc", source_only, "gain_over_source_only", gain),
            ("source_acc", source_only, "source_drop", lambda m, r: source_drop(r, m)),
            # regression: the same gaps of errors, in the target's units
            ("target_rmse", target_only, "ntg_rmse", lambda m, r: negative_transfer_gap(m, r)),
            ("target_rmse", source_only, "gain_over_source_only_rmse", lambda m, r: gain(r, m)),
            ("source_rmse", source_only, "source_drop_rmse", lambda m, r: source_drop(m, r))):
        acc = results[results["metric"] == metric]
        base = acc[acc["method"] == ref][keys + ["value"]].rename(columns={"value": "_ref"})
        rows = acc[acc["method"] != ref].merge(base, on=keys)
        if rows.empty:
            continue
        rows = rows.assign(metric=name, value=[fn(m, r) for m, r in
                                               zip(rows["value"], rows["_ref"], strict=True)])
        out.append(rows.drop(columns="_ref"))
    if not out:
        return results.iloc[0:0]
    return pd.concat(out, ignore_index=True)[list(results.columns)]

"""Leave-one-domain-out validation (Gulrajani & Lopez-Paz, "In Search of Lost Domain
Generalization", ICLR 2021): a held-out domain's checkpoint, or a search's configuration, is
chosen by the mean accuracy of the same method trained without each other domain in turn
and tested on it (the validation runs ``FAMILY/DOMAIN/validate-V`` of a family with
``selection = "leave-one-domain-out"``, :mod:`scenarios.multidomain`). Checkpoints are
matched by their position (the runs share the budget); the held-out domain's labels are
read only for the reported accuracy at the pick."""

from __future__ import annotations

import numpy as np


def _key(record: dict, held_out: str) -> tuple:
    return (record["suite"], record["config"]["data"]["family"], held_out, record["method"],
            record["seed"])


def lodo_picks(records: list[dict]) -> dict[str, dict[str, float]]:
    """For every finished run of a held-out domain whose validation runs have all finished:
    ``{run_id: {"val": mean validation accuracy at the pick, "target_acc": held-out accuracy
    there, "source_acc": ..., "step": ...}}``."""
    ok = [r for r in records if r["status"] == "ok" and r.get("checkpoints")]
    validation: dict[tuple, dict[str, dict]] = {}
    for r in ok:
        data = r["config"]["data"]
        if "validation_domain" in data:
            validation.setdefault(_key(r, data["held_out"]), {})[data["validation_domain"]] = r
    picks = {}
    for r in ok:
        data = r["config"]["data"]
        if "validation_domains" not in data:
            continue
        runs = validation.get(_key(r, data["held_out"]), {})
        if set(runs) != set(data["validation_domains"]):
            continue  # a validation run is missing or failed: no pick
        n = len(r["checkpoints"])
        if any(len(v["checkpoints"]) != n for v in runs.values()):
            continue
        scores = np.mean([[c["target_acc"] for c in v["checkpoints"]] for v in runs.values()], 0)
        candidates = [i for i, c in enumerate(r["checkpoints"]) if c.get("selectable", True)]
        best = max(reversed(candidates or list(range(n))), key=lambda i: scores[i])
        chosen = r["checkpoints"][best]
        picks[r["run_id"]] = {"val": float(scores[best]), "target_acc": chosen["target_acc"],
                              "source_acc": chosen["source_acc"], "step": chosen["step"]}
    return picks


def lodo_rows(records: list[dict], picks: dict[str, dict[str, float]] | None = None
              ) -> list[dict]:
    """Rows of the results table: ``target_acc_lodo`` (the held-out accuracy at the
    leave-one-domain-out pick) and ``lodo_val_acc`` (the validation accuracy it was picked
    by) of every run :func:`lodo_picks` covers."""
    picks = lodo_picks(records) if picks is None else picks
    rows = []
    for r in records:
        pick = picks.get(r["run_id"])
        if pick is None:
            continue
        base = {"suite": r["suite"], "scenario": r["scenario"], "method": r["method"],
                "seed": r["seed"], "run_id": r["run_id"], "config_hash": r["config_hash"],
                "status": "ok"}
        rows += [{**base, "metric": "target_acc_lodo", "value": pick["target_acc"]},
                 {**base, "metric": "lodo_val_acc", "value": pick["val"]}]
    return rows

"""The report's tables of leave-one-domain-out families (scenarios named ``FAMILY/DOMAIN``,
:mod:`scenarios.multidomain`), as DomainBed prints them: one row per method, one column per
held-out domain and their average, one table per way of choosing the checkpoint; and the
effect of each source domain on each held-out one (leave-one-source-out runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.domainbed import DOMAINS, published
from analysis.domains import source_effects
from analysis.report.cells import cell, values_cell
from analysis.report.doc import Doc
from analysis.stats import MIN_SEEDS

PROTOCOLS = {"target_acc": "the selected checkpoint",
             "target_acc_lodo": "leave-one-domain-out validation: the checkpoint with the "
                                "best mean accuracy of the runs trained without each other "
                                "domain, tested on it",
             "target_acc_last": "the last checkpoint",
             "target_acc_oracle": "test-domain oracle: the best checkpoint on the held-out "
                                  "domain's test labels (an upper bound, never a result)"}


def _data(records: list[dict], scenarios: list[str]) -> dict[str, dict]:
    """The data options of each of ``scenarios`` that belongs to a family."""
    out = {}
    for r in records:
        data = r.get("config", {}).get("data", {})
        if "family" in data and r["scenario"] in scenarios:
            out[r["scenario"]] = data
    return out


def families(records: list[dict], scenarios: list[str]) -> dict[str, dict[str, str]]:
    """``{family: {scenario: held-out domain}}`` of the leave-one-domain-out families among
    ``scenarios`` with two or more held-out domains (their validation and leave-one-source-out
    runs left out), from the records, or from names ``FAMILY/DOMAIN`` without them."""
    out: dict[str, dict[str, str]] = {}
    known = _data(records, scenarios)
    for sc in scenarios:
        data = known.get(sc)
        if data is None and sc.count("/") == 1:  # results without records: by name
            data = dict(zip(("family", "held_out"), sc.split("/"), strict=True))
        if data and not {"validation_domain", "without_source"} & set(data):
            out.setdefault(data["family"], {})[sc] = str(data["held_out"])
    order = {sc: i for i, sc in enumerate(scenarios)}
    return {f: dict(sorted(m.items(), key=lambda kv: order[kv[0]]))
            for f, m in out.items() if len(m) >= 2}


def _published_protocol(metric: str, criteria: list[str]) -> str | None:
    """The DomainBed protocol a family table's metric corresponds to, if any."""
    if metric == "target_acc":
        return "training-domain" if criteria == ["source-val"] else None
    return {"target_acc_lodo": "leave-one-domain-out",
            "target_acc_last": "test-domain oracle"}.get(metric)


def builtin_dataset(records: list[dict], members: list[str]) -> tuple[str, str] | None:
    """``(dataset, how this run differs from DomainBed's)`` when a family is one of
    DomainBed's MNIST datasets as dalib builds it (the default domains), else None."""
    configs = [r["config"] for r in records if r["scenario"] in members and "config" in r]
    if not configs:
        return None
    data = configs[0]["data"]
    tables = [*data["source"], data["target"]]
    names = {t.get("dataset") for t in tables}
    dataset = names.pop() if len(names) == 1 else None
    if dataset not in DOMAINS or any(set(t) - {"dataset", "domain", "shifts"} for t in tables):
        return None
    sizes = [s.get("size") for t in tables for s in t.get("shifts", [])
             if s.get("name") == "resize"]
    model, budget = configs[0]["model"], configs[0]["budget"]
    arch = next((r.get("arch") for r in records if r["scenario"] in members and r.get("arch")),
                model.get("arch", "auto"))
    differs = ["the local 10,000 MNIST digits (DomainBed: 70,000)",
               f"inputs resized to {sizes[0]} x {sizes[0]}" if sizes else "28 x 28 inputs",
               f"arch {arch}" + ("" if arch == "mnist-cnn" else " (DomainBed: its MNIST CNN)"),
               f"{budget.get('steps', str(budget.get('epochs')) + ' epochs')} steps of "
               f"{budget.get('batch_size')} pooled samples (DomainBed: 5,000 steps of 64 "
               "per domain)", "default hyperparameters (DomainBed: a random search of 20)"]
    return dataset, "; ".join(differs)


def _published_row(dataset: str, protocol: str, method: str, held: list[str]) -> list | None:
    values = published(dataset, protocol, method)
    if values is None:
        return None
    cells = [f"{v[0]:.1f} ± {v[1]:.1f}" for v in (values[h] for h in held)]
    return [f"DomainBed {method} (published)", *cells, f"{values['average'][0]:.1f}"
            if len(held) == len(DOMAINS[dataset]) else ""]


def family_tables(doc: Doc, ok: pd.DataFrame, records: list[dict], tables_dir: Path) -> None:
    """One table per family and checkpoint protocol (written to ``tables/``)."""
    groups = families(records, list(dict.fromkeys(ok["scenario"])))
    if not groups:
        return
    doc.heading("Leave-one-domain-out", 3)
    selections = {r["scenario"]: r.get("selection") for r in records}
    for family, held_out in groups.items():
        members, held = list(held_out), list(held_out.values())
        criteria = sorted({selections.get(m) for m in members} - {None})
        builtin = builtin_dataset(records, members)
        for metric, what in PROTOCOLS.items():
            part = ok[ok["scenario"].isin(members) & (ok["metric"] == metric)]
            if part.empty:
                continue
            wide = part.pivot_table(index=["method", "seed"], columns="scenario",
                                    values="value", aggfunc="first")
            rows, csv = [], []
            for method in dict.fromkeys(part["method"]):
                per_seed = wide.loc[method]
                row = [method] + [values_cell(per_seed[m].dropna().to_numpy()) if m in per_seed
                                  else "" for m in members]
                complete = per_seed.reindex(columns=members).dropna()
                row.append(values_cell(complete.mean(axis=1).to_numpy()))
                rows.append(row)
                protocol = _published_protocol(metric, criteria)
                reference = _published_row(builtin[0], protocol, method, held) \
                    if builtin and protocol else None
                if reference:
                    rows.append(reference)
                csv.append([method] + [per_seed[m].mean() if m in per_seed else np.nan
                                       for m in members] + [complete.mean(axis=1).mean()])
            label = what if metric != "target_acc" or not criteria else \
                f"{what} ({', '.join(criteria)})"
            shown = builtin and _published_protocol(metric, criteria)
            doc.para(f"**{family}**, target accuracy at {label}: mean [95% CI] over seeds; "
                     "the average is taken per seed over the held-out domains."
                     + (f" DomainBed rows: its published {shown} numbers, mean ± standard "
                        "error over 3 trials (Gulrajani & Lopez-Paz 2021); this run differs "
                        f"in {builtin[1]}." if shown else "")
                     + (" DomainBed's test-domain oracle reports the last checkpoint, its "
                        "hyperparameters chosen on 20% of the test domain; a run of one "
                        "configuration has no choice to make, so the last checkpoint is its "
                        "counterpart (dalib's best-checkpoint oracle, an upper bound, is not "
                        "compared with it)." if shown == "test-domain oracle" else ""))
            doc.table(["method", *held, "average"], rows)
            pd.DataFrame(csv, columns=["method", *held, "average"]).to_csv(
                tables_dir / f"domains-{family.replace('/', '_')}-{metric}.csv", index=False)


def source_effect_section(doc: Doc, ok: pd.DataFrame, records: list[dict], tables_dir: Path,
                          out: Path, colours: dict) -> list[Path]:
    """Per family with leave-one-source-out runs: the effect of adding each source domain
    on each held-out domain (:func:`analysis.domains.source_effects`), a table and a
    figure; returns the figure files."""
    scenarios = list(dict.fromkeys(ok["scenario"]))
    data = _data(records, scenarios)
    figures: list[Path] = []
    for family in dict.fromkeys(d["family"] for d in data.values() if "without_source" in d):
        mine = {sc: d for sc, d in data.items() if d["family"] == family}
        full = {sc: str(d["held_out"]) for sc, d in mine.items()
                if not {"validation_domain", "without_source"} & set(d)}
        without = {sc: (str(d["held_out"]), str(d["without_source"])) for sc, d in mine.items()
                   if "without_source" in d}
        effects = source_effects(ok, full, without)
        if effects.empty:
            continue
        if not figures:
            doc.heading("Negative transfer across domains", 3)
        doc.para(f"**{family}**: the effect of adding each source domain on each held-out "
                 "domain, the held-out accuracy (selected checkpoint) with every source minus "
                 "without that one, in points, mean [95% CI] paired over seeds. Negative: the "
                 f"source hurts (`hurts` when the interval lies below 0 on {MIN_SEEDS} or more "
                 "seeds).")
        rows = [[r["held_out"], r["source"], r["method"], cell(r), "hurts" if r["hurts"] else ""]
                for _, r in effects.iterrows()]
        doc.table(["held-out domain", "source added", "method", "effect", ""], rows)
        stem = family.replace("/", "_")
        effects.to_csv(tables_dir / f"source-effects-{stem}.csv", index=False)
        labelled = effects.assign(method=effects["method"] + " +" + effects["source"])
        shades = {label: colours.get(m, "grey") for label, m in
                  zip(labelled["method"], effects["method"], strict=True)}
        panels = [(f"held out: {held}", "effect of the source (points)", part, True)
                  for held, part in labelled.groupby("held_out", sort=False)]
        paths = plots.save(plots.interval_panels(panels, shades, title=f"{family}: effect of "
                                                 "each source domain"),
                           out / "figures" / f"source-effects-{stem}")
        doc.figure(paths[0], f"{family}: the effect of adding each source domain on each "
                   "held-out domain (points, 95% CI; * the interval excludes 0)")
        figures += paths
    return figures

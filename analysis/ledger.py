"""The reproduction ledger: published numbers beside dalib's, and published claims tested.

Works on a tidy long results table (``scenario, method, seed, metric, value``; a ``status``
column keeps ``ok`` rows) and an entry's header as plain data: each *value* names a cell
(``scenarios``, ``method``, ``metric``) and the published number with its reported spread; each
*shape* names a claim ``left relation right`` between two cells (or a cell and a number).

A cell's value per seed is the metric of the method in its scenario, or the mean over its
scenarios seed by seed (a published average over test environments). dalib's number is the
mean over seeds with its 95% Student-t interval; the published value is *inside* when it lies
in that interval. A claim is tested on the paired per-seed differences ``left - right``: it
*holds* when their interval lies on the claimed side of zero, is *reversed* when it lies on the
other side, and is *not resolved* otherwise (or with fewer than two seeds). Each verdict
states its power (the smallest difference its seeds resolve 4 times in 5, at the observed
spread), whether it survives leaving out any one seed (a verdict that does not is
*fragile*), and for an unresolved claim how many seeds would resolve the observed
difference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.report.cells import fmt, is_error
from analysis.stats import detectable_effect, ok_rows, seeds_needed, t_interval

LEVEL = 0.95


def cell_values(results: pd.DataFrame, cell: dict) -> pd.Series:
    """A cell's value per seed (index: seed); a seed missing in one of its scenarios is left
    out (the mean over scenarios needs all of them)."""
    rows = ok_rows(results)
    rows = rows[(rows["method"] == cell["method"]) & (rows["metric"] == cell["metric"])
                & rows["scenario"].isin(cell["scenarios"])]
    wide = rows.pivot_table(index="seed", columns="scenario", values="value", aggfunc="mean")
    if wide.empty or len(wide.columns) < len(set(cell["scenarios"])):
        return pd.Series(dtype=float, name="value")
    return wide.dropna().mean(axis=1).rename("value")


def label(cell: dict) -> str:
    """How a cell reads in the ledger: ``scenario / method / metric``; a mean over scenarios
    of one family (``family/domain``) as ``family/mean(domain, ...)``."""
    scenarios = list(cell["scenarios"])
    families = {s.split("/", 1)[0] for s in scenarios}
    if len(scenarios) == 1:
        where = scenarios[0]
    elif len(families) == 1 and all("/" in s for s in scenarios):
        where = f"{families.pop()}/mean({', '.join(s.split('/', 1)[1] for s in scenarios)})"
    else:
        where = f"mean({', '.join(scenarios)})"
    return f"{where} / {cell['method']} / {cell['metric']}"


def _summary(values: pd.Series) -> tuple[float, float, float]:
    if values.empty:
        return float("nan"), float("nan"), float("nan")
    lo, hi = t_interval(values, LEVEL)
    return float(values.mean()), lo, hi


def value_table(results: pd.DataFrame, values: list[dict],
                checks: list[tuple[str, str, pd.DataFrame]] = ()) -> pd.DataFrame:
    """One row per published value: ``cell, published, spread, spread_kind, checked, seeds,
    mean, lo, hi, difference`` (dalib minus published), ``inside`` (the published value in
    dalib's interval; missing without a published value or an interval), ``note``,
    ``cause`` (the likely cause, for a value outside) and the value measured by the first of
    ``checks`` (``(name, what, results)``) that ran its cell: ``check, check_what,
    check_seeds, check_mean, check_lo, check_hi, check_inside``."""
    out = []
    for v in values:
        per_seed = cell_values(results, v["cell"])
        mean, lo, hi = _summary(per_seed)
        published = v.get("published")
        row = {"cell": label(v["cell"]), "published": published,
               "spread": v.get("spread"), "spread_kind": v.get("spread_kind", "none"),
               "checked": v.get("checked", True), "seeds": len(per_seed), "mean": mean,
               "lo": lo, "hi": hi, "difference": mean - published if published is not None
               else None, "inside": _contains(published, lo, hi),
               "note": v.get("note", ""), "cause": v.get("cause", ""),
               **dict.fromkeys(CHECK_COLUMNS)}
        for name, what, found in checks:
            measured = cell_values(found, v["cell"])
            if len(measured):
                m, m_lo, m_hi = _summary(measured)
                row.update(check=name, check_what=what, check_seeds=len(measured),
                           check_mean=m, check_lo=m_lo, check_hi=m_hi,
                           check_inside=_contains(published, m_lo, m_hi))
                break
        out.append(row)
    return pd.DataFrame(out, columns=["cell", "published", "spread", "spread_kind", "checked",
                                      "seeds", "mean", "lo", "hi", "difference", "inside",
                                      "note", "cause", *CHECK_COLUMNS])


def _contains(published: float | None, lo: float, hi: float) -> bool | None:
    """Whether the published value lies in ``[lo, hi]``; None without a value or an
    interval."""
    return bool(lo <= published <= hi) if published is not None and not np.isnan(lo) else None


CHECK_COLUMNS = ("check", "check_what", "check_seeds", "check_mean", "check_lo", "check_hi",
                 "check_inside")


def outside_markdown(values: pd.DataFrame) -> list[str]:
    """Each value outside its published interval with its likely cause and, where a check
    measured it, the value there."""
    lines = []
    for _, r in values[values["inside"].eq(False)].iterrows():
        cause = r["cause"] or "not identified"
        text = (f"- {r['cell']} ({_num(r['difference'], _digits(r))} from the published "
                f"value): {cause}")
        if not pd.isna(r["check"]):
            where = ("inside" if r["check_inside"] else "still outside") \
                if not pd.isna(r["check_inside"]) else "not compared"
            text += (f" *Measured* with {r['check_what']} (check {r['check']}): "
                     f"{_num(r['check_mean'])} [{_num(r['check_lo'])}, {_num(r['check_hi'])}] "
                     f"over {int(r['check_seeds'])} seeds; the published value is {where}.")
        lines.append(text if text.endswith(".") else text + ".")
    return ["Outside the published interval, and the likely cause:", "", *lines, ""] \
        if lines else []


def verdict(relation: str, lo: float, hi: float) -> str:
    """``holds``, ``reversed`` or ``not resolved`` for a claim whose difference ``left -
    right`` has the interval ``[lo, hi]``."""
    if np.isnan(lo):
        return "not resolved"
    above, below = lo > 0, hi < 0
    if relation == ">":
        return "holds" if above else "reversed" if below else "not resolved"
    return "holds" if below else "reversed" if above else "not resolved"


def robust(relation: str, differences: pd.Series) -> bool:
    """Whether the verdict on ``differences`` stays the same with any one seed left out
    (True for fewer than 3 seeds: nothing to leave out that leaves an interval)."""
    if len(differences) < 3:
        return True
    full = verdict(relation, *_summary(differences)[1:])
    return all(verdict(relation, *_summary(differences.drop(seed))[1:]) == full
               for seed in differences.index)


def shape_table(results: pd.DataFrame, shapes: list[dict]) -> pd.DataFrame:
    """One row per published claim: ``claim, test`` (the comparison in cells), ``seeds``,
    ``left, right`` (means), ``difference, lo, hi`` (paired, left minus right, 95% t
    interval), ``verdict``, ``resolvable`` (the difference its seeds resolve with 80% power,
    :func:`~analysis.stats.detectable_effect`), ``robust`` (the verdict survives leaving out
    any one seed), ``seeds_needed`` (for an unresolved claim: seeds for 80% power at the
    observed difference, None beyond 1,000 or at no difference) and ``note``."""
    out = []
    for s in shapes:
        left = cell_values(results, s["left"])
        right = s["right"]
        if isinstance(right, dict):
            rvals = cell_values(results, right)
            seeds = left.index.intersection(rvals.index)
            diff = left.loc[seeds] - rvals.loc[seeds]
            rmean = float(rvals.loc[seeds].mean()) if len(seeds) else float("nan")
            rlabel = label(right)
        else:
            diff, rmean, rlabel = left - float(right), float(right), f"{float(right):g}"
        mean, lo, hi = _summary(diff)
        found = verdict(s["relation"], lo, hi)
        out.append({"claim": s["claim"], "test": f"{label(s['left'])} {s['relation']} {rlabel}",
                    "seeds": len(diff),
                    "left": float(left.loc[diff.index].mean()) if len(diff) else float("nan"),
                    "right": rmean, "difference": mean, "lo": lo, "hi": hi, "verdict": found,
                    "resolvable": detectable_effect(diff), "robust": robust(s["relation"], diff),
                    "seeds_needed": seeds_needed(diff) if found == "not resolved" else None,
                    "note": s.get("note", "")})
    return pd.DataFrame(out, columns=["claim", "test", "seeds", "left", "right", "difference",
                                      "lo", "hi", "verdict", "resolvable", "robust",
                                      "seeds_needed", "note"])


def verdict_cell(row) -> str:
    """A claim's verdict as the page shows it: fragile when one seed left out changes it;
    an unresolved one with the seeds that would resolve its observed difference."""
    found = row["verdict"]
    if found != "not resolved":
        return found if row["robust"] else f"{found} (fragile: one seed left out changes it)"
    text = found if row["robust"] else f"{found} (fragile: one seed left out resolves it)"
    needed = row["seeds_needed"]
    return text + (f"; about {int(needed)} seeds would resolve the observed difference"
                   if needed is not None and not pd.isna(needed)
                   else "; no practical number of seeds resolves the observed difference")


def _num(x, digits: int = 2) -> str:
    """A number as the report shows it (two decimals; ``digits``), a dash where there is
    none."""
    return "–" if pd.isna(x) else fmt(x, digits)


def _digits(row) -> int:
    """Decimals of a value row's numbers: three for regression errors (in the data's units,
    often below 1), two for the rest (points)."""
    return 3 if is_error(str(row.get("cell", "")).rsplit(" / ", 1)[-1]) else 2


def published_cell(row) -> str:
    """The published value as reported: ``value ± spread (sd|se)``, marked when unchecked."""
    if pd.isna(row["published"]):
        return "not given"
    text = _num(row["published"], _digits(row))
    if row["spread_kind"] != "none":
        text += f" ± {_num(row['spread'], _digits(row))} ({row['spread_kind']})"
    return text if row["checked"] else f"{text} (quoted, unchecked)"


def _inside(row) -> str:
    if pd.isna(row["inside"]):
        return "–"
    return "yes" if row["inside"] else "**no**"


def _notes(table: pd.DataFrame, key: str) -> list[str]:
    """The table's notes, each once, with the rows it applies to."""
    rows: dict[str, list[str]] = {}
    for _, r in table.iterrows():
        if r["note"]:
            rows.setdefault(r["note"], []).append(r[key])
    if not rows:
        return [""]
    return [""] + [f"- {note[0].upper() + note[1:]}: {'; '.join(keys)}."
                   for note, keys in rows.items()] + [""]


def size_markdown(size: str, published: dict) -> str:
    """Which size produced the entry's numbers, and what its published size is and needs."""
    ran = {"reduced": "the entry's reduced size (the protocol as written in the entry; "
                      "its differences from the paper are listed below)",
           "published": "the entry's published size",
           "smoke": "the smoke size (a check that the entry runs, not a reproduction)"}[size]
    text = f"Size: these numbers come from {ran}."
    if not published:
        return text + " No published size is declared."
    text += f" Published size: {published.get('note', 'declared')}"
    if "unavailable" in published:
        return text + f"; not runnable in dalib yet ({published['unavailable']})."
    needs = published.get("requires", {})
    parts = ([f"a {needs['device'].upper()} device"] if "device" in needs else []) + \
        [f"{name} with {count:,} samples" for name, count in needs.get("samples", {}).items()]
    return text + (f"; it needs {', '.join(parts)} (`dalib reproduce --size published`)."
                   if parts else " (`dalib reproduce --size published`).")


def entry_markdown(entry: dict) -> str:
    """One entry's section: citation, protocol, differences, the values and claims tables,
    its figure and cost. ``entry`` holds ``name, citation, source, url, protocol,
    published_seeds, differences, values`` (:func:`value_table`), ``shapes``
    (:func:`shape_table`), ``figure`` (a path or None) and ``cost`` (a sentence)."""
    lines = [f"## {entry['name']}", "", f"**{entry['citation']}**"
             + (f" <{entry['url']}>" if entry.get("url") else ""), "",
             f"Reproduces: {entry['source']}."
             + (f" Published over {entry['published_seeds']} runs."
                if entry.get("published_seeds") else ""), "",
             f"Protocol as published: {entry['protocol']}", ""]
    if entry.get("size"):
        lines += [size_markdown(entry["size"], entry.get("published_size") or {}), ""]
    if entry["differences"]:
        lines += ["Where dalib's run differs, and the expected effect:", ""]
        lines += [f"- {what} *Expected effect:* {direction}"
                  for what, direction in entry["differences"]]
        lines.append("")
    values = entry["values"]
    if len(values):
        lines += ["| result | published | dalib mean [95% CI] | seeds | dalib − published | "
                  "published inside CI |", "|---|---|---|---|---|---|"]
        for _, r in values.iterrows():
            d = _digits(r)
            lines.append(f"| {r['cell']} | {published_cell(r)} | {_num(r['mean'], d)} "
                         f"[{_num(r['lo'], d)}, {_num(r['hi'], d)}] | {r['seeds']} | "
                         f"{_num(r['difference'], d)} | {_inside(r)} |")
        lines += _notes(values, "cell")
        lines += outside_markdown(values)
    shapes = entry["shapes"]
    if len(shapes):
        lines += ["| published claim | tested as | seeds | difference [95% CI] | resolvable "
                  "difference (80% power) | verdict |", "|---|---|---|---|---|---|"]
        for _, r in shapes.iterrows():
            lines.append(f"| {r['claim']} | {r['test']} | {r['seeds']} | "
                         f"{_num(r['difference'])} [{_num(r['lo'])}, {_num(r['hi'])}] | "
                         f"{_num(r['resolvable'])} | {verdict_cell(r)} |")
        lines += _notes(shapes, "claim")
    if entry.get("figure"):
        lines += [f"![{entry['name']}: published vs dalib]({entry['figure']})", ""]
    if entry.get("cost"):
        lines += [entry["cost"], ""]
    if entry.get("stamp"):
        lines += [stamp_markdown(entry["stamp"]), ""]
    return "\n".join(lines)


STAMP_FIELDS = ("dalib", "commit", "dirty", "torch", "cuda", "python", "device",
                "device_name", "kernels", "threads")


def _text(value) -> str:
    return {True: "yes", False: "no", None: "unknown"}.get(value, str(value)) \
        if isinstance(value, bool | type(None)) else str(value)


def entry_stamp(records: list[dict]) -> dict[str, str]:
    """What identifies an entry's numbers, from its records: each stamp field's value
    (``dalib.stamp``; several joined by `` | `` when the records differ), ``date`` (the range
    of the runs' UTC dates), ``data`` (each data file's digest, from the run
    configurations) and ``mixed`` (the fields on which the records differ, comma-separated;
    empty when one stamp made them all)."""
    out, mixed = {}, []
    for name in STAMP_FIELDS:
        seen = sorted({_text(r.get("stamp", {}).get(name)) for r in records}) or ["unknown"]
        out[name] = " | ".join(seen)
        mixed += [name] if len(seen) > 1 else []
    dates = sorted({r.get("stamp", {}).get("date") or str(r.get("finished", ""))[:10]
                    for r in records} - {""})
    out["date"] = (dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}") \
        if dates else "unknown"
    files: dict[str, set[str]] = {}
    for r in records:
        for path, digest in r.get("config", {}).get("files", {}).items():
            files.setdefault(path, set()).add(digest)
    out["data"] = "; ".join(f"{path} {' | '.join(sorted(d))}" for path, d in sorted(files.items()))
    mixed += ["data"] if any(len(d) > 1 for d in files.values()) else []
    out["mixed"] = ", ".join(mixed)
    return out


def stamp_markdown(stamp: dict[str, str]) -> str:
    """An entry's stamp as one paragraph; records made under different stamps say so."""
    commit = stamp["commit"] if stamp["commit"] != "unknown" else "not a git checkout"
    text = (f"Stamp: dalib {stamp['dalib']} (commit {commit}; uncommitted changes: "
            f"{stamp['dirty']}), torch {stamp['torch']} (CUDA {stamp['cuda']}), Python "
            f"{stamp['python']}, device {stamp['device']} ({stamp['device_name']}), CPU kernels "
            f"{stamp['kernels']}, torch threads {stamp['threads']}, run on {stamp['date']}. "
            f"Data (SHA-256, first 16 hex digits): {stamp['data'] or 'none recorded'}.")
    if stamp["mixed"]:
        text += (f" **The runs of this entry were made under different stamps** "
                 f"({stamp['mixed']}): its numbers mix them.")
    return text


def counts(values: pd.DataFrame, shapes: pd.DataFrame) -> dict[str, int]:
    """How many published values fall inside dalib's interval, outside it, or cannot be
    compared, how many claims hold, are reversed or are not resolved, and how many of those
    verdicts are fragile (one seed left out changes them)."""
    inside = values["inside"] if len(values) else pd.Series(dtype=object)
    verdicts = shapes["verdict"] if len(shapes) else pd.Series(dtype=object)
    return {"inside": int((inside == True).sum()),  # noqa: E712  (None: not comparable)
            "outside": int((inside == False).sum()),  # noqa: E712
            "not compared": int(inside.isna().sum()),
            "holds": int((verdicts == "holds").sum()),
            "reversed": int((verdicts == "reversed").sum()),
            "not resolved": int((verdicts == "not resolved").sum()),
            "fragile": int((~shapes["robust"].astype(bool)).sum()) if len(shapes) else 0}

"""A reproduction entry's header: the ``[reproduction]`` table of a suite.

An entry of the reproduction ledger is an ordinary suite (its scenarios run through the normal
runner) whose ``[reproduction]`` table says what it reproduces: the citation, the table or
figure, the protocol as published, how dalib's run differs from it (and the expected direction
of each difference), the published values to compare with (``[[reproduction.value]]``), the
published qualitative claims to test (``[[reproduction.shape]]``) and its sizes. A row of a
published table (one method and metric over several scenarios, one cause and note for all)
may be written once as a ``[[reproduction.row]]`` with ``published = { SCENARIO = VALUE, ...
}``: it stands for one value per scenario, in that order. The suite as
written is the entry's *reduced* size (a CPU runs it in minutes to hours); ``[reproduction.
published]`` overrides it up to the paper's protocol (seeds, budget, model, scenario keys) and
says what that needs (``requires``: a device, datasets with at least so many samples); the
``smoke`` size (``[reproduction.smoke]``) only checks that the entry runs. A value outside
the published interval states its likely ``cause``; a ``[[reproduction.check]]`` measures one
(the reduced size with some keys changed, e.g. more steps, for some scenarios and methods),
and the ledger shows the value at that check beside it. This module checks the table; the
comparison is :mod:`analysis.ledger`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from scenarios import checks
from scenarios.errors import InputError, reject_unknown

ENTRIES_DIR = Path(__file__).parent / "reproductions"

HEADER_KEYS = {"citation", "source", "url", "protocol", "published_seeds", "differences",
               "smoke", "published", "value", "row", "shape", "check", "requires"}
SMOKE_KEYS = {"seeds", "budget", "scenario", "search"}
PUBLISHED_KEYS = SMOKE_KEYS | {"model", "requires", "note", "unavailable"}
CHECK_KEYS = SMOKE_KEYS | {"model", "name", "what", "scenarios", "methods"}
REQUIRES_KEYS = {"device", "samples"}
SIZES = ("reduced", "published", "smoke")
CELL_KEYS = {"scenario", "method", "metric"}
VALUE_KEYS = CELL_KEYS | {"published", "spread", "spread_kind", "checked", "note", "cause"}
ROW_KEYS = {"method", "metric", "published", "spread", "spread_kind", "checked", "note",
            "cause"}
SHAPE_KEYS = {"claim", "left", "relation", "right", "note"}
SPREAD_KINDS = ("sd", "se", "none")
RELATIONS = (">", "<")
DIFFERENCE_KEYS = {"what", "direction"}


@dataclass(frozen=True)
class Cell:
    """Where a number comes from in dalib's results: a metric of a method, per seed, in one
    scenario or averaged over several (``scenario = [...]``: the mean over the listed
    scenarios, seed by seed)."""

    scenarios: tuple[str, ...]
    method: str
    metric: str


@dataclass(frozen=True)
class Value:
    """A published number and the dalib cell it is compared with."""

    cell: Cell
    published: float | None  # None: the paper's value could not be read; dalib's is shown
    spread: float | None
    spread_kind: str  # sd, se or none
    checked: bool  # False: quoted from elsewhere, not checked against the paper
    note: str = ""
    cause: str = ""  # the likely cause should dalib's interval miss the published value
    where: str = field(default="", compare=False)  # the field it is written in


@dataclass(frozen=True)
class Check:
    """A measurement of a likely cause: the entry's reduced size with the check table's keys
    (seeds, budget, model, search, scenario, applied as a size's by :func:`size_variant`),
    run for ``scenarios`` and ``methods`` only (empty: all)."""

    name: str
    what: str
    scenarios: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shape:
    """A published qualitative claim: ``left relation right``, where ``right`` is another
    cell (compared seed by seed) or a number."""

    claim: str
    left: Cell
    relation: str
    right: Cell | float
    note: str = ""


@dataclass(frozen=True)
class Reproduction:
    citation: str
    source: str
    protocol: str
    url: str = ""
    published_seeds: int | None = None
    differences: tuple[tuple[str, str], ...] = ()  # (what differs, expected direction)
    values: tuple[Value, ...] = ()
    shapes: tuple[Shape, ...] = ()
    smoke: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)  # empty: no published size declared
    checks: tuple[Check, ...] = ()
    requires: dict = field(default_factory=dict)  # what every size needs (a benchmark's copy)

    def cells(self) -> list[tuple[str, Cell]]:
        """Every cell the entry reads, with the field it is written in: each value's, each
        claim's left side and its right side where that is a cell."""
        out = [(v.where or f"reproduction.value[{i}]", v.cell)
               for i, v in enumerate(self.values)]
        for i, s in enumerate(self.shapes):
            out.append((f"reproduction.shape[{i}].left", s.left))
            if isinstance(s.right, Cell):
                out.append((f"reproduction.shape[{i}].right", s.right))
        return out


def _text(value, f: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f, f"is {value!r}", expected="a non-empty string")
    return value.strip()


def _cell(table, f: str) -> Cell:
    if not isinstance(table, dict):
        raise InputError(f, f"is {table!r}", expected="a table {scenario, method, metric}")
    reject_unknown(table, CELL_KEYS, what="key", field=f)
    for key in sorted(CELL_KEYS - set(table)):
        raise InputError(f"{f}.{key}", "is missing", expected="scenario, method and metric")
    scenarios = table["scenario"]
    scenarios = scenarios if isinstance(scenarios, list) else [scenarios]
    if not scenarios:
        raise InputError(f"{f}.scenario", "is empty", expected="a scenario name or a list")
    return Cell(tuple(_text(s, f"{f}.scenario") for s in scenarios),
                _text(table["method"], f"{f}.method"), _text(table["metric"], f"{f}.metric"))


def _value(table, f: str) -> Value:
    if not isinstance(table, dict):
        raise InputError(f, f"is {table!r}", expected="a [[reproduction.value]] table")
    reject_unknown(table, VALUE_KEYS, what="key", field=f)
    cell = _cell({k: v for k, v in table.items() if k in CELL_KEYS}, f)
    published = table.get("published")
    if published is not None:
        published = checks.number(published, f"{f}.published")
    spread = table.get("spread")
    if spread is not None:
        spread = checks.number(spread, f"{f}.spread", low=0)
    kind = checks.string(table.get("spread_kind", "none" if spread is None else "sd"),
                         f"{f}.spread_kind", SPREAD_KINDS)
    if (spread is None) != (kind == "none"):
        raise InputError(f"{f}.spread_kind", f"is {kind!r} with spread = {spread!r}",
                         expected="sd or se with a spread, none without")
    if published is None and spread is not None:
        raise InputError(f"{f}.spread", "is set without published", expected="no spread")
    note = table.get("note", "")
    if published is None and not note:
        raise InputError(f"{f}.note", "is missing for a value without published",
                         expected="why the paper's value is not given")
    cause = table.get("cause", "")
    return Value(cell, published, spread, kind,
                 checks.boolean(table.get("checked", True), f"{f}.checked"),
                 _text(note, f"{f}.note") if note else "",
                 _text(cause, f"{f}.cause") if cause else "", where=f)


def _row(table, f: str) -> list[Value]:
    """A ``[[reproduction.row]]``: one value per scenario of its ``published`` table, each
    with the row's method, metric, ``checked``, ``note`` and ``cause``, and its spread from
    the ``spread`` table (by scenario, of kind ``spread_kind``) where the row has one."""
    if not isinstance(table, dict):
        raise InputError(f, f"is {table!r}", expected="a [[reproduction.row]] table")
    reject_unknown(table, ROW_KEYS, what="key", field=f)
    published = table.get("published")
    if not isinstance(published, dict) or not published:
        raise InputError(f"{f}.published", f"is {published!r}", expected="a table of "
                         "published values by scenario, { SCENARIO = VALUE, ... }")
    spread = table.get("spread")
    if spread is not None and (not isinstance(spread, dict) or set(spread) != set(published)):
        raise InputError(f"{f}.spread", f"is {spread!r}", expected="a table of spreads for "
                         "the same scenarios as published")
    shared = {k: v for k, v in table.items() if k not in ("published", "spread")}
    return [_value({**shared, "scenario": name, "published": value,
                    **({"spread": spread[name]} if spread is not None else {})},
                   f"{f}[{name}]") for name, value in published.items()]


def _check(table, f: str) -> Check:
    if not isinstance(table, dict):
        raise InputError(f, f"is {table!r}", expected="a [[reproduction.check]] table")
    reject_unknown(table, CHECK_KEYS, what="key", field=f)
    for key in ("name", "what"):
        if key not in table:
            raise InputError(f"{f}.{key}", "is missing", expected="the check's name and what "
                             "it changes")
    name = _text(table["name"], f"{f}.name")
    if name in SIZES:
        raise InputError(f"{f}.name", f"is {name!r}", expected=f"a name other than the "
                         f"sizes' ({', '.join(SIZES)})")
    _tables(table, ("budget", "scenario", "model", "search"), f)
    lists = {}
    for key in ("scenarios", "methods"):
        items = table.get(key, [])
        if not isinstance(items, list):
            raise InputError(f"{f}.{key}", f"is {items!r}", expected="a list of names")
        lists[key] = tuple(_text(x, f"{f}.{key}") for x in items)
    return Check(name, _text(table["what"], f"{f}.what"), **lists)


def _tables(table: dict, keys: tuple[str, ...], f: str) -> None:
    """The override keys that hold tables (``budget``, ``scenario``, ...) are tables."""
    for key in keys:
        if not isinstance(table.get(key, {}), dict):
            raise InputError(f"{f}.{key}", f"is {table[key]!r}", expected="a table")


def _shape(table, f: str) -> Shape:
    if not isinstance(table, dict):
        raise InputError(f, f"is {table!r}", expected="a [[reproduction.shape]] table")
    reject_unknown(table, SHAPE_KEYS, what="key", field=f)
    for key in ("claim", "left", "relation", "right"):
        if key not in table:
            raise InputError(f"{f}.{key}", "is missing", expected="claim, left, relation, right")
    right = table["right"]
    right = checks.number(right, f"{f}.right") if not isinstance(right, dict) else \
        _cell(right, f"{f}.right")
    note = table.get("note", "")
    return Shape(_text(table["claim"], f"{f}.claim"), _cell(table["left"], f"{f}.left"),
                 checks.string(table["relation"], f"{f}.relation", RELATIONS), right,
                 _text(note, f"{f}.note") if note else "")


def _protocol(value, f: str) -> str:
    """The protocol as published: a text, or a table of its settings (``architecture = ...,
    optimizer = ..., seeds = 10``) shown as ``key: value; ...``."""
    if not isinstance(value, dict):
        return _text(value, f)
    if not value:
        raise InputError(f, "is an empty table", expected="the published settings")
    for key, v in value.items():
        if not isinstance(v, str | int | float | list) or isinstance(v, bool):
            raise InputError(f"{f}.{key}", f"is {v!r}", expected="a text, a number or a list")
    return "; ".join(f"{key.replace('_', ' ')}: "
                     f"{', '.join(map(str, v)) if isinstance(v, list) else v}"
                     for key, v in value.items())


def _differences(value, f: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise InputError(f, f"is {value!r}", expected="a list of {what, direction} tables")
    out = []
    for i, d in enumerate(value):
        g = f"{f}[{i}]"
        if not isinstance(d, dict):
            raise InputError(g, f"is {d!r}", expected="a table {what, direction}")
        reject_unknown(d, DIFFERENCE_KEYS, what="key", field=g)
        out.append((_text(d.get("what"), f"{g}.what"), _text(d.get("direction"),
                                                              f"{g}.direction")))
    return tuple(out)


def check_header(raw, f: str = "reproduction") -> Reproduction:
    """The ``[reproduction]`` table, checked (names of scenarios and methods are checked
    against the suite by :func:`check_cells`)."""
    if not isinstance(raw, dict):
        raise InputError(f, f"is {raw!r}", expected="a [reproduction] table")
    reject_unknown(raw, HEADER_KEYS, what="key", field=f)
    for key in ("citation", "source", "protocol"):
        if key not in raw:
            raise InputError(f"{f}.{key}", "is missing", expected="the citation, the table "
                             "or figure reproduced and the protocol as published")
    values = raw.get("value", [])
    rows = raw.get("row", [])
    shapes = raw.get("shape", [])
    found = raw.get("check", [])
    for key, items in (("value", values), ("row", rows), ("shape", shapes), ("check", found)):
        if not isinstance(items, list):
            raise InputError(f"{f}.{key}", f"is {items!r}", expected=f"[[{f}.{key}]] tables")
    if not values and not rows and not shapes:
        raise InputError(f, "has no [[reproduction.value]], [[reproduction.row]] or "
                         "[[reproduction.shape]]",
                         expected="at least one published value or claim to compare with")
    seeds = raw.get("published_seeds")
    smoke = raw.get("smoke", {})
    if not isinstance(smoke, dict):
        raise InputError(f"{f}.smoke", f"is {smoke!r}", expected="a table of overrides")
    reject_unknown(smoke, SMOKE_KEYS, what="key", field=f"{f}.smoke")
    published = raw.get("published", {})
    if not isinstance(published, dict):
        raise InputError(f"{f}.published", f"is {published!r}", expected="a table of overrides")
    reject_unknown(published, PUBLISHED_KEYS, what="key", field=f"{f}.published")
    for size, table in (("smoke", smoke), ("published", published)):
        _tables(table, ("budget", "scenario", "model", "requires", "search"), f"{f}.{size}")
    _requires(published.get("requires", {}), f"{f}.published.requires")
    requires = raw.get("requires", {})
    if not isinstance(requires, dict):
        raise InputError(f"{f}.requires", f"is {requires!r}", expected="a table")
    _requires(requires, f"{f}.requires")
    for key in ("note", "unavailable"):
        if key in published:
            _text(published[key], f"{f}.published.{key}")
    return Reproduction(
        citation=_text(raw["citation"], f"{f}.citation"),
        source=_text(raw["source"], f"{f}.source"),
        protocol=_protocol(raw["protocol"], f"{f}.protocol"),
        url=_text(raw["url"], f"{f}.url") if "url" in raw else "",
        published_seeds=None if seeds is None else checks.integer(
            seeds, f"{f}.published_seeds", 1, 100_000),
        differences=_differences(raw.get("differences", []), f"{f}.differences"),
        values=tuple(_value(v, f"{f}.value[{i}]") for i, v in enumerate(values))
        + tuple(v for i, r in enumerate(rows) for v in _row(r, f"{f}.row[{i}]")),
        shapes=tuple(_shape(s, f"{f}.shape[{i}]") for i, s in enumerate(shapes)),
        smoke=smoke, published=published, checks=_checks(found, f), requires=requires)


def _checks(tables: list, f: str) -> tuple[Check, ...]:
    out = tuple(_check(c, f"{f}.check[{i}]") for i, c in enumerate(tables))
    names = [c.name for c in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError(f"{f}.check[{i}].name", f"repeats {name!r}",
                             expected="distinct check names (each runs into its own folder)")
    return out


def check_cells(rep: Reproduction, methods: dict[str, set[str]]) -> None:
    """Every cell names a scenario of the suite and a method label it runs there
    (``methods``: scenario name -> method labels; the method ``all`` stands for every
    method, for numbers pooled over them, such as a validator's correlation)."""
    def check(cell: Cell, f: str) -> None:
        for name in cell.scenarios:
            if name not in methods:
                raise InputError(f"{f}.scenario", f"names {name!r}", expected="one of "
                                 f"the suite's scenarios: {', '.join(sorted(methods))}")
            if cell.method != "all" and cell.method not in methods[name]:
                raise InputError(f"{f}.method", f"is {cell.method!r}", expected=f"a method "
                                 f"of scenario {name!r}: {', '.join(sorted(methods[name]))} "
                                 "(or all)")

    for f, cell in rep.cells():
        check(cell, f)
    for i, c in enumerate(rep.checks):
        for name in c.scenarios:
            if name not in methods:
                raise InputError(f"reproduction.check[{i}].scenarios", f"names {name!r}",
                                 expected=f"the suite's scenarios: {', '.join(sorted(methods))}")


def _requires(table: dict, f: str) -> None:
    reject_unknown(table, REQUIRES_KEYS, what="key", field=f)
    if "device" in table:
        checks.string(table["device"], f"{f}.device", ("cpu", "cuda"))
    samples = table.get("samples", {})
    if not isinstance(samples, dict):
        raise InputError(f"{f}.samples", f"is {samples!r}", expected="a table {dataset = count}")
    for name, count in samples.items():
        checks.integer(count, f"{f}.samples.{name}", 1, 10**9)


def missing(rep: Reproduction, data_root: str | None, device: str,
            size: str = "published") -> str | None:
    """What the entry needs at ``size`` that this machine lacks (one sentence), or None: at
    every size what ``[reproduction] requires`` names (a benchmark's copy), at published
    size also what ``[reproduction.published] requires`` names; a device (``--device`` or
    what is here) and datasets with enough samples."""
    if size == "published":
        if not rep.published:
            return "no published size is declared for it"
        if "unavailable" in rep.published:
            return ("its published protocol cannot run in dalib yet "
                    f"({rep.published['unavailable']})")
    needs = dict(rep.requires)
    if size == "published":
        extra = rep.published.get("requires", {})
        needs = {**needs, **extra, "samples": {**needs.get("samples", {}),
                                               **extra.get("samples", {})}}
    return _lacking(needs, data_root, device)


def _lacking(needs: dict, data_root: str | None, device: str) -> str | None:
    """Every need of ``needs`` this machine lacks, in one sentence (None: nothing)."""
    import torch

    from scenarios.datasets import DATASETS, data_roots

    lacking = []
    if needs.get("device") == "cuda" and not (device.startswith("cuda") or (
            device == "auto" and torch.cuda.is_available())):
        lacking.append("a CUDA device (this run has none)")
    for name, count in needs.get("samples", {}).items():
        loader = DATASETS.get(name)
        if loader is None:
            lacking.append(f"the dataset {name!r}, which this dalib cannot read (see dalib "
                           "list datasets)")
            continue
        verify = getattr(loader, "verify", None)  # a benchmark: its copy, nothing decoded
        try:
            found = sum(verify(data_root).values()) if verify else len(loader(data_root))
        except InputError as exc:
            found, where = 0, exc.problem
        else:
            where = f"found {found:,}"
        if found < count:
            searched = "" if "searched" in where else \
                f"; searched {', '.join(str(r) for r in data_roots(data_root))}"
            lacking.append(f"{name!r} with {count:,} samples ({where}{searched}: put the "
                           "dataset's complete files there, in the layout `dalib list` names)")
    return "it needs " + "; and ".join(lacking) if lacking else None


def size_variant(raw: dict, size: str, check: str | None = None) -> dict:
    """The suite's tables at ``size``: ``reduced`` as written; ``smoke`` or ``published``
    with that table's ``seeds``, its ``budget`` over the suite's and every scenario's (epochs
    and steps replace each other), its ``search`` over the suite's, its ``model`` over the
    suite's (in place of it when it names an ``arch``), and its ``scenario`` keys set on
    every scenario table that has them (a key naming a scenario holds keys for that scenario
    alone). ``check`` names a ``[[reproduction.check]]`` whose keys apply first, the same
    way."""
    if check is not None:
        tables = [c for c in (raw.get("reproduction") or {}).get("check", [])
                  if isinstance(c, dict) and c.get("name") == check]
        if not tables:
            raise InputError("reproduction.check", f"has no check named {check!r}",
                             expected="the name of one of the entry's checks")
        raw = _overlay(raw, tables[0])
    if size == "reduced":
        return raw
    return _overlay(raw, (raw.get("reproduction") or {}).get(size) or {})


def _overlay(raw: dict, over: dict) -> dict:
    out = copy.deepcopy(raw)
    if "seeds" in over:
        out["seeds"] = over["seeds"]
    if over.get("search"):
        out["search"] = {**out.get("search", {}), **over["search"]}
    if over.get("model"):  # another backbone's keys do not carry over to a new arch
        own = {} if "arch" in over["model"] else out.get("model", {})
        out["model"] = {**own, **over["model"]}
    budget = over.get("budget") or {}

    def shrink(own: dict) -> dict:
        if {"epochs", "steps"} & set(budget):
            own = {k: v for k, v in own.items() if k not in ("epochs", "steps")}
        return {**own, **budget}

    if budget:
        out["budget"] = shrink(out.get("budget", {}))
    for table in out.get("scenario", []):
        if isinstance(table, dict):
            if budget and isinstance(table.get("budget"), dict):
                table["budget"] = shrink(table["budget"])
            for key, value in (over.get("scenario") or {}).items():
                if key == table.get("name") and isinstance(value, dict):
                    table.update(value)  # keys for this scenario only
                elif key in table:
                    table[key] = value
    return out


def entries() -> dict[str, Path]:
    """The built-in ledger entries by name."""
    return {p.stem: p for p in sorted(ENTRIES_DIR.glob("*.toml"))}

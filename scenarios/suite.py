"""Suite files (TOML): load, validate every key, and build each scenario's data for a seed.

A suite is data, never code. Unknown keys are errors naming the file and the field. Method
names and hyperparameters are checked by ``dalib`` (this package knows no method).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from scenarios import checks, formats, recipes, reproduction, testtime
from scenarios.datasets import dataset_files, dataset_fingerprint, dataset_loader, load_dataset
from scenarios.domain import LAYOUTS, Domain
from scenarios.errors import InputError, reject_unknown
from scenarios.multidomain import LODO, TARGET_DATA, leave_one_out, pool, table_name
from scenarios.regression import require_classes
from scenarios.shifts import SHIFTS, apply_shifts, validate_shift
from scenarios.standardize import MODES as STANDARDIZE_MODES
from scenarios.standardize import (
    standardize_stream,
    standardize_transfer,
    standardized,
    statistics,
)
from scenarios.stream import PROTOCOLS, STREAMS, Stream, build_stream
from scenarios.transfer import TransferScenario, build_transfer

BUILTIN_DIR = Path(__file__).parent / "suites"

SUITE_KEYS = {"name", "description", "seeds", "device", "budget", "model", "optim", "recipe",
              "methods", "scenario", "plugins", "search", "reproduction", "keep_models"}
BUDGET_KEYS = {"epochs", "steps", "batch_size", "checkpoints", "log_every"}
MAX_SEEDS = 10_000
MAX_TASKS = 100  # each task of a permuted or rotated stream is a copy of the data
SEED_LIMIT = 2**32
# sane upper bounds: a typo (1e9 epochs) is an error, not a run that never ends
BUDGET_LIMITS = {"epochs": 100_000, "steps": 100_000_000, "batch_size": 1_000_000,
                 "checkpoints": 10_000, "log_every": 100_000_000}
NPZ_KEYS = {"npz", "shifts", "layout", "domain"}
SELECTION_CRITERIA = ("dev", "source-val", "snd", "entropy", "im", "bnm", "iwcv", "last")
# the checkpoint criterion of transfer runs unless a suite says: BNM had the lowest regret and
# the fewest catastrophic picks over 624 runs of 13 scenarios (benchmarks/validator_study.py)
DEFAULT_SELECTION = "bnm"
COMMON_KEYS = {"name", "kind", "methods", "budget", "model", "optim", "search", "recipe"}
DATA_KEYS = {"standardize"}  # options of how a scenario's inputs are prepared
OPEN_SET_SELECTION = "dev"  # measured on openset-digits: the lowest regret in H-score
# the criteria defined for continuous targets (the others read class probabilities), and the
# default among them (measured on regression-digits: see the regression guide)
REGRESSION_CRITERIA = ("source-val", "dev", "iwcv", "last")
REGRESSION_SELECTION = "source-val"
TRANSFER_KEYS = COMMON_KEYS | DATA_KEYS | {"source", "target", "k", "source_test_fraction",
                                           "target_test_fraction", "source_val_fraction",
                                           "selection", "target_data", "domains",
                                           "test_domains", "leave_one_source_out",
                                           "open_set", "regression"}
# set by a leave-one-domain-out expansion only
FAMILY_KEYS = {"family", "held_out", "validation_domains", "validation_domain",
               "without_source"}
KINDS = ("transfer", "stream", "test-time")
STREAM_KEYS = COMMON_KEYS | DATA_KEYS | {"data", "domains", "stream", "protocol", "tasks",
                                         "classes", "angles", "test_fraction", "val_fraction",
                                         "outputs", "online", "blurry", "anytime"}


DISTRIBUTIONS = ("log_uniform", "uniform", "int_uniform", "choice")  # search spaces


def is_space(value) -> bool:
    """Whether a hyperparameter value is a search space: a list, or a one-key table naming a
    distribution (``{ log_uniform = [a, b] }``; see :mod:`dalib.search`)."""
    return isinstance(value, list) or (isinstance(value, dict) and len(value) == 1
                                       and next(iter(value)) in DISTRIBUTIONS)


def spaces(params: dict) -> list[tuple[tuple[str, ...], object]]:
    """``(path, space)`` for every space among the parameters (one level into term tables)."""
    out = []
    for key, value in params.items():
        if is_space(value):
            out.append(((key,), value))
        elif isinstance(value, dict):
            out += [((key, k), v) for k, v in value.items() if is_space(v)]
    return out


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: dict = field(default_factory=dict)
    selection: str | None = None  # the method's own checkpoint criterion (else the scenario's)

    def without_spaces(self) -> MethodSpec:
        """The method with its searched hyperparameters left out: a searched method's
        results carry this one's label (its selected configuration)."""
        fixed = dict(self.params)
        for path, _ in spaces(self.params):
            if len(path) == 1:
                fixed.pop(path[0])
            else:
                fixed[path[0]] = {k: v for k, v in fixed[path[0]].items() if k != path[1]}
                if not fixed[path[0]]:
                    fixed.pop(path[0])
        return MethodSpec(self.name, fixed, self.selection)

    @property
    def label(self) -> str:
        """The name a method has in results: its name, or ``name[key=value,...]`` when tuned
        (or given its own ``selection``)."""
        shown = {**self.params, **({"selection": self.selection} if self.selection else {})}
        if not shown:
            return self.name
        return f"{self.name}[{','.join(f'{k}={v}' for k, v in sorted(shown.items()))}]"


@dataclass(frozen=True)
class ScenarioSpec:
    """One ``[[scenario]]`` table, validated; :meth:`build` makes its data for a seed."""

    name: str
    kind: str
    methods: tuple[MethodSpec, ...]
    budget: dict
    model: dict
    options: dict
    base_dir: Path | None = None
    optim: dict = field(default_factory=dict)  # optimizer settings every method starts from
    # a recipe's optimizer settings (scenarios.recipes): each method takes those it has
    recipe_optim: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)  # [search] settings (checked by dalib.search)
    # the keys of model, optim, budget and search that the [[scenario]] table sets itself
    # (the others come from the suite's top-level tables)
    own: dict = field(default_factory=dict, compare=False)
    data_root: str | None = field(default=None, compare=False)  # --data-root, if given

    def method_params(self, method: MethodSpec) -> dict:
        """A method's hyperparameters over the scenario's ``optim`` defaults."""
        return {**self.optim, **method.params}

    @property
    def standardize(self) -> str:
        """How the inputs are standardised (:mod:`scenarios.standardize`): the scenario's
        ``standardize``, else ``source`` for tables and ``none`` for everything else."""
        kinds = {formats.format_of(s) for s in self.data_specs()}
        mode = self.options.get("standardize", "source" if "table" in kinds else "none")
        if "text" in kinds and mode != "none":
            raise InputError(f"{self.name}.standardize", f"is {mode!r} for text", expected=
                             "'none': token ids are not measurements to standardise")
        return mode

    @property
    def sources(self) -> list[dict]:
        """A transfer scenario's source tables (several: a multi-source scenario)."""
        source = self.options["source"]
        return list(source) if isinstance(source, list) else [source]

    @property
    def default_selection(self) -> str:
        """The checkpoint criterion of this scenario's runs unless it or a method says:
        training-domain validation (``source-val``) where no target data is seen (domain
        generalization), ``dev`` in an open-set scenario (the confidence criteria, BNM among
        them, favour checkpoints that reject nothing: see the open-set guide), else dalib's
        default."""
        if self.options.get("target_data") == "none":
            return "source-val"
        if self.options.get("open_set"):
            return OPEN_SET_SELECTION
        if self.options.get("regression"):
            return REGRESSION_SELECTION
        return DEFAULT_SELECTION

    def data_specs(self) -> list[dict]:
        """The scenario's data tables (source and target, or a stream's data or domains)."""
        o = self.options
        if self.kind == "test-time":
            return [o["source"], *([o["target"]] if "target" in o else []),
                    *o.get("domains", [])]
        if self.kind == "transfer":
            return [*self.sources, o["target"]]
        return list(o["domains"]) if "domains" in o else [o["data"]]

    @cached_property
    def fingerprints(self) -> dict[str, str]:
        """Digests of what the scenario reads whose contents determine its numbers: data
        files and folders (:func:`~scenarios.formats.fingerprint`) and a weights file. Taken
        once per loaded suite: every run of the scenario shares them."""
        out: dict[str, str] = {}
        for spec in self.data_specs():
            out.update(formats.fingerprint(spec, self.base_dir))
            out.update(dataset_fingerprint(spec, self.data_root))  # a benchmark's copy
            for path in dataset_files(spec, self.data_root):  # a built-in dataset's files
                out[f"{spec['dataset']}/{path.name}"] = formats.file_digest(path)
        for key in ("weights", "init"):  # a weights file, a kept model to start from
            path = self.model.get(key)
            if isinstance(path, str) and Path(path).expanduser().is_file():
                out[path] = formats.file_digest(Path(path).expanduser())
        return out

    def _build_test_time(self, seed: int, data_root: str | None) -> testtime.TestTimeScenario:
        """A test-time scenario: the offline part as a transfer scenario from the source to
        the target (or to the source's own held-out half), and the stream's domains
        standardised with the offline source's statistics when the scenario says so."""
        o = self.options
        source = _load(o["source"], data_root, self.base_dir, "source")
        target_spec = o.get("target", o["source"])
        target = formats.align_columns(source, _load(target_spec, data_root, self.base_dir,
                                                     "target"), "target")
        offline = build_transfer(
            self.name, source, target, seed=seed, source_shifts=o["source"].get("shifts", []),
            target_shifts=target_spec.get("shifts", []) if "target" in o else [],
            disjoint=_data_key(o["source"]) == _data_key(target_spec),
            source_test_fraction=o.get("source_test_fraction", 0.2),
            target_test_fraction=o.get("target_test_fraction", 0.3),
            source_val_fraction=o.get("source_val_fraction", 0.1))

        def load(spec: dict, field: str) -> Domain:
            return formats.align_columns(source, _load(spec, data_root, self.base_dir, field),
                                         field)

        domains = testtime.stream_domains(o, offline, load, seed)
        if self.standardize == "source":
            stats = statistics(offline.source.x)
            domains = [(n, standardized(d, stats)) for n, d in domains]
        return testtime.build_test_time(
            self.name, standardize_transfer(offline, self.standardize), domains, seed=seed,
            batch_size=o.get("test_batch_size", 64), order=o.get("order", "fixed"),
            cycles=o.get("cycles", 1), labels=o.get("labels", "iid"),
            mode=o.get("mode", "continual"), epochs=o.get("adapt_epochs", 1))

    def _source(self, seed: int, data_root: str | None) -> tuple[Domain, list[dict]]:
        """The source domain and the shifts still to apply to it: one table as read, or
        several pooled (:func:`scenarios.multidomain.pool`), each shifted first."""
        source = self.options["source"]
        if not isinstance(source, list):
            return _load(source, data_root, self.base_dir, "source"), source.get("shifts", [])
        rng = np.random.default_rng([seed, 1])
        domains = []
        for j, spec in enumerate(source):
            domain = _load(spec, data_root, self.base_dir, f"source[{j}]")
            if domains:
                domain = formats.align_columns(domains[0], domain, f"source[{j}]")
            try:
                domains.append(apply_shifts(domain, spec.get("shifts", []), rng))
            except InputError as exc:
                raise exc.within("", f"source[{j}]") from None
        names = [table_name(spec, j) for j, spec in enumerate(source)]
        return pool(domains, names, f"{self.name}/sources"), []

    def build(self, seed: int, data_root: str | None = None
              ) -> TransferScenario | Stream | testtime.TestTimeScenario:
        o = self.options
        if self.kind == "test-time":
            return self._build_test_time(seed, data_root)
        if self.kind == "transfer":
            source, source_shifts = self._source(seed, data_root)
            target = formats.align_columns(
                source, _load(o["target"], data_root, self.base_dir, "target"), "target")
            same = _data_key(o["source"]) == _data_key(o["target"]) \
                if not isinstance(o["source"], list) else False
            return standardize_transfer(replace(build_transfer(
                self.name, source, target, seed=seed, k=o.get("k", 0),
                source_shifts=source_shifts,
                target_shifts=o["target"].get("shifts", []), disjoint=same,
                source_test_fraction=o.get("source_test_fraction", 0.2),
                target_test_fraction=o.get("target_test_fraction", 0.3),
                source_val_fraction=o.get("source_val_fraction", 0.1),
                open_set=o.get("open_set", False), regression=o.get("regression", False)),
                target_data=o.get("target_data", "unlabelled")), self.standardize)
        specs = o["domains"] if "domains" in o else [o["data"]]
        roles = [f"domains[{i}]" for i in range(len(specs))] if "domains" in o else ["data"]
        domains = [_load(s, data_root, self.base_dir, r) for s, r in zip(specs, roles, strict=True)]
        domains = [formats.align_columns(domains[0], d, r) for d, r in zip(domains, roles,
                                                                            strict=True)]
        for d, r in zip(domains, roles, strict=True):
            require_classes(d, r)
        return standardize_stream(build_stream(
            self.name, o.get("stream", "domains" if "domains" in o else "split"), domains,
            seed=seed, protocol=o.get("protocol"), tasks=o.get("tasks"),
            classes=o.get("classes"), angles=o.get("angles"),
            shifts=[s.get("shifts", []) for s in specs],
            test_fraction=o.get("test_fraction", 0.2), val_fraction=o.get("val_fraction", 0.0),
            outputs=o.get("outputs", "seen"), online=o.get("online", False),
            blurry=o.get("blurry", 0.0), anytime=o.get("anytime", 4)), self.standardize)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    seeds: tuple[int, ...]
    device: str
    scenarios: tuple[ScenarioSpec, ...]
    path: str
    plugins: tuple[str, ...] = ()  # as written: files relative to the suite's folder, or modules
    reproduction: reproduction.Reproduction | None = None  # a ledger entry's header
    keep_models: bool = False  # each run's trained model kept in OUT/models/ (dalib.kept)

    def locate(self, exc: InputError, index: int, method: MethodSpec | None = None
               ) -> InputError:
        """An error found in scenario ``index`` (within ``methods[j]`` for ``method``),
        located where its value is written: the method's table, the scenario's own
        ``model``/``optim``/``budget``/``search`` table, or the suite's top-level one that
        the scenario inherits."""
        sc = self.scenarios[index]
        field_name = exc.field
        head, _, rest = field_name.partition(".")
        if method is not None and head.startswith("methods[") and rest:
            key = rest.split(".")[0].split("[")[0]
            if key not in method.params and key in sc.optim:  # an [optim] default
                field_name = f"optim.{rest}"
                head, _, rest = field_name.partition(".")
        key = rest.split(".")[0].split("[")[0]
        if head in ("model", "optim", "budget", "search") and key and key not in sc.own.get(
                head, {key}):
            return InputError(field_name, exc.problem, expected=exc.expected,
                              source=exc.source or self.path)
        moved = InputError(field_name, exc.problem, expected=exc.expected, source=exc.source)
        return moved.within(self.path, f"scenario[{index}]")


def _check_plugins(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError("plugins", f"is {value!r}", expected="a list of Python files (relative "
                         "to the suite) or importable module names")
    return tuple(value)


MAX_DEPTH = 32  # tables and arrays nested in a suite file (its deepest has 4)


def nesting(value) -> int:
    """How deeply tables and arrays nest in ``value``, counted without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            todo += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            todo += [(v, depth + 1) for v in item]
    return deepest


def read_toml(path: Path) -> dict:
    """A suite file's tables, or an input error naming the file: unreadable, not UTF-8, not
    TOML, or nested deeper than :data:`MAX_DEPTH`."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError("toml", f"malformed ({exc})", expected="valid TOML",
                         source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError("toml", f"is not UTF-8 text (byte {exc.start})",
                         expected="a UTF-8 TOML file", source=str(path)) from None
    except RecursionError:
        raise InputError("toml", "is nested too deeply", expected="a suite file (tables "
                         "nested a few levels)", source=str(path)) from None
    except OSError as exc:
        raise InputError("suite", f"cannot be read ({exc.strerror})",
                         expected="a readable .toml file", source=str(path)) from None
    if nesting(raw) > MAX_DEPTH:
        raise InputError("toml", f"nests tables or arrays more than {MAX_DEPTH} levels deep",
                         expected="a suite file (tables nested a few levels)",
                         source=str(path))
    return raw


def suite_plugins(name_or_path: str) -> tuple[str, ...]:
    """The ``plugins`` a suite names (read before the rest of the suite is checked, since its
    datasets and methods may come from them)."""
    path = resolve_suite_path(name_or_path)
    try:
        raw = read_toml(path)
    except InputError:
        return ()  # load_suite names the problem
    try:
        return _check_plugins(raw.get("plugins", []))
    except InputError as exc:
        raise exc.within(str(path)) from None


def _data_key(spec: dict) -> str:
    return json.dumps({k: v for k, v in spec.items() if k != "shifts"}, sort_keys=True)


@lru_cache(maxsize=16)
def _load_cached(key: str, data_root: str | None, base_dir: str | None, files: str) -> Domain:
    return load_dataset(json.loads(key), data_root=data_root,
                        base_dir=Path(base_dir) if base_dir else None)


def _load(spec: dict, data_root: str | None, base_dir: Path | None, role: str) -> Domain:
    """A data table's domain, cached per process by the table and the files its dataset
    reads as found now (path, size, modification time: other files are loaded anew)."""
    try:
        files = formats.cache_key([f for f in dataset_files(spec, data_root) if f.is_file()],
                                  None, 0)
        return _load_cached(_data_key(spec), data_root, str(base_dir) if base_dir else None,
                            files)
    except InputError as exc:
        raise exc.within("", role) from None


def _check_type(value, types, field_name: str, expected: str) -> None:
    if not isinstance(value, types) or isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)):
        raise InputError(field_name, f"is {value!r}", expected=expected)


def _check_data(spec, field_name: str, regression: bool = False) -> None:
    _check_type(spec, dict, field_name, "a table like {dataset = 'mnist'}, {npz = 'file.npz'}, "
                "{folder = 'images/'}, {list = 'a.txt'} or {table = 'data.csv', label = 'y'}")
    kind = formats.format_of(spec)
    if kind is not None:
        reject_unknown(spec, formats.FORMAT_KEYS[kind] | {"shifts"}, what=f"key of a {kind} "
                       "table", field=field_name)
        try:
            formats.check_spec(spec, kind)
        except InputError as exc:
            raise exc.within("", field_name) from None
    elif "npz" in spec:
        reject_unknown(spec, NPZ_KEYS, what="key", field=field_name)
        _check_type(spec["npz"], str, f"{field_name}.npz", "a path to an .npz file")
        if "layout" in spec:
            checks.string(spec["layout"], f"{field_name}.layout", LAYOUTS)
        if "domain" in spec:
            _check_type(spec["domain"], (int, str), f"{field_name}.domain",
                        "a value of the file's domain array (an integer or a name)")
    elif "dataset" in spec:
        try:
            dataset_loader(spec)
        except InputError as exc:
            raise exc.within("", field_name) from None
    else:
        raise InputError(field_name, "names no data", expected="dataset = NAME, npz = PATH, "
                         "folder = PATH, list = PATH or table = PATH")
    shifts = spec.get("shifts", [])
    _check_type(shifts, list, f"{field_name}.shifts", "a list of shift tables")
    for i, s in enumerate(shifts):
        try:
            shift, _ = validate_shift(s)
        except InputError as exc:
            raise exc.within("", f"{field_name}.shifts[{i}]") from None
        if shift.labels == ("continuous" if not regression else "classes"):
            raise InputError(f"{field_name}.shifts[{i}]", f"{s['name']!r} "
                             + ("makes continuous targets outside a regression scenario"
                                if not regression else "needs class labels, which a "
                                "regression scenario does not have"),
                             expected="regression = true on a transfer scenario"
                             if not regression else "shifts of the inputs only")


def _check_budget(budget, field_name: str) -> dict:
    _check_type(budget, dict, field_name, "a table with epochs or steps, and batch_size")
    reject_unknown(budget, BUDGET_KEYS, what="key", field=field_name)
    for key in sorted(BUDGET_KEYS & set(budget)):
        checks.number(budget[key], f"{field_name}.{key}", low=0, open_low=True,
                      high=BUDGET_LIMITS[key], integer=key != "epochs")
    if "epochs" in budget and "steps" in budget:
        raise InputError(field_name, "gives both epochs and steps", expected="one of them")
    return budget


def _check_methods(methods, field_name: str) -> tuple[MethodSpec, ...]:
    _check_type(methods, list, field_name, "a list of method names or {name = ..., ...} tables")
    if not methods:
        raise InputError(field_name, "is empty", expected="at least one method")
    out = []
    for i, m in enumerate(methods):
        if isinstance(m, str):
            out.append(MethodSpec(m))
        elif isinstance(m, dict) and isinstance(m.get("name"), str):
            selection = m.get("selection")
            if selection is not None:
                checks.string(selection, f"{field_name}[{i}].selection", SELECTION_CRITERIA)
            out.append(MethodSpec(m["name"], {k: v for k, v in m.items()
                                              if k not in ("name", "selection")}, selection))
        else:
            raise InputError(f"{field_name}[{i}]", f"is {m!r}",
                             expected="a method name or a table with a name")
    labels = [m.label for m in out]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise InputError(field_name, f"lists {sorted(dup)[0]!r} twice", expected="distinct methods")
    return tuple(out)


def _check_fraction(options: dict, key: str, field_name: str) -> None:
    if key in options:
        value = options[key]
        _check_type(value, (int, float), f"{field_name}.{key}", "a fraction in (0, 1)")
        if not 0 < value < 1:
            raise InputError(f"{field_name}.{key}", f"is {value}", expected="a fraction in (0, 1)")


def _check_stream_options(table: dict, f: str) -> None:
    if "protocol" in table:
        checks.string(table["protocol"], f"{f}.protocol", PROTOCOLS)
    if "outputs" in table:
        checks.string(table["outputs"], f"{f}.outputs", ("seen", "all"))
    _check_type(table.get("online", False), bool, f"{f}.online",
                "true or false (true: one task-free pass over the stream)")
    for key, value, expected in (
            ("blurry", table.get("blurry", 0), "a percentage in [0, 100) of each task's "
             "samples moved to other tasks"),
            ("anytime", table.get("anytime", 1), "an integer in 1..1000 (evaluations per task)")):
        if key in table and not table.get("online"):
            raise InputError(f"{f}.{key}", f"is {value!r} in a stream with task boundaries",
                             expected=f"online = true (a task-free stream), or no {key}")
        if key == "blurry":
            checks.number(value, f"{f}.blurry", low=0, high=99.999, what=expected)
        else:
            checks.integer(value, f"{f}.anytime", 1, 1000, what=expected)
    if "tasks" in table:
        checks.integer(table["tasks"], f"{f}.tasks", 2, MAX_TASKS,
                       "an integer >= 2 (and at most the number of classes of a split stream)")
    if "angles" in table:
        checks.number_list(table["angles"], f"{f}.angles", min_length=2, max_length=MAX_TASKS)
    if "classes" in table:
        groups = table["classes"]
        if not isinstance(groups, list) or len(groups) < 2:
            raise InputError(f"{f}.classes", f"is {groups!r}",
                             expected="a list of two or more lists of class labels")
        for i, g in enumerate(groups):
            checks.number_list(g, f"{f}.classes[{i}]", low=0, integer=True)


def _check_scenario(table, i: int, base_dir: Path | None, budget: dict, model: dict,
                    optim: dict, search: dict, suite_recipe: recipes.Recipe | None = None,
                    suite_methods: tuple[MethodSpec, ...] | None = None) -> ScenarioSpec:
    f = f"scenario[{i}]"
    _check_type(table, dict, f, "a [[scenario]] table")
    kind = table.get("kind")
    if kind not in KINDS:
        raise InputError(f"{f}.kind", f"is {kind!r}",
                         expected=" or ".join(repr(k) for k in KINDS))
    keys = {"transfer": TRANSFER_KEYS | FAMILY_KEYS, "stream": STREAM_KEYS,
            "test-time": COMMON_KEYS | DATA_KEYS | testtime.KEYS}[kind]
    reject_unknown(table, keys, what="key", field=f)
    name = table.get("name", f"{kind}-{i}")
    _check_type(name, str, f"{f}.name", "a string")
    if not name.strip():
        raise InputError(f"{f}.name", "is empty", expected="a scenario name")
    if kind == "test-time":
        testtime.check_options(table, f)
        _check_data(table["source"], f"{f}.source")
        if "target" in table:
            _check_data(table["target"], f"{f}.target")
        for j, spec in enumerate(table.get("domains", [])):
            _check_data(spec, f"{f}.domains[{j}]")
        for key in ("source_test_fraction", "target_test_fraction", "source_val_fraction"):
            _check_fraction(table, key, f)
    elif kind == "transfer":
        for role in ("source", "target"):
            if role not in table:
                raise InputError(f"{f}.{role}", "missing", expected="a data table")
        sources = table["source"] if isinstance(table["source"], list) else [table["source"]]
        if isinstance(table["source"], list) and not sources:
            raise InputError(f"{f}.source", "is an empty list", expected="one or more data "
                             "tables (several: a multi-source scenario)")
        regression = table.get("regression", False)
        _check_type(regression, bool, f"{f}.regression", "true or false (true: the labels "
                    "are continuous targets)")
        for j, spec in enumerate(sources):
            where = f"{f}.source[{j}]" if isinstance(table["source"], list) else f"{f}.source"
            _check_data(spec, where, regression)
            if isinstance(table["source"], list) and any(
                    SHIFTS[s["name"]].train_only for s in spec.get("shifts", [])):
                raise InputError(f"{where}.shifts", "holds a training-only shift (label "
                                 "noise) in a list of sources", expected="data shifts only, "
                                 "or label noise on a single source")
        _check_data(table["target"], f"{f}.target", regression)
        target_data = table.get("target_data", "unlabelled")
        checks.string(target_data, f"{f}.target_data", TARGET_DATA)
        k = checks.integer(table.get("k", 0), f"{f}.k", 0, 1_000_000,
                           "an integer >= 0 (labelled target samples per class)")
        if target_data == "none" and k:
            raise InputError(f"{f}.k", f"is {k} but target_data is 'none' (domain "
                             "generalization sees no target sample)", expected="k = 0, or "
                             "target_data = 'unlabelled'")
        _check_type(table.get("open_set", False), bool, f"{f}.open_set",
                    "true or false (true: the target may hold classes the source lacks)")
        if table.get("open_set") and k:
            raise InputError(f"{f}.k", f"is {k} in an open-set scenario", expected="k = 0 "
                             "(labelled target samples per class are not defined for the "
                             "unknown class)")
        if regression and table.get("open_set"):
            raise InputError(f"{f}.open_set", "is true in a regression scenario",
                             expected="open_set = false (unknown classes need classes)")
        for key in ("source_test_fraction", "target_test_fraction", "source_val_fraction"):
            _check_fraction(table, key, f)
        if regression and table.get("selection", REGRESSION_SELECTION) not in \
                REGRESSION_CRITERIA:
            raise InputError(f"{f}.selection", f"is {table['selection']!r} in a regression "
                             "scenario", expected=f"one of {', '.join(REGRESSION_CRITERIA)} "
                             "(the other criteria read class probabilities)")
        if table.get("selection", DEFAULT_SELECTION) not in SELECTION_CRITERIA:
            raise InputError(f"{f}.selection", f"is {table['selection']!r}",
                             expected=f"one of {', '.join(SELECTION_CRITERIA)} ({LODO!r}: "
                             "on a domains = ... family only)")
    else:
        if ("data" in table) == ("domains" in table):
            raise InputError(f, "needs exactly one of data and domains",
                             expected="data = {...} or domains = [{...}, ...]")
        if "data" in table:
            _check_data(table["data"], f"{f}.data")
        else:
            _check_type(table["domains"], list, f"{f}.domains", "a list of data tables")
            for j, d in enumerate(table["domains"]):
                _check_data(d, f"{f}.domains[{j}]")
        stream = table.get("stream", "domains" if "domains" in table else "split")
        if stream not in STREAMS:
            raise InputError(f"{f}.stream", f"is {stream!r}", expected=f"one of {', '.join(STREAMS)}")
        _check_fraction(table, "test_fraction", f)
        _check_fraction(table, "val_fraction", f)
        _check_stream_options(table, f)
    if "standardize" in table:
        checks.string(table["standardize"], f"{f}.standardize", STANDARDIZE_MODES)
    if "methods" in table:
        methods = _check_methods(table["methods"], f"{f}.methods")
    elif suite_methods is not None:  # the suite's top-level list
        methods = suite_methods
    else:
        raise InputError(f"{f}.methods", "missing", expected="a list of methods (in the "
                         "scenario, or at the suite's top level for every scenario)")
    own_budget = _check_budget(table.get("budget", {}), f"{f}.budget")
    own_model = table.get("model", {})
    _check_type(own_model, dict, f"{f}.model", "a table of model options")
    own_optim = table.get("optim", {})
    _check_type(own_optim, dict, f"{f}.optim", "a table of optimizer settings")
    own_search = table.get("search", {})
    _check_type(own_search, dict, f"{f}.search", "a table of search settings")
    options = {k: v for k, v in table.items() if k not in COMMON_KEYS}
    chosen = recipes.recipe(table["recipe"], f"{f}.recipe") if "recipe" in table else \
        suite_recipe
    model = {**model, **own_model}
    if chosen is not None:
        budget = {**chosen.budget, **budget}
        model = {**recipes.model_defaults(chosen, model), **model}
    return ScenarioSpec(name=name, kind=kind, methods=methods, budget={**budget, **own_budget},
                        model=model, options=options, base_dir=base_dir,
                        optim={**optim, **own_optim},
                        recipe_optim=dict(chosen.optim) if chosen is not None else {},
                        search={**search, **own_search},
                        own={"model": set(own_model), "optim": set(own_optim),
                             "budget": set(own_budget), "search": set(own_search)})


def resolve_suite_path(name_or_path: str) -> Path:
    """A path as given, or the built-in suite of that name."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise InputError("suite", f"file {name_or_path!r} does not exist",
                             expected="a suite .toml file or a built-in suite name", source=None)
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.toml"
    if not builtin.is_file():
        names = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))
        raise InputError("suite", f"no file or built-in suite named {name_or_path!r}",
                         expected=f"a .toml path or one of {names}")
    return builtin


def builtin_suites(folder: Path = BUILTIN_DIR) -> dict[str, str]:
    """Built-in suite names (or those of another folder's suites) and their descriptions."""
    out = {}
    for p in sorted(folder.glob("*.toml")):
        with open(p, "rb") as fh:
            out[p.stem] = tomllib.load(fh).get("description", "")
    return out


def load_suite(name_or_path: str, data_root: str | None = None,
               size: str = "reduced", check: str | None = None) -> Suite:
    """Read and validate a suite; errors name the file and the field. ``data_root``
    (``--data-root``) is where its built-in datasets' files are looked for first: their
    contents are part of each run's identity. ``size``: a reproduction entry's ``smoke`` or
    ``published`` size (:func:`scenarios.reproduction.size_variant`); ``reduced`` is the
    suite as written. ``check``: one of the entry's checks, applied before the size."""
    path = resolve_suite_path(name_or_path)
    raw = read_toml(path)
    try:
        if size != "reduced" or check is not None:
            if not isinstance(raw.get("reproduction"), dict):
                raise InputError("reproduction", "is missing", expected="a [reproduction] "
                                 "table: only a reproduction entry has sizes and checks")
            raw = reproduction.size_variant(raw, size, check)
        return parse_suite(raw, path, data_root)
    except InputError as exc:
        raise exc.within(str(path)) from None


def _expand_families(tables: list, base_dir: Path) -> list[tuple[int, dict]]:
    """The scenario tables with every leave-one-domain-out family (``domains``) expanded into
    one table per held-out domain (:func:`scenarios.multidomain.leave_one_out`), each with the
    index of the table it comes from (errors name that one)."""
    out = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            out.append((i, table))
            continue
        for key in sorted(FAMILY_KEYS & set(table)):
            raise InputError(f"scenario[{i}].{key}", "is set", expected="no such key: a "
                             "domains family sets it for each scenario it expands into")
        if table.get("kind") == "transfer" and "domains" in table:
            for role in ("source", "target"):
                if role in table:
                    raise InputError(f"scenario[{i}].{role}", "is set beside domains",
                                     expected="domains (a leave-one-domain-out family) or "
                                     "source and target")
            out += [(i, t) for t in leave_one_out(table, base_dir, f"scenario[{i}]")]
        elif table.get("kind") == "transfer" and {"test_domains", "leave_one_source_out"
                                                   } & set(table):
            key = sorted({"test_domains", "leave_one_source_out"} & set(table))[0]
            raise InputError(f"scenario[{i}].{key}", "is set without domains",
                             expected="domains = [...] with it")
        else:
            out.append((i, table))
    return out


def parse_suite(raw: dict, path: Path, data_root: str | None = None) -> Suite:
    """A suite from its TOML tables (or the same dict made in Python: any sequence stands
    for a list)."""
    raw = checks.plain(raw)
    reject_unknown(raw, SUITE_KEYS, what="key", field="")
    seeds = raw.get("seeds", 3)
    expected = (f"a count in 1..{MAX_SEEDS} or a list of distinct integers in "
                f"[0, {SEED_LIMIT})")
    if not isinstance(seeds, list):
        seeds = list(range(checks.integer(seeds, "seeds", 1, MAX_SEEDS, expected)))
    if not seeds or len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds):
        raise InputError("seeds", f"is {seeds!r}", expected=expected)
    for i, s in enumerate(seeds):
        checks.integer(s, f"seeds[{i}]", 0, SEED_LIMIT - 1, expected)
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", device):
        raise InputError("device", f"is {device!r}", expected="auto, cpu, cuda or cuda:N")
    budget = _check_budget(raw.get("budget", {}), "budget")
    model = raw.get("model", {})
    _check_type(model, dict, "model", "a table of model options")
    optim = raw.get("optim", {})
    _check_type(optim, dict, "optim", "a table of optimizer settings")
    tables = raw.get("scenario")
    if not isinstance(tables, list) or not tables:
        raise InputError("scenario", "missing or empty", expected="one or more [[scenario]] tables")
    base_dir = path.parent.resolve()
    search = raw.get("search", {})
    _check_type(search, dict, "search", "a table of search settings")
    suite_recipe = recipes.recipe(raw["recipe"], "recipe") if "recipe" in raw else None
    methods = _check_methods(raw["methods"], "methods") if "methods" in raw else None
    scenarios = tuple(replace(_check_scenario(t, i, base_dir, budget, model, optim, search,
                                              suite_recipe, methods),
                              data_root=data_root) for i, t in _expand_families(tables, base_dir))
    names = [s.name for s in scenarios]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise InputError("scenario.name", f"{sorted(dup)[0]!r} is used twice",
                         expected="distinct scenario names")
    name = raw.get("name", path.stem)
    _check_type(name, str, "name", "a string")
    if not name.strip():
        raise InputError("name", "is empty", expected="a suite name")
    _check_type(raw.get("description", ""), str, "description", "a string")
    header = None
    if "reproduction" in raw:
        header = reproduction.check_header(raw["reproduction"])
        reproduction.check_cells(header, {s.name: {m.without_spaces().label for m in s.methods}
                                          for s in scenarios})
    return Suite(name=name, description=str(raw.get("description", "")), seeds=tuple(seeds),
                 device=device, scenarios=scenarios, path=str(path),
                 plugins=_check_plugins(raw.get("plugins", [])), reproduction=header,
                 keep_models=checks.boolean(raw.get("keep_models", False), "keep_models"))

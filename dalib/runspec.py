"""A run's specification and identity: one method on one scenario for one seed, and the hash
of everything that determines its numbers."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property

from dalib import __version__, plugins
from dalib.registry import check_method, with_recipe
from scenarios.errors import InputError
from scenarios.multidomain import LODO
from scenarios.suite import MethodSpec, ScenarioSpec, Suite


@dataclass(frozen=True)
class RunSpec:
    suite: str
    scenario: ScenarioSpec
    method: MethodSpec
    seed: int
    order: tuple[int, int, int] = (0, 0, 0)  # (scenario, seed, method) position in the suite
    # a searched method's configuration: group, trial, select, level (not its identity)
    search: dict | None = field(default=None, compare=False)
    # the run whose trained model this one starts from (a test-time scenario's source run)
    init: RunSpec | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        """The kind of the run's method: a test-time scenario's source run trains a
        transfer method on the source; its other runs are test-time methods."""
        if self.scenario.kind == "test-time" and self.init is None:
            return "transfer"
        return self.scenario.kind

    @property
    def saves_model(self) -> bool:
        """Whether other runs start from this run's trained model."""
        return self.scenario.kind == "test-time" and self.init is None

    @property
    def selection(self) -> str:
        """The criterion that picks a transfer run's reported checkpoint: the method's own,
        else the scenario's, else dalib's default."""
        return self.method.selection or self.scenario.options.get(
            "selection", self.scenario.default_selection)

    @property
    def params(self) -> dict:
        """The method's hyperparameters over the scenario's ``optim`` defaults."""
        return with_recipe(self.scenario, self.method.name,
                           self.scenario.method_params(self.method))

    def config(self) -> dict:
        """Everything that determines the run's numbers (its hash is the run's identity): the
        data (with the contents of data and weights files), the resolved budget and model, every
        hyperparameter of the method (defaults included), the seed and dalib's version."""
        sc = self.scenario
        entry = check_method(self.method.name, self.params, self.kind)
        config = {"suite": self.suite, "scenario": sc.name, "kind": sc.kind, "data": sc.options,
                "files": sc.fingerprints,
                "budget": resolved_budget(sc.budget), "model": sc.model,
                "method": self.method.name, "params": entry.resolved(self.params),
                "seed": self.seed, "standardize": sc.standardize, "dalib": __version__}
        if self.method.selection:  # a scenario's selection is among its data options
            config["selection"] = self.method.selection
        if self.init is not None:  # a changed source model changes this run
            config["init_from"] = self.init.config_hash
        used = plugins_used(sc, entry)
        if used:  # the source of every plugin the run uses: an edit re-runs exactly these runs
            config["plugins"] = plugins.digests(used)
        return config

    @cached_property
    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def slug(self) -> str:
        """The run's file-safe name without its configuration hash."""
        return f"{_file_part(self.scenario.name)}-{_file_part(self.method.label)}-s{self.seed}"

    @property
    def run_id(self) -> str:
        return f"{self.slug}-{self.config_hash[:8]}"


def plugins_used(sc: ScenarioSpec, entry) -> set[str]:
    """The plugins a run of ``entry`` on ``sc`` depends on: the method's and its terms', the
    backbone's and the datasets'."""
    used = set(entry.origins())
    arch = sc.model.get("arch")
    if isinstance(arch, str) and arch in plugins.BACKBONE_ORIGINS:
        used.add(plugins.BACKBONE_ORIGINS[arch])
    for spec in sc.data_specs():
        name = spec.get("dataset")
        if isinstance(name, str) and name in plugins.DATASET_ORIGINS:
            used.add(plugins.DATASET_ORIGINS[name])
    return used


def _file_part(text: str, limit: int = 60) -> str:
    """``text`` as a bounded file-name part; a name that had to be changed (characters
    outside ``A-Za-z0-9.+-``, or longer than ``limit``) gets a hash of the original, so two
    names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", text)[:limit]
    if safe != text:
        safe += "~" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return safe


def resolved_budget(budget: dict) -> dict:
    """A scenario's budget with the defaults filled in (batch 64, 10 checkpoints, 10 epochs
    when neither epochs nor steps is given); ``log_every`` (how often losses are logged) is
    not part of it: it changes no number."""
    out = {"batch_size": 64, "checkpoints": 10,
           **{k: v for k, v in budget.items() if k != "log_every"}}
    if "epochs" not in out and "steps" not in out:
        out["epochs"] = 10
    return out


def scenario_methods(sc: ScenarioSpec, field_prefix: str = "methods"
                     ) -> list[tuple[int, MethodSpec, dict | None]]:
    """A scenario's methods with every search space expanded (:mod:`dalib.search`):
    ``(position in the suite's list, configuration, search info or None)``."""
    from dalib.search import configurations

    family = {"validation_domains", "validation_domain"} & set(sc.options)
    if sc.search.get("select") == LODO and not family:
        raise InputError("search.select", f"is {LODO!r} in a scenario that is not part of a "
                         "leave-one-domain-out family", expected="selection = "
                         f"{LODO!r} on the domains = ... family, or another criterion")
    out = []
    for j, m in enumerate(sc.methods):
        try:
            out += [(j, config, info) for config, info in configurations(m, sc.search)]
        except InputError as exc:
            raise exc.within("", f"{field_prefix}[{j}]") from None
    return out


def expand(suite: Suite, seeds: list[int] | None = None, methods: list[str] | None = None,
           scenarios: list[str] | None = None) -> list[RunSpec]:
    """All runs of a suite (of the ``scenarios`` and ``methods`` named, where given), ordered
    scenario -> seed -> method (so data is built once per seed); a searched method gives one
    run per configuration and seed."""
    seeds = list(seeds) if seeds is not None else list(suite.seeds)
    if scenarios is not None:
        names = [sc.name for sc in suite.scenarios]
        for name in scenarios:
            if name not in names:
                raise InputError("--scenarios", f"{name!r} is not in suite {suite.name!r}",
                                 expected=f"some of {', '.join(names)}")
    expanded = []
    for i, sc in enumerate(suite.scenarios):
        try:
            expanded.append(scenario_methods(sc))
        except InputError as exc:
            raise exc.within(suite.path, f"scenario[{i}]") from None
    if methods is not None:
        known = {n for configs in expanded for _, m, info in configs
                 for n in (m.name, m.label, (info or {}).get("group"))} - {None}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise InputError("--methods", f"{unknown[0]!r} is not in suite {suite.name!r}",
                             expected=f"some of {', '.join(sorted(known))}")
    runs = []
    for i, (sc, configs) in enumerate(zip(suite.scenarios, expanded, strict=True)):
        if scenarios is not None and sc.name not in scenarios:
            continue
        chosen = [(j, m, info) for j, m, info in configs if methods is None or m.name in methods
                  or m.label in methods or (info or {}).get("group") in methods]
        if sc.kind != "test-time":
            runs += [RunSpec(suite.name, sc, m, seed, (i, seed, j), info) for seed in seeds
                     for j, m, info in chosen]
            continue
        source = MethodSpec(sc.options.get("init_from", "source-only"))
        for seed in seeds:  # the source model once per seed, then what adapts it
            init = RunSpec(suite.name, sc, source, seed, (i, seed, -1))
            runs.append(init)
            runs += [RunSpec(suite.name, sc, m, seed, (i, seed, j), info, init)
                     for j, m, info in chosen if m.name != source.name]
    return runs

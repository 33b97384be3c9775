"""The method and term tables: method names -> method classes, so suites name methods as
strings; name lookup and hyperparameter checks.

Adaptation methods are built from terms (:mod:`dalib.adaptation`): ``dann`` is the source
loss plus the DANN term, and any ``+``-joined list of term names is a method too
(``dann+mcc+pseudo-label``). A single-term method takes the term's options directly
(``{name = "dann", weight = 0.5}``); a combination takes one table per term
(``{name = "dann+mcc", mcc = {weight = 0.5}}``).

Entries are added by :mod:`dalib.plugins` (``register_method``, ``register_term``), the same
calls for the built-in methods (:mod:`dalib.catalog`) and for users' plugins; ``origin`` names
the plugin an entry came from (None for built-ins). This module holds the tables only;
:mod:`dalib.registry` is the same tables with the built-ins registered.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import nn

from dalib.adaptation.base import Adaptation, Term
from dalib.method import AUGMENTATIONS, OPTIMIZERS, SCHEDULES, Method
from scenarios import checks
from scenarios.errors import InputError, reject_unknown


def _init_parameters(cls: type) -> Iterator[inspect.Parameter]:
    """The keyword parameters of a class's ``__init__`` (after ``self`` and the model),
    walking ``**kwargs`` up the MRO."""
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(klass.__init__)
        for p in list(sig.parameters.values())[2:]:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                yield p
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            break


def keyword_options(cls: type, skip: set[str] = frozenset()) -> dict[str, object]:
    """Keyword options of a class and their defaults (required arguments are not options)."""
    params: dict[str, object] = {}
    for p in _init_parameters(cls):
        if p.name not in skip and p.default is not p.empty:
            params.setdefault(p.name, p.default)
    return params


@dataclass(frozen=True)
class TermEntry:
    cls: type[Term]
    description: str
    fixed: dict = field(default_factory=dict)
    origin: str | None = None

    def options(self) -> dict[str, object]:
        return keyword_options(self.cls, set(self.fixed))


TERMS: dict[str, TermEntry] = {}
OPTIM = keyword_options(Method)
STREAM_ONLY = {"reset_optimizer"}  # optimizer settings that only streams take


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "transfer" or "stream"
    cls: type[Method]
    description: str
    fixed: dict = field(default_factory=dict)
    terms: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)  # the class's defaults this entry changes
    origin: str | None = None  # the plugin that registered it

    def hyperparameters(self) -> dict[str, object]:
        """Every key a suite may set, with its default (a combination's terms take tables)."""
        if not self.terms:
            skip = set(self.fixed) | {"name"} | (STREAM_ONLY if self.kind == "transfer" else set())
            return {**keyword_options(self.cls, skip), **self.defaults}
        optim = {k: v for k, v in OPTIM.items() if k not in STREAM_ONLY}
        if len(self.terms) == 1:
            return {**optim, **TERMS[self.terms[0]].options()}
        return {**optim, **{t: {} for t in self.terms}}

    def resolved(self, params: dict) -> dict:
        """Every hyperparameter the method runs with: ``params`` over the defaults (a
        combination's term tables filled in with each term's defaults)."""
        out = {**self.hyperparameters(), **params}
        if len(self.terms) > 1:
            out.update({t: {**TERMS[t].options(), **params.get(t, {})} for t in self.terms})
        return out

    @property
    def needs(self) -> tuple[str, ...]:
        """The data feeds the method cannot train without (see :class:`~dalib.method.Method`)."""
        if "data" in self.fixed:
            data = self.fixed["data"]
            return (data,) if isinstance(data, str) else tuple(data)
        return self.cls.needs + tuple(n for t in self.terms for n in TERMS[t].cls.needs)

    @property
    def regression(self) -> bool:
        """Whether the method's losses apply to continuous targets (the class's and every
        term's ``regression``)."""
        return getattr(self.cls, "regression", False) and all(
            getattr(TERMS[t].cls, "regression", False) for t in self.terms)

    def split(self, params: dict) -> tuple[dict, list[tuple[str, type[Term], dict]]]:
        """Optimiser settings and (name, class, options) per term."""
        optim = {k: v for k, v in params.items() if k in OPTIM}
        if len(self.terms) == 1:
            t = self.terms[0]
            own = {k: v for k, v in params.items() if k not in OPTIM}
            return optim, [(t, TERMS[t].cls, {**TERMS[t].fixed, **own})]
        return optim, [(t, TERMS[t].cls, {**TERMS[t].fixed, **params.get(t, {})})
                       for t in self.terms]

    def build(self, model: nn.Module, params: dict) -> Method:
        if self.terms:
            optim, terms = self.split(params)
            return Adaptation(model, name=self.name, terms=terms, **optim)
        options = {**self.fixed, **self.defaults, **params}
        if any(p.name == "name" for p in _init_parameters(self.cls)):
            return self.cls(model, name=self.name, **options)
        method = self.cls(model, **options)  # a user's class without a name argument
        method.name = self.name
        return method

    def origins(self) -> set[str]:
        """The plugins this method (and each of its terms) came from."""
        return {o for o in (self.origin, *(TERMS[t].origin for t in self.terms)) if o}


REGISTRY: dict[str, Entry] = {}


def with_recipe(scenario, name: str, params: dict) -> dict:
    """``params`` over the scenario's recipe's optimizer settings (see
    :mod:`scenarios.recipes`) that method ``name`` takes."""
    if not scenario.recipe_optim:
        return params
    entry = lookup(name)
    accepted = entry.hyperparameters() if entry is not None else {}
    return {**{k: v for k, v in scenario.recipe_optim.items() if k in accepted}, **params}


def lookup(name: str) -> Entry | None:
    """The entry of a registered name or of a ``+``-joined combination of terms."""
    if name in REGISTRY:
        return REGISTRY[name]
    parts = tuple(name.split("+"))
    if len(parts) > 1 and all(p in TERMS for p in parts) and len(set(parts)) == len(parts):
        # a combination of terms
        return Entry(name, "transfer", Adaptation, " + ".join(parts), terms=parts)
    return None


# ranges of hyperparameters by name (a number whose name is not here must be >= 0)
RANGES = {"lr": {"low": 0, "open_low": True}, "momentum": {"low": 0, "high": 1},
          "ema": {"low": 0, "high": 1}, "threshold": {"low": 0, "high": 1},
          "pretrain": {"low": 0, "high": 1}, "temperature": {"low": 0, "open_low": True},
          "num_k": {"low": 1}, "k": {"low": 1}, "rounds": {"low": 1}, "random_dim": {"low": 1},
          "sample_size": {"low": 1}, "hidden": {"low": 1}, "shift": {"low": 0, "high": 64},
          "anneal": {"low": 0, "high": 1}}
INT_LIMIT = 1_000_000_000


def check_value(key: str, value, default, field_name: str) -> None:
    """A hyperparameter's value has its default's type (an integer where the default is one,
    any finite number where it is a float or unset) and lies in its range."""
    limits = RANGES.get(key, {"low": 0})
    if key == "freeze":
        if not isinstance(value, str):
            checks.integer(value, field_name, 0, INT_LIMIT, "a block count >= 0, 'all' or a "
                           "block name")
    elif isinstance(default, bool):
        checks.boolean(value, field_name)
    elif isinstance(default, str):
        checks.string(value, field_name)
    elif isinstance(default, int):
        checks.integer(value, field_name, limits.get("low"), limits.get("high", INT_LIMIT))
    elif isinstance(default, float) or default is None:
        checks.number(value, field_name, **limits)


def check_method(name: str, params: dict, kind: str, field_name: str = "methods") -> Entry:
    """The registry entry for ``name``, after checking its kind and hyperparameters."""
    entry = lookup(name)
    if entry is None:
        names = ", ".join(sorted(n for n, e in REGISTRY.items() if e.kind == kind))
        combos = " or a '+'-joined list of adaptation terms" if kind == "transfer" else ""
        raise InputError(field_name, f"unknown method {name!r}", expected=f"one of {names}{combos}")
    if entry.kind != kind:
        raise InputError(field_name, f"{name!r} is a {entry.kind} method, not for a {kind} "
                         "scenario", expected=f"a {kind} method")
    allowed = entry.hyperparameters()
    reject_unknown(params, allowed, what=f"hyperparameter of {name!r}", field=field_name)
    for key, value in params.items():
        if not (len(entry.terms) > 1 and key in entry.terms):
            check_value(key, value, allowed[key], f"{field_name}.{key}")
    for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", tuple(SCHEDULES)),
                         ("augmentation", AUGMENTATIONS)):
        if key in params and params[key] not in allowed:
            raise InputError(f"{field_name}.{key}", f"is {params[key]!r}",
                             expected=f"one of {', '.join(allowed)}")
    if len(entry.terms) > 1:
        for t in entry.terms:
            if t in params:
                if not isinstance(params[t], dict):
                    raise InputError(f"{field_name}.{t}", f"is {params[t]!r}",
                                     expected=f"a table of {t!r} options")
                options = TERMS[t].options()
                reject_unknown(params[t], options, what=f"option of {t!r}",
                               field=f"{field_name}.{t}")
                for key, value in params[t].items():
                    check_value(key, value, options[key], f"{field_name}.{t}.{key}")
    return entry


def build_method(name: str, model: nn.Module, **params) -> Method:
    """The method ``name`` around ``model``, its hyperparameters checked as a suite's are
    (an unknown option or a wrong type raises ``InputError`` naming it):
    ``build_method("dann", model, weight=0.5)``, ``build_method("replay", model, memory=200)``."""
    params = checks.plain(params)
    entry = lookup(name)
    return check_method(name, params, entry.kind if entry else "transfer").build(model, params)

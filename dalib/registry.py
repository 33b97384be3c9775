"""Method names -> method classes, so suites name methods as strings."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from torch import nn

from dalib.baselines import Supervised
from dalib.method import Method
from scenarios.errors import InputError, reject_unknown


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "transfer" or "stream"
    cls: type[Method]
    description: str
    fixed: dict = field(default_factory=dict)

    def hyperparameters(self) -> dict[str, object]:
        """Every keyword a suite may set, with its default (walks ``**kwargs`` up the MRO)."""
        params: dict[str, object] = {}
        for klass in self.cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            sig = inspect.signature(klass.__init__)
            for p in list(sig.parameters.values())[2:]:
                if p.kind is p.KEYWORD_ONLY and p.name not in self.fixed:
                    params.setdefault(p.name, p.default)
            if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
                break
        return params

    @property
    def needs(self) -> tuple[str, ...]:
        """The data feeds the method trains on (see :class:`~dalib.method.Method`)."""
        return (self.fixed["data"],) if "data" in self.fixed else self.cls.needs

    def build(self, model: nn.Module, params: dict) -> Method:
        return self.cls(model, name=self.name, **self.fixed, **params)


REGISTRY: dict[str, Entry] = {}


def register(name: str, kind: str, cls: type[Method], description: str, **fixed) -> None:
    REGISTRY[name] = Entry(name, kind, cls, description, fixed)


register("source-only", "transfer", Supervised, "train on labelled source only", data="source")
register("target-only", "transfer", Supervised,
         "train on the k labelled target samples per class only (NTG reference)",
         data="target_labelled")
register("target-oracle", "transfer", Supervised,
         "UPPER BOUND: train on all target train labels", data="target_oracle")
register("naive", "stream", Supervised, "fine-tune on each task in turn", data="train")
register("joint", "stream", Supervised, "UPPER BOUND: train on all tasks at once", data="train",
         joint=True)


def check_method(name: str, params: dict, kind: str, field_name: str = "methods") -> Entry:
    """The registry entry for ``name``, after checking its kind and hyperparameters."""
    entry = REGISTRY.get(name)
    if entry is None:
        names = ", ".join(sorted(n for n, e in REGISTRY.items() if e.kind == kind))
        raise InputError(field_name, f"unknown method {name!r}", expected=f"one of {names}")
    if entry.kind != kind:
        raise InputError(field_name, f"{name!r} is a {entry.kind} method, not for a {kind} "
                         "scenario", expected=f"a {kind} method")
    reject_unknown(params, entry.hyperparameters(), what=f"hyperparameter of {name!r}",
                   field=field_name)
    return entry

"""Method names -> method classes, so suites name methods as strings.

Adaptation methods are built from terms (:mod:`dalib.adaptation`): ``dann`` is the source
loss plus the DANN term, and any ``+``-joined list of term names is a method too
(``dann+mcc+pseudo-label``). A single-term method takes the term's options directly
(``{name = "dann", weight = 0.5}``); a combination takes one table per term
(``{name = "dann+mcc", mcc = {weight = 0.5}}``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from torch import nn

from dalib.adaptation.adversarial import CDAN, DANN, MCD, MDD
from dalib.adaptation.base import Adaptation, Term
from dalib.adaptation.confusion import MCC, EntropyMin
from dalib.adaptation.discrepancy import CORAL, MMD
from dalib.adaptation.self_training import FixMatch, MeanTeacher, PseudoLabel
from dalib.adaptation.weighting import PADA, Gate
from dalib.baselines import Supervised
from dalib.continual.avalanche import AvalancheStrategy
from dalib.continual.distillation import LwF
from dalib.continual.gem import AGEM
from dalib.continual.regularization import EWC, MAS, SI
from dalib.continual.replay import DER, Cumulative, Replay
from dalib.method import OPTIMIZERS, SCHEDULES, Method
from dalib.transfer.finetune import FineTune
from dalib.transfer.regularized import BSS, L2SP
from scenarios import checks
from scenarios.errors import InputError, reject_unknown


def keyword_options(cls: type, skip: set[str] = frozenset()) -> dict[str, object]:
    """Keyword options of a class and its defaults, walking ``**kwargs`` up the MRO."""
    params: dict[str, object] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(klass.__init__)
        for p in list(sig.parameters.values())[2:]:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip:
                params.setdefault(p.name, p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return params


@dataclass(frozen=True)
class TermEntry:
    cls: type[Term]
    description: str
    fixed: dict = field(default_factory=dict)

    def options(self) -> dict[str, object]:
        return keyword_options(self.cls, set(self.fixed))


TERMS: dict[str, TermEntry] = {
    "dann": TermEntry(DANN, "adversarial: domain discriminator via gradient reversal"),
    "cdan": TermEntry(CDAN, "adversarial: discriminator on features x predictions"),
    "cdan-e": TermEntry(CDAN, "adversarial: CDAN with entropy conditioning", {"entropy": True}),
    "mdd": TermEntry(MDD, "adversarial: margin disparity discrepancy"),
    "dan": TermEntry(MMD, "discrepancy: multi-kernel MMD"),
    "deep-coral": TermEntry(CORAL, "discrepancy: covariance alignment"),
    "mcc": TermEntry(MCC, "confusion: minimum class confusion on target"),
    "entmin": TermEntry(EntropyMin, "entropy minimisation on target"),
    "pseudo-label": TermEntry(PseudoLabel, "self-training: class-balanced pseudo-label rounds"),
    "fixmatch": TermEntry(FixMatch, "self-training: weak/strong consistency"),
    "mean-teacher": TermEntry(MeanTeacher, "self-training: EMA teacher consistency"),
    "gate": TermEntry(Gate, "negative transfer: source samples weighted by a (feature, label) "
                      "discriminator gate (needs k >= 1)"),
    "pada": TermEntry(PADA, "partial adaptation: DANN with source classes weighted by the "
                      "target's predicted class mass"),
}
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
        return self.cls(model, name=self.name, **self.fixed, **{**self.defaults, **params})


REGISTRY: dict[str, Entry] = {}


def register(name: str, kind: str, cls: type[Method], description: str,
             defaults: dict | None = None, **fixed) -> None:
    REGISTRY[name] = Entry(name, kind, cls, description, fixed, defaults=defaults or {})


register("source-only", "transfer", Supervised, "train on labelled source only", data="source",
         joint=False)
register("target-only", "transfer", Supervised,
         "train on the k labelled target samples per class only (NTG reference)",
         data="target_labelled", joint=False)
register("source+target", "transfer", Supervised,
         "train on labelled source and the k labelled target samples per class (the "
         "'with source' side of the NTG)", data=("source", "target_labelled"), joint=False)
register("target-oracle", "transfer", Supervised,
         "UPPER BOUND: train on all target train labels", data="target_oracle", joint=False)
register("mcd", "transfer", MCD, "adversarial: maximum classifier discrepancy (two heads)")
for _name, _term in TERMS.items():
    REGISTRY[_name] = Entry(_name, "transfer", Adaptation, _term.description, terms=(_name,))
register("linear-probe", "transfer", FineTune, "pretrain on source, then a new head on frozen "
         "features fitted to the k labelled target samples", freeze="all")
register("finetune-top", "transfer", FineTune, "pretrain on source, freeze the first blocks "
         "(freeze = count or block name), fine-tune the rest on the k target labels",
         defaults={"freeze": 1})
register("finetune-full", "transfer", FineTune, "pretrain on source, fine-tune everything on "
         "the k target labels (backbone at backbone_lr x lr)", freeze=0)
register("l2-sp", "transfer", L2SP, "fine-tuning regularised towards the pretrained weights")
register("bss", "transfer", BSS, "fine-tuning with batch spectral shrinkage")
register("naive", "stream", Supervised, "fine-tune on each task in turn", data="train",
         joint=False)
register("joint", "stream", Supervised, "UPPER BOUND: train on all tasks at once", data="train",
         joint=True)
register("cumulative", "stream", Cumulative, "retrain on all tasks seen so far")
register("ewc", "stream", EWC, "elastic weight consolidation (mode = separate | online)")
register("si", "stream", SI, "synaptic intelligence", mode="online")
register("mas", "stream", MAS, "memory-aware synapses")
register("lwf", "stream", LwF, "learning without forgetting (distillation)")
register("replay", "stream", Replay, "experience replay (reservoir or class-balanced buffer)")
register("agem", "stream", AGEM, "averaged gradient episodic memory")
register("der", "stream", DER, "dark experience replay (logit matching)")
register("der++", "stream", DER, "dark experience replay with label replay", beta=0.5)
for _name in ("naive", "ewc", "replay", "lwf", "si", "agem"):
    register(f"avalanche:{_name}", "stream", AvalancheStrategy,
             f"Avalanche's own {_name} strategy on the same model, optimizer and budget",
             defaults={"reset_optimizer": False},  # Avalanche 0.6 keeps the state
             strategy=_name)


def lookup(name: str) -> Entry | None:
    """The entry of a registered name or of a ``+``-joined combination of terms."""
    if name in REGISTRY:
        return REGISTRY[name]
    parts = tuple(name.split("+"))
    if len(parts) > 1 and all(p in TERMS for p in parts) and len(set(parts)) == len(parts):
        return Entry(name, "transfer", Adaptation, " + ".join(parts), terms=parts)
    return None


# ranges of hyperparameters by name (a number whose name is not here must be >= 0)
RANGES = {"lr": {"low": 0, "open_low": True}, "momentum": {"low": 0, "high": 1},
          "ema": {"low": 0, "high": 1}, "threshold": {"low": 0, "high": 1},
          "pretrain": {"low": 0, "high": 1}, "temperature": {"low": 0, "open_low": True},
          "num_k": {"low": 1}, "k": {"low": 1}, "rounds": {"low": 1}, "random_dim": {"low": 1},
          "sample_size": {"low": 1}, "hidden": {"low": 1}, "shift": {"low": 0, "high": 64}}
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
    for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", tuple(SCHEDULES))):
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

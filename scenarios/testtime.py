"""Test-time adaptation scenarios: a model trained on a labelled source meets a stream of
unlabelled test batches from shifting domains, predicting each batch before it may adapt on
it (Wang et al., "Tent", ICLR 2021; Wang et al., "CoTTA", CVPR 2022, for continual streams).

The stream's domains are corruptions of the target's held-out test part
(``corruptions = [...]`` at ``severity``: one number, or a list visited in turn for gradual
changes) or data tables of their own (``domains = [...]``, each used whole). ``order``
(``fixed`` or ``random``: the domains shuffled in each cycle, from the seed), ``cycles``
(repeats, for long horizons) and ``labels`` (``iid``; ``sorted``: each domain's samples by
class; ``dirichlet``: classes spread over the stream by Dirichlet proportions, as in RoTTA)
shape it. The domains are kept once; the
stream is an order of (domain, sample) pairs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from scenarios import checks
from scenarios.corruptions import CORRUPTIONS
from scenarios.domain import Domain
from scenarios.errors import InputError
from scenarios.shifts import apply_shifts
from scenarios.transfer import TransferScenario

ORDERS = ("fixed", "random")
LABEL_ORDERS = ("iid", "sorted", "dirichlet")
DIRICHLET_CONCENTRATION = 0.1  # RoTTA's and SAR's non-i.i.d. streams (smaller: more skewed)
MODES = ("continual", "episodic", "offline")


@dataclass(frozen=True)
class TestStream:
    """The stream's distinct domains and its order: ``domain[i]``, ``index[i]`` and
    ``cycle[i]`` say which sample of which domain comes ``i``-th, and in which cycle."""

    domains: tuple[Domain, ...]
    names: tuple[str, ...]
    domain: np.ndarray
    index: np.ndarray
    cycle: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @cached_property
    def order(self) -> torch.Tensor:
        """The stream's samples as indices into :attr:`pooled` (the domains concatenated)."""
        offsets = np.cumsum([0] + [len(d) for d in self.domains])[:-1]
        return torch.from_numpy(offsets[self.domain] + self.index)

    @cached_property
    def pooled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every domain's inputs and labels, concatenated (one gather per batch)."""
        return (torch.cat([d.x for d in self.domains]), torch.cat([d.y for d in self.domains]))

    def batches(self, size: int):
        """``(x, y, domain ids, cycle ids)`` of consecutive batches of ``size`` samples (the
        last one smaller), in stream order."""
        x, y = self.pooled
        for start in range(0, len(self), size):
            idx = self.order[start:start + size]
            yield (x[idx], y[idx], self.domain[start:start + size],
                   self.cycle[start:start + size])


@dataclass(frozen=True)
class TestTimeScenario:
    """The offline part (source training, validation and test; the target's clean parts,
    which no test-time method sees) and the test stream."""

    name: str
    offline: TransferScenario
    stream: TestStream
    batch_size: int
    mode: str
    epochs: int = 1  # passes of offline (source-free) adaptation before the evaluation

    @property
    def num_classes(self) -> int:
        return self.offline.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.offline.input_shape

    @property
    def source(self) -> Domain:
        return self.offline.source


def stream_order(sizes: list[int], labels: list[np.ndarray], rng: np.random.Generator, *,
                 order: str, cycles: int, label_order: str) -> tuple[np.ndarray, ...]:
    """The (domain, sample, cycle) order of a stream over domains of ``sizes``."""
    domain, index, cycle = [], [], []
    for c in range(cycles):
        visit = list(range(len(sizes)))
        if order == "random":
            visit = list(rng.permutation(len(sizes)))
        for d in visit:
            if label_order == "sorted":
                samples = np.argsort(labels[d], kind="stable")
            elif label_order == "dirichlet":
                samples = dirichlet_order(labels[d], rng)
            else:
                samples = rng.permutation(sizes[d])
            domain.append(np.full(sizes[d], d))
            index.append(samples)
            cycle.append(np.full(sizes[d], c))
    return np.concatenate(domain), np.concatenate(index), np.concatenate(cycle)


def dirichlet_order(labels: np.ndarray, rng: np.random.Generator,
                    concentration: float = DIRICHLET_CONCENTRATION) -> np.ndarray:
    """A non-i.i.d. order of one domain's samples: the stream is cut into as many slots as
    there are classes and each class's samples are spread over them by proportions drawn
    from Dirichlet(``concentration``) (Yuan et al., "RoTTA", CVPR 2023), so each stretch of
    the stream holds few classes (on 10 digit classes, a batch of 64 about 5.6 classes, half
    of it one class)."""
    slots = len(np.unique(labels))
    slot_of = np.empty(len(labels))
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        shares = rng.dirichlet(np.full(slots, concentration))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for slot, part in enumerate(np.split(idx, cuts)):
            slot_of[part] = slot
    return np.lexsort((rng.random(len(labels)), slot_of))


def corruption_domains(clean: Domain, corruptions: list[str], severity: int | list[int],
                       rng: np.random.Generator) -> list[tuple[str, Domain]]:
    """``clean`` under each corruption at each severity in turn (``NAME-SEVERITY``)."""
    levels = severity if isinstance(severity, list) else [severity]
    out = []
    for name in corruptions:
        for level in levels:
            spec = {"name": "corrupt", "corruption": name, "severity": level}
            out.append((f"{name}-{level}", apply_shifts(clean, [spec], rng)))
    return out


def build_test_time(name: str, offline: TransferScenario, domains: list[tuple[str, Domain]],
                    *, seed: int, batch_size: int, order: str = "fixed", cycles: int = 1,
                    labels: str = "iid", mode: str = "continual", epochs: int = 1
                    ) -> TestTimeScenario:
    """The scenario for one seed: ``domains`` (name, data) in a stream shaped by the
    options (see the module doc)."""
    if not domains or not any(len(d) for _, d in domains):
        raise InputError("domains", "give an empty stream", expected="one or more domains "
                         "with samples to adapt on")
    for n, d in domains:
        if d.input_shape != offline.input_shape:
            raise InputError("domains", f"{n!r} has samples of shape {d.input_shape}",
                             expected=f"the source's shape {offline.input_shape}")
        if d.classes != offline.source.classes:
            raise InputError("domains", f"{n!r} has classes {list(d.classes)[:10]}",
                             expected="the source's classes")
    rng = np.random.default_rng([seed, 1])
    d, i, c = stream_order([len(x) for _, x in domains], [x.y.numpy() for _, x in domains],
                           rng, order=order, cycles=cycles, label_order=labels)
    stream = TestStream(tuple(x for _, x in domains), tuple(n for n, _ in domains), d, i, c)
    return TestTimeScenario(name, offline, stream, batch_size, mode, epochs)


KEYS = {"source", "target", "corruptions", "severity", "domains", "order", "cycles", "labels",
        "test_batch_size", "mode", "adapt_epochs", "init_from", "source_test_fraction",
        "target_test_fraction", "source_val_fraction"}


def check_options(table: dict, f: str) -> None:
    """A ``kind = "test-time"`` table's own keys (the data tables are checked by the
    suite)."""
    if "source" not in table or isinstance(table["source"], list):
        raise InputError(f"{f}.source", "missing" if "source" not in table else "is a list",
                         expected="one data table (the labelled source)")
    if ("corruptions" in table) == ("domains" in table):
        raise InputError(f, "needs exactly one of corruptions and domains",
                         expected="corruptions = [NAME, ...] (of the target's test part) or "
                         "domains = [{...}, ...] (data tables, each a domain of the stream)")
    if "corruptions" in table:
        names = table["corruptions"]
        if not isinstance(names, list) or not names:
            raise InputError(f"{f}.corruptions", f"is {names!r}",
                             expected=f"a list of some of {', '.join(CORRUPTIONS)}")
        for i, n in enumerate(names):
            checks.string(n, f"{f}.corruptions[{i}]", tuple(CORRUPTIONS))
        severity = table.get("severity", 5)
        if isinstance(severity, list):
            checks.number_list(severity, f"{f}.severity", low=1, high=5, integer=True)
        else:
            checks.integer(severity, f"{f}.severity", 1, 5, "an integer in 1..5 or a list")
    elif not isinstance(table["domains"], list) or not table["domains"]:
        raise InputError(f"{f}.domains", f"is {table['domains']!r}",
                         expected="a list of data tables, each a domain of the stream")
    elif "severity" in table:
        raise InputError(f"{f}.severity", "is set without corruptions",
                         expected="corruptions = [...] with it")
    checks.string(table.get("order", "fixed"), f"{f}.order", ORDERS)
    checks.string(table.get("labels", "iid"), f"{f}.labels", LABEL_ORDERS)
    checks.string(table.get("mode", "continual"), f"{f}.mode", MODES)
    checks.integer(table.get("cycles", 1), f"{f}.cycles", 1, 10_000)
    checks.integer(table.get("test_batch_size", 64), f"{f}.test_batch_size", 1, 65_536)
    if "adapt_epochs" in table:
        if table.get("mode") != "offline":
            raise InputError(f"{f}.adapt_epochs", "is set without mode = 'offline'",
                             expected="mode = 'offline' with it")
        checks.integer(table["adapt_epochs"], f"{f}.adapt_epochs", 1, 1000)
    checks.string(table.get("init_from", "source-only"), f"{f}.init_from")
    if table.get("standardize", "none") == "per-domain":
        raise InputError(f"{f}.standardize", "is 'per-domain' in a test-time scenario",
                         expected="'source' or 'none' (a stream's statistics are not known "
                         "before it is seen)")


def stream_domains(options: dict, offline: TransferScenario, load, seed: int
                   ) -> list[tuple[str, Domain]]:
    """The stream's domains: corruptions of the target's test part, or the ``domains``
    tables (``load(spec, field)`` reads one, shifts applied)."""
    rng = np.random.default_rng([seed, 2])
    if "corruptions" in options:
        return corruption_domains(offline.target_test, options["corruptions"],
                                  options.get("severity", 5), rng)
    out = []
    for j, spec in enumerate(options["domains"]):
        domain = load(spec, f"domains[{j}]")
        try:
            domain = apply_shifts(domain, spec.get("shifts", []), rng, train=False)
        except InputError as exc:
            raise exc.within("", f"domains[{j}]") from None
        out.append((spec.get("domain") or domain.name, domain))
    return out

"""TransferScenario: a labelled source and a target split into unlabelled train and labelled test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scenarios.datasets import stratified_split
from scenarios.domain import Domain
from scenarios.errors import InputError
from scenarios.regression import (
    continuous,
    is_continuous,
    pick_per_bin,
    quantile_bins,
    require_classes,
    standardized_targets,
    target_scale,
)
from scenarios.shifts import SHIFTS, apply_shifts


@dataclass(frozen=True)
class TransferScenario:
    """Source -> target data for one seed.

    ``target_train`` keeps its labels only so that the ``target-oracle`` upper bound can use
    them; the engine hands methods its unlabelled view. ``source_val`` is a labelled part held
    out of the source training data (with the same label noise) for model selection.
    ``target_labelled`` holds the ``k`` labelled target samples per class (a subset of
    ``target_train``), or ``None`` when k = 0. In an ``open_set`` scenario the known classes
    are those of the source training part, and the target labels every sample of another
    class ``unknown`` (label :attr:`num_classes`). In a regression scenario (``target_scale``
    set) every part's labels are continuous targets standardised with the source training
    part's ``(mean, std)`` (:mod:`scenarios.regression`).
    """

    name: str
    source: Domain
    source_val: Domain
    source_test: Domain
    target_train: Domain
    target_test: Domain
    target_labelled: Domain | None
    k: int
    # "none" (domain generalization): no method sees target_train, labelled or not
    target_data: str = "unlabelled"
    open_set: bool = False
    target_scale: tuple[float, float] | None = None  # regression: the targets' (mean, std)

    @property
    def regression(self) -> bool:
        return self.target_scale is not None

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.source.input_shape


def strata(domain: Domain) -> np.ndarray:
    """What stratified splits keep in proportion: the class, and in data pooled from several
    domains the (domain, class) pair, so every source domain keeps its share in each part
    (its held-out part included: DomainBed's training-domain validation). Continuous
    targets: their quantile bins."""
    y = quantile_bins(domain.y.numpy()) if is_continuous(domain) else domain.y.numpy()
    return y if domain.env is None else domain.env.numpy() * domain.num_classes + y


def split_train_test(domain: Domain, test_fraction: float, rng: np.random.Generator,
                     ) -> tuple[Domain, Domain]:
    """The dataset's own test split where it has one, else a stratified random split."""
    if domain.test_mask is not None:
        test = torch.nonzero(domain.test_mask).flatten()
        train = torch.nonzero(~domain.test_mask).flatten()
    else:
        train, test = stratified_split(strata(domain), test_fraction, rng)
    return (domain.subset(train, f"{domain.name}/train").with_(test_mask=None),
            domain.subset(test, f"{domain.name}/test").with_(test_mask=None))


def shifted_split(domain: Domain, shifts: list[dict], test_fraction: float,
                  rng: np.random.Generator, splitter=None, val_fraction: float = 0.0,
                  ) -> tuple[Domain, Domain] | tuple[Domain, Domain, Domain]:
    """Apply data shifts to the whole domain, split it, then corrupt only the training part.

    ``splitter(domain, test_fraction, rng)`` defaults to :func:`split_train_test`. With
    ``val_fraction``, a stratified validation part is held out of the training part before its
    corruption (so the split does not depend on label noise) and corrupted the same way; the
    result is then ``(train, val, test)``.
    """
    data_shifts = [s for s in shifts if not SHIFTS[s["name"]].train_only]
    train_shifts = [s for s in shifts if SHIFTS[s["name"]].train_only]
    domain = apply_shifts(domain, data_shifts, rng)
    train, test = (splitter or split_train_test)(domain, test_fraction, rng)
    if not val_fraction:
        return apply_shifts(train, train_shifts, rng), test
    fit, val = stratified_split(strata(train), val_fraction, rng)
    return (apply_shifts(train.subset(fit), train_shifts, rng),
            apply_shifts(train.subset(val, f"{train.name}/val"), train_shifts, rng), test)


def disjoint_halves(domain: Domain, rng: np.random.Generator) -> tuple[Domain, Domain]:
    """Two stratified halves of one dataset, so source and target share no sample."""
    own = strata(domain) * 2 + (0 if domain.test_mask is None else domain.test_mask.numpy())
    a, b = stratified_split(own, 0.5, rng)
    return domain.subset(a), domain.subset(b)


def pick_per_class(domain: Domain, k: int, rng: np.random.Generator, field: str = "k",
                   ) -> np.ndarray:
    """Indices of ``k`` random samples of every class present in ``domain``."""
    y = domain.y.numpy()
    picked = []
    for c in range(domain.num_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            continue
        if len(idx) < k:
            raise InputError(field, f"is {k} but class {domain.classes[c]!r} has only {len(idx)} "
                             f"samples in {domain.name!r}",
                             expected=f"k <= {int(min(np.bincount(y)[np.bincount(y) > 0]))}")
        picked.append(rng.choice(idx, k, replace=False))
    return np.sort(np.concatenate(picked))


def shape_mismatch(source: tuple[int, ...], target: tuple[int, ...]) -> InputError:
    """The error for target samples of another shape than the source's, suggesting the fix
    that fits: one channel count (grey against colour images), then one image size."""
    fixes = []
    if len(source) == len(target) == 3 and source[0] != target[0]:
        grey, rgb = ("source", "target") if source[0] < target[0] else ("target", "source")
        fixes.append(f"one channel count: read both with channels = 3 (image folders and "
                     f"lists), or add {{name = 'channels', count = 3}} to the {grey}'s shifts "
                     f"(or count = 1 to the {rgb}'s)")
    if len(source) == len(target) == 3 and source[1:] != target[1:]:
        fixes.append(f"one image size: size = {list(source[1:])} in an image table, or a "
                     f"resize shift (e.g. {{name = 'resize', size = 8, crop = 4}} for MNIST -> "
                     "UCI)")
    if not fixes:
        fixes.append("samples of one shape in source and target")
    return InputError("target", f"samples have shape {target} but source samples have "
                      f"{source}", expected="; and ".join(fixes))


UNKNOWN = "unknown"  # the class name of the target samples of classes the source lacks


def open_set_parts(source_parts: list[Domain], target_parts: list[Domain]
                   ) -> tuple[list[Domain], list[Domain]]:
    """Open-set labels: the known classes are those with samples in the source training
    part (the first), numbered in their order; the target's other samples become
    ``unknown`` (one label after the known ones). Classes are matched by name."""
    train = source_parts[0]
    present = set(np.unique(train.y.numpy()).tolist())
    known = tuple(c for i, c in enumerate(train.classes) if i in present)
    index = {c: i for i, c in enumerate(known)}
    for part in source_parts[1:]:
        stray = sorted(set(np.unique(part.y.numpy()).tolist()) - present)
        if stray:
            raise InputError("source", f"{part.name!r} holds class {part.classes[stray[0]]!r} "
                             "that the source training part lacks", expected="every source "
                             "class with training samples (a larger source)")

    def relabel(part: Domain, classes: tuple[str, ...]) -> Domain:
        lut = torch.tensor([index.get(c, len(known)) for c in part.classes])
        return part.with_(y=lut[part.y], classes=classes)

    return ([relabel(p, known) for p in source_parts],
            [relabel(p, known + (UNKNOWN,)) for p in target_parts])


def build_transfer(name: str, source: Domain, target: Domain, *, seed: int, k: int = 0,
                   source_shifts: list[dict] = (), target_shifts: list[dict] = (),
                   disjoint: bool | None = None, source_test_fraction: float = 0.2,
                   target_test_fraction: float = 0.3, source_val_fraction: float = 0.1,
                   open_set: bool = False, regression: bool = False) -> TransferScenario:
    """Build the scenario for one seed (splits, shifts and the k labelled picks all follow it).

    ``disjoint``: source and target come from one dataset, so split it into two halves first
    (default: when ``source is target``). ``open_set``: the target may hold classes the
    source lacks (see :func:`open_set_parts`); else both must name the same classes.
    ``regression``: the labels are continuous targets (see :mod:`scenarios.regression`).
    """
    rng = np.random.default_rng(seed)
    for role, d in (("source", source), ("target", target)):
        if d.y is None:
            raise InputError(role, f"{d.name!r} has no labels", expected="labelled data (y)")
        if len(d) == 0:
            raise InputError(role, f"{d.name!r} is empty", expected="at least one sample")
        if not regression:
            require_classes(d, role)
    if regression:
        shared = source is target
        source = continuous(source, "source")
        target = source if shared else continuous(target, "target")
    if source.classes != target.classes and not open_set:
        missing = [c for c in source.classes if c not in target.classes]
        extra = [c for c in target.classes if c not in source.classes]
        problem = (f"lacks class {missing[0]!r} of the source" if missing else
                   f"has class {extra[0]!r} the source lacks" if extra else
                   "orders the classes differently from the source")
        raise InputError("target", f"{target.name!r} {problem} ({target.num_classes} classes "
                         f"against {source.num_classes})", expected="the same classes in "
                         "source and target")
    if disjoint if disjoint is not None else source is target:
        source, target = disjoint_halves(source, rng)
        source, target = source.with_(name=f"{source.name}/A"), target.with_(name=f"{target.name}/B")
    try:
        src_train, src_val, src_test = shifted_split(source, list(source_shifts),
                                                     source_test_fraction, rng,
                                                     val_fraction=source_val_fraction)
    except InputError as exc:
        raise exc.within("", "source") from None
    try:
        tgt_train, tgt_test = shifted_split(target, list(target_shifts), target_test_fraction,
                                            rng)
    except InputError as exc:
        raise exc.within("", "target") from None
    if src_train.input_shape != tgt_train.input_shape:
        raise shape_mismatch(src_train.input_shape, tgt_train.input_shape)
    for part in (src_train, src_val, src_test, tgt_train, tgt_test):
        if len(part) == 0:
            raise InputError("", f"{part.name!r} is empty after shifts and splits",
                             expected="samples in every part")
    if open_set:
        (src_train, src_val, src_test), (tgt_train, tgt_test) = open_set_parts(
            [src_train, src_val, src_test], [tgt_train, tgt_test])
    scale = None
    if regression:
        for role, part in (("source", src_train), ("target", tgt_train)):
            if not is_continuous(part):  # a shift replaced the targets with class labels
                raise InputError(role, f"{part.name!r} has class labels after its shifts",
                                 expected="shifts that keep continuous targets")
        scale = target_scale(src_train)
        src_train, src_val, src_test, tgt_train, tgt_test = (
            standardized_targets(p, scale) for p in (src_train, src_val, src_test, tgt_train,
                                                     tgt_test))
    labelled = None
    if k > 0:
        picks = pick_per_bin(tgt_train, k, rng) if regression else \
            pick_per_class(tgt_train, k, rng)
        labelled = tgt_train.subset(picks, f"{tgt_train.name}/k={k}")
    return TransferScenario(name=name, source=src_train, source_val=src_val, source_test=src_test,
                            target_train=tgt_train, target_test=tgt_test,
                            target_labelled=labelled, k=k, open_set=open_set,
                            target_scale=scale)

"""Shifts applied to a domain: each takes a domain, a seeded generator and its options.

A suite names them as ``shifts = [{name = "rotate", degrees = 45}, ...]``; they apply in order.
Shifts marked ``train_only`` (label noise) corrupt only the training part of a domain: test
labels always stay clean.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from scenarios import checks
from scenarios.corruptions import CORRUPTIONS, corrupt_images
from scenarios.domain import Domain
from scenarios.errors import InputError, reject_unknown
from scenarios.regression import TARGET
from scenarios.text import DROPPED, PAD


def _images(domain: Domain, shift: str) -> torch.Tensor:
    if domain.x.dim() != 4:
        raise InputError("name", f"{shift!r} needs images but {domain.name!r} has samples of "
                         f"shape {domain.input_shape}", expected="N x C x H x W data")
    return domain.x


def _rotated(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Images ``x`` rotated by ``degrees`` (one angle per image, counter-clockwise,
    bilinear, zero fill)."""
    theta = torch.deg2rad(degrees.double())
    c, s = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
    zero = torch.zeros_like(c)
    mat = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1)], 1)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False).clamp_(0, 1)


def rotate(domain: Domain, rng: np.random.Generator, degrees: float) -> Domain:
    """Rotate every image by ``degrees`` (counter-clockwise, bilinear, zero fill)."""
    x = _images(domain, "rotate")
    return domain.with_(x=_rotated(x, torch.full((len(x),), float(degrees))))


def angle(domain: Domain, rng: np.random.Generator, degrees: float) -> Domain:
    """A regression target made from images: each image rotated by its own angle, drawn
    uniformly from [-``degrees``, ``degrees``], and that angle (in degrees) made its label
    (``regression = true`` scenarios only)."""
    x = _images(domain, "angle")
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    degrees_each = (2 * torch.rand(len(x), generator=g, dtype=torch.float64) - 1) * degrees
    return domain.with_(x=_rotated(x, degrees_each), y=degrees_each.float(),
                        classes=(TARGET,))


def noise(domain: Domain, rng: np.random.Generator, std: float) -> Domain:
    """Add Gaussian noise of standard deviation ``std`` and clip to [0, 1]."""
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    eps = torch.randn(domain.x.shape, generator=g) * std
    return domain.with_(x=(domain.x + eps).clamp_(0, 1))


def corrupt(domain: Domain, rng: np.random.Generator, corruption: str, severity: int = 5
            ) -> Domain:
    """One of :data:`scenarios.corruptions.CORRUPTIONS` (noise, blur, geometric, appearance
    and occlusion corruptions of images in [0, 1]) at ``severity`` 1-5, drawn from the
    scenario's seed."""
    x = _images(domain, "corrupt")
    seed = int(rng.integers(2**31))
    return domain.with_(x=corrupt_images(x, corruption, severity, seed))


def invert(domain: Domain, rng: np.random.Generator) -> Domain:
    """Swap ink and background: ``x -> 1 - x``."""
    return domain.with_(x=1.0 - domain.x)


def resize(domain: Domain, rng: np.random.Generator, size: int | list[int], crop: int = 0,
           ) -> Domain:
    """Crop ``crop`` pixels from every border, then resize to ``size`` (area-averaging when
    shrinking, bilinear when growing).

    MNIST -> 8 x 8 with ``crop = 4`` mirrors how UCI digits were made: MNIST digits sit in a
    20 x 20 box inside 28 x 28, and UCI digits count ink in 4 x 4 blocks of a 32 x 32 bitmap.
    """
    x = _images(domain, "resize")
    if crop:
        if 2 * crop >= min(x.shape[-2:]):
            raise InputError("crop", f"{crop} leaves no pixels of {tuple(x.shape[-2:])}",
                             expected="a crop smaller than half the image")
        x = x[..., crop:-crop, crop:-crop]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    mode = "area" if hw[0] <= x.shape[-2] and hw[1] <= x.shape[-1] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return domain.with_(x=F.interpolate(x, size=hw, mode=mode, **kwargs).clamp_(0, 1))


def pad(domain: Domain, rng: np.random.Generator, pixels: int) -> Domain:
    """Add ``pixels`` of background (zeros) on every border: MNIST's 28 x 28 digits padded
    to 32 x 32 with ``pixels = 2``, as in torchvision's ``Pad(2)``."""
    return domain.with_(x=F.pad(_images(domain, "pad"), (pixels,) * 4))


def channels(domain: Domain, rng: np.random.Generator, count: int) -> Domain:
    """Grey images as ``count = 3`` identical channels (RGB), or RGB images as ``count = 1``
    channel, the ITU-R 601 luma Pillow's ``convert("L")`` uses (0.299 R + 0.587 G + 0.114 B):
    one channel count for domains read from grey and colour sources."""
    x = _images(domain, "channels")
    if x.shape[1] == count:
        return domain
    if count == 3 and x.shape[1] == 1:
        return domain.with_(x=x.expand(-1, 3, -1, -1).contiguous())
    if count == 1 and x.shape[1] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).reshape(1, 3, 1, 1)
        return domain.with_(x=(x * luma).sum(1, keepdim=True))
    raise InputError("count", f"is {count} but {domain.name!r} has {x.shape[1]} channels",
                     expected="1 -> 3 or 3 -> 1 channels")


def permute(domain: Domain, rng: np.random.Generator, seed: int | None = None) -> Domain:
    """Shuffle the pixels with one fixed permutation (drawn from ``seed`` or the run's seed)."""
    x = domain.x
    flat = x.reshape(len(x), -1)
    perm_rng = np.random.default_rng(seed) if seed is not None else rng
    perm = torch.as_tensor(perm_rng.permutation(flat.shape[1]))
    return domain.with_(x=flat[:, perm].reshape(x.shape))


def label_noise(domain: Domain, rng: np.random.Generator, rate: float) -> Domain:
    """Replace a fraction ``rate`` of the labels with a uniformly drawn *wrong* class."""
    if not 0.0 <= rate <= 1.0:
        raise InputError("rate", f"is {rate}", expected="a fraction in [0, 1]")
    y = domain.y.clone()
    flip = torch.as_tensor(rng.random(len(y)) < rate)
    offset = torch.as_tensor(rng.integers(1, domain.num_classes, len(y)))
    y[flip] = (y[flip] + offset[flip]) % domain.num_classes
    return domain.with_(y=y)


def class_subset(domain: Domain, rng: np.random.Generator, classes: list[int]) -> Domain:
    """Keep only the samples of ``classes`` (labels keep their original indices)."""
    bad = [c for c in classes if not 0 <= c < domain.num_classes]
    if bad or not classes:
        raise InputError("classes", f"is {classes}",
                         expected=f"a non-empty list of labels in [0, {domain.num_classes})")
    keep = torch.isin(domain.y, torch.as_tensor(classes))
    return domain.subset(torch.nonzero(keep).flatten())


def class_prior(domain: Domain, rng: np.random.Generator, weights: list[float]) -> Domain:
    """Class-prior shift: keep each sample of class ``c`` with probability
    ``weights[c] / max(weights)``, so class frequencies become proportional to
    ``weights`` x the original ones."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (domain.num_classes,) or (w < 0).any() or w.max() <= 0:
        raise InputError("weights", f"is {weights}", expected=f"{domain.num_classes} "
                         "non-negative numbers, not all 0")
    keep_p = torch.as_tensor(w / w.max(), dtype=torch.float64)[domain.y]
    keep = torch.as_tensor(rng.random(len(domain.y))) < keep_p
    return domain.subset(torch.nonzero(keep).flatten())


def _size(value, field: str):
    if isinstance(value, list):
        return checks.number_list(value, field, low=1, high=4096, integer=True, min_length=2,
                                  max_length=2)
    return checks.integer(value, field, 1, 4096, "an integer in [1, 4096] or [height, width]")


def _channel_count(value, field: str) -> int:
    if isinstance(value, bool) or value not in (1, 3):
        raise InputError(field, f"is {value!r}", expected="1 (grey) or 3 (RGB)")
    return value


def gain(domain: Domain, rng: np.random.Generator, factor: float, noise: float = 0.0
         ) -> Domain:
    """A sensor's shift for 1-D signals: amplitude times ``factor``, plus Gaussian noise of
    standard deviation ``noise`` (unclipped: signals are not bounded as pixels are)."""
    if domain.x.dim() != 3:
        raise InputError("name", f"'gain' needs 1-D signals but {domain.name!r} has samples "
                         f"of shape {domain.input_shape}", expected="N x C x L data (an npz "
                         "file with layout = 'NCL', 'NLC' or 'NL')")
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    return domain.with_(x=factor * domain.x + noise * torch.randn(domain.x.shape, generator=g))


def token_dropout(domain: Domain, rng: np.random.Generator, rate: float) -> Domain:
    """A vocabulary shift for text: each word replaced, with probability ``rate``, by the
    reserved id of a dropped word (:data:`scenarios.text.DROPPED`); padding stays."""
    if "vocab" not in domain.meta:
        raise InputError("name", f"'token-dropout' needs text but {domain.name!r} is not",
                         expected="a text data table ({ text = FILE, column = ... })")
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    hit = (torch.rand(domain.x.shape, generator=g) < rate) & (domain.x != PAD)
    return domain.with_(x=domain.x.masked_fill(hit, float(DROPPED)))


def _seed(value, field: str):
    return None if value is None else checks.integer(value, field, 0, 2**32 - 1)


@dataclass(frozen=True)
class Shift:
    fn: Callable[..., Domain]
    train_only: bool = False
    labels: str = "any"  # "classes": needs class labels; "continuous": makes continuous ones
    checks: dict[str, Callable] = field(default_factory=dict)  # option -> check(value, field)

    @property
    def options(self) -> list[str]:
        return list(inspect.signature(self.fn).parameters)[2:]


SHIFTS: dict[str, Shift] = {
    "rotate": Shift(rotate, checks={"degrees": checks.number}),
    "noise": Shift(noise, checks={"std": partial(checks.number, low=0, high=100)}),
    "invert": Shift(invert),
    "corrupt": Shift(corrupt, checks={
        "corruption": partial(checks.string, choices=tuple(CORRUPTIONS)),
        "severity": partial(checks.integer, low=1, high=5)}),
    "resize": Shift(resize, checks={"size": _size,
                                    "crop": partial(checks.integer, low=0, high=4096)}),
    "pad": Shift(pad, checks={"pixels": partial(checks.integer, low=1, high=4096)}),
    "channels": Shift(channels, checks={"count": _channel_count}),
    "permute": Shift(permute, checks={"seed": _seed}),
    "label-noise": Shift(label_noise, train_only=True, labels="classes",
                         checks={"rate": partial(checks.number, low=0, high=1)}),
    "class-subset": Shift(class_subset, labels="classes", checks={
        "classes": partial(checks.number_list, low=0, integer=True)}),
    "class-prior": Shift(class_prior, labels="classes", checks={
        "weights": partial(checks.number_list, low=0)}),
    "angle": Shift(angle, labels="continuous", checks={
        "degrees": partial(checks.number, low=0, high=180)}),
    "gain": Shift(gain, checks={"factor": partial(checks.number, low=-1e6, high=1e6),
                                "noise": partial(checks.number, low=0, high=1e6)}),
    "token-dropout": Shift(token_dropout, checks={
        "rate": partial(checks.number, low=0, high=1)}),
}


def validate_shift(spec: dict) -> tuple[Shift, dict]:
    """The shift a spec names and its options, or an error naming the unknown parts (any
    sequence stands for a list)."""
    spec = checks.plain(spec)
    if not isinstance(spec, dict) or "name" not in spec:
        raise InputError("", f"entry {spec!r} has no name",
                         expected="a table like {name = 'rotate', degrees = 30}")
    options = {k: v for k, v in spec.items() if k != "name"}
    shift = SHIFTS.get(spec["name"]) if isinstance(spec["name"], str) else None
    if shift is None:
        raise InputError("name", f"unknown shift {spec['name']!r}",
                         expected=f"one of {', '.join(sorted(SHIFTS))}")
    params = inspect.signature(shift.fn).parameters
    reject_unknown(options, shift.options, what=f"option of {spec['name']!r}")
    missing = [p for p in shift.options if params[p].default is inspect.Parameter.empty
               and p not in options]
    if missing:
        raise InputError(missing[0], f"{spec['name']!r} misses option {', '.join(missing)}",
                         expected=f"options {shift.options}")
    for key, value in options.items():
        shift.checks[key](value, key)
    return shift, options


def apply_shifts(domain: Domain, specs: list[dict], rng: np.random.Generator, *,
                 train: bool = True) -> Domain:
    """Apply ``specs`` in order; ``train=False`` skips train-only shifts (label noise)."""
    for i, spec in enumerate(specs):
        try:
            shift, options = validate_shift(spec)
            if shift.train_only and not train:
                continue
            if shift.fn in (label_noise, class_subset) and domain.y is None:
                raise InputError("name", f"{spec['name']!r} needs labels but {domain.name!r} has none")
            domain = shift.fn(domain, rng, **options)
        except InputError as exc:
            raise exc.within("", f"shifts[{i}]") from None
    return domain

"""Checks of single values from user input: each returns the value or raises an
:class:`~scenarios.errors.InputError` naming the field and what was expected."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scenarios.errors import InputError


def plain(value):
    """A value from Python as a suite file would give it: a tuple, NumPy array, tensor or
    other sequence (not a string) as a list, a NumPy or torch scalar as a Python number,
    inside dicts and lists too. The Python API takes any sequence where a suite takes a
    list."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, str | bytes | bool | int | float) or value is None:
        return value
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, torch tensors
        return plain(value.tolist())
    if isinstance(value, Sequence | range):
        return [plain(v) for v in value]
    return value


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value, field: str, *, low: float | None = None, high: float | None = None,
           open_low: bool = False, integer: bool = False, what: str | None = None):
    """A finite number (an integer with ``integer``; booleans are not numbers) in
    ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = _is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise InputError(field, f"is {value!r}", expected=what or _describe(
            low, high, open_low, integer))
    return value


def _describe(low, high, open_low, integer) -> str:
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if open_low else '['}{low}, {high}]"
    if low is not None:
        return f"{kind} {'>' if open_low else '>='} {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def integer(value, field: str, low: int | None = None, high: int | None = None,
            what: str | None = None) -> int:
    return number(value, field, low=low, high=high, integer=True, what=what)


def boolean(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(field, f"is {value!r}", expected="true or false")
    return value


def string(value, field: str, choices=None) -> str:
    if not isinstance(value, str) or (choices is not None and value not in choices):
        raise InputError(field, f"is {value!r}", expected=f"one of {', '.join(choices)}"
                         if choices is not None else "a string")
    return value


def number_list(value, field: str, *, low: float | None = None, high: float | None = None,
                integer: bool = False, min_length: int = 1, max_length: int = 100_000) -> list:
    """A list of numbers (integers with ``integer``) in ``[low, high]``."""
    kind = "integers" if integer else "finite numbers"
    if not isinstance(value, list) or not min_length <= len(value) <= max_length:
        raise InputError(field, f"is {value!r}", expected=f"a list of {min_length} or more "
                         f"{kind}")
    for i, v in enumerate(value):
        number(v, f"{field}[{i}]", low=low, high=high, integer=integer)
    return value

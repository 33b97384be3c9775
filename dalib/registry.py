"""The method registry with the built-in methods registered: the tables and checks of
:mod:`dalib.entries`, after :mod:`dalib.catalog` has registered the built-ins through the
public calls of :mod:`dalib.plugins`. Import registry names from here. The imports point one
way: registry -> catalog -> plugins -> entries."""

from dalib import catalog  # noqa: F401  (registers the built-in methods and terms)
from dalib.entries import (
    OPTIM,
    REGISTRY,
    STREAM_ONLY,
    TERMS,
    Entry,
    TermEntry,
    build_method,
    check_method,
    check_value,
    keyword_options,
    lookup,
    with_recipe,
)

__all__ = ["OPTIM", "REGISTRY", "STREAM_ONLY", "TERMS", "Entry", "TermEntry", "build_method",
           "check_method", "check_value", "keyword_options", "lookup",
           "with_recipe"]

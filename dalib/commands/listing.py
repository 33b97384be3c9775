"""``dalib list``: datasets, formats, shifts, streams, backbones, selection criteria, recipes,
methods, built-in suites and reproduction entries, with their options."""

from __future__ import annotations

import argparse
from pathlib import Path


def _options(fn, skip: int = 1) -> str:
    """``key=default`` for the keyword options of a callable (after ``skip`` positionals)."""
    import inspect

    params = list(inspect.signature(fn).parameters.values())[skip:]
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                     for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                     and p.name != "data_root") or "-"


def _from(origin: str | None) -> str:
    return f"  [plugin {Path(origin).name}]" if origin else ""


def cmd_list(args: argparse.Namespace) -> int:
    from dalib import plugins
    from dalib.models import BACKBONES
    from dalib.registry import REGISTRY
    from dalib.selection import HIGHER_IS_BETTER
    from scenarios.datasets import DATASETS
    from scenarios.formats import FORMAT_HELP, FORMAT_KEYS
    from scenarios.recipes import RECIPES
    from scenarios.reproduction import ENTRIES_DIR
    from scenarios.shifts import SHIFTS
    from scenarios.stream import PROTOCOLS, STREAMS
    from scenarios.suite import NPZ_KEYS, builtin_suites

    plugins.load_entry_points()
    plugins.load_all([plugins.resolve(p, Path.cwd()) for p in args.plugin])
    print("datasets ({ dataset = NAME, ...options }):")
    for name, fn in DATASETS.items():
        title = getattr(fn, "title", None) or (fn.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<14} {title}{_from(plugins.DATASET_ORIGINS.get(name))}")
        print(f"  {'':<14} options: {_options(fn, 0)}")
        if getattr(fn, "counts", None):  # a benchmark: its manifest
            splits = "; splits: all, " + ", ".join(fn.splits) if getattr(fn, "splits", None) \
                else ""
            print(f"  {'':<14} domains: "
                  + ", ".join(f"{d} ({n:,})" for d, n in fn.counts.items())
                  + f"; {len(fn.classes)} classes{splits}")
        elif getattr(fn, "domain_names", None) and fn.domain_names():
            print(f"  {'':<14} domains: {', '.join(fn.domain_names())}")
    print("data formats:")
    print(f"  {'npz':<14} {{ npz = FILE }} arrays x, y, optional task, classes, domain; keys "
          f"{', '.join(sorted(NPZ_KEYS - {'npz'}))}")
    for kind, help_text in FORMAT_HELP.items():
        keys = ", ".join(sorted(FORMAT_KEYS[kind] - {kind}))
        print(f"  {kind:<14} {{ {kind} = PATH }} {help_text}; keys {keys}, shifts")
    print("shifts:")
    for name, shift in SHIFTS.items():
        opts = ", ".join(shift.options) or "-"
        print(f"  {name:<14} options: {opts}{'  (training data only)' if shift.train_only else ''}")
    print(f"streams: {', '.join(STREAMS)}; protocols: {', '.join(PROTOCOLS)}")
    print("backbones ([model] arch = NAME, other keys are its options; bottleneck = WIDTH):")
    for name, fn in BACKBONES.items():
        print(f"  {name:<14} options: {_options(fn)}{_from(plugins.BACKBONE_ORIGINS.get(name))}")
    print("selection criteria (scenario key selection): " + ", ".join(
        f"{c} ({'higher' if up else 'lower'} is better)" for c, up in HIGHER_IS_BETTER.items()))
    print("recipes (recipe = NAME, suite or scenario; its own keys override):")
    for name, r in RECIPES.items():
        keys = {**r.optim, **{f"model.{k}": v for k, v in r.model.items()},
                **{f"budget.{k}": v for k, v in r.budget.items()}}
        print(f"  {name:<14} {', '.join(f'{k}={v!r}' for k, v in keys.items())}")
        print(f"  {'':<14} from {r.source}")
    print("methods:")
    for name, e in REGISTRY.items():
        print(f"  {name:<14} [{e.kind}] {e.description}{_from(e.origin)}")
        print(f"  {'':<14} hyperparameters: "
              + ", ".join(f"{k}={v}" for k, v in e.hyperparameters().items()))
    print("suites:")
    for name, desc in builtin_suites().items():
        print(f"  {name:<14} {desc}")
    print("reproduction entries (dalib reproduce --entry NAME):")
    for name, desc in builtin_suites(ENTRIES_DIR).items():
        print(f"  {name:<26} {desc}")
    return 0

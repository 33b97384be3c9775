"""Extending dalib: register methods, adaptation terms, backbones and datasets, and load the
plugins that register them.

A plugin is a Python file or an importable module whose top level calls these functions. A
suite names its plugins (``plugins = ["my_methods.py", "mypkg.dalib_ext"]``, files relative to
the suite), ``dalib run --plugin`` adds more, and installed packages register through the
entry-point group ``dalib.plugins``. Worker processes (``--jobs``, Ray) load the same plugins
before running anything. Every entry remembers the plugin it came from; a run that uses one
has the plugin's source digest in its configuration hash, so editing a plugin re-runs exactly
the runs that use it. The built-in methods are registered with these same calls
(:mod:`dalib.catalog`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dalib import entries
from scenarios.errors import InputError

LOADED: dict[str, str] = {}  # plugin (resolved path or module name) -> digest of its source
_LOADING: list[str] = []  # the plugin being loaded, if any
BACKBONE_ORIGINS: dict[str, str] = {}
DATASET_ORIGINS: dict[str, str] = {}
ENTRY_POINT_GROUP = "dalib.plugins"
BUILTIN = "<built-in>"  # the origin of dalib's own registrations (dalib.catalog)
# who registered each (kind, name) through these calls: a plugin, BUILTIN, or None (Python)
OWNERS: dict[tuple[str, str], str | None] = {}


def _origin() -> str | None:
    """The plugin being loaded (None for dalib's own registrations and plain Python)."""
    return _LOADING[-1] if _LOADING and _LOADING[-1] != BUILTIN else None


@contextmanager
def builtins() -> Iterator[None]:
    """Registrations inside are dalib's own (:mod:`dalib.catalog`)."""
    with _loading(BUILTIN):
        yield


def _summary(obj, description: str | None) -> str:
    """The description given, else the first paragraph of the object's own docstring on one
    line (never a base class's: an undocumented method subclass says it has none)."""
    own = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    text = " ".join(inspect.cleandoc(own).split("\n\n")[0].split()) if own else ""
    return description or text or "(no description: give it a docstring or description=...)"


def _claim(kind: str, name: str, taken: bool, call: str, replace: bool) -> None:
    """Take ``name`` for a registration of ``kind``. A name a built-in or another plugin
    already has is refused (a plugin file: an input error naming the file; plain Python: a
    ``ValueError``) unless the call says ``replace=True``; the same plugin (or the same
    Python session) registering a name again replaces its own entry."""
    me = _LOADING[-1] if _LOADING else None
    key = (kind, name)
    if taken and not replace and (key not in OWNERS or OWNERS[key] != me or me == BUILTIN):
        owner = OWNERS.get(key, BUILTIN)
        holder = f"the built-in {kind}" if owner == BUILTIN else \
            f"plugin {Path(owner).name}" if owner else "a registration made in Python"
        problem = f"registers {kind} {name!r}, which {holder} already has"
        expected = f"another name, or {call}({name!r}, ..., replace=True) to replace it"
        if me is None:
            raise ValueError(f"{problem} (expected {expected})")
        raise InputError("plugins", f"{Path(me).name} {problem}", expected=expected, source=me)
    OWNERS[key] = me


def register_method(name: str, cls: type | None = None, *, kind: str = "transfer",
                    description: str | None = None, defaults: dict | None = None,
                    replace: bool = False, **fixed):
    """Register a :class:`~dalib.method.Method` subclass under ``name`` for ``kind``
    (``"transfer"`` or ``"stream"``); ``fixed`` options are passed to every instance, and
    ``defaults`` change the class's defaults. A name dalib or another plugin already has is
    refused unless ``replace=True`` (then runs of that name record this plugin). Usable as a
    class decorator."""
    if kind not in ("transfer", "stream", "test-time"):
        raise ValueError(f"kind is {kind!r}, expected 'transfer', 'stream' or 'test-time'")

    def add(cls: type) -> type:
        _check_name(name, cls)
        _claim("method", name, name in entries.REGISTRY, "register_method", replace)
        entries.REGISTRY[name] = entries.Entry(name, kind, cls, _summary(cls, description),
                                               fixed, defaults=defaults or {},
                                               origin=_origin())
        return cls

    return add if cls is None else add(cls)


def register_term(name: str, cls: type | None = None, description: str | None = None, *,
                  replace: bool = False, **fixed):
    """Register an adaptation :class:`~dalib.adaptation.base.Term` under ``name``: it is a
    method on its own (the source loss plus the term) and combines with others by ``+``
    (``dann+NAME``). A name dalib or another plugin already has is refused unless
    ``replace=True``. Usable as a class decorator."""

    def add(cls: type) -> type:
        _check_name(name, cls)
        if "+" in name:
            raise ValueError(f"term name {name!r} has a '+', which joins terms")
        _claim("method", name, name in entries.REGISTRY or name in entries.TERMS,
               "register_term", replace)
        origin = _origin()
        summary = _summary(cls, description)
        entries.TERMS[name] = entries.TermEntry(cls, summary, fixed, origin=origin)
        entries.REGISTRY[name] = entries.Entry(name, "transfer", entries.Adaptation, summary,
                                               terms=(name,), origin=origin)
        return cls

    return add if cls is None else add(cls)


def register_backbone(name: str, factory: Callable | None = None, *, replace: bool = False):
    """Register a backbone: ``factory(input_shape, **options)`` returns any ``nn.Module``
    mapping a batch of inputs to a batch of feature vectors; its width is read from an
    ``out_features`` attribute or found by one forward pass. ``[model] arch = NAME`` selects
    it and the other ``[model]`` keys are its options. A name dalib or another plugin
    already has is refused unless ``replace=True``. Usable as a decorator."""
    from dalib import models

    def add(factory: Callable) -> Callable:
        _check_name(name, factory)
        _claim("backbone", name, name in models.BACKBONES, "register_backbone", replace)
        models.BACKBONES[name] = factory
        BACKBONE_ORIGINS.pop(name, None)
        if _origin():
            BACKBONE_ORIGINS[name] = _origin()
        return factory

    return add if factory is None else add(factory)


def register_dataset(name: str, loader: Callable | None = None, *, files: Callable | None = None,
                     replace: bool = False):
    """Register a dataset: ``loader(root, **options)`` gets the data root (``--data-root``,
    ``$DALIB_DATA`` or ``~/.cache/dalib``) and the data table's other keys, and returns
    ``(x, y)`` arrays, a dict with ``x``, ``y`` (and optional ``classes``, ``task``), a
    map-style torch ``Dataset`` of ``(x, y)`` pairs or a :class:`~scenarios.domain.Domain`.
    ``files(root, **options)`` lists the files it reads: their contents then enter every
    run's identity, so a run is never reported as cached after they change (without it,
    only the loader's code does). ``{ dataset = NAME, ... }`` in a suite loads it. A name
    dalib or another plugin already has is refused unless ``replace=True``. Usable as a
    decorator."""
    from scenarios.datasets import DATASETS, user_dataset

    def add(loader: Callable) -> Callable:
        _check_name(name, loader)
        _claim("dataset", name, name in DATASETS, "register_dataset", replace)
        user_dataset(name, loader, files)
        DATASET_ORIGINS.pop(name, None)
        if _origin():
            DATASET_ORIGINS[name] = _origin()
        return loader

    return add if loader is None else add(loader)


def register_benchmark(benchmark, *, replace: bool = False):
    """Register a benchmark described as data (:class:`scenarios.benchmarks.ImageBenchmark`:
    domains with their image counts, classes in the reference order, the layouts of its
    copies): ``{ dataset = benchmark.name, domain = ... }`` then reads a copy, checked
    against its manifest. A subset of a built-in benchmark is one
    ``dataclasses.replace(OFFICE31, name=..., counts={...})`` away. Returns it."""
    from scenarios.benchmarks import ImageBenchmark
    from scenarios.datasets import DATASETS

    if not isinstance(benchmark, ImageBenchmark):
        raise TypeError(f"cannot register {benchmark!r}: expected an ImageBenchmark")
    _check_name(benchmark.name, benchmark)
    _claim("dataset", benchmark.name, benchmark.name in DATASETS, "register_benchmark", replace)
    DATASETS[benchmark.name] = benchmark
    DATASET_ORIGINS.pop(benchmark.name, None)
    if _origin():
        DATASET_ORIGINS[benchmark.name] = _origin()
    return benchmark


def _check_name(name, obj) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"cannot register {obj!r} as {name!r}: expected a non-empty name")


def _digest_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _module_files(module) -> list[Path]:
    """The source files of a module (every ``.py`` file of a package)."""
    file = getattr(module, "__file__", None)
    if not file:
        return []
    path = Path(file)
    if path.name == "__init__.py":
        return sorted(path.parent.rglob("*.py"))
    return [path]


@contextmanager
def _loading(spec: str) -> Iterator[None]:
    _LOADING.append(spec)
    try:
        yield
    finally:
        _LOADING.pop()


def resolve(spec: str, base_dir: Path | None = None) -> str:
    """A plugin as the loader takes it: a ``.py`` file (made absolute against ``base_dir``)
    or an importable module name."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return str(path.resolve())
    return spec


def load(spec: str) -> str:
    """Load one plugin (a resolved file path or a module name); returns its digest. A file
    is loaded again when its contents changed since (a long-lived process sees the edit). A
    plugin that cannot be loaded is an input error naming it and the reason."""
    is_file = spec.endswith(".py") or "/" in spec
    name = "dalib_plugin_" + hashlib.sha256(spec.encode()).hexdigest()[:12]
    if spec in LOADED and (not is_file or not Path(spec).is_file()
                           or _digest_files([Path(spec)]) == LOADED[spec]):
        return LOADED[spec]
    with _loading(spec):
        try:
            if is_file:
                path = Path(spec)
                if not path.is_file():
                    raise InputError("plugins", f"file {spec!r} does not exist",
                                     expected="a Python file or an importable module")
                if str(path.parent) not in sys.path:  # its sibling modules import as usual
                    sys.path.append(str(path.parent))
                module_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[name] = module
                module_spec.loader.exec_module(module)
                files = [path]
            else:
                module = importlib.import_module(spec)
                files = _module_files(module)
        except InputError:
            raise
        except Exception as exc:  # a plugin's own error, reported on one line
            sys.modules.pop(name, None)
            raise InputError("plugins", f"{spec!r} failed to load ({type(exc).__name__}: "
                             f"{exc})", expected="a plugin that imports without error") from None
    LOADED[spec] = _digest_files(files) if files else "module"
    return LOADED[spec]


def load_all(specs: list[str]) -> None:
    """Load plugins (resolved) in order."""
    for spec in specs:
        load(spec)


def load_entry_points() -> None:
    """Load the plugins installed packages declare in the ``dalib.plugins`` entry-point
    group (each names a module)."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        load(ep.value.split(":")[0])


def digests(origins: set[str]) -> dict[str, str]:
    """``{plugin: digest}`` for the plugins a run uses (the file name stands for a file, so a
    moved directory keeps its hashes)."""
    return {Path(o).name if o.endswith(".py") else o: LOADED.get(o, "?") for o in sorted(origins)}

"""Several source domains in one scenario: multi-source adaptation and domain generalization.

A transfer scenario's ``source`` may be a list of data tables, one domain each: they are
pooled into one training set whose samples keep their environment (``env``, the index of
their source domain, named in ``envs``), which domain-generalization methods read (IRM,
GroupDRO, VREx, ...) and single-source methods ignore. Splits keep every source domain's
share of every class in each part, so the held-out source part is DomainBed's
training-domain validation set.

A scenario with ``domains`` instead of ``source`` and ``target`` is a leave-one-domain-out
family (Gulrajani & Lopez-Paz, "In Search of Lost Domain Generalization", ICLR 2021): one
scenario per held-out domain, named ``NAME/DOMAIN``, training on all the others and tested
on it. ``domains`` is a list of data tables (one domain each) or one table holding several
domains (a built-in multi-domain dataset, a ``root/domain/class/image`` folder without
``domain``, an ``.npz`` with a ``domain`` array); ``test_domains`` (default ``"each"``)
names the held-out ones. Without unlabelled target data (``target_data = "none"``, the
default of a family) the scenarios are domain generalization; ``target_data =
"unlabelled"`` gives the held-out domain's training part to adaptation methods
(multi-source domain adaptation).

``selection = "leave-one-domain-out"`` on a family adds DomainBed's leave-one-domain-out
validation: for each held-out domain and each other domain ``v``, a validation scenario
``NAME/DOMAIN/validate-v`` trains on the remaining domains and is tested on ``v``; the
checkpoint (and, in a search, the configuration) whose mean accuracy over these validation
domains is highest is the pick (:mod:`dalib.domain_validation`). It costs one run per
validation domain and needs three or more domains.

``leave_one_source_out = true`` measures what each source domain does to each held-out one:
for every held-out domain and every source ``s``, a scenario ``NAME/DOMAIN/without-s``
trains on the other sources; the report's effect of ``s`` is the held-out accuracy with all
sources minus without ``s``, paired over seeds (negative: adding ``s`` hurts, negative
transfer across domains).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scenarios import formats
from scenarios.datasets import DATASETS
from scenarios.domain import Domain, concat
from scenarios.errors import InputError

TARGET_DATA = ("unlabelled", "none")
LODO = "leave-one-domain-out"  # a family's selection protocol (DomainBed's)


def domain_names(spec: dict, base_dir: Path | None) -> list[str]:
    """The domains a data table holds, without loading its samples: a built-in multi-domain
    dataset's, a folder's ``domain`` subfolders, the values of an ``.npz``'s ``domain``
    array, a table's ``domain_column``; a table that names one domain (``domain = ...``) or
    holds one gives ``[]``."""
    if "domain" in spec:
        return []
    if "dataset" in spec:
        loader = DATASETS.get(spec["dataset"])
        names = getattr(loader, "domain_names", None)
        options = {k: v for k, v in spec.items() if k not in ("dataset", "shifts")}
        return list(names(**options)) if names else []
    if "folder" in spec:
        root = formats.resolve_path(spec["folder"], base_dir)
        if not root.is_dir():
            raise InputError("folder", f"{str(root)!r} is not a folder", expected="a folder "
                             "of domain folders, each holding a folder per class: "
                             "root/domain/class/image (e.g. PACS/art_painting/dog/1.jpg; "
                             "unpack the dataset there, nothing is downloaded)")
        subfolders = sorted(p for p in root.iterdir() if p.is_dir())
        # a domain tree holds class folders in each domain folder; a plain folder images
        nested = subfolders and all(any(q.is_dir() for q in p.iterdir()) for p in subfolders)
        return [p.name for p in subfolders] if nested else []
    if "table" in spec and "domain_column" in spec:
        return formats.table_domains(spec, base_dir)
    if "npz" in spec:
        path = formats.resolve_path(spec["npz"], base_dir)
        try:
            with np.load(path, allow_pickle=False) as data:
                if "domain" in data.files:
                    return sorted({str(v) for v in data["domain"].tolist()})
        except (OSError, ValueError):
            return []  # loading the file names the problem
    return []


def one_per_domain(tables: dict | list, base_dir: Path | None, field: str
                   ) -> list[tuple[str, dict]]:
    """``(name, table)`` per domain of a ``domains`` entry: a list of tables (one domain
    each; a table holding several is an error there) or one table holding several."""
    if isinstance(tables, dict):
        try:
            names = domain_names(tables, base_dir)
        except InputError as exc:
            raise exc.within("", field) from None
        if len(names) < 2:
            raise InputError(field, f"{tables!r} holds {len(names) or 'one'} domain",
                             expected="a list of two or more data tables, or one table "
                             "holding several domains (a multi-domain dataset, a "
                             "root/domain/class/image folder, an .npz with a domain array, "
                             "a CSV or Parquet table with domain_column = COLUMN)")
        return [(name, {**tables, "domain": name}) for name in names]
    if not isinstance(tables, list) or len(tables) < 2:
        raise InputError(field, f"is {tables!r}", expected="two or more data tables")
    out = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise InputError(f"{field}[{i}]", f"is {table!r}", expected="a data table")
        if len(domain_names(table, base_dir)) > 1:
            raise InputError(f"{field}[{i}]", "holds several domains",
                             expected="one domain per table (domain = NAME)")
        out.append((table_name(table, i), table))
    names = [n for n, _ in out]
    if len(set(names)) < len(names):
        out = [(f"{n}-{i}", t) for i, (n, t) in enumerate(out)]
    return out


def table_name(table: dict, index: int) -> str:
    """A short name for the domain a data table holds."""
    if "domain" in table:
        return str(table["domain"])
    for key in ("dataset", "folder", "list", "table", "npz"):
        if key in table and isinstance(table[key], str):
            return Path(table[key]).stem or f"domain{index}"
    return f"domain{index}"


def leave_one_out(table: dict, base_dir: Path | None, field: str) -> list[dict]:
    """The scenario tables of a ``domains`` family: one per held-out domain (``test_domains``,
    default every one), with the other domains as the source list and the held-out one as
    the target; ``family`` and ``held_out`` name them in the results."""
    domains = one_per_domain(table["domains"], base_dir, f"{field}.domains")
    names = [n for n, _ in domains]
    test = table.get("test_domains", "each")
    if test == "each":
        test = names
    if not isinstance(test, list) or not test or any(str(t) not in names for t in test):
        raise InputError(f"{field}.test_domains", f"is {test!r}",
                         expected=f"'each' or a list of some of {', '.join(names)}")
    target_data = table.get("target_data", "none")
    if target_data not in TARGET_DATA:
        raise InputError(f"{field}.target_data", f"is {target_data!r}",
                         expected=" or ".join(repr(t) for t in TARGET_DATA))
    family = table.get("name", "domains")
    lodo = table.get("selection") == LODO
    if lodo and (target_data != "none" or len(names) < 3):
        raise InputError(f"{field}.selection", f"is {LODO!r} with {len(names)} domains and "
                         f"target_data = {target_data!r}", expected="three or more domains "
                         "and target_data = 'none' (a validation domain is never trained on)")
    ablate = table.get("leave_one_source_out", False)
    if not isinstance(ablate, bool) or (ablate and len(names) < 3):
        raise InputError(f"{field}.leave_one_source_out", f"is {ablate!r} with {len(names)} "
                         "domains", expected="true or false (true: three or more domains)")
    rest = {k: v for k, v in table.items()
            if k not in ("domains", "test_domains", "name", "leave_one_source_out")}
    if lodo:  # each run's own checkpoint pick: training-domain validation
        rest["selection"] = "source-val"
    out = []
    for held in (str(t) for t in test):
        base = {**rest, "family": family, "held_out": held, "target_data": target_data}
        validation = [n for n in names if lodo and n != held]
        out.append({**base, "name": f"{family}/{held}",
                    **({"validation_domains": validation} if lodo else {}),
                    "source": [t for n, t in domains if n != held],
                    "target": next(t for n, t in domains if n == held)})
        for val in validation:
            out.append({**base, "name": f"{family}/{held}/validate-{val}",
                        "validation_domain": val,
                        "source": [t for n, t in domains if n not in (held, val)],
                        "target": next(t for n, t in domains if n == val)})
        for left in (n for n in names if ablate and n != held):
            out.append({**base, "name": f"{family}/{held}/without-{left}",
                        "without_source": left,
                        "source": [t for n, t in domains if n not in (held, left)],
                        "target": next(t for n, t in domains if n == held)})
    return out

def pool(domains: list[Domain], names: list[str], name: str) -> Domain:
    """Source domains as one training set: each sample's ``env`` is the index of its domain,
    ``envs`` their names. They must share classes and input shape."""
    first = domains[0]
    for i, d in enumerate(domains[1:], 1):
        if d.classes != first.classes:
            raise InputError(f"source[{i}]", f"{d.name!r} has classes {list(d.classes)[:10]}",
                             expected=f"the classes of source[0], {list(first.classes)[:10]}")
    pooled = concat([d.with_(env=None, envs=()) for d in domains], name)
    env = torch.cat([torch.full((len(d),), i) for i, d in enumerate(domains)])
    masks = [d.test_mask for d in domains]
    test_mask = torch.cat(masks) if all(m is not None for m in masks) else None
    return pooled.with_(env=env, envs=tuple(names), test_mask=test_mask)

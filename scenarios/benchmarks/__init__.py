"""The field's benchmarks by name, read from the user's copy in its usual layout: each is a
dataset (``{ dataset = "office31", domain = "amazon" }``) whose domains, classes and splits
are the reference libraries', and whose copy is checked against a manifest before anything
runs. One module per family; :class:`ImageBenchmark` and :class:`Layout` describe more
(``dalib.register_benchmark``)."""

from __future__ import annotations

from scenarios.benchmarks.camelyon import Camelyon17
from scenarios.benchmarks.cifar import Cifar, CifarC
from scenarios.benchmarks.core50 import CORe50
from scenarios.benchmarks.domainbed import PACS, TERRA_INCOGNITA, VLCS
from scenarios.benchmarks.domainnet import DOMAINNET
from scenarios.benchmarks.factors import DSPRITES, MPI3D
from scenarios.benchmarks.imagenet import ImageNetC, TinyImageNet
from scenarios.benchmarks.office import OFFICE31, OFFICE_HOME
from scenarios.benchmarks.tree import ImageBenchmark, Layout
from scenarios.benchmarks.visda import VISDA2017

__all__ = ["BENCHMARKS", "ImageBenchmark", "Layout"]

BENCHMARKS = {b.name: b for b in (
    OFFICE31, OFFICE_HOME, VISDA2017, DOMAINNET, PACS, VLCS, TERRA_INCOGNITA,
    Cifar(10), Cifar(100), CifarC(10), CifarC(100), ImageNetC(), TinyImageNet(),
    Camelyon17(), CORe50(), DSPRITES, MPI3D)}

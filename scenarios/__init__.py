"""Data and scenario suites for dalib: domains, shifts, transfer scenarios, streams, suite files.

This package imports nothing of ``dalib`` or ``analysis``.
"""

from scenarios.datasets import DATASETS, data_roots, load_dataset
from scenarios.domain import Domain, from_arrays, from_dataset, load_npz
from scenarios.errors import InputError
from scenarios.shifts import SHIFTS, apply_shifts
from scenarios.stream import PROTOCOLS, Stream, Task, build_stream
from scenarios.suite import Suite, load_suite
from scenarios.transfer import TransferScenario, build_transfer

__all__ = ["DATASETS", "PROTOCOLS", "SHIFTS", "Domain", "InputError", "Stream", "Suite", "Task",
           "TransferScenario", "apply_shifts", "build_stream", "build_transfer", "data_roots",
           "from_arrays", "from_dataset", "load_dataset", "load_npz", "load_suite"]

"""dalib: transfer learning under distribution shift (domain adaptation, fine-tuning, continual
learning) with negative-transfer and forgetting metrics.

``import dalib`` is light: it imports neither avalanche nor the method modules. It sets
``OPENBLAS_NUM_THREADS=1`` unless already set: the OpenBLAS that scipy loads (through
scikit-learn) keeps a thread spinning between calls, which takes a core from torch's threads
(the quick suite trained 2.2x slower on 2 cores); dalib's numpy and scipy work is small.
OpenBLAS reads the variable when it loads, so this holds where dalib is imported before scipy.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.6.0"

PUBLIC = {"build_method": "dalib.registry", "register_method": "dalib.plugins",
          "register_term": "dalib.plugins", "register_backbone": "dalib.plugins",
          "register_dataset": "dalib.plugins", "register_benchmark": "dalib.plugins",
          "packable": "dalib.pack.modules", "load_model": "dalib.kept",
          "Method": "dalib.method", "Term": "dalib.adaptation.base",
          "Outputs": "dalib.adaptation.base", "Batch": "dalib.engine"}


def __getattr__(name: str):
    """The extension API, imported on first use (``dalib.register_method``, ``dalib.Method``,
    ...): ``import dalib`` itself stays light."""
    if name in PUBLIC:
        import importlib

        if name.startswith("register"):
            importlib.import_module("dalib.registry")  # the built-ins first
        return getattr(importlib.import_module(PUBLIC[name]), name)
    raise AttributeError(f"module 'dalib' has no attribute {name!r}")

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

__version__ = "0.1.0"

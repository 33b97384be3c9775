"""dalib: transfer learning under distribution shift (domain adaptation, fine-tuning, continual
learning) with negative-transfer and forgetting metrics.

``import dalib`` is light: it imports neither avalanche nor the method modules.
"""

__version__ = "0.1.0"

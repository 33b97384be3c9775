"""Training recipes of the reference libraries, as data: a suite (or one scenario) names one
with ``recipe = "NAME"`` and its runs start from the library's optimizer, learning-rate
schedule, per-layer rates, augmentation, normalisation layers, bottleneck, weight decay and
batch size; the suite's own ``[optim]``, ``[model]`` and ``[budget]`` keys and a method's
options override any of them. A method takes the recipe's optimizer settings it has (a
test-time method no augmentation); model keys apply to the backbones that take them.

* ``tllib``: TLlib's image-classification recipe for domain adaptation (``examples/
  domain_adaptation/image_classification/dann.py`` and its siblings, thuml/
  Transfer-Learning-Library): SGD, momentum 0.9, rate 0.01 decayed as
  ``(1 + 0.001 t)^-0.75`` over the steps ``t``, the backbone at 0.1 x the rate, weight decay
  1e-3, a 256-wide bottleneck (linear, batch norm, ReLU), random resized crops with flips,
  batches of 32. Not reproduced: Nesterov momentum (plain momentum here).
* ``domainbed``: DomainBed's defaults (``domainbed/hparams_registry.py``,
  facebookresearch/DomainBed): Adam at 1e-3, no weight decay, a constant rate, batches of 64
  per domain, no augmentation (its MNIST datasets have none), no batch norm in the MLP and
  small CNNs (its MNIST CNN uses group norm: ``arch = "mnist-cnn"``).
* ``avalanche``: the SGD setting of Avalanche's examples (``examples/*.py``,
  ContinualAI/avalanche): SGD at 1e-3, momentum 0.9, no weight decay, no augmentation, a
  constant rate, the optimizer's state reset at each task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scenarios import checks


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    optim: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)


RECIPES = {r.name: r for r in (
    Recipe("tllib", "thuml/Transfer-Learning-Library, examples/domain_adaptation/"
           "image_classification (dann.py, cdan.py, ...)",
           optim={"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3,
                  "schedule": "inverse", "backbone_lr": 0.1, "augmentation": "crop-flip"},
           model={"bottleneck": 256}, budget={"batch_size": 32}),
    Recipe("domainbed", "facebookresearch/DomainBed, domainbed/hparams_registry.py",
           optim={"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                  "schedule": "constant", "augmentation": "none"},
           model={"batch_norm": False}, budget={"batch_size": 64}),
    Recipe("avalanche", "ContinualAI/avalanche, examples (SGD, lr 0.001, momentum 0.9)",
           optim={"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0,
                  "schedule": "constant", "augmentation": "none", "reset_optimizer": True}),
)}
BATCH_NORM_ARCHS = ("auto", "mlp", "lenet", "cnn")  # the backbones with a batch_norm option


def recipe(value, field_name: str) -> Recipe:
    """The recipe a suite names (exit 2 naming ``field_name`` otherwise)."""
    return RECIPES[checks.string(value, field_name, tuple(RECIPES))]


def model_defaults(r: Recipe | None, model: dict) -> dict:
    """The recipe's model keys that the backbone ``model`` names takes."""
    if r is None:
        return {}
    arch = model.get("arch", "auto")
    return {k: v for k, v in r.model.items()
            if k != "batch_norm" or arch in BATCH_NORM_ARCHS}

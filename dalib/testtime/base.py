"""What the test-time methods share: they start from a source-trained model (its weights
loaded before :meth:`TestTimeMethod.start`), may adapt a chosen part of it, and can return
to that start (:meth:`TestTimeMethod.reset`: episodic adaptation, periodic resets)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from dalib.method import Method
from dalib.pack.modules import PackedBatchNorm
from scenarios.errors import InputError

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, PackedBatchNorm)  # a pack's too
NORMS = (*BATCH_NORMS, nn.GroupNorm, nn.LayerNorm)


def norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, NORMS)]


def batch_statistics(model: nn.Module) -> nn.Module:
    """``model`` in evaluation mode with its batch-norm layers normalising by each batch's
    own statistics (Tent's configuration)."""
    model.eval()
    for m in norm_layers(model):
        if isinstance(m, BATCH_NORMS):
            m.train()
    return model


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy (nats) of the softmax of ``logits``."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


def confident(logits: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's entropy and whether it is below ``margin`` x ln C (the confident
    samples EATA and SAR adapt on)."""
    ent = entropy_of(logits)
    return ent, ent < margin * math.log(logits.shape[-1])


class TestTimeMethod(Method):
    """A method of a ``kind = "test-time"`` scenario. :meth:`step` predicts a test batch and
    then adapts on it, returning the predictions made before adapting; the engine's online
    loop (:func:`dalib.online.run_online`) calls it batch by batch."""

    needs = ("test",)
    adapts = "norm"  # which parameters move: "norm" (affine), "all", "none" (or a subclass's)

    def __init__(self, model: nn.Module, *, name: str, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: str = "adam",
                 momentum: float = 0.9) -> None:
        super().__init__(model, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
                         momentum=momentum)
        self.name = name
        self.initial: dict[str, torch.Tensor] = {}

    def adapted_parameters(self) -> list[nn.Parameter]:
        if self.adapts == "all":
            return [p for p in self.model.parameters()]
        if self.adapts == "norm":
            return [p for m in norm_layers(self.model) for p in m.parameters()]
        return []

    def start(self, feeds: dict) -> None:
        """Called once the source model is loaded: keep its state for :meth:`reset` and
        build the optimizer over :meth:`adapted_parameters`. ``feeds`` may hold the
        unlabelled ``source_val`` part (for methods that estimate something on source-like
        data before the stream, e.g. EATA's Fisher information)."""
        self.initial = copy.deepcopy(self.model.state_dict())
        params = self.adapted_parameters()
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        self.optimizer = self.make_optimizer(params or [nn.Parameter(torch.zeros(1))],
                                             **self.optim_settings)
        self.configure()

    def check_model(self, smallest: torch.Tensor) -> None:
        """Refuse, before a run starts, a model this method would leave unadapted (it adapts
        normalisation layers and the model has none) and a stream whose ``smallest`` batch
        the model in its test-time mode cannot take (one sample through batch norm)."""
        if self.adapts == "norm" and not self.adapted_parameters():
            raise InputError("model", f"has no normalisation layer for {self.name!r} to adapt "
                             "(its result would be the unadapted model's)",
                             expected="a model with batch norm (model.batch_norm = true for "
                             "the MLP; lenet and the CNNs have it), or a method that adapts "
                             "other parameters")
        self.configure()
        try:
            with torch.no_grad():
                self.model(smallest)
        except ValueError as exc:
            raise InputError("test_batch_size", f"leaves a batch of {len(smallest)} sample(s) "
                             f"that {self.name!r} cannot normalise by its own statistics "
                             f"({str(exc).splitlines()[0]})", expected="a test_batch_size "
                             "that leaves no single sample over at the end of the stream") \
                from None

    def configure(self) -> None:
        """Put the model in its test-time mode (default: evaluation mode, batch-norm layers
        on each batch's statistics, as Tent)."""
        batch_statistics(self.model)

    def reset(self) -> None:
        """Back to the source model and a fresh optimizer (and method state)."""
        self.model.load_state_dict(self.initial)
        self.optimizer.state.clear()
        self.configure()

    def step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def descend(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x)

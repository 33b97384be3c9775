"""Bridge to Avalanche (imported lazily): the same stream as an Avalanche benchmark, and
Avalanche's own strategies run inside dalib's runner on the same model, optimizer and budget,
so one suite compares ours and theirs (registered as ``avalanche:<name>``)."""

from __future__ import annotations

import torch

from dalib.continual.base import Continual
from scenarios.stream import Stream


def stream_to_benchmark(stream: Stream):
    """An Avalanche benchmark with one experience per task of ``stream`` (same samples, same
    order; task labels are the task ids under task-IL, 0 otherwise)."""
    from avalanche.benchmarks import tensors_benchmark

    task_labels = [t.id if stream.protocol == "task-il" else 0 for t in stream.tasks]
    return tensors_benchmark(train_tensors=[(t.train.x, t.train.y) for t in stream.tasks],
                             test_tensors=[(t.test.x, t.test.y) for t in stream.tasks],
                             task_labels=task_labels)


class AvalancheStrategy(Continual):
    """One of Avalanche's strategies (``strategy``: naive, ewc, replay, lwf, si, agem) with
    dalib's model and optimizer; the engine hands it whole tasks (:meth:`train_task`) and
    evaluates it like any method. ``strength`` maps to ``ewc_lambda`` / ``si_lambda``,
    ``memory`` to ``mem_size`` (replay) or, shared equally by the tasks, to A-GEM's
    ``patterns_per_exp``."""

    def __init__(self, model, *, name: str, strategy: str, strength: float = 1e4,
                 memory: int = 500, alpha: float = 1.0, temperature: float = 2.0,
                 sample_size: int = 256, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.strategy_name = strategy
        self.options = {"strength": strength, "memory": memory, "alpha": alpha,
                        "temperature": temperature, "sample_size": sample_size}
        self.strategy = None
        self.benchmark = None

    def _build(self, stream: Stream, epochs: int, batch_size: int):
        import avalanche.training as at
        from avalanche.training.plugins import EvaluationPlugin

        o = self.options
        extra = {"naive": ("Naive", {}),
                 "ewc": ("EWC", {"ewc_lambda": o["strength"]}),
                 "si": ("SynapticIntelligence", {"si_lambda": o["strength"]}),
                 "replay": ("Replay", {"mem_size": o["memory"]}),
                 "lwf": ("LwF", {"alpha": o["alpha"], "temperature": o["temperature"]}),
                 "agem": ("AGEM", {"patterns_per_exp": o["memory"] // len(stream.tasks),
                                   "sample_size": o["sample_size"]})}[self.strategy_name]
        cls = getattr(at, extra[0])
        return cls(model=self.model, optimizer=self.optimizer,
                   criterion=torch.nn.CrossEntropyLoss(), train_mb_size=batch_size,
                   train_epochs=epochs, eval_mb_size=4096, device=self.device,
                   evaluator=EvaluationPlugin(loggers=[]), **extra[1])

    def train_task(self, stream: Stream, index: int, steps: int, batch_size: int) -> None:
        """Train on task ``index`` through Avalanche, for as many epochs as ``steps`` of
        ``batch_size`` make over the task."""
        if stream.protocol == "task-il":
            raise ValueError("the Avalanche bridge runs class-IL and domain-IL streams only")
        task = stream.tasks[index]
        epochs = max(1, round(steps * batch_size / len(task.train)))
        if self.benchmark is None:
            self.benchmark = stream_to_benchmark(stream)
            self.strategy = self._build(stream, epochs, batch_size)
        self.strategy.train_epochs = epochs
        self.strategy.train(self.benchmark.train_stream[index])
        self.model.to(self.device)

    def loss(self, batch):  # the engine never steps this method batch by batch
        raise RuntimeError("AvalancheStrategy trains whole tasks through train_task()")

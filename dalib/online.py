"""The online loop of test-time adaptation, beside the offline one of :mod:`dalib.engine`:
each batch of the stream is predicted first, then adapted on (the method's
:meth:`~dalib.testtime.base.TestTimeMethod.step` returns the predictions it made before
adapting), in ``continual`` mode over the whole stream or in ``episodic`` mode from the
source model for every batch; and source-free adaptation (``offline`` mode): passes of
adaptation over the unlabelled stream, then predictions without adapting."""

from __future__ import annotations

import numpy as np
import torch

from dalib.engine import progress
from dalib.pack.modules import unpack_into
from dalib.pack.runs import pack_methods
from scenarios.testtime import TestTimeScenario


def predictions(predict, batches, total: int, desc: str) -> np.ndarray:
    """``predict(x)`` of each batch, its arg-max over classes, joined along the sample axis
    (the last: ``(N,)``, or ``(S, N)`` for a pack's stacked batches); NaN or infinite
    predictions raise ``FloatingPointError``."""
    out = []
    with progress(total, desc) as bar:
        for x in batches:
            logits = predict(x)
            if not torch.isfinite(logits).all():
                raise FloatingPointError(f"predictions are NaN or inf at batch {len(out)}")
            out.append(logits.argmax(-1).cpu().numpy())
            bar.update(1)
    return np.concatenate(out, axis=-1)


def _inputs(data: TestTimeScenario, device: torch.device, size: int | None = None):
    return (x.to(device) for x, _, _, _ in data.stream.batches(size or data.batch_size))


def _batch_count(data: TestTimeScenario) -> int:
    return -(-len(data.stream) // data.batch_size)


def run_online(method, data: TestTimeScenario, device: torch.device) -> np.ndarray:
    """The prediction of every sample of the stream, in stream order."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        if data.mode == "episodic":
            method.reset()
        return method.step(x)

    return predictions(predict, _inputs(data, device), _batch_count(data),
                       f"{method.name} online")


def run_offline(method, data: TestTimeScenario, device: torch.device, seed: int
                ) -> np.ndarray:
    """Source-free adaptation: ``data.epochs`` passes of :meth:`step` over the stream's
    samples in a random order (from ``seed``; no source sample, no label), then the
    prediction of every sample by the adapted model (:meth:`predict`, no adaptation), in
    stream order."""
    x_all, _ = data.stream.pooled
    order = data.stream.order
    g = torch.Generator().manual_seed(seed)
    with progress(data.epochs * _batch_count(data), f"{method.name} offline") as bar:
        for _ in range(data.epochs):
            shuffled = order[torch.randperm(len(order), generator=g)]
            for start in range(0, len(order), data.batch_size):
                method.step(x_all[shuffled[start:start + data.batch_size]].to(device))
                bar.update(1)
    with torch.no_grad():
        return predictions(method.predict, _inputs(data, device), _batch_count(data),
                           f"{method.name} predicts")


def test_time_pack_reason(datas: list[TestTimeScenario]) -> str | None:
    """Why test-time runs cannot adapt as one pack, or None."""
    first = datas[0]
    if first.mode != "continual":
        return f"{first.mode} test-time runs adapt one at a time"
    if any(len(d.stream) != len(first.stream) or d.batch_size != first.batch_size
           for d in datas):
        return "the seeds' streams differ in length"
    return None


def run_online_pack(methods: list, datas: list[TestTimeScenario], device: torch.device
                    ) -> np.ndarray:
    """:func:`run_online` for S runs of one method as one pack: run s adapts its own source
    model on its own stream, batches stacked ``(S, B, ...)``; the runs' own models get
    their adapted weights and statistics back. Returns ``(S, N)`` predictions."""
    lead = pack_methods(methods)
    lead.configure()  # packing leaves the model in evaluation mode
    stacked = (torch.stack(parts) for parts in zip(*(_inputs(d, device) for d in datas),
                                                    strict=True))
    preds = predictions(lead.step, stacked, _batch_count(datas[0]),
                        f"{lead.name} x {len(methods)} online")
    for s, method in enumerate(methods):
        for packed, own in zip(lead.trained_modules(), method.trained_modules(), strict=True):
            unpack_into(packed, s, own)
    return preds


def unadapted(model: torch.nn.Module, data: TestTimeScenario, device: torch.device
              ) -> np.ndarray:
    """The source model's predictions on the stream, as trained (evaluation mode)."""
    model.eval()
    with torch.inference_mode():
        return predictions(model, _inputs(data, device, 4096), -(-len(data.stream) // 4096),
                           "source model")


def source_accuracy(method, data: TestTimeScenario) -> float:
    """Accuracy on the source test part after the stream, one definition for every method:
    :meth:`predict` of the adapted method in its own test-time mode (what it deploys:
    batch-norm layers on each batch's statistics for BN, Tent, EATA, SAR, RDumb, SHOT and
    CoTTA's teacher, RoTTA's robust statistics, LAME's correction), on batches of the
    stream's test batch size (the last ones evened out), without adapting on them."""
    domain = data.offline.source_test
    device = next(method.model.parameters()).device
    method.configure()
    parts = -(-len(domain) // data.batch_size)
    with torch.no_grad():
        logits = torch.cat([method.predict(x.to(device)).float().cpu()
                            for x in domain.x.tensor_split(parts)])
    if not torch.isfinite(logits).all():
        raise FloatingPointError("the adapted model's outputs on the source test part are "
                                 "NaN or infinite: the run diverged")
    return 100.0 * float((logits.argmax(1) == domain.y.cpu()).float().mean())


def stream_record(preds: np.ndarray, data: TestTimeScenario, source_acc: float) -> dict:
    """A test-time run's record: its metrics (:func:`analysis.testtime.online_metrics` and
    ``source_acc`` after the stream) and the stream's predictions, labels, domains and
    cycles, from which every metric can be recomputed."""
    from analysis.testtime import online_metrics

    stream = data.stream
    labels = stream.pooled[1][stream.order].numpy()
    metrics = online_metrics(preds, labels, stream.domain, stream.cycle, list(stream.names))
    metrics["source_acc"] = source_acc
    return {"metrics": metrics, "online": {
        "pred": preds.tolist(), "label": labels.tolist(), "domain": stream.domain.tolist(),
        "cycle": stream.cycle.tolist(), "names": list(stream.names),
        "batch_size": data.batch_size, "mode": data.mode}}

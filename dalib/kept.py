"""Trained models kept by a sweep (``keep_models = true`` in a suite, or ``dalib run
--keep-models``): each finished transfer or stream run writes ``OUT/models/RUN_ID.pt``, its
model's weights after the last step with what is needed to use them again: the run's
identity, the ``[model]`` table it was built from, the input shape and class names, and the
preprocessing its inputs went through. :func:`load_model` rebuilds the model from the file
for inference; ``[model] init = "OUT/models/RUN_ID.pt"`` starts another run from it.

Files are read with ``torch.load(weights_only=True)``: tensors and plain values only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dalib.store import write_atomic
from scenarios.errors import InputError
from scenarios.formats import file_digest

FORMAT = 1


def preprocessing(run, data) -> dict:
    """What a kept model expects of its inputs: the data tables its run read (images: the
    size and channels they were decoded at), the scale and layout dalib feeds models, and
    how inputs were standardised outside the model."""
    return {"inputs": "float32 in [0, 1] for images (uint8 / 255), channels first; tables "
                      "as read",
            "data": run.scenario.data_specs(), "standardize": run.scenario.standardize,
            "normalize_in_model": run.scenario.model.get("normalize", "none")}


def model_path(models: Path, run) -> Path:
    """Where a run's trained model is kept (for the runs that start from it, and for
    ``keep_models``; its record keeps the file's digest, ``model_digest``)."""
    return models / f"{run.run_id}.pt"


def save(models: Path, run, method, data) -> dict:
    """Write the run's model to ``models/RUN_ID.pt``; returns the record's ``model_file``
    (relative to the sweep's folder) and ``model_digest``."""
    info = {"format": FORMAT, "run_id": run.run_id, "config_hash": run.config_hash,
            "suite": run.suite, "scenario": run.scenario.name, "method": run.method.label,
            "seed": run.seed, "model": dict(run.scenario.model),
            "input_shape": list(data.input_shape), "classes": list(_classes(data)),
            "weights": "after the last step", "preprocessing": preprocessing(run, data)}
    state = {k: v.detach().cpu() for k, v in method.model.state_dict().items()}
    path = model_path(models, run)
    write_atomic(path, lambda fh: torch.save({"model": state, "info": info}, fh))
    return {"model_file": f"models/{path.name}", "model_digest": file_digest(path)}


def _classes(data) -> tuple[str, ...]:
    """The class names of a transfer scenario (its source's) or a stream."""
    return getattr(data, "source", data).classes


def read(path: str | Path) -> tuple[dict, dict]:
    """A kept model file's weights and information (a bare state dict: no information)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError("model.init", f"{str(path)!r} does not exist",
                         expected="a model file a sweep kept (OUT/models/RUN_ID.pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
        raise InputError("model.init", f"{str(path)!r} cannot be read ({type(exc).__name__})",
                         expected="a model file a sweep kept (OUT/models/RUN_ID.pt)") from None
    if isinstance(blob, dict) and "model" in blob and "info" in blob:
        return blob["model"], blob["info"]
    return blob, {}


def load_into(model: torch.nn.Module, path: str | Path) -> None:
    """Copy a kept model's weights into ``model`` (the same architecture and classes)."""
    state, _ = read(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError("model.init", f"{str(path)!r} does not fit this model "
                         f"({str(exc).splitlines()[0]})", expected="a model kept from a run "
                         "with the same [model] table, input shape and classes") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model a sweep kept, rebuilt from its ``[model]`` table and loaded, in eval mode;
    ``model.info`` holds the file's information (identity, classes, preprocessing)."""
    from dalib.models import build_model

    state, info = read(path)
    if not info:
        raise InputError("model", f"{str(path)!r} holds weights only",
                         expected="a model file a sweep kept (OUT/models/RUN_ID.pt)")
    options = {k: v for k, v in info["model"].items() if k not in ("weights", "init")}
    shape = tuple(info["input_shape"])
    reference = torch.zeros(2, *shape) if options.get("normalize") == "dataset" else None
    model = build_model(shape, len(info["classes"]), reference=reference, **options)
    model.load_state_dict(state)
    model.info = info
    return model.to(device).eval()

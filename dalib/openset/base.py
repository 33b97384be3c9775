"""Open-set prediction: ``K`` known classes plus ``unknown`` (label ``K``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dalib.adaptation.blocks import entropy

REJECT, ACCEPT = 2.0, -1.0  # the unknown column's score: above or below any probability


def rejection_scores(probs: torch.Tensor, reject: torch.Tensor) -> torch.Tensor:
    """``K + 1`` columns whose argmax is the known class of ``probs`` where ``reject`` is
    false and ``unknown`` (the last column) where it is true."""
    column = torch.where(reject, REJECT, ACCEPT).to(probs.dtype)
    return torch.cat([probs, column.unsqueeze(-1)], -1)


def entropy_rejection(logits: torch.Tensor) -> torch.Tensor:
    """The rule for methods without an unknown output: ``unknown`` where the entropy of the
    softmax exceeds ``log(K) / 2`` (Saito et al., "Universal Domain Adaptation through Self
    Supervision" (DANCE), NeurIPS 2020: the threshold of VisionLearningGroup/DANCE's
    ``eval.py``, which OVANet's paper applies to its closed-set baselines too)."""
    probs = F.softmax(logits.float(), -1)
    return rejection_scores(probs, entropy(probs) > math.log(logits.shape[-1]) / 2)


def open_scores(method, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
    """``K + 1`` scores per sample whose argmax is the open-set prediction: the method's own
    ``open_scores(x)`` where it defines one, else :func:`entropy_rejection` of its
    predictions. A user's method predicts ``unknown`` its own way by defining
    ``open_scores``."""
    own = getattr(method, "open_scores", None)
    return own(x) if own is not None else entropy_rejection(method.predict(x, task))

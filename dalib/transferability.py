"""The step that scores a source-trained model's transferability before target training:
LEEP, NCE, LogME and H-score on the k labelled target samples per class, and the proxy
A-distance between its source-test and target-train features (:mod:`analysis.transferability`).
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.transferability import h_score, leep, logme, nce, proxy_a_distance
from dalib.engine import eval_mode
from scenarios.transfer import TransferScenario


@torch.no_grad()
def model_outputs(method, x: torch.Tensor, batch_size: int = 4096
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Features (``model.features``) and softmax outputs of ``method``'s model on ``x``, in
    eval mode and batches, as numpy arrays."""
    model = method.model
    device = next(model.parameters()).device
    with eval_mode(model):
        feats = torch.cat([model.features(x[i:i + batch_size].to(device))
                           for i in range(0, len(x), batch_size)])
        probs = torch.softmax(model.head(feats), 1)
    return feats.float().cpu().numpy(), probs.float().cpu().numpy()


def transferability_scores(method, data: TransferScenario, limit: int = 1000,
                           seed: int = 0) -> dict[str, float]:
    """Scores of ``method``'s model for ``data``'s target (empty without labelled target
    samples). Target test labels are never read."""
    if data.target_labelled is None:
        return {}
    lab = data.target_labelled
    feats, probs = model_outputs(method, lab.x)
    y = lab.y.cpu().numpy()
    fs, _ = model_outputs(method, data.source_test.x[:limit])
    ft, _ = model_outputs(method, data.target_train.x[:limit])
    return {"leep": leep(probs, y), "nce": nce(probs.argmax(1), y), "logme": logme(feats, y),
            "h_score": h_score(feats, y), "pad": proxy_a_distance(fs, ft, seed)}

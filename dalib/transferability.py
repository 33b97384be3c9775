"""The step that scores a source-trained model's transferability before target training:
LEEP, NCE, LogME and H-score on the k labelled target samples per class, and the proxy
A-distance between its source-test and target-train features (:mod:`analysis.transferability`).
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.transferability import h_score, leep, logme, nce, proxy_a_distance
from scenarios.transfer import TransferScenario


@torch.no_grad()
def _outputs(method, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    model = method.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats = torch.cat([model.features(x[i:i + 4096].to(device)) for i in range(0, len(x), 4096)])
    probs = torch.softmax(model.head(feats), 1)
    model.train(was_training)
    return feats.float().cpu().numpy(), probs.float().cpu().numpy()


def transferability_scores(method, data: TransferScenario, limit: int = 1000,
                           seed: int = 0) -> dict[str, float]:
    """Scores of ``method``'s model for ``data``'s target (empty without labelled target
    samples). Target test labels are never read."""
    if data.target_labelled is None:
        return {}
    lab = data.target_labelled
    feats, probs = _outputs(method, lab.x)
    y = lab.y.cpu().numpy()
    fs, _ = _outputs(method, data.source_test.x[:limit])
    ft, _ = _outputs(method, data.target_train.x[:limit])
    return {"leep": leep(probs, y), "nce": nce(probs.argmax(1), y), "logme": logme(feats, y),
            "h_score": h_score(feats, y), "pad": proxy_a_distance(fs, ft, seed)}

"""Checkpoint scoring of regression runs (``regression = true`` scenarios).

The criteria defined for continuous targets (``scenarios.suite.REGRESSION_CRITERIA``), all
lower-is-better, from the labelled source validation part and the unlabelled target only:

* ``source-val``: RMSE on the held-out source part (with several source domains the mean of
  each domain's RMSE on its own part);
* ``dev``: deep embedded validation (You et al., ICML 2019) with the squared error of each
  source validation sample (standardised targets) as its loss; the domain classifier of the
  density ratio sees the model's features (``model.features``), as a one-dimensional output
  tells the domains apart too little;
* ``iwcv``: the same weighted error without DEV's control variate (Sugiyama et al. 2007);
* ``last``: the final checkpoint.

Target test errors are measured at every checkpoint for reporting only: ``target_rmse`` and
``target_mae`` (and the source test part's) in the target's units, with several factors the
mean of each factor's error, and each factor's own as ``target_mae[FACTOR]``; the best-on-test pick
is reported as ``target_rmse_oracle``, an upper bound.
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.regression import REGRESSION_METRICS, factor_mae, is_factor_mae, mae, rmse
from dalib.engine import predict_logits
from dalib.selection import density_ratio, dev_risk, pick, subsample
from scenarios.suite import REGRESSION_CRITERIA
from scenarios.transfer import TransferScenario

HIGHER_IS_BETTER = {"source-val": False, "dev": False, "iwcv": False, "last": True}
ORACLE = ("target_rmse", False)  # the upper bound's pick: the lowest target test RMSE


def _features(method, domain) -> np.ndarray:
    return predict_logits(method, domain, fn=lambda m, x, task: m.model.features(x)).numpy()


class RegressionScorer:
    """Scores checkpoints of one regression run (see the module doc): the criteria, and for
    reporting the errors on the target test, source test and target train parts (on the
    subsample of at most ``limit`` samples the criteria see, its targets hidden from them)."""

    def __init__(self, scenario: TransferScenario, seed: int, limit: int = 2000) -> None:
        rng = np.random.default_rng(seed)
        self.source = scenario.source.subset(subsample(len(scenario.source), limit, rng))
        target = scenario.target_train.subset(subsample(len(scenario.target_train), limit, rng))
        self.target = target.unlabelled()
        self._target_y = target.y  # for the transductive report only, never a criterion
        self.source_val = scenario.source_val
        self._reports = {"target": scenario.target_test, "source": scenario.source_test}
        self.scale = np.asarray(scenario.target_scale[1])  # per factor: to the data's units
        self.factors = scenario.source.classes  # the model's outputs: one per target factor
        self.checkpoints: list[dict] = []

    def _pred(self, method, domain) -> torch.Tensor:
        out = predict_logits(method, domain)
        out = out if len(self.factors) > 1 else out[:, 0]
        if not torch.isfinite(out).all():
            raise FloatingPointError(f"the model's outputs on {domain.name!r} are NaN or "
                                     "infinite: the run diverged")
        return out

    def score(self, method, step: int) -> dict:
        pred_v, y_v = self._pred(method, self.source_val).numpy(), self.source_val.y.numpy()
        val_err = (pred_v - y_v) ** 2  # standardised units
        if val_err.ndim == 2:  # several factors: a sample's loss is their mean
            val_err = val_err.mean(1)
        env = self.source_val.env
        if env is None:
            source_val = rmse(self.scale * pred_v, self.scale * y_v)
        else:
            env = env.cpu().numpy()
            source_val = float(np.mean([rmse(self.scale * pred_v[env == e],
                                             self.scale * y_v[env == e])
                                        for e in np.unique(env)]))
        w = density_ratio(*(_features(method, d) for d in (self.source, self.target,
                                                            self.source_val)))
        row = {"step": step, "selectable": bool(getattr(method, "selectable", True)),
               "source-val": source_val, "dev": dev_risk(w, val_err),
               "iwcv": float((w * val_err).mean())}
        pred_t = self._pred(method, self.target).numpy()
        row["target_train_rmse"] = rmse(self.scale * pred_t, self.scale * self._target_y.numpy())
        for name, domain in self._reports.items():
            pred, y = self.scale * self._pred(method, domain).numpy(), self.scale * domain.y.numpy()
            row[f"{name}_rmse"] = rmse(pred, y)
            row[f"{name}_mae"] = mae(pred, y)
            if name == "target" and len(self.factors) > 1:  # each one's (TLlib prints them)
                for j, factor in enumerate(self.factors):
                    row[factor_mae(factor)] = mae(pred[:, j], y[:, j])
        self.checkpoints.append(row)
        return row


def regression_metrics(checkpoints: list[dict], criterion: str) -> dict[str, float]:
    """Metrics of a regression run: the errors of :data:`REGRESSION_METRICS` at the
    checkpoint ``criterion`` picks, ``target_rmse_<c>`` for every criterion and
    ``target_rmse_oracle`` (the lowest target test RMSE of any checkpoint: an upper bound,
    never a result)."""
    chosen = pick(checkpoints, criterion, HIGHER_IS_BETTER, ORACLE)
    out = {k: chosen[k] for k in REGRESSION_METRICS}
    out.update({k: v for k, v in chosen.items() if is_factor_mae(k)})
    out["selected_step"] = chosen["step"]
    for c in REGRESSION_CRITERIA:
        out[f"target_rmse_{c.replace('-', '_')}"] = pick(checkpoints, c, HIGHER_IS_BETTER,
                                                         ORACLE)["target_rmse"]
    out["target_rmse_oracle"] = pick(checkpoints, "oracle", HIGHER_IS_BETTER,
                                     ORACLE)["target_rmse"]
    return out

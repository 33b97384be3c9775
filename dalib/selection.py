"""Model selection without target labels.

During training, every checkpoint is scored by unsupervised criteria computed from the
labelled source validation part and the *unlabelled* target training part only:

* ``source-val``: accuracy on held-out source data (higher is better); with several source
  domains the mean of each domain's accuracy on its held-out part, DomainBed's
  training-domain validation, the default where no target data is seen (domain
  generalization);
* ``dev``: deep embedded validation risk (You et al., ICML 2019), the source validation error
  importance-weighted by a domain classifier's density ratio, with a control variate (lower).
  The domain classifier sees the model's softmax outputs (the ``preds`` layer of Musgrave et
  al. 2022's benchmark): on MNIST -> UCI digits (source-only, 3 seeds x 10 checkpoints) the
  rank correlation of -DEV with target accuracy was 0.88-0.94 on outputs against -0.59-0.85 on
  bottleneck features, whose density ratios are dominated by a few samples;
* ``snd``: soft neighbourhood density (Saito et al., ICCV 2021), the mean entropy of the
  softmax-normalised (temperature 0.05) cosine similarities between L2-normalised target
  predictions (higher). SND is highest for predictions that do not separate the samples at
  all: an untrained model scores the maximum, log(N - 1), on every shift we tried, and early
  checkpoints outscore trained ones. The paper relies on the source loss to rule such models
  out, so dalib ranks by SND only the checkpoints whose source validation accuracy is within
  ``SND_SOURCE_MARGIN`` points of the run's best (labels of the source only);
* ``entropy``: mean entropy of the target predictions (lower);
* ``im``: information maximisation, the entropy of the mean target prediction minus the mean
  entropy of the predictions (higher: confident and diverse; Gomes et al. 2010, the objective
  of SHOT, Liang et al. 2020);
* ``bnm``: batch nuclear norm of the target prediction matrix over the number of samples
  (higher: discriminable and diverse; Cui et al., CVPR 2020);
* ``iwcv``: importance-weighted cross-validation (Sugiyama et al., JMLR 2007), the source
  validation error weighted by the density ratio of the domain classifier DEV uses, without
  DEV's control variate (lower);
* ``last``: the final checkpoint.

Target test accuracy is measured at every checkpoint for reporting only; no criterion reads
it. The best-on-test pick is reported separately as ``target_acc_oracle``, an upper bound.
In an open-set scenario the target's accuracies count ``unknown`` as one more class (each
method's open-set prediction, :func:`dalib.openset.base.open_scores`), and the target test
part's ``known_acc``, ``unknown_recall`` and ``hos`` (:mod:`analysis.openset`) are
reported at the selected checkpoint; the criteria still see the known-class outputs only.

The default criterion is ``bnm`` (``scenarios.suite.DEFAULT_SELECTION``): over 624 runs of 13
transfer scenarios (images, tables, rotation sequences, the built-in suites; 17 methods of
every family, a two-phase user method among them) it had the lowest mean regret against the oracle
pick (3.0 points, DEV 4.3, ``last`` 4.9) and the fewest picks 10 or more points below it
(7%), and beat DEV in 10 of the 13 scenarios (``benchmarks/validator_study.py``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from analysis.openset import OPEN_SET_METRICS, open_set_scores
from dalib.adaptation.blocks import entropy
from dalib.engine import predict_logits
from dalib.openset.base import open_scores
from scenarios.suite import SELECTION_CRITERIA
from scenarios.transfer import TransferScenario

SND_SOURCE_MARGIN = 5.0
HIGHER_IS_BETTER = {"source-val": True, "dev": False, "snd": True, "entropy": False, "im": True,
                    "bnm": True, "iwcv": False, "last": True}
assert set(HIGHER_IS_BETTER) == set(SELECTION_CRITERIA)


def density_ratio(feat_train_s: np.ndarray, feat_t: np.ndarray, feat_val: np.ndarray
                  ) -> np.ndarray:
    """``w = p_t / p_s`` on the validation features: the odds of a logistic domain classifier
    (standardised inputs) trained on source training against target features, times
    ``n_s / n_t``."""
    from sklearn.linear_model import LogisticRegression  # here: 1 s of imports otherwise
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.concatenate([feat_train_s, feat_t]))
    x = scaler.transform(np.concatenate([feat_train_s, feat_t]))
    d = np.r_[np.zeros(len(feat_train_s)), np.ones(len(feat_t))]
    clf = LogisticRegression(max_iter=500, C=1.0).fit(x, d)
    p = clf.predict_proba(scaler.transform(feat_val))[:, 1].clip(1e-6, 1 - 1e-6)
    return p / (1 - p) * len(feat_train_s) / len(feat_t)


def dev_risk(w: np.ndarray, val_error: np.ndarray) -> float:
    """Deep embedded validation (You et al. 2019, Algorithm 1) from the density ratios ``w``
    of the validation samples (:func:`density_ratio`): ``mean(w L) + eta mean(w) - eta``
    with the control variate ``eta = -Cov(w L, w) / Var(w)``. ``L`` is the 0/1 error per
    validation sample, as in the authors' code: the cross-entropy made the estimate far
    noisier here."""
    weighted = w * val_error
    var = np.var(w, ddof=1)
    eta = -np.cov(weighted, w)[0, 1] / var if var > 0 else 0.0
    return float(weighted.mean() + eta * w.mean() - eta)


def information_maximisation(probs: torch.Tensor) -> float:
    """Entropy of the mean prediction minus the mean entropy of the predictions."""
    return float(entropy(probs.mean(0, keepdim=True)).sum() - entropy(probs).mean())


def batch_nuclear_norm(probs: torch.Tensor) -> float:
    """The nuclear norm of the prediction matrix over the number of samples."""
    return float(torch.linalg.matrix_norm(probs, ord="nuc") / len(probs))


def soft_neighbourhood_density(logits: torch.Tensor, temperature: float = 0.05) -> float:
    """SND (Saito et al. 2021): L2-normalised softmax outputs, cosine similarities without
    the self-pair, a softmax over each row at ``temperature``, mean row entropy."""
    p = F.normalize(F.softmax(logits, 1), dim=1)
    sim = p @ p.T
    sim.fill_diagonal_(float("-inf"))
    return float(entropy(F.softmax(sim / temperature, 1)).mean())


def source_val_accuracy(errors: np.ndarray, env: torch.Tensor | None) -> float:
    """Accuracy (%) on the held-out source part; with several source domains, the mean of
    each domain's accuracy on its own held-out part (DomainBed's training-domain
    validation)."""
    if env is None:
        return 100.0 * (1.0 - float(errors.mean()))
    env = env.cpu().numpy()
    return float(np.mean([100.0 * (1.0 - errors[env == e].mean()) for e in np.unique(env)]))


def subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, limit, replace=False)) if n > limit else np.arange(n)


class CheckpointScorer:
    """Scores checkpoints of one run: the unsupervised criteria, plus (for reporting only)
    accuracies on the target test part, the source test part and the target train part (on
    the same subsample of at most ``limit`` samples the criteria see, its labels hidden from
    them)."""

    def __init__(self, scenario: TransferScenario, seed: int, limit: int = 2000) -> None:
        rng = np.random.default_rng(seed)
        self.source = scenario.source.subset(subsample(len(scenario.source), limit, rng))
        target = scenario.target_train.subset(subsample(len(scenario.target_train), limit, rng))
        self.target = target.unlabelled()
        self._target_labels = target.y  # for the transductive report only, never a criterion
        self.source_val = scenario.source_val
        self._reports = {"target_acc": scenario.target_test, "source_acc": scenario.source_test}
        self.open_set = scenario.open_set
        self.unknown = scenario.num_classes  # the label of the open set's unknown class
        self.checkpoints: list[dict] = []

    def score(self, method, step: int) -> dict:
        val_logits = predict_logits(method, self.source_val)
        src_logits = predict_logits(method, self.source)
        t_logits = predict_logits(method, self.target)
        if not (torch.isfinite(val_logits).all() and torch.isfinite(t_logits).all()):
            raise FloatingPointError(f"model outputs are NaN or inf at step {step}: "
                                     "the run diverged")
        val_error = (val_logits.argmax(1) != self.source_val.y).float().numpy()
        env = self.source_val.env
        w = density_ratio(*(F.softmax(z, 1).numpy() for z in (src_logits, t_logits, val_logits)))
        t_probs = F.softmax(t_logits, 1)
        row = {"step": step, "selectable": bool(getattr(method, "selectable", True)),
               "source-val": source_val_accuracy(val_error, env),
               "dev": dev_risk(w, val_error),
               "snd": soft_neighbourhood_density(t_logits),
               "entropy": float(entropy(t_probs).mean()),
               "im": information_maximisation(t_probs),
               "bnm": batch_nuclear_norm(t_probs),
               "iwcv": float((w * val_error).mean())}
        t_pred = (predict_logits(method, self.target, fn=open_scores) if self.open_set
                  else t_logits).argmax(1)  # the target's: known classes, or unknown too
        row["target_train_acc"] = 100.0 * float((t_pred == self._target_labels).float().mean())
        for name, domain in self._reports.items():
            target = self.open_set and name == "target_acc"
            pred = predict_logits(method, domain, fn=open_scores if target else None).argmax(1)
            row[name] = 100.0 * float((pred == domain.y).float().mean())
            if target:
                row.update(open_set_scores(domain.y.numpy(), pred.numpy(), self.unknown))
        self.checkpoints.append(row)
        return row


def pick(checkpoints: list[dict], criterion: str,
         higher: dict[str, bool] = HIGHER_IS_BETTER,
         oracle: tuple[str, bool] = ("target_acc", True)) -> dict:
    """The checkpoint a criterion selects (ties: the later one) among the selectable ones:
    a method that trains in phases (pretraining on the source, then fine-tuning) offers only
    the checkpoints of its final phase. ``higher``: each criterion's direction; ``oracle``:
    the target test metric the ``oracle`` upper bound optimises, and whether higher is
    better (regression: :mod:`dalib.regression`)."""
    checkpoints = [c for c in checkpoints if c.get("selectable", True)] or checkpoints
    if criterion == "last":
        return checkpoints[-1]
    if criterion == "oracle":
        key, up = oracle
        return max(reversed(checkpoints), key=lambda c: c[key] if up else -c[key])
    if criterion == "snd":  # only models the source loss has trained (see the module doc)
        best = max(c["source-val"] for c in checkpoints)
        checkpoints = [c for c in checkpoints if c["source-val"] >= best - SND_SOURCE_MARGIN]
    sign = 1.0 if higher[criterion] else -1.0
    finite = [c for c in checkpoints if np.isfinite(c[criterion])] or checkpoints
    return max(reversed(finite), key=lambda c: sign * c[criterion])


def selection_metrics(checkpoints: list[dict], criterion: str) -> dict[str, float]:
    """Metrics of a run: ``target_acc``, ``source_acc`` and ``target_train_acc`` (and in an
    open-set scenario the target's ``known_acc``, ``unknown_recall`` and ``hos``) at the
    checkpoint ``criterion`` picks, ``target_acc_<c>`` for every criterion, and
    ``target_acc_oracle`` (best on target test: an upper bound, never a result); in an
    open-set scenario ``hos_last`` and ``hos_oracle`` (the best H-score of any
    checkpoint: an upper bound, the pick of references that select on the target test set)."""
    chosen = pick(checkpoints, criterion)
    out = {k: chosen[k] for k in ("target_acc", "source_acc", "target_train_acc",
                                  *OPEN_SET_METRICS) if k in chosen}
    out["selected_step"] = chosen["step"]
    for c in SELECTION_CRITERIA:
        out[f"target_acc_{c.replace('-', '_')}"] = pick(checkpoints, c)["target_acc"]
    out["target_acc_oracle"] = pick(checkpoints, "oracle")["target_acc"]
    if "hos" in chosen:  # open set: the H-score at the last and at its best checkpoint
        out["hos_last"] = pick(checkpoints, "last")["hos"]
        scores = [c["hos"] for c in checkpoints if c.get("selectable", True)] or \
            [c["hos"] for c in checkpoints]
        out["hos_oracle"] = float(np.nanmax(scores)) if not np.isnan(scores).all() \
            else float("nan")
    return out

"""Transferability scores: how well a source model will serve a target task, computed before
training on the target from the model's outputs or features on labelled target samples.

Higher is better for LEEP, NCE, LogME and H-score; the proxy A-distance (PAD) measures how
far apart two domains' features are (0: indistinguishable, 2: disjoint). All take numpy
arrays, so any model's outputs can be scored.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _joint(source_probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Empirical joint ``P(y, z)`` of target labels y and source classes z."""
    n_y = int(y.max()) + 1
    joint = np.zeros((n_y, source_probs.shape[1]))
    np.add.at(joint, y, source_probs)
    return joint / len(y)


def leep(source_probs: np.ndarray, y: np.ndarray) -> float:
    """LEEP (Nguyen et al., ICML 2020): the mean log-likelihood of the target labels under the
    "expected empirical predictor" ``sum_z P(y | z) theta(x)_z`` built from the source model's
    softmax outputs ``theta(x)`` (n x Z)."""
    probs = np.asarray(source_probs, dtype=float)
    y = np.asarray(y, dtype=int)
    joint = _joint(probs, y)
    cond = joint / joint.sum(0, keepdims=True).clip(1e-12)  # P(y | z)
    return float(np.mean(np.log((probs @ cond.T)[np.arange(len(y)), y].clip(1e-12))))


def nce(source_labels: np.ndarray, y: np.ndarray) -> float:
    """NCE (Tran et al., ICCV 2019): the negative conditional entropy ``-H(Y | Z)`` of the
    target labels given the source model's hard predictions ``z``."""
    z = np.asarray(source_labels, dtype=int)
    onehot = np.eye(int(z.max()) + 1)[z]
    joint = _joint(onehot, np.asarray(y, dtype=int))
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / np.broadcast_to(pz, joint.shape)[nz])))


def h_score(features: np.ndarray, y: np.ndarray) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)^+ cov(E[f | y]))``, how much of the
    features' variance the class means explain."""
    f = np.asarray(features, dtype=float)
    f = f - f.mean(0)
    y = np.asarray(y, dtype=int)
    means = np.zeros_like(f)
    for c in np.unique(y):
        means[y == c] = f[y == c].mean(0)
    cov_f = f.T @ f / len(f)
    cov_g = means.T @ means / len(f)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10) @ cov_g))


def logme(features: np.ndarray, y: np.ndarray, iterations: int = 100) -> float:
    """LogME (You et al., ICML 2021): the maximised log marginal evidence per sample of a
    Bayesian linear model from the features to each one-hot label column, averaged over
    classes (prior precision alpha and noise precision beta by the fixed-point updates)."""
    f = np.asarray(features, dtype=float)
    y = np.asarray(y, dtype=int)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2
    evidences = []
    for c in np.unique(y):
        t_col = (y == c).astype(float)
        z = u.T @ t_col
        z2 = z ** 2
        outside = max(float(t_col @ t_col - z2.sum()), 0.0)  # residual outside the span
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            r = alpha / beta
            gamma = float((sigma / (sigma + r)).sum())
            m2 = float((sigma * z2 / (sigma + r) ** 2).sum())
            res2 = float((z2 * (r / (sigma + r)) ** 2).sum()) + outside
            new_alpha, new_beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            done = abs(new_alpha / new_beta - r) / r < 1e-4
            alpha, beta = new_alpha, new_beta
            if done:
                break
        r = alpha / beta
        m2 = float((sigma * z2 / (sigma + r) ** 2).sum())
        res2 = float((z2 * (r / (sigma + r)) ** 2).sum()) + outside
        eig = np.concatenate([sigma, np.zeros(max(0, d - len(sigma)))])
        ev = (n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
              - beta / 2 * res2 - alpha / 2 * m2 - 0.5 * np.log(alpha + beta * eig).sum())
        evidences.append(ev / n)
    return float(np.mean(evidences))


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` (Ben-David et al., NeurIPS 2007), ``err`` the
    held-out error of a logistic-regression domain classifier trained on half of each
    sample; near 0 for two samples of one domain, near 2 for disjoint ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source, target]).astype(float)
    d = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    xa, xb, da, db = train_test_split(x, d, test_size=0.5, random_state=seed, stratify=d)
    scaler = StandardScaler().fit(xa)
    clf = LogisticRegression(max_iter=500).fit(scaler.transform(xa), da)
    err = 1.0 - clf.score(scaler.transform(xb), db)
    return float(2.0 * (1.0 - 2.0 * err))


SCORES = ("leep", "nce", "logme", "h_score", "pad")


def score_correlations(results: pd.DataFrame, scores=SCORES, scorer: str = "source-only",
                       targets=("target_acc", "ntg")) -> pd.DataFrame:
    """Kendall's tau across scenarios (conditions) between each score, averaged over seeds
    for the ``scorer`` runs that computed it, and each method's mean ``target_acc`` and
    ``ntg``: one row per score, method and measured metric, with the number of scenarios."""
    from scipy.stats import kendalltau

    ok = results[results["status"] == "ok"] if "status" in results else results
    means = ok.groupby(["scenario", "method", "metric"], sort=False)["value"].mean()
    rows = []
    for score in scores:
        s = means.xs((scorer, score), level=("method", "metric"), drop_level=True) \
            if (scorer, score) in means.droplevel(0).index else pd.Series(dtype=float)
        if s.empty:
            continue
        for metric in (m for m in targets if m in means.index.get_level_values("metric")):
            measured = means.xs(metric, level="metric")
            for method in dict.fromkeys(measured.index.get_level_values("method")):
                m = measured.xs(method, level="method")
                common = s.index.intersection(m.index)
                if len(common) < 3:
                    continue
                tau, p = kendalltau(s[common], m[common])
                rows.append({"score": score, "method": method, "metric": metric, "tau": tau,
                             "p": p, "scenarios": len(common)})
    return pd.DataFrame(rows, columns=["score", "method", "metric", "tau", "p", "scenarios"])

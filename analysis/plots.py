"""Seaborn figures of results: one style, one colour per method across every figure.

Every function takes tables or arrays (never runs anything) and returns a matplotlib figure;
:func:`save` writes it as PNG and SVG. Error bars are the intervals given in the table (from
:func:`analysis.stats.aggregate`), not recomputed by seaborn, so figures and tables agree.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.stats import MIN_SEEDS  # noqa: E402

STYLE = {"style": "whitegrid", "context": "notebook", "font_scale": 0.9}


def palette(methods) -> dict[str, tuple]:
    """A fixed colour per method, in the order given (tab10, tab20 or husl by count)."""
    methods = list(dict.fromkeys(methods))
    name = "tab10" if len(methods) <= 10 else "tab20" if len(methods) <= 20 else "husl"
    return dict(zip(methods, sns.color_palette(name, len(methods)), strict=True))


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.2, 3.4)):
    sns.set_theme(**STYLE)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows),
                             squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def save(fig, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` and close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def metric_bars(agg: pd.DataFrame, metric: str, colours: dict, *, zero_line: bool = False,
                title: str | None = None, upper: frozenset[str] | set[str] = frozenset()):
    """One panel per scenario: the mean of ``metric`` per method as a point with its
    interval, on an axis fitted to the intervals (differences of a few points stay visible).
    Methods in ``upper`` (upper-bound references) are drawn apart, below a line, in grey with
    hollow points and dashed intervals, and never marked. With ``zero_line`` (differences
    such as gain or NTG) a line marks 0 and ``*`` the methods whose interval excludes it."""
    a = agg[agg["metric"] == metric]
    scenarios = list(dict.fromkeys(a["scenario"]))
    fig, axes = _grid(len(scenarios))
    for ax, sc in zip(axes, scenarios, strict=True):
        s = a[a["scenario"] == sc]
        s = pd.concat([s[~s["method"].isin(upper)], s[s["method"].isin(upper)]])
        s = s.reset_index(drop=True)
        y = np.arange(len(s))[::-1]
        lo = (s["mean"] - s["ci_low"]).fillna(0).clip(lower=0)
        hi = (s["ci_high"] - s["mean"]).fillna(0).clip(lower=0)
        for yi, (i, r) in zip(y, s.iterrows(), strict=True):
            bound = r["method"] in upper
            bars = ax.errorbar(r["mean"], yi, xerr=[[lo[i]], [hi[i]]], fmt="o", capsize=3,
                               color="grey" if bound else colours[r["method"]],
                               markerfacecolor="white" if bound else None, lw=1.2)
            if bound:
                bars[-1][0].set_linestyle("--")
            elif zero_line and r["n"] >= MIN_SEEDS and (r["ci_low"] > 0 or r["ci_high"] < 0):
                ax.text(r["ci_high"] if r["mean"] >= 0 else r["ci_low"], yi, " *",
                        va="center", ha="left" if r["mean"] >= 0 else "right")
        bounds = int(s["method"].isin(upper).sum())
        if 0 < bounds < len(s):
            ax.axhline(bounds - 0.5, color="grey", lw=0.6, ls=":")
        ax.set_yticks(y, [m + (" (upper bound)" if m in upper else "") for m in s["method"]])
        ax.set_ylim(-0.7, len(s) - 0.3)
        if zero_line:
            ax.axvline(0, color="black", lw=0.8)
        ax.margins(x=0.15)
        ax.set_title(sc)
        ax.set_xlabel(metric)
    fig.suptitle(title or f"{metric}: mean and 95% CI over seeds", y=1.02)
    fig.tight_layout()
    return fig


def accuracy_heatmaps(matrices: dict[str, np.ndarray], title: str):
    """One heatmap per method of the mean accuracy matrix ``R[i, j]`` (row 0 before training,
    row i after task i)."""
    fig, axes = _grid(len(matrices), ncols=4, size=(3.6, 3.2))
    for ax, (method, R) in zip(axes, matrices.items(), strict=True):
        sns.heatmap(R, ax=ax, vmin=0, vmax=100, cmap="viridis", cbar=False, annot=R.shape[1] <= 6,
                    fmt=".0f", annot_kws={"fontsize": 7})
        ax.set_title(method)
        ax.set_xlabel("task evaluated")
        ax.set_ylabel("after task (0 = before training)")
    fig.suptitle(f"{title}: accuracy matrix (mean over seeds, %)", y=1.02)
    fig.tight_layout()
    return fig


def task_curves(matrices: dict[str, np.ndarray], title: str):
    """Accuracy of each task over the stream, one panel per method (forgetting curves); methods
    whose matrix lacks a row per task (``joint`` trains once) are left out."""
    matrices = {m: R for m, R in matrices.items() if R.shape[0] == R.shape[1] + 1}
    fig, axes = _grid(len(matrices), ncols=4, size=(3.6, 3.0))
    for ax, (method, R) in zip(axes, matrices.items(), strict=True):
        colours = sns.color_palette("crest", R.shape[1])
        for j in range(R.shape[1]):
            ax.plot(range(j + 1, R.shape[0]), R[j + 1:, j], marker=".", color=colours[j],
                    label=f"task {j}")
        ax.set_ylim(0, 100)
        ax.set_title(method)
        ax.set_xlabel("after task")
        ax.set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"{title}: accuracy of each task after it is learned", y=1.02)
    fig.tight_layout()
    return fig


def training_curves(curves: pd.DataFrame, checkpoints: pd.DataFrame, colours: dict, title: str):
    """Training loss per step and, where given, target accuracy at each checkpoint (mean over
    seeds per method); ``checkpoints`` rows with ``selected`` mark the picked checkpoints."""
    panels = 2 if not checkpoints.empty else 1
    fig, axes = _grid(panels, ncols=2, size=(5.5, 3.6))
    sns.lineplot(curves, x="step", y="loss", hue="method", palette=colours, ax=axes[0],
                 errorbar=None, lw=1)
    axes[0].set_yscale("log" if (curves["loss"] > 0).all() else "symlog")
    axes[0].set_title("training loss (mean over seeds)")
    if panels == 2:
        sns.lineplot(checkpoints, x="step", y="target_acc", hue="method", palette=colours,
                     ax=axes[1], errorbar=None, marker=".", legend=False)
        picked = checkpoints[checkpoints["selected"]]
        axes[1].scatter(picked["step"], picked["target_acc"], marker="x", color="black", s=20,
                        label="selected (each seed)", zorder=3)
        axes[1].legend(fontsize=7, loc="lower right")
        axes[1].set_title("target test accuracy at checkpoints")
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)
    return fig


def tsne(features: dict[str, dict[str, np.ndarray]], title: str, seed: int = 0):
    """t-SNE of source and target features, one panel per entry of ``features`` (e.g.
    ``{"source-only": f, "dann": g}`` with arrays ``source`` and ``target``), coloured by
    domain: aligned features mix the two colours."""
    from sklearn.manifold import TSNE

    fig, axes = _grid(len(features), ncols=2, size=(5.0, 4.6))
    colours = sns.color_palette("colorblind", 2)
    for ax, (name, f) in zip(axes, features.items(), strict=True):
        x = np.concatenate([f["source"], f["target"]])
        z = TSNE(2, init="pca", perplexity=min(30, (len(x) - 1) / 3), random_state=seed
                 ).fit_transform(x)
        n = len(f["source"])
        for part, label, c in ((slice(0, n), "source", colours[0]),
                               (slice(n, None), "target", colours[1])):
            ax.scatter(*z[part].T, color=c, s=6, alpha=0.6, linewidths=0, label=label)
        ax.set_title(name)
        ax.legend(fontsize=7, markerscale=2)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}: t-SNE of test-set features", y=1.02)
    fig.tight_layout()
    return fig


def difference_heatmap(agg: pd.DataFrame, metric: str, title: str):
    """Methods x scenarios heatmap of the mean of a difference ``metric`` (NTG: positive =
    negative transfer), ``*`` where the interval is above 0 and ``-`` where below."""
    a = agg[agg["metric"] == metric]
    methods = list(dict.fromkeys(a["method"]))
    scenarios = list(dict.fromkeys(a["scenario"]))
    grid = a.pivot_table(index="method", columns="scenario", values="mean", sort=False)
    grid = grid.reindex(index=methods, columns=scenarios)
    enough = a["n"] >= MIN_SEEDS
    marks = a.assign(mark=np.where(enough & (a["ci_low"] > 0), "*",
                                   np.where(enough & (a["ci_high"] < 0), "-", "")))
    marks = marks.pivot_table(index="method", columns="scenario", values="mark",
                              aggfunc="first", sort=False).reindex(index=methods,
                                                                   columns=scenarios)
    text = np.vectorize(lambda v, m: "" if pd.isna(v) else f"{v:.1f}{m if isinstance(m, str) else ''}"
                        )(grid.to_numpy(), marks.to_numpy())
    sns.set_theme(**STYLE)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(scenarios), 0.9 + 0.38 * len(methods)))
    lim = float(np.nanmax(np.abs(grid.to_numpy()))) if grid.notna().any().any() else 1.0
    sns.heatmap(grid, ax=ax, cmap="RdBu_r", center=0, vmin=-lim, vmax=lim, annot=text, fmt="",
                annot_kws={"fontsize": 7}, cbar_kws={"label": metric})
    ax.grid(False)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def difference_vs_level(agg: pd.DataFrame, levels: pd.DataFrame, metric: str, colours: dict,
                        xlabel: str, title: str):
    """The mean of ``metric`` with its interval as a band against a numeric condition level
    (``levels``: ``scenario, level, group``), one panel per group, one line per method."""
    a = agg[agg["metric"] == metric].merge(levels, on="scenario")
    groups = list(dict.fromkeys(a["group"]))
    fig, axes = _grid(len(groups), ncols=2, size=(5.2, 3.8))
    for ax, g in zip(axes, groups, strict=True):
        part = a[a["group"] == g]
        for method in dict.fromkeys(part["method"]):
            m = part[part["method"] == method].sort_values("level")
            ax.plot(m["level"], m["mean"], marker=".", color=colours[method], label=method, lw=1)
            ax.fill_between(m["level"], m["ci_low"], m["ci_high"], color=colours[method],
                            alpha=0.15, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(str(g))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               frameon=False)
    return fig


def validator_bars(study: pd.DataFrame, title: str):
    """Each validator's Spearman correlation with target accuracy and its mean regret, one
    bar per scenario."""
    sns.set_theme(**STYLE)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * study["validator"].nunique() + 2.2))
    for ax, column, label in ((axes[0], "spearman", "Spearman rho with target accuracy"),
                              (axes[1], "regret", "mean regret (points of target accuracy)")):
        sns.barplot(data=study, y="validator", x=column, hue="scenario", ax=ax, orient="h")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("")
        if ax is axes[0] and ax.get_legend():
            ax.get_legend().remove()
    fig.suptitle(title)
    fig.tight_layout()
    return fig

"""Seaborn figures of results: one style, one colour per method across every figure.

Every function takes tables or arrays (never runs anything) and returns a matplotlib figure;
:func:`save` writes it as PNG and SVG. Error bars are the intervals given in the table (from
:func:`analysis.stats.aggregate`), not recomputed by seaborn, so figures and tables agree.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.stats import MIN_SEEDS  # noqa: E402

STYLE = {"style": "whitegrid", "context": "notebook", "font_scale": 1.0}
LEGEND = 9  # points: legends and cell annotations stay readable at half a page's width
ANNOTATION = 8


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


def bounds_last(methods, upper) -> list[str]:
    """``methods`` in order, upper-bound references (``upper``) moved to the end."""
    methods = list(methods)
    return [m for m in methods if m not in upper] + [m for m in methods if m in upper]


def method_label(method: str, upper) -> str:
    """A method's name in a figure, ``(upper bound)`` appended for a reference in ``upper``."""
    return method + (" (upper bound)" if method in upper else "")


def _mean_lines(ax, frame: pd.DataFrame, column: str, colours: dict, upper, **style) -> None:
    """One line per method: the mean of ``column`` over seeds at each step (upper-bound
    references dashed)."""
    for method, part in frame.groupby("method", sort=False):
        mean = part.groupby("step")[column].mean()
        ax.plot(mean.index, mean.to_numpy(), color=colours[method], lw=1,
                ls="--" if method in upper else "-", label=method_label(method, upper), **style)


def save(fig, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` and close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def interval_panels(panels: list[tuple[str, str, pd.DataFrame, bool]], colours: dict, *,
                    title: str, upper: frozenset[str] | set[str] = frozenset()):
    """One panel per ``(title, x label, rows, difference)``: for each method in ``rows`` (rows
    of :func:`analysis.stats.aggregate` for one scenario and metric) the mean as a point with
    its interval, on an axis fitted to the intervals (differences of a few points stay
    visible). Methods in ``upper`` (upper-bound references) are drawn apart, below a line, in
    grey with hollow points and dashed intervals, and never marked. In a ``difference`` panel
    (gain, NTG: 0 is no effect) a line marks 0 and ``*`` the methods whose interval excludes
    it (with at least ``MIN_SEEDS`` seeds). Every panel has the same rows, one per method,
    named in the first column."""
    methods = bounds_last(dict.fromkeys(m for _, _, rows, _ in panels for m in rows["method"]),
                          upper)
    y = dict(zip(methods, range(len(methods) - 1, -1, -1), strict=True))  # same rows everywhere
    ncols = 3
    fig, axes = _grid(len(panels), ncols, size=(3.6, 1.0 + 0.4 * len(methods)))
    for k, (ax, (name, xlabel, rows, difference)) in enumerate(zip(axes, panels, strict=True)):
        for r in rows.to_dict("records"):
            bound = r["method"] in upper
            lo, hi = (0.0, 0.0) if pd.isna(r["ci_low"]) else (max(0.0, r["mean"] - r["ci_low"]),
                                                              max(0.0, r["ci_high"] - r["mean"]))
            bars = ax.errorbar(r["mean"], y[r["method"]], xerr=[[lo], [hi]], fmt="o", capsize=3,
                               color="grey" if bound else colours[r["method"]],
                               markerfacecolor="white" if bound else None, lw=1.2)
            if bound:
                bars[-1][0].set_linestyle("--")
            elif difference and r["n"] >= MIN_SEEDS and (r["ci_low"] > 0 or r["ci_high"] < 0):
                right = r["mean"] >= 0
                ax.text(r["ci_high"] if right else r["ci_low"], y[r["method"]],
                        " *" if right else "* ", va="center", ha="left" if right else "right")
        bounds = sum(m in upper for m in methods)
        if 0 < bounds < len(methods):
            ax.axhline(bounds - 0.5, color="grey", lw=0.6, ls=":")
        first = k % ncols == 0
        ax.set_yticks(list(y.values()), [method_label(m, upper) for m in methods] if first else [])
        ax.set_ylim(-0.7, len(methods) - 0.3)
        if difference:
            ax.axvline(0, color="black", lw=0.8)
        ax.margins(x=0.15)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def matrix_rows(R: np.ndarray) -> list[str]:
    """Row labels of an accuracy matrix: before training, then after each task (or after
    training on all tasks at once, for a matrix of two rows such as ``joint``'s)."""
    if R.shape[0] == R.shape[1] + 1:
        return ["before training"] + [f"after task {i}" for i in range(1, R.shape[0])]
    if R.shape[0] == 2:
        return ["before training", "after all tasks"]
    return [f"row {i}" for i in range(R.shape[0])]


def accuracy_heatmaps(matrices: dict[str, np.ndarray], title: str):
    """One heatmap per method of the mean accuracy matrix: rows "before training" and
    "after task i", columns "task j" (tasks numbered from 1 in both)."""
    fig, axes = _grid(len(matrices), ncols=3, size=(4.2, 3.4))
    for ax, (method, R) in zip(axes, matrices.items(), strict=True):
        sns.heatmap(R, ax=ax, vmin=0, vmax=100, cmap="viridis", cbar=False, annot=R.shape[1] <= 6,
                    fmt=".0f", annot_kws={"fontsize": ANNOTATION},
                    xticklabels=[f"task {j}" for j in range(1, R.shape[1] + 1)],
                    yticklabels=matrix_rows(R))
        ax.tick_params(axis="x", labelrotation=0 if R.shape[1] <= 5 else 90)
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_title(method)
        ax.set_xlabel("accuracy on")
        ax.set_ylabel("")
    fig.suptitle(f"{title}: accuracy matrix (mean over seeds, %)", y=1.02)
    fig.tight_layout()
    return fig


def task_curves(matrices: dict[str, np.ndarray], title: str):
    """Accuracy on each task from the moment it is learned to the end of the stream, one panel
    per method (forgetting curves; tasks numbered from 1); methods whose matrix lacks a row
    per task (``joint`` trains once) are left out."""
    matrices = {m: R for m, R in matrices.items() if R.shape[0] == R.shape[1] + 1}
    fig, axes = _grid(len(matrices), ncols=3, size=(4.2, 3.2))
    for ax, (method, R) in zip(axes, matrices.items(), strict=True):
        colours = sns.color_palette("crest", R.shape[1])
        for j in range(R.shape[1]):
            ax.plot(range(j + 1, R.shape[0]), R[j + 1:, j], marker=".", color=colours[j],
                    label=f"task {j + 1}")
        ax.set_xticks(range(1, R.shape[0]))
        ax.set_ylim(0, 100)
        ax.set_title(method)
        ax.set_xlabel("after task")
        ax.set_ylabel("accuracy on the task (%)")
    axes[0].legend(fontsize=LEGEND)
    fig.suptitle(f"{title}: accuracy on each task once it is learned", y=1.02)
    fig.tight_layout()
    return fig


def anytime_curves(curves: pd.DataFrame, colours: dict, title: str,
                   upper: frozenset[str] | set[str] = frozenset()):
    """Accuracy on what has been seen so far against the samples seen (``curves``: rows of
    ``method, seed, step`` (samples seen), ``accuracy``), mean over seeds per method
    (upper-bound references dashed): online continual learning's anytime evaluation."""
    fig, axes = _grid(1, ncols=1, size=(6.0, 3.6))
    _mean_lines(axes[0], curves, "accuracy", colours, upper, marker=".")
    axes[0].set_ylim(0, 100)
    axes[0].set_xlabel("training samples seen")
    axes[0].set_ylabel("accuracy on the seen classes (%)")
    axes[0].set_title(f"{title}: anytime accuracy (mean over seeds)")
    axes[0].legend(fontsize=LEGEND)
    fig.tight_layout()
    return fig


def training_curves(curves: pd.DataFrame, checkpoints: pd.DataFrame, colours: dict, title: str,
                    upper: frozenset[str] | set[str] = frozenset(), metric: str = "target_acc"):
    """Training loss per step and, where given, the target test ``metric`` (accuracy, or
    ``target_rmse`` in a regression scenario) at each checkpoint, mean over seeds per method
    (methods in ``upper``, upper-bound references, dashed); ``checkpoints`` rows with
    ``selected`` mark each seed's selected checkpoint."""
    panels = 2 if not checkpoints.empty else 1
    fig, axes = _grid(panels, ncols=2, size=(5.5, 3.6))
    _mean_lines(axes[0], curves, "loss", colours, upper)
    axes[0].set_yscale("log" if (curves["loss"] > 0).all() else "symlog")
    axes[0].set_title("training loss (mean over seeds)")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    if panels == 2:
        error = metric == "target_rmse"
        _mean_lines(axes[1], checkpoints, metric, colours, upper, marker=".")
        picked = checkpoints[checkpoints["selected"]]
        marks = axes[1].scatter(picked["step"], picked[metric], marker="x", color="black",
                                s=20, label="selected checkpoint (each seed)", zorder=3)
        axes[1].legend(handles=[marks], fontsize=LEGEND,  # methods: figure legend
                       loc="upper right" if error else "lower right")
        axes[1].set_title(f"target test {'RMSE' if error else 'accuracy'} at checkpoints "
                          "(mean over seeds)")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("RMSE (target units)" if error else "accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=LEGEND,
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
        ax.legend(fontsize=LEGEND, markerscale=2)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}: t-SNE of test-set features", y=1.02)
    fig.tight_layout()
    return fig


def difference_heatmap(agg: pd.DataFrame, metric: str, title: str, label: str,
                       upper: frozenset[str] | set[str] = frozenset()):
    """Methods x scenarios heatmap of the mean of a difference ``metric`` (NTG: positive =
    negative transfer), ``*`` where the interval is above 0 and ``-`` where below; methods in
    ``upper`` (upper-bound references) last, labelled, unmarked. ``label`` names the colour
    bar."""
    a = agg[agg["metric"] == metric]
    methods = bounds_last(dict.fromkeys(a["method"]), upper)
    scenarios = list(dict.fromkeys(a["scenario"]))
    grid = a.pivot_table(index="method", columns="scenario", values="mean", sort=False)
    grid = grid.reindex(index=methods, columns=scenarios)
    enough = (a["n"] >= MIN_SEEDS) & ~a["method"].isin(upper)
    marks = a.assign(mark=np.where(enough & (a["ci_low"] > 0), "*",
                                   np.where(enough & (a["ci_high"] < 0), "-", "")))
    marks = marks.pivot_table(index="method", columns="scenario", values="mark",
                              aggfunc="first", sort=False).reindex(index=methods,
                                                                   columns=scenarios)
    text = np.vectorize(lambda v, m: "" if pd.isna(v) else f"{v:.1f}{m if isinstance(m, str) else ''}"
                        )(grid.to_numpy(), marks.to_numpy())
    grid.index = [method_label(m, upper) for m in methods]
    sns.set_theme(**STYLE)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(scenarios), 0.9 + 0.38 * len(methods)))
    lim = float(np.nanmax(np.abs(grid.to_numpy()))) if grid.notna().any().any() else 1.0
    sns.heatmap(grid, ax=ax, cmap="RdBu_r", center=0, vmin=-lim, vmax=lim, annot=text, fmt="",
                annot_kws={"fontsize": ANNOTATION}, cbar_kws={"label": label})
    bounds = sum(m in upper for m in methods)
    if 0 < bounds < len(methods):
        ax.axhline(len(methods) - bounds, color="black", lw=1.2)
    ax.grid(False)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def difference_vs_level(agg: pd.DataFrame, levels: pd.DataFrame, metric: str, colours: dict,
                        xlabel: str, ylabel: str, title: str,
                        upper: frozenset[str] | set[str] = frozenset()):
    """The mean of ``metric`` with its interval as a band against a numeric condition level
    (``levels``: ``scenario, level, group``), one panel per group, one line per method
    (methods in ``upper``, upper-bound references, grey and dashed)."""
    a = agg[agg["metric"] == metric].merge(levels, on="scenario")
    groups = list(dict.fromkeys(a["group"]))
    fig, axes = _grid(len(groups), ncols=2, size=(5.2, 3.8))
    for ax, g in zip(axes, groups, strict=True):
        part = a[a["group"] == g]
        for method in dict.fromkeys(part["method"]):
            m = part[part["method"] == method].sort_values("level")
            bound = method in upper
            colour = "grey" if bound else colours[method]
            ax.plot(m["level"], m["mean"], marker=".", color=colour, lw=1,
                    ls="--" if bound else "-", label=method_label(method, upper))
            ax.fill_between(m["level"], m["ci_low"], m["ci_high"], color=colour,
                            alpha=0.15, lw=0)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(str(g))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=LEGEND,
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


def online_error(curves: dict[str, np.ndarray], window: int, starts: list[tuple[int, str]],
                 colours: dict, title: str):
    """Online error per window of ``window`` samples for each method, the domains' starts
    (sample index, name) marked."""
    width = min(14.0, max(9.0, 4.0 + 0.05 * max(len(c) for c in curves.values())))
    fig, ax = plt.subplots(figsize=(width, 3.4))
    for method, curve in curves.items():
        ax.plot(np.arange(len(curve)) * window, curve, lw=1.2, label=method,
                color=colours.get(method))
    for index, name in starts:
        ax.axvline(index, color="grey", lw=0.5, ls=":")
        if len(starts) <= 30:
            ax.text(index, 1.0, f" {name}", rotation=90, va="top", fontsize=7,
                    transform=ax.get_xaxis_transform())
    ax.set_xlabel("sample of the stream")
    ax.set_ylabel("online error (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title)
    fig.tight_layout()
    return fig


def ledger_dots(values: pd.DataFrame, shapes: pd.DataFrame, title: str):
    """A reproduction entry side by side: each published value (a diamond, its reported
    spread as a bar) beside dalib's mean and 95% interval (tables of
    :func:`analysis.ledger.value_table`); each published claim as dalib's paired difference
    ``left - right`` with its interval against zero (:func:`analysis.ledger.shape_table`)."""
    sns.set_theme(**STYLE)
    panels = [p for p in ((values, "value"), (shapes, "claim")) if len(p[0])]
    heights = [max(1.5, (0.32 if p[1] == "value" else 0.55) * len(p[0]) + 0.8) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (table, kind) in zip(axes[:, 0], panels, strict=True):
        y = np.arange(len(table))[::-1]
        if kind == "value":
            pub = table["published"].astype(float)
            spread = table["spread"].astype(float).fillna(0)
            if pub.notna().any():  # an entry may show dalib's numbers alone
                ax.errorbar(pub, y + 0.15, xerr=spread, fmt="D", mfc="white", color="black",
                            ms=5, capsize=2, label="published (± reported spread)")
            ax.errorbar(table["mean"], y - 0.15, xerr=[table["mean"] - table["lo"],
                                                       table["hi"] - table["mean"]],
                        fmt="o", color=sns.color_palette()[0], ms=5, capsize=2,
                        label="dalib mean [95% CI]")
            ax.set_yticks(y, table["cell"], fontsize=ANNOTATION)
            ax.legend(fontsize=LEGEND, loc="best")
        else:
            ax.axvline(0, color="grey", lw=1)
            ax.errorbar(table["difference"], y, xerr=[table["difference"] - table["lo"],
                                                      table["hi"] - table["difference"]],
                        fmt="o", color=sns.color_palette()[1], ms=5, capsize=2)
            ax.set_yticks(y, [textwrap.fill(f"{c} ({v})", 60) for c, v in zip(
                table["claim"], table["verdict"], strict=True)], fontsize=ANNOTATION)
            ax.set_xlabel("dalib: left − right, paired over seeds [95% CI]")
    axes[0, 0].set_title(title, fontsize=LEGEND + 1)
    fig.tight_layout()
    return fig

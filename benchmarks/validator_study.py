"""Which checkpoint does selection pick, and what does it cost? The study behind dalib's
default selection criterion.

Runs transfer scenarios of several kinds (images: rotations, inversion, noise, MNIST <-> UCI
digits with an MLP and a CNN; tables: wine split by alcohol, breast cancer split by tumour
size; a sequence of rotated domains; and the built-in ``quick`` and ``digits-da`` suites at a
shorter budget), with methods of every family (adversarial, discrepancy, confusion and
entropy, self-training, batch-norm statistics, and a user method with a source phase then
target-only adaptation, ``plugins/source_then_tent.py``), then replays every selection rule
on every run's checkpoints with dalib's own ``pick``: each criterion, ``last``, and averages
of several criteria's ranks. For each rule it prints the regret against the best checkpoint
on the target test labels (mean, median, 90th percentile, worst, share of picks 10+ points
below it) and the difference to the last checkpoint; it writes ``OUT/study.csv``,
``OUT/picks.csv`` and ``OUT/study.png``.

    .venv/bin/python benchmarks/validator_study.py --out runs/validator-study [--seeds 3]

The sweeps resume like any ``dalib run`` (one directory per suite under ``OUT``).
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from smoke import parse_args

import dalib  # noqa: F401  (sets OPENBLAS_NUM_THREADS before scipy loads)
from analysis.validators import selector_summary
from dalib.cli import main as dalib_main
from dalib.selection import HIGHER_IS_BETTER, pick
from dalib.store import load_records
from scenarios.suite import BUILTIN_DIR

HERE = Path(__file__).resolve().parent
METHODS = ["source-only", "adabn", "dann", "cdan", "mdd", "mcd", "dan", "deep-coral", "mcc",
           "entmin", "im", "pseudo-label", "fixmatch", "mean-teacher", "source-then-tent"]
CRITERIA = [c for c in HIGHER_IS_BETTER]  # dev, source-val, snd, entropy, im, bnm, iwcv, last
COMBINATIONS = {"rank(im, bnm, entropy)": ("im", "bnm", "entropy"),
                "rank(dev, im, bnm)": ("dev", "im", "bnm"),
                "rank(source-val, im, bnm)": ("source-val", "im", "bnm"),
                "rank(im, bnm, last)": ("im", "bnm", "last")}


def rank_pick(checkpoints: list[dict], criteria: tuple[str, ...]) -> dict:
    """The selectable checkpoint with the best mean rank over ``criteria`` (``last`` ranks
    checkpoints by step; ties: the later one)."""
    cps = [c for c in checkpoints if c.get("selectable", True)] or checkpoints
    ranks = np.zeros(len(cps))
    for c in criteria:
        score = np.array([cp["step"] if c == "last" else cp[c] for cp in cps], dtype=float)
        signed = np.nan_to_num(score if HIGHER_IS_BETTER[c] else -score, nan=-np.inf)
        ranks += pd.Series(signed).rank(ascending=False).to_numpy()
    best = ranks.min()
    return [cp for cp, r in zip(cps, ranks, strict=True) if r == best][-1]


def _suite(name: str, seeds: int, steps: int, scenarios: list[str], plugins: bool = True) -> str:
    head = [f'name = "{name}"', f"seeds = {seeds}"]
    if plugins:
        head.append(f'plugins = ["{HERE / "plugins" / "source_then_tent.py"}"]')
    head += ["[budget]", f"steps = {steps}", "batch_size = 64", "[optim]",
             'schedule = "cosine"']
    return "\n".join(head) + "\n" + "\n".join(scenarios)


def _scenario(name: str, source: str, target: str, methods: list[str], model: str = "",
              extra: str = "") -> str:
    return (f'[[scenario]]\nname = "{name}"\nkind = "transfer"\nsource = {source}\n'
            f"target = {target}\nmethods = {methods!r}\n{model}{extra}").replace("'", '"')


def write_tables(data: Path) -> None:
    """Wine split by alcohol and breast cancer split by mean radius, as CSV tables."""
    from sklearn.datasets import load_breast_cancer, load_wine

    data.mkdir(parents=True, exist_ok=True)
    wine = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    low = wine["alcohol"] <= wine["alcohol"].median()
    wine[low].to_csv(data / "wine-low.csv", index=False)
    wine[~low].to_csv(data / "wine-high.csv", index=False)
    cancer = load_breast_cancer(as_frame=True).frame.rename(columns={"target": "benign"})
    small = cancer["mean radius"] <= cancer["mean radius"].median()
    cancer[small].to_csv(data / "cancer-small.csv", index=False)
    cancer[~small].to_csv(data / "cancer-large.csv", index=False)


def suites(out: Path, seeds: int, steps: int, methods: list[str], builtin_steps: int
           ) -> dict[str, str]:
    """The suites of the study, by name: their TOML text."""
    uci = '{ dataset = "uci-digits" }'
    mnist8 = '{ dataset = "mnist", shifts = [{ name = "resize", size = 8, crop = 4 }] }'
    uci_shift = '{{ dataset = "uci-digits", shifts = [{{ {} }}] }}'
    data = out / "data"
    write_tables(data)
    images = [
        _scenario("uci-rot30", uci, uci_shift.format('name = "rotate", degrees = 30'), methods),
        _scenario("uci-invert", uci, uci_shift.format('name = "invert"'), methods),
        _scenario("uci-noise", uci, uci_shift.format('name = "noise", std = 0.4'), methods),
        _scenario("mnist-to-uci", mnist8, uci, methods),
        _scenario("uci-to-mnist-cnn", uci, mnist8, methods,
                  'model = { arch = "cnn", bottleneck = 128 }\n')]
    tables = [
        _scenario("wine-alcohol", f'{{ table = "{data / "wine-low.csv"}", label = "cultivar" }}',
                  f'{{ table = "{data / "wine-high.csv"}", label = "cultivar" }}', methods),
        _scenario("cancer-size", f'{{ table = "{data / "cancer-small.csv"}", label = "benign" }}',
                  f'{{ table = "{data / "cancer-large.csv"}", label = "benign" }}', methods)]
    rotations = [_scenario(f"uci-rot{a}", uci, uci_shift.format(f'name = "rotate", degrees = {a}'),
                           methods) for a in (15, 45, 60)]
    out_suites = {"images": _suite("study-images", seeds, steps, images),
                  "tables": _suite("study-tables", seeds, steps, tables),
                  "rotations": _suite("study-rotations", seeds, steps, rotations)}
    for name in ("quick", "digits-da"):  # the built-in suites, their transfer scenarios
        raw = tomllib.loads((BUILTIN_DIR / f"{name}.toml").read_text())
        text = (BUILTIN_DIR / f"{name}.toml").read_text()
        if builtin_steps:
            text = text.replace("epochs = 10", f"steps = {builtin_steps}").replace(
                f"steps = {raw['budget'].get('steps')}", f"steps = {builtin_steps}")
        text = text.replace(f'name = "{name}"', f'name = "study-{name}"', 1)
        text = text.replace(f"seeds = {raw.get('seeds', 3)}", f"seeds = {seeds}", 1)
        out_suites[name] = text
    return out_suites


def picks(records: list[dict]) -> pd.DataFrame:
    """One row per transfer run that trains on the source and selection rule: the target
    accuracy of the rule's pick, the oracle pick and the last checkpoint."""
    rows = []
    for r in records:
        if r.get("status") != "ok" or not r.get("checkpoints") or \
                not r.get("source_trained", True):
            continue
        cps = r["checkpoints"]
        base = {"suite": r["suite"], "scenario": r["scenario"], "method": r["method"],
                "seed": r["seed"], "oracle": pick(cps, "oracle")["target_acc"],
                "last": pick(cps, "last")["target_acc"]}
        for rule in CRITERIA:
            rows.append({**base, "rule": rule, "picked": pick(cps, rule)["target_acc"]})
        for rule, criteria in COMBINATIONS.items():
            rows.append({**base, "rule": rule, "picked": rank_pick(cps, criteria)["target_acc"]})
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.4 * len(summary) + 1.5), sharey=True)
    y = np.arange(len(summary))
    axes[0].barh(y, summary["mean_regret"], color="#4c72b0", label="mean")
    axes[0].scatter(summary["p90_regret"], y, color="black", marker="|", s=200,
                    label="90th percentile")
    axes[0].set_yticks(y, summary["rule"])
    axes[0].invert_yaxis()
    axes[0].set_xlabel("regret against the oracle pick (points)")
    axes[0].legend(fontsize=9)
    axes[1].barh(y, 100 * summary["catastrophic"], color="#c44e52")
    axes[1].set_xlabel("picks 10+ points below the oracle pick (% of runs)")
    fig.suptitle("Selection rules over every run of the study")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/validator-study")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=600, help="steps per run of the study's suites")
    p.add_argument("--builtin-steps", type=int, default=600,
                   help="steps per run of the built-in suites (0: their own budget)")
    p.add_argument("--suites", nargs="+", default=["images", "tables", "rotations", "quick",
                                                   "digits-da"])
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--jobs", type=int, default=1)
    args = parse_args(p, seeds=1, steps=20, builtin_steps=20, suites=["tables", "quick"],
                      methods=["source-only", "dann", "source-then-tent"])
    out = Path(args.out).resolve()  # the suites name their tables by absolute path
    out.mkdir(parents=True, exist_ok=True)
    texts = suites(out, args.seeds, args.steps, args.methods, args.builtin_steps)
    records = []
    for name in args.suites:
        path = out / "suites" / f"{name}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(texts[name])
        code = dalib_main(["run", str(path), "--out", str(out / name), "--no-report",
                           "--jobs", str(args.jobs)])
        if code not in (0, 1):  # 1: some runs failed (diverged), recorded as such
            raise SystemExit(f"dalib run {path} exited {code}")
        records += load_records(out / name)
    table = picks(records)
    table.to_csv(out / "picks.csv", index=False)
    summary = selector_summary(table)
    summary.to_csv(out / "study.csv", index=False)
    plot(summary, out / "study.png")
    runs = table.groupby(["suite", "scenario", "method", "seed"]).ngroups
    print(f"\n{runs} runs ({table['scenario'].nunique()} scenarios, "
          f"{table['method'].nunique()} methods); regret in points of target accuracy")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(2).to_string(index=False))
    per = table.assign(regret=table["oracle"] - table["picked"]).pivot_table(
        index="scenario", columns="rule", values="regret", aggfunc="mean")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print("\nmean regret per scenario:")
        print(per[list(summary["rule"])].round(1).to_string())


if __name__ == "__main__":
    main()

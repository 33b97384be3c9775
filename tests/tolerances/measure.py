"""How far the same computation moves between CPU kernel sets, and how far packing moves it
under each: the measurements the float-equivalence tests' tolerances come from.

    python tests/tolerances/measure.py [--out tests/tolerances/measured.json]

Runs the packed-vs-separate computations of ``tests/dalib/test_pack.py`` (every transfer and
stream method there, and DANN with Adam) once per kernel set torch offers on this CPU
(``ATEN_CPU_CAPABILITY`` = default, avx2, avx512, each in its own process), and writes per
method: the largest difference between the separate runs' results under two kernel sets
(``kernels``) and between a pack and its separate runs under each kernel set (``packed``):
weights, logits and accuracy-matrix entries in test samples."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TRANSFER = ["source-only", "source+target", "target-only", "target-oracle", "adabn", "dann",
            "cdan", "cdan-e", "mdd", "dan", "deep-coral", "mcc", "entmin", "im", "dann+mcc",
            "mcd", "fixmatch", "mean-teacher", "dann+gate", "pada"]
STREAMS = ["naive", "ewc", "si", "mas", "lwf", "replay", "der", "der++"]


def compute(path: Path) -> None:
    """This process's results (its kernel set) for every method, saved to ``path``."""
    sys.path.insert(0, str(HERE.parent / "dalib"))
    import numpy as np
    import test_pack as tp

    from dalib.engine import Budget, Trace, fit_stream
    from dalib.pack.train import fit_stream_pack

    out = {"kernels": torch.backends.cpu.get_cpu_capability()}
    for name in TRANSFER + ["adam-dann"]:
        params, steps = ([{}] * 3, 20) if name == "adam-dann" else ([tp.SGD] * 3, 6)
        separate, pairs, _, _ = tp._separate_and_packed_transfer(
            "dann" if name == "adam-dann" else name, params, steps=steps)
        runs = []
        for (sc, par), sep in zip(pairs, separate, strict=True):
            par.model.eval()
            sep.model.eval()
            with torch.no_grad():
                runs.append({"sep": {k: v.clone() for k, v in sep.model.state_dict().items()},
                             "par": {k: v.clone() for k, v in par.model.state_dict().items()},
                             "sep_logits": sep.model(sc.target_test.x),
                             "par_logits": par.model(sc.target_test.x)})
        out[name] = runs
    for name in STREAMS:
        params = {"optimizer": "sgd", "lr": 0.05, **{"ewc": {"strength": 10.0},
                                                      "si": {"strength": 1.0}}.get(name, {})}
        for protocol in ("task-il", "class-il"):
            budget = Budget(steps=15, batch_size=32)
            separate = []
            for seed in tp.SEEDS:
                st, m = tp._stream(name, seed, params, protocol)
                separate.append((m, fit_stream(m, st, budget, tp.CPU, seed, Trace(log_every=1),
                                               [])))
            pairs = [tp._stream(name, s, params, protocol) for s in tp.SEEDS]
            matrices, _ = fit_stream_pack([m for _, m in pairs], [st for st, _ in pairs],
                                          budget, tp.CPU, tp.SEEDS, [[] for _ in tp.SEEDS])
            sample = 100 / min(len(t.test) for t in pairs[0][0].tasks)
            out[f"{name}/{protocol}"] = [
                {"sep": dict(sep.model.state_dict()), "par": dict(par.model.state_dict()),
                 "sep_R": torch.as_tensor(np.asarray(R)), "par_R": torch.as_tensor(P),
                 "sample": torch.tensor(sample)}
                for (_, par), (sep, R), P in zip(pairs, separate, matrices, strict=True)]
    torch.save(out, path)


def weights(a: dict, b: dict) -> float:
    return max(((x - y).abs().max().item() for x, y in zip(a.values(), b.values(), strict=True)
                if x.is_floating_point()), default=0.0)


def differences(a: list, b: list, left: str, right: str) -> dict[str, float]:
    """Largest differences between ``left`` results of ``a`` and ``right`` results of ``b``."""
    out = {"weights": max(weights(x[left], y[right]) for x, y in zip(a, b, strict=True))}
    if "sep_logits" in a[0]:
        out["logits"] = max((x[f"{left}_logits"] - y[f"{right}_logits"]).abs().max().item()
                            for x, y in zip(a, b, strict=True))
    else:
        out["samples"] = max(((x[f"{left}_R"] - y[f"{right}_R"]).abs().max() /
                              x["sample"]).item() for x, y in zip(a, b, strict=True))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "measured.json"))
    p.add_argument("--compute", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.compute:
        compute(Path(args.compute))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kernel in ("default", "avx2", "avx512"):
            path = Path(tmp) / f"{kernel}.pt"
            subprocess.run([sys.executable, __file__, "--compute", str(path)], check=True,
                           env={**os.environ, "ATEN_CPU_CAPABILITY": kernel})
            found = torch.load(path, weights_only=False)
            results.setdefault(found.pop("kernels"), found)  # an unsupported one falls back
    report = {"kernel sets": sorted(results), "methods": {}}
    for name in next(iter(results.values())):
        row = {"packed": {k: differences(r[name], r[name], "par", "sep")
                          for k, r in results.items()},
               "kernels": {f"{a} vs {b}": differences(results[a][name], results[b][name],
                                                      "sep", "sep")
                           for a, b in itertools.combinations(sorted(results), 2)}}
        report["methods"][name] = row
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{args.out}: kernel sets {', '.join(sorted(results))}")


if __name__ == "__main__":
    main()

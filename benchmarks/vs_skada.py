"""dalib against skada (extra ``bench``: skada, skorch) on the same arrays, model and budget.

MNIST -> UCI digits at 8 x 8 (flattened to 64 features), one split per seed from
``build_transfer``; the same network for both libraries (``dalib.models`` MLP 256-256 with
batch norm + bottleneck 128 + linear head, adapted features = the bottleneck); Adam, lr 1e-3,
no weight decay, no augmentation, the same number of epochs over the source and batch size;
the final model is evaluated (no model selection on either side). For DANN both sides use a
discriminator of the same shape (``dalib``'s, 128 -> 256 -> 256 -> 1); skada's default domain
classifier is run too, as shipped, beside dalib's DANN with a critic of its width (one hidden
layer of 100 in skada, two of 100 in dalib): skada's default critic ends in a softmax over its
single output, which is constant, so that row's skada DANN trains no adversary.

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python benchmarks/vs_skada.py [--epochs 10] [--seeds 0 1 2] [--digits N]

Prints target accuracy and fit wall time per method and library, and skada / dalib time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from smoke import parse_args
from torch import nn

from dalib.adaptation.blocks import Discriminator
from dalib.engine import Budget, Trace, accuracy, fit_transfer, seed_everything, versions
from dalib.models import build_model
from dalib.registry import check_method
from scenarios.datasets import load_mnist, load_uci_digits
from scenarios.transfer import build_transfer

MNIST8 = [{"name": "resize", "size": 8, "crop": 4}]


def flat(scenario):
    """The scenario with every domain flattened to N x 64 vectors."""
    def f(d):
        return None if d is None else d.with_(x=d.x.reshape(len(d), -1))

    return scenario.__class__(**{k: f(v) if hasattr(v, "x") else v
                                 for k, v in scenario.__dict__.items()})


def model(sc) -> nn.Module:
    return build_model(sc.input_shape, sc.num_classes, bottleneck=128)


class ForSkada(nn.Module):
    """The same classifier with the ``forward(X, sample_weight)`` signature skada calls."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x, sample_weight=None):
        return self.net(x)


def ours(name: str, sc, epochs: int, batch: int, seed: int, **options) -> tuple[float, float]:
    seed_everything(seed)
    params = {"lr": 1e-3, "weight_decay": 0.0, "shift": 0, **options}
    m = check_method(name, params, "transfer").build(model(sc), params)
    start = time.perf_counter()
    fit_transfer(m, sc, Budget(epochs=epochs, batch_size=batch), torch.device("cpu"), seed, Trace())
    return time.perf_counter() - start, accuracy(m, sc.target_test)


class SigmoidCritic(nn.Module):
    """dalib's discriminator with gradient reversal inside and a sigmoid output, the
    interface skada's DANN expects of a domain classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Discriminator(128, 256)

    def forward(self, x, sample_weight=None):
        from skada.deep.modules import GradientReversalLayer

        return torch.sigmoid(self.net(GradientReversalLayer.apply(x, 1.0)))


def theirs(name: str, sc, epochs: int, batch: int, seed: int) -> tuple[float, float]:
    import skada.deep as sd

    seed_everything(seed)
    xs, ys = sc.source.x.numpy(), sc.source.y.numpy()
    xt = sc.target_train.x.numpy()
    x = np.concatenate([xs, xt]).astype(np.float32)
    y = np.concatenate([ys, -np.ones(len(xt), dtype=np.int64)])
    domain = np.concatenate([np.ones(len(xs)), -np.ones(len(xt))]).astype(np.int64)
    common = {"batch_size": batch, "max_epochs": epochs, "train_split": None,
              "optimizer": torch.optim.Adam, "lr": 1e-3, "verbose": 0}
    if name == "source-only":
        est = sd.SourceOnly(ForSkada(model(sc)), layer_name="net.bottleneck", **common)
    elif name == "deep-coral":
        est = sd.DeepCoral(ForSkada(model(sc)), layer_name="net.head", reg=1, **common)
    elif name == "dann (skada default critic)":
        est = sd.DANN(ForSkada(model(sc)), layer_name="net.bottleneck", reg=1, num_features=128,
                      **common)
    else:
        est = sd.DANN(ForSkada(model(sc)), layer_name="net.bottleneck", reg=1,
                      domain_classifier=SigmoidCritic(), **common)
    start = time.perf_counter()
    est.fit(x, y, domain)
    fit_s = time.perf_counter() - start
    xt_test = sc.target_test.x.numpy().astype(np.float32)
    pred = est.predict(xt_test, -np.ones(len(xt_test), dtype=np.int64))
    return fit_s, 100.0 * float((pred == sc.target_test.y.numpy()).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--digits", type=int, help="use the first N MNIST digits (default: all)")
    args = parse_args(p, seeds=[0], epochs=1, digits=1000)
    import skada

    torch.set_num_threads(torch.get_num_threads())
    print(f"skada {skada.__version__}, torch threads {torch.get_num_threads()}, {versions()}")
    rows = []
    for seed in args.seeds:
        mnist = load_mnist()
        digits = mnist.subset(range(0, len(mnist), len(mnist) // (args.digits or len(mnist))))
        sc = flat(build_transfer("m2u", digits, load_uci_digits(), seed=seed,
                                 source_shifts=MNIST8))
        for name, dalib_name, options in (
                ("source-only", "source-only", {}), ("dann", "dann", {}),
                ("deep-coral", "deep-coral", {}),
                ("dann (skada default critic)", "dann", {"hidden": 100})):
            t_them, acc_them = theirs(name, sc, args.epochs, args.batch_size, seed)
            t_us, acc_us = ours(dalib_name, sc, args.epochs, args.batch_size, seed, **options)
            rows.append((name, seed, acc_us, t_us, acc_them, t_them))
            print(f"seed {seed} {name:28s} dalib {acc_us:6.2f}% {t_us:6.1f}s | "
                  f"skada {acc_them:6.2f}% {t_them:6.1f}s", flush=True)
    print("\nmean over seeds:")
    for name in dict.fromkeys(r[0] for r in rows):
        r = np.array([row[2:] for row in rows if row[0] == name], dtype=float)
        acc_us, t_us, acc_them, t_them = r.mean(0)
        print(f"{name:28s} target acc dalib {acc_us:6.2f} skada {acc_them:6.2f} | "
              f"time dalib {t_us:6.1f}s skada {t_them:6.1f}s ratio skada/dalib "
              f"{t_them / t_us:5.2f}")


if __name__ == "__main__":
    main()

"""Sequence backbones and how a suite reaches them: text picks a token backbone, signals
the 1-D CNN, and what cannot work is refused before anything runs."""

import numpy as np
import pandas as pd
import pytest
import torch

from dalib.cli import main
from dalib.models import build_model, model_for
from scenarios.datasets import DATASETS
from scenarios.errors import InputError
from scenarios.transfer import build_transfer


def test_token_backbones_ignore_padding_and_signals_get_the_1d_cnn():
    torch.manual_seed(0)
    bag = build_model((6,), 3, arch="embedding-bag", vocab=50)
    x = torch.tensor([[5.0, 7, 0, 0, 0, 0], [7, 5, 5, 7, 0, 0]])
    assert torch.allclose(bag.backbone(x)[0], bag.backbone(x)[1], atol=1e-6)
    mean = bag.backbone.embed.weight[[5, 7]].mean(0)
    assert torch.allclose(bag.backbone(x)[0], mean, atol=1e-6)  # mean of the words only
    tr = build_model((6,), 3, arch="transformer", vocab=50, dim=16, heads=2).eval()
    out = tr(torch.tensor([[5.0, 7, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    assert out.shape == (2, 3) and torch.isfinite(out).all()  # an empty text stays finite
    longer = tr(torch.tensor([[5.0, 7, 0, 0, 0, 0]]))
    assert torch.allclose(out[:1], longer, atol=1e-5)  # padding changes nothing
    sig = build_model((2, 64), 4)
    assert sig.arch == "cnn1d" and sig(torch.randn(3, 2, 64)).shape == (3, 4)
    with pytest.raises(InputError, match="'cnn1d' needs 1-D signals"):
        build_model((1, 8, 8), 4, arch="cnn1d")
    with pytest.raises(InputError, match="'transformer' needs token ids"):
        build_model((6,), 3, arch="transformer")


def test_text_data_choose_a_token_backbone_with_its_vocabulary():
    reviews, tweets = (DATASETS["synthetic-text"](domain=d) for d in ("reviews", "tweets"))
    sc = build_transfer("t", reviews, tweets, seed=0)
    model = model_for(sc)
    assert model.arch == "embedding-bag" and model.backbone.embed.num_embeddings == 2**15
    assert model_for(sc, arch="transformer").backbone.embed.num_embeddings == 2**15
    assert model_for(sc, arch="mlp").arch == "mlp"  # ids as numbers, if asked for


@pytest.mark.slow
def test_a_text_suite_runs_and_refuses_standardizing_token_ids(tmp_path, capsys):
    rows = [(f"{'good fine' if i % 2 else 'bad poor'} word{i % 7} item", i % 2, i % 3)
            for i in range(120)]
    pd.DataFrame(rows, columns=["review", "label", "shop"]).to_csv(tmp_path / "r.csv",
                                                                     index=False)
    suite = tmp_path / "text.toml"
    text = """
name = "text"
seeds = 1
[budget]
steps = 30
batch_size = 16
[[scenario]]
name = "shops"
kind = "transfer"
source = { text = "r.csv", label = "label", column = "review", domain_column = "shop", domain = "0" }
target = { text = "r.csv", label = "label", column = "review", domain_column = "shop", domain = "1" }
methods = ["source-only"]
"""
    suite.write_text(text)
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-report"]) == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    assert table[table["metric"] == "target_acc"]["value"].iloc[0] > 90
    suite.write_text(text.replace('methods = ["source-only"]',
                                  'methods = ["source-only"]\nstandardize = "source"'))
    capsys.readouterr()
    assert main(["run", str(suite), "--out", str(tmp_path / "out2"), "--no-report"]) == 2
    assert "shops.standardize: is 'source' for text" in capsys.readouterr().err


@pytest.mark.slow
def test_signals_from_an_npz_file_train_the_1d_cnn(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(64) / 64
    y = np.arange(80) % 2
    x = np.sin(2 * np.pi * (3 + 4 * y)[:, None] * t) + 0.1 * rng.normal(size=(80, 64))
    np.savez(tmp_path / "s.npz", x=x.astype(np.float32), y=y)
    suite = tmp_path / "s.toml"
    suite.write_text("""
name = "s"
seeds = 1
[budget]
steps = 40
batch_size = 16
[[scenario]]
name = "gain"
kind = "transfer"
source = { npz = "s.npz", layout = "NL" }
target = { npz = "s.npz", layout = "NL", shifts = [{ name = "gain", factor = 2.0 }] }
methods = ["source-only"]
""")
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-report"]) == 0
    import json
    record = json.loads(next((tmp_path / "out" / "runs").glob("*.json")).read_text())
    assert record["arch"] == "cnn1d" and record["metrics"]["source_acc"] > 90

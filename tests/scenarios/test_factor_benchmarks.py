"""dSprites and MPI3D in TLlib's image-list layout (``image_list/{domain}_{split}.txt``: a
path and the factors' values per line), read into several continuous targets per image, on
a fixture made from the UCI digits: each image's targets are functions of its pixels, so a
model can learn them and the errors say whether it did."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits

from analysis.regression import mae, rmse
from dalib.cli import main
from dalib.method import supervised_loss
from scenarios.datasets import load_dataset
from scenarios.errors import InputError
from scenarios.transfer import build_transfer


def _factors(img: np.ndarray, label: int) -> list[float]:
    """dSprites' six columns (none, shape, scale, orientation, position x, position y):
    scale the digit's value / 9, the positions the share of ink in the left and top halves."""
    ink = img.sum() or 1.0
    return [0.0, float(label % 3), label / 9, 0.5, img[:, :4].sum() / ink, img[:4].sum() / ink]


def write_dsprites(root: Path, per_domain: int = 600,
                   domains: tuple[str, ...] = ("color", "noisy", "scream")) -> dict[str, np.ndarray]:
    """A dSprites copy in TLlib's layout: ``color`` the digits in colour, ``noisy`` the same
    digits under noise, ``scream`` in another colour; 4 of every 5 images listed for
    training. Returns each domain's test targets (scale, position x, position y)."""
    d = load_digits()
    rng = np.random.default_rng(0)
    tests = {}
    for domain in domains:
        lines = {"train": [], "test": []}
        (root / domain).mkdir(parents=True, exist_ok=True)
        for i in range(per_domain):
            img = d.images[i] / 16
            tint = (0.3, 0.6, 1.0) if domain == "scream" else (1.0, 0.6, 0.3)
            pixels = img[..., None] * np.array(tint)
            if domain == "noisy":
                pixels = np.clip(pixels + rng.normal(0, 0.1, pixels.shape), 0, 1)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(root / domain / f"{i}.png")
            values = " ".join(f"{v:.6f}" for v in _factors(img, int(d.target[i])))
            lines["test" if i % 5 == 0 else "train"].append(f"{domain}/{i}.png {values}")
        (root / "image_list").mkdir(exist_ok=True)
        for split, rows in lines.items():
            (root / "image_list" / f"{domain}_{split}.txt").write_text("\n".join(rows) + "\n")
        tests[domain] = np.array([[float(v) for v in r.split()[1:]] for r in lines["test"]])[
            :, [2, 4, 5]]
    return tests


def test_dsprites_reads_tllibs_factors_and_official_test_split(tmp_path):
    tests = write_dsprites(tmp_path / "dSprites", per_domain=50)
    spec = {"dataset": "dsprites", "domain": "noisy", "size": 8}
    d = load_dataset(spec, data_root=tmp_path)
    assert d.classes == ("scale", "position_x", "position_y") and d.y.shape == (50, 3)
    assert int(d.test_mask.sum()) == 10
    assert np.allclose(d.y[d.test_mask].numpy(), tests["noisy"], atol=1e-5)
    pooled = load_dataset({"dataset": "dsprites", "size": 8}, data_root=tmp_path)
    assert np.bincount(pooled.env.numpy()).tolist() == [50, 50, 50]
    sc = build_transfer("c-n", load_dataset({**spec, "domain": "color"}, data_root=tmp_path),
                        d, seed=0, regression=True)
    assert sc.num_classes == 3 and len(sc.target_test) == 10  # the lists' test images
    assert torch.allclose(sc.source.y.mean(0), torch.zeros(3), atol=1e-5)  # per factor
    assert torch.allclose(sc.source.y.std(0), torch.ones(3), atol=1e-3)
    (tmp_path / "dSprites" / "noisy" / "3.png").unlink()
    with pytest.raises(InputError, match="1 of the 50 listed images are missing"):
        load_dataset(spec, data_root=tmp_path)
    (tmp_path / "dSprites" / "image_list" / "color_test.txt").write_text("color/0.png 0.1\n")
    with pytest.raises(InputError, match="line 1 .* at least 6 numbers"):
        load_dataset({**spec, "domain": "color"}, data_root=tmp_path)
    with pytest.raises(InputError, match="no copy found"):
        load_dataset({"dataset": "mpi3d", "domain": "toy"}, data_root=tmp_path)


def test_several_factors_train_on_tllibs_loss_and_report_its_mean_error():
    """The loss is ``F.mse_loss`` over every factor (TLlib's image regression scripts); the
    errors are each factor's RMSE or MAE averaged over the factors (TLlib's ``validate``)."""
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 3, generator=g)
    assert torch.allclose(supervised_loss(out, y),
                          torch.stack([F.mse_loss(out[i], y[i]) for i in range(2)]))
    pred, true = out[0].numpy(), y[0].numpy()
    per_factor = [np.sqrt(np.mean((pred[:, j] - true[:, j]) ** 2)) for j in range(3)]
    assert rmse(pred, true) == pytest.approx(np.mean(per_factor))
    assert mae(pred, true) == pytest.approx(np.mean(
        [np.mean(np.abs(pred[:, j] - true[:, j])) for j in range(3)]))


@pytest.mark.slow
def test_a_dsprites_suite_learns_every_factor_and_reports_tllibs_error(tmp_path):
    """Source-only, DANN and DD (``mdd``) from the colour digits to the noisy ones: the target's mean
    absolute error over the three factors (in their units) falls well below the error of
    predicting each factor's source mean, over 2 seeds."""
    tests = write_dsprites(tmp_path / "data" / "dSprites", domains=("color", "noisy"))
    (tmp_path / "s.toml").write_text("""seeds = 2
[budget]
steps = 300
batch_size = 64
[model]
arch = "cnn"
[[scenario]]
name = "C-N"
kind = "transfer"
regression = true
source = { dataset = "dsprites", domain = "color", size = 8 }
target = { dataset = "dsprites", domain = "noisy", size = 8 }
methods = ["source-only", "dann", "mdd"]
""")
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"),
                 "--data-root", str(tmp_path / "data")]) == 0
    assert "target_mae[scale]" in (tmp_path / "o" / "report.md").read_text()
    t = pd.read_csv(tmp_path / "o" / "results.csv")
    err = t[t.metric == "target_mae"].groupby("method")["value"].mean()
    source = load_dataset({"dataset": "dsprites", "domain": "color", "size": 8},
                          data_root=tmp_path / "data")
    train = source.y[~source.test_mask].numpy()
    constant = mae(np.broadcast_to(train.mean(0), tests["noisy"].shape), tests["noisy"])
    assert set(err.index) == {"source-only", "dann", "mdd"}
    assert (err < 0.7 * constant).all(), (err.to_dict(), constant)
    assert (t[t.metric == "source_mae"].groupby("method")["value"].mean() < 0.5 * constant).all()
    # each factor's error beside their mean, which it averages
    per = t[t.metric.str.startswith("target_mae[")].pivot_table(
        index="run_id", columns="metric", values="value")
    assert list(per.columns) == [f"target_mae[{f}]" for f in ("position_x", "position_y",
                                                                "scale")]
    mean = t[t.metric == "target_mae"].set_index("run_id")["value"]
    assert np.allclose(per.mean(axis=1), mean[per.index], rtol=1e-9)

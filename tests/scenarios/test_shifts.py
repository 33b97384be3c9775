import numpy as np
import pytest
import torch

from scenarios.datasets import load_uci_digits
from scenarios.errors import InputError
from scenarios.shifts import apply_shifts, validate_shift


@pytest.fixture(scope="module")
def uci():
    return load_uci_digits()


def test_rotate_90_moves_pixels(uci, rng):
    img = torch.zeros(1, 1, 8, 8)
    img[0, 0, 0, :] = 1.0  # top row
    d = uci.with_(x=img, y=torch.zeros(1, dtype=torch.long))
    out = apply_shifts(d, [{"name": "rotate", "degrees": 90}], rng).x[0, 0]
    # a 90 degree rotation turns the top row into a column; the row itself is gone
    assert out[0, 1:-1].sum() < 1.0
    assert max(out[:, 0].sum(), out[:, -1].sum()) > 5.0


def test_invert_noise_resize(uci, rng):
    inv = apply_shifts(uci, [{"name": "invert"}], rng)
    assert torch.allclose(inv.x + uci.x, torch.ones_like(uci.x))
    noisy = apply_shifts(uci, [{"name": "noise", "std": 0.2}], rng)
    assert 0.1 < float((noisy.x - uci.x).std()) < 0.2 and float(noisy.x.min()) >= 0
    big = apply_shifts(uci, [{"name": "resize", "size": 28}], rng)
    assert big.x.shape == (1797, 1, 28, 28)
    small = apply_shifts(big, [{"name": "resize", "size": 8, "crop": 2}], rng)
    assert small.x.shape == (1797, 1, 8, 8)


def test_permute_keeps_pixel_values(uci, rng):
    p = apply_shifts(uci, [{"name": "permute", "seed": 3}], rng)
    assert torch.equal(p.x.flatten(1).sort(1).values, uci.x.flatten(1).sort(1).values)
    assert not torch.equal(p.x, uci.x)
    again = apply_shifts(uci, [{"name": "permute", "seed": 3}], np.random.default_rng(9))
    assert torch.equal(p.x, again.x)


def test_label_noise_flips_to_wrong_class_at_rate(uci, rng):
    noisy = apply_shifts(uci, [{"name": "label-noise", "rate": 0.6}], rng)
    flipped = (noisy.y != uci.y).float().mean().item()
    assert abs(flipped - 0.6) < 0.04  # binomial sd at n=1797 is 0.012
    full = apply_shifts(uci, [{"name": "label-noise", "rate": 1.0}], rng)
    assert bool((full.y != uci.y).all())
    assert torch.equal(apply_shifts(uci, [{"name": "label-noise", "rate": 0.6}], rng,
                                    train=False).y, uci.y)


def test_class_subset(uci, rng):
    sub = apply_shifts(uci, [{"name": "class-subset", "classes": [1, 7]}], rng)
    assert set(sub.y.tolist()) == {1, 7} and sub.num_classes == 10
    with pytest.raises(InputError, match="labels in \\[0, 10\\)"):
        apply_shifts(uci, [{"name": "class-subset", "classes": [12]}], rng)


@pytest.mark.parametrize("spec, msg", [
    ({"name": "blur"}, "unknown shift 'blur'"),
    ({"name": "rotate"}, "misses option degrees"),
    ({"name": "rotate", "degrees": 3, "axis": 1}, "axis: unknown option of .rotate."),
    ({"degrees": 3}, "has no name"),
])
def test_bad_shift_specs(spec, msg):
    with pytest.raises(InputError, match=msg):
        validate_shift(spec)


def test_channels_turns_grey_into_rgb_and_rgb_into_pillows_grey():
    from PIL import Image

    from scenarios.domain import from_arrays

    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    colour = from_arrays(rgb, np.arange(4), layout="NHWC")
    grey = apply_shifts(colour, [{"name": "channels", "count": 1}], np.random.default_rng(0))
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb]) / 255.0
    assert grey.input_shape == (1, 6, 6)
    assert np.abs(grey.x[:, 0].numpy() - pil).max() <= 1 / 255 + 1e-6  # Pillow rounds
    back = apply_shifts(grey, [{"name": "channels", "count": 3}], np.random.default_rng(0))
    assert back.input_shape == (3, 6, 6) and bool((back.x[:, 0] == back.x[:, 2]).all())
    with pytest.raises(InputError, match="count: is 2"):
        apply_shifts(grey, [{"name": "channels", "count": 2}], np.random.default_rng(0))


def test_pad_adds_background_on_every_border():
    from scenarios.domain import Domain

    x = torch.rand(3, 1, 28, 28)
    d = Domain("d", x, torch.tensor([0, 1, 2]), ("0", "1", "2"))
    out = apply_shifts(d, [{"name": "pad", "pixels": 2}], np.random.default_rng(0))
    assert out.x.shape == (3, 1, 32, 32)
    assert torch.equal(out.x[..., 2:-2, 2:-2], x) and out.x[..., :2, :].abs().sum() == 0

"""Text tables, 1-D signal arrays, their shifts and the generated sequence datasets."""

import numpy as np
import pandas as pd
import pytest
import torch

from scenarios.datasets import DATASETS
from scenarios.domain import from_arrays
from scenarios.errors import InputError
from scenarios.formats import LOADERS
from scenarios.shifts import apply_shifts
from scenarios.text import PAD, token_ids


def _reviews(tmp_path, name="reviews.csv", rows=None):
    rows = rows or [("Great match, the team won again today!", "sports", "a"),
                    ("The vote in parliament", "politics", "a"),
                    ("great GAME tonight", "sports", "b"),
                    ("a new election law", "politics", "b")]
    path = tmp_path / name
    pd.DataFrame(rows, columns=["body", "topic", "site"]).to_csv(path, index=False)
    return path


def test_text_rows_become_hashed_word_ids_shared_across_files(tmp_path):
    path = _reviews(tmp_path)
    d = LOADERS["text"]({"text": str(path), "label": "topic", "column": "body", "length": 6,
                         "vocab": 1000}, None)
    assert d.x.shape == (4, 6) and d.meta["vocab"] == 1000 and d.classes == ("politics", "sports")
    assert d.y.tolist() == [1, 0, 1, 0]
    great = token_ids("great", 1000, 1)[0]
    assert 2 <= great < 1000 and d.x[0, 0] == great == d.x[2, 0]  # lowercased, same id
    assert d.x[0].tolist()[5] != PAD and d.x[2].tolist()[3:] == [PAD] * 3  # cut, padded
    one = LOADERS["text"]({"text": str(path), "label": "topic", "column": "body",
                           "domain_column": "site", "domain": "b"}, None)
    assert len(one) == 2 and one.x.shape[1] == 64 and one.classes == ("politics", "sports")
    with pytest.raises(InputError, match="column: is 'text', not a column"):
        LOADERS["text"]({"text": str(path), "label": "topic", "column": "text"}, None)
    holes = _reviews(tmp_path, "holes.csv", [("fine", "sports", "a"), (None, "arts", "a")])
    with pytest.raises(InputError, match="column body: has 1 missing values"):
        LOADERS["text"]({"text": str(holes), "label": "topic", "column": "body"}, None)


def test_signal_layouts_give_channels_by_length_and_are_checked():
    x = np.random.default_rng(0).normal(size=(5, 40, 3)).astype(np.float32)
    d = from_arrays(x, np.arange(5) % 2, layout="NLC")
    assert d.input_shape == (3, 40) and torch.equal(d.x[1, 2], torch.as_tensor(x[1, :, 2]))
    assert from_arrays(x[:, :, 0], np.zeros(5), layout="NL").input_shape == (1, 40)
    assert from_arrays(x.transpose(0, 2, 1), np.zeros(5), layout="NCL").input_shape == (3, 40)
    with pytest.raises(InputError, match="layout: is 'NL' but x has shape"):
        from_arrays(x, np.zeros(5), layout="NL")
    d = from_arrays(x * 100, np.zeros(5), layout="NCL")
    assert float(d.x.abs().max()) > 100  # signals are never scaled or clipped


def test_gain_and_token_dropout_shifts():
    rng = np.random.default_rng(0)
    sig = from_arrays(np.ones((4, 1, 8), np.float32), np.zeros(4), layout="NCL")
    out = apply_shifts(sig, [{"name": "gain", "factor": 3.0}], rng)
    assert torch.allclose(out.x, torch.full_like(out.x, 3.0))
    text = DATASETS["synthetic-text"](domain="reviews")
    dropped = apply_shifts(text, [{"name": "token-dropout", "rate": 0.5}], rng)
    words = text.x != PAD
    share = float(((dropped.x == 1) & words).sum() / words.sum())
    assert 0.45 < share < 0.55 and torch.equal(dropped.x == PAD, text.x == PAD)
    for shift, data in (({"name": "gain", "factor": 2.0}, text),
                        ({"name": "token-dropout", "rate": 0.1}, sig)):
        with pytest.raises(InputError, match="needs"):
            apply_shifts(data, [shift], rng)


def test_generated_sequences_have_their_domains_and_a_known_shift():
    sig = DATASETS["synthetic-signals"]()
    assert sig.envs == ("lab", "field") and sig.input_shape == (1, 128)
    lab, field = (DATASETS["synthetic-signals"](domain=d) for d in ("lab", "field"))
    assert float(field.x.std()) > 2 * float(lab.x.std())  # the field sensor's gain and drift
    reviews, tweets = (DATASETS["synthetic-text"](domain=d) for d in ("reviews", "tweets"))
    length = [int((d.x != PAD).sum(1).float().mean()) for d in (reviews, tweets)]
    assert length[0] > 2 * length[1]
    unseen = set(tweets.x.unique().tolist()) - set(reviews.x.unique().tolist())
    assert len(unseen) > 100  # tweet-style words and the topics' unseen words
    again = DATASETS["synthetic-text"](domain="tweets")
    assert torch.equal(again.x, tweets.x)

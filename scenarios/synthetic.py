"""Generated sequence data with a known shift between its domains, for the text and signal
suites and tests (nothing is downloaded; the same seed gives the same data).

* ``synthetic-signals``: 1-D signals of 128 steps, 5 classes told apart by their fundamental
  frequency (3, 5, 7, 9 or 11 cycles per window, with a second harmonic), random phase and
  amplitude. Domain ``lab``: noise of standard deviation 0.2. Domain ``field``: the sensor's
  gain tripled, a slow baseline drift (one cycle, amplitude 1.5) and noise of 0.6.
* ``synthetic-text``: short texts on 4 topics, each topic with 30 words of its own among
  common filler words. Domain ``reviews``: 30-60 words, a quarter of them words of the topic,
  drawn from its first 20 words, with review-style words. Domain ``tweets``: 8-20 words, a
  third of them topic words of which half are its last 10 words (never seen in ``reviews``),
  with tweet-style words instead.
"""

from __future__ import annotations

import numpy as np
import torch

from scenarios.datasets import _environments
from scenarios.domain import Domain
from scenarios.text import LENGTH, VOCAB, token_ids

SIGNAL_DOMAINS = ("lab", "field")
TEXT_DOMAINS = ("reviews", "tweets")
PER_CLASS = 300


def _signals(rng: np.random.Generator, field: bool) -> tuple[torch.Tensor, torch.Tensor]:
    t = np.arange(128) / 128
    y = np.repeat(np.arange(5), PER_CLASS)
    f = (3 + 2 * y)[:, None]
    phase = rng.uniform(0, 2 * np.pi, (len(y), 2))
    amp = rng.uniform(0.5, 1.5, (len(y), 1))
    x = amp * (np.sin(2 * np.pi * f * t + phase[:, :1])
               + 0.5 * np.sin(4 * np.pi * f * t + phase[:, 1:]))
    if field:
        drift = 1.5 * np.sin(2 * np.pi * t + rng.uniform(0, 2 * np.pi, (len(y), 1)))
        x = 3.0 * x + drift + rng.normal(0, 0.6, x.shape)
    else:
        x = x + rng.normal(0, 0.2, x.shape)
    return torch.as_tensor(x[:, None], dtype=torch.float32), torch.as_tensor(y)


def load_synthetic_signals(data_root=None, domain: str | None = None, seed: int = 0) -> Domain:
    """``synthetic-signals`` (see the module doc): 1,500 signals per domain, 1 x 128."""
    parts = [_signals(np.random.default_rng([seed, i]), name == "field")
             for i, name in enumerate(SIGNAL_DOMAINS)]
    return _environments("synthetic-signals", parts, list(SIGNAL_DOMAINS),
                         tuple(f"{3 + 2 * k} cycles" for k in range(5)), domain)


def _texts(rng: np.random.Generator, tweets: bool) -> tuple[list[str], np.ndarray]:
    y = np.repeat(np.arange(4), PER_CLASS)
    style = "tw" if tweets else "rev"
    out = []
    for k in y:
        n = int(rng.integers(8, 21) if tweets else rng.integers(30, 61))
        topical = rng.random(n) < (1 / 3 if tweets else 1 / 4)
        words = []
        for is_topic in topical:
            if is_topic:
                i = int(rng.integers(20, 30) if tweets and rng.random() < 0.5
                        else rng.integers(0, 20))
                words.append(f"t{k}w{i}")
            elif rng.random() < 0.3:
                words.append(f"{style}{int(rng.integers(0, 100))}")
            else:
                words.append(f"fill{int(rng.integers(0, 200))}")
        out.append(" ".join(words))
    return out, y


def load_synthetic_text(data_root=None, domain: str | None = None, seed: int = 0) -> Domain:
    """``synthetic-text`` (see the module doc): 1,200 texts per domain as 64 hashed word
    ids in a vocabulary of 32,768 (:func:`scenarios.text.token_ids`)."""
    parts = []
    for i, name in enumerate(TEXT_DOMAINS):
        texts, y = _texts(np.random.default_rng([seed, i]), name == "tweets")
        ids = [token_ids(t, VOCAB, LENGTH) for t in texts]
        parts.append((torch.tensor(ids, dtype=torch.float32), torch.as_tensor(y)))
    pooled = _environments("synthetic-text", parts, list(TEXT_DOMAINS),
                           ("sports", "politics", "science", "arts"), domain)
    return pooled.with_(meta={**pooled.meta, "vocab": VOCAB})


load_synthetic_signals.domain_names = lambda **_: list(SIGNAL_DOMAINS)
load_synthetic_text.domain_names = lambda **_: list(TEXT_DOMAINS)

"""Backbones for sequences: token ids (text) and 1-D signals.

* ``embedding-bag``: the mean of the tokens' embeddings, padding left out (fastText's
  encoder, Joulin et al., EACL 2017; torch's ``EmbeddingBag``).
* ``transformer``: token embeddings plus learnt positions through a small Transformer
  encoder (Vaswani et al. 2017; torch's ``TransformerEncoder``), mean-pooled over the words.
* ``cnn1d``: three 1-D convolution blocks (conv, batch norm, ReLU, pooling) and global
  average pooling, for signals of shape ``(channels, length)`` (the fully convolutional
  time-series baseline of Wang, Yan & Oates, IJCNN 2017, with pooling between blocks).

Token inputs arrive as float tensors of ids (every domain is a float tensor); the text
backbones round them to integers.
"""

from __future__ import annotations

import torch
from torch import nn


def token_ids(x: torch.Tensor, vocab: int) -> torch.Tensor:
    return x.round().long().clamp_(0, vocab - 1)


class TokenBag(nn.Module):
    """``embedding-bag``: mean word embedding (``dim``, 64) over the non-padding tokens."""

    def __init__(self, input_shape: tuple[int, ...], vocab: int, dim: int = 64) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.EmbeddingBag(vocab, dim, mode="mean", padding_idx=0)
        self.out_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(token_ids(x, self.vocab))


class TokenTransformer(nn.Module):
    """``transformer``: ``layers`` (2) encoder layers of width ``dim`` (64), ``heads`` (4)
    attention heads and a feed-forward width of ``2 dim``, dropout 0.1; padding masked in
    attention and left out of the mean."""

    def __init__(self, input_shape: tuple[int, ...], vocab: int, dim: int = 64,
                 layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.position = nn.Parameter(torch.randn(input_shape[0], dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = token_ids(x, self.vocab)
        pad = ids == 0
        pad[:, 0] &= ~pad.all(1)  # a text without words attends to its first position
        h = self.encoder(self.embed(ids) + self.position, src_key_padding_mask=pad)
        keep = (~pad).unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(1) / keep.sum(1).clamp_min(1)


class SignalCNN(nn.Module):
    """``cnn1d``: convolutions of ``width`` (32), ``2 width`` and ``4 width`` channels and
    kernels 7, 5 and 3, each with batch norm and ReLU, max-pooled by 2 between blocks,
    then averaged over time."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for i, (c_out, k) in enumerate(((width, 7), (2 * width, 5), (4 * width, 3))):
            layers += [nn.Conv1d(c_in, c_out, k, padding=k // 2), nn.BatchNorm1d(c_out),
                       nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool1d(2) if i < 2 else nn.AdaptiveAvgPool1d(1))
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.out_features = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


TOKEN_BACKBONES = {"embedding-bag": TokenBag, "transformer": TokenTransformer}
SIGNAL_BACKBONES = {"cnn1d": SignalCNN}

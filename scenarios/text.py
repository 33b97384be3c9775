"""Text as token sequences: a table's text column split into lowercase words, each word
hashed to an id (so every domain shares the vocabulary without a word list: the hashing
trick of Weinberger et al., ICML 2009), cut or padded to a fixed length."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

from scenarios import checks
from scenarios.domain import Domain, from_arrays
from scenarios.errors import InputError

PAD, DROPPED = 0, 1  # reserved ids: padding, and a word removed by a shift
WORD = re.compile(r"[a-z0-9']+")
VOCAB, LENGTH = 2**15, 64


def token_ids(text: str, vocab: int, length: int) -> list[int]:
    """The first ``length`` words of ``text`` (lowercased, letters, digits and apostrophes)
    as ids in ``[2, vocab)`` (CRC-32 of the word), padded with 0."""
    ids = [2 + zlib.crc32(w.encode()) % (vocab - 2) for w in WORD.findall(text.lower())]
    return (ids + [PAD] * length)[:length]


def check_text_spec(spec: dict) -> None:
    """The text format's own keys: ``column`` (required), ``vocab`` and ``length``."""
    checks.string(spec.get("column"), "column")
    if "vocab" in spec:
        checks.integer(spec["vocab"], "vocab", 16, 2**24)
    if "length" in spec:
        checks.integer(spec["length"], "length", 1, 100_000)


def load_text(spec: dict, base_dir: Path | None) -> Domain:
    """``{ text = FILE, label = COLUMN, column = COLUMN }``: a CSV, TSV or Parquet table
    whose ``column`` holds text; each row becomes ``length`` (64) token ids in a vocabulary
    of ``vocab`` (32,768) hashed ids. Labels and ``domain_column`` / ``domain`` as for
    tables. The domain's ``meta["vocab"]`` tells the model builder its input is tokens."""
    from scenarios.formats import missing_values, table_frame, table_labels  # imports us

    frame, where, line = table_frame(spec, base_dir, "text")
    column = spec["column"]
    if column not in frame:
        raise InputError("column", f"is {column!r}, not a column",
                         expected=f"one of {', '.join(map(str, frame.columns[:20]))}",
                         source=where)
    missing_values(frame, [column, spec["label"]], where, line)
    vocab, length = spec.get("vocab", VOCAB), spec.get("length", LENGTH)
    codes, classes, keep, name = table_labels(frame, spec, where, "text")
    texts = frame[column].astype(str).to_numpy()[keep]
    x = np.array([token_ids(t, vocab, length) for t in texts], dtype=np.float32)
    domain = from_arrays(x, codes[keep], name=name, classes=classes, source=where)
    return domain.with_(meta={**domain.meta, "vocab": vocab, "file": where})

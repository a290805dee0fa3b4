"""A 20 MB text: the streamed, cached ids (read by the worker pool) equal the ids of the old
way, ``Vocab.build(tokenize(text))``, and the paragraph split equals ``split_paragraphs``."""
from __future__ import annotations

import random

import numpy as np
import pytest

from model.text import ids
from model.text.corpus import read_corpus
from model.training.data import split_paragraphs
from model.text.tokenize import tokenize
from model.text.vocab import Vocab

from helpers import ROOT


def make_text(target_bytes: int, seed: int = 5) -> str:
    """The shipped corpora (English and Chinese) repeated, lines shuffled by a fixed seed."""
    lines: list[str] = []
    for name in ("tinyshakespeare", "aesops_fables", "xiyouji_ch01-10"):
        lines += (ROOT / "corpora" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    size = sum(len(s.encode("utf-8")) + 1 for s in lines)
    lines = lines * (target_bytes // size + 1)
    random.Random(seed).shuffle(lines)
    return "\n".join(lines)


@pytest.mark.slow  # 20 MB of text, read by the worker pool and tokenized again
def test_twenty_megabytes_stream_to_the_same_ids(tmp_path):
    text = make_text(20_000_000)
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    assert path.stat().st_size >= ids.POOL_MIN_BYTES  # read by the worker processes
    seen: list[int] = []
    corpus = read_corpus(path, progress=lambda done, total: seen.append(done))
    assert isinstance(corpus.ids, np.memmap) and seen[-1] == path.stat().st_size

    tokens = tokenize(text)
    vocab = Vocab.build(tokens)
    assert corpus.words == vocab.tokens and corpus.counts.tolist() == vocab.counts
    np.testing.assert_array_equal(corpus.ids, vocab.encode(tokens))

    # the paragraph split, from paragraph sizes (a line of whitespace only ends a paragraph)
    sizes, block = [], 0
    for line in text.splitlines():
        if line.strip():
            block += len(tokenize(line))
        elif block:
            sizes.append(block)
            block = 0
    if block:
        sizes.append(block)
    sizes = [s for s in sizes if s]
    assert np.diff(np.append(corpus.paragraph_starts, corpus.n_tokens)).tolist() == sizes
    fake_paragraphs = [range(s) for s in sizes]  # split_paragraphs only needs their lengths
    train, valid = split_paragraphs(fake_paragraphs, tokens, 0.1)  # type: ignore[arg-type]
    train_ids, valid_ids = corpus.split(0.1)
    assert (len(train_ids), len(valid_ids)) == (len(train), len(valid))

    again = read_corpus(path)  # from the id cache
    assert again.words == corpus.words and np.array_equal(again.ids, corpus.ids)

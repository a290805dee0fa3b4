"""The fitted n-gram of a training text, kept under ``$STORY_REPL_HOME/ngrams/`` so that a retrain
of the same text (any recipe) reuses it.

An n-gram depends only on the text's tokens (sha256, encoding, case, tokenizer), the held-out
split and the order, which make its key. An entry is ``ngram.npz`` and ``words.json``, each
written atomically; it is read back as untrusted input (:meth:`KneserNey.from_arrays` checks
every array) and used only when its words are the training vocabulary computed now. A missing,
damaged or stale entry is fitted again and rewritten.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from model.errors import StoryError
from model.prediction.ngram import KneserNey
from model.text.vocab import Vocab

FORMAT_VERSION = 1


def ngram_dir(corpus, valid_fraction: float, order: int, tokens: int) -> Path:
    """The cache entry of ``corpus``'s n-gram of ``order`` over at most the last ``tokens``
    training tokens, with ``valid_fraction`` held out."""
    from model.home import home
    from model.text.ids import cache_key

    text = cache_key(corpus.sha256, corpus.encoding, corpus.keep_case)
    settings = f"{FORMAT_VERSION}|{text}|valid={float(valid_fraction or 0.0)!r}|order={int(order)}|tokens={int(tokens)}"
    return home() / "ngrams" / hashlib.sha256(settings.encode()).hexdigest()[:32]


def cached_ngram(where: Path, words: Vocab) -> KneserNey | None:
    """The n-gram kept at ``where`` when it is whole, valid and over exactly ``words``; else None."""
    from model.storage.untrusted import MAX_JSON_BYTES, read_npz, read_regular

    try:
        raw_words = read_regular(where / "words.json", MAX_JSON_BYTES, missing_ok=True)
        raw_ngram = read_regular(where / "ngram.npz", 16 * 2**30, missing_ok=True)
        if raw_words is None or raw_ngram is None:
            return None
        kept = Vocab.from_json(raw_words, source=str(where / "words.json"))
        if kept.tokens != words.tokens or list(kept.counts) != list(words.counts):
            return None
        kn = KneserNey.from_arrays(read_npz(raw_ngram, where / "ngram.npz", kinds="fiu"))
    except (StoryError, ValueError):
        return None
    return kn if kn.vocab_size == len(words) else None


def keep_ngram(where: Path, kn: KneserNey, words: Vocab) -> None:
    """Keep ``kn`` (over ``words``) at ``where``; a cache that cannot be written is skipped."""
    from model.storage.files import atomic_write

    buf = io.BytesIO()
    np.savez(buf, **kn.to_arrays())
    try:
        where.mkdir(parents=True, exist_ok=True)
        atomic_write(where / "ngram.npz", buf.getvalue())
        atomic_write(where / "words.json", words.to_json())
    except OSError:
        return

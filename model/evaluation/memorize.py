"""Copying versus composing: the longest run of generated words found verbatim in the training text."""
from __future__ import annotations

import threading

import numpy as np

from model.lru import LRU
from model.storage.bundle import Bundle

_cache: LRU[str, tuple[np.ndarray, dict[int, np.ndarray]] | None] = LRU(4)
_lock = threading.Lock()


def corpus_index(bundle: Bundle) -> tuple[np.ndarray, dict[int, np.ndarray]] | None:
    """(corpus ids, positions of each id) for the bundle's training text; None if it is gone or changed."""
    key = f"{bundle.path}:{bundle.corpus_sha256}"
    with _lock:
        if key in _cache:
            return _cache.get(key)
    from model.errors import StoryError

    index = None
    try:
        corpus = bundle.training_corpus()
        lookup = bundle.vocab.index
        table = np.asarray([lookup.get(w, -1) for w in corpus.words], dtype=np.int32)
        ids = table[np.asarray(corpus.ids)]  # the corpus's ids in the model's vocabulary
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(ids)]])
        positions = {int(sorted_ids[s]): order[s:e] for s, e in zip(starts, ends) if sorted_ids[s] >= 0}
        index = (ids, positions)
    except (StoryError, OSError):
        index = None
    with _lock:
        _cache.put(key, index)
    return index


def longest_run(ids: np.ndarray, positions: dict[int, np.ndarray], generated: list[int]) -> int:
    """Length of the longest contiguous piece of ``generated`` that occurs in ``ids``."""
    best = 0
    n = len(ids)
    for s in range(len(generated)):
        if len(generated) - s <= best:
            break
        cand = positions.get(generated[s])
        if cand is None:
            continue
        length = 1
        while s + length < len(generated) and len(cand):
            nxt = cand + length
            cand = cand[nxt < n]
            cand = cand[ids[cand + length] == generated[s + length]]
            if len(cand):
                length += 1
        best = max(best, length)
    return best


def longest_copied_run(bundle: Bundle, words: list[str]) -> int | None:
    """The longest run of ``words`` copied verbatim from the training text (None without that text)."""
    index = corpus_index(bundle)
    if index is None or not words:
        return None
    ids, positions = index
    lookup = bundle.vocab.index
    generated = [lookup.get(w, -2) for w in words]
    return longest_run(ids, positions, generated)

"""Context windows: ids -> (context ids, next id) pairs, the validation split and the ceiling.

Windows are strided views over one id array, never copies of one-hot rows. The tf.data
pipeline (only used where TensorFlow is already loaded) gathers each batch's windows from
that array on the fly, so memory stays bounded on book-sized corpora.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np


def windows(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, context) context ids and (n,) next ids; n = len(ids) - context (a view, no copy)."""
    ids = np.asarray(ids, dtype=np.int32)
    n = len(ids) - context
    if n <= 0:
        return np.zeros((0, context), np.int32), np.zeros((0,), np.int32)
    x = np.lib.stride_tricks.sliding_window_view(ids[:-1], context)
    return x, ids[context:]


def ceiling(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(best reachable accuracy, lowest reachable mean loss in nats) on these windows.

    The accuracy ceiling is the share of windows whose next word is their context's most
    frequent continuation: a context seen with two different next words can be right only
    once. The loss floor is the conditional entropy of the next word given the context.
    """
    if len(y) == 0:
        return 0.0, 0.0
    follow: dict[bytes, Counter] = defaultdict(Counter)
    xc = np.ascontiguousarray(x)
    for row, nxt in zip(xc, y):
        follow[row.tobytes()][int(nxt)] += 1
    best = 0
    nll = 0.0
    for c in follow.values():
        best += max(c.values())
        if len(c) > 1:
            total = sum(c.values())
            nll -= sum(k * math.log(k / total) for k in c.values())
    return best / len(y), nll / len(y)


def unambiguous(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n,) bool: windows whose context is always followed by the same word in this text."""
    seen: dict[bytes, set[int]] = defaultdict(set)
    keys = [row.tobytes() for row in np.ascontiguousarray(x)]
    for k, nxt in zip(keys, y):
        seen[k].add(int(nxt))
    return np.asarray([len(seen[k]) == 1 for k in keys], dtype=bool)


def split_paragraphs(paragraphs: Sequence[list[str]], tokens: list[str], valid_fraction: float) -> tuple[list[str], list[str]]:
    """Hold out the last ``valid_fraction`` of the text, by whole paragraphs where there are
    several (by tokens otherwise). Returns (train tokens, validation tokens)."""
    if valid_fraction <= 0:
        return tokens, []
    total = sum(len(p) for p in paragraphs)
    if len(paragraphs) >= 2 and total == len(tokens):
        target = valid_fraction * total
        held = 0
        cut = len(paragraphs)
        while cut > 1 and held < target:
            cut -= 1
            held += len(paragraphs[cut])
        train = [t for p in paragraphs[:cut] for t in p]
        valid = [t for p in paragraphs[cut:] for t in p]
        return train, valid
    cut = max(1, int(round(len(tokens) * (1 - valid_fraction))))
    return tokens[:cut], tokens[cut:]


def sequence_targets(ids: np.ndarray, context: int) -> np.ndarray:
    """(n, context): for each window, the word after each of its prefixes."""
    ids = np.asarray(ids, dtype=np.int32)
    return np.lib.stride_tricks.sliding_window_view(ids[1:], context)


def truncate_randomly(x, seed: int, rate: float = 0.5):
    """Left-truncate a share of (batch, context) input windows to a random length (0 = padding),
    so a bidirectional encoder also learns contexts shorter than its window."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    c = tf.shape(x)[1]
    keep = tf.random.uniform((b, 1), 1, c + 1, dtype=tf.int32, seed=seed)
    keep = tf.where(tf.random.uniform((b, 1), seed=seed + 1) < rate, keep, c)
    pos = tf.range(c)[None, :]
    return tf.where(pos >= c - keep, x, tf.zeros_like(x))


def tf_dataset(ids: np.ndarray, context: int, batch_size: int, shuffle: bool, seed: int, sequence: bool = False):
    """A tf.data pipeline of (ids+1 windows, next id) batches, gathered per batch from ``ids``.

    With ``sequence`` the target is (batch, context): the next word after every prefix."""
    import tensorflow as tf

    ids = np.asarray(ids, dtype=np.int32)
    n = len(ids) - context
    table = tf.constant(ids)
    offsets = tf.range(context, dtype=tf.int32)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def gather(starts):
        starts = tf.cast(starts, tf.int32)
        idx = starts[:, None] + offsets[None, :]
        if sequence:
            return tf.gather(table, idx) + 1, tf.gather(table, idx + 1)
        return tf.gather(table, idx) + 1, tf.gather(table, starts + context)

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

"""Context windows: ids -> (context ids, next id) pairs, the validation split and the ceiling.

Windows are strided views over one id array, never copies of one-hot rows. The tf.data
pipelines (only used where TensorFlow is already loaded) gather each batch's windows from
that array on the fly. An id array of more than :data:`STREAM_MIN_WINDOWS` windows (a
memory-mapped file) is never copied into TensorFlow: :func:`stream_train_dataset` gathers
each batch from it in numpy, in an epoch order that needs memory for a few blocks only, so
memory stays bounded on texts of gigabytes.
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


#: Above this many windows, the ceiling is measured on the first this-many windows only.
CEILING_MAX_WINDOWS = 1 << 21
#: Up to this many windows, the ceiling is counted exactly as always (a dictionary of contexts);
#: above it, by sorting (the same figures, summed in another order).
_CEILING_DICT_WINDOWS = 1 << 18
#: Above this many windows, training batches are gathered in numpy (see stream_train_dataset).
STREAM_MIN_WINDOWS = 1 << 24


def ceiling(x: np.ndarray, y: np.ndarray, limit: int = CEILING_MAX_WINDOWS) -> tuple[float, float]:
    """(best reachable accuracy, lowest reachable mean loss in nats) on these windows.

    The accuracy ceiling is the share of windows whose next word is their context's most
    frequent continuation: a context seen with two different next words can be right only
    once. The loss floor is the conditional entropy of the next word given the context.
    With more than ``limit`` windows (a book of millions of words), both are those of the
    first ``limit`` windows, which keeps this to about a second.
    """
    if len(y) == 0:
        return 0.0, 0.0
    if len(y) > limit:
        x, y = x[:limit], y[:limit]
    if len(y) > _CEILING_DICT_WINDOWS:
        return _ceiling_sorted(np.ascontiguousarray(x, dtype=np.int32), np.asarray(y, dtype=np.int64))
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


def _ceiling_sorted(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """:func:`ceiling` by sorting: contexts and (context, next) pairs counted with np.unique."""
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, ctx = np.unique(rows, return_inverse=True)
    ctx = ctx.ravel().astype(np.int64)
    pairs, pair_counts = np.unique(ctx * (int(y.max()) + 1) + y, return_counts=True)
    pair_ctx = pairs // (int(y.max()) + 1)  # sorted by context, so each context is one run
    starts = np.flatnonzero(np.r_[True, pair_ctx[1:] != pair_ctx[:-1]])
    best = int(np.maximum.reduceat(pair_counts, starts).sum())
    totals = np.add.reduceat(pair_counts, starts)
    k = pair_counts.astype(np.float64)
    nll = -float(np.sum(k * np.log(k / np.repeat(totals, np.diff(np.r_[starts, len(pairs)])))))
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


def window_order(n: int, seed: int, epoch: int, block: int = 4096, group: int = 64):
    """This epoch's order of the ``n`` window starts, one chunk at a time: blocks of
    ``block`` consecutive windows in a random order, and the windows of every ``group``
    blocks shuffled together. A function of (seed, epoch) only; memory for one chunk."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    n_blocks = -(-n // block)
    order = rng.permutation(n_blocks)
    within = np.arange(block, dtype=np.int64)
    for g in range(0, n_blocks, group):
        starts = (order[g : g + group, None] * block + within).ravel()
        starts = starts[starts < n]
        rng.shuffle(starts)
        yield starts


def stream_batches(ids: np.ndarray, context: int, batch: int, seed: int, sequence: bool = False):
    """Endless (ids+1 windows, targets) batches gathered in numpy from ``ids`` (which may be
    an np.memmap): every epoch visits each window once in :func:`window_order`, cut into
    batches of ``batch`` (the last one of an epoch partial)."""
    n = len(ids) - context
    offsets = np.arange(context, dtype=np.int64)
    release = _page_release(ids)
    epoch = 0
    while True:
        pending = np.zeros(0, np.int64)
        for chunk in window_order(n, seed, epoch):
            pending = np.concatenate([pending, chunk])
            while len(pending) >= batch:
                release()
                yield _gather(ids, pending[:batch], offsets, context, sequence)
                pending = pending[batch:]
        if len(pending):
            yield _gather(ids, pending, offsets, context, sequence)
        epoch += 1


def _page_release(ids: np.ndarray, every: int = 16):
    """A function to call once per batch that lets go, every ``every`` calls, of the pages of
    a memory-mapped ``ids`` read so far.

    Random windows touch every page of the file within an epoch; the pages stay in the page
    cache, but count in this process's memory while they are mapped. The mapping is marked
    for random access (one page per fault, no read-around) and its pages are dropped from it
    (MADV_DONTNEED, harmless on a read-only file mapping) every few batches, so the ids cost
    a few MB of resident memory; pages are mapped again from the page cache when needed."""
    import mmap

    mm = getattr(ids, "_mmap", None)
    dontneed = getattr(mmap, "MADV_DONTNEED", None)
    if mm is None or dontneed is None or not hasattr(mm, "madvise") or getattr(ids, "mode", "r") != "r":
        return lambda: None
    try:
        mm.madvise(getattr(mmap, "MADV_RANDOM", mmap.MADV_NORMAL))
    except (OSError, ValueError):  # pragma: no cover - closed or unsupported
        pass
    calls = [0]

    def release() -> None:
        calls[0] += 1
        if calls[0] % every == 0:
            try:
                mm.madvise(dontneed)
            except (OSError, ValueError):  # pragma: no cover - closed or unsupported
                pass

    return release


def _gather(ids: np.ndarray, starts: np.ndarray, offsets: np.ndarray, context: int, sequence: bool):
    idx = starts[:, None] + offsets[None, :]
    x = np.asarray(ids[idx], dtype=np.int32) + 1
    if sequence:
        return x, np.asarray(ids[idx + 1], dtype=np.int32)
    return x, np.asarray(ids[starts + context], dtype=np.int32)


def stream_train_dataset(ids: np.ndarray, context: int, batch: int, seed: int, sequence: bool = False):
    """The training pipeline for id arrays too large to copy into TensorFlow: the same
    contract as :func:`model.training.distribute.train_dataset` (endless, one permutation of the
    windows per epoch that depends on (seed, epoch) only, so every worker and every iterator
    sees the same batches), with batches gathered by :func:`stream_batches`."""
    import tensorflow as tf

    y_shape = (None, context) if sequence else (None,)
    ds = tf.data.Dataset.from_generator(
        lambda: stream_batches(ids, context, batch, seed, sequence),
        output_signature=(tf.TensorSpec((None, context), tf.int32), tf.TensorSpec(y_shape, tf.int32)),
    )
    return ds.prefetch(4)

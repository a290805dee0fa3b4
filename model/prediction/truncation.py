"""Sampling's steps 3-4 (see :mod:`model.prediction.decoding`): top-k, top-p and min-p
truncation of the adjusted log-probabilities, then the tempered draw, computed at the kept
ids only, without sorting the whole vocabulary.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def kept(logp: np.ndarray, decoding: Any, probs: np.ndarray | None = None) -> np.ndarray | None:
    """The ids step 3 keeps under ``decoding``'s top_k, top_p and min_p, in id order (None: every
    id); ``probs``: ``exp(logp)``, when known."""
    k, p, m = decoding.top_k, decoding.top_p, decoding.min_p
    if not k and p >= 1 and m <= 0:
        return None
    allowed = int(np.count_nonzero(np.isfinite(logp)))
    n = min(k, allowed) if k else allowed  # the n most likely ids are kept (ties to the lower id)
    nth = None  # the n-th highest value, where it is known
    if p < 1 and n > 1:
        n, nth = nucleus(logp, n, p, exact_sum=bool(k), probs=probs)
    if m > 0:
        below = int((logp >= logp.max() + math.log(m)).sum())
        if below < n:
            n, nth = below, None
    return first(logp, n, nth)


def first(logp: np.ndarray, n: int, nth: float | None = None) -> np.ndarray:
    """The first ``n`` ids of a stable sort from the highest value (``nth``: the n-th value), in id order."""
    if n <= 0:
        return np.zeros(0, np.int64)
    nth = np.partition(logp, len(logp) - n)[len(logp) - n] if nth is None else nth
    ids = np.flatnonzero(logp >= nth)
    if len(ids) > n:  # more ties at the n-th value than places: the lower ids keep theirs
        ids = np.delete(ids, np.flatnonzero(logp[ids] == nth)[n - len(ids) :])
    return ids


BIN = 0.25  # width, in nats, of the value bins top-p sums before sorting one of them
BINS = 64  # bins below the highest value (16 nats); the last one holds everything lower
SORT_ALL = 2048  # a vocabulary this small is sorted whole (faster than the bins)


def nucleus(logp: np.ndarray, n: int, p: float, exact_sum: bool, probs: np.ndarray | None = None) -> tuple[int, float]:
    """(how many of the ``n`` most likely ids top-p keeps, the value of the last one kept):
    the smallest prefix of the values sorted from the highest that holds ``p``. With
    ``exact_sum`` (the ``n`` of top-k) the ``n`` are renormalised by their sum and sorted; else
    the probabilities are summed by bins of BIN nats below the highest value, and only the bin
    where the sum reaches ``p`` is sorted (every value when that is the last bin). ``probs``:
    ``exp(logp)``, when known."""
    if exact_sum:
        ranked = np.sort(logp[first(logp, n)], kind="stable")[::-1]
        q = np.exp(ranked)
        cum = np.cumsum(q / q.sum())
        kept = max(1, min(int(np.searchsorted(cum, p - 1e-12)) + 1, n))
        return kept, float(ranked[kept - 1])
    if len(logp) <= SORT_ALL:
        return _sorted_prefix(logp, n, p, np.exp(logp).sum())
    q = np.exp(logp) if probs is None else probs
    total = q.sum()  # every allowed id (n is all): the excluded add 0
    top = logp.max()
    gap = np.subtract(top, logp)
    gap *= 1.0 / BIN
    np.minimum(gap, BINS, out=gap)
    bins = gap.astype(np.intp)  # 0: the highest; never higher for a lower value
    by_bin = np.cumsum(np.bincount(bins, weights=q, minlength=BINS + 1) / total)  # summed in id order, as np.add.at sums
    j = min(int(np.searchsorted(by_bin, p - 1e-12)), BINS)  # the bin where the sum reaches p
    if j == BINS:  # a flat distribution: sort every value
        return _sorted_prefix(logp, n, p, total)
    above = by_bin[j - 1] if j else 0.0
    ranked = np.sort(logp[bins == j], kind="stable")[::-1]
    cum = above + np.cumsum(np.exp(ranked) / total)
    at = min(int(np.searchsorted(cum, p - 1e-12)), len(ranked) - 1)
    return min(int(np.count_nonzero(bins < j)) + at + 1, n), float(ranked[at])


def _sorted_prefix(logp: np.ndarray, n: int, p: float, total: float) -> tuple[int, float]:
    """:func:`nucleus` by sorting every allowed value."""
    ranked = np.sort(logp[np.isfinite(logp)], kind="stable")[::-1]
    cum = np.cumsum(np.exp(ranked) / total)
    kept = max(1, min(int(np.searchsorted(cum, p - 1e-12)) + 1, n))
    return kept, float(ranked[kept - 1])


def draw_from_probs(q: np.ndarray, decoding: Any, rng: np.random.Generator) -> int:
    """:func:`draw` from probabilities known up to a constant (``q``, steps 1-2 applied):
    normalised and logged once here, top-p summing them as they are."""
    probs = q / q.sum()
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    return draw(logp, decoding, rng, probs)


def draw(logp: np.ndarray, decoding: Any, rng: np.random.Generator, probs: np.ndarray | None = None) -> int:
    """Steps 3-4 and the draw: what ``rng.choice(V, p=w)`` draws from the truncated, tempered and
    normalised weights ``w`` over the whole vocabulary (one ``rng.random()`` against the
    cumulative sum), computed at the kept ids only (the others weigh 0): the same id (up to the
    rounding of the weights' sum), the same state of ``rng`` after. ``probs``: ``exp(logp)``,
    when known."""
    ids = kept(logp, decoding, probs)
    ids = np.flatnonzero(np.isfinite(logp)) if ids is None else ids
    kept_logp = logp[ids] / decoding.temperature if decoding.temperature != 1.0 else logp[ids]
    w = np.exp(kept_logp - kept_logp.max())
    cdf = np.cumsum(w / w.sum())
    cdf /= cdf[-1]
    return int(ids[np.searchsorted(cdf, rng.random(), side="right")])

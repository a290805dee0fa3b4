"""Interpolated modified Kneser-Ney over ids ``0..V-1`` (Chen & Goodman 1998): the mixture's
``ngram`` component and the baseline that ``eval`` and the keystroke typist compare with.

Every id gets a positive probability (the unigram level interpolates with ``1 / V``); a context
shorter than ``order - 1`` uses the orders it has; mapping words to ids is the caller's job. The
fitted model is plain sorted numpy arrays (:meth:`KneserNey.to_arrays`): the k-grams of a context
form one slice, found by binary search, so a next-word distribution is the cached unigram-level
one, scaled, plus the few followers of each seen context.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from model.lru import LRU

__all__ = ["KneserNey", "estimate_discounts"]

CHAINS_KEPT = 256  # contexts whose chain is kept

# Discounts used when the count-of-counts do not allow an estimate (tiny or
# degenerate data, e.g. no singletons at all).
_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# Lower bound on every discount, so that gamma(h) > 0 for every seen context
# and the uniform floor always keeps a non-zero share of the mass.
_MIN_DISCOUNT = 0.05


def estimate_discounts(n1: int, n2: int, n3: int, n4: int) -> tuple[float, float, float]:
    """Return ``(D1, D2, D3+)`` from the count-of-counts (Chen & Goodman 1998).

    Each discount is clipped to ``[0.05, i]`` (``i`` = 1, 2, 3) so that
    discounted counts stay non-negative and some mass is always left for the
    lower order.  Where a ratio is undefined (a zero denominator) the
    corresponding fallback ``0.5 / 1.0 / 1.5`` is used.
    """
    n1, n2, n3, n4 = (int(x) for x in (n1, n2, n3, n4))
    y = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    raw = [
        1.0 - 2.0 * y * n2 / n1 if n1 > 0 else None,
        2.0 - 3.0 * y * n3 / n2 if n2 > 0 else None,
        3.0 - 4.0 * y * n4 / n3 if n3 > 0 else None,
    ]
    out = []
    for i, (d, fb) in enumerate(zip(raw, _FALLBACK_DISCOUNTS), start=1):
        if d is None or not math.isfinite(d):
            d = fb
        out.append(min(max(d, _MIN_DISCOUNT), float(i)))
    return out[0], out[1], out[2]


class _Level:
    """Everything needed to evaluate one order ``k`` of the model.

    Contexts of order ``k`` are the unique (k-1)-grams, identified by their
    rank ``r`` (0..U_{k-1}-1).  The k-grams with context ``r`` are the slice
    ``start[r]:start[r+1]`` of ``words`` / ``weight`` (sorted by word id).
    ``weight`` already holds ``max(c - D(c), 0) / c(h .)``; ``gamma[r]`` is the
    back-off weight of context ``r`` (1.0 for a context with no followers).
    """

    __slots__ = ("start", "words", "weight", "gamma", "counts", "discounts", "count_of_counts")

    def __init__(
        self,
        start: np.ndarray,
        words: np.ndarray,
        weight: np.ndarray,
        gamma: np.ndarray,
        counts: np.ndarray,
        discounts: tuple[float, float, float],
        count_of_counts: tuple[int, int, int, int],
    ) -> None:
        self.start = start
        self.words = words
        self.weight = weight
        self.gamma = gamma
        self.counts = counts
        self.discounts = discounts
        self.count_of_counts = count_of_counts


class KneserNey:
    """Interpolated modified Kneser-Ney language model over ids ``0..V-1``.

    Parameters
    ----------
    order:
        The n of the n-gram model (>= 1); predictions use at most
        ``order - 1`` previous ids.
    vocab_size:
        ``V``.  When ``None`` it is taken as ``max(ids) + 1`` at :meth:`fit`.
    """

    def __init__(self, order: int = 5, vocab_size: int | None = None) -> None:
        if int(order) != order or order < 1:
            raise ValueError(f"order must be a positive integer, got {order!r}")
        if vocab_size is not None and (int(vocab_size) != vocab_size or vocab_size < 1):
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        self.order = int(order)
        self._vocab_arg: int | None = None if vocab_size is None else int(vocab_size)
        self.vocab_size: int | None = self._vocab_arg
        self._levels: list[_Level] = []
        # _index[j] holds the keys ``rank(prefix) * V + last`` of the unique j-grams, sorted:
        # a j-gram's rank is the position of its key (j = 1..order-1; _index[0] unused).
        # Sorted arrays rather than dictionaries: 8 bytes a gram, not about 100.
        self._index: list[np.ndarray] = []
        self._base: np.ndarray | None = None
        self._fitted = False
        self._chains: LRU[tuple[int, ...], tuple] = LRU(CHAINS_KEPT)  # the last contexts' chains (the weights' bucket and the distribution read the same one)
        self._ranks: LRU[tuple[int, ...], list[int]] = LRU(CHAINS_KEPT)  # the last contexts' suffix ranks, by the ids a context a word later starts with

    # ------------------------------------------------------------------ fit
    def fit(self, ids: Sequence[int] | np.ndarray, progress=None) -> "KneserNey":
        """Count the n-grams of one long stream of ids and build the model; ``progress(fraction)``
        is called as each order is done."""
        arr = np.asarray(ids)
        if arr.ndim != 1:
            arr = arr.ravel()
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise ValueError("ids must be integers")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and arr.min() < 0:
            raise ValueError("ids must be non-negative")
        if self._vocab_arg is None:
            if arr.size == 0:
                raise ValueError("cannot infer vocab_size from an empty stream")
            V = int(arr.max()) + 1
        else:
            V = self._vocab_arg
        if arr.size and arr.max() >= V:
            raise ValueError(f"id {int(arr.max())} is out of range for vocab_size={V}")

        self._fitted = False
        self._chains.clear()
        self._ranks.clear()
        self.vocab_size = V
        self._index = [np.zeros(0, np.int64)]
        self._levels = []
        for level in self._rank_levels(arr, V):
            self._levels.append(level)
            if progress is not None:
                progress(len(self._levels) / self.order)

        # Unigram-level distribution (order 1 interpolated with uniform).
        lvl = self._levels[0]
        base = np.full(V, lvl.gamma[0] / V, dtype=np.float64)
        base[lvl.words] += lvl.weight
        self._base = base
        self._fitted = True
        return self

    def _rank_levels(self, arr: np.ndarray, V: int):
        """The levels of orders 1..n, in order, from the ranked k-grams of ``arr``.

        The k-gram starting at position i has a rank among the sorted unique k-grams; its key
        is ``rank(its (k-1)-gram prefix) * V + last id``. Level k needs the ranks of order k
        and the first positions of order k + 1, so it is built as soon as order k + 1 is
        ranked and the ranks of order k are dropped: at most two arrays of N ranks at once."""
        n = self.order
        N = int(arr.size)
        prev = {"keys": np.zeros(1, np.int64), "ranks": np.zeros(N, np.int64)}  # the empty 0-gram
        for k in range(1, n + 1):
            m = N - k + 1  # number of k-gram occurrences
            if m <= 0:
                empty = np.zeros(0, dtype=np.int64)
                uk, first, inv, cnt = empty, empty, empty, empty
            else:
                keys = prev["ranks"][:m] * V + arr[k - 1 : k - 1 + m]
                uk, first, inv, cnt = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
                del keys
                inv = inv.reshape(-1).astype(np.int64, copy=False)
            cur = {"keys": uk, "ranks": inv, "first": first.astype(np.int64, copy=False),
                   "counts": cnt.astype(np.int64, copy=False), "contexts": len(prev["keys"])}
            if k < n:
                self._index.append(uk)  # np.unique's keys are sorted
            if k > 1:  # order k - 1 waited for these first positions
                yield self._level(k - 1, prev, cur["first"], V)
            prev = cur
        yield self._level(n, prev, None, V)

    @staticmethod
    def _per_context(values: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Sums of ``values`` over each context's slice ``start[r]:start[r+1]``."""
        s = np.concatenate(([0], np.cumsum(values)))
        return (s[start[1:]] - s[start[:-1]]).astype(np.float64)

    def _level(self, k: int, grams: dict, next_first: np.ndarray | None, V: int) -> _Level:
        """Order ``k``: counts (raw at the top order, continuation below), discounts,
        back-off weights and discounted probabilities of every seen k-gram. ``grams`` holds
        the order's sorted unique keys, ranks per position, raw counts and the number of
        possible contexts (unique (k-1)-grams); ``next_first`` the first occurrence of each
        (k+1)-gram."""
        uk = grams["keys"]
        n_ctx = grams["contexts"]
        if k == self.order:
            counts = grams["counts"]
        else:
            # continuation counts: distinct left extensions (+1 for the
            # k-gram at position 0, preceded by the virtual <s>)
            counts = np.zeros(len(uk), dtype=np.int64)
            if len(uk):
                if next_first is not None and len(next_first):
                    counts += np.bincount(grams["ranks"][next_first + 1], minlength=len(uk))
                counts[grams["ranks"][0]] += 1
        c1, c2, c3, c4 = (int(np.count_nonzero(counts == r)) for r in (1, 2, 3, 4))
        cc = (c1, c2, c3, c4)
        D = estimate_discounts(*cc)
        words = (uk % V).astype(np.int64)
        # keys are rank(context) * V + word, sorted: contexts are slices
        start = np.searchsorted(uk, np.arange(n_ctx + 1, dtype=np.int64) * V).astype(np.int64)
        denom = self._per_context(counts, start)
        n1 = self._per_context(counts == 1, start)
        n2 = self._per_context(counts == 2, start)
        n3 = self._per_context(counts >= 3, start)
        seen = denom > 0
        safe = np.where(seen, denom, 1.0)
        gamma = np.where(seen, (D[0] * n1 + D[1] * n2 + D[2] * n3) / safe, 1.0)
        disc = np.where(counts == 1, D[0], np.where(counts == 2, D[1], D[2]))
        reps = np.diff(start)
        weight = np.maximum(counts - disc, 0.0) / np.repeat(safe, reps)
        return _Level(start, words, weight, gamma, counts, D, cc)

    # ------------------------------------------------------------ storage
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted model as plain numpy arrays (for ``np.savez``; no pickle needed)."""
        V = self._check_fitted()
        out: dict[str, np.ndarray] = {
            "meta": np.asarray([self.order, V], dtype=np.int64),
            "base": np.asarray(self._base, dtype=np.float64),
        }
        for k, lvl in enumerate(self._levels, start=1):
            out[f"l{k}_start"] = lvl.start
            out[f"l{k}_words"] = lvl.words
            out[f"l{k}_weight"] = lvl.weight
            out[f"l{k}_gamma"] = lvl.gamma
            out[f"l{k}_counts"] = lvl.counts
            out[f"l{k}_stats"] = np.asarray(list(lvl.discounts) + list(lvl.count_of_counts), dtype=np.float64)
        for j in range(1, self.order):
            out[f"keys{j}"] = self._index[j]
        return out

    @classmethod
    def from_arrays(cls, arrays) -> "KneserNey":
        """Rebuild a model saved with :meth:`to_arrays`, every array checked first (types, lengths, ranges,
        sorted keys, rising offsets), so no query can index out of bounds or meet a NaN; else ValueError."""
        meta = _saved(arrays, "meta", "iu", 2)
        order, V = int(meta[0]), int(meta[1])
        if not (1 <= order <= _MAX_ORDER and V >= 1):
            raise ValueError(f"array 'meta' holds order {order}, {V} words; expected 1 to {_MAX_ORDER}, at least 1")
        kn = cls(order, vocab_size=V)
        kn._base = _within(_saved(arrays, "base", "f", V), "base", 0.0, _ONE, "a probability above 0", above=True)
        kn._index = [np.zeros(0, np.int64)]
        for j in range(1, order):  # keys of the j-grams: rank(prefix) * V + last word, strictly increasing
            prefixes = len(kn._index[j - 1]) if j > 1 else 1
            if prefixes * V >= 2**62:
                raise ValueError(f"array 'keys{j - 1}' holds {prefixes:,} grams, too many for {V:,} words")
            keys = _within(_saved(arrays, f"keys{j}", "iu"), f"keys{j}", 0, prefixes * V - 1, "a key of its prefixes")
            if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
                raise ValueError(f"array 'keys{j}' is not sorted")
            kn._index.append(keys)
        kn._levels = [_saved_level(arrays, k, len(kn._index[k - 1]) if k > 1 else 1, V) for k in range(1, order + 1)]
        kn._fitted = True
        return kn

    def mass(self, context: Sequence[int], mask: np.ndarray, base_mass: float | None = None) -> float:
        """P(next id is one where ``mask`` is true | context), without building the distribution.

        ``base_mass`` is ``self._base[mask].sum()``, for callers that ask many times."""
        self._check_fitted()
        terms, base_coef = self._chain(context)
        assert self._base is not None
        total = (float(self._base[mask].sum()) if base_mass is None else float(base_mass)) * base_coef
        for lvl, s, e, coef in terms:
            w = lvl.words[s:e]
            total += coef * float(lvl.weight[s:e][mask[w]].sum())
        return total

    def matched_order(self, context: Sequence[int]) -> int:
        """How many words of ``context`` the model has seen as a context (0 .. order-1)."""
        self._check_fitted()
        return len(self._chain(context)[0])

    # ------------------------------------------------------------- queries
    @property
    def discounts(self) -> list[tuple[float, float, float]]:
        """``[(D1, D2, D3+) for order 1..n]``."""
        self._check_fitted()
        return [lvl.discounts for lvl in self._levels]

    @property
    def count_of_counts(self) -> list[tuple[int, int, int, int]]:
        """``[(n1, n2, n3, n4) for order 1..n]`` of the counts each order uses."""
        self._check_fitted()
        return [lvl.count_of_counts for lvl in self._levels]

    def _check_fitted(self) -> int:
        """Raise unless fitted; return the vocabulary size."""
        if not self._fitted or self.vocab_size is None:
            raise RuntimeError("KneserNey model is not fitted; call fit() first")
        return self.vocab_size

    def _rank(self, gram: Sequence[int]) -> int:
        """Rank of ``gram`` among the unique len(gram)-grams, or -1 if unseen."""
        self._check_fitted()
        r = 0
        for j, w in enumerate(gram, start=1):
            r = self._next_rank(r, j, int(w))
            if r < 0:
                return -1
        return r

    def _suffix_ranks(self, ctx: tuple[int, ...]) -> list[int]:
        """The ranks of the suffixes of ``ctx`` of lengths 1 .. len(ctx) (-1 from the first
        unseen one): one search each from those of ``ctx[:-1]``, kept when the context a word
        before was asked (a text read or generated in order), else a walk from each start."""
        L = len(ctx)
        before = self._ranks.peek(ctx[:-1]) if L > 1 else None
        if before is None:
            ranks = [self._rank(ctx[L - j :]) for j in range(1, L + 1)]
        else:
            w = ctx[-1]
            ranks = [self._next_rank(0, 1, w)] + [self._next_rank(r, j, w) for j, r in enumerate(before, start=2)]
        self._ranks.put(ctx[1:], ranks[: L - 1])  # what the context a word later continues
        return ranks

    def _next_rank(self, prefix: int, j: int, w: int) -> int:
        """The rank of the ``j``-gram made of the (j-1)-gram of rank ``prefix`` and ``w``, or -1."""
        keys = self._index[j]
        if prefix < 0 or not 0 <= w < self.vocab_size:
            return -1
        key = prefix * self.vocab_size + w
        r = int(keys.searchsorted(key))
        return r if r < len(keys) and int(keys[r]) == key else -1

    def _chain(self, context: Sequence[int]) -> tuple[list[tuple[_Level, int, int, float]], float]:
        """Seen contexts of orders >= 2 for ``context`` and their weights.

        Returns ``(terms, base_coef)``: each term ``(level, s, e, coef)`` adds
        ``coef * level.weight[s:e]`` at ids ``level.words[s:e]``; ``base_coef``
        (the product of the gammas of all seen orders >= 2) multiplies the
        cached unigram-level distribution.
        """
        n = self.order
        ctx = tuple(int(w) for w in context[max(0, len(context) - (n - 1)) :]) if n > 1 else ()
        kept = self._chains.peek(ctx)
        if kept is not None:
            return kept
        found: list[tuple[_Level, int, int, int]] = []
        for j, r in enumerate(self._suffix_ranks(ctx), start=1):
            if r < 0:
                break  # unseen context: every longer one is unseen too
            lvl = self._levels[j]
            s, e = int(lvl.start[r]), int(lvl.start[r + 1])
            if s == e:
                break  # seen only at the very end of the stream, never followed
            found.append((lvl, s, e, r))
        terms: list[tuple[_Level, int, int, float]] = []
        coef = 1.0
        for lvl, s, e, r in reversed(found):
            terms.append((lvl, s, e, coef))
            coef *= float(lvl.gamma[r])
        return self._chains.put(ctx, (terms, coef))

    def distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(. | last order-1 ids of ``context``) as a float64 array of shape (V,)."""
        self._check_fitted()
        return self._distribution(context)

    def _distribution(self, context: Sequence[int]) -> np.ndarray:
        terms, base_coef = self._chain(context)
        assert self._base is not None
        p = self._base * base_coef
        for lvl, s, e, coef in terms:
            p[lvl.words[s:e]] += coef * lvl.weight[s:e]
        return p

    def prob(self, context: Sequence[int], word: int) -> float:
        """P(``word`` | last order-1 ids of ``context``)."""
        V = self._check_fitted()
        word = int(word)
        if not 0 <= word < V:
            raise ValueError(f"word id {word} out of range for vocab_size={V}")
        terms, base_coef = self._chain(context)
        assert self._base is not None
        total = float(self._base[word]) * base_coef
        for lvl, s, e, coef in terms:
            i = s + int(np.searchsorted(lvl.words[s:e], word))
            if i < e and lvl.words[i] == word:
                total += coef * float(lvl.weight[i])
        return total

    def evaluate(
        self, ids: Sequence[int] | np.ndarray, start: int = 0, exclude: int | None = None
    ) -> dict:
        """Score positions ``i >= max(start, 1)`` of ``ids`` given ``ids[:i]``.

        Returns ``{"tokens", "perplexity", "top1", "top5", "nll"}`` where
        ``nll`` is the total negative log-likelihood in nats and ``top1`` /
        ``top5`` are the fractions of scored positions whose true id is the
        most likely / among the five most likely ids.  If ``exclude`` is given
        (typically the ``<unk>`` id) it still counts for perplexity but is
        never a top-k *prediction*: it is masked out of the ranking, so a
        position whose true id is ``exclude`` is always a top-k miss.
        """
        V = self._check_fitted()
        seq = np.asarray(ids).astype(np.int64).ravel().tolist()
        h = self.order - 1
        first = max(int(start), 1)
        mask = exclude is not None and 0 <= exclude < V
        nll = 0.0
        hit1 = hit5 = 0
        count = 0
        for i in range(first, len(seq)):
            y = seq[i]
            if not 0 <= y < V:
                raise ValueError(f"id {y} at position {i} is out of range for vocab_size={V}")
            p = self._distribution(seq[max(0, i - h) : i])
            nll -= math.log(p[y])
            count += 1
            if mask:
                if y == exclude:
                    continue
                p[exclude] = -1.0
            py = p[y]
            # rank of y in a stable descending sort (ties go to the lower id,
            # as with np.argmax): rank 0 <=> argmax(p) == y
            rank = int(np.count_nonzero(p > py)) + int(np.count_nonzero(p[:y] == py))
            if rank == 0:
                hit1 += 1
            if rank < 5:
                hit5 += 1
        if count == 0:
            return {"tokens": 0, "perplexity": float("nan"), "top1": float("nan"),
                    "top5": float("nan"), "nll": 0.0}
        return {
            "tokens": count,
            "perplexity": math.exp(nll / count),
            "top1": hit1 / count,
            "top5": hit5 / count,
            "nll": nll,
        }


# ---- the saved form, checked ----------------------------------------------------------------
_MAX_ORDER = 16
_ONE = 1.0 + 1e-9  # a probability or weight, with room for rounding
_BIG = 2**53  # counts and offsets beyond this are not from a real text


def _saved(arrays, name: str, kinds: str, length: int | None = None) -> np.ndarray:
    """The saved 1-D array ``name`` of one of ``kinds`` (numpy kind letters), as int64 or float64."""
    if name not in arrays:
        raise ValueError(f"array {name!r} is missing")
    a = np.asarray(arrays[name])
    if a.ndim != 1 or a.dtype.kind not in kinds or (length is not None and len(a) != length):
        want = "numbers" if kinds == "f" else "whole numbers"
        size = "a row of" if length is None else length
        raise ValueError(f"array {name!r} is {a.dtype} of shape {a.shape}; expected {size} {want}")
    if a.dtype.kind == "u" and len(a) and int(a.max()) >= 2**63:
        raise ValueError(f"array {name!r} holds {int(a.max())}, too large for a story-repl n-gram")
    return a.astype(np.float64 if kinds == "f" else np.int64)


def _within(a: np.ndarray, name: str, lo, hi, what: str, above: bool = False) -> np.ndarray:
    """``a`` when lo <= a <= hi (lo < a with ``above``) everywhere; a NaN never is."""
    bad = ~(((a > lo) if above else (a >= lo)) & (a <= hi))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"array {name!r} holds {a[i].item()!r} at index {i}; expected {what}")
    return a


def _saved_level(arrays, k: int, contexts: int, V: int) -> _Level:
    """Order ``k`` of a saved model: ``contexts + 1`` offsets into its k-grams, each context's
    words strictly increasing and below ``V``, weights and back-off weights probabilities."""
    p = f"l{k}_"
    words = _within(_saved(arrays, p + "words", "iu"), p + "words", 0, V - 1, f"a word id below {V}")
    m = len(words)
    start = _saved(arrays, p + "start", "iu", contexts + 1)
    if start[0] != 0 or start[-1] != m or (np.diff(start) < 0).any():
        raise ValueError(f"array {p + 'start'!r} holds {start[:4].tolist()}...; expected offsets rising from 0 to {m}")
    first = np.zeros(m, bool)
    first[start[:-1][start[:-1] < m]] = True  # where each context's words begin
    if ((np.diff(words) <= 0) & ~first[1:]).any():
        raise ValueError(f"array {p + 'words'!r} is not sorted within each context")
    weight = _within(_saved(arrays, p + "weight", "f", m), p + "weight", 0.0, _ONE, "a probability from 0 to 1")
    gamma = _within(_saved(arrays, p + "gamma", "f", contexts), p + "gamma", 0.0, _ONE, "a weight in (0, 1]", above=True)
    counts = _within(_saved(arrays, p + "counts", "iu", m), p + "counts", 1, _BIG, "a count of at least 1")
    stats = _saved(arrays, p + "stats", "f", 7)
    _within(stats, p + "stats", 0.0, np.asarray([3.0] * 3 + [_BIG] * 4), "3 discounts from 0 to 3, 4 counts")
    return _Level(start, words, weight, gamma, counts, tuple(map(float, stats[:3])), tuple(map(int, stats[3:])))

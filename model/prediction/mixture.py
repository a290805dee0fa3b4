"""The predictor behind every completion: a mixture of an LSTM, a Kneser-Ney n-gram and a cache.

All components answer one question, "P(next word | the words so far)", over the *full*
vocabulary: every word of the training text (min count 1), in frequency order, plus the
words the user has written that the corpus never had (they get ids after the corpus's).

- ``lstm`` (:class:`NeuralComponent`): the bundle's network, on numpy. Its own vocabulary
  may be capped (rare words folded into ``<unk>``); the probability it gives ``<unk>`` is
  spread over the words it lacks in proportion to the n-gram's distribution, so every
  training word gets a probability of its own.
- ``ngram`` (:class:`NgramComponent`): interpolated modified Kneser-Ney (order 5) over the
  full training vocabulary, estimated in seconds when the model is trained and saved in the
  bundle as plain arrays.
- ``cache`` (:class:`CacheComponent`): a unigram cache of the last ``CACHE_TOKENS`` tokens the
  user wrote (the session's lines, the history file, the current line; in ``eval`` the text
  already scored). A name typed once is offered from then on.
- ``ncache`` (:class:`NeuralCacheComponent`): a neural cache over the same text: the words
  that followed the recent LSTM states most like the current one (``bench/cache.py`` measured
  it against the unigram cache; the mixture keeps both, weighted by EM).
- ``lstm2`` (optional, :func:`attach_partner`): a second network, from another bundle of the
  same text and split (the stream arch beside the windowed one, say), spread over the full
  vocabulary as ``lstm`` is. The neural cache stays on the first network's states.

The weights are fitted by EM on held-out text (the validation split, or the last tenth of
the training text when there is none) and depend on the context: one weight vector per
"matched order" of the n-gram (how many previous words it has seen as a context), so the
mixture can trust the n-gram where it has seen long contexts and the LSTM elsewhere. With an
empty cache the cache's weight is shared out among the others.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from model.prediction.ngram import KneserNey
from model.text.vocab import Vocab

ORDER = 5
CACHE_TOKENS = 1000  # tokens of recent text the cache remembers
COMPONENTS = ("lstm", "ngram", "cache", "ncache")
PARTNER = "lstm2"  # a second network (another bundle of the same text and split), when one is attached
ALL = COMPONENTS + (PARTNER,)
NCACHE_TOKENS = 500  # positions the neural cache compares the current state with
NCACHE_THETAS = (0.1, 0.3, 1.0)  # sharpness values tried when the weights are fitted
NCACHE_THETA = 0.3  # used when a bundle's weights carry none
EM_STEPS = 60
BUCKET_PRIOR = 50.0  # positions' worth of pull toward the global weights, per bucket
MIN_WEIGHT = 0.002  # no component's weight falls below this, so text unlike the held-out part stays scored sanely
LSTM_CACHE = 4096  # LSTM distributions kept per context
FIT_TOKENS = 8000  # held-out tokens the weights are fitted on (15 weights need no more)
# The n-gram of a very large text is estimated on its last NGRAM_TOKENS training tokens (about
# 50 bytes a token while counting: ~500 MB here); every training word stays in the vocabulary.
NGRAM_TOKENS = 10_000_000


class NgramComponent:
    name = "ngram"

    def __init__(self, kn: KneserNey):
        self.kn = kn
        self.size = int(kn.vocab_size)

    def distribution(self, ids: Sequence[int]) -> np.ndarray:
        """(V,) float64 over the full vocabulary; ids >= V (user words) break the context."""
        return self.kn.distribution(list(ids)[-(self.kn.order - 1) :] if self.kn.order > 1 else [])

    def bucket(self, ids: Sequence[int]) -> int:
        return self.kn.matched_order(list(ids)[-(self.kn.order - 1) :] if self.kn.order > 1 else [])


class NeuralComponent:
    name = "lstm"

    def __init__(self, net, lstm_vocab: Vocab, words: Vocab, context: int):
        self.net = net
        self.lstm_vocab = lstm_vocab
        self.context = int(context)
        self.size = len(words)
        unk = lstm_vocab.unk_id
        self.unk = unk
        # full id -> LSTM id (<unk> for the words it lacks, -1 when it has no <unk>)
        fallback = -1 if unk is None else unk
        self.to_lstm = np.asarray([lstm_vocab.index.get(w, fallback) for w in words.tokens], dtype=np.int64)
        known = self.to_lstm != fallback if unk is not None else self.to_lstm >= 0
        if unk is not None and words.index.get(lstm_vocab.tokens[unk]) is not None:
            known[words.index[lstm_vocab.tokens[unk]]] = False  # a literal "<unk>" in the text
        self.known_full = np.flatnonzero(known)
        self.known_lstm = self.to_lstm[self.known_full]
        self.missing = ~known  # full-vocabulary words the LSTM lacks
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

    def window(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The last ``context`` LSTM ids of a full-id context (user words read as <unk> or skipped)."""
        out: list[int] = []
        for i in reversed(list(ids)):
            j = int(self.to_lstm[i]) if 0 <= i < self.size else (self.unk if self.unk is not None else -1)
            if j >= 0:
                out.append(j)
                if len(out) == self.context:
                    break
        return tuple(reversed(out))

    def lstm_probs(self, ids: Sequence[int]) -> np.ndarray:
        """(V_lstm,) the network's own distribution after ``ids`` (cached by window)."""
        return self.entry(ids)[0]

    def features(self, ids: Sequence[int]) -> np.ndarray:
        """(H,) the state the logits layer reads after ``ids`` (what the neural cache compares)."""
        return self.entry(ids)[1]

    def entry(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        key = self.window(ids)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        out = self.run([key])[0]
        self._cache[key] = out
        if len(self._cache) > LSTM_CACHE:
            self._cache.popitem(last=False)
        return out

    def entries(self, contexts: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`entry` for several contexts, the uncached ones computed in one batch."""
        keys = [self.window(c) for c in contexts]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        for key, out in zip(todo, self.run(todo) if todo else []):
            self._cache[key] = out
        got = []
        for key in keys:
            hit = self._cache.get(key)
            if hit is None:  # evicted meanwhile by a very long batch
                hit = self.run([key])[0]
            got.append(hit)
        while len(self._cache) > LSTM_CACHE:
            self._cache.popitem(last=False)
        return got

    def run(self, keys: Sequence[tuple[int, ...]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities, features) for several windows in one batch."""
        from model.prediction.numpy_net import softmax

        x = np.zeros((len(keys), self.context), np.int64)
        for r, key in enumerate(keys):
            if key:
                x[r, -len(key) :] = np.asarray(key) + 1
        feats = self.net.features(x)
        probs = softmax(feats @ self.net.w["logits/kernel"] + self.net.w["logits/bias"]).astype(np.float64)
        return [(probs[r], feats[r].astype(np.float64)) for r in range(len(keys))]

    def spread(self, lstm_probs: np.ndarray, ngram: np.ndarray | None) -> np.ndarray:
        """(V,) full-vocabulary distribution from the network's (V_lstm,) one."""
        out = np.zeros(self.size, np.float64)
        out[self.known_full] = lstm_probs[self.known_lstm]
        if self.unk is not None and self.missing.any():
            share = ngram[self.missing] if ngram is not None else np.ones(int(self.missing.sum()))
            total = share.sum()
            if total > 0:
                out[self.missing] = lstm_probs[self.unk] * share / total
        s = out.sum()
        return out / s if s > 0 else np.full(self.size, 1.0 / self.size)

    def distribution(self, ids: Sequence[int], ngram: np.ndarray | None = None) -> np.ndarray:
        return self.spread(self.lstm_probs(ids), ngram)


class CacheComponent:
    """Unigram distribution of the last ``size`` tokens (full ids, user words included)."""

    name = "cache"

    def __init__(self, size: int = CACHE_TOKENS):
        self.size = int(size)

    def distribution(self, history: Sequence[int], total: int) -> np.ndarray | None:
        """(total,) or None when the history is empty."""
        tail = np.asarray(list(history)[-self.size :], dtype=np.int64)
        tail = tail[(tail >= 0) & (tail < total)]
        if len(tail) == 0:
            return None
        return smooth_cache(np.bincount(tail, minlength=total).astype(np.float64), len(tail))


class NeuralCacheComponent:
    """A neural cache (Grave et al., 2017): the next word is what followed the recent states
    most like the current one, p(w) ∝ Σ_{i: w_i = w} exp(θ h · h_i) over the last ``size``
    (state, next word) pairs of the user's text."""

    name = "ncache"

    def __init__(self, theta: float = NCACHE_THETA, size: int = NCACHE_TOKENS):
        self.theta = float(theta)
        self.size = int(size)

    def scores(self, h: np.ndarray, states: np.ndarray) -> np.ndarray:
        s = self.theta * (states @ h)
        return np.exp(s - s.max())

    def distribution(self, h: np.ndarray, states: np.ndarray, targets: np.ndarray, total: int) -> np.ndarray | None:
        if len(targets) == 0:
            return None
        e = self.scores(h, states[-self.size :])
        t = targets[-self.size :]
        keep = t < total
        return smooth_cache(np.bincount(t[keep], weights=e[keep], minlength=total), float(e.sum()))

    def prob(self, h: np.ndarray, states: np.ndarray, targets: np.ndarray, y: int, total: int) -> float:
        if len(targets) == 0:
            return 1.0 / total
        e = self.scores(h, states[-self.size :])
        t = targets[-self.size :]
        return (1.0 - CACHE_FLOOR) * float(e[t == y].sum()) / float(e.sum()) + CACHE_FLOOR / total


CACHE_FLOOR = 1e-3  # share of the cache's mass spread evenly, so it alone gives every word some probability


def smooth_cache(counts: np.ndarray, n: float) -> np.ndarray:
    return (1.0 - CACHE_FLOOR) * counts / max(1e-300, n) + CACHE_FLOOR / len(counts)


@dataclass
class Weights:
    """Mixture weights: ``by_bucket[b][k]`` for n-gram matched order b and component k."""

    names: list[str]
    by_bucket: list[list[float]]
    overall: list[float]
    fitted_on: str = ""
    positions: int = 0
    perplexity: dict[str, float] = field(default_factory=dict)  # each component's and the mixture's, where fitted
    theta: float = NCACHE_THETA  # the neural cache's sharpness

    def to_dict(self) -> dict:
        return {
            "names": self.names,
            "by_bucket": self.by_bucket,
            "overall": self.overall,
            "fitted_on": self.fitted_on,
            "positions": self.positions,
            "perplexity": self.perplexity,
            "theta": self.theta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Weights":
        return cls(
            list(d["names"]),
            [list(map(float, row)) for row in d["by_bucket"]],
            list(map(float, d["overall"])),
            str(d.get("fitted_on", "")),
            int(d.get("positions", 0)),
            {k: float(v) for k, v in (d.get("perplexity") or {}).items()},
            float(d.get("theta", NCACHE_THETA)),
        )

    def row(self, bucket: int, active: Sequence[str]) -> np.ndarray:
        """Weights of the ``active`` components (in ``self.names`` order), renormalised."""
        src = self.by_bucket[bucket] if 0 <= bucket < len(self.by_bucket) else self.overall
        w = np.asarray([src[i] if n in active else 0.0 for i, n in enumerate(self.names)], np.float64)
        s = w.sum()
        if s <= 0:  # every fitted weight is on parts that are off: share equally
            w = np.asarray([1.0 if n in active else 0.0 for n in self.names], np.float64)
            s = w.sum()
        return w / s


def em_weights(p: np.ndarray, steps: int = EM_STEPS) -> np.ndarray:
    """Maximum-likelihood mixture weights for (n, K) per-position component probabilities."""
    n, k = p.shape
    w = np.full(k, 1.0 / k)
    if n == 0:
        return w
    p = np.maximum(p, 1e-300)
    for _ in range(steps):
        r = p * w
        r /= r.sum(axis=1, keepdims=True)
        w = r.mean(axis=0)
    return w


def _floored(w: np.ndarray) -> np.ndarray:
    w = np.maximum(np.asarray(w, np.float64), MIN_WEIGHT)
    return w / w.sum()


def fit_weights(p: np.ndarray, buckets: np.ndarray, names: Sequence[str], n_buckets: int, fitted_on: str = "") -> Weights:
    """EM weights overall and per bucket; a bucket with few positions leans on the overall ones."""
    overall = _floored(em_weights(p))
    rows = []
    for b in range(n_buckets):
        sel = buckets == b
        m = int(sel.sum())
        if m == 0:
            rows.append(overall.tolist())
            continue
        wb = em_weights(p[sel])
        rows.append(_floored((m * wb + BUCKET_PRIOR * overall) / (m + BUCKET_PRIOR)).tolist())
    w = Weights(list(names), rows, overall.tolist(), fitted_on, int(len(p)))
    mix = np.asarray([np.dot(p[i], w.row(int(buckets[i]), names)) for i in range(len(p))]) if len(p) else np.zeros(0)
    if len(p):
        for j, name in enumerate(names):
            w.perplexity[name] = float(math.exp(-np.mean(np.log(np.maximum(p[:, j], 1e-300)))))
        w.perplexity["mixture"] = float(math.exp(-np.mean(np.log(np.maximum(mix, 1e-300)))))
    return w


class Mixture:
    """Components and weights over one full vocabulary; itself answers ``distribution(ids)``.

    ``words`` grows when the user writes a word the corpus never had (:meth:`observe`); such
    words only ever get probability from the cache."""

    def __init__(
        self,
        words: Vocab,
        ngram: NgramComponent | None,
        neural: NeuralComponent | None,
        weights: Weights | None,
        cache: CacheComponent | None = None,
        partner: NeuralComponent | None = None,
    ):
        self.words = words
        self.partner = partner
        self.corpus_size = len(words)  # ids below this are training words
        self.ngram = ngram
        self.neural = neural
        self.cache = cache or CacheComponent()
        self.weights = weights
        self.ncache = NeuralCacheComponent(weights.theta if weights is not None else NCACHE_THETA)
        self.history: list[int] = []
        # (state, next word) pairs of the user's text, for the neural cache
        self.states: list[np.ndarray] = []
        self.targets: list[int] = []
        self.version = 0  # bumped whenever the history changes (distribution caches key on it)
        self.active: list[str] = [n for n in ALL if self.available(n)]

    def fresh(self) -> "Mixture":
        """The same components and weights with an empty cache and the corpus's vocabulary
        (for scoring a text from scratch)."""
        words = Vocab(list(self.words.tokens[: self.corpus_size]), list(self.words.counts[: self.corpus_size]))
        other = Mixture(words, self.ngram, self.neural, self.weights, CacheComponent(self.cache.size), self.partner)
        other.ncache = NeuralCacheComponent(self.ncache.theta, self.ncache.size)
        other.active = list(self.active)
        return other

    # ---- parts ------------------------------------------------------------------------
    def available(self, name: str) -> bool:
        return {
            "lstm": self.neural is not None,
            "ngram": self.ngram is not None,
            "cache": True,
            "ncache": self.neural is not None,
            PARTNER: self.partner is not None,
        }.get(name, False)

    def set_active(self, names: Sequence[str]) -> list[str]:
        from model.errors import StoryError

        names = [n.strip().lower() for n in names if n.strip()]
        bad = [n for n in names if n not in ALL]
        if bad:
            raise StoryError(f"unknown component {bad[0]!r}; choose from {', '.join(COMPONENTS)} (and {PARTNER} with --partner)")
        missing = [n for n in names if not self.available(n)]
        if missing:
            raise StoryError(f"the {missing[0]} component is not available for this model")
        if not names:
            raise StoryError(f"give at least one component of {', '.join(COMPONENTS)}")
        self.active = [n for n in ALL if n in names]
        self.version += 1
        return self.active

    def weight_row(self, bucket: int, live: bool | Sequence[str] = True) -> np.ndarray:
        """Weights of the components in ``ALL`` order for this context. ``live`` names
        the components that can answer now (True: all; a cache with no text cannot); the
        others' weight is shared out."""
        active = [n for n in self.active if live is True or n in live]
        if not active:
            active = [n for n in self.active if n not in ("cache", "ncache")] or list(self.active)
        if self.weights is None:
            w = np.asarray([1.0 if n in active else 0.0 for n in ALL])
            others = len([n for n in active if n not in ("cache", "ncache")])
            for k, n in enumerate(ALL):
                if n in ("cache", "ncache") and n in active and others:
                    w[k] = 0.1 * others
            return w / w.sum()
        row = self.weights.row(bucket, active)
        return np.asarray([row[self.weights.names.index(n)] if n in self.weights.names else 0.0 for n in ALL])

    # ---- the user's text ----------------------------------------------------------------
    def word_id(self, token: str, add: bool = False) -> int | None:
        i = self.words.index.get(token)
        if i is None and add:
            i = len(self.words.tokens)
            self.words.tokens.append(token)
            self.words.counts.append(0)
            self.words.index[token] = i
        return i

    def observe(self, tokens: Sequence[str]) -> None:
        """Remember what the user wrote (one line, or a text): the caches see it, new words
        join the vocabulary."""
        ids = [int(i) for i in (self.word_id(t, add=True) for t in tokens) if i is not None]
        self.history.extend(ids)
        if len(self.history) > 4 * self.cache.size:
            self.history = self.history[-self.cache.size :]
        if self.neural is not None and len(ids) > 1:
            h, t = self.line_pairs(ids)
            self.states.extend(h)
            self.targets.extend(t)
            if len(self.targets) > 4 * self.ncache.size:
                self.states = self.states[-self.ncache.size :]
                self.targets = self.targets[-self.ncache.size :]
        self.version += 1

    def line_pairs(self, ids: Sequence[int]) -> tuple[list[np.ndarray], list[int]]:
        """(state after ids[:j], ids[j]) for j = 1 .. len(ids)-1: what followed each state."""
        ids = [int(i) for i in ids]
        if len(ids) < 2:
            return [], []
        return [f for _, f in self.neural.entries([ids[:j] for j in range(1, len(ids))])], ids[1:]

    # ---- distributions ------------------------------------------------------------------
    def parts(self, ids: Sequence[int], with_history: bool = True) -> dict[str, np.ndarray]:
        """Each available component's distribution over the current vocabulary."""
        total = len(self.words)
        out: dict[str, np.ndarray] = {}
        ng = self.ngram.distribution(ids) if self.ngram is not None else None
        if ng is not None:
            out["ngram"] = _pad(ng, total)
        if self.neural is not None:
            out["lstm"] = _pad(self.neural.distribution(ids, ng), total)
        if self.partner is not None:
            out[PARTNER] = _pad(self.partner.distribution(ids, ng), total)
        hist = (self.history + [int(i) for i in ids]) if with_history else [int(i) for i in ids]
        c = self.cache.distribution(hist, total)
        if c is not None:
            out["cache"] = c
        if self.neural is not None and "ncache" in self.active:
            h_line, t_line = self.line_pairs(list(ids)[-2 * self.ncache.size :])
            states = (self.states if with_history else []) + h_line
            targets = (self.targets if with_history else []) + t_line
            if targets:
                nc = self.ncache.distribution(
                    self.neural.features(ids), np.asarray(states), np.asarray(targets, np.int64), total
                )
                if nc is not None:
                    out["ncache"] = nc
        return out

    def bucket(self, ids: Sequence[int]) -> int:
        return self.ngram.bucket(ids) if self.ngram is not None else 0

    def distribution(self, ids: Sequence[int]) -> np.ndarray:
        """P(next | ids) over the current vocabulary, float64."""
        parts = self.parts(ids)
        w = self.weight_row(self.bucket(ids), list(parts))
        total = len(self.words)
        p = np.zeros(total, np.float64)
        for k, name in enumerate(ALL):
            if w[k] > 0 and name in parts:
                p += w[k] * parts[name]
        s = p.sum()
        return p / s if s > 0 else np.full(total, 1.0 / total)


def _pad(p: np.ndarray, total: int) -> np.ndarray:
    if len(p) >= total:
        return p
    out = np.zeros(total, np.float64)
    out[: len(p)] = p
    return out


# ---- scoring a stream (weight fitting and eval) ----------------------------------------------
def stream_ids(mix: Mixture, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(full ids, in-vocabulary mask) of ``tokens``; words the corpus never had get new ids."""
    ids = np.asarray([mix.word_id(t, add=True) for t in tokens], dtype=np.int64)
    return ids, ids < mix.corpus_size


def _network_pass(neural: NeuralComponent, ids: np.ndarray, batch: int, keep: bool = True):
    """The network run over every position's window, batched over the distinct windows:
    ((the (probabilities, state) of each distinct window when ``keep``, the window row of
    each position), states by position, ids as int64, picks). Without ``keep`` no distribution is kept (a few thousand of them over a large
    vocabulary are gigabytes); ``picks[i]`` holds instead what the true word's score needs:
    the LSTM's probability of ``ids[i]`` (through its vocabulary), of ``<unk>``, and the mass
    of the words it shares with the full vocabulary."""
    n = len(ids)
    slot: dict = {}
    row_of = np.zeros(n, np.int64)  # the neural cache remembers every position, scored or not
    for i in range(1, n):
        row_of[i] = slot.setdefault(neural.window(ids[max(0, i - 4 * neural.context) : i]), len(slot))
    keys = list(slot)
    y = np.asarray(ids, dtype=np.int64)
    wins: list = []  # by window row (row_of[i] for position i), when kept
    feats = np.zeros((n, neural.net.w["logits/kernel"].shape[0]))  # row i: the state after ids[:i]
    picks = None if keep else np.zeros((n, 3))
    for s in range(0, len(keys), batch):
        outs = neural.run(keys[s : s + batch])
        at = np.flatnonzero((row_of >= s) & (row_of < s + len(outs)))
        at = at[at >= 1]
        r = row_of[at] - s
        feats[at] = np.stack([o[1] for o in outs])[r]
        if keep:
            wins += outs
            continue
        P = np.stack([o[0] for o in outs])
        known = (y[at] >= 0) & (y[at] < len(neural.to_lstm))  # unscored positions may hold other ids
        picks[at[known], 0] = P[r[known], neural.to_lstm[y[at[known]]]]
        if neural.unk is not None:
            picks[at, 1] = P[r, neural.unk]
        picks[at, 2] = P[:, neural.known_lstm].sum(axis=1)[r]
    return (wins, row_of), feats, y, picks


def score_stream(mix: Mixture, ids: np.ndarray, scored: np.ndarray, ranks: bool = False, batch: int = 256) -> dict:
    """Score positions 1..n-1 of ``ids`` where ``scored`` is true (in-vocabulary targets).

    The cache holds the text already passed (it starts empty). Returns per-position
    probabilities of the true word for every available component (``probs[name]``), the
    n-gram bucket of each position and, with ``ranks``, the 0-based rank of the true word
    under the mixture's active components and under the n-gram alone."""
    n = len(ids)
    names = [c for c in ALL if mix.available(c)]
    pos = [i for i in range(1, n) if scored[i]]
    total = len(mix.words)
    probs = {c: np.zeros(len(pos)) for c in names}
    buckets, rank_mix, rank_ng = (np.zeros(len(pos), np.int64) for _ in range(3))
    (wins, row_of), feats, targets, picks = (
        _network_pass(mix.neural, ids, batch, keep=ranks) if mix.neural is not None else (([], None), None, None, None)
    )
    partner = mix.partner
    (wins2, row_of2), _, _, picks2 = _network_pass(partner, ids, batch, keep=ranks) if partner is not None else (([], None), None, None, None)
    counts, window, neural = np.zeros(total, np.float64), [], mix.neural
    kn = mix.ngram.kn if mix.ngram is not None else None
    lacking = {}  # network name -> (mask of the full-vocabulary words it lacks, their unigram base mass)
    for name, net in (("lstm", neural), (PARTNER, partner)):
        if net is not None and kn is not None and net.unk is not None and not ranks:
            missing = np.zeros(kn.vocab_size, bool)
            missing[: len(net.missing)] = net.missing
            lacking[name] = (missing, float(kn._base[missing].sum()))
    j = 0
    for i in range(1, n):
        prev = int(ids[i - 1])
        counts[prev] += 1
        window.append(prev)
        if len(window) > mix.cache.size:
            counts[window.pop(0)] -= 1
        if not scored[i]:
            continue
        ctx = ids[max(0, i - 8 * ORDER) : i]
        y = int(ids[i])
        if kn is not None:
            buckets[j] = mix.ngram.bucket(ctx)
        if "cache" in probs:
            probs["cache"][j] = (1.0 - CACHE_FLOOR) * counts[y] / max(1, len(window)) + CACHE_FLOOR / total
        if neural is not None:
            pl = wins[row_of[i]][0] if ranks else None
            lo = max(1, i - mix.ncache.size)
            if "ncache" in probs:
                probs["ncache"][j] = mix.ncache.prob(feats[i], feats[lo:i], targets[lo:i], y, total)
        if not ranks:  # the true word's probability only: O(order) per position, no full distribution
            if kn is not None:
                probs["ngram"][j] = kn.prob(ctx[-(kn.order - 1) :].tolist() if kn.order > 1 else [], y)
            for name, net, pk in (("lstm", neural, picks), (PARTNER, partner, picks2)):
                if net is not None:
                    probs[name][j] = _network_prob(net, pk[i], y, ctx, kn, probs["ngram"][j] if kn is not None else 0.0, lacking.get(name))
            j += 1
            continue
        parts: dict[str, np.ndarray] = {}
        ng = None
        if kn is not None:
            ng = mix.ngram.distribution(ctx)
            parts["ngram"] = _pad(ng, total)
        if neural is not None:
            parts["lstm"] = _pad(neural.spread(pl, ng), total)
            nc = mix.ncache.distribution(feats[i], feats[lo:i], targets[lo:i], total) if i > lo else None
            parts["ncache"] = nc if nc is not None else np.full(total, 1.0 / total)
        if partner is not None:
            parts[PARTNER] = _pad(partner.spread(wins2[row_of2[i]][0], ng), total)
        parts["cache"] = smooth_cache(counts, len(window))
        for c in names:
            probs[c][j] = parts[c][y]
        w = mix.weight_row(int(buckets[j]), live_at(i))
        p = sum(w[k] * parts[c] for k, c in enumerate(ALL) if c in parts and w[k] > 0)
        rank_mix[j] = _rank(p, y)
        if ng is not None:
            rank_ng[j] = _rank(parts["ngram"], y)
        j += 1
    out = {"positions": np.asarray(pos), "probs": probs, "buckets": buckets, "rank": rank_mix, "rank_ngram": rank_ng}
    if mix.neural is not None:
        out["features"], out["targets"] = feats, targets
    return out


def live_at(i: int) -> tuple[str, ...]:
    """The components that can answer at position ``i`` of a scored text: the neural cache
    needs one earlier (state, word) pair, so not at the second word."""
    return ALL if i > 1 else tuple(c for c in ALL if c != "ncache")


def _network_prob(neural: NeuralComponent, pick: np.ndarray, y: int, ctx: np.ndarray, kn, p_ngram: float, lacking) -> float:
    """A network's probability of the full-vocabulary word ``y`` from its ``picks`` row (see
    :func:`_network_pass`): its own probability of the word, or, for a word it lacks, its
    ``<unk>`` probability times the n-gram's share of that word among the words it lacks."""
    p_true, p_unk, p_known = pick
    if not neural.missing[y]:
        p = p_true
    elif kn is not None and lacking is not None:
        missing, base_missing = lacking
        share = kn.mass(ctx[-(kn.order - 1) :].tolist() if kn.order > 1 else [], missing, base_missing)
        p = p_unk * p_ngram / share if share > 0 else 0.0
    else:
        p = p_unk / max(1, int(neural.missing.sum()))
    if neural.unk is None or not neural.missing.any():
        p /= max(float(p_known), 1e-300)
    return float(p)


def _rank(p: np.ndarray, y: int) -> int:
    """0-based rank of ``y`` in a stable descending order (ties to the lower id)."""
    py = p[y]
    return int(np.count_nonzero(p > py)) + int(np.count_nonzero(p[:y] == py))


def heldout_scores(mix: Mixture, tokens: Sequence[str]) -> dict:
    """:func:`score_stream` of the first ``FIT_TOKENS`` of held-out ``tokens``: every
    component's probability of each true word, what the weights are fitted on."""
    saved = (list(mix.words.tokens), list(mix.words.counts))
    ids, known = stream_ids(mix, list(tokens)[:FIT_TOKENS])
    try:
        return score_stream(mix, ids, known)
    finally:  # held-out words must not join the model's vocabulary
        mix.words = Vocab(saved[0], saved[1])


def fit_mixture_weights(mix: Mixture, tokens: Sequence[str], fitted_on: str) -> Weights:
    """EM weights on held-out ``tokens`` (the cache starts empty and fills as the text goes)."""
    res = heldout_scores(mix, tokens)
    names = [c for c in ALL if mix.available(c)]
    theta = mix.ncache.theta
    if "ncache" in names and len(res["positions"]) > 1:  # the neural cache's sharpness, by likelihood
        best = None
        for t in NCACHE_THETAS:
            nc = NeuralCacheComponent(t, mix.ncache.size)
            trial = dict(res["probs"], ncache=ncache_probs(nc, res["features"], res["targets"], res["positions"], len(mix.words)))
            p = np.stack([trial[c] for c in names], axis=1)
            ll = float(np.log((p * em_weights(p)).sum(axis=1)).sum())
            if best is None or ll > best[0]:
                best = (ll, t, trial)
        _, theta, res["probs"] = best
    p = np.stack([res["probs"][c] for c in names], axis=1) if len(res["positions"]) else np.zeros((0, len(names)))
    n_buckets = mix.ngram.kn.order if mix.ngram is not None else 1
    w = fit_weights(p, res["buckets"], names, n_buckets, fitted_on)
    w.theta = float(theta)
    mix.ncache.theta = float(theta)
    return w


def ncache_probs(nc: NeuralCacheComponent, feats: np.ndarray, ids: np.ndarray, positions, total: int) -> np.ndarray:
    """The neural cache's probability of the word at each scored position, from the
    (state, word) pairs of the positions before it (``feats[i]``: the state after ``ids[:i]``)."""
    out = np.empty(len(positions))
    for j, i in enumerate(positions):
        lo = max(1, int(i) - nc.size)
        out[j] = nc.prob(feats[i], feats[lo:i], ids[lo:i], int(ids[i]), total)
    return out


# ---- building, saving and loading --------------------------------------------------------
def training_split(corpus, valid_fraction: float) -> tuple[list[str], list[str]]:
    """(training tokens, held-out tokens) of a corpus, split as training splits it."""
    train, valid = corpus.split(float(valid_fraction or 0.0))
    words = corpus.words
    return [words[i] for i in train.tolist()], [words[i] for i in valid.tolist()]


def heldout_for_weights(train_tokens: list[str], valid_tokens: list[str]) -> tuple[list[str], str]:
    """The text the weights are fitted on: the validation split, else the training text's last tenth."""
    if len(valid_tokens) >= 2:
        return valid_tokens, "validation split"
    n = len(train_tokens)
    return train_tokens[n - max(2, n // 10) :], "last tenth of the training text"


def training_vocabulary(corpus, valid_fraction: float) -> tuple[Vocab, np.ndarray, np.ndarray, np.ndarray]:
    """(every word of the training part, in frequency order with ties by first appearance;
    the table from corpus ids to that vocabulary's ids; the training and held-out parts as
    corpus ids). The parts are views of the corpus ids (memory-mapped for a large text),
    counted block by block, so that no copy of a large text's ids is made here."""
    from model.text.ids import count_ids

    train, valid = corpus.split(float(valid_fraction or 0.0))
    counts = count_ids(train, len(corpus.words))
    # The training part is the text's beginning, so a word's first appearance in it is its
    # first appearance in the text (``corpus.first``).
    words = Vocab.from_counts(corpus.words, counts, corpus.first)
    return words, words.id_table(corpus.words), train, valid


def ngram_mixture(corpus, config) -> Mixture:
    """The n-gram and cache alone (no network yet), weighted by EM on held-out text: what
    completes words while the LSTM of a new corpus trains."""
    return build_components(corpus, config, None, None)


def build_components(corpus, config, lstm_vocab: Vocab | None, weights: dict[str, np.ndarray] | None) -> Mixture:
    """Full vocabulary, n-gram and (with ``weights``) the network; mixture weights fitted by EM."""
    from model.prediction.numpy_net import Network

    words, table, train, valid_ids = training_vocabulary(corpus, config.valid_fraction)
    # the n-gram of a very large text: its last NGRAM_TOKENS training tokens
    kn = KneserNey(ORDER, vocab_size=len(words)).fit(table[np.asarray(train[-NGRAM_TOKENS:])].astype(np.int64))
    neural = None
    if weights is not None and lstm_vocab is not None:
        neural = NeuralComponent(Network(config, weights), lstm_vocab, words, int(config.context))
    mix = Mixture(words, NgramComponent(kn), neural, None)
    if len(valid_ids) >= 2:
        heldout, where = [corpus.words[i] for i in valid_ids[:FIT_TOKENS].tolist()], "validation split"
    else:
        start = len(train) - max(2, len(train) // 10)
        tail = table[np.asarray(train[start : start + FIT_TOKENS])]
        heldout, where = [words.tokens[i] for i in tail.tolist()], "last tenth of the training text"
    mix.weights = fit_mixture_weights(mix, heldout, where)
    return mix


def extras_of(mix: Mixture) -> dict[str, bytes]:
    """The bundle files of the mixture's non-neural parts (plain JSON and arrays)."""
    import io
    import json

    buf = io.BytesIO()
    np.savez(buf, **mix.ngram.kn.to_arrays())
    words = Vocab(mix.words.tokens[: mix.corpus_size], mix.words.counts[: mix.corpus_size])
    return {
        "words.json": words.to_json().encode("utf-8"),
        "ngram.npz": buf.getvalue(),
        "mixture.json": json.dumps({"format_version": 1, **mix.weights.to_dict()}, ensure_ascii=False).encode("utf-8"),
    }


def read_extras(bundle) -> tuple[Vocab, KneserNey, Weights] | None:
    """The bundle's saved components, or None when it has none (an older bundle)."""
    import io
    import json

    from model.errors import StoryError

    raw = {name: bundle.extra(name) for name in ("words.json", "ngram.npz", "mixture.json")}
    if any(v is None for v in raw.values()):
        return None
    try:
        words = Vocab.from_json(raw["words.json"].decode("utf-8"))
        with np.load(io.BytesIO(raw["ngram.npz"]), allow_pickle=False) as z:
            kn = KneserNey.from_arrays({k: z[k] for k in z.files})
        weights = Weights.from_dict(json.loads(raw["mixture.json"].decode("utf-8")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise StoryError(f"{bundle.path}: the n-gram or mixture files are corrupt ({type(e).__name__}); retrain the model") from None
    if kn.vocab_size != len(words):
        raise StoryError(f"{bundle.path}: ngram.npz and words.json disagree on the vocabulary; retrain the model")
    return words, kn, weights


def load_mixture(bundle, partner=None) -> Mixture:
    """The bundle's mixture. An older bundle without components gets them built from its
    training text (and saved into it when it can be written); without that text, the LSTM
    alone over its own vocabulary. ``partner``: another bundle of the same text and split
    whose network joins as the ``lstm2`` component (:func:`attach_partner`)."""
    mix = _load_mixture(bundle)
    if partner is not None:
        attach_partner(mix, bundle, partner)
    return mix


def attach_partner(mix: Mixture, bundle, other) -> None:
    """Add ``other``'s network to ``mix`` as the ``lstm2`` component and refit every weight
    by EM on the same held-out text as the bundle's own. The refit takes seconds on a book
    (25 s for tinyshakespeare here), so its weights are kept in ``$STORY_REPL_HOME/partners/``
    under a digest of both networks and of the bundle's saved components; the next load reads
    them back (an unreadable file is refitted and rewritten).

    Two networks of different recipes (the windowed LSTM and the stream LSTM, say) make
    different errors, so their mixture beats either (``bench/keystrokes.py --partner``)."""
    from model.text.corpus import read_corpus
    from model.errors import StoryError
    from model.prediction.numpy_net import Network

    if mix.neural is None or mix.ngram is None:
        raise StoryError(f"{bundle.path}: a partner network needs a model with its n-gram and network")
    if str(other.path) == str(bundle.path):
        raise StoryError("the partner is the model itself; give another recipe (e.g. --partner stream)")
    mine, theirs = dict(bundle.info.get("corpus") or {}), dict(other.info.get("corpus") or {})
    same = (
        mine.get("sha256")
        and mine.get("sha256") == theirs.get("sha256")
        and float(bundle.config.valid_fraction or 0) == float(other.config.valid_fraction or 0)
        and bool(bundle.config.keep_case) == bool(other.config.keep_case)
    )
    if not same:
        raise StoryError(f"{other.path}: the partner was not trained on the same text, split and case as {bundle.path}")
    mix.partner = NeuralComponent(Network(other.config, other.weights), other.vocab, mix.words, int(other.config.context))
    mix.partner.name = PARTNER
    mix.active = [n for n in ALL if mix.available(n)]
    saved = partner_weights_path(bundle, other)
    weights = _read_weights(saved, mix)
    if weights is None:
        try:
            corpus = read_corpus(mine["path"], keep_case=bool(bundle.config.keep_case))
        except StoryError as e:
            raise StoryError(f"a partner network needs the training text to fit the weights: {e}") from None
        if corpus.sha256 != mine["sha256"]:
            raise StoryError(f"{mine['path']} changed since the model was trained; retrain it to use a partner network")
        train, valid = training_split(corpus, bundle.config.valid_fraction)
        heldout, where = heldout_for_weights(train, valid)
        weights = fit_mixture_weights(mix, heldout, where)
        _write_weights(saved, weights)
    mix.weights = weights
    mix.ncache.theta = float(weights.theta)
    mix.version += 1


def partner_weights_path(bundle, other):
    """Where the weights of ``bundle`` with ``other`` as partner are kept: a digest of both
    networks' weights and of the bundle's n-gram, vocabulary and own weights."""
    import hashlib

    from model.home import home
    from model.text.ids import file_digest

    h = hashlib.sha256()
    for b, names in ((bundle, ("weights.npz", "words.json", "ngram.npz", "mixture.json")), (other, ("weights.npz",))):
        for name in names:
            f = b.path / name
            h.update(f"{name}\0{file_digest(f) if f.is_file() else ''}\0".encode())
    return home() / "partners" / f"{h.hexdigest()[:24]}.json"


def _read_weights(path, mix: Mixture) -> Weights | None:
    import json

    try:
        w = Weights.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = [n for n in ALL if mix.available(n)]
    if w.names != names or any(len(row) != len(names) for row in w.by_bucket):
        return None
    return w


def _write_weights(path, weights: Weights) -> None:
    """Write atomically (a temporary file, then one rename); a cache that cannot be written is skipped."""
    import json
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(weights.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _load_mixture(bundle) -> Mixture:
    from model.prediction.numpy_net import Network

    saved = read_extras(bundle)
    if saved is not None:
        words, kn, weights = saved
        neural = NeuralComponent(Network(bundle.config, bundle.weights), bundle.vocab, words, int(bundle.config.context))
        return Mixture(words, NgramComponent(kn), neural, weights)
    mix = _rebuild(bundle)
    if mix is not None:
        return mix
    words = Vocab([t for t in bundle.vocab.tokens if t != "<unk>"], [c for t, c in zip(bundle.vocab.tokens, bundle.vocab.counts) if t != "<unk>"])
    neural = NeuralComponent(Network(bundle.config, bundle.weights), bundle.vocab, words, int(bundle.config.context))
    return Mixture(words, None, neural, None)


def _rebuild(bundle) -> Mixture | None:
    from model.errors import StoryError

    info = dict(bundle.info.get("corpus") or {})
    if not info.get("path"):
        return None
    try:
        from model.text.corpus import read_corpus

        corpus = read_corpus(info["path"], keep_case=bool(bundle.config.keep_case))
    except StoryError:
        return None
    if info.get("sha256") and corpus.sha256 != info["sha256"]:
        return None
    mix = build_components(corpus, bundle.config, bundle.vocab, bundle.weights)
    try:  # keep them for next time; the bundle is rewritten atomically
        from model.storage.bundle import copy_bundle_with

        copy_bundle_with(bundle, extras_of(mix))
    except (StoryError, OSError):
        pass
    return mix

"""The registry of component kinds, and the built-in kinds of the mixture.

Every component (:mod:`model.prediction.interface`) gives P(next word | the words so far) over the
full vocabulary: every word of the training text in frequency order, then the words the user wrote
that the corpus never had. Building a mixture makes one component of every kind registered with
:func:`register` that can be made (:func:`make_components`), in registration order, so a new kind
needs no other edit. Built in: ``lstm``, ``ngram``, ``cache`` and ``ncache`` (the two caches live
in :mod:`model.prediction.caches`), and ``lstm2`` (a partner network).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

import numpy as np

from model.lru import LRU
from model.prediction.interface import Component, Context, Ingredients, Term
from model.prediction.numpy_net import WindowStates, softmax

ORDER = 5  # the n-gram's order
CONTEXT_WORDS = 8 * ORDER  # words before a position of a scored text that its context keeps
LSTM_CACHE = 4096  # network outputs kept per window
STEP_ALONG = 8  # windows of at least this many words along a text are read one step per word


def pad(p: np.ndarray, total: int) -> np.ndarray:
    """``p`` with zeros for the ids it lacks (words the user added since it was made)."""
    if len(p) >= total:
        return p
    out = np.zeros(total, np.float64)
    out[: len(p)] = p
    return out


# ---- the registry ------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    name: str
    help: str
    cls: type


_KINDS: dict[str, Kind] = {}


def register(cls: type, name: str | None = None, help: str | None = None) -> type:
    """Register a component kind (``cls.name`` unless ``name``); a mixture made afterwards
    holds one of it wherever :meth:`Component.make` can make one. Usable as a decorator."""
    name = name or cls.name
    if not name or name == "mixture" or name in _KINDS:
        raise ValueError(f"cannot register a component named {name!r}")
    _KINDS[name] = Kind(name, help or cls.help, cls)
    return cls


def unregister(name: str) -> None:
    _KINDS.pop(name, None)


def registered_names() -> tuple[str, ...]:
    """The names of the registered kinds, in the order the mixture holds them."""
    return tuple(_KINDS)


def components_help() -> str:
    """Every registered component with what it is, for help texts."""
    return ", ".join(f"{k.name} ({k.help})" for k in _KINDS.values())


def rank_of(name: str) -> int:
    names = registered_names()
    return names.index(name) if name in names else len(names)


def make_component(name: str, ing: Ingredients) -> Component | None:
    """The component of the registered kind ``name`` made from ``ing``, or None."""
    c = _KINDS[name].cls.make(ing, name)
    if c is not None:
        ing.made[name] = c
    return c


def make_components(ing: Ingredients) -> list[Component]:
    """One component of every registered kind that can be made from ``ing``."""
    made = (make_component(name, ing) for name in registered_names())
    return [c for c in made if c is not None]


# ---- the built-in kinds --------------------------------------------------------------------
class NeuralComponent(Component):
    """A network (the bundle's, or a partner's) spread over the full vocabulary. Its own
    vocabulary may be capped (rare words folded into ``<unk>``); the probability it gives
    ``<unk>`` is spread over the words it lacks in proportion to the n-gram's distribution."""

    name = "lstm"
    help = "the network"
    needs = frozenset({"network", "ngram"})

    def __init__(self, net, lstm_vocab, words, context: int, name: str = "lstm"):
        self.name = name
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
        self._runs = _runs(self.known_full, self.known_lstm)  # the same copy as slices, when it is a few
        self._lacking = _as_slice(np.flatnonzero(self.missing))
        self._n_lacking = int(self.missing.sum())
        self._cache: LRU[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = LRU(LSTM_CACHE)
        self.windows = WindowStates.of(net, self.context)  # one step per word for the windowed archs

    @classmethod
    def make(cls, ing: Ingredients, name: str) -> "NeuralComponent | None":
        spec = ing.networks.get(name)
        return None if spec is None else cls(spec[0], spec[1], ing.words, spec[2], name=name)

    @property
    def carries(self) -> bool:
        """Whether the network carries its state over a whole text (the stream arch)."""
        config = getattr(self.net, "config", None)
        return config is not None and config.arch == "stream"

    def _own(self, i: int) -> int:
        """The network's id of the full id ``i`` (its <unk> for a word it lacks), -1 to skip it."""
        return int(self.to_lstm[i]) if 0 <= i < self.size else (self.unk if self.unk is not None else -1)

    def lstm_ids(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The network's own ids of full ids, read as :meth:`window` reads them (all of them)."""
        return tuple(j for j in (self._own(int(i)) for i in ids) if j >= 0)

    def lstm_prefixes(self, ids: Sequence[int], start: int) -> list[tuple[int, ...]]:
        """``lstm_ids(ids[:j])`` for j = start .. len(ids)-1, in one pass over them."""
        whole = self.lstm_ids(ids)
        counts = [0, *accumulate(self._own(int(i)) >= 0 for i in ids)]
        return [whole[: counts[j]] for j in range(max(0, start), len(ids))]

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

    def _windows_along(self, ids: list[int], start: int) -> list[tuple[int, ...]]:
        """``window(ids[:j])`` for j = start .. len(ids)-1, in one pass over them."""
        window = deque(self.window(ids[:start]), maxlen=self.context)
        out = []
        for i in ids[start:]:
            out.append(tuple(window))
            if self._own(i) >= 0:
                window.append(self._own(i))
        return out

    def lstm_probs(self, ids: Sequence[int]) -> np.ndarray:
        """(V_lstm,) the network's own distribution after ``ids`` (cached by window)."""
        return self.entry(ids)[0]

    def features(self, ids: Sequence[int]) -> np.ndarray:
        """(H,) the state the logits layer reads after ``ids`` (what the neural cache compares)."""
        return self.entry(ids)[1]

    def entry(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        key = self.window(ids)
        return self._cache.get_or_make(key, lambda: self._one(key))

    def _one(self, key: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, features) of one window: one step after the window before it where
        :class:`~model.prediction.numpy_net.WindowStates` kept it, else read on its own."""
        feats = self.windows.features(key) if self.windows is not None else None
        if feats is None:
            return self.run([key])[0]
        return self._outputs(feats[None])[0]

    def entries(self, contexts: Sequence[Sequence[int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`entry` for several contexts, the uncached ones computed in one batch (the
        cached ones are read without becoming the most recent)."""
        return self._entries_of([self.window(c) for c in contexts])

    def _entries_of(self, keys: list[tuple[int, ...]]) -> list[tuple[np.ndarray, np.ndarray]]:
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        new = dict(zip(todo, self.run(todo))) if todo else {}
        got = [new[k] if k in new else self._cache.peek(k) for k in keys]
        for key, out in new.items():
            self._cache.put(key, out)
        return got

    def run(self, keys: Sequence[tuple[int, ...]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities, features) for several windows in one batch."""
        x = np.zeros((len(keys), self.context), np.int64)
        for r, key in enumerate(keys):
            if key:
                x[r, -len(key) :] = np.asarray(key) + 1
        return self._outputs(self.net.features(x))

    def _outputs(self, feats: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        probs = softmax(feats @ self.net.w["logits/kernel"] + self.net.w["logits/bias"]).astype(np.float64)
        return [(probs[r], feats[r].astype(np.float64)) for r in range(len(feats))]

    def pairs(self, ids: Sequence[int], start: int = 1) -> tuple[list[np.ndarray], list[int]]:
        """(state after ids[:j], ids[j]) for j = start .. len(ids)-1: what followed each state."""
        ids = [int(i) for i in ids]
        start = max(1, int(start))
        if len(ids) <= start:
            return [], []
        return self._states_along(self._windows_along(ids, start)), ids[start:]

    def _states_along(self, keys: list[tuple[int, ...]]) -> list[np.ndarray]:
        """The features of windows along a text (each the one before it and a word): one step
        each through :class:`~model.prediction.numpy_net.WindowStates`, whose states are then
        kept for the next word (a generation after a line); short windows are read in one
        batch (faster, and their next word costs few steps anyway)."""
        if self.windows is None or self.context < STEP_ALONG:
            return [f for _, f in self._entries_of(keys)]
        out = []
        for key in keys:
            hit = self._cache.peek(key)
            if hit is None and not key:
                hit = self._entries_of([key])[0]
            out.append(hit[1] if hit is not None else self.windows.features(key, read=True).astype(np.float64))
        return out

    def spread(self, lstm_probs: np.ndarray, ngram: np.ndarray | None) -> np.ndarray:
        """(V,) full-vocabulary distribution from the network's (V_lstm,) one."""
        out = np.zeros(self.size, np.float64)
        if self._runs is None:
            out[self.known_full] = lstm_probs[self.known_lstm]
        for to, at, n in self._runs or ():
            out[to : to + n] = lstm_probs[at : at + n]
        lacking = self.lacking_probs(lstm_probs, ngram)
        if lacking is not None:
            out[self._lacking] = lacking
        s = out.sum()
        return out / s if s > 0 else np.full(self.size, 1.0 / self.size)

    def lacking_probs(self, lstm_probs: np.ndarray, ngram: np.ndarray | None) -> np.ndarray | None:
        """The words the network lacks: its ``<unk>`` probability shared in proportion to the
        n-gram's (evenly without one), or None when it has no such words or no share."""
        if self.unk is None or not self._n_lacking:
            return None
        share = ngram[self._lacking] if ngram is not None else np.ones(self._n_lacking)
        total = share.sum()
        return lstm_probs[self.unk] * share / total if total > 0 else None

    def prepare(self, ctx: Context) -> None:
        ctx.network(self)  # what the network holds does not depend on which parts are on

    def terms(self, ctx: Context) -> "Spread":
        return Spread(self, ctx.network(self)[0], ctx.ngram, ctx.total)

    def distribution(self, ctx: Context) -> np.ndarray:
        return pad(self.spread(ctx.network(self)[0], ctx.ngram), ctx.total)

    def score(self, text) -> np.ndarray:
        """The true word's probability only, from the text's network pass: O(order) a position."""
        picks = text.network(self).picks
        kn = text.kn
        lacking = None  # (mask of the full-vocabulary words it lacks, their unigram base mass)
        if kn is not None and self.unk is not None:
            missing = np.zeros(kn.vocab_size, bool)
            missing[: len(self.missing)] = self.missing
            lacking = (missing, float(kn._base[missing].sum()))
        p_ngram = text.ngram_probs if kn is not None else None
        out = np.zeros(len(text.positions))
        for j, i in enumerate(text.positions):
            p_ng = p_ngram[j] if p_ngram is not None else 0.0
            out[j] = self.true_prob(picks[i], int(text.ids[i]), text.window(i), kn, p_ng, lacking)
        return out

    def true_prob(self, pick: np.ndarray, y: int, ctx: np.ndarray, kn, p_ngram: float, lacking) -> float:
        """Its probability of the full-vocabulary word ``y`` from a pass's ``picks`` row: its
        own probability of the word, or, for a word it lacks, its ``<unk>`` probability times
        the n-gram's share of that word among the words it lacks."""
        p_true, p_unk, p_known = pick
        if not self.missing[y]:
            p = p_true
        elif kn is not None and lacking is not None:
            missing, base_missing = lacking
            share = kn.mass(ctx[-(kn.order - 1) :].tolist() if kn.order > 1 else [], missing, base_missing)
            p = p_unk * p_ngram / share if share > 0 else 0.0
        else:
            p = p_unk / max(1, int(self.missing.sum()))
        if self.unk is None or not self.missing.any():
            p /= max(float(p_known), 1e-300)
        return float(p)


class Spread(Term):
    """A network's distribution spread over the full vocabulary (what
    :meth:`NeuralComponent.spread` gives), added into the mixture's sum without that array."""

    def __init__(self, neural: NeuralComponent, lstm_probs: np.ndarray, ngram: np.ndarray | None, total: int):
        self.neural, self.probs, self.ngram, self.total = neural, lstm_probs, ngram, total

    def dense(self) -> np.ndarray:
        return pad(self.neural.spread(self.probs, self.ngram), self.total)

    def add_to(self, out: np.ndarray | None, weight: float) -> np.ndarray:
        nc, probs = self.neural, self.probs
        if out is None:
            out = np.zeros(self.total)
        lacking = nc.lacking_probs(probs, self.ngram)
        lacking_mass = float(probs[nc.unk]) if lacking is not None else 0.0
        if nc._runs is None:
            known = probs[nc.known_lstm]
            s = float(known.sum()) + lacking_mass
        else:
            s = sum(float(probs[at : at + n].sum()) for _, at, n in nc._runs) + lacking_mass
        if not s > 0:  # as spread(): every word alike
            out[: nc.size] += weight / nc.size
            return out
        scale = weight / s
        if nc._runs is None:
            out[nc.known_full] += scale * known
        for to, at, n in nc._runs or ():
            out[to : to + n] += scale * probs[at : at + n]
        if lacking is not None:
            out[nc._lacking] += scale * lacking
        return out


def _runs(to: np.ndarray, at: np.ndarray, most: int = 8) -> list[tuple[int, int, int]] | None:
    """``out[to] = src[at]`` as at most ``most`` slice copies (start in out, start in src,
    length), or None when it takes more."""
    cut = np.flatnonzero((np.diff(to) != 1) | (np.diff(at) != 1)) + 1
    bounds = np.concatenate([[0], cut, [len(to)]]) if len(to) else np.zeros(1, np.int64)
    return [(int(to[a]), int(at[a]), int(b - a)) for a, b in zip(bounds, bounds[1:])] if len(cut) < most else None


def _as_slice(ids: np.ndarray) -> slice | np.ndarray:
    """``ids`` as a slice when they are consecutive (indexing reads a view, not a copy)."""
    return slice(int(ids[0]), int(ids[-1]) + 1) if len(ids) and ids[-1] - ids[0] == len(ids) - 1 else ids


class NgramComponent(Component):
    """Interpolated modified Kneser-Ney over the full training vocabulary."""

    name = "ngram"
    help = f"a Kneser-Ney {ORDER}-gram"
    needs = frozenset({"ngram"})

    def __init__(self, kn):
        self.kn = kn
        self.size = int(kn.vocab_size)

    @classmethod
    def make(cls, ing: Ingredients, name: str) -> "NgramComponent | None":
        return None if ing.kn is None else cls(ing.kn)

    @property
    def n_buckets(self) -> int:
        return int(self.kn.order)

    def _tail(self, ids: Sequence[int]) -> list[int]:
        return list(ids)[-(self.kn.order - 1) :] if self.kn.order > 1 else []

    def after(self, ids: Sequence[int]) -> np.ndarray:
        """(V,) float64 over the corpus vocabulary; ids >= V (user words) break the context."""
        return self.kn.distribution(self._tail(ids))

    def bucket(self, ids: Sequence[int]) -> int:
        """How many of the last words it has seen as a context: the weights depend on it."""
        return self.kn.matched_order(self._tail(ids))

    def distribution(self, ctx: Context) -> np.ndarray:
        return pad(ctx.ngram, ctx.total)

    def score(self, text) -> np.ndarray:
        return text.ngram_probs


PARTNER = "lstm2"  # the second network's component name

from model.prediction.caches import CacheComponent, NeuralCacheComponent  # noqa: E402 - registered here, in this order

register(NeuralComponent)
register(NgramComponent)
register(CacheComponent)
register(NeuralCacheComponent)
register(NeuralComponent, name=PARTNER, help="a second network: --partner, :partner")

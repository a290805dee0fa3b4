"""The predictor behind every completion: a list of components and their weights.

The components (:mod:`model.prediction.components`: the network, the n-gram, the caches, any
registered kind) each give a distribution over one full vocabulary; the mixture sums them
with the weights of the context (:mod:`model.prediction.weights`). Building, saving and
loading are in :mod:`model.prediction.build`; scoring a text in :mod:`model.prediction.scoring`.
"""
from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from model.lru import LRU
from model.prediction.caches import CACHE_TOKENS
from model.prediction.components import rank_of, registered_names
from model.prediction.interface import Component, Context
from model.prediction.weights import Weights, mix
from model.text.vocab import Vocab


_PAIRS_LOCK = threading.RLock()


class _LinePairs:
    """A network's (state, next word) pairs over a context's words after the story, kept as
    arrays that grow by a row when the next context is this one and a word (a word typed, a
    word generated), so asking again costs one row, not the whole line."""

    def __init__(self, key: tuple, ids: tuple[int, ...], start: int, states: Sequence[np.ndarray], targets: Sequence[int]):
        self.key, self.ids, self.start = key, ids, start
        self.n = len(targets)
        self._states = np.asarray(states, np.float32).reshape(self.n, -1) if self.n else None
        self._targets = np.asarray(targets, np.int64)

    def grown(self, ids: tuple[int, ...], state: np.ndarray) -> "_LinePairs":
        """These pairs and (``state``, ``ids[-1]``), for ``ids`` = these ids and one more (rows
        already given out are never written again)."""
        if self._states is None:
            self._states, self._targets = np.zeros((16, len(state)), np.float32), np.zeros(16, np.int64)
        elif self.n == len(self._states):
            self._states = np.concatenate([self._states, np.zeros_like(self._states)])
            self._targets = np.concatenate([self._targets, np.zeros_like(self._targets)])
        self._states[self.n] = state
        self._targets[self.n] = ids[-1]
        self.n += 1
        self.ids = ids
        return self

    def states(self) -> np.ndarray:
        return self._states[: self.n] if self._states is not None else np.zeros((0, 0), np.float32)

    def targets(self) -> np.ndarray:
        return self._targets[: self.n]


class _Live:
    """What the components share for a context of the user's text: the n-gram's distribution,
    a network's output (kept by the network, per window, or carried over the story) and the
    current line's pairs (kept by the mixture between contexts, see :class:`_LinePairs`)."""

    def __init__(self, ngram, carried: dict | None = None, kept: dict | None = None, version: int = 0):
        self._ngram = ngram
        self._carried = carried or {}  # component name -> Carried, when the context continues the story
        self._kept = {} if kept is None else kept  # component name -> the last context's _LinePairs
        self._version = version

    def ngram_after(self, ctx: Context) -> np.ndarray | None:
        return None if self._ngram is None else self._ngram.after(ctx.ids)

    def _carry(self, neural):
        c = self._carried.get(neural.name)
        return c if c is not None and c.net is neural.net else None

    def network_after(self, neural, ctx: Context):
        c = self._carry(neural)
        if c is not None:
            return c.output(neural.lstm_ids(list(ctx.ids)[ctx.seen :]))
        return neural.entry(ctx.ids)

    def pairs_before(self, neural, ctx: Context, span: int) -> tuple[np.ndarray, np.ndarray]:
        ids = tuple(map(int, ctx.ids))
        start = max(1, ctx.seen, len(ids) - span)
        key = (self._version, ctx.seen, id(self._carry(neural)))
        with _PAIRS_LOCK:  # a menu thread and a generation may ask at once: one grows the kept pairs at a time
            last = self._kept.get(neural.name)
            same = last is not None and last.key == key and last.start == start  # the same line, read alike
            if len(ids) - 1 < start:  # no word of the line has a state before it yet
                pairs = _LinePairs(key, ids, start, [], [])
            elif same and ids[:-1] == last.ids:
                pairs = last.grown(ids, self._state_before(neural, ctx, ids[:-1]))
            elif same and ids == last.ids:
                pairs = last
            else:
                pairs = _LinePairs(key, ids, start, *self._pairs(neural, ctx, list(ids), start, span))
            self._kept[neural.name] = pairs
            return pairs.states(), pairs.targets()

    def _state_before(self, neural, ctx: Context, ids: tuple[int, ...]) -> np.ndarray:
        """The network's state after ``ids`` (the context but its last word)."""
        c = self._carry(neural)
        if c is None:
            return neural.entry(ids)[1]
        return c.output(neural.lstm_ids(ids[ctx.seen :]))[1]

    def _pairs(self, neural, ctx: Context, ids: list[int], start: int, span: int) -> tuple[list, list[int]]:
        c = self._carry(neural)
        if c is None:
            cut = len(ids) - min(span, len(ids))
            return neural.pairs(ids[cut:], start - cut)
        feats = [c.output(suffix)[1] for suffix in neural.lstm_prefixes(ids[ctx.seen :], start - ctx.seen)]
        return feats, ids[start:]


class Mixture:
    """Components and weights over one full vocabulary; itself answers ``distribution(ids)``.

    ``words`` grows when the user writes a word the corpus never had (:meth:`observe`); such
    words only ever get probability from the caches. ``history`` is what the user wrote (the
    session's lines, the history file), the last ``history_size`` tokens of it at least."""

    def __init__(self, words: Vocab, components: Sequence[Component], weights: Weights | None = None):
        self.words = words
        self.corpus_size = len(words)  # ids below this are training words
        self.components: list[Component] = list(components)
        self.weights = weights
        self.history: list[int] = []
        self.history_size = CACHE_TOKENS
        self.version = 0  # bumped whenever the history changes (distribution caches key on it)
        self.active: list[str] = list(self.names)
        self.casing = None  # how the words are written (model/text/casing.py), when known
        self.story: tuple[tuple[int, ...], dict] | None = None  # (prefix, carried states): see follow()
        self._history_array: tuple | None = None  # ((which history), its last history_size tokens as an array)
        self._line_pairs: dict = {}  # network name -> the last context's (state, next word) pairs (_LinePairs)
        self._rows: LRU = LRU(256)  # the weight rows asked lately, with the weights they were read from (weight_row)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.components]

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    @property
    def neural(self):
        """The bundle's network (the ``lstm`` component), or None while it trains."""
        return self.component("lstm")

    @property
    def ngram(self):
        """The n-gram (the ``ngram`` component): its matched order picks the weights."""
        return self.component("ngram")

    def available(self, name: str) -> bool:
        return self.component(name) is not None

    def add(self, component: Component) -> None:
        """Add a component (in the registry's order), replacing one of the same name."""
        rest = [c for c in self.components if c.name != component.name]
        self.components = sorted(rest + [component], key=lambda c: rank_of(c.name))
        self.version += 1

    def fresh(self) -> "Mixture":
        """The same components and weights with nothing observed and the corpus's vocabulary
        (for scoring a text from scratch)."""
        words = Vocab(list(self.words.tokens[: self.corpus_size]), list(self.words.counts[: self.corpus_size]))
        other = Mixture(words, [c.fresh() for c in self.components], self.weights)
        other.history_size = self.history_size
        other.active = list(self.active)
        other.casing = self.casing
        return other

    def params(self) -> dict[str, dict]:
        """The components' fitted parameters, by name (saved with the weights)."""
        return {c.name: c.params() for c in self.components if c.params()}

    def load_params(self, params: dict[str, dict]) -> None:
        for c in self.components:
            if c.name in params:
                c.load_params(params[c.name])

    # ---- which parts answer, with which weight --------------------------------------------
    def set_active(self, names: Sequence[str]) -> list[str]:
        from model.errors import StoryError

        names = [n.strip().lower() for n in names if n.strip()]
        known = registered_names()
        bad = [n for n in names if n not in known]
        if bad:
            raise StoryError(f"unknown component {bad[0]!r}; choose from {', '.join(known)}")
        missing = [n for n in names if not self.available(n)]
        if missing:
            raise StoryError(f"the {missing[0]} component is not available for this model")
        if not names:
            raise StoryError(f"give at least one component of {', '.join(self.names)}")
        self.active = [n for n in self.names if n in names]
        self.version += 1
        return self.active

    def live_at(self, i: int) -> tuple[str, ...]:
        """The components that can answer at position ``i`` of a scored text."""
        return tuple(c.name for c in self.components if i >= c.warmup)

    def weight_row(self, bucket: int, live: bool | Sequence[str] = True) -> np.ndarray:
        """Weights of the components, in order, for this context. ``live`` names the
        components that can answer now (True: all; a cache with no text cannot); the
        others' weight is shared out. Kept per question (a generation asks the same few)."""
        key = (bucket, live if live is True else tuple(live), tuple(self.active), tuple(self.names))
        kept = self._rows.peek(key)
        if kept is None or kept[0] is not self.weights:
            row = self._weight_row(bucket, live)
            row.flags.writeable = False  # shared by every caller
            kept = self._rows.put(key, (self.weights, row))
        return kept[1]

    def _weight_row(self, bucket: int, live: bool | Sequence[str]) -> np.ndarray:
        names = self.names
        caches = {c.name for c in self.components if c.is_cache}
        active = [n for n in self.active if live is True or n in live]
        if not active:
            active = [n for n in self.active if n not in caches] or list(self.active)
        if self.weights is None:
            w = np.asarray([1.0 if n in active else 0.0 for n in names])
            others = len([n for n in active if n not in caches])
            for k, n in enumerate(names):
                if n in caches and n in active and others:
                    w[k] = 0.1 * others
            return w / w.sum()
        row = self.weights.row(bucket, active)
        return np.asarray([row[self.weights.names.index(n)] if n in self.weights.names else 0.0 for n in names])

    def bucket(self, ids: Sequence[int]) -> int:
        return self.ngram.bucket(ids) if self.ngram is not None else 0

    @property
    def n_buckets(self) -> int:
        return self.ngram.n_buckets if self.ngram is not None else 1

    # ---- the user's text ----------------------------------------------------------------
    def word_id(self, token: str, add: bool = False) -> int | None:
        i = self.words.index.get(token)
        if i is None and add:
            i = len(self.words.tokens)
            self.words.tokens.append(token)
            self.words.counts.append(0)
            self.words.index[token] = i
        return i

    def observe(self, tokens: Sequence[str], before: Sequence[str] = ()) -> None:
        """Remember what the user wrote (one line, or a text): the components see it, new
        words join the vocabulary. ``before``: the text it continues (a story's last words,
        already remembered), read only as its context."""
        ids = [int(i) for i in (self.word_id(t, add=True) for t in tokens) if i is not None]
        lead = [int(i) for i in (self.word_id(t) for t in before) if i is not None]
        self.history.extend(ids)
        if len(self.history) > 4 * self.history_size:
            self.history = self.history[-self.history_size :]
        for c in self.components:
            c.observe(ids, lead)
        self.version += 1

    def follow(self, prefix: Sequence[int] | None, states: dict | None = None) -> None:
        """Contexts that start with ``prefix`` (full ids: a story's last words, already observed)
        continue that story: its words are not added to the history a second time, and each
        stream network named in ``states`` reads on from its state there (``states[name]``,
        the state after the whole story; None: the zero state), one step per word after it.
        ``prefix`` None: every context stands alone again."""
        from model.prediction.numpy_net import Carried

        if prefix is None:
            self.story = None
        else:
            nets = {c.name: c.net for c in self.components if getattr(c, "carries", False)}
            carried = {name: Carried(nets[name], state) for name, state in (states or {}).items() if name in nets}
            self.story = (tuple(int(i) for i in prefix), carried)
        self.version += 1

    def carried(self, name: str):
        """The :class:`~model.prediction.numpy_net.Carried` state of the network ``name`` over
        the story being followed, or None."""
        story = self.story
        return None if story is None else story[1].get(name)

    def _history_with(self, ids: Sequence[int]) -> np.ndarray:
        """The last ``history_size`` tokens of the history followed by ``ids``, as one array
        (the history's part converted once per change of it)."""
        key = (id(self.history), len(self.history), self.version)
        kept = self._history_array
        if kept is None or kept[0] != key:
            kept = self._history_array = (key, np.asarray(self.history[-self.history_size :], np.int64))
        return np.concatenate([kept[1], np.asarray(ids, np.int64)]) if len(ids) else kept[1]

    # ---- distributions ------------------------------------------------------------------
    def context(self, ids: Sequence[int]) -> Context:
        """The context after ``ids``; the user's text joins it only when a component needs it
        (a followed story's words, already in it, only once)."""
        ids = list(ids)
        story, seen = self.story, 0
        if story is not None and len(ids) >= len(story[0]) and tuple(int(i) for i in ids[: len(story[0])]) == story[0]:
            seen = len(story[0])
        else:
            story = None
        history = self._history_with(ids[seen:]) if any("history" in c.needs for c in self.components) else ()
        live = _Live(self.ngram, story[1] if story else None, self._line_pairs, self.version)
        return Context(ids, len(self.words), history, live, seen=seen)

    def parts(self, ids: Sequence[int]) -> dict[str, np.ndarray]:
        """Each active component's distribution over the current vocabulary (those that answer)."""
        return self._answers(ids, dense=True)

    def _answers(self, ids: Sequence[int], dense: bool) -> dict:
        """Each active component's answer after ``ids`` (``dense``: its distribution; else what
        it gives the sum, :meth:`Component.terms`), for those that answer."""
        ctx = self.context(ids)
        for c in self.components:
            c.prepare(ctx)
        out: dict = {}
        for c in self.components:
            if c.name in self.active:
                d = c.distribution(ctx) if dense else c.terms(ctx)
                if d is not None:
                    out[c.name] = d
        return out

    def distribution(self, ids: Sequence[int]) -> np.ndarray:
        """P(next | ids) over the current vocabulary, float64."""
        terms = self._answers(ids, dense=False)
        w = self.weight_row(self.bucket(ids), tuple(terms))
        total = len(self.words)
        p = mix([terms.get(n) for n in self.names], w)
        s = p.sum() if isinstance(p, np.ndarray) else 0.0
        if not s > 0:
            return np.full(total, 1.0 / total)
        p /= s
        return p

"""The interface every component of the mixture answers (:mod:`model.prediction.components`
holds the registry of kinds and the built-in ones).

A component has a ``name`` and a one-line ``help``, declares what it ``needs`` from the
:class:`Context`, answers :meth:`Component.distribution` (float64 over the current
vocabulary, or None when it cannot answer now) and :meth:`Component.prob`, learns from what
the user wrote with :meth:`Component.observe`, and may fit parameters of its own on held-out
text (:meth:`Component.tune`, saved through :meth:`Component.params`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np


@dataclass
class Context:
    """What a component reads to answer for the next word.

    ``ids`` are the words so far (full ids; of a long text, its last words), ``total`` the
    size of the current vocabulary and ``history`` the text so far (at least its last
    ``Mixture.history_size`` tokens), ending with ``ids`` (what the user wrote, or the text
    being scored; for components that need ``"history"``). The rest is shared between the
    components and computed once, on first use, by ``source``: the mixture for the user's
    text, the scorer for a text (see :class:`model.prediction.scoring.Text`), so a network's
    output is never computed twice for one context. ``position`` is the next word's index in
    a scored text (None for the user's text). ``seen``: how many of the first ``ids`` are a
    story's last words, already observed (they are in the history once)."""

    ids: Sequence[int]
    total: int
    history: Sequence[int] = ()
    source: Any = None
    position: int | None = None
    seen: int = 0
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def ngram(self) -> np.ndarray | None:
        """The n-gram's distribution over the corpus vocabulary (None without an n-gram)."""
        if "ngram" not in self._memo:
            self._memo["ngram"] = self.source.ngram_after(self) if self.source is not None else None
        return self._memo["ngram"]

    def network(self, neural) -> tuple[np.ndarray | None, np.ndarray]:
        """(the network's own distribution, the state its logits layer reads) after ``ids``
        for a network component; in a scored text the distribution is kept only when ranking."""
        key = ("network", id(neural))
        if key not in self._memo:
            self._memo[key] = self.source.network_after(neural, self)
        return self._memo[key]

    def pairs(self, neural, span: int) -> tuple[Sequence, Sequence]:
        """(state after each earlier word, the word that followed it) over the last ``span``
        words of the context (the current line of the user's text; a scored text so far)."""
        return self.source.pairs_before(neural, self, span)


@dataclass
class Sparse:
    """A distribution that is ``floor`` at every word plus ``weights`` at ``ids`` (an id may
    repeat: its weights add up), over ``total`` words: what a cache gives. The mixture adds it
    to its sum without making the dense array (:func:`model.prediction.weights.mix`)."""

    ids: np.ndarray
    weights: np.ndarray
    floor: float
    total: int

    def dense(self) -> np.ndarray:
        return np.bincount(self.ids, weights=self.weights, minlength=self.total) + self.floor


class Term:
    """A distribution that adds itself, weighted, into the mixture's dense sum (where making
    its own full array first would cost a pass more): what a network spread over the full
    vocabulary gives."""

    def add_to(self, out: np.ndarray | None, weight: float) -> np.ndarray:
        """``out + weight * self`` in place (a new array when ``out`` is None)."""
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Ingredients:
    """What the registered kinds make a mixture's components from."""

    words: Any  # the full vocabulary (model.text.vocab.Vocab)
    kn: Any = None  # the n-gram (model.prediction.ngram.KneserNey), when there is one
    networks: dict = field(default_factory=dict)  # component name -> (numpy network, its vocabulary, context)
    made: dict = field(default_factory=dict)  # the components made so far, by name


class Component:
    """One part of the mixture. A new kind sets ``name`` and ``help``, implements
    :meth:`distribution`, and is registered with :func:`model.prediction.components.register`;
    the rest has defaults."""

    name = ""
    help = ""
    needs: frozenset[str] = frozenset()  # what it reads from the Context: "ngram", "network", "history", "pairs"
    is_cache = False  # answers from the user's text: a small weight before any is fitted, none when it alone answers
    warmup = 0  # words of a scored text it needs before it can answer

    @classmethod
    def make(cls, ing: Ingredients, name: str) -> "Component | None":
        """This kind's component for a mixture being made, or None when it cannot be made."""
        c = cls()
        c.name = name
        return c

    def distribution(self, ctx: Context) -> np.ndarray | None:
        """P(next word) over the current vocabulary (``ctx.total`` words), or None when it
        cannot answer now."""
        raise NotImplementedError

    def terms(self, ctx: Context) -> "np.ndarray | Sparse | Term | None":
        """:meth:`distribution`, or the same as a :class:`Sparse` or a :class:`Term` where that
        is cheaper (what the mixture sums)."""
        return self.distribution(ctx)

    def prob(self, ctx: Context, y: int) -> float:
        """P(``y`` is the next word); a component that cannot answer gives every word 1/total."""
        d = self.distribution(ctx)
        return 1.0 / ctx.total if d is None else float(d[y])

    def score(self, text) -> np.ndarray:
        """Its probability of the true word at each scored position of ``text`` (a
        :class:`model.prediction.scoring.Text`); kinds override it with a faster pass."""
        return np.asarray([self.prob(text.context(i), int(text.ids[i])) for i in text.positions], np.float64)

    def prepare(self, ctx: Context) -> None:
        """Called for every context the mixture answers, whether the component is on or not."""

    def observe(self, ids: Sequence[int], before: Sequence[int] = ()) -> None:
        """Learn from what the user wrote (full ids of a line or a text); ``before``: the ids
        of the text it continues (a story's last words), read as their context only."""

    def tune(self, fit) -> None:
        """Fit its own parameters on held-out text (a :class:`model.prediction.scoring.Fit`)."""

    def params(self) -> dict:
        """Its fitted parameters, saved with the mixture's weights."""
        return {}

    def load_params(self, params: dict) -> None:
        """Take back what :meth:`params` gave."""

    def fresh(self) -> "Component":
        """The same component before it observed anything (stateless ones: itself)."""
        return self



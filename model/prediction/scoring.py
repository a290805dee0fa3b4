"""Scoring a text with the mixture: every component's probability of each true word, the
ranks, and the weights fitted on held-out text.

A text is scored from scratch: the caches hold the text already passed (they start empty)
and every component is as it was before it observed anything. Each network reads the text
once (:func:`network_pass`, batched over the distinct windows); the components share that
pass through :class:`Text`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from model.prediction.components import CONTEXT_WORDS
from model.prediction.interface import Context
from model.prediction.weights import Weights, em_weights, fit_weights, mix
from model.text.vocab import Vocab

FIT_TOKENS = 8000  # held-out tokens the weights are fitted on (15 weights need no more)


class Pass(NamedTuple):
    """A network's reading of a text: ``wins[row_of[i]]`` the (probabilities, state) of
    position i's window when kept, ``feats[i]`` the state after ``ids[:i]``, ``targets`` the
    ids as int64, ``picks[i]`` what the true word's score needs when the windows are not kept."""

    wins: list
    row_of: np.ndarray
    feats: np.ndarray
    targets: np.ndarray
    picks: np.ndarray | None


def network_pass(neural, ids: np.ndarray, batch: int, keep: bool = True, progress=None) -> Pass:
    """The network run over every position's window, batched over the distinct windows.
    Without ``keep`` no distribution is kept (a few thousand of them over a large vocabulary
    are gigabytes); ``picks[i]`` holds instead the network's probability of ``ids[i]``
    (through its vocabulary), of ``<unk>``, and the mass of the words it shares with the
    full vocabulary. ``progress(fraction)`` is called after each batch."""
    n = len(ids)
    slot: dict = {}
    row_of = np.zeros(n, np.int64)  # the neural cache remembers every position, scored or not
    for i in range(1, n):
        row_of[i] = slot.setdefault(neural.window(ids[max(0, i - 4 * neural.context) : i]), len(slot))
    keys = list(slot)
    y = np.asarray(ids, dtype=np.int64)
    wins: list = []  # by window row, when kept
    feats = np.zeros((n, neural.net.w["logits/kernel"].shape[0]))  # row i: the state after ids[:i]
    picks = None if keep else np.zeros((n, 3))
    for s in range(0, len(keys), batch):
        outs = neural.run(keys[s : s + batch])
        at = np.flatnonzero((row_of >= s) & (row_of < s + len(outs)))
        at = at[at >= 1]
        r = row_of[at] - s
        feats[at] = np.stack([o[1] for o in outs])[r]
        if progress is not None:
            progress((s + len(outs)) / len(keys))
        if keep:
            wins += outs
            continue
        P = np.stack([o[0] for o in outs])
        known = (y[at] >= 0) & (y[at] < len(neural.to_lstm))  # unscored positions may hold other ids
        picks[at[known], 0] = P[r[known], neural.to_lstm[y[at[known]]]]
        if neural.unk is not None:
            picks[at, 1] = P[r, neural.unk]
        picks[at, 2] = P[:, neural.known_lstm].sum(axis=1)[r]
    return Pass(wins, row_of, feats, y, picks)


class Text:
    """A text being scored: its ids, the positions that count, and what the components share
    (each network's pass, the n-gram's probability of each true word), computed once on first
    use. It is the :class:`Context` source of the scored positions."""

    def __init__(self, mixture, ids: np.ndarray, scored: np.ndarray, ranks: bool = False, batch: int = 256, progress=None):
        self.ids = ids
        self.progress = progress  # of the network passes
        self.scored = scored
        self.ranks = ranks
        self.batch = batch
        self.positions = [i for i in range(1, len(ids)) if scored[i]]
        self.total = len(mixture.words)
        self.ngram = mixture.ngram
        self.kn = self.ngram.kn if self.ngram is not None else None
        self._passes: dict[int, Pass] = {}
        self._ngram_probs: np.ndarray | None = None

    def window(self, i: int) -> np.ndarray:
        return self.ids[max(0, i - CONTEXT_WORDS) : i]

    def context(self, i: int) -> Context:
        return Context(self.window(i), self.total, self.ids[:i], self, i)

    def network(self, neural) -> Pass:
        """The network's pass over the text (windows kept when ranking)."""
        key = id(neural)
        if key not in self._passes:
            self._passes[key] = network_pass(neural, self.ids, self.batch, keep=self.ranks, progress=self.progress)
        return self._passes[key]

    @property
    def ngram_probs(self) -> np.ndarray:
        """The n-gram's probability of the true word at each scored position."""
        if self._ngram_probs is None:
            kn = self.kn
            tail = (lambda c: c[-(kn.order - 1) :].tolist()) if kn.order > 1 else (lambda c: [])
            self._ngram_probs = np.asarray([kn.prob(tail(self.window(i)), int(self.ids[i])) for i in self.positions], np.float64)
        return self._ngram_probs

    # the Context source
    def ngram_after(self, ctx: Context) -> np.ndarray | None:
        return None if self.ngram is None else self.ngram.after(ctx.ids)

    def network_after(self, neural, ctx: Context):
        p = self.network(neural)
        return (p.wins[p.row_of[ctx.position]][0] if p.picks is None else None), p.feats[ctx.position]

    def pairs_before(self, neural, ctx: Context, span: int):
        p, i = self.network(neural), ctx.position
        lo = max(1, i - span)
        return p.feats[lo:i], p.targets[lo:i]


def text_ids(mixture, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(full ids, in-vocabulary mask) of ``tokens``; words the corpus never had get new ids."""
    ids = np.asarray([mixture.word_id(t, add=True) for t in tokens], dtype=np.int64)
    return ids, ids < mixture.corpus_size


def rank(p: np.ndarray, y: int) -> int:
    """0-based rank of ``y`` in a stable descending order (ties to the lower id)."""
    py = p[y]
    return int(np.count_nonzero(p > py)) + int(np.count_nonzero(p[:y] == py))


def score_stream(mixture, ids: np.ndarray, scored: np.ndarray, ranks: bool = False, batch: int = 256, progress=None) -> dict:
    """Score positions 1..n-1 of ``ids`` where ``scored`` is true (in-vocabulary targets).

    Returns per-position probabilities of the true word for every component (``probs[name]``),
    the n-gram bucket of each position, the :class:`Text` (``text``) and, with ``ranks``, the
    0-based rank of the true word under the mixture's active components and under the n-gram
    alone (from each component's full distribution; without ``ranks``, each component scores
    the true word alone)."""
    text = Text(mixture, ids, scored, ranks, batch, progress)
    comps = [c.fresh() for c in mixture.components]
    m = len(text.positions)
    buckets = np.zeros(m, np.int64)
    if text.ngram is not None:
        for j, i in enumerate(text.positions):
            buckets[j] = text.ngram.bucket(text.window(i))
    if ranks:
        probs, rank_mix, rank_ng = _ranked(mixture, comps, text, buckets)
    else:
        probs = {c.name: c.score(text) for c in comps}
        rank_mix, rank_ng = np.zeros(m, np.int64), np.zeros(m, np.int64)
    out = {"positions": np.asarray(text.positions), "probs": probs, "buckets": buckets, "rank": rank_mix, "rank_ngram": rank_ng, "text": text}
    if mixture.neural is not None:
        p = text.network(mixture.neural)
        out["features"], out["targets"] = p.feats, p.targets
    return out


def _ranked(mixture, comps, text: Text, buckets: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Every component's full distribution at each scored position: the true word's
    probability under each, and its rank under the mixture and under the n-gram."""
    m, total = len(text.positions), text.total
    probs = {c.name: np.zeros(m) for c in comps}
    rank_mix, rank_ng = np.zeros(m, np.int64), np.zeros(m, np.int64)
    ng = next((k for k, c in enumerate(comps) if c is text.ngram), None)
    for j, i in enumerate(text.positions):
        ctx, y = text.context(i), int(text.ids[i])
        parts = []
        for c in comps:
            d = c.distribution(ctx)
            parts.append(d if d is not None else np.full(total, 1.0 / total))
            probs[c.name][j] = parts[-1][y]
        w = mixture.weight_row(int(buckets[j]), mixture.live_at(i))
        rank_mix[j] = rank(mix(parts, w), y)
        if ng is not None:
            rank_ng[j] = rank(parts[ng], y)
    return probs, rank_mix, rank_ng


def heldout_scores(mixture, tokens: Sequence[str], progress=None) -> dict:
    """:func:`score_stream` of the first ``FIT_TOKENS`` of held-out ``tokens``: every
    component's probability of each true word, what the weights are fitted on."""
    saved = (list(mixture.words.tokens), list(mixture.words.counts))
    ids, known = text_ids(mixture, list(tokens)[:FIT_TOKENS])
    try:
        return score_stream(mixture, ids, known, progress=progress)
    finally:  # held-out words must not join the model's vocabulary
        mixture.words = Vocab(saved[0], saved[1])


@dataclass
class Fit:
    """Held-out scores while the weights are fitted: a component's :meth:`tune` may replace
    its column of ``probs`` after fitting its own parameters by :meth:`likelihood`."""

    text: Text
    probs: dict[str, np.ndarray]
    names: list[str]
    total: int  # the vocabulary's size (the corpus's: held-out words are not kept)

    def likelihood(self, probs: dict[str, np.ndarray]) -> float:
        """Log-likelihood of the held-out text under EM weights for these columns."""
        p = np.stack([probs[c] for c in self.names], axis=1)
        return float(np.log((p * em_weights(p)).sum(axis=1)).sum())


def fit_mixture_weights(mixture, tokens: Sequence[str], fitted_on: str, progress=None) -> Weights:
    """EM weights on held-out ``tokens``, after each component fitted its own parameters
    (``progress(fraction)`` follows the network's pass over them)."""
    res = heldout_scores(mixture, tokens, progress)
    names = mixture.names
    fit = Fit(res["text"], dict(res["probs"]), names, len(mixture.words))
    for c in mixture.components:
        c.tune(fit)
    p = np.stack([fit.probs[c] for c in names], axis=1) if len(res["positions"]) else np.zeros((0, len(names)))
    return fit_weights(p, res["buckets"], names, mixture.n_buckets, fitted_on)

"""The caches of the mixture: what the user wrote lately, as words and as network states.

``cache`` is the unigram distribution of the last words; ``ncache`` the neural cache (Grave et
al., 2017). Both answer as a :class:`~model.prediction.interface.Sparse` (a floor and the
words they saw), which the mixture adds without a full-vocabulary array of its own.
Registered in :mod:`model.prediction.components`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from model.prediction.interface import Component, Context, Ingredients, Sparse

CACHE_TOKENS = 1000  # tokens of recent text the cache remembers
CACHE_FLOOR = 1e-3  # share of a cache's mass spread evenly, so it alone gives every word some probability
NCACHE_TOKENS = 500  # positions the neural cache compares the current state with
NCACHE_THETAS = (0.1, 0.3, 1.0)  # sharpness values tried when the weights are fitted
NCACHE_THETA = 0.3  # used when a bundle's mixture carries none


class CacheComponent(Component):
    """Unigram distribution of the last ``size`` tokens (full ids, user words included): a
    name typed once is offered from then on."""

    name = "cache"
    help = "the words written lately"
    needs = frozenset({"history"})
    is_cache = True

    def __init__(self, size: int = CACHE_TOKENS):
        self.size = int(size)

    def terms(self, ctx: Context) -> Sparse | None:
        tail = np.asarray(ctx.history[-self.size :], dtype=np.int64)
        tail = tail[(tail >= 0) & (tail < ctx.total)]
        if len(tail) == 0:
            return None
        return Sparse(tail, np.full(len(tail), (1.0 - CACHE_FLOOR) / len(tail)), CACHE_FLOOR / ctx.total, ctx.total)

    def distribution(self, ctx: Context) -> np.ndarray | None:
        terms = self.terms(ctx)
        return None if terms is None else terms.dense()

    def score(self, text) -> np.ndarray:
        """The true word's share of the last ``size`` words, counted as the text goes."""
        ids, total = text.ids, text.total
        counts, window = np.zeros(total, np.float64), []
        out, j = np.zeros(len(text.positions)), 0
        for i in range(1, len(ids)):
            prev = int(ids[i - 1])
            counts[prev] += 1
            window.append(prev)
            if len(window) > self.size:
                counts[window.pop(0)] -= 1
            if text.scored[i]:
                out[j] = (1.0 - CACHE_FLOOR) * counts[int(ids[i])] / max(1, len(window)) + CACHE_FLOOR / total
                j += 1
        return out


class NeuralCacheComponent(Component):
    """A neural cache (Grave et al., 2017): the next word is what followed the recent states
    most like the current one, p(w) ∝ Σ_{i: w_i = w} exp(θ h · h_i) over the last ``size``
    (state, next word) pairs of the user's text, the states of the network ``neural``."""

    name = "ncache"
    help = "the words that followed states like the current one"
    needs = frozenset({"network", "pairs"})
    is_cache = True
    warmup = 2  # one earlier (state, word) pair

    def __init__(self, neural: Component, theta: float = NCACHE_THETA, size: int = NCACHE_TOKENS):
        self.neural = neural
        self.theta = float(theta)
        self.size = int(size)
        self._states = np.zeros((0, 0), np.float32)  # (state, next word) pairs of the user's text, the first ``_n`` rows
        self._targets = np.zeros(0, np.int64)
        self._n = 0

    @classmethod
    def make(cls, ing: Ingredients, name: str) -> "NeuralCacheComponent | None":
        neural = ing.made.get("lstm")
        if neural is None:
            return None
        c = cls(neural)
        c.name = name
        return c

    def fresh(self) -> "NeuralCacheComponent":
        c = NeuralCacheComponent(self.neural, self.theta, self.size)
        c.name = self.name
        return c

    def params(self) -> dict:
        return {"theta": self.theta}

    def load_params(self, params: dict) -> None:
        self.theta = float(params.get("theta", self.theta))

    @property
    def states(self) -> np.ndarray:
        """(n, H) the states of the user's text it observed, oldest first."""
        return self._states[: self._n]

    @property
    def targets(self) -> np.ndarray:
        """(n,) the word that followed each of :attr:`states`."""
        return self._targets[: self._n]

    def observe(self, ids: Sequence[int], before: Sequence[int] = ()) -> None:
        """The pairs of the words ``ids``, the first one's state read after ``before`` (the
        last words of the text it continues), so a line's first word follows the line before."""
        lead = [int(i) for i in before][-self.neural.context :] if self.neural.context else []
        text = lead + [int(i) for i in ids]
        start = max(1, len(lead), len(text) - self.size)  # only the last ``size`` pairs are kept
        if len(text) > start:
            h, t = self.neural.pairs(text, start)
            self._keep(np.asarray(h, np.float32), np.asarray(t, np.int64))

    def _keep(self, h: np.ndarray, t: np.ndarray) -> None:
        """Append pairs in place; when the room (4 × size) is full, the last ``size`` move to the front."""
        k = len(t)
        if self._states.shape != (4 * self.size, h.shape[1]):
            old_h, old_t = self.states[-self.size :], self.targets[-self.size :]
            self._states, self._targets = np.zeros((4 * self.size, h.shape[1]), np.float32), np.zeros(4 * self.size, np.int64)
            self._n = len(old_t) if old_h.shape[1:] == h.shape[1:] else 0
            if self._n:
                self._states[: self._n], self._targets[: self._n] = old_h, old_t
        if self._n + k > len(self._targets):
            keep = self.size - k
            self._states[:keep], self._targets[:keep] = self._states[self._n - keep : self._n], self._targets[self._n - keep : self._n]
            self._n = keep
        self._states[self._n : self._n + k], self._targets[self._n : self._n + k] = h, t
        self._n += k

    def _observed(self) -> tuple[np.ndarray, np.ndarray]:
        """The last ``size`` observed (states, next words): views, no copy."""
        return self.states[-self.size :], self.targets[-self.size :]

    def _scores(self, theta: float, h: np.ndarray, states: np.ndarray) -> np.ndarray:
        s = theta * (states @ h)
        return np.exp(s - s.max())

    def distribution(self, ctx: Context) -> np.ndarray | None:
        terms = self.terms(ctx)
        return None if terms is None else terms.dense()

    def terms(self, ctx: Context) -> Sparse | None:
        h = np.asarray(ctx.network(self.neural)[1], np.float32)  # the states are kept in float32: half the bytes read
        states, targets = ctx.pairs(self.neural, 2 * self.size)
        new = min(len(targets), self.size)
        old_states, old_targets = self._observed()  # what it observed of the user's text comes first
        old = min(len(old_targets), self.size - new)
        if new + old == 0:
            return None
        scores = [old_states[len(old_targets) - old :] @ h] if old else []
        if new:
            scores.append(states[len(states) - new :] @ h)
        s = self.theta * (np.concatenate(scores) if len(scores) > 1 else scores[0]).astype(np.float64)
        e = np.exp(s - s.max())
        t = np.concatenate([old_targets[len(old_targets) - old :], targets[len(targets) - new :]])
        keep = t < ctx.total
        return Sparse(t[keep], e[keep] * ((1.0 - CACHE_FLOOR) / max(1e-300, float(e.sum()))), CACHE_FLOOR / ctx.total, ctx.total)

    def _prob(self, theta: float, h: np.ndarray, states: np.ndarray, targets: np.ndarray, y: int, total: int) -> float:
        if len(targets) == 0:
            return 1.0 / total
        e = self._scores(theta, h, states[-self.size :])
        t = targets[-self.size :]
        return (1.0 - CACHE_FLOOR) * float(e[t == y].sum()) / float(e.sum()) + CACHE_FLOOR / total

    def text_probs(self, text, theta: float, total: int) -> np.ndarray:
        """Its probability of the true word at each scored position with sharpness ``theta``,
        from the (state, word) pairs of the positions before it."""
        p = text.network(self.neural)
        feats, ids = p.feats, p.targets
        out = np.empty(len(text.positions))
        for j, i in enumerate(text.positions):
            lo = max(1, int(i) - self.size)
            out[j] = self._prob(theta, feats[i], feats[lo:i], ids[lo:i], int(ids[i]), total)
        return out

    def score(self, text) -> np.ndarray:
        return self.text_probs(text, self.theta, text.total)

    def tune(self, fit) -> None:
        """The sharpness θ of :data:`NCACHE_THETAS` under which the mixture fits best."""
        if len(fit.text.positions) <= 1:
            return
        best = None
        for t in NCACHE_THETAS:
            trial = dict(fit.probs, **{self.name: self.text_probs(fit.text, t, fit.total)})
            ll = fit.likelihood(trial)
            if best is None or ll > best[0]:
                best = (ll, t, trial)
        _, theta, fit.probs = best
        self.theta = float(theta)

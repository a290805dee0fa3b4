"""The story so far as what the predictor reads: its last words before every line, and each
stream network's state after all of it.

A story is the path of nodes from its root to its current node (:mod:`model.story.db`).
:meth:`StoryContext.follow` makes a path the context of a predictor: every prediction then asks
with the story's last :data:`TAIL` tokens before the current line (so the windowed networks and
the n-gram read across line boundaries), and a stream network reads on from its state after the
whole story, kept per node: a node added at the end is read once, one step per word (words
the menu or the generation already read after the story are not read again), and undo or goto
takes the state kept for that node. When a predictor first follows a story, its caches learn the
path's last words (:meth:`prime`).
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from model.lru import LRU
from model.prediction.caches import CACHE_TOKENS

TAIL = 64  # tokens of the story before the current line: more than a window or the n-gram reads
STATES = 4096  # node states kept per network

Path = tuple[tuple[int, tuple[str, ...]], ...]  # (node id, tokens) from the root to the current node


class StoryContext:
    """The story a predictor continues (see the module docstring). ``on`` False: every line
    stands alone, as if there were no story. Thread-safe."""

    def __init__(self) -> None:
        self.on = True
        self.path: Path = ()
        self._tail: tuple[str, ...] = ()
        self._pred: Any = None
        self._primed: tuple[Any, Any] | None = None  # (predictor, story) whose caches learned the path
        self._applied: tuple | None = None  # (story, node ids, on) the predictor follows now
        self._ends: LRU[tuple[int, str], Any] = LRU(STATES)  # (node id, network) -> state after that node
        self._lock = threading.RLock()

    def tokens(self) -> tuple[str, ...]:
        """What every prediction reads before the current line: the story's last tokens (none when off)."""
        return self._tail if self.on else ()

    def follow(self, pred: Any, path: Sequence[tuple[int, Sequence[str]]], story: Any = None) -> None:
        """Make ``path`` the story ``pred`` continues; a predictor (or ``story``) new to it is
        primed first (:meth:`prime`)."""
        with self._lock:
            applied = (story, tuple(int(i) for i, _ in path), self.on)
            if pred is self._pred and applied == self._applied:
                return
            new = tuple((int(i), tuple(toks)) for i, toks in path)
            if pred is not self._pred:
                self._ends.clear()
                self._pred = pred
            self.path = new
            self._tail = tuple(_last(new, TAIL))
            if pred is None:
                return
            primed = self._primed
            if primed is None or primed[0] is not pred or primed[1] not in (story, None):
                self.prime(pred)  # (a new story that got its id at its first line was read as it was written)
            self._primed = (pred, story)
            self._apply(pred)
            self._applied = applied

    def switch(self, pred: Any, on: bool) -> None:
        """Turn the story on or off as ``pred``'s context."""
        with self._lock:
            self.on = bool(on)
            self._applied = None
            if pred is not None and pred is self._pred:
                self._apply(pred)

    def prime(self, pred: Any) -> None:
        """``pred``'s caches learn the path's last words (as if they had just been written)."""
        tokens = _last(self.path, CACHE_TOKENS)
        if tokens and callable(getattr(pred, "observe", None)):
            pred.observe(tokens)

    def _apply(self, pred: Any) -> None:
        mixture = getattr(pred, "mixture", None)
        if mixture is None or not hasattr(mixture, "follow"):
            return
        if not self.on:
            mixture.follow(None)
            return
        prefix = pred.encode(self._tail)[0]
        states = {c.name: self._state(pred, c) for c in mixture.components if getattr(c, "carries", False)}
        mixture.follow(prefix, states)

    def _state(self, pred: Any, comp: Any) -> Any:
        """The network's state after the whole path: from the deepest node whose state is kept."""
        k = len(self.path)
        while k > 0 and (self.path[k - 1][0], comp.name) not in self._ends:
            k -= 1
        state = self._ends.peek((self.path[k - 1][0], comp.name)) if k else None
        carried = pred.mixture.carried(comp.name)
        for node, toks in self.path[k:]:
            ids = comp.lstm_ids(pred.encode(toks)[0])
            if carried is not None and carried.state is state:
                state = carried.state_after(ids)  # the words the menu or the generation read already
            elif ids:
                state = comp.net.advance_features(np.asarray([ids]) + 1, state)[1]
            self._ends.put((node, comp.name), state)
        return state


def _last(path: Path, n: int) -> list[str]:
    """The last ``n`` tokens of the path."""
    out: list[str] = []
    for _, toks in reversed(path):
        out[:0] = toks[-(n - len(out)) :]
        if len(out) >= n:
            break
    return out

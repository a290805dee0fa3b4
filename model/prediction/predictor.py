"""The predictor every completion, table, generation and score goes through.

It answers "what comes next after these words?" over the full vocabulary (every word of
the training text, plus the words the user has written) from a mixture of the bundle's LSTM,
a Kneser-Ney n-gram and caches of the user's text (:mod:`model.prediction.mixture`). No TensorFlow
here: the REPL starts and completes words without importing it.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from model.storage.bundle import Bundle
from model.config import Config
from model.prediction.decoding import Decoding, beam_candidates, choose_next, generate_ids
from model.lru import LRU
from model.prediction.build import load_mixture
from model.prediction.mixture import Mixture
from model.prediction.numpy_net import Network
from model.text.tokenize import is_cjk, tokenize
from model.text.vocab import Vocab

CACHE_SIZE = 4096



def split_prefix(tokens: list[str], text: str) -> tuple[list[str], str]:
    """(context tokens, partial word being typed, '' if none) for ``text`` whose tokens are
    ``tokens``: the last token is a partial word unless the text ends in whitespace, or the
    token is a CJK character or punctuation."""
    if not tokens or not text or text[-1].isspace():
        return tokens, ""
    last = tokens[-1]
    if is_cjk(last) or not (last[0].isalnum() or last[-1].isalnum()):
        return tokens, ""
    return tokens[:-1], last

class Predictor:
    """Top-k next words, scoring and generation over a loaded bundle. Thread-safe for reads.

    ``vocab`` is the full vocabulary; ``lstm_vocab`` the network's own (maybe capped) one."""

    def __init__(self, bundle: Bundle, mixture: Mixture | None = None, partner: Bundle | None = None):
        """``partner``: another bundle of the same text and split, whose network joins the
        mixture as the ``lstm2`` component (its weights refitted at load)."""
        self.bundle = bundle
        self.config: Config = bundle.config
        self.context: int = int(bundle.config.context)
        self.keep_case = bool(bundle.config.keep_case)
        self.mixture = mixture if mixture is not None else load_mixture(bundle, partner)
        self.vocab: Vocab = self.mixture.words
        self.lstm_vocab: Vocab = bundle.vocab
        self.net = self.mixture.neural.net if self.mixture.neural is not None else Network(bundle.config, bundle.weights)
        self._cache: LRU[tuple, tuple[np.ndarray, np.ndarray | None]] = LRU(CACHE_SIZE)

    @classmethod
    def from_mixture(cls, mixture: Mixture, config: Config) -> "Predictor":
        """A predictor with no trained network yet (the n-gram and the cache answer alone)."""
        self = cls.__new__(cls)
        self.bundle = None
        self.config = config
        self.context = int(config.context or 3)
        self.keep_case = bool(config.keep_case)
        self.mixture = mixture
        self.vocab = mixture.words
        self.lstm_vocab = None
        self.net = None
        self._cache = LRU(CACHE_SIZE)
        return self

    @property
    def casing(self):
        """How the words are written (:class:`model.text.casing.Casing`), or None: as they are."""
        return getattr(self.mixture, "casing", None)

    @property
    def _ban(self) -> np.ndarray:
        """Ids never offered or generated (none: the full vocabulary has no <unk>)."""
        ban = getattr(self, "_no_ban", None)
        if ban is None or len(ban) != len(self.vocab):
            ban = self._no_ban = np.zeros(len(self.vocab), bool)
        return ban

    # ---- contexts ------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, keep_case=self.keep_case)

    def encode(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        """Ids of the ``tokens`` the predictor knows, and the unknown words (skipped)."""
        return self.vocab.split_known(tokens)

    def observe(self, tokens: Sequence[str], before: Sequence[str] = ()) -> None:
        """Tell the cache what the user wrote (a line entered, a history file); ``before``: the
        story's last words before it, when it continues one."""
        self.mixture.observe(tokens, before)

    def components(self, names: Sequence[str] | None = None) -> list[str]:
        """The active components; with ``names``, switch to exactly those."""
        if names is not None:
            self.mixture.set_active(names)
            self._cache.clear()
        return list(self.mixture.active)

    # ---- distributions -----------------------------------------------------------------
    def _key(self, ids: Sequence[int]) -> tuple:
        last = (ids if isinstance(ids, (list, tuple, np.ndarray)) else list(ids))[-self.mixture.history_size :]
        return (tuple(map(int, last)), self.mixture.version, len(self.vocab))

    def distribution(self, ids: Sequence[int]) -> np.ndarray:
        """P(next word | ``ids``, what the user wrote), float64 over the full vocabulary, cached."""
        return self._entry(ids)[0]

    def _entry(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        return self._cache.get_or_make(self._key(ids), lambda: (self.mixture.distribution(list(ids)), None))

    def ranking(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, word ids from most to least likely), cached."""
        key = self._key(ids)
        probs, order = self._entry(ids)
        if order is None:
            order = np.argsort(-probs, kind="stable")
            self._cache.put(key, (probs, order))
        return probs, order

    def top_k(self, ids: Sequence[int], k: int, prefix: str = "") -> list[tuple[str, float]]:
        """The ``k`` most likely next words (optionally only those starting with ``prefix``)."""
        if k <= 0:
            return []
        probs, order = self.ranking(ids)
        tokens = self.vocab.tokens
        if not prefix:
            return [(tokens[i], float(probs[i])) for i in order[:k]]
        out: list[tuple[str, float]] = []
        for i in order:
            w = tokens[i]
            if w.startswith(prefix):
                out.append((w, float(probs[i])))
                if len(out) >= k:
                    break
        return out

    def predict_text(self, text: str, k: int) -> dict:
        """The public ``predict`` result for a text: context words, unknown words and top-k."""
        tokens = self.tokenize(text)
        ids, unknown = self.encode(tokens)
        ctx = self.vocab.decode(ids[-self.context :])
        preds = self.top_k(ids, k)
        return {"context": ctx, "unknown": unknown, "predictions": [{"word": w, "prob": p} for w, p in preds]}

    # ---- generation ------------------------------------------------------------------------
    def next_id(
        self,
        ids: Sequence[int],
        greedy: bool = True,
        temperature: float = 1.0,
        rng: np.random.Generator | None = None,
        decoding: Decoding | None = None,
    ) -> int:
        """The next id after the history ``ids`` (see model/prediction/decoding.py for the settings)."""
        dec = decoding if decoding is not None else Decoding.legacy(greedy, temperature)
        return choose_next(self.distribution, self._ban, list(ids), dec, rng)

    def generate_ids(
        self,
        ids: Sequence[int],
        n: int,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int | None = None,
        decoding: Decoding | None = None,
    ) -> Iterable[int]:
        """Yield ``n`` generated ids after ``ids`` (a generator, so a caller can stop it early).

        ``decoding`` gives every setting; without it, ``greedy``/``temperature`` choose the
        mode and the default repetition controls apply.
        """
        dec = decoding if decoding is not None else Decoding.legacy(greedy, temperature)
        return generate_ids(self.distribution, self._ban, list(ids), n, dec, np.random.default_rng(seed))

    def beams(self, ids: Sequence[int], n: int, decoding: Decoding, width: int) -> list[tuple[float, list[int]]]:
        """Every beam of a search of ``width`` beams for ``n`` ids after ``ids``, best first
        (see :func:`model.prediction.decoding.beam_candidates`)."""
        return beam_candidates(self.distribution, self._ban, list(ids), n, decoding, width)

    def generate(
        self,
        tokens: Sequence[str],
        n: int,
        greedy: bool = True,
        temperature: float = 1.0,
        seed: int | None = None,
        decoding: Decoding | None = None,
    ) -> list[str]:
        ids, _ = self.encode(tokens)
        return self.vocab.decode(self.generate_ids(ids, n, greedy, temperature, seed, decoding=decoding))

    # ---- completion helpers -----------------------------------------------------------------
    def split_prefix(self, text: str) -> tuple[list[str], str]:
        """Context tokens and the partial word being typed at the end of ``text`` ('' if none)."""
        return split_prefix(self.tokenize(text), text)

    def probabilities_batch(self, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
        """(N, context) vocabulary-id windows (-1 = padding) -> (N, V) probabilities."""
        windows = np.asarray(windows)
        out = []
        for s in range(0, len(windows), batch):
            out.append(self.net.probabilities(windows[s : s + batch] + 1))
        return np.concatenate(out) if out else np.zeros((0, len(self.lstm_vocab)), np.float32)


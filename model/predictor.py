"""Next-word prediction and generation on numpy, from a bundle's saved weights.

No TensorFlow here: the REPL starts and completes words without importing it. The forward
pass reproduces Keras's LSTM exactly (gate order i, f, c, o; sigmoid recurrent activation;
masked padding steps leave the state unchanged), so probabilities match the Keras model.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np

from model.bundle import Bundle
from model.config import Config
from model.decoding import Decoding, choose_next, generate_ids
from model.tokenize import is_cjk, tokenize
from model.vocab import Vocab

CACHE_SIZE = 4096


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # exact and overflow-free


def lstm_layer(
    xs: np.ndarray, mask: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, reverse: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, D) inputs, (B, T) bool mask -> ((B, T, U) outputs, (B, U) final state)."""
    b, t, _ = xs.shape
    u = recurrent.shape[0]
    h = np.zeros((b, u), np.float32)
    c = np.zeros((b, u), np.float32)
    outs = np.zeros((b, t, u), np.float32)
    zx = xs @ kernel + bias  # (B, T, 4U): input projections for every step at once
    steps = range(t - 1, -1, -1) if reverse else range(t)
    for s in steps:
        z = zx[:, s] + h @ recurrent
        i = _sigmoid(z[:, :u])
        f = _sigmoid(z[:, u : 2 * u])
        g = np.tanh(z[:, 2 * u : 3 * u])
        o = _sigmoid(z[:, 3 * u :])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        m = mask[:, s : s + 1]
        if m.all():
            c, h = c_new, h_new
        else:
            c = np.where(m, c_new, c)
            h = np.where(m, h_new, h)
        outs[:, s] = h
    return outs, h


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Network:
    """The bundle's network as numpy arrays: (B, T) input ids (0 = padding) -> (B, V) logits."""

    def __init__(self, config: Config, weights: dict[str, np.ndarray]):
        self.config = config
        self.w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}

    def _lstm(self, name: str, xs: np.ndarray, mask: np.ndarray, reverse: bool = False):
        w = self.w
        return lstm_layer(xs, mask, w[f"{name}/kernel"], w[f"{name}/recurrent"], w[f"{name}/bias"], reverse)

    def logits(self, ids: np.ndarray) -> np.ndarray:
        ids = np.atleast_2d(np.asarray(ids, dtype=np.int64))
        mask = ids != 0
        xs = self.w["embedding"][ids]  # (B, T, E)
        arch = self.config.arch
        if arch == "lstm":
            _, h = self._lstm("lstm", xs, mask)
        elif arch == "stacked":
            seq, _ = self._lstm("lstm_1", xs, mask)
            _, h = self._lstm("lstm_2", seq, mask)
        else:
            _, hf = self._lstm("forward", xs, mask)
            _, hb = self._lstm("backward", xs, mask, reverse=True)
            h = np.concatenate([hf, hb], axis=-1)
        return h @ self.w["logits/kernel"] + self.w["logits/bias"]

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        return softmax(self.logits(ids))


class Predictor:
    """Top-k next words, scoring and generation over a loaded bundle. Thread-safe for reads."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.config: Config = bundle.config
        self.vocab: Vocab = bundle.vocab
        self.context: int = int(bundle.config.context)
        self.net = Network(bundle.config, bundle.weights)
        self.keep_case = bool(bundle.config.keep_case)
        self._cache: OrderedDict[tuple[int, ...], tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._ban = np.zeros(len(self.vocab), bool)
        if self.vocab.unk_id is not None:
            self._ban[self.vocab.unk_id] = True

    # ---- contexts ------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, keep_case=self.keep_case)

    def encode(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        """Known ids of ``tokens`` and the unknown words (skipped, or <unk> if the vocab has it)."""
        return self.vocab.split_known(tokens)

    def window(self, ids: Sequence[int]) -> np.ndarray:
        """The last ``context`` ids as network input (shifted by one), left-padded with 0."""
        tail = [int(i) + 1 for i in list(ids)[-self.context :]]
        return np.asarray([0] * (self.context - len(tail)) + tail, dtype=np.int64)

    # ---- distributions -----------------------------------------------------------------
    def distribution(self, ids: Sequence[int]) -> np.ndarray:
        """P(next word | the last ``context`` ids), float32 (V,), cached by context."""
        return self._entry(ids)[0]

    def _entry(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        key = tuple(int(i) for i in list(ids)[-self.context :])
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        probs = self.net.probabilities(self.window(key)[None, :])[0]
        entry = (probs, None)
        self._cache[key] = entry
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return entry

    def ranking(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, word ids from most to least likely, <unk> excluded), cached."""
        key = tuple(int(i) for i in list(ids)[-self.context :])
        probs, order = self._entry(key)
        if order is None:
            order = np.argsort(-probs, kind="stable")
            if self._ban.any():
                order = order[~self._ban[order]]
            self._cache[key] = (probs, order)
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
        """The next id after the history ``ids`` (see model/decoding.py for the settings)."""
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
        tokens = self.tokenize(text)
        if not tokens or not text or text[-1].isspace():
            return tokens, ""
        last = tokens[-1]
        if is_cjk(last) or not (last[0].isalnum() or last[-1].isalnum()):
            return tokens, ""
        return tokens[:-1], last

    def probabilities_batch(self, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
        """(N, context) vocabulary-id windows (-1 = padding) -> (N, V) probabilities."""
        windows = np.asarray(windows)
        out = []
        for s in range(0, len(windows), batch):
            out.append(self.net.probabilities(windows[s : s + batch] + 1))
        return np.concatenate(out) if out else np.zeros((0, len(self.vocab)), np.float32)


"""The bundle's network on numpy: no TensorFlow, so the REPL starts and completes at once.

The forward pass reproduces Keras's LSTM exactly (gate order i, f, c, o; sigmoid recurrent
activation; masked padding steps leave the state unchanged), so probabilities match the
Keras model. The ``stream`` arch is two stacked layers read from a zero state over the window
(:meth:`Network.logits`), or from a carried state one step per word (:meth:`Network.advance`);
with tied weights its output kernel is the embedding transposed.
"""
from __future__ import annotations

import numpy as np

from model.config import Config
from model.lru import LRU


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # exact and overflow-free


def lstm_layer(
    xs: np.ndarray,
    mask: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray,
    reverse: bool = False,
    state: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, T, D) inputs, (B, T) bool mask -> ((B, T, U) outputs, (B, U) final state).

    ``state`` is the (h, c) to start from (zero by default); :func:`lstm_run` also returns c."""
    outs, h, _ = lstm_run(xs, mask, kernel, recurrent, bias, reverse, state)
    return outs, h


def lstm_run(
    xs: np.ndarray,
    mask: np.ndarray,
    kernel: np.ndarray,
    recurrent: np.ndarray,
    bias: np.ndarray,
    reverse: bool = False,
    state: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`lstm_layer`, returning ((B, T, U) outputs, final h, final c)."""
    b, t, _ = xs.shape
    u = recurrent.shape[0]
    if state is None:
        h = np.zeros((b, u), np.float32)
        c = np.zeros((b, u), np.float32)
    else:
        h, c = (np.asarray(s, np.float32) for s in state)
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
    return outs, h, c


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


State = list  # [(h, c) of lstm_1, (h, c) of lstm_2]: the stream arch's carried state


class Network:
    """The bundle's network as numpy arrays: (B, T) input ids (0 = padding) -> (B, V) logits."""

    def __init__(self, config: Config, weights: dict[str, np.ndarray]):
        self.config = config
        self.w = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        if "logits/kernel" not in self.w and "embedding" in self.w:  # tied weights: the output kernel is the embedding transposed
            self.w["logits/kernel"] = np.ascontiguousarray(self.w["embedding"][1:].T)

    def _lstm(self, name: str, xs: np.ndarray, mask: np.ndarray, reverse: bool = False):
        w = self.w
        return lstm_layer(xs, mask, w[f"{name}/kernel"], w[f"{name}/recurrent"], w[f"{name}/bias"], reverse)

    def logits(self, ids: np.ndarray) -> np.ndarray:
        return self.features(ids) @ self.w["logits/kernel"] + self.w["logits/bias"]

    def features(self, ids: np.ndarray) -> np.ndarray:
        """(B, T) input ids -> (B, H): the encoder's output that the logits layer reads
        (the state a neural cache compares)."""
        ids = np.atleast_2d(np.asarray(ids, dtype=np.int64))
        # Leading columns that are padding in every row leave every state at zero: skip them
        # (a long window, e.g. the stream arch's 64 words, mostly holds a short line).
        filled = np.flatnonzero((ids != 0).any(axis=0))
        if len(filled) and filled[0] > 0:
            ids = ids[:, filled[0] :]
        mask = ids != 0
        xs = self.w["embedding"][ids]  # (B, T, E)
        arch = self.config.arch
        if arch == "lstm":
            _, h = self._lstm("lstm", xs, mask)
        elif arch in ("stacked", "stream"):
            seq, _ = self._lstm("lstm_1", xs, mask)
            _, h = self._lstm("lstm_2", seq, mask)
        else:
            _, hf = self._lstm("forward", xs, mask)
            _, hb = self._lstm("backward", xs, mask, reverse=True)
            h = np.concatenate([hf, hb], axis=-1)
        return h

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        return softmax(self.logits(ids))

    # ---- carried state (stream arch) -----------------------------------------------------
    def advance(self, ids: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """Stream arch: read (B, T) input ids (0 = padding, skipped) from ``state`` (zero when
        None); return the (B, T, V) logits after every position and the state after the last.

        Reading a text piece by piece, each piece from the state the previous one left, gives
        the same logits as reading it at once, so generation and scoring can take one step per
        word instead of re-reading a window. ``advance(x)[0][:, -1]`` equals ``logits(x)``."""
        seq, new = self.advance_features(ids, state)
        return seq @ self.w["logits/kernel"] + self.w["logits/bias"], new

    def advance_features(self, ids: np.ndarray, state: State | None = None) -> tuple[np.ndarray, State]:
        """Like :meth:`advance`, returning the (B, T, U) top-layer outputs the logits layer
        reads (``features`` at every position) instead of the logits."""
        if self.config.arch != "stream":
            raise ValueError(f"advance() needs the stream arch, not {self.config.arch}")
        ids = np.atleast_2d(np.asarray(ids, dtype=np.int64))
        mask = ids != 0
        x = self.w["embedding"][ids]
        new: State = []
        for k, name in enumerate(("lstm_1", "lstm_2")):
            w = self.w
            x, h, c = lstm_run(
                x, mask, w[f"{name}/kernel"], w[f"{name}/recurrent"], w[f"{name}/bias"], state=None if state is None else state[k]
            )
            new.append((h, c))
        return x, new


class StreamStates:
    """Stream arch: next-word logits of id windows, one LSTM step per word where it can.

    ``logits(window)`` gives what :meth:`Network.logits` gives for that window (vocabulary
    ids, read left to right from a zero state), but remembers the state each window ends
    with: a window that extends a remembered one by one word (the next keystroke's line, the
    next generated word) costs one step instead of ``len(window)``. At most ``size`` states
    are kept, least recently used first out."""

    def __init__(self, net: Network, size: int = 4096):
        if net.config.arch != "stream":
            raise ValueError(f"StreamStates needs the stream arch, not {net.config.arch}")
        self.net = net
        self.size = int(size)
        self._states: LRU[tuple[int, ...], State] = LRU(size)

    def features(self, window: tuple[int, ...]) -> np.ndarray:
        """(U,) what :meth:`Network.features` gives for ``window`` (a tuple of vocabulary ids)."""
        window = tuple(int(i) for i in window)
        prev = self._states.peek(window[:-1]) if window else None
        if prev is not None:
            out, state = self.net.advance_features(np.asarray([[window[-1] + 1]]), prev)
        elif window:
            out, state = self.net.advance_features(np.asarray([window]) + 1)
        else:
            out, state = self.net.advance_features(np.zeros((1, 1), np.int64))  # padding only: the zero state
        self._states.put(window, state)
        return out[0, -1]

    def logits(self, window: tuple[int, ...]) -> np.ndarray:
        """(V,) logits of the word after ``window`` (a tuple of vocabulary ids)."""
        return self.features(window) @ self.net.w["logits/kernel"] + self.net.w["logits/bias"]

    def probabilities(self, window: tuple[int, ...]) -> np.ndarray:
        return softmax(self.logits(window))

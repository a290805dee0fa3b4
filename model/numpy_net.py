"""The bundle's network on numpy: no TensorFlow, so the REPL starts and completes at once.

The forward pass reproduces Keras's LSTM exactly (gate order i, f, c, o; sigmoid recurrent
activation; masked padding steps leave the state unchanged), so probabilities match the
Keras model.
"""
from __future__ import annotations

import numpy as np

from model.config import Config


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

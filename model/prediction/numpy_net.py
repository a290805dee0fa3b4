"""The bundle's network on numpy: no TensorFlow, so the REPL starts and completes at once.

The forward pass reproduces Keras's LSTM exactly (gate order i, f, c, o; sigmoid recurrent
activation; masked padding steps leave the state unchanged), so probabilities match the
Keras model. The ``stream`` arch is two stacked layers read from a zero state over the window
(:meth:`Network.logits`), or from a carried state one step per word (:meth:`Network.advance`,
:meth:`Network.step`); with tied weights its output kernel is the embedding transposed. A
generation reads a window per word: :class:`WindowStates` makes that one batched step, and each
word's input projection is computed once (:meth:`Network.projection`).
"""
from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np

from model.config import Config
from model.lru import LRU


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
    for k, s in enumerate(steps):
        z = zx[:, s] if k == 0 and state is None else zx[:, s] + rows_matmul(h, recurrent)  # the zero state adds nothing
        h_new, c_new = lstm_cell(z, c)
        m = mask[:, s : s + 1]
        if m.all():
            c, h = c_new, h_new
        else:
            c = np.where(m, c_new, c)
            h = np.where(m, h_new, h)
        outs[:, s] = h
    return outs, h, c


_SCALES: dict[int, np.ndarray] = {}


def lstm_cell(z: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of Keras's LSTM from the (M, 4U) pre-activations ``z`` (gates i, f, c, o) and
    the (M, U) cell ``c``: the new (h, c). The sigmoid is ``0.5 * (tanh(x / 2) + 1)`` (exact
    and overflow-free), taken for the three sigmoid gates in the one tanh call, in place in one
    array of the four gates."""
    u = c.shape[-1]
    scale = _SCALES.get(u)
    if scale is None:
        scale = _SCALES.setdefault(u, np.concatenate([np.full(2 * u, 0.5), np.ones(u), np.full(u, 0.5)]).astype(np.float32))
    t = np.multiply(z, scale, dtype=np.float32)
    np.tanh(t, out=t)
    for gates in (t[:, : 2 * u], t[:, 3 * u :]):  # i, f and o: tanh -> sigmoid
        gates += 1.0
        gates *= 0.5
    c_new = t[:, u : 2 * u] * c
    c_new += t[:, :u] * t[:, 2 * u : 3 * u]
    return t[:, 3 * u :] * np.tanh(c_new), c_new


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
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # first layer -> (projection rows, which are filled)

    def projection(self, name: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """(n, 4U) ``embedding[ids] @ kernel + bias`` of the first layer ``name`` for input ids
        (vocabulary id + 1): a table of every word's input projection, each row computed the
        first time its word is read (the table's untouched pages take no memory)."""
        emb = self.w["embedding"]
        table = self._rows.get(name)
        if table is None:
            four_u = self.w[f"{name}/kernel"].shape[1]
            table = self._rows.setdefault(name, (np.zeros((emb.shape[0], four_u), np.float32), np.zeros(emb.shape[0], bool)))
        rows, done = table
        ids = np.asarray(ids, np.int64)
        todo = ids[~done[ids]]
        if len(todo):
            todo = np.unique(todo)
            rows[todo] = emb[todo] @ self.w[f"{name}/kernel"] + self.w[f"{name}/bias"]
            done[todo] = True
        return rows[ids]

    def projection_of(self, name: str, token: int) -> np.ndarray:
        """(1, 4U) :meth:`projection` of one input id, read in place once computed (do not write to it)."""
        table = self._rows.get(name)
        if table is not None and table[1][token]:
            return table[0][token : token + 1]
        return self.projection(name, [token])

    def output(self, feats: np.ndarray) -> np.ndarray:
        """(B, V) logits of (B, U) features."""
        return feats @ self.w["logits/kernel"] + self.w["logits/bias"]

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

    def step(self, token: int, state: State | None) -> State:
        """Stream arch: the state after reading one input id (vocabulary id + 1) from ``state``
        (zero when None); :meth:`advance_features` for one word, with its projection kept."""
        w = self.w
        new: State = []
        x = None
        for k, name in enumerate(("lstm_1", "lstm_2")):
            rec = w[f"{name}/recurrent"]
            if state is None:
                h = c = np.zeros((1, rec.shape[0]), np.float32)
            else:
                h, c = state[k]
            zx = self.projection_of(name, token) if x is None else x @ w[f"{name}/kernel"] + w[f"{name}/bias"]
            x, c = lstm_cell(zx + h @ rec, c)
            new.append((x, c))
        return new


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


_LEFT_TO_RIGHT = ("lstm", "stacked", "stream")  # the archs whose window is read from its first word on


class Suffixes:
    """A window's suffix states: per layer, the (h, c) of each suffix, each (k, U), longest
    suffix first."""

    __slots__ = ("layers",)

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]]):
        self.layers = layers


class WindowStates:
    """The left-to-right archs read as windows (lstm, stacked; stream without a story): the
    features of id windows, each read from a zero state, one batched LSTM step per word where
    the window before it was read here.

    A window's suffix states are the states after each of its suffixes, each read from a zero
    state. The window a word later (one id longer, or slid by one) continues all of them by its
    new id in one matrix product, its longest suffix being the window itself: a generated word
    or a word typed costs one step of ``context`` rows instead of ``context`` steps of one.
    ``features(window)`` returns None when the window's predecessor has none kept and it does
    not continue the window asked before (the caller reads it on its own); when it does (a
    generation, a line typed word by word), or when asked to ``read`` it (the windows along a
    line observed, which a generation then continues), its suffix states are read first
    (``context`` steps of growing batches). At most ``size`` windows are kept, least recently
    used first out."""

    def __init__(self, net: Network, context: int, size: int = 64):
        if net.config.arch not in _LEFT_TO_RIGHT:
            raise ValueError(f"WindowStates needs a left-to-right arch, not {net.config.arch}")
        self.net = net
        self.context = int(context)
        self.names = ("lstm",) if net.config.arch == "lstm" else ("lstm_1", "lstm_2")
        self._rows: LRU[tuple[int, ...], Suffixes] = LRU(size)
        self._last: tuple[int, ...] = ()

    @classmethod
    def of(cls, net: object, context: int) -> "WindowStates | None":
        """Those of ``net`` when it is a numpy network of a left-to-right arch, else None."""
        return cls(net, context) if isinstance(net, Network) and net.config.arch in _LEFT_TO_RIGHT else None

    def features(self, window: tuple[int, ...], read: bool = False) -> np.ndarray | None:
        """(U,) what :meth:`Network.features` gives for ``window`` (vocabulary ids), or None
        (never with ``read``)."""
        window = tuple(int(i) for i in window)
        if not window:
            return None
        kept = self._rows.peek(window)
        if kept is not None:
            return kept.layers[-1][0][0]
        prev = self._rows.peek(window[:-1]) if len(window) > 1 else self._empty()
        if prev is None:
            last, self._last = self._last, window
            if not read and window[:-1] not in (last, last[1:]):
                return None
            prev = self._empty()
            for token in window[:-1]:
                prev = self._step(prev, token)
        rows = self._step(prev, window[-1])
        self._rows.put(window, rows)
        if len(window) >= self.context:  # the next window slides: it continues these but the longest
            self._rows.put(window[1:], Suffixes([(h[1:], c[1:]) for h, c in rows.layers]))
        return rows.layers[-1][0][0]

    def _empty(self) -> Suffixes:
        return Suffixes([(np.zeros((0, n), np.float32),) * 2 for n in (self.net.w[f"{name}/recurrent"].shape[0] for name in self.names)])

    def _step(self, prev: Suffixes, token: int) -> Suffixes:
        """The suffix states after one more input (vocabulary id ``token``): every suffix
        continued by it, and the suffix of it alone (from the zero state)."""
        w = self.net.w
        out = []
        x = None
        for (h, c), name in zip(prev.layers, self.names):
            zx = self.net.projection_of(name, token + 1) if x is None else rows_matmul(x, w[f"{name}/kernel"]) + w[f"{name}/bias"]
            if len(h):
                z = np.concatenate([zx[: len(h)] + rows_matmul(h, w[f"{name}/recurrent"]), zx[-1:]])
                c = np.concatenate([c, np.zeros((1, c.shape[1]), np.float32)])
            else:
                z, c = zx, np.zeros((1, c.shape[1]), np.float32)
            x, c = lstm_cell(z, c)
            out.append((x, c))
        return Suffixes(out)


FEW_ROWS = 16  # up to this many rows, a large matrix is multiplied block by block
BLOCK_COLUMNS = 128  # columns of a block


def rows_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w``; 2 to FEW_ROWS rows against a matrix of 1 MiB or more block of BLOCK_COLUMNS
    columns by block (one stacked product over the blocks, in one call), which OpenBLAS does
    2-3x faster than the one product (figures: bench/README.md, Generation with a story)."""
    if not 2 <= len(x) <= FEW_ROWS or w.nbytes < 1 << 20 or w.shape[1] % BLOCK_COLUMNS:
        return x @ w
    blocks = _column_blocks(w)  # (blocks, D, BLOCK_COLUMNS)
    return np.matmul(x, blocks).transpose(1, 0, 2).reshape(len(x), w.shape[1])


_BLOCKS: dict[int, tuple[weakref.ref, np.ndarray]] = {}  # id(matrix) -> (the matrix, its blocks)


def _column_blocks(w: np.ndarray) -> np.ndarray:
    """``w``'s blocks of BLOCK_COLUMNS columns as one contiguous (blocks, D, BLOCK_COLUMNS)
    array, made once per matrix and dropped with it."""
    kept = _BLOCKS.get(id(w))
    if kept is None or kept[0]() is not w:
        key = id(w)
        blocks = np.ascontiguousarray(w.reshape(w.shape[0], -1, BLOCK_COLUMNS).transpose(1, 0, 2))
        kept = _BLOCKS[key] = (weakref.ref(w, lambda _ref: _BLOCKS.pop(key, None)), blocks)
    return kept[1]


class Carried:
    """Stream arch: the state after a long text read once (a story so far), and the words read
    after it since, one LSTM step per word.

    ``output(suffix)`` gives the (probabilities, features) after the text followed by ``suffix``
    (a tuple of vocabulary ids); a suffix that extends a remembered one by a word (the next
    keystroke's line, the next generated word) costs one step. ``state_after(suffix)`` is the
    state itself, for carrying on when the suffix joins the text."""

    def __init__(self, net: Network, state: State | None, size: int = 4096, outputs: int = 256):
        if net.config.arch != "stream":
            raise ValueError(f"Carried needs the stream arch, not {net.config.arch}")
        self.net = net
        self.state = state
        self._states: LRU[tuple[int, ...], State] = LRU(size)
        self._outputs: LRU[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = LRU(outputs)

    def state_after(self, suffix: tuple[int, ...]) -> State | None:
        """The state after the text and then ``suffix``: from the longest remembered start of it."""
        k = len(suffix)
        while k > 0 and suffix[:k] not in self._states:
            k -= 1
        state = self.state if k == 0 else self._states.peek(suffix[:k])
        for j in range(k, len(suffix)):
            state = self._states.put(suffix[: j + 1], self.net.step(suffix[j] + 1, state))
        return state

    def output(self, suffix: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(V,) probabilities of the next word and the (U,) features after the text and ``suffix``."""
        hit = self._outputs.get(suffix)
        if hit is not None:
            return hit
        state = self.state_after(suffix)
        if state is None:  # nothing read at all: the zero state, as an all-padding window gives
            feats = np.zeros(self.net.w["lstm_2/recurrent"].shape[0], np.float32)
        else:
            feats = state[-1][0][0]
        probs = softmax(self.net.output(feats))
        return self._outputs.put(suffix, (probs.astype(np.float64), feats.astype(np.float64)))

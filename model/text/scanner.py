"""The scanner behind :mod:`model.text.ids`: UTF-8 text to token ids, each distinct chunk tokenized once.

Tokens never span whitespace, so a :class:`Scanner` cuts each piece of a text into
whitespace-separated chunks, looks them all up at once in a hash table held in numpy arrays, and
tokenizes only the chunks it has not met before, numbering words in order of first appearance.
The result is token for token that of :func:`model.text.tokenize.tokenize` over the whole text;
the tests check it on every shipped corpus and on random text.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import numpy as np

from model.text.tokenize import tokenize

#: Chunks of at most this many UTF-8 bytes are keyed by their bytes, as two 64-bit numbers.
KEY_BYTES = 15
#: Slots a lookup probes before it treats a chunk as new (a repeat is then added twice,
#: with the same tokens: harmless).
MAX_PROBES = 8
_FIRST_SLOTS = 1 << 15
#: Distinct chunks a scanner keeps at most (about 90 bytes each): past this, it forgets them
#: all before its next piece and learns the frequent ones again, so a text of ever new
#: chunks cannot grow a worker without bound.
MAX_CHUNKS = 2_000_000

# Whitespace as str.split() sees it, by UTF-8 byte, and the line breaks among it, as
# str.splitlines() sees them ("\r\n" is one). A blank line is a line of whitespace only, and
# one or more of them between two lines is a paragraph break.
_WS_BYTE = np.zeros(256, bool)
_WS_BYTE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_LB_BYTE = np.zeros(256, bool)
_LB_BYTE[[10, 11, 12, 13, 28, 29, 30]] = True
#: The non-ASCII whitespace characters (str.isspace()), each with the ASCII bytes of the same
#: length and kind that stand for it in the UTF-8 bytes: a line break pairs with nothing ("\x0b").
WIDE_SPACES = {
    **{c: b"\x0b" + b" " * (len(c.encode()) - 1) for c in "\x85\u2028\u2029"},
    **{c: b" " * len(c.encode()) for c in "\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"},
}
_HASH_MUL = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
# The bits of a chunk's first 8 bytes (_LOW) and next 8 (_HIGH) that hold its bytes, by length.
_LOW = np.array([(1 << 8 * min(n, 8)) - 1 for n in range(KEY_BYTES + 1)], np.uint64)
_HIGH = np.array([(1 << 8 * max(n - 8, 0)) - 1 for n in range(KEY_BYTES + 1)], np.uint64)

_POSSESSIVE = "+" if sys.version_info >= (3, 11) else ""
# The tokenizer's pattern restricted to printable ASCII: words with apostrophe contractions, or one mark.
_ASCII_TOKENS = re.compile(f"[A-Za-z0-9]+{_POSSESSIVE}(?:'[A-Za-z0-9]+{_POSSESSIVE})*{_POSSESSIVE}|[!-~]")


@dataclass
class Piece:
    """One scanned piece: the words first met in it (they continue the numbering of the
    scanner that read it: for a piece read alone, every distinct token, in order of first
    appearance), the ids of its tokens in that numbering, and the token offsets (within the
    piece) of its blank-line paragraph breaks; when asked for, the token offsets of the lines'
    first tokens (after a line break: ``lines``) and of the first token after each run of
    whitespace (``spaced``)."""

    words: list[str]
    ids: np.ndarray  # int32
    breaks: np.ndarray  # int64
    lines: np.ndarray | None = None  # int64
    spaced: np.ndarray | None = None  # int64


def tokens_of_chunk(chunk: str, keep_case: bool) -> list[str] | tuple[str, ...]:
    """``tokenize(chunk, keep_case)`` for a chunk without whitespace, fast for ASCII."""
    if chunk.isascii() and chunk.isprintable():
        low = chunk if keep_case else chunk.lower()
        return (low,) if chunk.isalnum() else _ASCII_TOKENS.findall(low)
    return tokenize(chunk, keep_case=keep_case)


class Scanner:
    """Scans the pieces of one text in order (see the module docstring)."""

    def __init__(self, keep_case: bool = False) -> None:
        self.keep_case = keep_case
        self.words: list[str] = []
        self._word_ids: dict[str, int] = {}
        self._forget_chunks()

    def _forget_chunks(self) -> None:
        # the chunk table, a row a slot: key (low, high) and chunk id (FREE: an empty slot),
        # side by side so that a probe reads one place
        self._table = _empty_table(_FIRST_SLOTS)
        self._used = 0
        self._long: dict[bytes, int] = {}  # chunks longer than KEY_BYTES
        # chunk id -> its tokens: word ids _flat[_start[c] : _start[c] + _count[c]]
        self._start = np.zeros(1024, np.int64)
        self._count = np.zeros(1024, np.int64)
        self._flat = np.zeros(4096, np.int32)
        self._n_chunks = 0
        self._n_flat = 0

    def scan(self, data: bytes, lines: bool = False) -> Piece:
        """Tokenize the UTF-8 ``data`` (a piece that starts and ends at a chunk boundary);
        ``lines``: also find where lines and chunks start."""
        if self._n_chunks > MAX_CHUNKS:
            self._forget_chunks()
        before = len(self.words)
        b = _ascii_spaces(data)
        starts, ends, break_at = split_chunks(b)
        cid = self.chunk_ids(data, b, starts, ends - starts)
        n_of = self._count[cid]
        ends_tok = np.cumsum(n_of)
        breaks = np.concatenate([np.zeros(1, np.int64), ends_tok])[break_at]
        first = self._start[cid]
        if len(n_of) == 0 or (n_of == 1).all():  # one token per chunk: a plain lookup
            ids = self._flat[first]
        else:
            total = int(ends_tok[-1])
            index = np.repeat(first - (ends_tok - n_of), n_of) + np.arange(total, dtype=np.int64)
            ids = self._flat[index]
        if not lines:
            return Piece(self.words[before:], ids, breaks)
        chunk_at = np.concatenate([np.zeros(1, np.int64), ends_tok[:-1]])
        return Piece(self.words[before:], ids, breaks, chunk_at[line_breaks_before(b, starts, ends)], chunk_at)

    # ---- chunks to chunk ids ---------------------------------------------------------
    def chunk_ids(self, data: bytes, b: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The chunk id of every chunk (int64), adding the chunks not met before."""
        low, high = _keys(b, starts, lengths)
        cid = self._lookup(low, high)
        long_ = np.flatnonzero(lengths > KEY_BYTES)
        for j in long_.tolist():
            got = self._long.get(data[starts[j] : starts[j] + lengths[j]])
            cid[j] = -1 if got is None else got
        missing = np.flatnonzero(cid < 0)
        if len(missing):
            self._add(data, starts, lengths, low, high, missing, cid)
        return cid

    def _add(self, data, starts, lengths, low, high, missing, cid) -> None:
        """Give the ``missing`` chunks ids (new ones in order of first appearance) and tokens."""
        is_long = lengths[missing] > KEY_BYTES
        short, long_ = missing[~is_long], missing[is_long]
        group = np.empty(len(cid), np.int64)
        firsts = []
        if len(short):
            first, inv = group_keys(low[short], high[short])
            group[short] = inv
            firsts.append(short[first])
        if len(long_):
            spans = zip(starts[long_].tolist(), lengths[long_].tolist())
            first, inv = group_items(data[j : j + n] for j, n in spans)
            group[long_] = (len(firsts[0]) if firsts else 0) + inv
            firsts.append(long_[first])
        first_chunk = np.concatenate(firsts)
        order = np.argsort(first_chunk, kind="stable")  # groups by first appearance
        new_id = np.empty(len(order), np.int64)
        new_id[order] = self._n_chunks + np.arange(len(order))
        cid[missing] = new_id[group[missing]]
        heads = first_chunk[order]
        self._tokenize_new(data, starts, lengths, heads)
        head_short = heads[lengths[heads] <= KEY_BYTES]
        self._insert(low[head_short], high[head_short], cid[head_short])
        for j in heads[lengths[heads] > KEY_BYTES].tolist():
            self._long[data[starts[j] : starts[j] + lengths[j]]] = int(cid[j])

    def _tokenize_new(self, data, starts, lengths, heads) -> None:
        """Append the tokens of the new chunks whose first members are ``heads`` (in id order)."""
        word_ids, words, keep_case = self._word_ids, self.words, self.keep_case
        counts: list[int] = []
        flat: list[int] = []
        for j, n in zip(starts[heads].tolist(), lengths[heads].tolist()):
            toks = tokens_of_chunk(data[j : j + n].decode("utf-8", "surrogatepass"), keep_case)
            counts.append(len(toks))
            for t in toks:
                w = word_ids.setdefault(t, len(words))
                if w == len(words):
                    words.append(t)
                flat.append(w)
        k, f = self._n_chunks, self._n_flat
        self._start = _fit(self._start, k + len(counts))
        self._count = _fit(self._count, k + len(counts))
        self._flat = _fit(self._flat, f + len(flat))
        cnt = np.asarray(counts, np.int64)
        self._count[k : k + len(counts)] = cnt
        self._start[k : k + len(counts)] = f + np.concatenate([np.zeros(1, np.int64), np.cumsum(cnt)[:-1]])
        self._flat[f : f + len(flat)] = flat
        self._n_chunks += len(counts)
        self._n_flat += len(flat)

    # ---- the hash table ----------------------------------------------------------------
    def _slot(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        bits = len(self._table).bit_length() - 1
        return (_hash(low, high) >> np.uint64(64 - bits)).astype(np.int64)

    def _lookup(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Chunk id of each key, -1 where it is not in the table."""
        mask = len(self._table) - 1
        slot = self._slot(low, high)
        rows = np.take(self._table, slot, axis=0)  # (take: far faster than [] on rows)
        hit = (rows[:, 0] == low) & (rows[:, 1] == high)
        out = np.where(hit, rows[:, 2].view(np.int64), -1)
        on = ~hit & (rows[:, 2] != FREE)  # the slot holds another key: probe the next ones
        idx = np.flatnonzero(on)
        for _ in range(MAX_PROBES - 1):
            if not len(idx):
                break
            slot = (slot[on] + 1) & mask
            lo, hi = low[idx], high[idx]
            rows = np.take(self._table, slot, axis=0)
            hit = (rows[:, 0] == lo) & (rows[:, 1] == hi)
            out[idx[hit]] = rows[hit, 2].view(np.int64)
            on = ~hit & (rows[:, 2] != FREE)
            idx = idx[on]
        return out

    def _insert(self, low: np.ndarray, high: np.ndarray, chunk: np.ndarray) -> None:
        if 2 * (self._used + len(low)) > len(self._table):
            self._grow(self._used + len(low))
        self._place(low, high, chunk)

    def _place(self, low: np.ndarray, high: np.ndarray, chunk: np.ndarray) -> None:
        """Put distinct keys in the table by linear probing, all at once: each round, every
        key whose slot is free and first in line takes it; the others move one slot on."""
        mask = len(self._table) - 1
        idx = np.arange(len(low))
        slot = self._slot(low, high)
        while len(idx):
            free = np.take(self._table[:, 2], slot) == FREE
            cand, cslot = idx[free], slot[free]
            _, first = np.unique(cslot, return_index=True)
            win, wslot = cand[first], cslot[first]
            self._table[wslot, 0], self._table[wslot, 1] = low[win], high[win]
            self._table[wslot, 2] = chunk[win].astype(np.uint64)
            placed = np.zeros(len(low), bool)
            placed[win] = True
            stay = ~placed[idx]
            idx, slot = idx[stay], (slot[stay] + 1) & mask
        self._used += len(low)

    def _grow(self, need: int) -> None:
        size = len(self._table)
        while 2 * need > size:
            size *= 2
        old = self._table[self._table[:, 2] != FREE]
        self._table = _empty_table(size)
        self._used = 0
        self._place(old[:, 0].copy(), old[:, 1].copy(), old[:, 2].view(np.int64).copy())


FREE = np.uint64(2**64 - 1)  # the chunk id column of an empty slot


def _empty_table(slots: int) -> np.ndarray:
    table = np.zeros((slots, 3), np.uint64)
    table[:, 2] = FREE
    return table


def _fit(a: np.ndarray, n: int) -> np.ndarray:
    """``a``, or a copy at least twice as long, so that it holds ``n`` entries."""
    if n <= len(a):
        return a
    out = np.zeros(max(n, 2 * len(a)), a.dtype)
    out[: len(a)] = a
    return out


def _ascii_spaces(data: bytes) -> np.ndarray:
    """The bytes of ``data`` with every non-ASCII whitespace character replaced by its
    :data:`WIDE_SPACES` bytes."""
    b = np.frombuffer(data, np.uint8)
    if data.isascii():
        return b
    found = [(c.encode(), r) for c, r in WIDE_SPACES.items() if c.encode() in data]
    if not found:
        return b
    b = b.copy()
    for seq, rep in found:
        at = data.find(seq)
        while at >= 0:
            b[at : at + len(seq)] = np.frombuffer(rep, np.uint8)
            at = data.find(seq, at + len(seq))
    return b


def split_chunks(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, break_at) of the chunks of the bytes ``b`` (whitespace ASCII only):
    break_at holds the chunk positions j with a paragraph break (two or more line breaks in
    the whitespace) before chunk j, j = the number of chunks standing for after the last."""
    n = len(b)
    ws = b <= 32
    ctrl = np.flatnonzero(b < 32)  # mostly line breaks and tabs: the rest are no whitespace
    ws[ctrl[~_WS_BYTE[b[ctrl]]]] = False
    # chunks and gaps alternate: the edges are start, end, start, end, ...
    edges = np.flatnonzero(np.diff(ws.view(np.int8), prepend=np.int8(1), append=np.int8(1)))
    starts, ends = edges[0::2], edges[1::2]
    del ws, edges
    # only a gap of two bytes or more can hold two line breaks
    gap_lo, gap_hi = np.insert(ends, 0, 0), np.append(starts, n)
    wide = np.flatnonzero(gap_hi - gap_lo >= 2)
    if not len(wide):
        return starts, ends, wide
    lb = ctrl[_LB_BYTE[b[ctrl]]]
    lb = lb[~((b[lb] == 10) & (b[np.maximum(lb - 1, 0)] == 13) & (lb > 0))]  # "\r\n" once
    count = np.searchsorted(lb, gap_hi[wide]) - np.searchsorted(lb, gap_lo[wide])
    return starts, ends, wide[count >= 2]


def line_breaks_before(b: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each chunk of :func:`split_chunks`, whether a line break stands in the whitespace
    before it."""
    ctrl = np.flatnonzero(b < 32)
    lb = ctrl[_LB_BYTE[b[ctrl]]]
    gap_lo = np.concatenate([np.zeros(1, np.int64), ends[:-1]]) if len(ends) else ends
    return np.searchsorted(lb, starts) > np.searchsorted(lb, gap_lo)


def _keys(b: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): a chunk's first 8 bytes and next 7 as numbers, with its length (at most
    255) in the top byte of ``high``. Exact for chunks of at most :data:`KEY_BYTES` bytes; a
    longer chunk's key (length byte 16 or more) never equals a short one's."""
    pad = np.zeros(len(b) + 16, np.uint8)
    pad[: len(b)] = b
    words = np.ndarray((len(b) + 8,), "<u8", pad, 0, (1,))  # the 8 bytes from each offset
    clipped = np.minimum(lengths, KEY_BYTES)
    low = words[starts] & _LOW[clipped]
    high = (words[starts + 8] & _HIGH[clipped]) | (np.minimum(lengths, 255).astype(np.uint64) << np.uint64(56))
    return low, high


def _hash(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    h = (low * _HASH_MUL[0]) ^ (high * _HASH_MUL[1])
    h ^= h >> np.uint64(29)
    h *= _HASH_MUL[0]
    return h


def group_keys(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal (low, high) pairs: (index of each group's first member, each pair's group).

    The pairs are sorted by a hash in the upper bits with the index in the lower ones (one
    plain sort), and every member is then checked against its group's first: a group that
    holds two different keys (hashes that agree in their upper bits) sends the pairs to an
    exact grouping by a dictionary instead."""
    m = len(low)
    bits = max(1, int(m - 1).bit_length())
    mask = np.uint64((1 << bits) - 1)
    packed = np.sort((_hash(low, high) & ~mask) | np.arange(m, dtype=np.uint64))
    order = (packed & mask).astype(np.int64)
    top = packed >> np.uint64(bits)
    new = np.empty(m, bool)
    new[0] = True
    np.not_equal(top[1:], top[:-1], out=new[1:])
    first = order[new]  # within a group the indices ascend: its first member comes first
    inv = np.empty(m, np.int64)
    inv[order] = np.cumsum(new) - 1
    rep = first[inv]
    if not (np.array_equal(low[rep], low) and np.array_equal(high[rep], high)):
        return group_items(map(bytes, np.stack([low, high], axis=1)))
    return first, inv


def group_items(items) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct item's first occurrence, in order; each item's group), by a
    dictionary of the (hashable) items."""
    seen: dict = {}
    first: list[int] = []
    inv: list[int] = []
    for i, item in enumerate(items):
        g = seen.setdefault(item, len(first))
        if g == len(first):
            first.append(i)
        inv.append(g)
    return np.asarray(first, np.int64), np.asarray(inv, np.int64)


def chunk_ids(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``text``'s chunks as ``(distinct, raw, break_at)``: the distinct chunks in order of
    first appearance, each chunk's index into them, and the paragraph breaks as in
    :func:`split_chunks`. ``[distinct[i] for i in raw]`` is ``text.split()``."""
    data = text.encode("utf-8", "surrogatepass")
    b = _ascii_spaces(data)
    starts, ends, break_at = split_chunks(b)
    cid = Scanner().chunk_ids(data, b, starts, ends - starts)
    _, first = np.unique(cid, return_index=True)  # a fresh scanner numbers chunks as they come
    distinct = [data[starts[j] : ends[j]].decode("utf-8", "surrogatepass") for j in first.tolist()]
    return distinct, cid.astype(np.int32), break_at

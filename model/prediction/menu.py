"""The word menu and the grey continuation, as a plain object with no terminal behind it.

:class:`Menu` is the completer itself: the REPL's prompt_toolkit adapters (:mod:`repl.completer`),
``story-repl complete`` and the keystroke simulation (:mod:`model.evaluation.keystrokes`) all ask
it, so they see the same words in the same order. Its words come from a :class:`Source`.

Key costs: a typed character, an Alt-N pick (N <= 9), → (the whole continuation) and Alt-F (its
next word) cost 1 key each; entry ``r`` of a menu of ``M`` entries, selected with Tab or
Shift-Tab, costs ``min(r, M - r + 1)``.
"""
from __future__ import annotations

import bisect
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from model.lru import LRU
from model.text.tokenize import is_cjk
from model.text.writing import Edit, Writer

MENU_MIN = 10  # the menu shows at least this many words, even when :topk is smaller
DIRECT_PICKS = 9  # Alt-1 … Alt-9
GHOST_WORDS = 4
GHOST_MIN_PROB = 0.2

# prompt_toolkit's Alt-F ("fill partial suggestion") takes the first non-empty piece of this split.
_FILL_SPLIT = re.compile(r"([^\s/]+(?:\s+|/))")


def separator(word: str) -> str:
    """What follows ``word`` in the case-folded token stream: a space, or nothing after a Han or
    kana character (a Hangul word takes a space). What a pick inserts is :class:`Entry` ``text``."""
    return "" if is_cjk(word) else " "


def insertion(word: str) -> str:
    return word + separator(word)


def ends_word(text: str) -> bool:
    """Does ``text`` end a word, so the next one starts here: a space, or a Han or kana character
    or full-width punctuation (written with no space after)?"""
    last = text[-1:]
    wide_mark = not last.isalnum() and unicodedata.east_asian_width(last) in ("W", "F")
    return bool(last) and (last.isspace() or is_cjk(last) or wide_mark)


def pick_keys(rank: int, menu_len: int, direct: bool = True, backward: bool = True) -> int:
    """Keys to pick entry ``rank`` (1-based) of a menu of ``menu_len`` entries (see the module
    docstring); ``direct=False``: without Alt-1 … Alt-9, ``backward=False``: Tab presses only."""
    if direct and rank <= DIRECT_PICKS:
        return 1
    return min(rank, menu_len - rank + 1) if backward else rank


def ghost_fill(ghost: str) -> str:
    """The part of ``ghost`` that one Alt-F inserts (prompt_toolkit's partial-suggestion rule)."""
    return next((x for x in _FILL_SPLIT.split(ghost) if x), "")


@dataclass(frozen=True)
class Entry:
    """A word of the menu; picking it deletes ``delete`` characters before the cursor and
    inserts ``text`` (:func:`model.text.writing.write`)."""

    word: str
    prob: float
    keys: int
    text: str = ""
    delete: int = 0

    @property
    def shown(self) -> str:
        """The word as the menu shows it: as it will be written."""
        return self.text.strip() or self.word

    def as_dict(self) -> dict[str, Any]:
        return {"word": self.word, "prob": self.prob, "keys": self.keys, "text": self.text, "delete": self.delete}


class Source(Protocol):
    """Where a :class:`Menu` gets its words from."""

    def split(self, text: str) -> tuple[list[str], str]: ...

    def candidates(self, context: Sequence[str], prefix: str, m: int, text: str) -> list[tuple[str, float]]: ...


# ---- prefix index ---------------------------------------------------------------------------
class PrefixIndex:
    """The vocabulary sorted as strings, so the ids of the words with a prefix are one slice."""

    def __init__(self, tokens: Sequence[str], banned: Iterable[int] = ()):
        ban = set(int(i) for i in banned)
        self.size = len(tokens)
        order = sorted((i for i in range(self.size) if i not in ban), key=tokens.__getitem__)
        self.words = [tokens[i] for i in order]
        self.ids = np.asarray(order, dtype=np.int64)

    def ids_with_prefix(self, prefix: str) -> np.ndarray:
        lo = bisect.bisect_left(self.words, prefix)
        hi = bisect.bisect_left(self.words, prefix + "\U0010ffff", lo)
        return self.ids[lo:hi]


_INDEXES: LRU[tuple[int, int], tuple[Sequence[str], int | None, PrefixIndex]] = LRU(32)
_INDEX_LOCK = threading.Lock()
GROWN = 256  # words appended to a vocabulary (the user's new words) looked up without re-indexing


def prefix_index(vocab: Any) -> PrefixIndex:
    """The :class:`PrefixIndex` of ``vocab`` (``<unk>`` left out), built once per vocabulary and size."""
    tokens = vocab.tokens
    unk = getattr(vocab, "unk_id", None)
    key = (id(tokens), len(tokens))
    with _INDEX_LOCK:
        hit = _INDEXES.get(key)
    if hit is not None and hit[0] is tokens and hit[1] == unk:
        return hit[2]
    index = PrefixIndex(tokens, () if unk is None else (unk,))
    with _INDEX_LOCK:
        _INDEXES.put(key, (tokens, unk, index))
    return index


def top_ids(probs: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
    """The (at most) ``m`` ids of ``ids`` with the highest ``probs``, most likely first, ties by id."""
    if m <= 0 or len(ids) == 0:
        return ids[:0]
    p = probs[ids]
    if len(ids) > m:
        kth = np.partition(p, len(p) - m)[len(p) - m]  # the m-th largest probability
        keep = p >= kth
        ids, p = ids[keep], p[keep]
    return ids[np.lexsort((ids, -p))][:m]


class PredictorSource:
    """Next words from an object with :class:`model.prediction.predictor.Predictor`'s public interface.

    A vocabulary that grows (words the user wrote that the corpus never had) is re-indexed
    only after ``GROWN`` new words; until then the new ones are checked one by one."""

    def __init__(self, predictor: Any):
        self.predictor = predictor
        # An object that only offers ``top_k`` (a scripted stand-in) is asked through it.
        self.full = all(hasattr(predictor, a) for a in ("vocab", "distribution", "ranking"))
        self.index = prefix_index(predictor.vocab) if self.full else None

    def split(self, text: str) -> tuple[list[str], str]:
        context, prefix = self.predictor.split_prefix(text)
        return list(context), prefix

    def with_prefix(self, prefix: str) -> np.ndarray:
        tokens = self.predictor.vocab.tokens
        if len(tokens) != self.index.size and (len(tokens) - self.index.size > GROWN or len(tokens) < self.index.size):
            self.index = prefix_index(self.predictor.vocab)
        ids = self.index.ids_with_prefix(prefix)
        if len(tokens) > self.index.size:
            extra = [i for i in range(self.index.size, len(tokens)) if tokens[i].startswith(prefix)]
            if extra:
                ids = np.concatenate([ids, np.asarray(extra, dtype=np.int64)])
        return ids

    @property
    def casing(self):
        return getattr(self.predictor, "casing", None)

    def candidates(self, context: Sequence[str], prefix: str, m: int, text: str = "") -> list[tuple[str, float]]:
        pred = self.predictor
        ids, _ = pred.encode(context)
        if not self.full:
            return list(pred.top_k(ids, m, prefix))
        tokens = pred.vocab.tokens
        if not prefix:
            probs, order = pred.ranking(ids)
            chosen = order[:m]
        else:
            probs = pred.distribution(ids)
            found = self.with_prefix(prefix)
            chosen = top_ids(probs, found[found < len(probs)], m)
        return [(tokens[int(i)], float(probs[int(i)])) for i in chosen]


# ---- the menu ------------------------------------------------------------------------------
class Menu:
    """The word menu and the grey continuation for a buffer (see the module docstring).

    ``predictor`` (or ``source``) gives the words; ``size`` is the default number of entries;
    ``repeat`` shows passed-over words again; ``ghost_enabled`` turns the continuation on;
    ``direct`` says whether Alt-1 … Alt-9 picks exist (they do in the REPL) and ``backward``
    whether Shift-Tab counts, for the key costs.
    Thread-safe: one lock serialises every request.
    """

    def __init__(
        self,
        predictor: Any = None,
        *,
        source: Source | None = None,
        size: int = MENU_MIN,
        repeat: bool = False,
        ghost_enabled: bool = True,
        direct: bool = True,
        backward: bool = True,
        ghost_words: int = GHOST_WORDS,
        ghost_min_prob: float = GHOST_MIN_PROB,
    ):
        self.size = int(size)
        self.repeat = bool(repeat)
        self.ghost_enabled = bool(ghost_enabled)
        self.direct = bool(direct)
        self.backward = bool(backward)
        self.ghost_words = int(ghost_words)
        self.ghost_min_prob = float(ghost_min_prob)
        self._lock = threading.RLock()
        self._owner: Any = None
        self._source: Source | None = None
        self._key: tuple[str, ...] | None = None
        self._shown: dict[str, frozenset[str]] = {}
        self.context: Callable[[], Sequence[str]] | None = None  # tokens read before every buffer (a story so far)
        self.text_before: Callable[[], str] | None = None  # that story's text, read only to write the words (sentence starts)
        if source is not None:
            self.use_source(source)
        elif predictor is not None:
            self.use(predictor)

    # ---- what the words come from ------------------------------------------------------------
    def use(self, predictor: Any) -> None:
        """Take words from ``predictor`` (no-op if it is already in use; a new one resets the memory)."""
        with self._lock:
            if predictor is self._owner and self._source is not None:
                return
            self._owner = predictor
            self._source = None if predictor is None else PredictorSource(predictor)
            self.forget()

    def use_source(self, source: Source) -> None:
        with self._lock:
            self._owner = source
            self._source = source
            self.forget()

    @property
    def ready(self) -> bool:
        return self._source is not None

    def forget(self) -> None:
        """Forget which words were passed over."""
        with self._lock:
            self._key = None
            self._shown = {}

    # ---- requests -------------------------------------------------------------------------
    def _split(self, src: Source, text: str) -> tuple[list[str], str]:
        """``src``'s split of ``text``, after the tokens ``context()`` gives before it."""
        context, prefix = src.split(text)
        before = self.context() if self.context is not None else ()
        return (list(before) + list(context) if before else context), prefix

    def _text_before(self) -> str:
        """The text :attr:`text_before` gives ('' without one)."""
        return self.text_before() if self.text_before is not None else ""

    def offers_first_word(self) -> bool:
        """Whether the empty buffer gets the menu and the continuation for its first word: a
        story (``context``) stands before it. With none, the empty prompt shows neither."""
        return self.context is not None and bool(self.context())

    def split(self, text: str) -> tuple[list[str], str]:
        """(tokens before the word being typed, the partial word) of ``text``."""
        if self._source is None:
            return [], ""
        return self._source.split(text)

    def lookup(self, text: str, n: int | None = None, before: str = "") -> tuple[str, list[Entry]]:
        """(the partial word, the menu's entries) for the buffer ``text``; ``before``: text
        standing before the buffer, read only to write the words (sentence starts, quotes)."""
        n = self.size if n is None else int(n)
        before = before or self._text_before()
        with self._lock:
            src = self._source
            if src is None or n <= 0:
                return "", []
            context, prefix = self._split(src, text)
            key = tuple(context)
            if key != self._key:
                self._key, self._shown = key, {}
            passed: set[str] = set()
            if not self.repeat:
                for q, words in self._shown.items():
                    if len(q) < len(prefix) and prefix.startswith(q):
                        passed |= words
            ranked = src.candidates(context, prefix, n + len(passed), text)
            if passed:
                ranked = [c for c in ranked if c[0] not in passed] + [c for c in ranked if c[0] in passed]
            ranked = ranked[:n]
            self._shown[prefix] = frozenset(w for w, _ in ranked)
            m = len(ranked)
            writer = Writer(before + text, prefix, self.casing(), floor=len(before))
            out = []
            for r, (w, p) in enumerate(ranked, start=1):
                edit = writer.edit(w)
                out.append(Entry(w, p, pick_keys(r, m, self.direct, self.backward), edit.text, edit.delete))
            return prefix, out

    def entries(self, text: str, n: int | None = None) -> list[Entry]:
        """The first ``n`` (default ``size``) menu entries for the buffer ``text``."""
        return self.lookup(text, n)[1]

    def casing(self):
        """How the source's words are written (:class:`model.text.casing.Casing`), or None."""
        return getattr(self._source, "casing", None)

    def ghost(self, text: str) -> str:
        """The grey continuation after ``text``: in a word, the rest of the most likely word that
        starts so (``had a gen`` → ``eral``); after a word (a space or a CJK character), the next words."""
        return self.ghost_edit(text).text

    def ghost_edit(self, text: str, before: str = "") -> Edit:
        """The grey continuation as an edit: accepting it may first delete a space before the
        cursor (``acknowledged `` + ``, that``); ``before`` as in :meth:`lookup`. The empty
        buffer gets one only after a story (:meth:`offers_first_word`)."""
        before = before or self._text_before()
        with self._lock:
            src = self._source
            first = text == "" and self.offers_first_word()
            if src is None or not self.ghost_enabled or self.ghost_words <= 0 or not (text.strip() or first):
                return Edit(0, "")
            context, prefix = self._split(src, text)
            if prefix:
                return Edit(0, self._word_rest(context, prefix, text))
            if not (first or ends_word(text)):
                return Edit(0, "")
            context = list(context)
            writer = Writer(before + text, "", self.casing(), floor=len(before))
            for _ in range(self.ghost_words):
                best = src.candidates(context, "", 1, writer.before[len(before) :])
                if not best or best[0][1] < self.ghost_min_prob:
                    break
                word = best[0][0]
                writer = writer.then(writer.edit(word), word)
                context.append(word)
            return writer.since(before + text)

    def _word_rest(self, context: list[str], prefix: str, text: str) -> str:
        """The rest of the most likely word starting with ``prefix``, the partial word ending ``text``."""
        if not text.lower().endswith(prefix.lower()):
            return ""  # the tokenizer changed what was typed: nothing safe to add
        best = self._source.candidates(context, prefix, 1, text)
        word = best[0][0] if best else ""
        if not word.startswith(prefix):
            return ""
        writer = Writer(text, prefix, self.casing())  # the rest as a pick would write it
        return writer.form(word)[len(writer.raw) :]

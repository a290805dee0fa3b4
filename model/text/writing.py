"""What inserting a word writes: the one rule for picks, Tab, the grey continuation, Alt-F and
generated text joined to the user's line.

:func:`write` takes the text before the cursor and a word of the vocabulary and returns an
:class:`Edit`: the characters to delete before the cursor and the text to insert. The word is
spaced as :func:`model.text.tokenize.detokenize` joins tokens (no space before closing
punctuation, none after an opening quote or bracket, none around CJK characters and full-width
punctuation; quotes paired over the text before), written in the form a :class:`Casing` gives
(capitalised at a sentence start, in capitals after capitals), and what the user typed of it is
kept as typed.
"""
from __future__ import annotations

import functools
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

from model.text.casing import OPENING_QUOTES, SENTENCE_END, TRANSPARENT, Casing, capitalised, fold, is_abbreviation
from model.text.tokenize import _LEADING_ELISIONS, _PRONOUNS, _SPEECH_VERBS, LINE, PUNCT_CLOSE, gaps, is_cjk, open_quotes, tokenize

#: Characters before the cursor read to space a word (quotes pair over them) and to find a sentence start.
CONTEXT = 2000
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_SPLIT = re.compile(f"[{_LINE_BREAKS}]")
_BLANK_END = re.compile(r"\n[^\S\n]*\n\s*\Z")
_SPACES = " \t"
#: Marks written with no space before them: typed right after an inserted space, they take its place.
ATTACHING = frozenset(c for c in PUNCT_CLOSE if c.isascii() or c in "\u201d\u00bb\u203a\u2026")
_PROBE_WORD, _PROBE_CJK = "x", "\u4e00"  # stand-ins for whatever follows the word
_QUOTES = frozenset("'\"\u2018\u2019_")  # tokens spaced by pairing over the whole text
_NEAR = 4
_TAIL = 32  # tokens spaced again after the quotations open before them
_RESPACE_TOKENS = 8  # a quote this many tokens back may be spaced again
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")  # a blank line (the whitespace after it included)
#: Marks whose spacing the next token decides: a pick after one spaces it again (``proud -`` + ``minded``).
RESPACED = frozenset("'\"\u2018\u2019-\u2014_")
#: Quotes and dashes: typed right after an inserted space, written as their pick would be when that takes the space.
TAKING = RESPACED - ATTACHING


@dataclass(frozen=True)
class Edit:
    """Delete ``delete`` characters before the cursor, then insert ``text``."""

    delete: int
    text: str

    def apply(self, before: str) -> str:
        return before[: len(before) - self.delete] + self.text


def typed_part(before: str, prefix: str) -> str:
    """The characters at the end of ``before`` that were typed of the word whose folded
    beginning is ``prefix`` (as typed, in the user's case)."""
    if not prefix:
        return ""
    tail = before[-len(prefix) :]
    if fold(tail) == prefix:
        return tail
    for k in range(1, min(len(before), len(prefix) + 4) + 1):
        if fold(before[-k:]) == prefix:
            return before[-k:]
    return tail if len(before) >= len(prefix) else ""


class Writer:
    """:func:`write` for one text before the cursor and many words (a menu's entries): the
    text is read once."""

    def __init__(self, before: str, prefix: str = "", casing: Casing | None = None, read: tuple[list[str], bool] | None = None,
                 floor: int = 0):
        """``floor``: the characters of ``before`` no edit may change (text read before the buffer)."""
        self.before, self.casing, self.floor = before, casing, floor
        self.raw = typed_part(before, prefix)
        self.prefix = prefix if self.raw else ""
        self.core = core = before[: len(before) - len(self.raw)]
        # the tokens before the word, and whether they start the text or a paragraph (so no
        # quotation is open before them)
        self.left, self.whole = read if read is not None else _read(core)
        self._open: tuple[int, dict[str, bool]] | None = None  # (k, quotations open after left[:k])
        kept = core.rstrip(_SPACES)
        self.trailing = len(core) - len(kept)
        self.line_start = not kept or kept[-1] in _LINE_BREAKS

    def edit(self, word: str) -> Edit:
        """The edit that inserts ``word`` (see :func:`write`). A quote, apostrophe or dash just
        before is spaced again once the word after it is known (``hang ' em`` → ``hang 'em``),
        whether or not part of the word was typed."""
        form, spaced = self._place(word)
        before_it, after_it = spaced[-2], spaced[-1]
        tail = form + (" " if after_it else "")
        if not self.left or self.line_start:
            return Edit(len(self.raw), tail)
        redo = self._respace(spaced)
        if redo is not None and self.raw:  # typed: only a space before the mark goes (proud -m → proud-minded)
            old, new = self.core[len(self.core) - redo[0] :], redo[1] + (" " if before_it else "")
            redo = redo if len(new) < len(old) and old.replace(" ", "") == new.replace(" ", "") else None
        if redo is not None:
            return Edit(redo[0] + len(self.raw), redo[1] + (" " if before_it else "") + tail)
        if self.raw:
            return Edit(len(self.raw), tail)
        if before_it and not self.trailing:
            return Edit(0, " " + tail)
        if not before_it and len(self.core) - self.trailing >= self.floor:
            return Edit(self.trailing, tail)
        return Edit(0, tail)

    def _spacing(self, form: str, probe: str) -> list[bool | None]:
        """:func:`gaps` of the tokens before with ``form`` and ``probe``: of the last few when
        no quote is near (the spacing of the last tokens depends on no more), else of the last
        :data:`_TAIL` after the quotations open before them (None for those not computed)."""
        left = self.left
        if form not in _QUOTES and not any(t in _QUOTES for t in left[-_RESPACE_TOKENS:]):
            near = left[-_NEAR:]
            return [None] * (len(left) - len(near)) + gaps(near + [form, probe], self.whole)
        k = max(0, len(left) - _TAIL)
        while k > 0 and left[k - 1] in _QUOTES:
            k -= 1  # a quote's reading depends on the token after it
        if k == 0:
            return list(gaps(left + [form, probe], self.whole))
        if self._open is None or self._open[0] != k:
            self._open = (k, open_quotes(left[:k], self.whole))
        return [None] * k + gaps(left[k:] + [form, probe], inside=self._open[1])

    def _respace(self, spaced: list[bool | None]) -> tuple[int, str] | None:
        """(characters to delete, text to write again) when a quote or dash among the last
        tokens should be spaced otherwise now that a word follows it; None when all stand as
        they should. ``spaced``: :func:`gaps` of the tokens with the new word."""
        placed = _placed(self.core, self.left[-_RESPACE_TOKENS:])
        first = len(self.left) - len(placed)
        for j, (start, had) in enumerate(placed):
            i = first + j
            if self.left[i] in RESPACED and i > 0 and spaced[i] is not None and had != spaced[i]:
                bare = self.core[:start].rstrip(_SPACES)
                if len(bare) < self.floor:
                    continue
                text = "".join((" " if spaced[k] else "") + self.left[k] for k in range(i, len(self.left)))
                return len(self.core) - len(bare), text
        return None

    def _place(self, word: str) -> tuple[str, list[bool | None]]:
        """(``word`` as written here, the spacing of the tokens with it: see :meth:`_spacing`)."""
        usual = word if self.casing is None else self.casing.form(word)
        if self.raw:  # the spacing does not depend on case
            usual = self.raw + (usual[len(self.prefix) :] if len(usual) == len(word) else word[len(self.prefix) :])
        probe = _PROBE_CJK if is_cjk(usual) or _wide_mark(usual) else _PROBE_WORD
        spaced = self._spacing(usual, probe)
        if self.casing is None:
            return usual, spaced
        here = usual if not self.raw else self.casing.form(word)
        line = self.core[self._line_at() :]
        if _in_capitals(self.raw) or (_in_capitals(line) and self.raw == self.raw.upper()):
            here = here.upper()  # THE FOX AND THE …: a line in capitals goes on in capitals
        elif (self.casing.openers or self.casing.names) and _paragraph_start(self.core):
            here = self.casing.opener(word)
        elif self.casing.sentences:
            opened = bool(self.left) and self.left[-1] in OPENING_QUOTES and spaced[-2] is False and word not in _LEADING_ELISIONS
            if sentence_start(self.core, self.left, word, self.casing, opened, self.whole):
                here = capitalised(here)
        if not self.raw:
            return here, spaced
        if any(c.islower() for c in self.raw) or len(here) != len(word):
            return usual, spaced  # typed in lower case: the rest as the word is usually written
        return self.raw + here[len(self.prefix) :], spaced

    def _line_at(self) -> int:
        """Where the line of the text before starts."""
        return max(self.core.rfind(c) for c in _LINE_BREAKS) + 1

    def form(self, word: str) -> str:
        """``word`` as written here: its usual form, capitalised at a sentence start (no change
        without a casing), what was typed of it kept as typed."""
        return self._place(word)[0]

    def since(self, text: str) -> Edit:
        """The edit that turns ``text`` into the text this writer follows."""
        common = len(os.path.commonprefix([text, self.before]))
        return Edit(len(text) - common, self.before[common:])

    def then(self, edit: Edit, word: str) -> "Writer":
        """The writer for the text after ``edit`` inserted ``word`` (no typed part)."""
        text = edit.apply(self.before)
        return Writer(text, "", self.casing, None if self.raw else (self.left + [self.form(word)], self.whole), self.floor)


def write(before: str, word: str, prefix: str = "", casing: Casing | None = None) -> Edit:
    """How ``word`` is inserted after ``before``, whose end is the part of it typed (``prefix``,
    folded): see the module docstring. The inserted text ends with the space that follows the
    word where one would (a closing mark picked next takes it back)."""
    return Writer(before, prefix, casing).edit(word)


def taken_space(before: str, mark: str, casing: Casing | None = None, floor: int = 0) -> Edit | None:
    """The edit that writes ``mark`` (a quote or dash) typed after ``before``, which ends with a
    space the REPL inserted, as its pick would (:func:`write`): when that writes it with no
    space before it (``proud `` + ``-`` → ``proud-``, ``these? `` + ``'`` closing a quotation →
    ``these?' ``); None when the mark stays after the space (an opening quote: ``said '``)."""
    edit = Writer(before, "", casing, floor=floor).edit(mark)
    text = edit.apply(before).rstrip(_SPACES)
    if edit.delete == 0 or not text.endswith(mark) or text[: len(text) - len(mark)][-1:] in ("", *_SPACES):
        return None
    if mark in _SINGLE_QUOTES and not _closes_or_possessive(before[floor:]):
        return None  # `a 'friend'`: typed, a single quote after a word may open one
    return edit


_SINGLE_QUOTES = ("'", "\u2019")


def _closes_or_possessive(before: str) -> bool:
    """Whether a single quote typed after ``before`` closes the quotation open in it, or is the
    apostrophe of a plural (``ladies'``): the two readings that take the space before it."""
    tokens = tokenize(before, keep_case=True)
    if open_quotes(tokens).get("'"):
        return True
    return bool(tokens) and tokens[-1][-1:] in ("s", "S")


def write_all(before: str, words: Iterable[str], casing: Casing | None = None) -> Edit:
    """The words inserted one after another with :func:`write`, as one edit of ``before``."""
    writer = Writer(before, "", casing)
    for w in words:
        writer = writer.then(writer.edit(w), w)
    return writer.since(before)


def continuation(line: str, words: list[str], casing: Casing | None = None) -> tuple[str, str]:
    """(``line`` as kept, the generated ``words`` written after it): the second starts with the
    space that joins them, if any, and ends without one."""
    line = line.rstrip()
    edit = write_all(line, words, casing)
    return line[: len(line) - edit.delete], edit.text.rstrip(_SPACES)


def line_tail(line: str, tokens: int = 12, limit: int = 480) -> str:
    """The end of ``line`` that holds its last ``tokens`` tokens, as written (at most ``limit``
    characters)."""
    start, count = len(line), 0
    for m in reversed(list(re.finditer(r"\S+", line))):
        start = m.start()
        count += len(tokenize(m.group(), keep_case=True))
        if count >= tokens:
            break
    return line[start:][-limit:]


def sentence_start(core: str, left: list[str], word: str = "", casing: Casing | None = None, opened: bool = False,
                   whole: bool = True) -> bool:
    """Whether a word written after ``core`` (whose last tokens are ``left``) starts a sentence:
    at the start of the text or of a paragraph, after an end of sentence (through quotes and
    brackets, not after an abbreviation, nor after one the text goes on after in lower case),
    at the start of a line where the text capitalises lines (after a quote or bracket that
    opens it too: ``'Tis``), or after a quote that ``opened`` after a comma or colon where the
    text capitalises quotations. ``whole``: ``left`` starts the text or a paragraph."""
    text = core.rstrip(_SPACES)
    if _paragraph_start(text):
        return True
    if text[-1] in _LINE_BREAKS and casing is not None and casing.line_starts:
        return True
    if opened and len(left) > 1 and left[-2] in (",", ":"):
        return casing is not None and casing.quotations
    i = len(left) - 1
    while i >= 0 and (left[i] in TRANSPARENT or left[i] == LINE):
        if left[i] == LINE and casing is not None and casing.line_starts:
            return True
        i -= 1
    if i < 0:
        return whole
    if left[i] not in SENTENCE_END or (i > 0 and is_abbreviation(left[i - 1])):
        return False
    if casing is not None and left[i] in casing.continued:
        return False
    if i < len(left) - 1 and left[i] in "!?" and fold(word) in _SPEECH_VERBS | _PRONOUNS:
        return False  # "Stop!" he cried.
    return True


@functools.lru_cache(maxsize=64)
def _read_cached(window: str, cut: bool) -> tuple[tuple[str, ...], bool]:
    left: list[str] = []
    for line in _LINE_SPLIT.split(window):
        if left and left[-1] != LINE:
            left.append(LINE)
        left += tokenize(line, keep_case=True)
    if cut and left and not window[:1].isspace():
        left = left[1:]  # the window may cut its first token
    return tuple(left), not cut


def _placed(core: str, tokens: list[str]) -> list[tuple[int, bool]]:
    """Where the last of ``tokens`` stand at the end of ``core``, as (start, a space before
    it), for as many as are found in order on the same line after its first token."""
    out: list[tuple[int, bool]] = []
    end = len(core.rstrip(_SPACES))
    for tok in reversed(tokens):
        if not core.endswith(tok, 0, end):
            break
        start = end - len(tok)
        gap = core[:start].rstrip(_SPACES)
        if not gap or gap[-1] in _LINE_BREAKS:
            break  # a line's first token is spaced by nothing before it
        out.append((start, len(gap) < start))
        end = len(gap)
    return out[::-1]


def _read(core: str) -> tuple[list[str], bool]:
    """(the tokens of the last :data:`CONTEXT` characters of ``core``, from its last paragraph
    break on; whether they start the text or a paragraph)."""
    window = core[-CONTEXT:]
    cut = len(core) > CONTEXT
    ends = [m.end() for m in _PARAGRAPH.finditer(window)]
    if ends:
        window, cut = window[ends[-1] :], False
    left, whole = _read_cached(window, cut)
    return list(left), whole


def _paragraph_start(core: str) -> bool:
    """Whether a word written after ``core`` begins the text or a paragraph."""
    return not core.strip() or _BLANK_END.search(core) is not None


def _in_capitals(text: str) -> bool:
    """Whether ``text`` is written in capitals: two letters or more that have case, all upper."""
    cased = [c for c in text if c.lower() != c.upper()]
    return len(cased) >= 2 and all(c.isupper() for c in cased)


def _wide_mark(token: str) -> bool:
    c = token[:1]
    return bool(c) and not c.isalnum() and unicodedata.east_asian_width(c) in ("W", "F")

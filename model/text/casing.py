"""How a writer writes a word: its most frequent cased form in the training text.

The statistics are kept case-folded (``tokenize`` lower-cases), so a :class:`Casing` remembers,
for each folded word, the form the text writes it in where that differs (``darcy`` → ``Darcy``,
``i`` → ``I``), counted where the case says nothing else: away from sentence and line starts.
It also says whether the text capitalises its sentences and every line (verse), and after which
ends of sentence it goes on in lower case (``O, you are novices! 'tis a world``). A bundle keeps it
in ``casing.json``, a list aligned with ``words.json``; a file that fails a check is one line.
"""
from __future__ import annotations

import codecs
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from model.errors import StoryError

#: A large text's forms are counted on its first this many bytes.
SAMPLE_BYTES = 16 << 20
FORMAT_VERSION = 1
#: Tokens that end a sentence, and those that stand between it and the next word.
SENTENCE_END = frozenset(".!?…‼⁇⁈⁉。！？")
TRANSPARENT = frozenset("\"'‘’“”«»‹›()[]{}「」『』*_")
OPENING_QUOTES = frozenset("\"'‘“«")
#: Words written with a full stop that does not end the sentence (folded, without the stop).
ABBREVIATIONS = frozenset("mr mrs ms messrs dr st jr sr prof rev hon gen col capt lt sgt mt vs etc cf viz".split())
_LINE_SHARE = 0.5  # line starts inside a sentence capitalised at least this often: verse
_CONTINUED_MIN = 20  # words with a case after an end of sentence needed to say the text goes on in lower case


def fold(token: str) -> str:
    """The token as the case-folded statistics hold it (``tokenize``'s lower-casing)."""
    return unicodedata.normalize("NFC", token.lower())


def capitalised(word: str) -> str:
    """``word`` with its first letter (after a leading apostrophe) in title case."""
    i = 1 if word[:1] in "'\u2019" else 0
    return word[:i] + word[i : i + 1].title() + word[i + 1 :] if word[i : i + 1].isalpha() else word


def is_abbreviation(token: str) -> bool:
    """A token whose full stop does not end the sentence: ``Mr``, an initial ``J``."""
    return fold(token) in ABBREVIATIONS or (len(token) == 1 and token.isupper())


@dataclass
class Casing:
    """Folded word → the form a writer uses where it differs; ``sentences``: a sentence starts
    with a capital; ``line_starts``: so does every line of the text, inside a sentence too;
    ``quotations``: so does a quotation opened after a comma or colon (``said, "Go``);
    ``openers``: the form of a word that begins a paragraph, where that is not its form
    capitalised (a heading or a speaker's name in capitals: ``THE``, ``PETRUCHIO``);
    ``names``: a name (a word written with a capital) that begins a paragraph is in capitals;
    ``continued``: the ends of sentence (``!``, ``?``) after which the text goes on in lower case
    more often than not away from line starts (names left out: ``Petruchio! 'tis a match``)."""

    forms: dict[str, str] = field(default_factory=dict)
    line_starts: bool = False
    sentences: bool = True
    quotations: bool = False
    openers: dict[str, str] = field(default_factory=dict)
    names: bool = False
    continued: str = ""

    @property
    def plain(self) -> bool:
        """True when it changes nothing (a text written in lower case)."""
        return not (self.forms or self.line_starts or self.sentences or self.openers or self.names)

    def form(self, word: str) -> str:
        return self.forms.get(word, word)

    def opener(self, word: str) -> str:
        """How ``word`` is written when it begins a paragraph."""
        form = self.form(word)
        if word in self.openers:
            return self.openers[word]
        return form.upper() if self.names and form[:1].isupper() and len(form) > 1 else capitalised(form)

    def to_json(self, words: Sequence[str]) -> bytes:
        """``casing.json`` for the vocabulary ``words`` (lists aligned with ``words.json``)."""
        body = {"format_version": FORMAT_VERSION, "sentences": self.sentences, "line_starts": self.line_starts,
                "quotations": self.quotations, "names": self.names, "continued": self.continued,
                "forms": [self.forms.get(w) for w in words],
                "openers": [self.openers.get(w) for w in words]}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, words: Sequence[str], path: Path) -> "Casing":
        """The casing of a ``casing.json`` aligned with ``words``; one line naming it when it fails a check."""
        from model.storage.untrusted import has_control, parse_json, visible

        body = parse_json(data, path)
        where = visible(path)
        if not isinstance(body, dict) or body.get("format_version") != FORMAT_VERSION:
            raise StoryError(f"{where}: not a casing table of format {FORMAT_VERSION}; retrain the model")
        for name in ("sentences", "line_starts", "quotations", "names"):
            if not isinstance(body.get(name), bool):
                raise StoryError(f"{where}: field {name!r} must be true or false, got {visible(repr(body.get(name)))[:60]}; retrain the model")
        continued = body.get("continued", "")  # absent from the files written before it
        if not isinstance(continued, str) or len(continued) > len(SENTENCE_END) or any(c not in SENTENCE_END for c in continued):
            raise StoryError(f"{where}: field 'continued' must be ends of sentence, got {visible(repr(continued))[:60]}; retrain the model")
        tables = []
        for name in ("forms", "openers"):
            listed = body.get(name)
            if not isinstance(listed, list) or len(listed) != len(words):
                n = len(listed) if isinstance(listed, list) else type(listed).__name__
                raise StoryError(f"{where}: field {name!r} must list {len(words)} entries, one per word of words.json, got {n}; retrain the model")
            out: dict[str, str] = {}
            for i, (form, word) in enumerate(zip(listed, words)):
                if form is None:
                    continue
                if not isinstance(form, str) or has_control(form) or fold(form) != word:
                    raise StoryError(f"{where}: {name} entry {i} ({visible(repr(form))[:60]}) is not a way of writing {visible(word)!r}; retrain the model")
                if form != word:
                    out[word] = form
            tables.append(out)
        return cls(tables[0], body["line_starts"], body["sentences"], body["quotations"], tables[1], body["names"], continued)


# ---- counting the forms of a text ----------------------------------------------------------------
def casing_of_text(text: str, limit: int | None = None) -> Casing:
    """The :class:`Casing` of ``text`` (see the module docstring), of its first ``limit``
    tokens when given (the training part)."""
    from model.text.scanner import Scanner

    piece = Scanner(keep_case=True).scan(text.encode("utf-8", "surrogatepass"), lines=True)
    words, ids = piece.words, piece.ids.astype(np.int64)
    if limit is not None:
        ids = ids[:limit]
        piece.lines, piece.spaced, piece.breaks = (a[a < limit] for a in (piece.lines, piece.spaced, piece.breaks))
    if not len(ids):
        return Casing()
    ended = ended_by(words, ids)
    starts = sentence_starts(words, ids, ended)
    line = np.zeros(len(ids), bool)
    line[piece.lines] = True
    line[0] = False
    verse = _capitalised(words, ids, line & ~starts)
    spaced = np.zeros(len(ids) + 1, bool)
    spaced[piece.spaced] = True
    quoted = _after_opening_quote(words, ids, spaced) & ~starts
    informative = ~starts & ~quoted & ~line if verse else ~starts & ~quoted
    inside = np.bincount(ids[informative], minlength=len(words))
    anywhere = np.bincount(ids, minlength=len(words))
    forms = _choose(words, inside, anywhere)
    paragraphs = np.unique(np.concatenate([[0], piece.breaks]))
    first = ids[paragraphs[paragraphs < len(ids)]]
    openers = _openers(words, first, forms)
    names = [words[i] for i in first.tolist() if len(words[i]) > 1 and forms.get(fold(words[i]), "")[:1].isupper()]
    in_capitals = 2 * sum(w.isupper() for w in names) > len(names)
    para = np.zeros(len(ids), bool)
    para[paragraphs[paragraphs < len(ids)]] = True
    away = ~para & ~line if verse else ~para  # where only the end of sentence decides the case
    continued = "".join(m for m in sorted(SENTENCE_END) if _continues(words, ids, (ended == _mark_id(words, m)) & away, forms))
    return Casing(forms, verse, _capitalised(words, ids, starts, forms), _capitalised(words, ids, quoted, forms), openers, in_capitals,
                  continued)


def _mark_id(words: Sequence[str], mark: str) -> int:
    """The id of ``mark`` among ``words``; -2 (no token's :func:`ended_by`) when the text has none."""
    return next((i for i, w in enumerate(words) if w == mark), -2)


def _continues(words: Sequence[str], ids: np.ndarray, where: np.ndarray, forms: dict[str, str]) -> bool:
    """Whether the words at ``where`` that have a case, leaving out names, are mostly in lower
    case, with enough of them (:data:`_CONTINUED_MIN`) to say so."""
    cased = _cased(words, ids, where, forms)
    return len(cased) >= _CONTINUED_MIN and sum(w[0].isupper() for w in cased) < _LINE_SHARE * len(cased)


def _openers(words: Sequence[str], first: np.ndarray, forms: dict[str, str]) -> dict[str, str]:
    """The forms of paragraphs' first words that are not their usual form capitalised, where
    the word begins paragraphs so more often than not (twice at least)."""
    counts: dict[str, dict[str, int]] = {}
    for w in (words[i] for i in first.tolist()):
        by = counts.setdefault(fold(w), {})
        by[w] = by.get(w, 0) + 1
    out: dict[str, str] = {}
    for key, by in counts.items():
        form, n = max(by.items(), key=lambda kv: kv[1])  # ties: the first met
        if n >= 2 and 2 * n > sum(by.values()) and form != capitalised(forms.get(key, key)):
            out[key] = form
    return out


def _after_opening_quote(words: Sequence[str], ids: np.ndarray, spaced: np.ndarray) -> np.ndarray:
    """For each token, whether it follows a quote that opens (a space before it, none after)
    after a comma or a colon (``said, "Go``); ``spaced``: a space before each token."""
    from model.text.tokenize import _LEADING_ELISIONS

    quote = np.array([w in OPENING_QUOTES for w in words] + [False])
    lead = np.array([w in (",", ":") for w in words] + [False])
    elided = np.array([fold(w) in _LEADING_ELISIONS for w in words])  # 'tis: an apostrophe, no quotation
    prev = np.concatenate([[len(words)], ids[:-1]])
    prev2 = np.concatenate([[len(words)], prev[:-1]])
    opens = np.concatenate([[False], spaced[:-2]]) & ~spaced[:-1]
    return quote[prev] & lead[prev2] & opens & ~elided[ids]


def ended_by(words: Sequence[str], ids: np.ndarray) -> np.ndarray:
    """For each token, the id of the end of sentence right before it (with only quotes and
    brackets between) that follows no abbreviation; -1 where there is none."""
    ends = np.array([w in SENTENCE_END for w in words] + [False])
    clear = np.array([w in TRANSPARENT for w in words] + [False])
    abbrev = np.array([is_abbreviation(w) for w in words] + [False])
    prev = np.concatenate([[len(words)], ids[:-1]])  # the token before each (none: the sentinel)
    prev2 = np.concatenate([[len(words)], prev[:-1]])
    end_at = np.where(ends[prev] & ~abbrev[prev2], prev, -1)  # right after a true end of sentence
    # through quotes and brackets: the last position that is not one carries its state
    n = len(ids)
    solid = ~clear[prev]
    last = np.maximum.accumulate(np.where(solid, np.arange(n), -1))
    return np.where(last >= 0, end_at[np.maximum(last, 0)], -1)


def sentence_starts(words: Sequence[str], ids: np.ndarray, ended: np.ndarray | None = None) -> np.ndarray:
    """For each token, whether it starts a sentence: first, or after an end of sentence (with
    only quotes and brackets between) that follows no abbreviation (``ended``: :func:`ended_by`)."""
    ended = ended_by(words, ids) if ended is None else ended
    prev = np.concatenate([[len(words)], ids[:-1]])
    clear = np.array([w in TRANSPARENT for w in words] + [False])
    seen = np.maximum.accumulate(~clear[prev])  # a position that is not a quote or bracket came before
    out = (ended >= 0) | ~seen
    out[0] = True
    return out


def _capitalised(words: Sequence[str], ids: np.ndarray, where: np.ndarray, forms: dict[str, str] | None = None) -> bool:
    """Whether the words at the positions ``where`` that have a case are mostly capitalised
    (leaving out those written with a capital anywhere, by ``forms``)."""
    cased = _cased(words, ids, where, forms)
    return bool(cased) and sum(w[0].isupper() for w in cased) >= _LINE_SHARE * len(cased)


def _cased(words: Sequence[str], ids: np.ndarray, where: np.ndarray, forms: dict[str, str] | None) -> list[str]:
    """The words at ``where`` that begin with a letter that has case, leaving out those written
    with a capital anywhere (by ``forms``)."""
    capital = {k for k, v in (forms or {}).items() if v[:1].isupper()}
    return [w for w in (words[i] for i in ids[where].tolist()) if w[:1].isalpha() and w[:1].lower() != w[:1].upper() and fold(w) not in capital]


def _choose(words: Sequence[str], inside: np.ndarray, anywhere: np.ndarray) -> dict[str, str]:
    """Per folded word, its most frequent form inside sentences (ties: the first met; a form in
    capitals only when there is no other, as in a heading); a word seen only at sentence starts
    keeps its folded form unless its case says more than that."""
    best: dict[str, tuple[int, int, int, int]] = {}  # folded -> (not in capitals, count inside, count anywhere, id)
    for i, w in enumerate(words):
        key = fold(w)
        c = (int(len(w) < 2 or not w.isupper()), int(inside[i]), int(anywhere[i]))
        had = best.get(key)
        if had is None or c > had[:3]:
            best[key] = (*c, i)
    out: dict[str, str] = {}
    for key, (_, n_inside, _, i) in best.items():
        form = words[i]
        if n_inside == 0 and form == capitalised(key):
            continue  # seen only where any word is capitalised
        if form != key:
            out[key] = form
    return out


def casing_of_file(path: Path, encoding: str = "utf-8", limit: int | None = None) -> Casing:
    """The :class:`Casing` of the text at ``path`` (its first :data:`SAMPLE_BYTES` when larger;
    its first ``limit`` tokens when given)."""
    from model.text.corpus import sniff_encoding

    encoding = sniff_encoding(path, encoding)
    with open(path, "rb") as f:
        raw = f.read(SAMPLE_BYTES + 1)
    whole = len(raw) <= SAMPLE_BYTES
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(raw[:SAMPLE_BYTES], final=whole)
    if not whole:
        cut = max(text.rfind(" "), text.rfind("\n"))
        text = text[: max(cut, 0)]
    return casing_of_text(text, limit)

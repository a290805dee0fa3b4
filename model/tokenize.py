"""Word-level tokenizer and detokenizer for the story REPL's language model.

``tokenize`` turns text in any script into a list of word tokens:

* text is cleaned (control and format characters dropped, lone surrogates
  removed), NFC-normalised and, unless ``keep_case`` is set, lower-cased;
* a word is a run of letters, digits and combining marks in any script
  (so Devanagari, Arabic with harakat or ``e`` + combining acute stay whole);
  apostrophe contractions (``don't``, ``o'er``, ``know’t``) stay whole;
* each Han ideograph, kana and Hangul syllable is a token of its own, so
  Chinese and Japanese need no segmentation dictionary;
* every other punctuation mark or symbol is a one-character token (``_``
  included), an emoji together with its variation selector, skin-tone
  modifier or ZWJ sequence is one token, a pair of regional indicators (a
  flag) is one token;
* whitespace of any kind only separates tokens.

``detokenize`` joins tokens back into readable text: single spaces between
words, no space before closing or after opening punctuation, no spaces
between CJK characters and full-width punctuation.  For every token list
``toks`` produced by ``tokenize`` it guarantees
``tokenize(detokenize(toks)) == toks``.

Pure Python, standard library only.
"""

from __future__ import annotations

import re
import unicodedata

from ._unicode_tables import CJK, DROPPED, MARKS

__all__ = [
    "PUNCT_CLOSE",
    "PUNCT_OPEN",
    "detokenize",
    "is_cjk",
    "tokenize",
]

#: Punctuation written with no space before it.
PUNCT_CLOSE: frozenset[str] = frozenset(
    ".,;:!?)]}%\u2030\u2031\u201d\u00bb\u203a\u2026\u203c\u2047\u2048\u2049"
    # full-width / CJK closing punctuation
    "\u3001\u3002\uff0c\uff0e\uff1a\uff1b\uff01\uff1f\uff09\uff3d\uff5d\uff60"
    "\u300d\u300f\u3009\u300b\u3011\u3015\u3017\u3019\u301b\u301e\u301f"
    "\ufe50\ufe51\ufe52\ufe54\ufe55\ufe56\ufe57\ufe5a\ufe5c\ufe5e\uff05\uff64\uff61\uff63"
)

#: Punctuation written with no space after it.
PUNCT_OPEN: frozenset[str] = frozenset(
    "([{\u201c\u2018\u201e\u201a\u00ab\u2039\u00bf\u00a1"
    # full-width / CJK opening punctuation
    "\uff08\uff3b\uff5b\uff5f\u300c\u300e\u3008\u300a\u3010\u3014\u3016\u3018\u301a\u301d"
    "\ufe59\ufe5b\ufe5d\uff62"
)

_APOSTROPHES = "'\u2019"

# A word: letters/digits (not underscore, not CJK) and combining marks.
_WORD = f"(?:[^\\W_{CJK}]+|[{MARKS}]+)+"
# Emoji bases and the characters that may follow one inside an emoji token.
_EMOJI = (
    "[\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a-\u23ff"
    "\u24c2\u25aa-\u27bf\u2934\u2935\u2b05-\u2bff\u3030\u303d\u3297\u3299"
    "\U0001F000-\U0001F1E5\U0001F200-\U0001FAFF]"
)
_EMOJI_MOD = "[\ufe0e\ufe0f\u20e3\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]"
_VARIATION = "[\ufe00-\ufe0f\u20e3\U000E0100-\U000E01EF]"


def _build_token_re() -> re.Pattern[str]:
    return re.compile(
        # one CJK character (with any combining marks / variation selectors)
        f"[{CJK}][{MARKS}]*"
        # a word, possibly with apostrophe contractions or ZWNJ/ZWJ inside
        f"|{_WORD}(?:(?:['\u2019]|[\u200c\u200d]+){_WORD})*"
        # a flag: pair of regional indicators
        "|[\U0001F1E6-\U0001F1FF]{1,2}"
        # an emoji with modifiers and ZWJ continuations
        f"|{_EMOJI}{_EMOJI_MOD}*(?:\u200d{_EMOJI}{_EMOJI_MOD}*)*"
        # an apostrophe (bare: a following mark would make it a contraction)
        "|['\u2019]"
        # any other visible character (punctuation, symbol, ...), with its
        # variation selector if any; stray ZWJ/ZWNJ and emoji tag characters
        # match nothing and are skipped like whitespace
        f"|[^\\s\u200c\u200d\U000E0020-\U000E007F]{_VARIATION}*"
    )


class _Patterns:
    """Regular expressions, compiled on first use to keep import fast."""

    def __init__(self) -> None:
        self.token = _build_token_re()
        self.drop = re.compile(f"[{DROPPED}]+")
        self.cjk = re.compile(f"[{CJK}][{MARKS}]*")
        self.word_start = re.compile(f"[^\\W_]|[{MARKS}]")
        self.wide_punct = re.compile("[\u3000-\u303f\ufe10-\ufe19\ufe30-\ufe6f\uff01-\uff65]")


_patterns: _Patterns | None = None


def _pat() -> _Patterns:
    global _patterns
    if _patterns is None:
        _patterns = _Patterns()
    return _patterns


# Words that usually follow an elided leading apostrophe ('tis, 'twas, 'em):
# detokenize attaches the apostrophe to them rather than to the word before.
_LEADING_ELISIONS = frozenset(
    "tis twas twere twill twould twixt tween em gainst fore scape neath "
    "mongst midst til cause s t".split()
)


def tokenize(text: str, keep_case: bool = False) -> list[str]:
    """Split ``text`` into word, CJK-character and punctuation tokens.

    Never raises for any ``str``; tokens are never empty and never contain
    whitespace.  Unless ``keep_case`` is true the tokens are lower-cased.
    """
    pat = _pat()
    text = pat.drop.sub("", text)
    text = unicodedata.normalize("NFC", text)
    if not keep_case:
        # lower() may produce decomposed sequences (e.g. "İ" -> "i̇")
        text = unicodedata.normalize("NFC", text.lower())
    return pat.token.findall(text)


def is_cjk(token: str) -> bool:
    """True if ``token`` is a single Han, kana or Hangul character.

    Combining marks / variation selectors attached to it are allowed.
    """
    return bool(token) and _pat().cjk.fullmatch(token) is not None


# Token kinds used by detokenize.
_C = 0  # CJK character
_D = 1  # word made of decimal digits
_W = 2  # other word
_A = 3  # apostrophe / single quote: ' ’
_Q = 4  # ASCII double quote "
_O = 5  # opening punctuation
_X = 6  # closing punctuation
_F = 7  # full-width (CJK) punctuation
_S = 8  # anything else: symbols, emoji, dashes, ...

_WORDISH = (_D, _W)


def _kind(tok: str, pat: _Patterns) -> int:
    c = tok[0]
    if pat.cjk.match(c):
        return _C
    if pat.word_start.match(c):
        return _D if tok.isdecimal() else _W
    if c in _APOSTROPHES:
        return _A
    if c == '"':
        return _Q
    if pat.wide_punct.match(c):
        return _F
    if c in PUNCT_OPEN:
        return _O
    if c in PUNCT_CLOSE:
        return _X
    return _S


def _must_space(tok: str) -> bool:
    """True if gluing ``tok`` to the previous token could change NFC.

    That is the case for a leading combining mark (it would attach to, or
    reorder with, the previous character) and for Hangul medial vowel /
    final consonant jamo (they compose with a preceding jamo or syllable).
    """
    c = tok[0]
    return (unicodedata.category(c)[0] == "M" or unicodedata.combining(c) != 0
            or "\u1161" <= c <= "\u1175" or "\u11a8" <= c <= "\u11c2")


def detokenize(tokens: list[str]) -> str:
    """Join ``tokens`` into readable text (inverse of :func:`tokenize`)."""
    pat = _pat()
    cache: dict[str, tuple[int, bool]] = {}
    info: list[tuple[int, bool]] = []
    for tok in tokens:
        if not tok:
            info.append((_S, False))
            continue
        v = cache.get(tok)
        if v is None:
            v = cache[tok] = (_kind(tok, pat), _must_space(tok))
        info.append(v)

    out: list[str] = []
    n = len(tokens)
    prev = -1  # effective kind of the previous token (-1: none)
    dq_open = False
    for i, tok in enumerate(tokens):
        if not tok:
            continue
        kind, must_space = info[i]
        # Resolve ambiguous quotes into opening/closing punctuation.
        if kind == _Q:
            kind = _X if dq_open else _O
            dq_open = not dq_open
        elif kind == _A:
            # after a word: elision / possessive / closing quote;
            # otherwise an opening quote ('tis, 'hello').
            kind = _X if prev in _WORDISH else _O
            if (kind == _X and i + 1 < n and info[i + 1][0] == _W
                    and tokens[i + 1].lower() in _LEADING_ELISIONS):
                kind = _O  # "o'er 'tis", not "o'er' tis"
        elif (tok == "-" and prev in _WORDISH and i + 1 < n
              and info[i + 1][0] in _WORDISH and not info[i + 1][1]):
            # hyphenated compound: well-known
            out.append(tok)
            prev = _O
            continue

        if prev == -1:
            space = False
        elif must_space:
            space = True
        elif kind in (_X, _F) or prev in (_O, _F):
            space = False
        elif prev == _C:
            space = kind == _W
        elif kind == _C:
            space = prev == _W
        elif (kind == _S and prev == _S and tok == tokens[i - 1]
              and len(tok) == 1 and tok.isascii()):
            space = False  # "--", "**"
        else:
            space = True
        if space:
            out.append(" ")
        out.append(tok)
        prev = kind
    return "".join(out)

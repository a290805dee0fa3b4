"""Word-level tokenizer and detokenizer for text in any script (pure Python, standard library only).

``tokenize`` cleans and NFC-normalises the text (lower-cased unless ``keep_case``) and splits it
into words of letters, digits and combining marks (apostrophe contractions stay whole; Hangul is
written with spaces between words, so it is split as Latin script is), one token per Han ideograph
or kana, and one per other punctuation mark or symbol (an emoji sequence or a flag is one). ``detokenize`` joins tokens back into readable text and guarantees
``tokenize(detokenize(toks)) == toks`` for every ``toks`` that ``tokenize`` produced.
"""

from __future__ import annotations

import re
import unicodedata

from ._unicode_tables import CJK, DROPPED, MARKS

__all__ = [
    "LINE",
    "PUNCT_CLOSE",
    "PUNCT_OPEN",
    "clean",
    "detokenize",
    "gaps",
    "is_cjk",
    "open_quotes",
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
    "mongst midst til cause s t larum larums longs longeth zounds sdeath sblood scaped scapes "
    "bout mong pothecary havior leven cerns".split()
)


def clean(text: str) -> str:
    """``text`` as the tokenizer reads it: control and format characters dropped, NFC."""
    return unicodedata.normalize("NFC", _pat().drop.sub("", text))


def tokenize(text: str, keep_case: bool = False) -> list[str]:
    """Split ``text`` into word, CJK-character and punctuation tokens.

    Never raises for any ``str``; tokens are never empty and never contain
    whitespace.  Unless ``keep_case`` is true the tokens are lower-cased.
    """
    pat = _pat()
    text = clean(text)
    if not keep_case:
        # lower() may produce decomposed sequences (e.g. "İ" -> "i̇")
        text = unicodedata.normalize("NFC", text.lower())
    return pat.token.findall(text)


def is_cjk(token: str) -> bool:
    """True if ``token`` is a single Han or kana character (Hangul words take spaces, as Latin ones do).

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
_L = 9  # LINE: a line break between tokens (never a token of tokenize)

#: Stands between the tokens of two lines given to :func:`gaps`: each line is spaced as a text
#: of its own, with quotes paired across them.
LINE = "\n"

_WORDISH = (_D, _W)

# Evidence for the role of an ambiguous quote, from the words around it: speech verbs and
# pronouns follow a closing quote ("...," said the fox; "...," he said) and introduce an
# opening one (replied, "..."); a quotation usually opens with one of _SPEECH_OPEN, and
# after a full stop any other word resumes the narrative ("... free." The lion agreed).
_SPEECH_VERBS = frozenset(
    "said says say cried cries replied replies answered answers asked asks quoth exclaimed "
    "continued added returned remarked shouted whispered snapped growled bleated roared "
    "thought".split()
)
_PRONOUNS = frozenset("he she they".split())
_SPEECH_OPEN = frozenset(
    "i you we my our your oh ah o what why how yes no well alas pray come good look nay ay "
    "hark farewell".split()
)
_SENTENCE_PUNCT = frozenset(",;:.!?")
# Verbs (other than _SPEECH_VERBS) that put a quotation right after them: cry 'fine'.
_QUOTING_VERBS = frozenset("cry called call word words is was shout sing sings sang write wrote".split())
# Short words that end in an elided letter before an apostrophe: o' the, i' the, th' one.
_TRAILING_ELISIONS = frozenset("o i th ha wi a ta ne gi".split())
# Weights of the evidence, in the units of the quote-pairing search (see _pair_quotes).
_STRONG = 3.0  # a quote at the start of the text, or before the end or closing punctuation
_FIRM = 2.0  # " after ! ? (closes) or : ; (opens); next to a quote of the same kind
_HINT = 1.0  # a word typical after a closing or at an opening quote
_LEAN = 0.2  # " after . (closes a little more often) or , (opens more often); ' after punctuation
_BREAK = 2.5  # cost of a quote that does not alternate (a closer with nothing open)
_START_OPEN = 0.5  # cost of assuming the text starts inside a quotation
_CLOSE_INSIDE = _START_OPEN - 0.1  # an apostrophe that closes an open quotation (say 'fine')
_KEEP_OPEN = 0.5  # cost of an apostrophe inside a quotation that could have closed it


def _kind(tok: str, pat: _Patterns) -> int:
    if tok == LINE:
        return _L
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


def _evidence(tokens: list[str], kinds: list[int], i: int) -> tuple[float, float]:
    """(opening, closing) evidence for the ambiguous quote ``tokens[i]`` from its neighbours."""
    tok = tokens[i]
    e_open = e_close = 0.0
    prev = tokens[i - 1] if i > 0 else ""
    pk = kinds[i - 1] if i > 0 and kinds[i - 1] != _L else -1
    nk = kinds[i + 1] if i + 1 < len(tokens) and kinds[i + 1] != _L else -1
    if pk == -1 or pk == _O:
        e_open += _STRONG  # a closing quote needs something before it to close
    if nk == -1 or nk == _X:
        e_close += _STRONG  # an opening quote needs something after it to open
    elif tokens[i + 1] in ("-", "\u2014", "\u2013"):
        e_close += _FIRM  # friends,'--this
    elif tokens[i + 1] == tok:
        e_close += _FIRM  # "..." "...": one closes, the next opens
    if prev == tok:
        e_open += _FIRM
    elif tok == "'" and prev in _SENTENCE_PUNCT:
        e_close += _LEAN  # single quotes: closing after punctuation is the commoner reading
    elif prev in ("!", "?"):
        e_close += _FIRM
    elif prev in (":", ";"):
        e_open += _FIRM
    elif prev == ".":
        e_close += _LEAN
    elif prev == ",":
        e_open += _LEAN
    if prev in (",", ":") and i > 1 and tokens[i - 2].lower() in _SPEECH_VERBS:
        e_open += _HINT  # replied, "he told me
    if nk in _WORDISH:
        nxt = tokens[i + 1].lower()
        if nxt in _SPEECH_OPEN:
            e_open += _HINT
        elif nxt in _SPEECH_VERBS or (nxt in _PRONOUNS and prev in (",", "!", "?")):
            e_close += _HINT
        elif prev in (".", "!", "?") and nxt not in _PRONOUNS:
            e_close += _HINT
    return e_open, e_close


# A quote's possible readings for _pair_quotes: (state before, state after, opens, score),
# where state 1 means "inside a quotation".
_Reading = tuple[int, int, bool, float]


def _ambiguous(e_open: float, e_close: float) -> list[_Reading]:
    return [(0, 1, True, e_open), (1, 0, False, e_close),
            (0, 0, False, e_close - _BREAK), (1, 1, True, e_open - _BREAK)]


def _closer_or_apostrophe() -> list[_Reading]:
    # after a word, before no word: closes what is open, else a possessive (dogs'.)
    return [(1, 0, False, _CLOSE_INSIDE), (0, 0, False, 0.0), (1, 1, False, -_KEEP_OPEN)]


def _between_words(prev: str) -> list[_Reading]:
    # word ' word: a possessive or elision (tullus' face, o' the), an opening quote after a
    # word (say 'fine), or a closing one before a word (his 'shall' against)
    if prev in _TRAILING_ELISIONS:
        keep = _STRONG
    elif prev in _SPEECH_VERBS or prev in _QUOTING_VERBS:
        keep = -_HINT  # says 'god send me
    elif prev.endswith(("s", "x", "z", "ce")):
        keep = _FIRM  # tullus' face, clarence' death
    else:
        keep = _LEAN / 2
    return [(0, 0, False, keep), (0, 1, True, 0.0), (1, 0, False, _CLOSE_INSIDE), (1, 1, False, keep - _KEEP_OPEN)]


def _pair_quotes(items: list[list[_Reading]], start_open: float = _START_OPEN, inside: bool | None = None) -> tuple[list[bool], bool]:
    """Which quotes open (True) and which close, pairing them across the text, and whether a
    quotation is open after them.

    A Viterbi search over "inside a quotation or not" picks the readings with the most
    evidence in total; a quote that does not alternate (a closer with nothing open) costs
    ``_BREAK`` and starting inside a quotation ``start_open`` (``inside``: the text is known
    to start inside one, or not). Ties go to the first reading listed and to the state outside
    a quotation.
    """
    neg = float("-inf")
    score = [0.0, -start_open] if inside is None else ([neg, 0.0] if inside else [0.0, neg])
    back: list[list[tuple[int, bool]]] = []
    for readings in items:
        new = [neg, neg]
        choice: list[tuple[int, bool]] = [(0, False), (0, False)]
        for before, after, opens, s in readings:
            total = score[before] + s
            if total > new[after]:
                new[after] = total
                choice[after] = (before, opens)
        back.append(choice)
        score = new
    state = last = 0 if score[0] >= score[1] else 1
    out = [False] * len(items)
    for j in range(len(items) - 1, -1, -1):
        state, out[j] = back[j][state]
    return out, bool(last)


def _quote_kinds(tokens: list[str], kinds: list[int], start_open: float = _START_OPEN,
                 inside: dict[str, bool] | None = None, after: dict[str, bool] | None = None) -> list[int]:
    """``kinds`` with every quote, apostrophe and ``_`` resolved to opening (_O) or closing (_X).
    ``inside``: which quotations (``"``, ``'``) are known to be open before the tokens;
    ``after`` is filled with those open after them.

    * ``"``: paired across the text by :func:`_pair_quotes`.
    * ``'``: an elision before 'tis, 'em, ... glues to the next word; after a word it glues to
      that word (o' the, dogs') unless it opens a quotation (say 'fine'); after punctuation,
      at the start or after a symbol it opens or closes. All are paired by
      :func:`_pair_quotes`.
    * ``’``: glues to the word or closing punctuation before it (way,’ said; dogs’), to the
      next word as an elision (’tis) or after a symbol when no ‘ is open; ``‘`` opens.
    * ``_`` (emphasis, as in ``_much_``): opens before a word, closes after one, alternately.
    """
    out = list(kinds)
    n = len(tokens)
    groups: dict[str, tuple[list[int], list[list[_Reading]]]] = {'"': ([], []), "'": ([], [])}
    curly_open = False
    underscore_open = False
    for i, tok in enumerate(tokens):
        k = kinds[i]
        pk = kinds[i - 1] if i > 0 and kinds[i - 1] != _L else -1
        nk = kinds[i + 1] if i + 1 < n and kinds[i + 1] != _L else -1
        if tok == "_":
            if underscore_open and pk in _WORDISH:
                out[i], underscore_open = _X, False
            elif not underscore_open and nk in _WORDISH:
                out[i], underscore_open = _O, True
            continue
        if k == _O and tok == "\u2018":
            curly_open = True
            continue
        if k not in (_Q, _A):
            continue
        elision = nk == _W and tokens[i + 1].lower() in _LEADING_ELISIONS
        if k == _Q:
            idx, items = groups['"']
            idx.append(i)
            items.append(_ambiguous(*_evidence(tokens, kinds, i)))
        elif tok[0] == "'":
            if elision:
                out[i] = _O  # "o'er 'tis", not "o'er' tis"
                continue
            idx, items = groups["'"]
            idx.append(i)
            if pk in _WORDISH:
                items.append(_between_words(tokens[i - 1].lower()) if nk in _WORDISH else _closer_or_apostrophe())
            else:
                items.append(_ambiguous(*_evidence(tokens, kinds, i)))
        else:  # ’
            if pk in _WORDISH or pk == _X or (pk in (_Q, _A) and out[i - 1] == _X):
                out[i] = _O if elision else _X
                if out[i] == _X and nk not in _WORDISH:
                    curly_open = False
            elif elision or pk == -1:
                out[i] = _O
            else:
                out[i] = _X if curly_open else _O
                curly_open = False
    for group, (idx, items) in groups.items():
        readings, last = _pair_quotes(items, start_open, None if inside is None else inside.get(group, False))
        for i, opens in zip(idx, readings):
            out[i] = _O if opens else _X
        if after is not None:
            after[group] = last
    return out


def _glued_repeat(tok: str) -> bool:
    """True for a one-character symbol written doubled without spaces (--, **, ──)."""
    if len(tok) != 1:
        return False
    if tok.isascii():
        return True
    cat = unicodedata.category(tok)
    return cat[0] == "P" or "\u2500" <= tok <= "\u257f"


def detokenize(tokens: list[str]) -> str:
    """Join ``tokens`` into readable text (inverse of :func:`tokenize`).

    Single spaces between words; no space before closing or after opening punctuation; none
    between CJK characters and full-width punctuation; a dash (``—``, or ``--`` written as
    two hyphens) and the hyphen of a compound glue to the words on both sides. Quotes pair up across
    the text (see :func:`_quote_kinds`), so ``he said, "I am here," and left`` and
    ``way,’ said`` come back as written, and elisions (’tis, o’er) stay as they are.
    """
    out: list[str] = []
    for tok, space in zip(tokens, gaps(tokens)):
        if space:
            out.append(" ")
        out.append(tok)
    return "".join(out)


_KINDS: dict[str, tuple[int, bool]] = {}  # token -> (kind, must space), for the frequent ones


def _info(tok: str, pat: _Patterns) -> tuple[int, bool]:
    v = _KINDS.get(tok)
    if v is None:
        v = (_kind(tok, pat), _must_space(tok)) if tok else (_S, False)
        if len(_KINDS) < 100_000:
            _KINDS[tok] = v
    return v


def open_quotes(tokens: list[str], whole: bool = False) -> dict[str, bool]:
    """Whether a ``"`` and a ``'`` quotation are open after ``tokens`` (paired as :func:`gaps` does)."""
    pat = _pat()
    after: dict[str, bool] = {}
    _quote_kinds([t if t else " " for t in tokens], [_info(t, pat)[0] for t in tokens], _BREAK if whole else _START_OPEN, None, after)
    return after


def gaps(tokens: list[str], whole: bool = False, inside: dict[str, bool] | None = None) -> list[bool]:
    """For each token, whether :func:`detokenize` writes a space before it; ``whole``: the
    tokens start the text, so it does not start inside a quotation; ``inside``: which
    quotations are open before them (:func:`open_quotes`). :data:`LINE` may stand between the
    tokens of two lines."""
    pat = _pat()
    info = [_info(tok, pat) for tok in tokens]
    kinds = _quote_kinds([t if t else " " for t in tokens], [k for k, _ in info], _BREAK if whole else _START_OPEN, inside)
    out = [False] * len(tokens)
    n = len(tokens)
    prev = -1  # effective kind of the previous token (-1: none)
    glue_next = False  # the previous token asks for no space after it
    for i, tok in enumerate(tokens):
        if not tok:
            continue
        if tok == LINE:
            prev, glue_next = -1, False
            continue
        kind = kinds[i]
        must_space = info[i][1]
        dash_run = tok == "\u2014" or (tok == "-" and ((i > 0 and tokens[i - 1] == "-") or (i + 1 < n and tokens[i + 1] == "-")))
        if tok == "-" and not dash_run and prev in _WORDISH:
            # a hyphen: well-known, or a word broken at the end of a line (pack-)
            compound = i + 1 < n and info[i + 1][0] in _WORDISH and not info[i + 1][1]
            prev = _O if compound else _X
            continue

        if prev == -1:
            space = False
        elif must_space:
            space = True
        elif glue_next or dash_run:
            space = False
        elif kind in (_X, _F) or prev in (_O, _F):
            space = False
        elif prev == _C:
            space = kind == _W
        elif kind == _C:
            space = prev == _W
        elif (kind == _S and prev == _S and tok == tokens[i - 1]
              and _glued_repeat(tok)):
            space = False  # "**", "──"
        else:
            space = True
        out[i] = space
        prev = kind
        glue_next = dash_run
    return out

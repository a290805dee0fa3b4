"""detokenize on real text: every line of every shipped corpus comes back as written.

For each non-blank line, ``detokenize(tokenize(line))`` must equal the line with its
whitespace collapsed to single spaces and lower-cased (tokenize lower-cases), except for the
lines listed in tests/data/detokenize_exceptions.tsv, each with the reason below. The list
is exact: a listed line that now round-trips fails the test too, so the share reported
stays true. Also: the quote and dash cases the detokenizer pairs up, and
``tokenize(detokenize(toks)) == toks`` on quote-heavy token lists.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.text.tokenize import detokenize, tokenize

from helpers import ROOT

CORPORA = ROOT / "corpora"
EXCEPTIONS = Path(__file__).with_name("data") / "detokenize_exceptions.tsv"
NAMES = ("belling_the_cat", "aesops_fables", "tinyshakespeare", "xiyouji_ch01-10")

#: Why a line cannot come back as written (the tokens do not hold what would decide it).
REASONS = {
    "pretokenized": "the file is already tokenized, with a space before every punctuation mark",
    "cjk-space": "a space between two runs of Chinese characters (chapter titles); tokens do not record it",
    "source-spacing": "the source spaces this unlike the rest of the text (no space before an elision "
    "after a comma, a space before a colon or a closing quote)",
    "symbol": "a symbol glued inside a word (&c, a misprinted $); tokens do not record the glue",
    "word-quote-word": "an apostrophe between two words that opens a quotation (say 'fine) or is an "
    "aphetic elision ('greed), read as a possessive or elision (tullus' face, o' the), or the reverse",
    "quote-pairing": "a quotation that opens or closes on another line, so the line's quotes pair the "
    "other way; the words around them point the wrong way too",
}


def normalized(line: str) -> str:
    return " ".join(line.split()).lower()


def corpus_lines(name: str) -> list[str]:
    text = (CORPORA / f"{name}.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def listed() -> dict[str, dict[str, str]]:
    """corpus -> {normalized line: reason}."""
    out: dict[str, dict[str, str]] = {n: {} for n in NAMES}
    for row in EXCEPTIONS.read_text(encoding="utf-8").splitlines():
        if not row.strip():
            continue
        name, reason, line = row.split("\t", 2)
        out[name][line] = reason
    return out


def failures(name: str) -> Counter[str]:
    bad: Counter[str] = Counter()
    for line in corpus_lines(name):
        want = normalized(line)
        if detokenize(tokenize(line)) != want:
            bad[want] += 1
    return bad


def test_every_exception_has_a_known_reason_and_exists():
    known = listed()
    for name, rows in known.items():
        lines = {normalized(line) for line in corpus_lines(name)}
        for line, reason in rows.items():
            assert reason in REASONS, (name, reason)
            assert line in lines, (name, line)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_lines_round_trip_except_the_listed_ones(name):
    known = listed()[name]
    bad = failures(name)
    unexpected = sorted(set(bad) - set(known))
    fixed = sorted(set(known) - set(bad))
    assert not unexpected, f"{len(unexpected)} lines no longer round-trip, e.g. {unexpected[:3]}"
    assert not fixed, f"{len(fixed)} listed lines now round-trip; remove them from the list: {fixed[:3]}"
    lines = corpus_lines(name)
    share = 1 - sum(bad.values()) / len(lines)
    floor = {"belling_the_cat": 0.0, "aesops_fables": 0.995, "tinyshakespeare": 0.997, "xiyouji_ch01-10": 0.995}
    assert share >= floor[name], share


# ---- the cases the quote logic is for ------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "a long way,\u2019 said the caterpillar.",
        "\u2018come here,\u2019 said he, \u2018and see.\u2019",
        "\u201cwell,\u201d said she, \u201ci never!\u201d",
        '"i am here," he said, "and you?"',
        'he said "hello" and left.',
        "'twas brillig,' he said, 'and the toves.'",
        "'true is it, my incorporate friends,' quoth he,",
        "\u2019tis the season; don\u2019t go o\u2019er there.",
        "the dogs\u2019 bones \u2019twas",
        "o'er the hills, 'tis said, and tullus' face",
        "if i say fine, cry 'fine;' if death, cry 'death.'",
        "it was\u2014she said\u2014\u2018nothing\u2019.",
        "the belly answer'd--",
        "as well as speak--it tauntingly replied",
        "she was _very_ cross",
        '"aha!" it cried, "you\'re very clever, madam."',
    ],
)
def test_quotes_dashes_and_elisions_come_back_as_written(text):
    assert detokenize(tokenize(text)) == text


def test_a_closing_quote_after_a_comma_closes_without_an_opener_in_the_text():
    # generated text often starts inside a quotation
    assert detokenize(["way", ",", "\u2019", "said", "the", "caterpillar", "."]) == "way,\u2019 said the caterpillar."
    assert detokenize(["sour", ".", '"']) == 'sour."'
    assert detokenize(["friends", ",", "'", "-", "-", "this"]) == "friends,'--this"


def test_quotes_are_tracked_across_the_text():
    toks = tokenize('"Go," said the fox. "I will stay," said the crow, "and you will go."')
    assert detokenize(toks) == '"go," said the fox. "i will stay," said the crow, "and you will go."'


# ---- tokenize(detokenize(toks)) == toks on quote-heavy text ----------------------------------
_ALPHABET = st.sampled_from(
    list("ab s") + ["'", "\u2019", "\u2018", '"', "\u201c", "\u201d", ",", ".", "!", "?", ";", ":", "-", "_",
                    "\u2014", "(", ")", "tis", "o", "em", "\u5b57", "\u3002", "\u300c", "\u300d", " "]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_ALPHABET, max_size=30))
def test_tokenize_detokenize_is_identity_on_quote_heavy_text(parts):
    toks = tokenize("".join(parts))
    assert tokenize(detokenize(toks)) == toks

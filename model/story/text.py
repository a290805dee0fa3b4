"""A story's text from its nodes' texts: the joining rule, and what counts as a word.

Each node stores its text exactly as it was shown, without the space that separates it from the
text before. Two nodes are joined with a space wherever the detokenizer would write one between
their boundary tokens, and with none where it would not (CJK characters, closing punctuation
after a word, opening punctuation before one), so every script joins as it is written.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from model.text.tokenize import detokenize, tokenize

CONTEXT = 200  # characters on each side of a boundary read to decide it (quotes pair across them)


def join_texts(texts: Iterable[str]) -> str:
    """The texts joined as one story: a space between two wherever :func:`spaced` says so."""
    parts = [t for t in texts if t]
    out: list[str] = []
    for text, space in zip(parts, spacing(parts)):
        if space:
            out.append(" ")
        out.append(text)
    return "".join(out)


def spacing(texts: Sequence[str]) -> list[bool]:
    """For each text, whether a space goes before it when the texts are joined in order."""
    out: list[bool] = []
    prev = ""
    for text in texts:
        out.append(bool(prev and text) and spaced(prev, text))
        if text:
            prev = text
    return out


def spaced(before: str, after: str) -> bool:
    """Whether ``after`` written right after ``before`` needs a space between them."""
    if not before or not after or before[-1].isspace() or after[0].isspace():
        return False
    a, b = before[-1], after[0]
    if a.isascii() and b.isascii() and a.isalnum() and b.isalnum():
        return True
    left = tokenize(before[-CONTEXT:], keep_case=True)
    right = tokenize(after[:CONTEXT], keep_case=True)
    if not left or not right:
        return False
    return _space_after(left + right, detokenize(left + right), len(left))


def _space_after(tokens: list[str], text: str, k: int) -> bool:
    """Whether ``text`` (``detokenize(tokens)``) has a space right after its ``k``-th token.

    detokenize writes every token as it is, each after one space or none, so the boundary is
    found by walking the tokens through the text."""
    pos = 0
    for i, tok in enumerate(tokens[:k]):
        if text.startswith(" ", pos) and i:
            pos += 1
        pos += len(tok)
    return text.startswith(" ", pos)


def word_count(tokens: Iterable[str]) -> int:
    """The tokens that are words (a letter or digit in any script, CJK characters included)."""
    return sum(1 for tok in tokens if any(ch.isalnum() for ch in tok))

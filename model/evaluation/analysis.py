"""What ``:score`` and ``:vocab`` show, computed: per-word scores of a text under ``eval``'s rule,
and a word's count and followers in a corpus. The REPL renders them (:mod:`repl.analysis`)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from model.errors import StoryError
from model.evaluation.evaluate import score_tokens


def score_text(pred, text: str) -> dict[str, Any]:
    """Per-token scores of ``text`` under the rule of :mod:`model.evaluation.evaluate` (from an empty cache).

    Returns ``{"tokens", "words": [{"word", "known", "scored", "prob", "bits", "rank",
    "note"}], "perplexity", "scored", "unknown"}``; ``rank`` is 1-based (``None`` when the
    word is not scored: the first word, and words the training text never had).
    """
    tokens = pred.tokenize(text)
    if not tokens:
        raise StoryError(":score needs some words; the text has none")
    scored = score_tokens(pred, tokens)
    at = {int(i): j for j, i in enumerate(scored["positions"])}
    words = []
    for idx, t in enumerate(tokens):
        ok = bool(scored["known"][idx])
        entry: dict[str, Any] = {"word": t, "known": ok, "scored": False, "prob": None, "bits": None, "rank": None, "note": ""}
        if idx == 0:
            entry["note"] = "first word: no context" + ("" if ok else "; not in the training text")
        elif not ok:
            entry["note"] = "not in the training text: not scored"
        else:
            j = at[idx]
            p = float(scored["p"][j])
            entry.update(scored=True, prob=p, bits=-math.log2(max(p, 1e-300)), rank=int(scored["rank"][j]) + 1)
        words.append(entry)
    p = scored["p"]
    n = int(len(p))
    return {
        "tokens": len(tokens),
        "words": words,
        "scored": n,
        "unknown": sum(1 for w in words if not w["known"]),
        "perplexity": math.exp(-float(np.log(np.maximum(p, 1e-300)).sum()) / n) if n else None,
    }


def corpus_word(corpus, tok: str) -> int | None:
    """``tok``'s id in the corpus's full vocabulary, or None."""
    try:
        return corpus.words.index(tok)
    except ValueError:
        return None


def corpus_count(corpus, tok: str) -> int:
    """How often ``tok`` occurs in the corpus (from its counts, no pass over the text)."""
    w = corpus_word(corpus, tok)
    return 0 if w is None else int(corpus.counts[w])


def followers(corpus, tok: str) -> Counter:
    """The tokens that follow ``tok`` in the corpus, with their counts (from the ids)."""
    w = corpus_word(corpus, tok)
    if w is None:
        return Counter()
    ids = np.asarray(corpus.ids)
    after = ids[np.flatnonzero(ids[:-1] == w) + 1]
    counts = np.bincount(after)
    return Counter({corpus.words[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()})

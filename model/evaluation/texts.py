"""The texts a model is measured on: its own training corpus (read again and checked against
the sha256 it recorded), that corpus's training and held-out parts, and other text files."""
from __future__ import annotations

from typing import Any

from model.errors import StoryError
from model.lru import LRU

CORPORA: LRU[tuple, Any] = LRU(2)  # (path, sha256, keep_case) -> Corpus


def training_corpus(bundle, encoding: str = "utf-8"):
    """The corpus the model was trained on (:meth:`Bundle.training_corpus`), kept for the next call."""
    info = dict(bundle.info.get("corpus") or {})
    key = (str(info.get("path") or ""), str(info.get("sha256") or ""), bool(bundle.config.keep_case))
    return CORPORA.get_or_make(key, lambda: bundle.training_corpus(encoding))


def split_tokens(bundle, corpus) -> tuple[list[str], list[str]]:
    """(training tokens, validation tokens) of ``corpus``, split as training split them."""
    from model.prediction.build import training_split

    return training_split(corpus, float(bundle.config.valid_fraction))


def validation_tokens(bundle, encoding: str = "utf-8") -> list[str]:
    """The held-out part of the model's corpus; a StoryError if the model has none."""
    vf = float(bundle.config.valid_fraction or 0.0)
    if vf <= 0:
        raise StoryError(
            "this model has no validation split (it was trained with valid-fraction 0); "
            "train with --valid-fraction F to hold out the last F of the text"
        )
    _, valid = split_tokens(bundle, training_corpus(bundle, encoding))
    if len(valid) < 2:
        raise StoryError("the model's validation part has fewer than two words; nothing to score")
    return valid


def training_tokens(bundle, encoding: str = "utf-8") -> list[str]:
    """The training part of the model's corpus, as training split it."""
    return list(split_tokens(bundle, training_corpus(bundle, encoding))[0])


def text_tokens(spec: str, bundle, encoding: str = "utf-8") -> list[str]:
    """Tokens of a text file (or a shipped corpus name), tokenized like the model's corpus."""
    from model.text.corpus import read_corpus

    return read_corpus(spec, encoding=encoding, keep_case=bool(bundle.config.keep_case)).tokens

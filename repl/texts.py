"""The texts a model is measured on: its own training corpus (read again and checked against
the sha256 it recorded), that corpus's training and held-out parts, and other text files."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from model.errors import StoryError

_CORPORA: "OrderedDict[tuple, Any]" = OrderedDict()
_BASELINES: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_SIZE = 2


def _remember(cache: OrderedDict, key: tuple, value: Any) -> Any:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def training_corpus(bundle, encoding: str = "utf-8"):
    """The corpus the model was trained on, read again and checked against its sha256."""
    from model.text.corpus import read_corpus

    info = dict(bundle.info.get("corpus") or {})
    path, sha = str(info.get("path") or ""), str(info.get("sha256") or "")
    if not path:
        raise StoryError("the model does not record which text it was trained on; the baseline and --valid need that text")
    keep_case = bool(bundle.config.keep_case)
    key = (path, sha, keep_case)
    hit = _CORPORA.get(key)
    if hit is not None:
        _CORPORA.move_to_end(key)
        return hit
    try:
        corpus = read_corpus(path, encoding=encoding, keep_case=keep_case)
    except StoryError as e:
        raise StoryError(f"cannot read the model's training text: {e}") from None
    if sha and corpus.sha256 != sha:
        raise StoryError(
            f"{corpus.path} has changed since the model was trained on it (sha256 differs); "
            "the baseline and --valid need the original text"
        )
    return _remember(_CORPORA, key, corpus)


def split_tokens(bundle, corpus) -> tuple[list[str], list[str]]:
    """(training tokens, validation tokens) of ``corpus``, split as training split them."""
    from model.prediction.mixture import training_split

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


def text_tokens(spec: str, bundle, encoding: str = "utf-8") -> list[str]:
    """Tokens of a text file (or a shipped corpus name), tokenized like the model's corpus."""
    from model.text.corpus import read_corpus

    return read_corpus(spec, encoding=encoding, keep_case=bool(bundle.config.keep_case)).tokens



"""Model and training configuration, stored in every bundle so a model can be rebuilt from it.

Fields left as ``None`` are chosen by :func:`resolve` from the size of the corpus: small
stories keep the seed tutorial's shape (a 3-word window, one 512-unit LSTM) and train on
the whole text per step; real books get a longer window, dropout and mini-batches.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from model.errors import StoryError

FORMAT_VERSION = 1
ARCHS = ("lstm", "stacked", "bilstm", "stream")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
OBJECTIVES = ("softmax", "sampled")

# A corpus with at most this many tokens is a "small story": seed-tutorial defaults.
SMALL_CORPUS_TOKENS = 5_000

# The stream arch's recipe for books (bench/stream.py; how it was chosen: bench/README.md, Stream):
# two 200-unit LSTM layers read the text as parallel streams with the state carried across
# truncated-BPTT steps.
STREAM_CONTEXT = 64  # words the predictor feeds: in practice the whole line typed so far
STREAM_BPTT = 35
STREAM_UNITS = 200
STREAM_STREAMS = 20  # parallel streams per batch
STREAM_DROPOUT = 0.4
STREAM_LR = 0.004  # Adam
STREAM_TIE = True
STREAM_EPOCHS = 40


@dataclass(frozen=True)
class Config:
    arch: str = "lstm"  # encoder: lstm | stacked | bilstm over a window; stream: 2 layers trained on the text as one stream
    context: int | None = None  # words of context; 3 for small stories (the seed's window)
    units: int | None = None  # LSTM units per direction and layer; 512 for small stories (the seed's)
    embedding_dim: int | None = None  # learned embedding size (the seed fed raw ids instead)
    dropout: float | None = None  # dropout on embedding and encoder output
    optimizer: str = "adam"  # adam reaches the seed's ceiling fastest; rmsprop is the seed's
    lr: float | None = None  # learning rate; chosen per optimizer and corpus size
    batch_size: int | None = None  # global batch; None = whole text for small stories
    epochs: int | None = None  # upper bound; training also stops at the accuracy ceiling
    seed: int = 42  # seeds vocabulary ties (none), weights, shuffling and sampling
    max_vocab: int | None = None  # keep the N most frequent words, the rest become <unk>
    min_count: int | None = None  # words seen fewer times become <unk>; 1 for small stories, 3 for books
    keep_case: bool = False  # do not lower-case scripts that have case
    valid_fraction: float = 0.0  # hold out the last fraction of paragraphs for validation
    objective: str | None = None  # softmax | sampled; None: softmax for small stories, sampled for books
    num_sampled: int = 512  # negative samples per batch for the sampled objective
    tie_weights: bool | None = None  # stream: the output layer is the embedding transposed (needs embedding_dim == units); other archs: ignored
    bptt: int | None = None  # stream: tokens per truncated back-propagation step; 35 when arch is stream

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> "Config":
        return replace(self, **changes)

    def key(self, corpus_sha256: str) -> str:
        """Cache key of this (resolved) configuration trained on a given corpus."""
        # Fields added after the first release count only when they differ from their
        # default, so models cached before they existed keep their keys.
        data = {k: v for k, v in self.to_dict().items() if not (k in _LATE_FIELDS and v in _LATE_FIELDS[k])}
        blob = json.dumps({"corpus": corpus_sha256, **data}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"{self.arch}/{self.context if self.context is not None else 'auto'}"


_LATE_FIELDS: dict[str, tuple[Any, ...]] = {"tie_weights": (None, False), "bptt": (None,)}


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StoryError(f"{name} expects an integer >= {minimum}, got {value!r}")


def validate(c: Config) -> None:
    if c.arch not in ARCHS:
        raise StoryError(f"unknown arch {c.arch!r}; choose one of {', '.join(ARCHS)}")
    if c.optimizer not in OPTIMIZERS:
        raise StoryError(f"unknown optimizer {c.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if c.objective is not None and c.objective not in OBJECTIVES:
        raise StoryError(f"unknown objective {c.objective!r}; choose one of {', '.join(OBJECTIVES)}")
    _positive_int("context", c.context)
    _positive_int("units", c.units)
    _positive_int("embedding-dim", c.embedding_dim)
    _positive_int("batch-size", c.batch_size)
    _positive_int("epochs", c.epochs)
    _positive_int("max-vocab", c.max_vocab, 2)
    _positive_int("min-count", c.min_count)
    _positive_int("num-sampled", c.num_sampled)
    _positive_int("bptt", c.bptt)
    if c.tie_weights and c.arch == "stream" and c.embedding_dim is not None and c.units is not None and c.embedding_dim != c.units:
        raise StoryError(
            f"tie-weights needs --embedding-dim equal to --units (got {c.embedding_dim} and {c.units}): "
            "the output layer is the embedding transposed"
        )
    if c.context is not None and c.context > 512:
        raise StoryError(f"context expects an integer between 1 and 512, got {c.context}")
    if c.lr is not None and not (0 < c.lr < 10):
        raise StoryError(f"lr expects a number between 0 and 10, got {c.lr!r}")
    if c.dropout is not None and not (0 <= c.dropout < 1):
        raise StoryError(f"dropout expects a number in [0, 1), got {c.dropout!r}")
    if not (0 <= c.valid_fraction < 1):
        raise StoryError(f"valid-fraction expects a number in [0, 1), got {c.valid_fraction!r}")


def resolve(c: Config, n_tokens: int) -> Config:
    """Fill every ``None`` field from the corpus size (number of tokens)."""
    small = n_tokens <= SMALL_CORPUS_TOKENS
    # Books: left-to-right encoders train every prefix of each sliding window, so one epoch
    # already predicts each word `context` times and validation loss bottoms out after a few
    # epochs, so capacity is spent on a wide, heavily regularised LSTM over a short window,
    # with sampled softmax to cut the output layer's cost (bench/quality.py).
    # The stream arch (see STREAM_*) trains the full softmax: sampled softmax gave it faster
    # steps but no better LSTM in the same time (bench/README.md, Stream).
    stream = c.arch == "stream"
    book_stream = stream and not small
    context = c.context if c.context is not None else (STREAM_CONTEXT if stream else (3 if small else 8))
    units = c.units if c.units is not None else (512 if small else (STREAM_UNITS if stream else 384))
    # tie_weights and bptt are stream fields: the windowed archs ignore them (a stream model's
    # config switched to another arch keeps working).
    tie = stream and (bool(c.tie_weights) if c.tie_weights is not None else (book_stream and STREAM_TIE))
    if c.embedding_dim is not None:
        embedding_dim = c.embedding_dim
    else:
        embedding_dim = units if tie else (64 if small else (STREAM_UNITS if stream else 256))
    dropout = c.dropout if c.dropout is not None else (0.0 if small else (STREAM_DROPOUT if stream else 0.6))
    batch = c.batch_size if c.batch_size is not None else (0 if small else (STREAM_STREAMS if stream else 256))
    if c.lr is not None:
        lr = c.lr
    elif book_stream and c.optimizer == "adam":
        lr = STREAM_LR
    else:
        lr = {"adam": 0.03 if small else 0.004, "rmsprop": 0.001, "sgd": 0.5 if small else 0.1}[c.optimizer]
    epochs = c.epochs if c.epochs is not None else (500 if small else (STREAM_EPOCHS if stream else 20))
    objective = c.objective if c.objective is not None else ("softmax" if small or stream else "sampled")
    bptt = (c.bptt if c.bptt is not None else STREAM_BPTT) if stream else None
    max_vocab = c.max_vocab
    if c.min_count is not None:
        min_count = c.min_count
    elif small or c.max_vocab is not None:
        min_count = 1
    else:
        min_count = 3  # words seen once or twice in a book become <unk>: too rare to learn
    return replace(
        c,
        context=context,
        units=units,
        objective=objective,
        embedding_dim=embedding_dim,
        dropout=dropout,
        batch_size=batch or None,
        lr=lr,
        epochs=epochs,
        max_vocab=max_vocab,
        min_count=min_count,
        tie_weights=tie,
        bptt=bptt,
    )

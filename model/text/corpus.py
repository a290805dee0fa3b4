"""Reading a corpus: finding the file, decoding it with one-line errors, its token ids and sha256.

A path is resolved from the working directory first, then among the corpora shipped with
story-repl (so ``belling_the_cat`` works from anywhere). The ids come from :mod:`model.text.ids`
(streamed, and memory-mapped from the id cache for a large file), so memory is bounded by the id
array; ``Corpus.tokens``, ``Corpus.paragraphs()`` and ``Corpus.text`` decode strings on demand.
"""
from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, overload

import numpy as np

from model.errors import StoryError

CHUNK = 1 << 22  # 4 MiB per read when streaming a large file


class TokenView(Sequence):
    """The corpus's tokens as a read-only sequence of strings, decoded from the ids on demand:
    ``len()`` is free, slices are lists, iteration decodes block by block."""

    def __init__(self, ids: np.ndarray, words: list[str]) -> None:
        self._ids = ids
        self._words = words

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i):
        words = self._words
        if isinstance(i, slice):
            return [words[j] for j in np.asarray(self._ids[i]).tolist()]
        return words[int(self._ids[i])]

    def __iter__(self) -> Iterator[str]:
        from model.text.id_arrays import iter_blocks

        words = self._words
        for block in iter_blocks(self._ids, block=1 << 16):
            for j in block.tolist():
                yield words[j]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TokenView):
            other = list(other)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        head = self[:8]
        return f"TokenView({head!r}{'…' if len(self) > 8 else ''}, {len(self):,} tokens)"


@dataclass(eq=False)
class Corpus:
    """A text as ids over its full vocabulary: ``words[ids[i]]`` is its i-th token.

    ``words`` are the distinct tokens by count (descending), ties by first appearance;
    ``counts`` their counts, ``first`` the rank of each word's first appearance, and
    ``paragraph_starts`` the token offsets where blank-line separated paragraphs start."""

    path: Path
    sha256: str
    ids: np.ndarray  # int32 (an np.memmap for cached large texts)
    words: list[str]
    counts: np.ndarray  # int64
    first: np.ndarray  # int64
    paragraph_starts: np.ndarray  # int64
    keep_case: bool = False
    encoding: str = "utf-8"
    notice: str = ""  # one line when a damaged id cache was rebuilt while reading, for the caller to show
    _tokens: TokenView | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def tokens(self) -> TokenView:
        """Every token as a string (decoded lazily from the ids)."""
        if self._tokens is None:
            self._tokens = TokenView(self.ids, self.words)
        return self._tokens

    @property
    def text(self) -> str:
        """The decoded text (read from the file again: meant for small texts)."""
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise StoryError(f"cannot read {self.path}: {e.strerror or e}; check that the file is there and readable") from None
        text = codecs.decode(raw, self.encoding)
        return text[1:] if text.startswith("\ufeff") else text

    def paragraphs(self) -> list[list[str]]:
        """Token lists of the blank-line separated paragraphs (those with tokens), in order."""
        bounds = np.append(self.paragraph_starts, self.n_tokens).tolist()
        return [self.tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def paragraph_sizes(self) -> np.ndarray:
        return np.diff(np.append(self.paragraph_starts, self.n_tokens))

    def split_point(self, valid_fraction: float) -> int:
        """Token offset where the held-out part starts: the last ``valid_fraction`` of the
        text by whole paragraphs where there are several (by tokens otherwise), exactly as
        :func:`model.training.data.split_paragraphs` cuts the token list."""
        n = self.n_tokens
        if valid_fraction <= 0:
            return n
        sizes = self.paragraph_sizes()
        if len(sizes) >= 2:
            target = valid_fraction * n
            # held-out tokens when the last k paragraphs are held out, k = 1 .. len - 1
            held = np.cumsum(sizes[::-1])[: len(sizes) - 1]
            reached = np.flatnonzero(held >= target)
            k = int(reached[0]) + 1 if len(reached) else len(sizes) - 1
            return int(self.paragraph_starts[len(sizes) - k])
        return max(1, int(round(n * (1 - valid_fraction))))

    def split(self, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(training ids, held-out ids): views of ``ids`` cut at :meth:`split_point`."""
        cut = self.split_point(valid_fraction)
        return self.ids[:cut], self.ids[cut:]


def shown(path: str | os.PathLike, limit: int = 200) -> str:
    """A path as written in an error message: whole, or its start and end if it is very long."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit - 60]}…{text[-59:]}"


def resolve_path(spec: str | os.PathLike) -> Path:
    """Find a corpus file: as given (with ``~`` expanded), else a shipped corpus by name."""
    raw = str(spec).strip()
    if not raw:
        raise StoryError("no corpus path given")
    path = Path(os.path.expanduser(raw))
    try:
        if path.exists():
            return path.resolve()
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        reason = getattr(e, "strerror", None) or str(e)
        raise StoryError(f"cannot use {shown(raw)} as a corpus path: {reason}; give the path of a text file") from None
    import corpora

    shipped = corpora.bundled(path.name if len(path.parts) <= 2 and path.parts[:1] == ("corpora",) else raw)
    if shipped is not None:
        return shipped
    raise StoryError(f"corpus not found: {shown(raw)} (shipped corpora: {', '.join(corpora.names())})")


def check_regular(path: Path) -> None:
    """Refuse a directory, device, pipe or socket: a corpus is read twice (checksum, then text)."""
    if path.is_dir():
        raise StoryError(f"{path} is a directory; give a text file")
    if not path.is_file():
        raise StoryError(f"{path} is not a regular file (a device, pipe or socket); give a text file")


# Byte-order marks that name their encoding (UTF-32 first: its little-endian mark starts like UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def sniff_encoding(path: Path, encoding: str = "utf-8") -> str:
    """The encoding to read ``path`` with: ``encoding``, unless that is UTF-8 (the default) and the
    file starts with a UTF-16 or UTF-32 byte-order mark, which names its own. A UTF-8 file (with
    or without its mark) keeps ``encoding``, so its cache keys stay the same. UTF-16 text with no
    mark is a one-line error naming the ``--encoding`` to pass."""
    from model.text.ids import codec_name

    if codec_name(encoding) != "utf-8":
        return encoding
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return encoding  # the reader says what is wrong
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    guess = _utf16_without_bom(head)
    if guess:
        other = "utf-16-be" if guess == "utf-16-le" else "utf-16-le"
        raise StoryError(f"{shown(path)} looks like UTF-16 text without a byte-order mark; pass --encoding {guess} (or {other})")
    return encoding


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le`` or ``utf-16-be`` when ``head`` has a NUL in most odd (or even) bytes and none
    in the others, as mostly-Latin UTF-16 text has; None otherwise."""
    even, odd = head[0::2], head[1::2]
    if len(odd) < 8:
        return None
    if odd.count(0) > 0.6 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) > 0.6 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def read_corpus(
    spec: str | os.PathLike,
    encoding: str = "utf-8",
    keep_case: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Corpus:
    """Read, decode and tokenize a corpus file to ids; every failure is one clear StoryError.

    ``progress(done_bytes, total_bytes)`` is called while a file larger than one chunk is
    tokenized (not when its ids come from the cache). A UTF-16 or UTF-32 file with a byte-order
    mark is read in its own encoding (see :func:`sniff_encoding`)."""
    from model.text.ids import stream_ids

    path = resolve_path(spec)
    check_regular(path)
    if not os.access(path, os.R_OK):
        raise StoryError(f"cannot read {path}: permission denied; check its permissions or copy it somewhere readable")
    encoding = sniff_encoding(path, encoding)
    s = stream_ids(path, encoding=encoding, keep_case=keep_case, progress=progress, chunk=CHUNK)
    return Corpus(
        path=path,
        sha256=s.sha256,
        ids=s.ids,
        words=s.words,
        counts=s.counts,
        first=s.first,
        paragraph_starts=s.paragraph_starts,
        keep_case=keep_case,
        encoding=encoding,
        notice=s.notice,
    )

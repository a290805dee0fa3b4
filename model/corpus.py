"""Reading a corpus: path resolution, decoding with clear errors, tokens and checksum.

A corpus path is resolved from the working directory first, then among the corpora shipped
with story-repl (so ``belling_the_cat`` works from anywhere). Large files are read in chunks
so a progress callback can report how far reading has got.
"""
from __future__ import annotations

import codecs
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from model.errors import StoryError
from model.tokenize import tokenize

CHUNK = 1 << 22  # 4 MiB per read when streaming a large file


@dataclass
class Corpus:
    path: Path
    text: str
    sha256: str
    keep_case: bool = False
    tokens: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = tokenize(self.text, keep_case=self.keep_case)

    @property
    def name(self) -> str:
        return self.path.stem

    def paragraphs(self) -> list[list[str]]:
        """Token lists of the blank-line separated paragraphs, in order."""
        out = []
        block: list[str] = []
        for line in self.text.splitlines():
            if line.strip():
                block.append(line)
            elif block:
                out.append(block)
                block = []
        if block:
            out.append(block)
        return [t for t in (tokenize("\n".join(b), keep_case=self.keep_case) for b in out) if t]


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


def read_corpus(
    spec: str | os.PathLike,
    encoding: str = "utf-8",
    keep_case: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Corpus:
    """Read, decode and tokenize a corpus file; every failure is one clear StoryError."""
    path = resolve_path(spec)
    check_regular(path)
    if not os.access(path, os.R_OK):
        raise StoryError(f"cannot read {path}: permission denied; check its permissions or copy it somewhere readable")
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    except LookupError:
        raise StoryError(f"unknown encoding {encoding!r}; try utf-8, latin-1, gb18030 or big5") from None
    size = path.stat().st_size
    digest = hashlib.sha256()
    parts: list[str] = []
    done = 0
    try:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(CHUNK)
                final = not chunk
                if chunk:
                    if b"\x00" in chunk and encoding.lower().replace("-", "") in ("utf8", "latin1", "ascii", "gb18030", "big5"):
                        raise StoryError(f"{path} looks like a binary file (it contains NUL bytes); give a text file")
                    digest.update(chunk)
                try:
                    parts.append(decoder.decode(chunk, final=final))
                except UnicodeDecodeError as e:
                    offset = done + e.start
                    bad = chunk[e.start : e.start + 1].hex() if chunk else "end of file"
                    raise StoryError(
                        f"{path} is not valid {encoding}: byte 0x{bad} at offset {offset} ({e.reason}); "
                        f"pass --encoding (e.g. latin-1, gb18030, big5)"
                    ) from None
                done += len(chunk)
                if progress is not None and size > CHUNK:
                    progress(done, size)
                if final:
                    break
    except OSError as e:
        raise StoryError(f"cannot read {path}: {e.strerror or e}; check that the file is there and readable") from None
    text = "".join(parts)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise StoryError(f"{path} is empty; give a text with some words")
    corpus = Corpus(path=path, text=text, sha256=digest.hexdigest(), keep_case=keep_case)
    if not corpus.tokens:
        raise StoryError(f"{path} has no words to learn from")
    return corpus

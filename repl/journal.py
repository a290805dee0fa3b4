"""What the user wrote, kept between sessions: the prompt's line history and the writing file.

The writing file of a corpus (``<home>/writing/<sha256 prefix>.txt``) holds every line typed
with it; its last tokens seed the predictor's cache when the corpus is used again, so a name
the user introduced is offered in the next session too. Neither file is essential: a file that
cannot be read or written leaves the session working from memory, and one notice says so.
Both are read as untrusted: regular files only (a named pipe would block), the tail only, and
lines that are not text are skipped.
"""
from __future__ import annotations

import datetime
import errno
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Callable, Iterable

from prompt_toolkit.history import FileHistory

from model.storage.untrusted import visible

Notify = Callable[[str], None]

HISTORY_BYTES = 4 << 20  # the tail of the history file that is read back
MAX_TOKEN_CHARS = 100  # a longer "word" in the writing file is garbage, not something typed


def _quiet(message: str) -> None:
    pass


def _reason(path: Path, e: OSError) -> str:
    """Why ``path`` cannot be used, in words."""
    if isinstance(e, IsADirectoryError) or e.errno == errno.EISDIR:
        return f"{visible(path)} is a directory"
    if e.errno == errno.ENOTDIR:
        return f"{visible(path.parent)} is not a directory"
    if e.errno == errno.EEXIST:
        return f"{visible(path)} is not a directory"
    if e.errno == errno.ENXIO:
        return f"{visible(path)} is not a regular file"
    return f"{visible(path)}: {(e.strerror or str(e)).lower()}"


def _open_regular(path: Path, flags: int) -> int:
    """A descriptor of the regular file ``path``; OSError for anything else (a pipe never blocks)."""
    fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o644)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.ENXIO, "not a regular file", str(path))
    except OSError:
        os.close(fd)
        raise
    return fd


def _read_tail(path: Path, limit: int) -> bytes:
    """The last ``limit`` bytes of the regular file ``path`` (FileNotFoundError if missing)."""
    fd = _open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - limit))
        return fh.read(limit)


def _append(path: Path, data: bytes) -> None:
    fd = _open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "ab") as fh:
        fh.write(data)


class SafeHistory(FileHistory):
    """The prompt's line history in ``<home>/history``; when that file cannot be read or written
    (a directory, a full or read-only disk) the history is kept in memory and ``notify`` says so once."""

    def __init__(self, path: Path, notify: Notify = _quiet) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.notify = notify
        self.failed = False

    def give_up(self, reason: str) -> None:
        """Keep the history in memory from now on, saying why (once)."""
        if not self.failed:
            self.failed = True
            self.notify(f"history is kept in memory only: {reason}")

    def load_history_strings(self) -> Iterable[str]:
        if self.failed:
            return []
        try:
            data = _read_tail(self.path, HISTORY_BYTES)
        except FileNotFoundError:
            return []
        except OSError as e:
            self.give_up(_reason(self.path, e))
            return []
        return parse_history(data, whole=len(data) < HISTORY_BYTES)

    def store_string(self, string: str) -> None:
        if self.failed:
            return
        lines = "".join(f"+{line}\n" for line in string.split("\n"))
        try:
            _append(self.path, f"\n# {datetime.datetime.now()}\n{lines}".encode("utf-8", "replace"))
        except OSError as e:
            self.give_up(_reason(self.path, e))


def parse_history(data: bytes, whole: bool = True) -> list[str]:
    """The entries of a history file, newest first (as prompt_toolkit's FileHistory reads them);
    without ``whole`` the first entry may be cut, so it is left out."""
    entries: list[str] = []
    lines: list[str] = []
    for raw in data.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        if line.startswith("+"):
            lines.append(line[1:])
        else:
            if lines:
                entries.append("\n".join(lines))
            lines = []
    if lines:
        entries.append("\n".join(lines))
    if not whole and entries:
        entries = entries[1:]
    return entries[::-1]


def prompt_history(notify: Notify = _quiet) -> SafeHistory:
    """The prompt's line history, in ``<home>/history`` (in memory when that cannot be used)."""
    from model.home import home

    history = SafeHistory(home() / "history", notify)
    try:
        home().mkdir(parents=True, exist_ok=True)
    except OSError as e:
        history.give_up(_reason(home(), e))
    return history


def writing_file(corpus_sha256: str) -> Path | None:
    from model.home import home

    if not re.fullmatch(r"[0-9a-f]{16,64}", corpus_sha256 or ""):
        return None  # no corpus, or a checksum that is not one (it would name a path elsewhere)
    return home() / "writing" / f"{corpus_sha256[:16]}.txt"


def _is_text(line: str) -> bool:
    return not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in line if ch != "\t")


def writing_tokens(data: bytes, tokenize: Callable[[str], list[str]], whole: bool = True) -> tuple[list[str], int]:
    """(tokens, lines skipped) of a writing file's bytes: a line that is not UTF-8 text, or holds a
    control character or a "word" longer than :data:`MAX_TOKEN_CHARS`, is no line the user typed.
    Without ``whole`` the first line may be cut, so it is left out quietly."""
    lines = data.split(b"\n")
    if not whole:
        lines = lines[1:]
    tokens: list[str] = []
    skipped = 0
    for raw in lines:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped += 1
            continue
        toks = tokenize(line) if line.strip() else []
        if not _is_text(line.rstrip("\r")) or any(len(t) > MAX_TOKEN_CHARS for t in toks):
            skipped += 1
            continue
        tokens.extend(toks)
    return tokens, skipped


def read_writing(corpus_sha256: str, tokenize: Callable[[str], list[str]], notify: Notify = _quiet) -> list[str]:
    """The last tokens written in earlier sessions with this corpus ([] if none); lines that are
    not text are skipped, and ``notify`` says so. OSError when the file is there but unusable."""
    from model.prediction.caches import CACHE_TOKENS

    f = writing_file(corpus_sha256)
    if f is None:
        return []
    limit = 64 * CACHE_TOKENS
    try:
        data = _read_tail(f, limit)
    except FileNotFoundError:
        return []
    tokens, skipped = writing_tokens(data, tokenize, whole=len(data) < limit)
    if skipped:
        notify(f"skipped {skipped} line{'s' if skipped != 1 else ''} of {visible(f)} that are not text; the rest is read back")
    return tokens[-CACHE_TOKENS:]


class Journal:
    """The tokens the user wrote with the corpus in use (earlier sessions' last ones, then this
    session's lines), which every new predictor's cache starts from. ``notify`` says once per
    session that the writing file could not be read, or could not be written."""

    def __init__(self, notify: Notify = _quiet) -> None:
        self.tokens: list[str] = []
        self.corpus_sha256 = ""
        self._loaded_for: str | None = None
        self.notify = notify
        self._said: set[str] = set()

    def _once(self, kind: str) -> Notify:
        def say(message: str) -> None:
            if kind not in self._said:
                self._said.add(kind)
                self.notify(message)

        return say

    def use(self, corpus_sha256: str, tokenize: Callable[[str], list[str]]) -> list[str]:
        """Switch to ``corpus_sha256`` (reading its file once) and return what was written with it."""
        self.corpus_sha256 = corpus_sha256
        if corpus_sha256 != self._loaded_for:
            self._loaded_for = corpus_sha256
            try:
                self.tokens = read_writing(corpus_sha256, tokenize, self._once("read"))
            except OSError as e:  # the same problem would stop every line from being saved: one notice
                self.tokens = []
                self._once("write")(f"what you write is used in this session but not saved for the next: {_reason(writing_file(corpus_sha256), e)}")
        return self.tokens

    def keep(self, line: str, tokens: list[str]) -> None:
        """Add a typed line: its tokens now, the line in the writing file for next time."""
        self.tokens.extend(tokens)
        f = writing_file(self.corpus_sha256)
        if f is None:
            return
        where = f.parent
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            where = f
            _append(f, (line.strip() + "\n").encode("utf-8", "replace"))
        except OSError as e:
            self._once("write")(f"what you write is used in this session but not saved for the next: {_reason(where, e)}")

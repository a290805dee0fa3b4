"""What the user wrote, kept between sessions: the prompt's line history and the writing file.

The writing file of a corpus (``<home>/writing/<sha256 prefix>.txt``) holds every line typed
with it; its last tokens seed the predictor's cache when the corpus is used again, so a name
the user introduced is offered in the next session too. Neither file is essential: a file that
cannot be read or written leaves the session working from memory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def prompt_history():
    """The prompt's line history, in ``<home>/history`` (in memory when that cannot be written)."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    from model.storage import store

    try:
        store.home().mkdir(parents=True, exist_ok=True)
        return FileHistory(str(store.home() / "history"))
    except OSError:
        return InMemoryHistory()


def writing_file(corpus_sha256: str) -> Path | None:
    from model.storage import store

    return store.home() / "writing" / f"{corpus_sha256[:16]}.txt" if corpus_sha256 else None


def read_writing(corpus_sha256: str, tokenize: Callable[[str], list[str]]) -> list[str]:
    """The last tokens written in earlier sessions with this corpus ([] if none)."""
    from model.prediction.components import CACHE_TOKENS

    f = writing_file(corpus_sha256)
    try:
        with open(f, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * CACHE_TOKENS))
            text = fh.read().decode("utf-8", errors="ignore")
    except (OSError, TypeError):
        return []
    return tokenize(text)[-CACHE_TOKENS:]


class Journal:
    """The tokens the user wrote with the corpus in use (earlier sessions' last ones, then this
    session's lines), which every new predictor's cache starts from."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.corpus_sha256 = ""
        self._loaded_for: str | None = None

    def use(self, corpus_sha256: str, tokenize: Callable[[str], list[str]]) -> list[str]:
        """Switch to ``corpus_sha256`` (reading its file once) and return what was written with it."""
        self.corpus_sha256 = corpus_sha256
        if corpus_sha256 != self._loaded_for:
            self.tokens = read_writing(corpus_sha256, tokenize)
            self._loaded_for = corpus_sha256
        return self.tokens

    def keep(self, line: str, tokens: list[str]) -> None:
        """Add a typed line: its tokens now, the line in the writing file for next time."""
        self.tokens.extend(tokens)
        f = writing_file(self.corpus_sha256)
        if f is None:
            return
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "a", encoding="utf-8") as fh:
                fh.write(line.strip() + "\n")
        except OSError:
            pass  # the cache still has it for this session

"""The stories database file: opening it, its schema migrations, and SQLite's failures as one-line
StoryErrors that name the file.

Durability: WAL with ``synchronous=FULL``. A step is committed before the next prompt is drawn,
and FULL syncs the write-ahead log at every commit, so a step that reached the screen survives a
killed process and a power loss alike (NORMAL survives the first only: it may lose the last
commits on power loss).
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from model.errors import StoryError
from model.storage.untrusted import visible

BUSY_TIMEOUT = 5.0  # seconds a step waits for another process's write lock before it says so

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register ``fn`` as the next schema version (applied in order, never edited once released)."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_stories_and_nodes(conn: sqlite3.Connection) -> None:
    """The first schema: stories, and the tree of nodes each story is made of."""
    conn.execute(
        """CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            corpus_name TEXT NOT NULL,
            corpus_sha256 TEXT NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            head INTEGER REFERENCES nodes(id)
        )"""
    )
    conn.execute(
        """CREATE TABLE nodes (
            id INTEGER PRIMARY KEY,
            story INTEGER NOT NULL REFERENCES stories(id),
            parent INTEGER REFERENCES nodes(id),
            author TEXT NOT NULL CHECK (author IN ('user', 'model')),
            text TEXT NOT NULL,
            tokens TEXT NOT NULL,
            model TEXT,
            decoding TEXT,
            logprob REAL CHECK (logprob IS NULL OR author = 'model'),
            kept INTEGER NOT NULL CHECK (kept IN (0, 1)),
            created TEXT NOT NULL,
            words INTEGER NOT NULL
        )"""
    )
    conn.execute("CREATE INDEX nodes_story_parent ON nodes(story, parent)")
    conn.execute("CREATE INDEX stories_corpus_updated ON stories(corpus_sha256, updated)")


def connect(path: Path, timeout: float = BUSY_TIMEOUT, create: bool = True) -> sqlite3.Connection:
    """An open connection to the stories file at ``path``, migrated to the current schema."""
    if not create and not path.exists():
        raise StoryError(f"no stories yet: {visible(path)} does not exist; write one in the REPL or import one")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoryError(f"cannot create {visible(path.parent)}: {e.strerror or e}; check STORY_REPL_HOME") from None
    with sqlite_errors(path, timeout):
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        with sqlite_errors(path, timeout):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this file lacks, in order, in one transaction; refuse a newer file."""
    if _version(conn, path) == len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _version(conn, path)  # another process may have migrated it meanwhile
        for step in MIGRATIONS[version:]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection, path: Path) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoryError(
            f"{visible(path)} was written by a newer story-repl (schema {version}, this one knows {len(MIGRATIONS)}); "
            "upgrade story-repl to open it"
        )
    return version


@contextmanager
def sqlite_errors(path: Path, timeout: float) -> Iterator[None]:
    """Turn SQLite's errors into one StoryError line naming ``path`` and what to do."""
    try:
        yield
    except sqlite3.IntegrityError as e:
        raise StoryError(f"{visible(path)} refused a change ({e}); this is a bug in story-repl, please report it") from None
    except sqlite3.OperationalError as e:
        msg = str(e)
        if "locked" in msg or "busy" in msg:
            raise StoryError(
                f"{visible(path)} is locked by another process (waited {timeout:g} s); close the other story-repl or try again"
            ) from None
        if "malformed" in msg or "not a database" in msg:
            raise _damaged(path, msg) from None
        raise StoryError(f"cannot use {visible(path)}: {msg}; check the disk has room and its folder is writable") from None
    except sqlite3.DatabaseError as e:
        raise _damaged(path, str(e)) from None


def _damaged(path: Path, msg: str) -> StoryError:
    return StoryError(
        f"{visible(path)} is damaged ({msg}); move it aside (story-repl starts a new one) or restore a backup"
    )

"""Stories kept in ``$STORY_REPL_HOME/stories.db``: the API the REPL writes each step through.

A story is a tree of nodes (Loom-style): nothing written is ever deleted. The story's text is
the path from a root to its head; writing from an earlier node starts a branch; retries and
alternatives are siblings. A node is *kept* when it is part of the story, or a *proposal* of the
model not yet accepted. A kept node's parent is always kept.

Every step is one transaction, committed before the call returns. Two processes may write the
same story at once: each keeps its own current node, passes it as ``parent`` (or ``current``),
and both branches are kept; the stored head is where the story was last left by either.
"""
from __future__ import annotations

import json
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from model.errors import StoryError
from model.home import home
from model.story.schema import BUSY_TIMEOUT, connect, sqlite_errors
from model.story.text import join_texts, word_count
from model.storage.untrusted import has_control, visible
from model.text.tokenize import detokenize, tokenize

AUTHORS = ("user", "model")
MAX_TITLE = 500
_NODE_COLUMNS = "id, story, parent, author, text, tokens, model, decoding, logprob, kept, created"
_STORY_COLUMNS = "id, title, corpus_name, corpus_sha256, created, updated, head"


def stories_path() -> Path:
    """The one stories file: ``$STORY_REPL_HOME/stories.db``."""
    return home() / "stories.db"


def now() -> str:
    """The current time as stored: UTC, ISO 8601 with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Story:
    id: int
    title: str
    corpus_name: str
    corpus_sha256: str
    created: str
    updated: str
    head: int | None


@dataclass(frozen=True)
class Node:
    id: int
    story: int
    parent: int | None
    author: str
    text: str
    tokens: tuple[str, ...]
    model: Any
    decoding: Any
    logprob: float | None
    kept: bool
    created: str


@dataclass(frozen=True)
class Listing:
    """A story as ``stories list`` shows it: words on its head path and nodes in its tree."""

    story: Story
    words: int
    nodes: int


def _story(row: Sequence[Any]) -> Story:
    return Story(*row)


def _node(row: Sequence[Any]) -> Node:
    i, story, parent, author, text, tokens, model, decoding, logprob, kept, created = row
    return Node(
        i, story, parent, author, text, tuple(json.loads(tokens)),
        None if model is None else json.loads(model), None if decoding is None else json.loads(decoding),
        logprob, bool(kept), created,
    )


def dumps(value: Any) -> str:
    """Compact JSON as stored in a column (UTF-8 kept, no NaN)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def check_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE or has_control(title):
        shown = visible(repr(title))[:60]
        raise StoryError(f"a story title must be 1 to {MAX_TITLE} characters without control characters, got {shown}")
    return title


class StoryDB:
    """One connection to the stories file; safe to share between threads (one step at a time)."""

    def __init__(self, conn, path: Path, timeout: float):
        self.conn = conn
        self.file = path
        self.timeout = timeout
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path | str | None = None, timeout: float = BUSY_TIMEOUT, create: bool = True) -> StoryDB:
        """Open (creating and migrating if needed) the stories file, by default ``stories_path()``."""
        p = Path(path) if path is not None else stories_path()
        return cls(connect(p, timeout, create), p, timeout)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> StoryDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions ------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One step: a write transaction taken at once (so two writers queue, never deadlock)."""
        with self._lock, sqlite_errors(self.file, self.timeout):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[Any]:
        """A consistent snapshot for reads of several statements."""
        with self._lock, sqlite_errors(self.file, self.timeout):
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    # ---- stories -----------------------------------------------------------------------
    def create_story(self, title: str, corpus_name: str, corpus_sha256: str) -> Story:
        """A new, empty story (no head) of the corpus named ``corpus_name`` with that sha256."""
        check_title(title)
        stamp = now()
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO stories (title, corpus_name, corpus_sha256, created, updated) VALUES (?, ?, ?, ?, ?)",
                (title, str(corpus_name), str(corpus_sha256), stamp, stamp),
            )
            return Story(cur.lastrowid, title, str(corpus_name), str(corpus_sha256), stamp, stamp, None)

    def story(self, story_id: int) -> Story:
        """The story with this id; an unknown id is one line."""
        with self._read() as c:
            row = c.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE id = ?", (int(story_id),)).fetchone()
        if row is None:
            raise StoryError(f"there is no story {story_id}; `story-repl stories list` shows them")
        return _story(row)

    def find_story(self, ref: int | str) -> Story:
        """The story named by ``ref``: its id (a number) or else its title (exactly)."""
        text = str(ref).strip()
        with self._read() as c:
            if text.isdecimal():
                row = c.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE id = ?", (int(text),)).fetchone()
                if row is not None:
                    return _story(row)
            rows = c.execute(f"SELECT {_STORY_COLUMNS} FROM stories WHERE title = ? ORDER BY id", (str(ref),)).fetchall()
        if not rows:
            raise StoryError(f"there is no story {visible(repr(str(ref)))}; `story-repl stories list` shows them")
        if len(rows) > 1:
            ids = ", ".join(str(r[0]) for r in rows)
            raise StoryError(f"the title {visible(repr(str(ref)))} is ambiguous: stories {ids} have it; name one by its id")
        return _story(rows[0])

    def last_story(self, corpus_sha256: str) -> Story | None:
        """The story of this corpus changed most recently, or None."""
        with self._read() as c:
            row = c.execute(
                f"SELECT {_STORY_COLUMNS} FROM stories WHERE corpus_sha256 = ? ORDER BY updated DESC, id DESC LIMIT 1",
                (corpus_sha256,),
            ).fetchone()
        return None if row is None else _story(row)

    def list_stories(self) -> list[Listing]:
        """Every story, the one changed last first, with its words on the head path and node count."""
        with self._read() as c:
            rows = c.execute(
                f"""WITH RECURSIVE up(story, id) AS (
                        SELECT id, head FROM stories WHERE head IS NOT NULL
                        UNION ALL
                        SELECT up.story, n.parent FROM up JOIN nodes n ON n.id = up.id WHERE n.parent IS NOT NULL
                    ),
                    words(story, words) AS (
                        SELECT up.story, SUM(n.words) FROM up JOIN nodes n ON n.id = up.id GROUP BY up.story
                    ),
                    counts(story, nodes) AS (SELECT story, COUNT(*) FROM nodes GROUP BY story)
                    SELECT {", ".join("s." + c for c in _STORY_COLUMNS.split(", "))},
                           COALESCE(words.words, 0), COALESCE(counts.nodes, 0)
                    FROM stories s LEFT JOIN words ON words.story = s.id LEFT JOIN counts ON counts.story = s.id
                    ORDER BY s.updated DESC, s.id DESC"""
            ).fetchall()
        return [Listing(_story(r[:7]), r[7], r[8]) for r in rows]

    # ---- nodes -------------------------------------------------------------------------
    def node(self, node_id: int) -> Node:
        with self._read() as c:
            return self._get_node(c, node_id)

    @staticmethod
    def _get_node(c, node_id: int) -> Node:
        row = c.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id = ?", (int(node_id),)).fetchone()
        if row is None:
            raise StoryError(f"there is no node {node_id}; the story may have been imported again under new ids")
        return _node(row)

    def add_node(
        self,
        story: int,
        parent: int | None,
        author: str,
        text: str,
        tokens: Sequence[str] | None = None,
        *,
        model: Mapping[str, Any] | None = None,
        decoding: Mapping[str, Any] | None = None,
        logprob: float | None = None,
        kept: bool = True,
    ) -> int:
        """Write one node after ``parent`` (None: a new root) and return its id.

        A kept node becomes the story's head; a proposal (``kept=False``) leaves the head where
        it is. ``tokens`` default to ``tokenize(text)``. ``model`` names the bundle (digest,
        components), ``decoding`` the settings; ``logprob`` is the model's, None for user text."""
        if author not in AUTHORS:
            raise StoryError(f"a node's author is 'user' or 'model', not {visible(repr(author))}")
        if author == "user" and logprob is not None:
            raise StoryError("user text has no log-probability; pass logprob=None")
        if logprob is not None and (not isinstance(logprob, (int, float)) or math.isnan(logprob) or logprob > 0):
            raise StoryError(f"a log-probability is a number at most 0, got {logprob!r}")
        toks = list(tokenize(text) if tokens is None else tokens)
        if not all(isinstance(t, str) for t in toks):
            raise StoryError("a node's tokens are strings; pass the tokenizer's tokens")
        row = (
            str(text), dumps(toks), None if model is None else dumps(model), None if decoding is None else dumps(decoding),
            None if logprob is None else float(logprob), int(bool(kept)), now(), word_count(toks),
        )
        with self._write() as c:
            self._check_parent(c, story, parent)
            node_id = self._insert(c, story, parent, author, row)
            self._touch(c, story, row[6], node_id if kept else None)
        return node_id

    def _check_parent(self, c, story: int, parent: int | None) -> None:
        if parent is None:
            if c.execute("SELECT 1 FROM stories WHERE id = ?", (story,)).fetchone() is None:
                raise StoryError(f"there is no story {story}; `story-repl stories list` shows them")
            return
        p = self._get_node(c, parent)
        if p.story != story:
            raise StoryError(f"node {parent} belongs to story {p.story}, not {story}; write after a node of the same story")
        if not p.kept:
            raise StoryError(f"node {parent} is a proposal not yet accepted; accept it before writing after it")

    @staticmethod
    def _insert(c, story: int, parent: int | None, author: str, row: tuple) -> int:
        cur = c.execute(
            "INSERT INTO nodes (story, parent, author, text, tokens, model, decoding, logprob, kept, created, words)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (story, parent, author, *row),
        )
        return cur.lastrowid

    @staticmethod
    def _touch(c, story: int, stamp: str, head: int | None = None, move: bool | None = None) -> None:
        """The story's updated time, and its head when ``head`` is given (or ``move`` is true)."""
        if head is not None or move:
            c.execute("UPDATE stories SET updated = ?, head = ? WHERE id = ?", (stamp, head, story))
        else:
            c.execute("UPDATE stories SET updated = ? WHERE id = ?", (stamp, story))

    def accept(self, node_id: int, n_tokens: int | None = None, text: str | None = None, logprob: float | None = None) -> int:
        """Make the proposal ``node_id`` part of the story (the head) and return the kept node.

        With ``n_tokens`` less than its length, only its first ``n_tokens`` tokens are kept, as a
        new sibling (text ``text``, by default their detokenized text); the proposal stays as it was."""
        with self._write() as c:
            p = self._get_node(c, node_id)
            if p.parent is not None and not self._get_node(c, p.parent).kept:
                raise StoryError(f"node {node_id} follows a proposal not yet accepted; accept that one first")
            stamp = now()
            if n_tokens is None or n_tokens == len(p.tokens):
                c.execute("UPDATE nodes SET kept = 1 WHERE id = ?", (p.id,))
                self._touch(c, p.story, stamp, p.id)
                return p.id
            if not 0 < n_tokens < len(p.tokens):
                raise StoryError(f"node {node_id} has {len(p.tokens)} tokens; accept 1 to {len(p.tokens)} of them")
            toks = list(p.tokens[:n_tokens])
            shown = detokenize(toks) if text is None else str(text)
            row = (
                shown, dumps(toks), None if p.model is None else dumps(p.model),
                None if p.decoding is None else dumps(p.decoding),
                None if logprob is None or p.author == "user" else float(logprob), 1, stamp, word_count(toks),
            )
            new = self._insert(c, p.story, p.parent, p.author, row)
            self._touch(c, p.story, stamp, new)
            return new

    # ---- moving the head ---------------------------------------------------------------
    def goto(self, story: int, node_id: int | None) -> int | None:
        """Leave the story at ``node_id`` (a kept node of it; None: before its first word)."""
        with self._write() as c:
            if node_id is not None:
                n = self._get_node(c, node_id)
                if n.story != story:
                    raise StoryError(f"node {node_id} belongs to story {n.story}, not {story}")
                if not n.kept:
                    raise StoryError(f"node {node_id} is a proposal not yet accepted; accept it, or go to node {n.parent}")
            self._touch(c, story, now(), node_id, move=True)
        return node_id

    def undo(self, story: int, current: int | None = None) -> int | None:
        """Step back: the head goes to the parent of ``current`` (default: the stored head)."""
        with self._write() as c:
            cur = self._current(c, story, current)
            if cur is None:
                raise StoryError("nothing to undo: the story is at its beginning")
            node = self._get_node(c, cur)
            if node.story != story:
                raise StoryError(f"node {cur} belongs to story {node.story}, not {story}")
            parent = node.parent
            self._touch(c, story, now(), parent, move=True)
        return parent

    def redo(self, story: int, current: int | None = None) -> int:
        """Step forward: the head goes to the most recently created kept child of ``current``."""
        with self._write() as c:
            cur = self._current(c, story, current)
            row = c.execute(
                "SELECT id FROM nodes WHERE story = ? AND parent IS ? AND kept = 1 ORDER BY id DESC LIMIT 1", (story, cur)
            ).fetchone()
            if row is None:
                raise StoryError("nothing to redo: no kept text follows this point")
            self._touch(c, story, now(), row[0])
        return row[0]

    def _current(self, c, story: int, current: int | None) -> int | None:
        if current is not None:
            return current
        row = c.execute("SELECT head FROM stories WHERE id = ?", (story,)).fetchone()
        if row is None:
            raise StoryError(f"there is no story {story}; `story-repl stories list` shows them")
        return row[0]

    # ---- reading the tree ----------------------------------------------------------------
    def path(self, node_id: int | None) -> list[Node]:
        """The nodes from the root to ``node_id``, in order (one indexed query up the parents)."""
        if node_id is None:
            return []
        with self._read() as c:
            rows = c.execute(
                f"""WITH RECURSIVE up(depth, id) AS (
                        SELECT 0, ?
                        UNION ALL
                        SELECT up.depth + 1, n.parent FROM up JOIN nodes n ON n.id = up.id WHERE n.parent IS NOT NULL
                    )
                    SELECT {", ".join("n." + c for c in _NODE_COLUMNS.split(", "))}
                    FROM up JOIN nodes n ON n.id = up.id ORDER BY up.depth DESC""",
                (int(node_id),),
            ).fetchall()
        if not rows:
            raise StoryError(f"there is no node {node_id}; the story may have been imported again under new ids")
        return [_node(r) for r in rows]

    def text(self, node_id: int | None) -> str:
        """The story's text up to ``node_id``: the path's texts joined (see model/story/text.py)."""
        return join_texts(n.text for n in self.path(node_id))

    def children(self, story: int, parent: int | None) -> list[Node]:
        """The nodes written right after ``parent`` (None: the roots), oldest first."""
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE story = ? AND parent IS ? ORDER BY id", (story, parent)
            ).fetchall()
        return [_node(r) for r in rows]

    def alternatives(self, node_id: int) -> list[Node]:
        """The node and its siblings (retries, other branches), oldest first."""
        n = self.node(node_id)
        return self.children(n.story, n.parent)

    def tree(self, story: int) -> list[Node]:
        """Every node of the story, in the order they were written."""
        with self._read() as c:
            rows = c.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE story = ? ORDER BY id", (story,)).fetchall()
        return [_node(r) for r in rows]

    def integrity_check(self) -> str:
        """SQLite's own check of the file: 'ok', or what is wrong."""
        with self._lock, sqlite_errors(self.file, self.timeout):
            return "; ".join(r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall())

    def restore(self, story: Story, nodes: Sequence[Node], head: int | None) -> Story:
        """Write a whole story at once (an import): ``nodes`` in order, each parent before its
        children, numbered by their ``id`` there; ``head`` in those numbers. One transaction."""
        check_title(story.title)
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO stories (title, corpus_name, corpus_sha256, created, updated) VALUES (?, ?, ?, ?, ?)",
                (story.title, story.corpus_name, story.corpus_sha256, story.created, story.updated),
            )
            sid = cur.lastrowid
            ids: dict[int, int] = {}
            for n in nodes:
                row = (
                    n.text, dumps(list(n.tokens)), None if n.model is None else dumps(n.model),
                    None if n.decoding is None else dumps(n.decoding), n.logprob, int(n.kept), n.created, word_count(n.tokens),
                )
                ids[n.id] = self._insert(c, sid, None if n.parent is None else ids[n.parent], n.author, row)
            new_head = None if head is None else ids[head]
            c.execute("UPDATE stories SET head = ? WHERE id = ?", (new_head, sid))
        return Story(sid, story.title, story.corpus_name, story.corpus_sha256, story.created, story.updated, new_head)

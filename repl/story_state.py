"""The story the REPL writes into: which story, where in it, the model's proposal and the
alternatives on offer. Every step is committed to ``stories.db`` (:mod:`model.story.db`) before
it returns, and the path to the current node is the predictor's context
(:class:`model.story.context.StoryContext`).

The session opens the last story of the corpus in use (or ``--story``'s); a new story is
written to the file at its first step. A stories file that cannot be opened or written
(damaged, locked, a full disk) leaves the session writing into a story kept in memory, with
one notice.
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from model.errors import StoryError
from model.story.context import StoryContext
from model.story.db import Node, Story, StoryDB
from model.story.text import join_texts
from model.text.tokenize import detokenize


TEXT_TAIL = 2000  # characters of the story read to write what follows it (quotes, sentence starts)


@dataclass
class Proposal:
    """Text the model offered at ``parent``, not part of the story until it is accepted."""

    node: int
    parent: int | None
    tokens: list[str]
    logprobs: list[float]  # log p of each token under the model, as it was generated
    label: str  # how it was made: "greedy", "sampled, T=1", "beam 3, #2"
    text: str = ""  # as written after the story (cased and spaced); by default the tokens detokenized
    copied: int | None = None  # longest run copied from the training text
    stopped: bool = False  # cut short with Ctrl-C
    model: dict = field(default_factory=dict)  # the model that made it (bundle digest, components)
    decoding: dict = field(default_factory=dict)  # the settings it was made with

    def __post_init__(self) -> None:
        self.text = self.text or detokenize(self.tokens)

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean(self) -> float:
        """Mean log-probability per word."""
        return self.logprob / len(self.logprobs) if self.logprobs else 0.0


def db_failure(e: StoryError) -> bool:
    """Whether ``e`` is the stories file failing (locked, damaged, unwritable), not a bad request."""
    return isinstance(e.__context__, (sqlite3.Error, OSError))


class StoryState:
    """The story being written (see the module docstring). ``notify`` says one line."""

    def __init__(self, notify: Callable[[str], None]):
        self.notify = notify
        self.db: StoryDB | None = None
        self.memory = False  # the stories file could not be used: the story lives in memory
        self.story: Story | None = None  # None: a new story, written at its first step
        self.title: str | None = None  # the new story's title (:new TITLE)
        self.node: int | None = None  # the current node: the story's end
        self.path: list[Node] = []  # from the root to the current node
        self.proposal: Proposal | None = None
        self.alternatives: list[Proposal] = []
        self.context = StoryContext()
        self.corpus: tuple[str, str] = ("", "")  # (name, sha256) of the corpus in use
        self.chosen: Story | None | str = None  # --story: a story, "new", or None (the corpus's last)
        self._lock = threading.RLock()

    @property
    def on(self) -> bool:
        return self.context.on

    # ---- the file ------------------------------------------------------------------------
    def open_db(self) -> StoryDB:
        if self.db is None:
            try:
                self.db = StoryDB.open()
            except StoryError as e:
                self._to_memory(e)
        return self.db

    def _to_memory(self, e: StoryError) -> None:
        """Go on with the story in memory; one notice."""
        if self.memory:
            raise e
        self.notify(f"stories are not saved in this session: {e}")
        self.memory = True
        old, title = self.path, self.story.title if self.story is not None else self.title
        self.db = StoryDB.open(":memory:")
        self.story, self.node, self.path = None, None, []
        self.proposal, self.alternatives = None, []
        if old:
            self._new_story(title)
            for n in old:
                self.node = self.db.add_node(self.story.id, self.node, n.author, n.text, n.tokens, model=n.model, decoding=n.decoding, logprob=n.logprob)
            self.path = self.db.path(self.node)

    def _write(self, step: Callable[[StoryDB], Any]) -> Any:
        """Run one write; if the file fails, once, go on in memory and run it there."""
        db = self.open_db()
        try:
            return step(db)
        except StoryError as e:
            if self.memory or not db_failure(e):
                raise
            self._to_memory(e)
            return step(self.db)

    def choose(self, ref: str | None) -> None:
        """``--story``: ``new``, or a story's id or title (one line if there is none, or several)."""
        if ref is None:
            return
        if ref.strip().lower() == "new":
            self.chosen = "new"
            return
        self.chosen = self.open_db().find_story(ref)

    # ---- which story ---------------------------------------------------------------------
    def sync(self, pred: Any, corpus_name: str, corpus_sha256: str) -> str | None:
        """Before each step: the story of the corpus in use (the chosen one, else the corpus's
        last) followed by ``pred``. A line to say when a story was opened."""
        with self._lock:
            note = None
            if corpus_sha256 != self.corpus[1]:
                self.corpus = (corpus_name, corpus_sha256)
                try:
                    note = self._open_for_corpus()
                except StoryError as e:
                    if self.memory or not db_failure(e):
                        raise
                    self._to_memory(e)
            self.context.follow(pred, self._tokens_path(), self.story.id if self.story else None)
            return note

    def _open_for_corpus(self) -> str | None:
        db = self.open_db()
        chosen, self.chosen = self.chosen, None
        story = None if chosen == "new" else chosen if chosen is not None else db.last_story(self.corpus[1])
        self.proposal, self.alternatives, self.title = None, [], None
        self.story = story
        self.node = story.head if story is not None else None
        self.path = db.path(self.node) if self.node is not None else []
        if story is None:
            return None
        words = sum(1 for n in self.path for t in n.tokens if any(ch.isalnum() for ch in t))
        return f"story {story.id} “{story.title}”: {words} words; :story shows it, :new starts another"

    def prime(self, pred: Any, corpus_sha256: str) -> None:
        """A new predictor of the same corpus (retrained, another arch, a partner) continues the story."""
        with self._lock:
            if self.corpus[1] == corpus_sha256:
                self.context.follow(pred, self._tokens_path(), self.story.id if self.story else None)

    def _tokens_path(self) -> list[tuple[int, Sequence[str]]]:
        return [(n.id, n.tokens) for n in self.path]

    def _new_story(self, title: str | None = None) -> Story:
        if self.story is None:
            name, sha = self.corpus
            stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
            self.story = self.db.create_story(title or self.title or f"{name or 'story'} {stamp}", name or "?", sha or "")
        return self.story

    def new(self, title: str | None) -> None:
        """``:new``: the next step starts a new story (titled ``title``)."""
        if title is not None:
            from model.story.db import check_title

            check_title(title)
        with self._lock:
            self.story, self.node, self.path, self.title = None, None, [], title
            self.proposal, self.alternatives = None, []

    # ---- steps -------------------------------------------------------------------------------
    def add_user(self, text: str, tokens: Sequence[str]) -> Node:
        """The user's line, kept at the story's end; a proposal left open is dropped."""
        with self._lock:
            def step(db: StoryDB) -> int:
                story = self._new_story()
                return db.add_node(story.id, self.node, "user", text, list(tokens))

            node_id = self._write(step)
            self.proposal, self.alternatives = None, []
            return self._moved(node_id)

    def add_proposal(self, p: Proposal) -> Proposal:
        """Write ``p`` (made at the current node) as a proposal (not yet part of the story)."""
        with self._lock:
            def step(db: StoryDB) -> int:
                story = self._new_story()
                return db.add_node(story.id, self.node, "model", p.text, p.tokens, model=p.model, decoding=p.decoding,
                                   logprob=min(0.0, p.logprob), kept=False)

            p.node, p.parent = self._write(step), self.node
            return p

    def accept(self, p: Proposal, n: int | None = None, text: str | None = None) -> Node:
        """Keep ``p`` (or its first ``n`` tokens, written ``text``) at the story's end."""
        with self._lock:
            if p.parent != self.node:
                raise StoryError("that proposal was made at another point of the story; :retry makes one here")
            part = n is not None and n < len(p.tokens)
            lp = min(0.0, float(sum(p.logprobs[:n]))) if part else None
            node_id = self._write(lambda db: db.accept(p.node, n if part else None, text=text if part else None, logprob=lp))
            self.proposal, self.alternatives = None, []
            return self._moved(node_id)

    def undo(self) -> Node | None:
        with self._lock:
            story = self._need_story("undo")
            node_id = self._write(lambda db: db.undo(story.id, self.node))
            return self._moved(node_id)

    def redo(self) -> Node:
        with self._lock:
            story = self._need_story("redo")
            node_id = self._write(lambda db: db.redo(story.id, self.node))
            return self._moved(node_id)

    def goto(self, node_id: int) -> Node | None:
        with self._lock:
            story = self._need_story("go to")
            try:
                node = self.open_db().node(node_id)
            except StoryError as e:
                if db_failure(e):
                    raise
                raise StoryError(f"there is no node {node_id} in this story; :tree shows its nodes") from None
            if node.story != story.id:
                raise StoryError(f"node {node_id} belongs to another story; :tree shows this one's nodes")
            self._write(lambda db: db.goto(story.id, node_id))
            return self._moved(node_id)

    def _need_story(self, what: str) -> Story:
        if self.story is None:
            raise StoryError(f"nothing to {what}: the story is empty")
        return self.story

    def _moved(self, node_id: int | None) -> Node | None:
        """The story now ends at ``node_id``: the path follows (one read unless it grew by a node)."""
        self.proposal, self.alternatives = None, []
        if node_id is None:
            self.node, self.path = None, []
            return None
        db = self.db
        node = db.node(node_id)
        if node.parent == self.node and (self.node is None) == (not self.path):
            self.path = self.path + [node]
        else:
            self.path = db.path(node_id)
        self.node = node_id
        return node

    # ---- reading -----------------------------------------------------------------------------
    def text_before_line(self) -> str:
        """The story's text as the next line continues it (its end, and the space that joins a
        word to it); '' with the story off or empty."""
        if not self.on or not self.path:
            return ""
        return join_texts([self.text_tail(), "x"])[:-1]

    def text_tail(self, chars: int = TEXT_TAIL) -> str:
        """The end of the story's text (at least ``chars`` characters of it, when it has them)."""
        texts: list[str] = []
        size = 0
        for n in reversed(self.path):
            texts.insert(0, n.text)
            size += len(n.text) + 1
            if size >= chars:
                break
        return join_texts(texts)

    def tree(self) -> list[Node]:
        return self.open_db().tree(self.story.id) if self.story is not None else []

    def children(self) -> list[Node]:
        """The nodes written right after the current one (earlier proposals included)."""
        if self.story is None:
            return []
        return self.open_db().children(self.story.id, self.node)

"""How the REPL shows a story: the user's words and the model's apart, a proposal as it is
made, the alternatives side by side, the tree, the list of stories.

Every text from the stories file goes through :func:`repl.render.safe` (control characters
written out, never read as markup).
"""
from __future__ import annotations

import io
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from model.story.text import spacing
from model.text.writing import Writer, line_tail
from repl.render import data_text, safe

USER = "bold"
MODEL = "italic cyan"
PROPOSAL = "dim italic"
SNIPPET = 48  # characters of a node's text in the tree


def story_text(path: Sequence[Any], empty: str = "(the story is empty: type a line)") -> Text:
    """The path's texts joined as one story: the user's words in bold, the model's in italics."""
    out = Text()
    for node, space in zip(path, spacing([n.text for n in path])):
        if space:
            out.append(" ")
        out.append(safe(node.text), style=USER if node.author == "user" else MODEL)
    if not path:
        out.append(empty, style="dim")
    return out


def story_end(path: Sequence[Any], chars: int = 160) -> Text:
    """The last ``chars`` characters of the story, styled as :func:`story_text`."""
    text = story_text(path, empty="(the beginning of the story)")
    if len(text.plain) > chars:
        text = Text("…") + text[len(text.plain) - chars :]
    return text


def proposal_line(seed: str, written: str) -> Text:
    """The story's last words (dim), then the proposal in its own style; ``written`` starts with
    the space that joins it to them, if any."""
    out = Text()
    if seed:
        out.append(safe(seed), style="dim")
    out.append(safe(written if seed else written.lstrip()), style=PROPOSAL)
    return out


def proposal_info(label: str, copied: int | None, words: int, stopped: bool) -> Text:
    """The line under a proposal: how it was made, what it copied, the keys that keep it."""
    out = Text(f"  [{safe(label)}{f'; stopped after {words} words' if stopped else ''}]", style="dim italic")
    if copied is not None:
        out.append(f"  longest copied run: {copied} words", style="dim italic")
    out.append("  proposal: Alt-A keeps it, Alt-R retries", style="dim")
    return out


class Stream:
    """A proposal shown as it is made, after the story's text ``before``: word by word at a
    terminal (``session.tty``), written as :mod:`model.text.writing` writes generated words;
    at once otherwise (through ``session.out``)."""

    def __init__(self, session: Any, before: str, casing: Any = None):
        self.session = session
        self.seed = line_tail(before)
        self.col = 0
        self.live = bool(session.tty)
        self.words = 0
        self.held = False
        self.writer = Writer(before, "", casing) if self.live else None
        if self.live and self.seed:
            self._write(Text(safe(self.seed), style="dim"))

    def add(self, word: str) -> None:
        """The next word of the proposal: write it (with the space before it, if any)."""
        if not self.live:
            return
        edit = self.writer.edit(word)
        self.writer = self.writer.then(edit, word)
        self.words += 1
        piece = (" " if self.held and not edit.delete else "") + edit.text
        self.held = piece.endswith(" ")  # a space is written once the next word keeps it (a comma takes it)
        piece = piece.rstrip(" ")
        width = max(20, self.session.console().width)
        if self.col and self.col + cell_len(piece.rstrip()) > width:
            self._write(Text("\n"))
            piece = piece.lstrip()
        self._write(Text(safe(piece), style=PROPOSAL))

    def end(self, written: str, info: Text) -> None:
        """The whole proposal is ``written`` (with its joining space): finish its line and say
        how it was made."""
        if not self.live:
            self.session.out(proposal_line(self.seed, written), info)
            return
        if not self.words and written:  # made at once (a beam): written whole
            self._write(Text(safe(written if self.seed else written.lstrip()), style=PROPOSAL))
        self._write(Text("\n"))
        self.session.out(info)

    def _write(self, text: Text) -> None:
        buf = io.StringIO()
        console = self.session.console(buf)
        console.print(text, end="", soft_wrap=True)  # the terminal wraps; the column is followed here
        out = buf.getvalue()
        line = text.plain.rsplit("\n", 1)[-1]
        self.col = (cell_len(line) if "\n" in text.plain else self.col + cell_len(line)) % max(1, console.width)
        with self.session._lock:
            sys.stdout.write(out)
            sys.stdout.flush()


def alternatives_table(alts: Sequence[Any], seed: str) -> Table:
    """The alternatives side by side: number, text, mean log-probability per word, copied run."""
    table = Table(title=data_text(f"after “…{seed}”" if seed else "from the beginning"), title_justify="left",
                  show_edge=False, box=None, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right", style="bold cyan", no_wrap=True)
    table.add_column("continuation", style=PROPOSAL, overflow="fold", ratio=1)
    table.add_column("log p/word", justify="right", no_wrap=True)
    table.add_column("copied", justify="right", no_wrap=True)
    for k, a in enumerate(alts, 1):
        copied = "?" if a.copied is None else str(a.copied)
        table.add_row(str(k), data_text(a.text), f"{a.mean:.2f}", copied)
    return table


def story_tree(story: Any, nodes: Sequence[Any], current: int | None) -> Tree:
    """The story's nodes as a tree: id, author, a snippet; the current path highlighted,
    proposals not kept dimmed."""
    by_parent: dict[int | None, list[Any]] = {}
    for n in nodes:
        by_parent.setdefault(n.parent, []).append(n)
    on_path = _ancestors(nodes, current)
    root = Tree(data_text(f"story {story.id} “{story.title}”" if story else "(no story yet)", "bold"), guide_style="dim")
    todo = [(root, n) for n in reversed(by_parent.get(None, []))]
    while todo:
        branch, n = todo.pop()
        child = branch.add(_node_label(n, n.id in on_path, n.id == current))
        todo += [(child, c) for c in reversed(by_parent.get(n.id, []))]
    return root


def _ancestors(nodes: Sequence[Any], current: int | None) -> set[int]:
    parent = {n.id: n.parent for n in nodes}
    out: set[int] = set()
    while current is not None and current in parent:
        out.add(current)
        current = parent[current]
    return out


def _node_label(n: Any, on_path: bool, here: bool) -> Text:
    snippet = " ".join(n.text.split())
    if len(snippet) > SNIPPET:
        snippet = snippet[: SNIPPET - 1] + "…"
    who = "you" if n.author == "user" else ("model" if n.kept else "proposal")
    style = "bold green" if on_path else ("dim" if not n.kept else "")
    out = Text(f"{n.id} ", style="bold" if on_path else "dim")
    out.append(f"{who}: ", style=style or None)
    out.append(safe(snippet), style=(USER if n.author == "user" else MODEL) if n.kept else PROPOSAL)
    if here:
        out.append("  ◀ here", style="bold green")
    return out


def stories_table(listings: Sequence[Any], current: int | None) -> Table:
    """Every story: id, title, corpus, words, last change (the current one marked)."""
    table = Table(box=None, header_style="bold", show_edge=False, pad_edge=False)
    for col, justify in (("id", "right"), ("title", "left"), ("corpus", "left"), ("words", "right"), ("last change", "left")):
        table.add_column(col, justify=justify)
    for x in listings:
        mark = " ◀" if x.story.id == current else ""
        table.add_row(str(x.story.id), data_text(x.story.title + mark), data_text(x.story.corpus_name), f"{x.words:,}", _when(x.story.updated))
    return table


def _when(stamp: str) -> str:
    """A stored UTC time in the local time zone, to the minute."""
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return safe(stamp)
    return when.astimezone().strftime("%Y-%m-%d %H:%M")

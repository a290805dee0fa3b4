"""A story as a file: Markdown, plain text, or the whole tree as JSON (which imports back).

The JSON format (``"format": "story-repl-story"``, ``"version": 1``)::

    {"format": "story-repl-story", "version": 1, "title": "...",
     "corpus": {"name": "...", "sha256": "<64 hex>"},
     "created": "<UTC time>", "updated": "<UTC time>", "head": <node id or null>,
     "nodes": [{"id", "parent", "author", "text", "tokens", "model", "decoding", "logprob",
                "kept", "created"}, ...]}

Node ids are the file's own: 1..n in the order the nodes were written (a parent always comes
before its children), never the database's, and times are kept as they were; so exporting,
importing and exporting again gives the same bytes. One node per line, keys in that order.
Times are ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``logprob`` is null for user text; ``model`` and
``decoding`` are objects or null.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.errors import StoryError
from model.story.db import Node, Story, StoryDB
from model.story.text import join_texts, spacing
from model.story.validate import FORMAT_NAME, FORMAT_VERSION, parse_story

FORMATS = ("md", "txt", "json")
MD_SPECIAL = "\\`*_[]<>#|~"


def export_story(db: StoryDB, story: Story, fmt: str) -> bytes:
    """The story in ``fmt`` (md, txt or json) as UTF-8 bytes."""
    if fmt == "json":
        return story_json(story, db.tree(story.id))
    path = db.path(story.head)
    if fmt == "txt":
        return (join_texts(n.text for n in path) + "\n").encode("utf-8")
    if fmt == "md":
        return story_markdown(story, path).encode("utf-8")
    raise StoryError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def story_markdown(story: Story, path: list[Node]) -> str:
    """The head path as Markdown: the user's words plain, the model's in *italics*."""
    texts = [n.text for n in path]
    body = "".join(
        (" " if space else "") + (_italic(_md_escape(n.text)) if n.author == "model" else _md_escape(n.text))
        for n, space in zip(path, spacing(texts))
    )
    head = f"# {_md_escape(story.title)}\n\n*{_md_escape(story.corpus_name)}: the user's words plain, the model's in italics*\n\n"
    return head + body + "\n"


def _md_escape(text: str) -> str:
    return "".join("\\" + ch if ch in MD_SPECIAL else ch for ch in text)


def _italic(text: str) -> str:
    """``text`` in italics line by line, the markers inside any surrounding spaces."""
    out = []
    for line in text.split("\n"):
        core = line.strip()
        if core:
            start = line.index(core)
            line = f"{line[:start]}*{core}*{line[start + len(core):]}"
        out.append(line)
    return "\n".join(out)


def story_json(story: Story, nodes: list[Node]) -> bytes:
    """The whole tree in the documented JSON format: ids renumbered 1..n in writing order."""
    number = {n.id: i for i, n in enumerate(nodes, 1)}
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "title": story.title,
        "corpus": {"name": story.corpus_name, "sha256": story.corpus_sha256},
        "created": story.created,
        "updated": story.updated,
        "head": number.get(story.head) if story.head is not None else None,
    }
    lines = [f"  {_dumps(k)}: {_dumps(v)}," for k, v in header.items()]
    rows = [
        _dumps({
            "id": number[n.id], "parent": None if n.parent is None else number[n.parent], "author": n.author,
            "text": n.text, "tokens": list(n.tokens), "model": n.model, "decoding": n.decoding,
            "logprob": n.logprob, "kept": n.kept, "created": n.created,
        })
        for n in nodes
    ]
    body = ",\n".join("    " + r for r in rows)
    return ("{\n" + "\n".join(lines) + '\n  "nodes": [\n' + body + ("\n" if rows else "") + "  ]\n}\n").encode("utf-8")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def import_story(db: StoryDB, data: bytes, source: str | Path = "the story file") -> Story:
    """Add the story of an exported JSON file (untrusted input, checked first) as a new story."""
    story, nodes, head = parse_story(data, str(source))
    return db.restore(story, nodes, head)

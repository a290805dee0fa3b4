"""Checking a story file before it is imported. The file is untrusted input: every value's type,
size and place is checked (ids 1..n in order, each parent before its child, a kept node's parent
kept, the head a kept node), and the first problem is one line naming the file and the node."""
from __future__ import annotations

import json
import math
import re
import unicodedata
from datetime import datetime
from typing import Any

from model.errors import StoryError
from model.story.db import AUTHORS, MAX_TITLE, Node, Story, dumps
from model.storage.untrusted import visible

FORMAT_NAME = "story-repl-story"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 256 * 2**20
MAX_NODES = 1_000_000
MAX_TEXT = 1_000_000  # characters of one node's text
MAX_TOKENS = 100_000  # tokens of one node
MAX_TOKEN = 1_000  # characters of one token
MAX_META = 100_000  # characters of a node's model or decoding object, as JSON
HEADER_KEYS = ("format", "version", "title", "corpus", "created", "updated", "head", "nodes")
NODE_KEYS = ("id", "parent", "author", "text", "tokens", "model", "decoding", "logprob", "kept", "created")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Bad(Exception):
    """A problem found in the file, raised with where it is and turned into one StoryError."""


def parse_story(data: bytes, source: str) -> tuple[Story, list[Node], int | None]:
    """The story, its nodes (file ids) and its head from an exported JSON file's bytes."""
    name = visible(source)
    if len(data) > MAX_FILE_BYTES:
        raise StoryError(f"{name} is {len(data):,} bytes, more than a story file can be ({MAX_FILE_BYTES:,})")
    doc = _load(data, name)
    try:
        return _document(doc)
    except _Bad as e:
        raise StoryError(f"{name} is not a story file story-repl can import: {e}; export the story again") from None


def _load(data: bytes, name: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise StoryError(f"{name} is not UTF-8 text (byte {e.start}); pass a file written by `stories export --format json`") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise StoryError(f"{name} is not valid JSON ({visible(detail)}); pass a file written by `stories export --format json`") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _document(doc: Any) -> tuple[Story, list[Node], int | None]:
    _keys(doc, HEADER_KEYS, "the file")
    if doc["format"] != FORMAT_NAME:
        raise _Bad(f"its format is {_shown(doc['format'])}, not {FORMAT_NAME!r}")
    version = doc["version"]
    if not _is_int(version) or version < 1:
        raise _Bad(f"its version is {_shown(version)}, not a whole number from 1")
    if version > FORMAT_VERSION:
        raise StoryError(f"the file is a story of format version {version}, newer than this story-repl reads ({FORMAT_VERSION}); upgrade story-repl")
    title = doc["title"]
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE or _control(title, ""):
        raise _Bad(f"its title is {_shown(title)}, not 1 to {MAX_TITLE} characters without control characters")
    corpus = doc["corpus"]
    _keys(corpus, ("name", "sha256"), "its corpus")
    if not isinstance(corpus["name"], str) or len(corpus["name"]) > MAX_TEXT or _control(corpus["name"], ""):
        raise _Bad(f"its corpus name is {_shown(corpus['name'])}, not text")
    if not isinstance(corpus["sha256"], str) or not _SHA256.fullmatch(corpus["sha256"]):
        raise _Bad(f"its corpus sha256 is {_shown(corpus['sha256'])}, not 64 lower-case hex digits")
    created, updated = _time(doc["created"], "its created time"), _time(doc["updated"], "its updated time")
    raw = doc["nodes"]
    if not isinstance(raw, list) or len(raw) > MAX_NODES:
        raise _Bad(f"its nodes are not a list of at most {MAX_NODES:,}")
    nodes: list[Node] = []
    for i, item in enumerate(raw, 1):
        nodes.append(_node(item, i, nodes))
    head = doc["head"]
    if head is not None and not (_is_int(head) and 1 <= head <= len(nodes) and nodes[head - 1].kept):
        raise _Bad(f"its head is {_shown(head)}, not null or the id of a kept node")
    story = Story(0, title, corpus["name"], corpus["sha256"], created, updated, None)
    return story, nodes, head


def _node(item: Any, i: int, before: list[Node]) -> Node:
    where = f"node {i}"
    _keys(item, NODE_KEYS, where)
    if not _is_int(item["id"]) or item["id"] != i:
        raise _Bad(f"{where} has id {_shown(item['id'])}; the ids are 1, 2, 3, ... in order")
    parent = item["parent"]
    if parent is not None and not (_is_int(parent) and 1 <= parent < i):
        raise _Bad(f"{where} has parent {_shown(parent)}, not null or the id of a node before it")
    author = item["author"]
    if author not in AUTHORS:
        raise _Bad(f"{where} has author {_shown(author)}, not 'user' or 'model'")
    text = item["text"]
    if not isinstance(text, str) or len(text) > MAX_TEXT or _control(text, "\n\t"):
        raise _Bad(f"{where}'s text is not text of at most {MAX_TEXT:,} characters without control characters")
    tokens = item["tokens"]
    if not isinstance(tokens, list) or len(tokens) > MAX_TOKENS or not all(_is_token(t) for t in tokens):
        raise _Bad(f"{where}'s tokens are not a list of at most {MAX_TOKENS:,} tokens (non-empty text, no spaces)")
    for key in ("model", "decoding"):
        if item[key] is not None and (not isinstance(item[key], dict) or len(dumps(item[key])) > MAX_META):
            raise _Bad(f"{where}'s {key} is not null or an object of at most {MAX_META:,} characters")
    logprob = item["logprob"]
    if logprob is not None and (author == "user" or not _is_number(logprob) or not math.isfinite(logprob) or logprob > 0):
        raise _Bad(f"{where} has logprob {_shown(logprob)}; it is null for user text, else a number at most 0")
    kept = item["kept"]
    if not isinstance(kept, bool):
        raise _Bad(f"{where} has kept {_shown(kept)}, not true or false")
    if kept and parent is not None and not before[parent - 1].kept:
        raise _Bad(f"{where} is kept but its parent {parent} is not")
    created = _time(item["created"], f"{where}'s created time")
    return Node(
        i, 0, parent, author, text, tuple(tokens), item["model"], item["decoding"],
        None if logprob is None else float(logprob), kept, created,
    )


def _keys(obj: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(obj, dict):
        raise _Bad(f"{where} is not a JSON object")
    missing = [k for k in keys if k not in obj]
    extra = sorted(k for k in obj if k not in keys)
    if missing:
        raise _Bad(f"{where} lacks {', '.join(missing)}")
    if extra:
        raise _Bad(f"{where} has unknown keys {visible(', '.join(extra))[:80]}")


def _time(value: Any, where: str) -> str:
    ok = isinstance(value, str) and _TIME.fullmatch(value) is not None
    if ok:
        try:
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            ok = False
    if not ok:
        raise _Bad(f"{where} is {_shown(value)}, not a time like 2025-01-31T12:00:00.000000Z")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_token(t: Any) -> bool:
    return isinstance(t, str) and 0 < len(t) <= MAX_TOKEN and not any(ch.isspace() for ch in t) and not _control(t, "")


def _control(text: str, allowed: str) -> bool:
    """Whether ``text`` holds a control character (Cc) other than those ``allowed``."""
    return any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text)


def _shown(value: Any) -> str:
    return visible(repr(value))[:60]

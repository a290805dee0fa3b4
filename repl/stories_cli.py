"""``story-repl stories``: list, show, export and import the stories kept in ``stories.db``."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from model.errors import StoryError
from model.story.db import StoryDB, stories_path
from model.story.export import FORMATS, export_story, import_story
from model.story.text import spacing
from model.story.validate import MAX_FILE_BYTES
from model.storage.files import atomic_write
from model.storage.untrusted import read_regular, visible

USER_STYLE = "bold"
MODEL_STYLE = "italic cyan"


def add_stories_parser(sub) -> None:
    """The ``stories`` subcommand and its actions, on the main parser's subparsers ``sub``."""
    s = sub.add_parser("stories", help="list, show, export or import the stories written in the REPL")
    acts = s.add_subparsers(dest="action", metavar="list|show|export|import", required=True)
    ls = acts.add_parser("list", help="every story: title, corpus, words, last change")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    sh = acts.add_parser("show", help="the story's text, the user's words and the model's styled apart")
    sh.add_argument("story", metavar="ID", help="the story's id or title")
    ex = acts.add_parser("export", help="write a story as Markdown, plain text or JSON (the whole tree)")
    ex.add_argument("story", metavar="ID", help="the story's id or title")
    ex.add_argument("--format", choices=FORMATS, default="md", help="md (default), txt or json")
    ex.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of standard output")
    im = acts.add_parser("import", help="add a story from a file written by `stories export --format json`")
    im.add_argument("file", metavar="FILE")


def run_stories(args: argparse.Namespace) -> int:
    """Run one ``stories`` action; errors are StoryErrors (one line)."""
    if args.action == "import":
        data = _read_story_file(args.file)
        with StoryDB.open() as db:
            story = import_story(db, data, args.file)
            nodes = len(db.tree(story.id))
        print(f"imported story {story.id} {visible(story.title)!r} ({nodes} nodes)")
        return 0
    if args.action == "list" and not stories_path().exists():
        return _print_list([], args.json)
    with StoryDB.open(create=False) as db:
        if args.action == "list":
            return _print_list(db.list_stories(), args.json)
        story = db.find_story(args.story)
        if args.action == "show":
            _show(story, db.path(story.head))
            return 0
        data = export_story(db, story, args.format)
    if args.out:
        try:
            atomic_write(Path(args.out), data)
        except OSError as e:
            raise StoryError(f"cannot write {visible(args.out)}: {e.strerror or e}; choose another -o FILE") from None
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _read_story_file(name: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        what = "not a file" if path.exists() else "missing"
        raise StoryError(f"{visible(name)} is {what}; pass a file written by `story-repl stories export ID --format json`")
    return read_regular(path, MAX_FILE_BYTES)


def _print_list(listings, as_json: bool) -> int:
    if as_json:
        from repl.models import print_json

        print_json({"stories": [
            {"id": x.story.id, "title": x.story.title, "corpus": x.story.corpus_name, "sha256": x.story.corpus_sha256,
             "words": x.words, "nodes": x.nodes, "created": x.story.created, "updated": x.story.updated}
            for x in listings
        ]})
        return 0
    console = Console(highlight=False)
    if not listings:
        console.print("no stories yet: write one in the REPL, or `story-repl stories import FILE`")
        return 0
    table = Table(box=None, header_style="bold")
    for col, justify in (("id", "right"), ("title", "left"), ("corpus", "left"), ("words", "right"), ("last change", "left")):
        table.add_column(col, justify=justify)
    for x in listings:
        table.add_row(str(x.story.id), Text(visible(x.story.title)), Text(visible(x.story.corpus_name)), f"{x.words:,}", _local(x.story.updated))
    console.print(table)
    return 0


def _local(stamp: str) -> str:
    """A stored UTC time in the local time zone, to the minute."""
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def _show(story, path) -> None:
    console = Console(highlight=False)
    console.print(Text(visible(story.title), style="bold underline"))
    console.print(Text(f"{visible(story.corpus_name)}: your words in bold, the model's in italics", style="dim"))
    body = Text()
    for node, space in zip(path, spacing([n.text for n in path])):
        if space:
            body.append(" ")
        shown = "\n".join(visible(line) for line in node.text.split("\n"))
        body.append(shown, style=USER_STYLE if node.author == "user" else MODEL_STYLE)
    if not path:
        body.append("(empty)", style="dim")
    console.print(body)

"""``story-repl complete``: the REPL's completer as a line protocol, for scripts and editor plugins.

Each line on stdin is a buffer as a JSON string; each answer is one JSON line, flushed at once:
``{"menu": [{"word", "prob", "keys", "text", "delete"}, ...], "ghost", "ghost_delete", "prefix"}``,
the first ``-k`` entries of the menu and the grey continuation the REPL would show for that
buffer, through the same adapters and :class:`model.prediction.menu.Menu` (a pick deletes
``delete`` characters before the cursor and inserts ``text``; so does the continuation). A line that is not a JSON string gets ``{"error": "..."}``
and the process goes on.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from model.prediction.menu import MENU_MIN, Menu
from repl.completer import GhostSuggest, WordCompleter
from repl.models import json_line


class Answerer:
    """The REPL's menu and continuation for one buffer at a time, as JSON-ready dicts."""

    def __init__(self, predictor: Any, k: int = MENU_MIN, repeat: bool = False, ghost: bool = True):
        self.k = int(k)
        self.completer = WordCompleter(lambda: predictor, lambda: self.k, Menu(repeat=repeat, ghost_enabled=ghost))
        self.ghosts = GhostSuggest(self.completer)

    def answer(self, text: str) -> dict[str, Any]:
        from prompt_toolkit.document import Document

        prefix, entries = self.completer.lookup(text)
        suggestion = self.ghosts.get_suggestion(None, Document(text))
        return {
            "menu": [e.as_dict() for e in entries[: self.k]],
            "ghost": suggestion.text if suggestion is not None else "",
            "ghost_delete": getattr(suggestion, "delete", 0),
            "prefix": prefix,
        }

    def answer_line(self, line: str) -> dict[str, Any]:
        try:
            text = json.loads(line)
        except ValueError as e:
            return {"error": f"not a JSON string ({e.msg} at column {e.colno}); send each buffer as a JSON string, e.g. \"had a \""}
        if not isinstance(text, str):
            return {"error": f"expected a JSON string, got {type(text).__name__}; send each buffer as a JSON string"}
        return self.answer(text)


def serve(answerer: Answerer, stdin: TextIO, stdout: TextIO) -> int:
    """Answer every line of ``stdin`` on ``stdout``; returns the number of lines answered."""
    n = 0
    for line in stdin:
        line = line.rstrip("\r\n")
        try:
            out = answerer.answer_line(line)
        except Exception as e:  # noqa: BLE001 - one bad buffer never ends the process
            out = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        stdout.write(json_line(out) + "\n")
        stdout.flush()
        n += 1
    return n


def run_complete(args: argparse.Namespace) -> int:
    from repl.models import check_positive, make_predictor, obtain_bundle

    check_positive(args.k, "-k")
    bundle = obtain_bundle(args)
    predictor = make_predictor(bundle, args)
    answerer = Answerer(predictor, args.k, repeat=bool(getattr(args, "repeat", False)), ghost=not getattr(args, "no_ghost", False))
    try:
        stdin = sys.stdin
        if hasattr(stdin, "reconfigure"):
            stdin.reconfigure(encoding="utf-8", errors="replace")
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(encoding="utf-8")
        serve(answerer, stdin, sys.stdout)
    except KeyboardInterrupt:
        return 130
    return 0

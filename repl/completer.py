"""Completions as the user types: next words with probabilities, command names and paths.

The completer is a small generator over a ``Document``. The session wraps it in a
``ThreadedCompleter`` so a slow request never blocks typing; results are cached per
context by the predictor, and a request whose text has changed meanwhile yields nothing.
"""
from __future__ import annotations

from typing import Callable, Iterable

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from model.config import ARCHS
from model.tokenize import is_cjk
from repl.commands import ALIASES, COMMANDS

PATH_COMMANDS = {"train", "corpus", "save", "load", "eval"}
MENU_MIN = 10  # the menu shows at least this many words, even when :topk is smaller


class WordCompleter(Completer):
    """Next-word completions from ``get_predictor()`` (None while no model is loaded)."""

    def __init__(self, get_predictor: Callable[[], object], get_k: Callable[[], int]):
        self.get_predictor = get_predictor
        self.get_k = get_k
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if text.lstrip().startswith(":"):
            yield from self._commands(text.lstrip(), complete_event)
            return
        predictor = self.get_predictor()
        if predictor is None or len(text) > 10_000:
            return
        context, prefix = predictor.split_prefix(text)
        ids, _ = predictor.encode(context)
        k = max(self.get_k(), MENU_MIN)
        for word, p in predictor.top_k(ids, k, prefix):
            cjk = is_cjk(word)
            yield Completion(
                word if cjk else word + " ",
                start_position=-len(prefix),
                display=word,
                display_meta=f"{p * 100:.1f}%",
            )

    def _commands(self, text: str, event: CompleteEvent) -> Iterable[Completion]:
        word, sep, rest = text[1:].partition(" ")
        if not sep:
            for name, spec in COMMANDS.items():
                if name.startswith(word.lower()):
                    yield Completion(f":{name} ", start_position=-len(text), display=f":{name}", display_meta=spec.help)
            return
        name = ALIASES.get(word.lower(), word.lower())
        if name in PATH_COMMANDS:
            sub = Document(rest.lstrip(), len(rest.lstrip()))
            yield from self.paths.get_completions(sub, event)
        elif name == "arch":
            for arch in ARCHS:
                if arch.startswith(rest.strip()):
                    yield Completion(arch, start_position=-len(rest.strip()))

"""The REPL's completions through prompt_toolkit: the word menu, the grey continuation, the
Alt-1 … Alt-9 picks, command names and paths.

The words, their order and their key costs come from :class:`model.prediction.menu.Menu`;
this module only adapts it to prompt_toolkit (:class:`WordCompleter`, :class:`GhostSuggest`,
:func:`pick`, :func:`offer_at_prompt`) and completes ``:`` commands.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from prompt_toolkit.auto_suggest import AutoSuggest, Suggestion
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from model.config import ARCHS
from model.prediction.menu import DIRECT_PICKS, MENU_MIN, Entry, Menu, ghost_fill
from model.storage.untrusted import visible
from repl.commands import ALIASES, COMMANDS

PATH_COMMANDS = {"train", "corpus", "save", "load", "eval"}
CORPUS_COMMANDS = {"train", "corpus", "eval"}  # these also take a shipped corpus by name
MAX_TEXT = 10_000  # longer buffers get no completions (a pasted book is not typed)


# ---- prompt_toolkit ------------------------------------------------------------------------
class WordCompleter(Completer):
    """Next-word completions from ``get_predictor()`` (None while no model is loaded), numbered
    1-9 for Alt-1 … Alt-9; command names and paths after ``:``."""

    def __init__(self, get_predictor: Callable[[], object], get_k: Callable[[], int], menu: Menu | None = None):
        self.get_predictor = get_predictor
        self.get_k = get_k
        self.menu = menu if menu is not None else Menu()
        self.paths = PathCompleter(expanduser=True)

    def current(self) -> Menu | None:
        """The menu over the current predictor (None while no model is loaded)."""
        pred = self.get_predictor()
        if pred is None:
            return None
        self.menu.use(pred)
        return self.menu

    def menu_size(self) -> int:
        return max(int(self.get_k()), MENU_MIN)

    def offers_first_word(self) -> bool:
        """Whether the empty line shows the menu and the grey continuation: a model is loaded
        and a story stands before the line (:meth:`Menu.offers_first_word`)."""
        return self.get_predictor() is not None and self.menu.offers_first_word()

    def lookup(self, text: str) -> tuple[str, list[Entry]]:
        """(partial word, entries) the menu shows for ``text`` ('' and [] for commands and long buffers)."""
        if text.lstrip().startswith(":") or len(text) > MAX_TEXT:
            return "", []
        menu = self.current()
        if menu is None:
            return "", []
        return menu.lookup(text, self.menu_size())

    def safe_lookup(self, text: str) -> tuple[str, list[Entry]]:
        """:meth:`lookup` for the prompt: a failing request shows no menu rather than an error."""
        try:
            return self.lookup(text)
        except Exception:  # noqa: BLE001 - typing goes on whatever the predictor does
            return "", []

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if text.lstrip().startswith(":"):
            yield from self._commands(text.lstrip(), complete_event)
            return
        prefix, entries = self.safe_lookup(text)
        for rank, e in enumerate(entries, start=1):
            word = visible(e.shown)  # a word from a file never drives the terminal
            label = f"{rank} {word}" if rank <= DIRECT_PICKS else f"  {word}"
            yield Completion(e.text, start_position=-e.delete, display=label, display_meta=f"{e.prob * 100:.1f}%")

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
            if name in CORPUS_COMMANDS:
                yield from _shipped(rest.lstrip())
            yield from self.paths.get_completions(sub, event)
        elif name == "arch":
            for arch in ARCHS:
                if arch.startswith(rest.strip()):
                    yield Completion(arch, start_position=-len(rest.strip()))


def _shipped(typed: str) -> Iterable[Completion]:
    """The shipped corpora whose names start with ``typed`` (``tiny`` → ``tinyshakespeare``)."""
    import corpora

    if "/" in typed or "\\" in typed:
        return
    for name in corpora.names():
        if name.startswith(typed) and name != typed:
            yield Completion(name, start_position=-len(typed), display_meta="shipped corpus")


class GhostSuggestion(Suggestion):
    """A grey continuation whose acceptance first deletes ``delete`` characters before the cursor."""

    def __init__(self, text: str, delete: int = 0):
        super().__init__(text)
        self.delete = delete


def accept_ghost(buffer: Any, whole: bool = True) -> None:
    """Accept the grey continuation (→, Ctrl-E) or its next word (Alt-F), deleting first what it replaces."""
    suggestion = buffer.suggestion
    if suggestion is None or not suggestion.text:
        return
    buffer.delete_before_cursor(getattr(suggestion, "delete", 0))
    buffer.insert_text(suggestion.text if whole else ghost_fill(suggestion.text))


class GhostSuggest(AutoSuggest):
    """prompt_toolkit's auto-suggestion: the completer's grey continuation (see :meth:`Menu.ghost`)."""

    def __init__(self, completer: WordCompleter):
        self.completer = completer

    def get_suggestion(self, buffer: Any, document: Document) -> Suggestion | None:
        text = document.text
        if not document.is_cursor_at_the_end or text.lstrip().startswith(":") or len(text) > MAX_TEXT:
            return None
        try:
            menu = self.completer.current()
            if menu is None or not menu.ghost_enabled:
                return None
            ghost = menu.ghost_edit(text)
        except Exception:  # noqa: BLE001 - typing goes on whatever the predictor does
            return None
        return GhostSuggestion(ghost.text, ghost.delete) if ghost.text else None


def offer_at_prompt(buffer: Any, completer: WordCompleter) -> None:
    """A new prompt opens the menu and the grey continuation for what it holds: the text a
    story key put back, or, on the empty line after a story, the line's first word.
    prompt_toolkit opens both only when text is inserted: inserting nothing starts them as a
    typed key does (in their threads; the first key typed replaces them)."""
    if buffer.complete_state is not None or buffer.read_only():
        return
    if buffer.text or completer.offers_first_word():
        buffer.insert_text("")


def pick(buffer: Any, completer: WordCompleter, n: int) -> bool:
    """Insert menu entry ``n`` (1-based) for the buffer's text, replacing the partial word (Alt-n).

    Uses the open menu's own entries when it is showing the current text, else asks the
    completer (same words, same order). False if the menu has fewer than ``n`` entries.
    """
    state = buffer.complete_state
    if state is not None and len(state.completions) >= n:
        buffer.apply_completion(state.completions[n - 1])  # the open menu (a Tab selection included)
        return True
    if state is not None and state.complete_index is not None:
        return False
    document = buffer.document
    if not document.is_cursor_at_the_end:
        return False
    _, entries = completer.safe_lookup(document.text)
    if len(entries) < n:
        return False
    entry = entries[n - 1]
    buffer.delete_before_cursor(entry.delete)
    buffer.insert_text(entry.text)
    return True

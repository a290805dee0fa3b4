"""The prompt's key bindings, on top of prompt_toolkit's own (Tab, arrows, → and Alt-F for the grey text)."""
from __future__ import annotations

from typing import Any

from repl import render
from model.prediction.menu import DIRECT_PICKS

KEYS_HELP = (
    "Type words to see the next word. Alt-1 … Alt-9 insert menu entry 1 … 9 with its space; Tab or the arrows "
    "select in the menu. After a word, the likely next words show in grey: → or Ctrl-E accepts them all, "
    "Alt-F one word (:ghost on|off). Ctrl-C clears the line, Ctrl-D quits."
)


def key_bindings(session: Any):
    """Ctrl-C clears the line (on an empty line it also stops training), Ctrl-D leaves, Enter on
    a selected menu entry only closes the menu, Alt-1 … Alt-9 pick an entry."""
    from prompt_toolkit.filters import completion_is_selected, has_completions
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @kb.add("c-c")
    def _(event):
        buf = event.app.current_buffer
        if not buf.text and session.training:
            session.stop_event.set()
            session.out(render.notice("stopping training after this batch; the best weights so far are kept"))
        buf.reset()

    @kb.add("c-d")
    def _(event):
        event.app.exit(exception=EOFError)

    @kb.add("enter", filter=has_completions & completion_is_selected)
    def _(event):
        event.app.current_buffer.complete_state = None

    for n in range(1, DIRECT_PICKS + 1):
        kb.add("escape", str(n))(picker(session, n))
    return kb


def picker(session: Any, n: int):
    """The Alt-n key: insert menu entry n (and its space) in one key."""
    from repl.completer import pick

    def handler(event) -> None:
        if session.completer is not None:
            pick(event.app.current_buffer, session.completer, n)

    return handler

"""The prompt's key bindings, on top of prompt_toolkit's own (Tab, arrows, → and Alt-F for the grey text)."""
from __future__ import annotations

from typing import Any, Callable

from repl import render
from model.prediction.menu import DIRECT_PICKS

KEYS_HELP = (
    "Type words to see the next word (with a story, the empty line shows the menu for its first word; Up still "
    "recalls earlier lines). Alt-1 … Alt-9 insert menu entry 1 … 9 with its space; Tab or the arrows "
    "select in the menu. After a word, the likely next words show in grey: → or Ctrl-E accepts them all, "
    "Alt-F one word (:ghost on|off). Ctrl-C clears the line, Ctrl-D quits. "
    "The story: Enter keeps your line and proposes a continuation; Alt-A keeps the proposal, Alt-R proposes "
    "another, Enter on an empty line keeps it and proposes the next, Alt-U undoes a step, Alt-Y redoes it, "
    "Alt-T then K takes alternative K of :alts; Ctrl-C stops a proposal being written."
)
# Keys that run a story command at the prompt; what was typed comes back on the next prompt.
# They replace prompt_toolkit's emacs Alt-A (previous sentence, a no-op), Alt-U (upper-case
# word) and Alt-Y (yank-pop); Alt-R is free, and Alt-T (swap words, a no-op) stays a prefix.
STORY_KEYS = {"a": ":accept", "r": ":retry", "u": ":undo", "y": ":redo"}


def key_bindings(session: Any):
    """Ctrl-C clears the line (on an empty line it also stops training), Ctrl-D leaves, Enter on
    a selected menu entry only closes the menu, Alt-1 … Alt-9 pick an entry, Up on the empty
    line's menu (nothing selected) recalls the previous line."""
    from prompt_toolkit.filters import completion_is_selected, has_completions
    from prompt_toolkit.key_binding import KeyBindings

    from repl.completer import offer_at_prompt

    kb = KeyBindings()
    first_word_menu = _first_word_menu()

    @kb.add("c-c")
    def _(event):
        buf = event.app.current_buffer
        if not buf.text and session.training:
            session.stop_event.set()
            session.out(render.notice("stopping training after this batch; the best weights so far are kept"))
        cleared = bool(buf.text)
        buf.reset()
        if cleared and session.completer is not None:  # the cleared line's menu; Ctrl-C again closes it
            offer_at_prompt(buf, session.completer)

    @kb.add("up", filter=first_word_menu)
    @kb.add("c-p", filter=first_word_menu)
    def _(event):
        event.current_buffer.history_backward(count=event.arg)  # Up recalls a line, as on any empty prompt

    @kb.add("c-d")
    def _(event):
        event.app.exit(exception=EOFError)

    @kb.add("enter", filter=has_completions & completion_is_selected)
    def _(event):
        event.app.current_buffer.complete_state = None

    for n in range(1, DIRECT_PICKS + 1):
        kb.add("escape", str(n))(picker(session, n))
    for key, line in STORY_KEYS.items():
        kb.add("escape", key)(story_key(session, line))
    for n in range(1, DIRECT_PICKS + 1):
        kb.add("escape", "t", str(n))(story_key(session, f":take {n}"))
    add_ghost_keys(kb)
    add_punctuation_keys(kb, lambda: _casing(session))
    return kb


def _casing(session: Any):
    """How the model in use writes words (:class:`model.text.casing.Casing`), or None."""
    completer = getattr(session, "completer", None)
    return completer.menu.casing() if completer is not None else None


def _first_word_menu():
    """The filter: the empty line shows the menu for its first word (after a story), nothing selected."""
    from prompt_toolkit.application.current import get_app
    from prompt_toolkit.filters import Condition

    @Condition
    def showing() -> bool:
        buf = get_app().current_buffer
        state = buf.complete_state
        return not buf.text and state is not None and state.complete_index is None

    return showing


def add_ghost_keys(kb) -> None:
    """→, Ctrl-E and Alt-F on a grey continuation that replaces a space before the cursor (a comma
    after ``acknowledged ``): prompt_toolkit's own keys only insert."""
    from prompt_toolkit.application.current import get_app
    from prompt_toolkit.filters import Condition

    from repl.completer import accept_ghost

    @Condition
    def replacing() -> bool:
        buf = get_app().current_buffer
        s = buf.suggestion
        return s is not None and bool(s.text) and getattr(s, "delete", 0) > 0 and buf.document.is_cursor_at_the_end

    for key in ("right", "c-e", "c-f"):
        kb.add(key, filter=replacing)(lambda event: accept_ghost(event.current_buffer))
    kb.add("escape", "f", filter=replacing)(lambda event: accept_ghost(event.current_buffer, whole=False))


def picker(session: Any, n: int):
    """The Alt-n key: insert menu entry n (and its space) in one key."""
    from repl.completer import pick

    def handler(event) -> None:
        if session.completer is not None:
            pick(event.app.current_buffer, session.completer, n)

    return handler


def story_key(session: Any, line: str):
    """A story key: leave the prompt as if ``line`` had been typed, keeping what was typed for
    the next prompt (the command is not added to the history)."""

    def handler(event) -> None:
        from prompt_toolkit.document import Document

        buf = event.app.current_buffer
        session.pending_text = buf.text
        buf.set_document(Document(line), bypass_readonly=True)
        event.app.exit(result=line)

    return handler


def add_punctuation_keys(kb, casing: Callable[[], Any] | None = None) -> None:
    """A closing mark (``,`` ``.`` ``)`` …) typed right after the space a pick, Tab or the grey
    text inserted goes before that space: ``acknowledged `` + ``,`` → ``acknowledged, ``. A quote
    or dash typed there is written as its pick would be (:func:`model.text.writing.taken_space`)
    when that takes the space: ``proud `` + ``-`` → ``proud-``, ``ladies `` + ``'`` → ``ladies' ``;
    an opening quote stays after it (``said '``). ``casing``: how the model writes words, or None."""
    from prompt_toolkit.application.current import get_app
    from prompt_toolkit.filters import Condition

    from model.text.writing import ATTACHING, TAKING, taken_space

    @Condition
    def after_space() -> bool:
        buf = get_app().current_buffer
        text = buf.text
        return buf.document.is_cursor_at_the_end and text.endswith(" ") and not text.endswith("  ") and not text.lstrip().startswith(":")

    def inserted(event) -> bool:
        """Whether the space before the cursor was inserted (a pick, Tab, the grey text, a mark that moved it)."""
        buf = event.current_buffer
        prev = event.previous_key_sequence
        typed = len(prev) == 1 and len(str(prev[0].key)) == 1  # the space was typed, not inserted
        return not typed or getattr(buf, "story_moved_space", None) == buf.text

    def closing(event) -> None:
        buf = event.current_buffer
        if not inserted(event):
            buf.insert_text(event.data)
            return
        buf.delete_before_cursor(1)
        buf.insert_text(event.data + " ")
        buf.story_moved_space = buf.text

    def quote_or_dash(event) -> None:
        buf = event.current_buffer
        edit = taken_space(buf.text, event.data, casing() if casing is not None else None) if inserted(event) else None
        if edit is None:
            buf.insert_text(event.data)
            return
        buf.delete_before_cursor(edit.delete)
        buf.insert_text(edit.text)
        buf.story_moved_space = buf.text

    for mark in sorted(ATTACHING):
        kb.add(mark, filter=after_space)(closing)
    for mark in sorted(TAKING):
        kb.add(mark, filter=after_space)(quote_or_dash)

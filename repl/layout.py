"""The prompt: its style, and the PromptSession with the menu, grey text, toolbar and keys."""
from __future__ import annotations

from typing import Any

STYLE = {
    "toolbar": "bg:#303030 #d0d0d0",
    "toolbar.key": "bg:#505050 #ffffff bold",
    "toolbar.busy": "bg:#875f00 #ffffff bold",
    "bottom-toolbar": "noreverse",
}
PROMPT = "› "


def make_prompt(session: Any, **io):
    """The PromptSession: threaded completer, toolbar, key bindings, persistent history (kept in
    memory, with one notice, when its file cannot be used); the empty line after a story shows
    the menu for its first word (:func:`first_word`, :func:`follow_first_word`).
    ``io`` may pass ``input``/``output`` (tests use a pipe). Sets ``session.completer``."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.auto_suggest import ThreadedAutoSuggest
    from prompt_toolkit.completion import ThreadedCompleter
    from prompt_toolkit.styles import Style

    from repl import render
    from repl.completer import GhostSuggest, WordCompleter
    from repl.journal import prompt_history
    from repl.keys import key_bindings
    from repl.toolbar import toolbar

    completer = WordCompleter(lambda: session.predictor, lambda: session.k, session.menu)
    session.completer = completer
    prompt = PromptSession(
        history=prompt_history(lambda message: session.out(render.notice(message))),
        completer=ThreadedCompleter(completer),  # completions never block typing
        auto_suggest=ThreadedAutoSuggest(GhostSuggest(completer)),  # the grey continuation
        complete_while_typing=True,
        bottom_toolbar=lambda: toolbar(session),
        refresh_interval=0.5,
        key_bindings=key_bindings(session),
        style=Style.from_dict(STYLE),
        enable_history_search=False,
        **io,
    )
    follow_first_word(prompt.default_buffer, completer)
    return prompt


def follow_first_word(buffer: Any, completer: Any) -> None:
    """Whenever the line becomes empty while the prompt runs (deleted, recalled back), the menu
    and the grey continuation for its first word come back after a story
    (:func:`repl.completer.offer_at_prompt`; a prompt opening asks through :func:`first_word`)."""
    from prompt_toolkit.application.current import get_app

    from repl.completer import offer_at_prompt

    def changed(buf: Any) -> None:
        if not buf.text and get_app().is_running:
            offer_at_prompt(buf, completer)

    buffer.on_text_changed += changed


def first_word(session: Any):
    """The ``pre_run`` of every prompt: the menu and the grey continuation without a key
    typed, for the text a story key put back or the first word of the line after a story."""
    from prompt_toolkit.application.current import get_app

    from repl.completer import offer_at_prompt

    def pre_run() -> None:
        if session.completer is not None:
            offer_at_prompt(get_app().current_buffer, session.completer)

    return pre_run

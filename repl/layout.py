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
    memory, with one notice, when its file cannot be used).
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
    return PromptSession(
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

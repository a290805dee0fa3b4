"""``:help`` and ``:quit``."""
from __future__ import annotations

from repl import commands as cmds
from repl import render
from repl.keys import KEYS_HELP


class GeneralCommands:
    def do_quit(self, arg) -> bool:
        return False

    def do_help(self, arg) -> None:
        self.out(render.help_table(cmds.help_rows()))
        self.out(render.notice(KEYS_HELP, "dim"))

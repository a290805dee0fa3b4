"""The real story-repl in a pseudo-terminal, driven by keystrokes, as a person would use it."""
from __future__ import annotations

import os
import re
import time

import pexpect
import pytest

from conftest import BIN, ROOT

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r")


class Term:
    """A story-repl child process plus everything it has printed (escape codes removed)."""

    def __init__(self, home, *args, timeout=120):
        env = dict(
            os.environ,
            STORY_REPL_HOME=str(home),
            TERM="xterm-256color",
            COLUMNS="110",
            LINES="40",
        )
        self.child = pexpect.spawn(
            str(BIN), list(args), cwd=str(ROOT), env=env, encoding="utf-8", timeout=timeout, dimensions=(40, 110)
        )
        self.text = ""
        self.pos = 0  # where the next expect starts looking

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def expect(self, pattern: str, timeout: float = 30) -> str:
        """Wait for ``pattern`` in output printed since the previous match; return that output."""
        deadline = time.time() + timeout
        eof = False
        while True:
            clean = ANSI.sub("", self.text)
            m = re.search(pattern, clean[self.pos :], re.S)
            if m:
                seen = clean[self.pos : self.pos + m.end()]
                self.pos += m.end()
                return seen
            if time.time() > deadline or eof:
                raise AssertionError(f"never saw {pattern!r}; output since last match:\n{clean[self.pos:][-3000:]}")
            eof = not self._read()

    def printed(self, pattern: str, timeout: float = 30) -> bool:
        """Wait up to ``timeout`` for ``pattern`` anywhere in everything printed (the next
        expect still starts where it did): prompt_toolkit redraws only what changed, so a
        toolbar label may come before or after the line that prompted it."""
        deadline = time.time() + timeout
        eof = False
        while True:
            if re.search(pattern, ANSI.sub("", self.text), re.S):
                return True
            if time.time() > deadline or eof:
                return False
            eof = not self._read()

    def _read(self) -> bool:
        """Add what the child printed in the next 0.2 s to ``text``; False at end of file."""
        try:
            chunk = self.child.read_nonblocking(100000, timeout=0.2)
            if "\x1b[6n" in chunk:  # answer cursor-position requests, as a terminal does
                self.child.send("\x1b[1;1R" * chunk.count("\x1b[6n"))
            self.text += chunk
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            return False
        return True

    def quit_with(self, keys: str) -> int:
        self.child.send(keys)
        self.child.expect(pexpect.EOF, timeout=30)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        self.child.close(force=True)


def test_end_to_end_session(tmp_path):
    home = tmp_path / "home"
    t = Term(home)
    try:
        # First start: no cached model, so it trains with a progress bar, then prompts.
        t.expect(r"training lstm.*(acc|loss).*reached the accuracy ceiling", timeout=180)
        t.expect(r"corpus belling_the_cat.*model lstm/3.*mode greedy")
        assert (home / "models").is_dir() and any((home / "models").iterdir())

        t.send("had a gen")
        t.expect(r"general\s+\d+\.\d%")
        t.send("eral ")
        screen = t.expect(r"council\s+\d+\.\d%")
        assert re.search(r"council\s+9\d\.\d%", screen)

        t.send("\x15")  # Ctrl-U: clear the line
        t.send(":topk 5\r")
        t.expect(r"top 5 words")
        t.send("had a general\r")
        screen = t.expect(r"next word after .had a general.*\[greedy\]")
        table = screen[screen.rindex("next word after"):]
        rows = re.findall(r"^\s*(\d+)\s+(\S+)\s+(\d+\.\d)%", table, re.M)
        assert [r[0] for r in rows[:5]] == ["1", "2", "3", "4", "5"] and len(rows) == 5
        assert rows[0][1] == "council"
        assert "council to consider" in table

        t.send(":sample 0.7\r")
        t.expect(r"mode sample T=0\.7")
        t.send(":greedy\r")
        t.expect(r"greedy decoding.*mode greedy")

        t.send(":nope\r")
        t.expect(r"error: unknown command :nope")

        t.send(":train corpora/belling_the_cat.txt\r")
        t.expect(r"training in the background")
        t.expect(r"(epoch \d+/\d+|training:)")
        t.expect(r"reached the accuracy ceiling.*now using", timeout=120)

        assert t.quit_with(":quit\r") == 0
    finally:
        t.close()


def test_second_start_loads_cache_and_history_persists(home_with_default):
    t = Term(home_with_default)
    try:
        out = t.expect(r"corpus belling_the_cat.*idle", timeout=60)
        assert "training lstm" not in out  # cached: no training
        t.send("the mice\r")
        t.expect(r"next word after.*\[greedy\].*›")  # wait for the next prompt
        assert t.quit_with("\x04") == 0  # Ctrl-D quits
    finally:
        t.close()
    assert "the mice" in (home_with_default / "history").read_text(encoding="utf-8")
    t = Term(home_with_default)
    try:
        t.expect(r"idle", timeout=60)
        t.send("\x1b[A")  # Up arrow recalls the previous session's line
        t.expect(r"the mice")  # redrawn on the prompt line
        t.send("\x03")  # Ctrl-C clears the line and stays
        t.send("mice looked\r")
        t.expect(r"next word after .mice looked.*›")
        assert t.quit_with(":quit\r") == 0
    finally:
        t.close()


def test_tab_inserts_the_completion(home_with_default):
    t = Term(home_with_default)
    try:
        t.expect(r"idle", timeout=60)
        t.send("had a general coun")
        t.expect(r"council\s+\d+\.\d%")
        t.send("\t")
        t.send("\r")  # Enter closes the menu and keeps the inserted word
        t.send("\r")
        t.expect(r"next word after .a general council.")
        t.expect(r"1\s+to\s+\d")  # "had a general council" -> "to"
        assert t.quit_with(":q\r") == 0
    finally:
        t.close()

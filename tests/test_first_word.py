"""The empty line after a story: the menu and the grey continuation for its first word, at the
prompt (a pipe for input, no terminal) and for the per-line typist."""
from __future__ import annotations

import threading
import time

import numpy as np
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from model.config import Config
from model.evaluation import per_line as pl
from model.evaluation.keystrokes import NOW
from model.prediction.menu import Menu
from model.text.vocab import Vocab
from repl.layout import first_word
from repl.session import Session

from helpers import WordsBySpace

ALT_1, UP = "\x1b1", "\x1b[A"


class Fixed(WordsBySpace):
    """The same next words after any context: council 60%, general 30%, mice 10%."""

    def __init__(self):
        self.vocab = Vocab(["council", "general", "mice"], [3, 2, 1])
        self.context = 3
        self.casing = None


    def ranking(self, ids):
        return np.array([0.6, 0.3, 0.1]), np.array([0, 1, 2])

    def distribution(self, ids):
        return self.ranking(ids)[0]


def until(cond, timeout=20.0):
    """Wait for ``cond()`` to be true (its value), or None after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.01)
    return None


def prompt_with(story: tuple[str, ...], keys, history: str | None = None) -> tuple[str, dict]:
    """Open the REPL's prompt (its ``pre_run`` included) with ``story`` before the line; ``keys(pipe,
    buffer, seen)`` types in a thread and notes what it saw. Returns (the line entered, seen)."""
    session = Session("belling_the_cat", Config())
    session.predictor = Fixed()
    session.menu.context = lambda: story  # the story so far, as the story state gives it
    seen: dict = {}
    with create_pipe_input() as pipe:
        prompt = session.make_prompt(input=pipe, output=DummyOutput())
        if history is not None:
            prompt.history.append_string(history)
        t = threading.Thread(target=lambda: keys(pipe, prompt.app.current_buffer, seen))
        t.start()
        line = prompt.prompt("› ", pre_run=first_word(session))
        t.join(timeout=30)
    return line, seen


def menu_of(buf):
    state = buf.complete_state
    return [c.display_text for c in state.completions] if state is not None and state.completions else None


def test_the_empty_line_after_a_story_shows_the_menu_and_alt_1_picks_from_it():
    def keys(pipe, buf, seen):
        seen["menu"] = until(lambda: menu_of(buf))
        seen["ghost"] = until(lambda: buf.suggestion and buf.suggestion.text)
        pipe.send_text(ALT_1)
        until(lambda: buf.text)
        pipe.send_text("\r")

    line, seen = prompt_with(("the", "mice", "had", "a", "general"), keys)
    assert seen["menu"] == ["1 council", "2 general", "3 mice"]  # no key typed yet
    assert seen["ghost"].startswith("council")  # and the grey continuation
    assert line == "council "


def test_typing_on_the_empty_line_replaces_its_menu_and_a_command_still_runs():
    def keys(pipe, buf, seen):
        until(lambda: menu_of(buf))
        pipe.send_text(":he")
        seen["menu"] = until(lambda: buf.text == ":he" and menu_of(buf))
        pipe.send_text("lp\r")

    line, seen = prompt_with(("the", "mice"), keys)
    assert seen["menu"] == [":help"]  # the command names, not the words
    assert line == ":help"


def test_up_on_the_empty_line_menu_recalls_the_previous_line():
    def keys(pipe, buf, seen):
        seen["menu"] = until(lambda: menu_of(buf))
        pipe.send_text(UP)  # not the menu's last entry: the line entered before
        seen["text"] = until(lambda: buf.text)
        pipe.send_text("\r")

    line, seen = prompt_with(("the", "mice"), keys, history="an earlier line")
    assert seen["menu"] and line == seen["text"] == "an earlier line"


def test_without_a_story_the_empty_line_shows_no_menu():
    def keys(pipe, buf, seen):
        time.sleep(0.5)
        seen["menu"], seen["ghost"] = menu_of(buf), buf.suggestion
        pipe.send_text("\r")

    line, seen = prompt_with((), keys)  # the story off, or nothing written yet
    assert line == "" and seen["menu"] is None and seen["ghost"] is None


# ---- the per-line typist --------------------------------------------------------------------
class Bigram(Fixed):
    """P(next | last word): ``FOLLOW[last]`` gets 0.9; no context: "there" 0.5, "they" 0.3."""

    WORDS = ["the", "cat", "sat", "then", "there", "they", "ran", "off"]
    FOLLOW = {"the": "cat", "cat": "sat", "sat": "then", "then": "ran", "ran": "off", "off": "the", "there": "the", "they": "the"}

    def __init__(self):
        self.vocab = Vocab(self.WORDS, [1] * len(self.WORDS))
        self.context = 3
        self.casing = None

    def ranking(self, ids):
        table = {self.FOLLOW[self.WORDS[ids[-1]]]: 0.9} if ids else {"there": 0.5, "they": 0.3}
        probs = np.full(len(self.WORDS), (1.0 - sum(table.values())) / (len(self.WORDS) - len(table)))
        for w, p in table.items():
            probs[self.vocab.index[w]] = p
        return probs, np.argsort(-probs, kind="stable")


LINES = [["the", "cat", "sat"], ["then", "ran", "off"], ["the", "cat", "sat"], ["then", "ran", "off"]]


def first_word_keys(story: bool) -> list[int]:
    """The keys the menu-1 typist spends on each line's first word."""
    tokens, line_of = pl.lines_tokens(LINES)
    pred = Bigram()
    typist = pl.LineTypist(Menu(pred), tokens, 1, NOW, line_of=line_of, story=story, predictor=pred)
    out = []
    while not typist.done:
        t, keys = typist.t, typist.keys
        typist.step()
        if t == 0 or line_of[t] != line_of[t - 1]:
            out.append(typist.keys - keys)
    return out


def test_the_line_typist_has_the_menu_on_the_empty_line_only_after_a_story():
    with_story, alone = first_word_keys(True), first_word_keys(False)
    # The first line has no story before it: "the" is typed, as every first word without a story.
    assert with_story[0] == alone[0] == len("the ")
    # After a story, the empty line offers "then" (after "sat") or "the" (after "off"): one key.
    assert with_story[1:] == [1, 1, 1]
    assert all(k > 1 for k in alone[1:])


def test_the_first_word_is_written_after_the_storys_text():
    """The empty line continues the story's text: a word after a comma stays in lower case, one
    after a full stop is capitalised, as a pick in the middle of the text would be."""
    from model.text.casing import Casing

    pred = Fixed()
    pred.casing = Casing({}, line_starts=False, sentences=True, quotations=True)
    menu = Menu(pred)
    menu.context = lambda: ("the", "mice", "met")
    for before, want in (("The mice met, ", "council "), ("The mice met. ", "Council "), ("", "Council ")):
        menu.text_before = lambda before=before: before
        assert menu.lookup("")[1][0].text == want
        assert menu.ghost_edit("").text.startswith(want.strip())

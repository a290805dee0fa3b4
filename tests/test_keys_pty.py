"""One-key picks and the grey continuation in the real REPL, in a pseudo-terminal."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow  # each test starts the REPL in a pseudo-terminal

ALT_F = "\x1bf"
RIGHT = "\x1b[C"


@pytest.fixture
def expected(default_bundle):
    """What the REPL's completer offers, from the same Menu over the same model in this process."""
    from model.prediction.predictor import Predictor
    from model.prediction.menu import Menu

    menu = Menu(Predictor(default_bundle))
    return {
        "third": menu.entries("had a ", 10)[2].word,
        "ghost": menu.ghost("had a general "),
        "ghost2": Menu(Predictor(default_bundle)).ghost("had a general " + menu.ghost("had a general ").split(" ")[0] + " "),
    }


def test_alt_3_inserts_the_third_entry(home_with_default, expected, term):
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send("had a ")
    t.expect(r"3 " + re.escape(expected["third"]) + r"\s+\d+\.\d%")  # the menu numbers its entries
    t.send("\x1b3")  # Alt-3: the word and its space, in one key
    t.send("\r")
    t.expect(r"next word after .had a " + re.escape(expected["third"]) + r".")
    assert t.quit_with(":q\r") == 0


def test_grey_continuation_alt_f_and_right_arrow(home_with_default, expected, term):
    ghost = expected["ghost"]
    words = ghost.split()
    assert len(words) >= 2, f"the model's continuation after 'had a general' is too short to test: {ghost!r}"
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send("had a general ")
    t.expect(re.escape(ghost.rstrip()))  # grey text after the cursor (only the menu's words are one per row)
    t.send(ALT_F)  # one word of it
    rest = expected["ghost2"].rstrip()
    # Wait for the continuation after that word. prompt_toolkit redraws only the cells that
    # changed, so what is printed is at least the new line's text past what the old line
    # already showed in the same cells.
    before, after = "had a general " + ghost.rstrip(), "had a general " + words[0] + " " + rest
    same = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
    if after[same:].strip():
        t.expect(re.escape(after[same:].strip()))
    t.send(RIGHT)  # the rest of it
    t.send("\r")
    line = ("had a general " + words[0] + " " + rest).split()
    t.expect(r"next word after ." + re.escape(" ".join(line[-3:])) + r".")
    t.expect(re.escape(" ".join(line)) + r".*\[greedy")
    assert t.quit_with(":q\r") == 0


def test_ghost_and_repeat_commands(home_with_default, term):
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send(":ghost off\r")
    t.expect(r"grey continuation off")
    t.send(":repeat on\r")
    t.expect(r"offered again")
    t.send(":ghost maybe\r")
    t.expect(r"error: :ghost expects on or off, got 'maybe'")
    t.send(":help\r")
    t.expect(r"Alt-1 … Alt-9")
    assert t.quit_with(":q\r") == 0


def test_the_empty_line_after_a_story_line_shows_the_menu_and_alt_1_picks(home_with_default, term):
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send(":len 4\r")
    t.expect(r"generating 4 words")
    t.send("the mice looked at one another and had a general\r")
    t.expect(r"\[greedy\].*proposal: Alt-A.*›")  # the proposal, then the next prompt, empty
    first = t.expect(r"1 (\S+)\s+\d+\.\d%")  # the menu for the line's first word, no key typed
    word = re.search(r"1 (\S+)\s+\d+\.\d%", first).group(1)
    t.send("\x1b1")  # Alt-1: that word and its space
    t.send("\r")
    t.expect(r"(?i)next word after .(?:\S+ )*general " + re.escape(word) + r".")  # the story's last words
    assert t.quit_with("\x15:q\r") == 0


def test_a_dash_typed_after_a_pick_takes_its_space_a_quote_after_a_typed_space_stays(home_with_default, expected, term):
    word = expected["third"]
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send(":len 2\r")
    t.expect(r"generating 2 words")
    t.send("had a ")
    t.expect(r"3 " + re.escape(word) + r"\s+\d+\.\d%")
    t.send("\x1b3")  # Alt-3: the word and its space
    t.send("-")  # written as its pick would be: the space goes
    t.send("\r")
    t.expect(r"› had a " + re.escape(word) + r"-\s")  # the line as entered (before: "had a young -")
    t.expect(r"\[greedy\].*›")
    t.send("the mice said '")  # a space typed stays before the quote that opens a quotation
    t.send("\r")
    t.expect(r"› the mice said '\s")
    assert t.quit_with("\x15:q\r") == 0


def test_a_line_a_story_key_put_back_shows_its_menu(home_with_default, term):
    """Text typed before a story key (Alt-U here) comes back on the next prompt with its menu
    open, as if just typed."""
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send(":len 2\r")
    t.expect(r"generating 2 words")
    t.send("the mice\r")
    t.expect(r"\[greedy\].*proposal: Alt-A.*›")
    t.send("had a ")
    t.expect(r"1 \S+\s+\d+\.\d%")
    t.send("\x1bu")  # Alt-U: undo, keeping what was typed
    t.expect(r"back to")
    t.expect(r"1 \S+\s+\d+\.\d%")  # the menu for "had a ", no key typed
    t.send("\r")
    t.expect(r"next word after .(?:\S+ )*had a.")  # the text put back was the line's
    assert t.quit_with("\x15:q\r") == 0

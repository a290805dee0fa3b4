"""The mixture in the real REPL: a new book completes at once, and a name typed once is offered."""
from __future__ import annotations

import re
import time

import pexpect
import pytest

from helpers import ANSI, ROOT

pytestmark = pytest.mark.slow  # each test starts the REPL in a pseudo-terminal and trains


def test_a_new_book_completes_while_its_lstm_trains(tmp_path, term):
    home = tmp_path / "fresh-home"  # nothing cached: no model, no ids, no n-gram
    start = time.monotonic()
    t = term(home, "--corpus", "tinyshakespeare")
    # The prompt comes first; the n-gram and the cache answer while the LSTM trains.
    t.expect(r"completing from the n-gram", timeout=120)
    t.send("now is the winter of our discontent made glorious summer by this sun of yor")
    screen = t.expect(r"york\s+\d+\.\d%", timeout=60)
    seconds = time.monotonic() - start
    # The toolbar names the parts answering: the LSTM is not in yet. prompt_toolkit redraws
    # only what changed, and under load it may draw the toolbar after the menu, so the
    # label is looked for in everything printed, waiting for it if need be.
    assert "york" in screen
    assert t.printed(r"ngram\+cache\s+\(lstm training\)", timeout=60), ANSI.sub("", t.text)[-3000:]
    print(f"first completion {seconds:.1f}s after start")

    # A name the corpus never had, typed on one line, is offered on the next after two letters.
    t.send("\x15")  # Ctrl-U: clear the line
    t.send("and zorblath the brave came to the wood\r")
    t.expect(r"next word after .*›", timeout=60)
    t.send("then zo")
    screen = t.expect(r"zorblath\s+\d+\.\d%", timeout=60)
    assert re.search(r"zorblath", screen)
    t.send("\x15")
    t.send("\x04")  # Ctrl-D: leaves after the batch under way, saving what it trained
    t.child.expect(pexpect.EOF, timeout=240)
    t.child.close()
    assert t.child.exitstatus == 0

    assert list((home / "models").glob("tinyshakespeare-*/weights.npz"))  # Ctrl-D lost no training
    # What the user wrote is kept for the next session's cache.
    writing = list((home / "writing").glob("*.txt"))
    assert writing and "zorblath" in writing[0].read_text(encoding="utf-8")


def test_the_lstm_joins_the_mixture_when_its_background_training_ends(tmp_path, term):
    """A book (over 64 KB) opens on the n-gram; the LSTM it trains in the background (one
    small epoch here) comes into the mixture with the neural cache, with no restart."""
    book = tmp_path / "fables.txt"
    text = (ROOT / "corpora" / "aesops_fables.txt").read_text(encoding="utf-8")
    book.write_text(text[:70_000], encoding="utf-8")
    t = term(tmp_path / "home", "--corpus", str(book), "--epochs", "1", "--units", "32", "--embedding-dim", "16")
    t.expect(r"completing from the n-gram", timeout=120)
    assert t.printed(r"ngram\+cache\s+\(lstm training\)", timeout=60), ANSI.sub("", t.text)[-3000:]
    t.expect(r"now using", timeout=300)
    t.send("the lion and the mo")  # a keystroke redraws the toolbar
    t.expect(r"mouse\s+\d+\.\d%", timeout=60)
    assert t.printed(r"lstm\+ngram\+cache\+ncache", timeout=60), ANSI.sub("", t.text)[-3000:]
    t.send("\x15")
    t.send(":components\r")
    t.expect(r"mixture\s+lstm\+ngram\+cache\+ncache", timeout=60)
    assert t.quit_with("\x04") == 0

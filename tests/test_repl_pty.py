"""The real story-repl in a pseudo-terminal, driven by keystrokes, as a person would use it."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow  # each test starts the REPL in a pseudo-terminal


def test_end_to_end_session(tmp_path, term):
    home = tmp_path / "home"
    t = term(home)
    # First start: no cached model, so it trains with a progress bar, then prompts.
    t.expect(r"training lstm.*(acc|loss).*reached the accuracy ceiling", timeout=180)
    t.expect(r"mode greedy.*belling_the_cat.*lstm/3")  # the toolbar: what matters most first
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


def test_second_start_loads_cache_and_history_persists(home_with_default, term):
    t = term(home_with_default)
    out = t.expect(r"idle.*belling_the_cat", timeout=60)
    assert "training lstm" not in out  # cached: no training
    t.send("the mice\r")
    t.expect(r"next word after.*\[greedy\].*›")  # wait for the next prompt
    assert t.quit_with("\x04") == 0  # Ctrl-D quits

    assert "the mice" in (home_with_default / "history").read_text(encoding="utf-8")

    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send("\x1b[A")  # Up arrow recalls the previous session's line
    t.expect(r"the mice")  # redrawn on the prompt line
    t.send("\x03")  # Ctrl-C clears the line and stays
    t.send("mice looked\r")
    t.expect(r"next word after .(mice )?mice looked.*›")  # the reopened story ends with "the mice"
    assert t.quit_with(":quit\r") == 0


def test_tab_inserts_the_completion(home_with_default, term):
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send("had a general coun")
    t.expect(r"council\s+\d+\.\d%")
    t.send("\t")
    t.send("\r")  # Enter closes the menu and keeps the inserted word
    t.send("\r")
    t.expect(r"next word after .a general council.")
    t.expect(r"1\s+to\s+\d")  # "had a general council" -> "to"
    assert t.quit_with(":q\r") == 0

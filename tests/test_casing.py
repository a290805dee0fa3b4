"""How a writer writes: what the casing learns from a text (model/text/casing.py), how a pick
is written with it (model/text/writing.py), and the case-exact typist's keys where the REPL
shows a menu after a typed mark and a pick spaces a typed quote or dash again
(model/evaluation/exact.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.errors import StoryError
from model.text.casing import Casing, casing_of_text
from model.text.tokenize import tokenize
from model.text.writing import Edit, write

# Verse that goes on in lower case after "!" (as Shakespeare does: "O, you are novices! 'tis a
# world to see"), and capitalises after "." and at every line start.
VERSE = "".join(
    f"Alas, poor {who}! {word} is the {what} of it,\nAnd the night is long, and {word} is cold.\n"
    for who, word, what in zip(
        ["soul", "lord", "heart", "boy", "man", "fool"] * 4,
        ["this", "that", "what", "there", "here", "how"] * 4,
        ["end", "sum", "worst", "best"] * 6,
    )
)
# Prose that capitalises after "!" as after ".".
PROSE = "".join(f"The dog ran off! The cat sat on a {what} mat, and {word} was all. " for what, word in
                zip(["red", "blue", "old", "new"] * 6, ["that", "this", "it", "so"] * 6)) + "\n"


def test_the_ends_of_sentence_a_text_goes_on_after_in_lower_case_are_learned():
    verse = casing_of_text(VERSE)
    assert verse.line_starts and verse.sentences and verse.continued == "!"
    assert casing_of_text(PROSE).continued == ""  # capitals after "!"
    assert casing_of_text("Oh! what a day.\n").continued == ""  # too few to say


def test_a_word_after_an_end_the_text_goes_on_after_is_in_lower_case():
    goes_on = Casing(line_starts=True, continued="!?")
    assert write("O, you are novices! ", "tis", "", goes_on).text == "tis "
    assert write("What, is it you? ", "the", "", goes_on).text == "the "
    assert write("He left. ", "the", "", goes_on).text == "The "  # a full stop still ends the sentence
    assert write("O, you are novices!\n", "the", "", goes_on).text == "The "  # a verse line still starts so
    assert write("O, you are novices! ", "tis", "", Casing(line_starts=True)).text == "Tis "


def test_a_verse_line_that_opens_with_a_quote_or_an_elision_starts_with_a_capital():
    verse, prose = Casing(line_starts=True), Casing(line_starts=False)
    assert write("PETRUCHIO:\n'", "tis", "", verse) == Edit(0, "Tis ")  # 'Tis with curst
    assert write("to you?\n'", "frets", "", verse) == Edit(0, "Frets ")
    assert write("I tell you,\n'", "tis", "", prose) == Edit(0, "tis ")  # prose: a line start is no sentence start
    assert write("I tell you, '", "tis", "", verse) == Edit(0, "tis ")


def test_casing_json_keeps_the_ends_the_text_goes_on_after():
    words = ["the", "!", "?"]
    path = Path("casing.json")
    back = Casing.from_json(Casing({"the": "The"}, continued="!?").to_json(words), words, path)
    assert back.continued == "!?" and back.form("the") == "The"
    older = json.loads(Casing().to_json(words))
    del older["continued"]  # a file written before the field: nothing goes on in lower case
    assert Casing.from_json(json.dumps(older).encode(), words, path).continued == ""
    for bad in ("x", 3, "!" * 20):
        body = json.loads(Casing().to_json(words))
        body["continued"] = bad
        with pytest.raises(StoryError, match="field 'continued' must be ends of sentence"):
            Casing.from_json(json.dumps(body).encode(), words, path)


def test_a_pick_after_a_typed_part_closes_up_a_dash_typed_after_a_space():
    assert write("a proud -m", "minded", "m") == Edit(3, "-minded ")  # proud-minded
    assert write("we have 'g", "greed", "g") == Edit(1, "greed ")  # what was typed against the word stays


# ---- the case-exact typist ---------------------------------------------------------------------
def _exact(train: str, line: str, menu: int):
    from model.evaluation.exact import Target, simulate_exact
    from model.evaluation.keystrokes import KneserNeyPredictor

    return simulate_exact(KneserNeyPredictor(tokenize(train)), Target.of_lines([[line]]), [menu])[0].result()


def test_the_menu_shows_the_next_word_right_after_a_typed_mark():
    # "'" typed (no menu on the empty prompt), then Alt-1 "tis " at once: the REPL shows the
    # menu after any typed character (before: "t" Alt-1); Alt-1 "well ", "." typed (1 + 1).
    res = _exact("' tis well . ' tis so .\n" * 3, "'tis well.", 1)
    assert res["keys"] == 5 and res["moves"]["typed"] == 1, res


def test_a_dash_typed_after_a_picks_space_is_closed_up_by_the_next_pick():
    # "a" typed, Alt-1 "proud ", "-" typed after its space (no Backspace), Alt-1 "minded"
    # writes "proud-minded ", then the rest: 6 keys (8 with a Backspace before the "-").
    res = _exact("a proud - minded man . a proud man . a proud man .\n" * 3, "a proud-minded man.", 1)
    assert res["keys"] == 6 and res["moves"]["backspace"] == 0 and res["lines_exact"] == 1.0, res


def test_a_quote_or_dash_typed_after_a_picks_space_takes_it_with_no_backspace():
    # Neither mark is in the text the menu learned, so no pick writes it. After Alt-1 "ladies ",
    # "'" typed is written as its pick would be, "ladies' " (the REPL's key): 1 key where it took
    # 3 (a Backspace, the quote, the space), "zebra" being unknown (no pick closes the quote up).
    # The same for "-" after Alt-1 "proud ": 1 key where it took 2 (a Backspace, the dash).
    res = _exact("the ladies sat . the ladies sat . the cat sat .\n" * 3, "the ladies' zebra.", 1)
    assert res["keys"] == 11 and res["moves"]["backspace"] == 0 and res["lines_exact"] == 1.0, res  # before: 13
    res = _exact("a proud man . a proud man . a cat sat .\n" * 3, "a proud-zebra.", 1)
    assert res["keys"] == 11 and res["moves"]["backspace"] == 0 and res["lines_exact"] == 1.0, res  # before: 12

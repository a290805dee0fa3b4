"""Command parsing, the completer (fake and real predictors) and rendering, without a terminal."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from rich.console import Console

from model.errors import StoryError
from model.prediction.predictor import Predictor
from repl import render
from repl.commands import COMMANDS, parse, parse_int
from repl.completer import WordCompleter


def test_parse_commands_and_arguments():
    assert parse(":topk 5").arg == 5 and parse(":topk 5").name == "topk"
    assert parse(":sample").arg is None
    assert parse(":sample 0.7").arg == pytest.approx(0.7)
    assert parse(":train").name == "train" and parse(":train").arg is None
    assert parse(":train corpora/belling_the_cat.txt").arg == "corpora/belling_the_cat.txt"
    assert parse(':corpus "my stories/a b.txt"').arg == "my stories/a b.txt"
    assert parse(":corpus my stories/a b.txt").arg == "my stories/a b.txt"
    assert parse(":load ~/models").arg.endswith("/models") and "~" not in parse(":load ~/models").arg
    assert parse(":exit").name == "quit"
    assert parse(":topk 10^9").arg == 10**9


@pytest.mark.parametrize(
    "line, message",
    [
        (":topk abc", "expects a whole number, got 'abc'"),
        (":topk", "needs an argument"),
        (":topk 1 2", "takes one argument"),
        (":sample nan", "finite number"),
        (":help me", "takes no arguments"),
        (":tpok 3", "did you mean :topk"),
        (":", "empty command"),
        (":zzzzzz", "unknown command"),
    ],
)
def test_parse_errors_are_one_line(line, message):
    with pytest.raises(StoryError) as e:
        parse(line)
    assert message in str(e.value) and "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_crashes(text):
    try:
        parse(":" + text)
    except StoryError as e:
        assert "\n" not in str(e)


def test_parse_int_forms():
    assert parse_int("1_000", "x") == 1000 and parse_int("1e3", "x") == 1000 and parse_int("-3", "x") == -3
    with pytest.raises(StoryError):
        parse_int("3.5", "x")


class FakeVocab:
    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.unk_id = None


class FakePredictor:
    """A scripted predictor for UI tests: fixed next words, whatever the context, with the
    public interface of model.prediction.predictor.Predictor."""

    words = [("council", 0.9), ("cat", 0.05), ("consider", 0.03), ("to", 0.02)]
    context = 3

    def __init__(self):
        self.vocab = FakeVocab(w for w, _ in self.words)
        self.probs = np.asarray([p for _, p in self.words])

    def tokenize(self, text):
        return text.split()

    def split_prefix(self, text):
        toks = text.split()
        if text.endswith(" ") or not toks:
            return toks, ""
        return toks[:-1], toks[-1]

    def encode(self, tokens):
        return [self.vocab.index[t] for t in tokens if t in self.vocab.index], [t for t in tokens if t not in self.vocab.index]

    def distribution(self, ids):
        return self.probs

    def ranking(self, ids):
        return self.probs, np.argsort(-self.probs, kind="stable")

    def top_k(self, ids, k, prefix=""):
        return [(w, p) for w, p in self.words if w.startswith(prefix)][:k]


def completions(completer, text):
    return list(completer.get_completions(Document(text), CompleteEvent(text_inserted=True)))


def test_completer_with_fake_predictor():
    fake = FakePredictor()
    c = WordCompleter(lambda: fake, lambda: 3)
    got = completions(c, "had a ")
    assert [x.text for x in got] == ["council ", "cat ", "consider ", "to "]  # menu shows at least 10 if there are
    assert [x.display_text for x in got] == ["1 council", "2 cat", "3 consider", "4 to"]  # numbered for Alt-1 … Alt-9
    assert got[0].display_meta_text == "90.0%"
    mid = completions(c, "had a co")
    assert [x.text for x in mid] == ["council ", "consider "]  # both were shown and passed over: order kept
    assert all(x.start_position == -2 for x in mid)
    assert completions(WordCompleter(lambda: None, lambda: 3), "had ") == []


def test_completer_commands_and_paths(tmp_path, monkeypatch):
    c = WordCompleter(lambda: FakePredictor(), lambda: 3)
    names = [x.text for x in completions(c, ":to")]
    assert names == [":topk "]
    assert {x.text.strip() for x in completions(c, ":")} == {f":{n}" for n in COMMANDS}
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "fox.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert [x.text for x in completions(c, ":train stories/f")] == ["ox.txt"]
    assert [x.text for x in completions(c, ":arch bi")] == ["bilstm"]


def test_completer_with_real_model(default_bundle):
    p = Predictor(default_bundle)
    c = WordCompleter(lambda: p, lambda: 5)
    got = completions(c, "had a gen")
    assert got[0].display_text == "1 general" and got[0].text == "general "
    got = completions(c, "had a general ")
    assert got[0].display_text == "1 council"
    assert float(got[0].display_meta_text.rstrip("%")) > 90


def render_text(renderable, width=80) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(renderable)
    return buf.getvalue()


def test_topk_table_and_bar():
    text = render_text(render.topk_table([("council", 0.971), ("to", 0.02)], title="next"))
    assert "council" in text and "97.1%" in text and "2.0%" in text
    assert render.bar(1.0, 8) == "█" * 8 and render.bar(0.0, 8) == " " * 8
    assert render.bar(0.5, 8) == "████    "


def test_chart_draws_curves():
    text = render_text(render.history_charts({"loss": [4.0, 2.0, 1.0, 0.5], "accuracy": [0.1, 0.5, 0.9, 0.99]}))
    assert "loss" in text and "accuracy" in text and "█" in text and "epoch 1 … 4" in text

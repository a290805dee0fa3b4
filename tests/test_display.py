"""What the REPL shows fits the terminal and says what it is: the toolbar at every width, the
analysis commands while the first LSTM trains, labelled figures, narrow and wide tables, the grey
text inside a word, shipped corpus names on Tab and the simplified/traditional hint."""
from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from helpers import CAT, random_bundle, rendered, tiny_config

WIDTHS = (20, 40, 80, 120, 200)


# ---- a session as the toolbar sees it -------------------------------------------------------
class _Pred:
    """The n-gram and cache answering while the LSTM of a new text trains."""

    def __init__(self, config):
        self.config = config
        self.mixture = SimpleNamespace(neural=None)

    def components(self):
        return ["ngram", "cache"]


def fake_session(**kw):
    from model.config import Config
    from model.prediction.decoding import Decoding
    from model.training.events import Progress

    state = dict(
        bundle=None, predictor=_Pred(Config(context=8)), config=Config(), decoding=Decoding(), k=10, length=32,
        menu=SimpleNamespace(ghost_enabled=True), status="training", training=True, partner_training=False,
        progress=Progress("batch", epoch=2, epochs=1000, step=50, steps=100, loss=5.123, accuracy=0.123,
                          tokens_per_s=1234.0, elapsed=30.0, time_limit=60.0),
        corpus_label=lambda: "tinyshakespeare",
    )
    state.update(kw)
    return SimpleNamespace(**state)


def toolbar_lines(session, width):
    from repl.toolbar import toolbar

    return "".join(text for _, text in toolbar(session, width)).split("\n")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_toolbar_fits_every_width_and_keeps_what_matters_most(width):
    from prompt_toolkit.utils import get_cwidth

    lines = toolbar_lines(fake_session(), width)
    assert 1 <= len(lines) <= 2 and all(get_cwidth(line) <= width for line in lines), lines
    text = " ".join(lines)
    assert "train" in text and "ETA 30s" in text  # what is under way, first, with its ETA
    if width >= 40:
        assert "greedy" in text  # then the decoding
    if width >= 80:
        assert "Alt-1…9" in text and "loss 5.123" in text  # then the keys
    if width >= 120:
        assert "tinyshakespeare" in text and "lstm/8" in text  # the recipe being trained, not lstm/None
    if width >= 200:
        assert "ngram+cache (lstm training)" in text and "Alt-F a word" in text and "acc 0.123" in text


def test_the_toolbar_is_idle_in_order_and_shows_the_other_engineers_strings():
    idle = fake_session(status="", progress=None, training=False, keys_hint="Alt-U undo", training_note="training was interrupted")
    lines = toolbar_lines(idle, 200)
    text = " ".join(lines)
    assert "idle" in text and "Alt-U undo" in text and "training was interrupted" in text
    order = [text.index(s) for s in ("idle", "training was interrupted", "mode greedy", "keys", "corpus", "model lstm/8", "parts")]
    assert order == sorted(order)
    assert "lstm/None" not in text


def test_the_eta_respects_the_time_limit():
    from model.training.events import Progress
    from repl.train_progress import eta_seconds, status_line

    slow = Progress("batch", epoch=1, epochs=1000, step=1, steps=100, elapsed=10.0, time_limit=60.0)
    assert eta_seconds(slow) == pytest.approx(50.0)  # the epochs left would take days
    assert "ETA 50s" in status_line(slow)
    free = Progress("batch", epoch=2, epochs=4, step=100, steps=100, elapsed=60.0)
    assert eta_seconds(free) == pytest.approx(60.0)  # half done in a minute: a minute left
    assert eta_seconds(Progress("batch", epochs=4, steps=10)) is None


def test_the_model_and_welcome_line_name_the_recipe_being_trained():
    from model.config import Config
    from repl.toolbar import model_label, welcome_line

    reading = fake_session(predictor=None, config=Config())  # the text is still being read
    assert model_label(reading) == "lstm/auto"
    line = welcome_line(reading)
    assert "(-)" not in line and "training lstm/auto" in line and "tinyshakespeare" in line
    assert model_label(fake_session()) == "lstm/8"


# ---- analysis while the first LSTM trains ---------------------------------------------------
@pytest.fixture
def ngram_session():
    """A Session whose predictor is the n-gram and the cache of a text whose LSTM is training."""
    from model.text.corpus import read_corpus
    from repl.session import Session

    config = tiny_config()
    session = Session(str(CAT), config)
    printed: list = []
    session.out = lambda *r: printed.extend(r)
    session.start_ngram(read_corpus(CAT), config)
    session.printed = printed
    return session


def run(session, line: str) -> str:
    start = len(session.printed)
    assert session.run_line(line) is True
    return rendered(session.printed[start:])


@pytest.mark.parametrize("line", [":score had a general council", ":vocab", ":vocab council", ":eval", ":info"])
def test_analysis_runs_on_the_ngram_while_the_lstm_trains(ngram_session, line):
    out = run(ngram_session, line)
    assert "error" not in out and "no model is loaded" not in out, out
    assert "answered by ngram+cache (the LSTM is training)" in out


def test_info_while_training_shows_the_recipe_being_trained(ngram_session):
    out = run(ngram_session, ":info")
    assert "lstm, context 3" in out and "not saved yet" in out and "belling_the_cat" in out


# ---- labelled figures ------------------------------------------------------------------------
def test_components_say_what_their_perplexities_were_measured_on(tmp_path):
    from model.storage.bundle import load_bundle
    from helpers import Repl

    repl = Repl(load_bundle(random_bundle(tmp_path / "b", units=16, embedding_dim=8)))
    out = repl.run(":components")
    assert "held-out perplexity" not in out
    assert "perplexity on the last tenth of the training text (seen in training)" in " ".join(out.split())
    assert "seen in training" in repl.run(":info")


def test_a_validation_split_is_named_as_such():
    from repl import render

    out = rendered([render.components_table([("ngram", "on", "0.5", "7.9")], "validation split")])
    assert "perplexity on the validation split" in out and "seen in training" not in out


# ---- narrow and wide terminals ---------------------------------------------------------------
def at_width(renderable, width: int) -> list[str]:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False).print(renderable)
    return buf.getvalue().rstrip("\n").split("\n")


LONG_TITLE = "next word after “had a general council to consider what measures they could take to outwit the cat”"


def test_the_topk_table_drops_its_bars_when_narrow_and_keeps_its_words_whole():
    from repl import render

    table = render.topk_table([("council", 0.97), ("cat.", 0.02), ("to", 0.01)], title=LONG_TITLE)
    narrow = at_width(table, 20)
    assert all(len(line) <= 20 for line in narrow), narrow
    assert "█" not in "".join(narrow)
    rows = [line.split() for line in narrow if line.strip()[:1].isdigit()]
    assert [r[1] for r in rows] == ["council", "cat.", "to"]  # each word whole, on its row
    wide = at_width(table, 160)
    assert wide[0] == LONG_TITLE  # the title on one line, not wrapped at the table's width
    assert "█" * 20 in "\n".join(wide)


def test_the_session_prints_at_the_terminals_width(monkeypatch):
    from repl import render
    from repl.session import Session

    monkeypatch.setenv("COLUMNS", "20")
    session = Session(str(CAT), tiny_config())
    assert session.console().width == 20
    buf = io.StringIO()
    session.console(buf).print(render.generation("had a general", "council to consider what measures they could take against the cat.", "greedy", 3))
    lines = buf.getvalue().splitlines()
    assert all(len(line) <= 20 for line in lines), lines
    words = " ".join(lines).split()
    assert "cat." in words and "consider" in words  # wrapped at spaces, never inside a word


def test_score_and_vocab_tables_fit_twenty_columns(ngram_session):
    from repl.analysis import score_view, vocab_view, word_view

    from repl.analysis import model_in_use

    live, pred = model_in_use(ngram_session)
    for shown in (score_view(pred, "had a general council"), vocab_view(live, pred), word_view(live, pred, "council", 5)):
        lines = at_width(shown, 20)
        assert all(len(line) <= 20 for line in lines), lines


# ---- smaller things ----------------------------------------------------------------------------
def test_every_component_row_of_eval_is_indented():
    from repl.eval_view import eval_report

    result = {
        "baseline": {"perplexity": 10.0, "order": 5, "top1": 0.1, "top5": 0.2}, "model": {"arch": "lstm", "context": 3, "vocab_size": 100},
        "active": ["lstm", "ngram", "cache", "ncache"], "perplexity": 8.0, "top1": 0.2, "top5": 0.3, "tokens": 10, "oov_rate": 0.0,
        "components": {n: {"weight": 0.25, "perplexity": 9.0, "active": True} for n in ("lstm", "ngram", "cache", "ncache")},
    }
    lines = at_width(eval_report(result), 120)
    rows = {line.split()[0]: line for line in lines if line.strip() and line.split()[0] in ("LSTM", "Kneser-Ney", "cache", "ncache")}
    assert set(rows) == {"LSTM", "Kneser-Ney", "cache", "ncache"}
    assert all(line.startswith("  ") for line in rows.values()), rows


def test_tab_completes_shipped_corpus_names():
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from repl.completer import WordCompleter

    c = WordCompleter(lambda: None, lambda: 3)

    def texts(line):
        return [x.text for x in c.get_completions(Document(line), CompleteEvent(completion_requested=True))]

    assert texts(":corpus tiny") == ["tinyshakespeare"]
    assert "xiyouji_ch01-10" in texts(":train xi") and "aesops_fables" in texts(":eval aes")
    assert "belling_the_cat" not in texts(":save bel")  # a directory to write, not a corpus


class _Source:
    """Words for a Menu: a fixed next-word distribution, whatever the context."""

    WORDS = [("general", 0.5), ("gentle", 0.3), ("council", 0.2)]

    def split(self, text):
        words = text.split(" ")
        return words[:-1], words[-1]

    def candidates(self, context, prefix, m, text):
        return [(w, p) for w, p in self.WORDS if w.startswith(prefix)][:m]


def test_grey_text_completes_the_word_being_typed():
    from model.prediction.menu import Menu

    menu = Menu(source=_Source())
    assert menu.ghost("had a gen") == "eral"  # the rest of the most likely word, as fish does
    assert menu.ghost("had a gent") == "le"
    assert menu.ghost("had a general") == ""  # the word is whole
    assert menu.ghost("had a zz") == ""
    menu.ghost_enabled = False
    assert menu.ghost("had a gen") == ""


def test_simplified_chinese_against_a_traditional_text_gets_a_hint(tmp_path):
    from model.text.corpus import read_corpus
    from repl.hanzi import counterpart, script_hint
    from repl.session import Session

    xiyouji = set(read_corpus("xiyouji_ch01-10").words)
    assert counterpart("孙", xiyouji.__contains__) == "孫" and counterpart("悟", xiyouji.__contains__) is None
    assert script_hint(["孙", "说", "悟"], xiyouji.__contains__) == "this text is in traditional characters: type 孫 說 for 孙 说"
    assert script_hint(["孫"], {"孙"}.__contains__) == "this text is in simplified characters: type 孙 for 孫"

    text = tmp_path / "trad.txt"
    text.write_text("孫悟空說：這是來了。\n\n師父問他們為何來這裏。\n" * 20, encoding="utf-8")
    config = tiny_config()
    session = Session(str(text), config)
    printed: list = []
    session.out = lambda *r: printed.extend(r)
    session.start_ngram(read_corpus(text), config)
    session.complete_text("孙悟空说")
    out = rendered(printed)
    assert "unknown to this model: 孙, 说" in out and "type 孫 說 for 孙 说" in out

"""The completer's Menu, its key costs against prompt_toolkit's own behaviour, the simulated
typist (exact key counts on a scripted predictor, real KSR on the default model), the
Kneser-Ney typist's predictor, Presage, and ``eval --keystrokes``."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prompt_toolkit.buffer import Buffer, CompletionState
from prompt_toolkit.completion import Completion
from prompt_toolkit.document import Document
from prompt_toolkit.key_binding.bindings.auto_suggest import load_auto_suggest_bindings

from helpers import BIN, CAT, ROOT
from model.errors import StoryError
from model.prediction.predictor import Predictor
from model.text.tokenize import tokenize
from model.evaluation import keystrokes as ks
from model.evaluation.presage import PresageSource, presage_missing
from model.prediction.menu import Menu, PrefixIndex, ghost_fill, pick_keys, top_ids
from repl.completer import WordCompleter, pick


# ---- a scripted predictor with the Predictor interface -----------------------------------------
class Vocab:
    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.unk_id = None

    def split_known(self, tokens):
        return [self.index[t] for t in tokens if t in self.index], [t for t in tokens if t not in self.index]


class Bigram:
    """P(next | last word): ``follow[last]`` gets ``p``, the rest share what is left; no context: ``first``."""

    context = 1

    def __init__(self, words, follow, p=0.9, first=None):
        self.vocab = Vocab(words)
        self.follow, self.p, self.first = follow, p, first or {}

    def tokenize(self, text):
        return text.split()

    def split_prefix(self, text):
        toks = text.split()
        if not toks or text[-1].isspace():
            return toks, ""
        return toks[:-1], toks[-1]

    def encode(self, tokens):
        return self.vocab.split_known(tokens)

    def distribution(self, ids):
        v = len(self.vocab.tokens)
        if not ids:
            table = self.first
        else:
            table = {self.follow[self.vocab.tokens[ids[-1]]]: self.p}
        probs = np.full(v, (1.0 - sum(table.values())) / max(v - len(table), 1))
        for w, p in table.items():
            probs[self.vocab.index[w]] = p
        return probs

    def ranking(self, ids):
        probs = self.distribution(ids)
        return probs, np.argsort(-probs, kind="stable")


class Fixed(Bigram):
    """The same next words after anything: the 0.5, cat 0.3, sat 0.2."""

    def __init__(self):
        super().__init__(["the", "cat", "sat"], follow={})

    def distribution(self, ids):
        return np.asarray([0.5, 0.3, 0.2])


FIXED = Fixed()


def typist_keys(predictor, text, n, features):
    typist = ks.simulate(predictor, text.split(), (n,), features)[0]
    return typist.keys, typist.result()


def test_typist_counts_every_key_exactly():
    # "the cat sat": 12 keys without prediction (3 words of 3 letters plus a space each).
    # menu 1: the empty prompt shows no menu, so "t" then Alt-1 (2 keys); then "the" is
    # offered again and not wanted, so "c" Alt-1 and "s" Alt-1 (2 keys each).
    keys, res = typist_keys(FIXED, "the cat sat", 1, ks.Features(ghost=False))
    assert (keys, res["keys_without"]) == (6, 12) and res["ksr"] == pytest.approx(0.5)
    # menu 3: "t" Alt-1, then Alt-2 and Alt-3 straight from the menu after each space.
    assert typist_keys(FIXED, "the cat sat", 3, ks.Features(ghost=False))[0] == 4
    # Before direct picks: Tab selections open no menu for the next word, so each word needs
    # its first letter, then one Tab (the only entry that starts with it).
    keys, res = typist_keys(FIXED, "the cat sat", 3, ks.BEFORE)
    assert keys == 6 and res["moves"]["tab"] == 3


def test_typist_takes_the_grey_continuation():
    words = ["the", "cat", "sat", "on", "a", "mat"]
    bigram = Bigram(words, follow=dict(zip(words, words[1:] + words[:1])))
    # "t" Alt-1 (2), then → accepts "cat sat on a " (4 words, 1 key), then the continuation
    # "mat the cat sat " is more than comes next, so Alt-F takes "mat " (1 key).
    keys, res = typist_keys(bigram, "the cat sat on a mat", 5, ks.NOW)
    assert res["keys_without"] == 21
    assert keys == 4 and res["moves"] == {"typed": 0, "alt": 1, "tab": 0, "ghost_all": 1, "ghost_word": 1}
    # Without the continuation: "t" Alt-1 then Alt-1 after every space.
    assert typist_keys(bigram, "the cat sat on a mat", 5, ks.Features(ghost=False))[0] == 7


def test_typist_types_words_no_menu_offers():
    keys, res = typist_keys(FIXED, "the dog", 1, ks.Features(ghost=False))
    assert keys == 2 + 4 and res["moves"]["typed"] == 1  # "dog " typed out


# ---- key costs are prompt_toolkit's ----------------------------------------------------------------
def presses_to(index, total, forward):
    """Tab (complete_next) or Shift-Tab (complete_previous) presses until entry ``index`` is selected."""
    buf = Buffer()
    buf.complete_state = CompletionState(Document(""), [Completion(f"w{i} ") for i in range(total)])
    for presses in range(1, 2 * total + 2):
        (buf.complete_next if forward else buf.complete_previous)()
        if buf.complete_state.complete_index == index:
            return presses
    raise AssertionError("never selected")


@pytest.mark.parametrize("total", [1, 2, 5, 10, 12, 20])
def test_menu_key_costs_match_prompt_toolkit(total):
    for rank in range(1, total + 1):
        real = min(presses_to(rank - 1, total, True), presses_to(rank - 1, total, False))
        assert pick_keys(rank, total, direct=False) == real
        assert pick_keys(rank, total, direct=False, backward=False) == presses_to(rank - 1, total, True)
        assert pick_keys(rank, total) == (1 if rank <= 9 else real)


def alt_f(suggestion):
    """What prompt_toolkit's own Alt-F binding inserts for a suggestion."""
    from prompt_toolkit.auto_suggest import Suggestion

    handler = next(b.handler for b in load_auto_suggest_bindings().bindings if tuple(b.keys) == ("escape", "f"))
    buf = Buffer()
    buf.suggestion = Suggestion(suggestion)

    class Event:
        current_buffer = buf

    handler(Event())
    return buf.text


@pytest.mark.parametrize("ghost", ["council to consider what ", "what ", "and/or so ", "王。 猴 ", "a  b "])
def test_alt_f_takes_what_prompt_toolkit_takes(ghost):
    assert ghost_fill(ghost) == alt_f(ghost)


# ---- the Menu over the default model ---------------------------------------------------------------
@pytest.fixture(scope="module")
def pred(default_bundle):
    return Predictor(default_bundle)


def test_menu_agrees_with_the_predictors_own_ranking(pred):
    text = CAT.read_text(encoding="utf-8")
    menu = Menu(pred, repeat=True)
    tokens = tokenize(text)[:60]
    for i in range(1, len(tokens)):
        before = " ".join(tokens[:i]) + " "
        word = tokens[i]
        for j in range(len(word) + 1):
            buf = before + word[:j]
            context, prefix = pred.split_prefix(buf)
            ids, _ = pred.encode(context)
            want = pred.top_k(ids, 7, prefix)
            got = [(e.word, e.prob) for e in menu.entries(buf, 7)]
            assert [w for w, _ in got] == [w for w, _ in want], buf
            assert [p for _, p in got] == pytest.approx([p for _, p in want])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcé王ß'-", min_size=1, max_size=5), min_size=1, max_size=40, unique=True), st.text(alphabet="abcé王ß'-", max_size=3))
def test_prefix_index_finds_exactly_the_words_with_the_prefix(words, prefix):
    index = PrefixIndex(words, banned=[0])
    got = sorted(int(i) for i in index.ids_with_prefix(prefix))
    assert got == [i for i, w in enumerate(words) if i != 0 and w.startswith(prefix)]


def test_top_ids_breaks_ties_by_id():
    probs = np.asarray([0.1, 0.3, 0.3, 0.05, 0.3, 0.25])
    assert top_ids(probs, np.arange(6), 3).tolist() == [1, 2, 4]
    assert top_ids(probs, np.asarray([5, 4, 0]), 2).tolist() == [4, 5]
    assert top_ids(probs, np.arange(6), 0).tolist() == []


def test_passed_over_words_make_room(pred):
    menu = Menu(pred)
    first = [e.word for e in menu.entries("had a ", 2)]
    assert first[0] == "general"
    typed = [e.word for e in menu.entries("had a g", 2)]
    assert "general" not in typed[:1] and all(w.startswith("g") for w in typed)
    assert [e.word for e in menu.entries("had a g", 2)] == typed  # the same buffer, the same answer
    fresh = Menu(pred)
    assert [e.word for e in fresh.entries("had a g", 2)][0] == "general"  # never shown: stays first
    repeat = Menu(pred, repeat=True)
    repeat.entries("had a ", 2)
    assert [e.word for e in repeat.entries("had a g", 2)][0] == "general"
    menu.entries("the mice ", 2)  # a new word position forgets
    menu.entries("had a ", 2)
    assert [e.word for e in menu.entries("had a ", 2)] == first


def test_grey_continuation(pred):
    menu = Menu(pred)
    ghost = menu.ghost("had a general ")
    assert ghost.startswith("council ") and ghost.endswith(" ") and 1 <= len(ghost.split()) <= 4
    context = pred.tokenize("had a general")
    for word in ghost.split():  # each word is the greedy choice, above the threshold
        probs, order = pred.ranking(pred.encode(context)[0])
        assert pred.vocab.tokens[order[0]] == word and probs[order[0]] >= menu.ghost_min_prob
        context.append(word)
    assert menu.ghost("had a gen") == "eral" and menu.ghost("") == ""  # in a word: the rest of the most likely one
    menu.ghost_enabled = False
    assert menu.ghost("had a general ") == ""


def test_alt_n_inserts_the_entry_and_its_space(pred):
    completer = WordCompleter(lambda: pred, lambda: 10)
    third = completer.lookup("had a gen")[1]
    buf = Buffer(document=Document("had a gen"))
    assert pick(buf, completer, 1)
    assert buf.text == "had a " + third[0].word + " "
    buf = Buffer(document=Document("had a "))
    entries = completer.lookup("had a ")[1]
    assert pick(buf, completer, 3) and buf.text == "had a " + entries[2].word + " "
    assert not pick(Buffer(document=Document("had a gen")), completer, 9)  # fewer entries than 9


# ---- the Kneser-Ney typist's predictor ------------------------------------------------------------
def test_kneser_ney_predictor_keeps_every_training_word():
    words = tokenize(CAT.read_text(encoding="utf-8"))
    kn = ks.KneserNeyPredictor(words, 5)
    assert set(kn.vocab.tokens) == set(words) and kn.vocab.unk_id is None and kn.context == 4
    ids, unknown = kn.encode(["had", "a", "zebra", "general"])
    # A word the training text never had breaks the context, as in the mixture's n-gram and eval.
    assert unknown == ["zebra"] and len(ids) == 4 and ids[2] == len(kn.vocab)
    general, _ = kn.encode(["general"])
    np.testing.assert_array_equal(kn.distribution(ids), kn.distribution(general))
    ids, _ = kn.encode(["had", "a", "general"])
    probs, order = kn.ranking(ids)
    assert probs.sum() == pytest.approx(1.0) and kn.vocab.tokens[order[0]] == "council"
    assert np.all(np.diff(probs[order]) <= 0)
    assert kn.top_k(ids, 3, "co") == [(w, p) for w, p in ((kn.vocab.tokens[i], float(probs[i])) for i in order) if w.startswith("co")][:3]
    assert kn.split_prefix("had a gen") == (["had", "a"], "gen")
    with pytest.raises(StoryError):
        ks.KneserNeyPredictor([], 5)


def test_menus_are_checked():
    assert ks.parse_menus("10, 1,3") == (1, 3, 10)
    for bad in ("0", "a,b", "", "51"):
        with pytest.raises(StoryError) as e:
            ks.parse_menus(bad)
        assert "--menu" in str(e.value) and "\n" not in str(e.value)


# ---- the default model: real savings --------------------------------------------------------------
def test_keystrokes_on_the_training_story(default_bundle, pred):
    tokens = tokenize(CAT.read_text(encoding="utf-8"))
    res = ks.keystrokes(default_bundle, tokens, (1, 5), predictor=pred, which=("model", "baseline"))
    assert res["tokens"] == len(tokens) and res["keys_without"] == sum(len(t) + 1 for t in tokens)
    assert set(res["model"]) == {"1", "5"} and res["presage"] is None
    # The model was trained on this very text: it saves most keys, more with a larger menu.
    assert 0.7 < res["model"]["1"] <= res["model"]["5"] < 1.0
    assert 0.3 < res["baseline"]["5"] < 1.0
    before = ks.keystrokes(default_bundle, tokens, (1, 5), predictor=pred, which=("model",), features=ks.BEFORE)
    # Direct picks never cost more than Tab selections: with repeats allowed the REPL saves more.
    direct = ks.keystrokes(default_bundle, tokens, (1, 5), predictor=pred, which=("model",), features=ks.ALONE[0])
    assert direct["model"]["5"] >= before["model"]["5"] and res["model"]["5"] > before["model"]["5"]


def test_keystrokes_with_presage(default_bundle, pred):
    why = presage_missing()
    if why:
        pytest.skip(why)
    tokens = tokenize(CAT.read_text(encoding="utf-8"))
    with PresageSource(tokens, pred, suggestions=20) as presage:
        words = [w for w, _ in presage.predict("had a general ")]
        assert words[0] == "council"
        assert all(w.startswith("co") for w, _ in presage.predict("had a general co"))
        assert presage.candidates(["had", "a"], "gen", 3, "had a gen")[0][0] == "general"
    res = ks.keystrokes(default_bundle, tokens, (1, 5), predictor=pred, which=("model", "presage"))
    assert res["presage"] is not None and 0.3 < res["presage"]["5"] < 1.0
    assert "libpresage" in res["presage_note"]


def test_eval_keystrokes_json(default_home):
    import os

    env = dict(os.environ, STORY_REPL_HOME=str(default_home))
    out = subprocess.run(
        [str(BIN), "eval", str(CAT), "--corpus", str(CAT), "--keystrokes", "--menu", "1,5", "--json"],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    k = res["keystrokes"]
    assert k["menus"] == [1, 5] and set(k["model"]) == {"1", "5"} and set(k["baseline"]) == {"1", "5"}
    assert k["presage"] is None or set(k["presage"]) == {"1", "5"}
    assert k["tokens"] == 204 and k["keys_without"] > k["tokens"]
    assert "perplexity" in res  # the usual eval figures are still there
    bad = subprocess.run(
        [str(BIN), "eval", str(CAT), "--corpus", str(CAT), "--keystrokes", "--menu", "0"],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=600,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--menu" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_repl_eval_keystrokes_and_settings(default_bundle):
    import io

    from rich.console import Console

    from repl.commands import parse
    from repl.session import Session

    session = Session(str(CAT), default_bundle.config)
    session.set_bundle(default_bundle)
    shown = []
    session.out = lambda *r: shown.extend(r)
    session.command(parse(":eval --keystrokes"))
    buf = io.StringIO()
    for r in shown:
        Console(file=buf, width=100, color_system=None).print(r)
    text = buf.getvalue()
    assert "keystrokes: training text of belling_the_cat" in text
    assert "Kneser-Ney 5-gram" in text and "menu" in text and "%" in text
    session.command(parse(":ghost off"))
    assert not session.menu.ghost_enabled
    session.command(parse(":ghost"))  # no argument toggles
    assert session.menu.ghost_enabled
    session.command(parse(":repeat on"))
    assert session.menu.repeat
    with pytest.raises(StoryError):
        session.command(parse(":repeat sometimes"))

"""The user's own files can break (history, writing cache, odd encodings), and nothing read from
a file reaches the terminal raw: every renderer and every JSON output writes control characters out."""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest

from helpers import ANSI, CAT, Repl, random_bundle, rendered
from model.errors import StoryError
from model.storage.bundle import load_bundle

# An escape sequence that recolours, retitles the terminal and clears the screen, and a C1 CSI.
HOSTILE = "\u001b[31mRED\u001b]0;PWNED\u0007\u001b[2J"
C1 = "\x9b2J"
MARKUP = "[/oops][bold]x"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")  # newline and tab aside


def assert_clean(text: str) -> None:
    assert not RAW.search(text), repr(RAW.findall(text))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    """A small valid model with random weights (no TensorFlow)."""
    return random_bundle(tmp_path_factory.mktemp("untrusted") / "bundle", units=16, embedding_dim=8)


# ---- 3. renderers -------------------------------------------------------------------------
def test_every_renderer_writes_control_characters_out():
    from repl import render
    from repl.eval_view import eval_report, keystroke_report

    words = [HOSTILE, C1, MARKUP]
    shown = [
        render.topk_table([(w, 0.3) for w in words], title=f"next word after “{HOSTILE}”"),
        render.info_panel([("corpus", f"{HOSTILE} ({C1})"), (C1, MARKUP)], title=HOSTILE),
        render.notice(f"loaded from {HOSTILE}"),
        render.error(f"{C1} is broken"),
        render.generation(HOSTILE, " ".join(words), C1, 3),
        render.components_table([(HOSTILE, MARKUP, C1, "1.0")]),
        render.sample_line([HOSTILE], C1, MARKUP),
        eval_report({
            "baseline": {"perplexity": 10.0, "order": 5, "top1": 0.1, "top5": 0.2}, "model": {"arch": HOSTILE, "vocab_size": 100},
            "active": ["lstm"], "perplexity": 8.0, "top1": 0.2, "top5": 0.3, "tokens": 10, "oov_rate": 0.0,
            "components": {C1: {"weight": 0.5, "perplexity": 9.0}}, "source": HOSTILE,
        }),
        keystroke_report({"menus": [1], "model": {"1": 0.5}, "tokens": 3, "keys_without": 9, "source": C1,
                          "presage": None, "presage_note": HOSTILE}),
    ]
    text = rendered(shown)
    assert_clean(text)
    assert "\\x1b[31mRED" in text and "\\x9b2J" in text and "[/oops][bold]x" in text


def test_the_toolbar_writes_control_characters_out(bundle_dir):
    from repl.toolbar import toolbar

    repl = Repl(load_bundle(bundle_dir))
    repl.session.bundle = None
    repl.session.corpus_spec = f"/tmp/{HOSTILE}{C1}.txt"
    repl.session.status = f"training {C1}"
    assert_clean("".join(text for _, text in toolbar(repl.session)))


def test_vocab_and_info_show_hostile_words_and_names_visibly(bundle_dir):
    repl = Repl(load_bundle(bundle_dir))
    pred = repl.session.predictor
    pred.vocab.tokens[0] = HOSTILE + C1  # as a vocabulary file from someone else could hold
    repl.session.bundle.info["corpus"]["name"] = HOSTILE
    out = repl.run(":vocab") + repl.run(":info") + repl.run(":vocab " + pred.vocab.tokens[1])
    assert_clean(out)
    assert "\\x1b[31mRED" in out and "error" not in out


# ---- 3. JSON outputs ----------------------------------------------------------------------
def test_json_outputs_escape_c1_and_format_characters(bundle_dir, capsys, monkeypatch, tmp_path):
    from model.prediction.predictor import Predictor
    from repl.cli import main

    hostile = HOSTILE + C1 + "\u202e\u2028"
    monkeypatch.setattr(Predictor, "predict_text", lambda self, text, k: {
        "context": [hostile], "unknown": [], "predictions": [{"word": hostile, "prob": 1.0}]})
    monkeypatch.setattr(Predictor, "generate", lambda self, *a, **kw: [hostile])
    assert main(["predict", "had a", "--model", str(bundle_dir), "--json"]) == 0
    assert main(["generate", "had a", "--model", str(bundle_dir), "--json"]) == 0
    assert main(["generate", "had a", "--model", str(bundle_dir)]) == 0  # the plain text too
    text = tmp_path / f"evil{C1}.txt"
    text.write_text(CAT.read_text(encoding="utf-8")[:2000], encoding="utf-8")
    assert main(["eval", str(text), "--model", str(bundle_dir), "--json"]) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    lines = out.splitlines()
    assert json.loads(lines[0])["predictions"][0]["word"] == hostile  # escaped, not changed
    assert json.loads(lines[1])["tokens"] == [hostile]
    assert json.loads(lines[3])["source"] == str(text)


def test_complete_protocol_escapes_c1(monkeypatch):
    from repl.complete_protocol import serve

    class Hostile:
        def answer_line(self, line):
            return {"menu": [{"word": HOSTILE + C1, "prob": 1.0, "keys": 1}], "ghost": C1, "prefix": ""}

    out = io.StringIO()
    serve(Hostile(), io.StringIO('"had a "\n'), out)
    assert_clean(out.getvalue())
    assert json.loads(out.getvalue())["ghost"] == C1


# ---- 5. :info and :history with odd metrics ------------------------------------------------
def test_info_and_history_survive_metrics_of_wrong_types(bundle_dir):
    bundle = load_bundle(bundle_dir)
    bundle.metrics = {"accuracy": "high", "ceiling": [1], "epochs": {"a": 1}, "val_loss": "low", "stop_reason": 5,
                      "history": {"loss": ["a", None, 2.0, 1.5, float("nan")], "accuracy": "zz", "val_loss": 3}}
    repl = Repl(bundle)
    out = repl.run(":info") + repl.run(":history")
    assert "error" not in out
    assert "accuracy" in out and "loss" in out and "epoch 1 … 5" in out
    bundle.metrics = ["not", "a", "dict"]
    repl = Repl(bundle)
    out = repl.run(":info") + repl.run(":history")
    assert "error" not in out and "no training history" in out


# ---- 2. the writing cache -----------------------------------------------------------------
def _writing(home: Path, sha: str) -> Path:
    return home / "writing" / f"{sha[:16]}.txt"


def test_binary_garbage_in_the_writing_cache_is_skipped_with_one_notice(_private_home):
    from model.text.tokenize import tokenize
    from repl.journal import Journal

    sha = "ab" * 32
    f = _writing(_private_home, sha)
    f.parent.mkdir(parents=True)
    garbage = bytes(range(256)) * 3 + b"\xff\xfe\x00\n"
    f.write_bytes(b"zorblath came home\n" + garbage + HOSTILE.encode() + b"\n" + b"a" * 500 + b"\ngorm went\n")
    said: list[str] = []
    journal = Journal(said.append)
    assert journal.use(sha, tokenize) == ["zorblath", "came", "home", "gorm", "went"]
    assert len(said) == 1 and "not text" in said[0], said
    journal.use("cd" * 32, tokenize)
    f2 = _writing(_private_home, "cd" * 32)
    f2.write_bytes(garbage)
    journal.use(sha, tokenize)
    journal.use("cd" * 32, tokenize)
    assert len(said) == 1  # at most one notice a session


def test_a_line_that_cannot_be_saved_is_said_once(_private_home, monkeypatch):
    from repl import journal as jmod

    said: list[str] = []
    journal = jmod.Journal(said.append)
    journal.corpus_sha256 = "ab" * 32
    _private_home.mkdir(parents=True)
    (_private_home / "writing").write_text("a file where the directory was")
    journal.keep("the mice", ["the", "mice"])
    journal.keep("the cat", ["the", "cat"])
    assert journal.tokens == ["the", "mice", "the", "cat"]  # still used in this session
    assert len(said) == 1 and "not saved" in said[0] and "writing is not a directory" in said[0], said

    def full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(jmod, "_append", full)
    (_private_home / "writing").unlink()
    said.clear()
    journal = jmod.Journal(said.append)
    journal.corpus_sha256 = "ab" * 32
    journal.keep("the mice", ["the", "mice"])
    journal.keep("the cat", ["the", "cat"])
    assert len(said) == 1 and "no space left on device" in said[0], said


# ---- 1. the history file ------------------------------------------------------------------
def test_history_that_cannot_be_used_is_kept_in_memory(_private_home):
    from repl.journal import prompt_history

    (_private_home / "history").mkdir(parents=True)
    said: list[str] = []
    history = prompt_history(said.append)
    assert list(history.load_history_strings()) == []
    history.append_string("the mice")
    history.append_string("the cat")
    assert history.get_strings() == ["the mice", "the cat"]
    assert said == [f"history is kept in memory only: {_private_home / 'history'} is a directory"]

    (_private_home / "history").rmdir()
    os.mkfifo(_private_home / "history")  # a pipe: reading it would wait forever
    said.clear()
    history = prompt_history(said.append)
    assert list(history.load_history_strings()) == [] and len(said) == 1
    history.append_string("the mice")
    assert len(said) == 1


def test_a_full_disk_keeps_the_history_in_memory(_private_home, monkeypatch):
    from repl import journal as jmod

    def full(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(jmod, "_append", full)
    said: list[str] = []
    history = jmod.prompt_history(said.append)
    history.append_string("the mice")
    history.append_string("the cat")
    assert history.get_strings() == ["the mice", "the cat"]
    assert said == [f"history is kept in memory only: {_private_home / 'history'}: no space left on device"]


def test_history_under_a_home_that_is_a_file(tmp_path, monkeypatch):
    from repl.journal import prompt_history

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("STORY_REPL_HOME", str(tmp_path / "a-file" / "home"))
    said: list[str] = []
    history = prompt_history(said.append)
    history.append_string("the mice")
    assert len(said) == 1 and "history is kept in memory only" in said[0] and "a-file is not a directory" in said[0], said


# ---- 4. messages that name the right thing -------------------------------------------------
@pytest.mark.parametrize("codec, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_a_text_with_a_byte_order_mark_is_read_in_its_encoding(tmp_path, codec, bom):
    import hashlib

    from model.text.corpus import read_corpus

    text = CAT.read_text(encoding="utf-8")
    f = tmp_path / f"story-{codec}.txt"
    f.write_bytes(bom + text.encode(codec))
    assert list(read_corpus(f).tokens) == list(read_corpus(CAT).tokens)
    plain = read_corpus(CAT)  # a UTF-8 file keeps its checksum and its id cache key
    assert plain.encoding == "utf-8" and plain.sha256 == hashlib.sha256(CAT.read_bytes()).hexdigest()


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_mark_names_the_encoding_to_pass(tmp_path, codec):
    from model.text.corpus import read_corpus

    f = tmp_path / "story.txt"
    f.write_bytes(CAT.read_text(encoding="utf-8").encode(codec))
    with pytest.raises(StoryError, match=f"looks like UTF-16 text without a byte-order mark; pass --encoding {codec}"):
        read_corpus(f)
    assert len(read_corpus(f, encoding=codec).tokens) == len(read_corpus(CAT).tokens)


def test_a_time_limit_too_long_says_so(capsys):
    from repl import commands as cmds
    from repl.cli import main

    huge = "99999999999999999999h"
    assert main(["train", "belling_the_cat", "--time-limit", huge]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too long" in err and "100,000h" in err and "above zero" not in err
    for line in (f":train --time-limit {huge}", f":partner stream --time-limit {huge}"):
        with pytest.raises(StoryError, match=r"at most 100,000h; '99999999999999999999h' is too long"):
            cmds.parse(line)
    with pytest.raises(StoryError, match="above zero"):
        cmds.parse_duration("0s")
    assert cmds.parse_duration("100000h") == 100000 * 3600


# ---- 1 and 2 in a pseudo-terminal ----------------------------------------------------------
@pytest.mark.slow
def test_history_directory_and_writing_file_in_a_terminal(home_with_default, term):
    (home_with_default / "history").mkdir()
    (home_with_default / "writing").write_text("not a directory")
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send("the mice\r")
    t.expect(r"next word after .the mice.*\[greedy\].*›", timeout=60)
    t.send("had a general\r")
    t.expect(r"next word after .had a general.*\[greedy\].*›", timeout=60)
    assert t.quit_with("\x04") == 0
    out = ANSI.sub("", t.text)
    assert out.count("history is kept in memory only") == 1, out[-3000:]
    assert f"{home_with_default / 'history'} is a directory" in out
    assert out.count("not saved for the next") == 1, out[-3000:]
    for bad in ("Traceback", "Loading history failed", "Unhandled exception", "Press ENTER"):
        assert bad not in out, out[-3000:]

"""Nothing a user types or feeds story-repl crashes it or loses the loaded model.

Every bad input gets one error line that names the problem and what to do; afterwards the
REPL's model is the same, usable object. REPL cases drive :class:`repl.session.Session`
directly (``run_line`` is what the interactive loop calls for each line).
"""
from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.text import corpus as corpus_mod
from model.storage.bundle import FILES, load_bundle, save_result
from model.config import ARCHS
from model.text.corpus import read_corpus
from model.errors import StoryError
from model.prediction.predictor import Predictor
from model.text.tokenize import detokenize, tokenize
from model.text.vocab import UNK
from repl import commands as cmds
from repl.cli import main
from repl.session import MAX_LINE, Session

from helpers import CAT, Repl, error_line, random_bundle, rendered, tiny_config

TINY_FLAGS = ["--units", "16", "--embedding-dim", "4", "--epochs", "2", "--no-chart"]


# ---- helpers (the shared ones are in helpers.py) ----------------------------------------
def assert_intact(repl: Repl, predictor) -> None:
    """The session still holds ``predictor`` and it still predicts and generates."""
    assert repl.session.predictor is predictor
    ids, _ = predictor.encode(predictor.tokenize("had a general"))
    assert len(predictor.top_k(ids, 3)) == 3
    out = repl.run("had a general")
    assert "next word after" in out and "error" not in out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained model of belling_the_cat (trained once for this module)."""
    path = tmp_path_factory.mktemp("tiny") / "bundle"
    result = __import__("model.training.train", fromlist=["train"]).train(read_corpus(CAT), tiny_config(units=16, epochs=40))
    return save_result(result, path)


@pytest.fixture
def repl(trained):
    r = Repl(load_bundle(trained))
    r.session.length = 4
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpora")
    out = {"missing": d / "no such story.txt", "directory": d / "a folder"}
    out["directory"].mkdir()
    out["binary"] = d / "image.png"
    out["binary"].write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    out["empty"] = d / "empty.txt"
    out["empty"].write_bytes(b"")
    out["blank"] = d / "blank.txt"
    out["blank"].write_text(" \n\n\t \n")
    out["short"] = d / "short.txt"
    out["short"].write_text("the mice\n")
    out["latin1"] = d / "latin.txt"
    out["latin1"].write_bytes("le café de la forêt, un café noir et un café crème.\n".encode("latin-1") * 3)
    out["device"] = Path("/dev/zero")  # endless: must be refused, not read
    out["unreadable"] = d / "secret.txt"
    out["unreadable"].write_text(CAT.read_text(encoding="utf-8"))
    return out


@pytest.fixture
def deny_read(monkeypatch):
    """Make a file unreadable as chmod 000 would for a normal user (tests run as root)."""
    denied: set[str] = set()
    real_access, real_open = os.access, builtins.open

    def access(path, mode, *a, **kw):
        if str(Path(path).absolute()) in denied and mode & os.R_OK:
            return False
        return real_access(path, mode, *a, **kw)

    def fake_open(file, *a, **kw):
        if isinstance(file, (str, os.PathLike)) and str(Path(file).absolute()) in denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(builtins, "open", fake_open)
    return lambda p: denied.add(str(Path(p).absolute()))


# ---- corpus input -----------------------------------------------------------------------
CORPUS_CASES = [
    ("missing", "corpus not found"),
    ("directory", "is a directory; give a text file"),
    ("device", "is not a regular file (a device, pipe or socket); give a text file"),
    ("unreadable", "permission denied; check its permissions"),
    ("binary", "looks like a binary file"),
    ("empty", "is empty; give a text with some words"),
    ("blank", "is empty; give a text with some words"),
    ("short", "fewer than the context window plus one (4); use a longer text or a smaller --context"),
    ("latin1", "is not valid utf-8: byte 0xe9"),
]


@pytest.mark.parametrize("case, message", CORPUS_CASES, ids=[c for c, _ in CORPUS_CASES])
def test_bad_corpus_on_the_command_line(files, deny_read, capsys, case, message):
    if case == "unreadable":
        deny_read(files[case])
    code = main(["train", str(files[case]), *TINY_FLAGS])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("story-repl: error:"), err
    assert message in errors[0] and "Traceback" not in err
    if case == "latin1":
        assert "pass --encoding" in errors[0]


@pytest.mark.parametrize("case, message", CORPUS_CASES, ids=[c for c, _ in CORPUS_CASES])
@pytest.mark.parametrize("command", [":corpus", ":train"])
def test_bad_corpus_in_the_repl_keeps_the_model(repl, files, deny_read, case, message, command):
    if case == "unreadable":
        deny_read(files[case])
    before = repl.session.predictor
    line = error_line(repl.run(f"{command} {files[case]}"))
    assert message in line
    assert repl.session.status == ""
    assert_intact(repl, before)


def test_read_corpus_errors_are_one_line(files, deny_read):
    deny_read(files["unreadable"])
    for case, message in CORPUS_CASES:
        if case == "short":
            continue  # readable: too short only for training
        with pytest.raises(StoryError) as e:
            read_corpus(files[case])
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(StoryError, match="unknown encoding 'klingon'"):
        read_corpus(CAT, encoding="klingon")
    with pytest.raises(StoryError, match="no corpus path given"):
        read_corpus("  ")


def test_latin1_corpus_trains_with_encoding_flag(files, capsys):
    code = main(["train", str(files["latin1"]), "--encoding", "latin-1", *TINY_FLAGS, "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    out = json.loads(cap.out)
    bundle = load_bundle(out["bundle"])
    assert "café" in bundle.vocab.tokens and "forêt" in bundle.vocab.tokens


def test_latin1_corpus_in_the_repl_with_encoding(repl, files):
    repl.session.encoding = "latin-1"
    repl.session.config = tiny_config(units=16, epochs=3)
    before = repl.session.predictor
    out = repl.run(f":corpus {files['latin1']}")
    assert "now using" in out, out
    assert repl.session.predictor is not before and "café" in repl.session.predictor.vocab.tokens
    repl.run(":train")  # retraining reads the same file with the same encoding
    assert "forêt" in repl.session.predictor.vocab.tokens


def test_large_corpus_streams_in_chunks_with_progress(tmp_path, monkeypatch):
    """A large file is read chunk by chunk (here 4 KiB chunks stand in for 4 MiB ones)."""
    monkeypatch.setattr(corpus_mod, "CHUNK", 4096)
    line = "The café on 西游记 street — naïve mice ate Æsop's cheese.\n"
    data = (line * 3000).encode("utf-8")  # multi-byte characters straddle chunk boundaries
    path = tmp_path / "big.txt"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    corpus = read_corpus(path, progress=lambda done, total: seen.append((done, total)))
    assert corpus.text == line * 3000
    assert corpus.sha256 == hashlib.sha256(data).hexdigest()
    assert len(seen) >= len(data) // 4096
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1] == (len(data), len(data))
    assert corpus.tokens[:4] == ["the", "café", "on", "西"]


def test_large_corpus_errors_name_the_offset_and_show_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpus_mod, "CHUNK", 4096)
    path = tmp_path / "big.txt"
    good = b"the mice met in council.\n" * 2000
    path.write_bytes(good + b"caf\xe9\n" + good)
    with pytest.raises(StoryError, match=rf"byte 0xe9 at offset {len(good) + 3} "):
        read_corpus(path)
    path.write_bytes(good + b"\x00\x01\x02" + good)
    assert main(["train", str(path), *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "reading corpus" in err and "looks like a binary file" in err and "Traceback" not in err


def test_vocabulary_beyond_max_vocab_becomes_unk_and_says_so(tmp_path, capsys):
    words = " ".join(f"w{i} the w{i % 7} mice" for i in range(300))
    path = tmp_path / "many words.txt"
    path.write_text(words + "\n")
    code = main(["train", str(path), "--max-vocab", "20", *TINY_FLAGS, "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "are completed from the n-gram" in cap.err and "--max-vocab" in cap.err
    bundle = load_bundle(json.loads(cap.out)["bundle"])
    assert len(bundle.vocab) == 20 and UNK in bundle.vocab.tokens
    assert bundle.vocab.dropped > 250
    pred = Predictor(bundle)
    assert "w123" not in bundle.vocab.tokens and "w123" in pred.vocab.tokens  # completable all the same
    ids, unknown = pred.encode(pred.tokenize("w123 the w5 w999"))
    assert unknown == ["w999"] and len(ids) == 3
    assert UNK not in [w for w, _ in pred.top_k(ids, 20)]
    assert UNK not in pred.generate(["the"], 30, greedy=False, seed=1)


# ---- commands ---------------------------------------------------------------------------
COMMAND_CASES = [
    (":tpok 3", "unknown command :tpok; did you mean :topk?"),
    (":lod x", "did you mean :load?"),
    (":zzzzzz", "unknown command :zzzzzz; :help lists the commands"),
    (":", "empty command"),
    (":topk", ":topk needs an argument (usage: :topk N)"),
    (":load", ":load needs an argument"),
    (":help me", ":help takes no arguments"),
    (":topk 1 2", ":topk takes one argument, got 2"),
    (":topk 0", ":topk expects a positive integer, got 0"),
    (":topk -3", ":topk expects a positive integer, got -3"),
    (":topk abc", ":topk expects a whole number, got 'abc'"),
    (":topk 2.5", ":topk expects a whole number"),
    (":sample -1", ":sample expects a temperature above 0"),
    (":sample 0", ":sample expects a temperature above 0"),
    (":sample nan", ":sample expects a finite number, got 'nan'"),
    (":sample inf", ":sample expects a finite number"),
    (":sample warm", ":sample expects a number, got 'warm'"),
    (":len 0", ":len expects a whole number from 1 to 10000, got 0"),
    (":len 10^9", ":len expects a whole number from 1 to 10000"),
    (":context 0", ":context expects a whole number from 1 to 512, got 0"),
    (":context 9999", ":context expects a whole number from 1 to 512"),
    (":seed -1", ":seed expects a whole number from 0"),
    (":arch gru", f":arch expects one of {', '.join(ARCHS)}, got 'gru'"),
    (":stop", "no training is under way"),
    (":load /nonexistent/my models/tiny", "no model at /nonexistent/my models/tiny"),
    (":corpus ~/no such story.txt", "no such story.txt (shipped corpora: "),
    (':corpus "unbalanced', "unbalanced quotes in path"),
    (":save", ":save needs an argument"),
    (":load " + "m" * 5000, "File name too long; give a directory saved with :save"),
    (":corpus " + "m" * 5000, "File name too long; give the path of a text file"),
    (":train " + "m" * 5000, "File name too long; give the path of a text file"),
    (":save " + "m" * 5000, "File name too long; choose another directory"),
    (":save /etc/hostname/model", "Not a directory; choose another directory"),
]


@pytest.mark.parametrize("line, message", COMMAND_CASES, ids=[c if len(c) < 40 else c[:20] + "-long" for c, _ in COMMAND_CASES])
def test_bad_commands_keep_the_model(repl, line, message):
    s = repl.session
    before = (s.predictor, s.k, s.greedy, s.temperature, s.length, s.seed, s.config)
    err = error_line(repl.run(line))
    assert message in err
    assert (s.predictor, s.k, s.greedy, s.temperature, s.length, s.seed, s.config) == before
    assert_intact(repl, before[0])


@pytest.mark.parametrize("line", [":topk 10^9", ":topk 1e12", ":topk 99999999999999999999999999999999999999999999"])
def test_topk_beyond_the_vocabulary_is_clamped_and_said(repl, line):
    before = repl.session.predictor
    out = repl.run(line)
    vocab = len(before.vocab)
    assert f"is more than the vocabulary; using {vocab}" in out and "error" not in out
    assert repl.session.k == vocab
    out = repl.run("the mice")
    assert re.search(rf"^\s*{vocab}\s+\S+\s+\d+\.\d%", out, re.M), out  # the table lists the whole vocabulary
    assert_intact(repl, before)


def test_paths_with_spaces_and_tilde(repl, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    before = repl.session.predictor
    out = repl.run(":save ~/my models/tiny one")
    assert f"saved to {tmp_path / 'my models' / 'tiny one'}" in out
    out = repl.run(':save "~/quoted dir/two"')
    assert f"saved to {tmp_path / 'quoted dir' / 'two'}" in out
    out = repl.run(":load ~/my models/tiny one")
    assert "loaded lstm/3 model from" in out and "error" not in out
    assert repl.session.bundle.path == tmp_path / "my models" / "tiny one"
    assert repl.session.predictor.vocab.tokens == before.vocab.tokens
    story = tmp_path / "my stories" / "belling the cat.txt"
    story.parent.mkdir()
    shutil.copy(CAT, story)
    repl.session.config = repl.session.bundle.config
    from model.storage.store import cache_path

    shutil.copytree(tmp_path / "quoted dir" / "two", cache_path(story, repl.session.config))
    out = repl.run(":corpus ~/my stories/belling the cat.txt")
    assert "loaded the cached lstm/3 model for belling the cat" in out, out


@pytest.mark.parametrize(
    "text",
    [
        "the cat " * 12_500,  # 100k characters of words
        "x" * 100_000,  # one 100k-character word
        pytest.param("鼠" * 100_000, marks=pytest.mark.slow),  # slow: 100k single-character tokens
    ],
    ids=["words", "one-word", "cjk"],
)
def test_very_long_lines(repl, text):
    before = repl.session.predictor
    out = repl.run(text)
    assert f"reading only the last {MAX_LINE}" in out
    assert "next word after" in out or "first word" in out
    assert len(out) < 5_000  # no 100k-character echo
    assert_intact(repl, before)


def test_very_long_command_lines(repl):
    before = repl.session.predictor
    err = error_line(repl.run(":load " + "m" * 100_000))
    assert "the command has 100006 characters, more than 20000; shorten it" in err
    assert_intact(repl, before)


@pytest.mark.parametrize(
    "text",
    [
        "had a\x1b[A general\x1b[B",  # arrow-key escapes pasted into the line
        "had\r\na\ngeneral\n",  # pasted multi-line text
        "had\x00 a\x07 general\x7f\x9b",
        "\x1b]0;title\x07had a general",
        "\x03\x04\x1a",
    ],
    ids=["escapes", "multiline", "controls", "osc", "only-controls"],
)
def test_control_characters_and_pasted_text(repl, text):
    before = repl.session.predictor
    out = repl.run(text)
    assert "error" not in out and "Traceback" not in out
    if "general" in text:
        assert "next word after “had a general”" in out, out
        assert "unknown to this model" not in out
    assert_intact(repl, before)


def test_ctrl_c_while_loading_goes_back_to_the_prompt(repl, trained, monkeypatch):
    import repl.handlers.training as training_handlers

    def interrupted(path):
        raise KeyboardInterrupt

    before = repl.session.predictor
    monkeypatch.setattr(training_handlers, "load_bundle", interrupted)
    out = repl.run(f":load {trained}")
    assert "interrupted; the current model is still loaded" in out
    assert_intact(repl, before)


def test_an_unexpected_exception_is_one_line(repl, monkeypatch):
    before = repl.session.predictor
    monkeypatch.setattr(repl.session, "show_info", lambda: 1 / 0)
    line = error_line(repl.run(":info"))
    assert "ZeroDivisionError" in line and "--debug" in line
    assert_intact(repl, before)


def test_quit_and_help_still_work(repl):
    assert repl.session.run_line(":quit") is False
    assert ":topk N" in repl.run(":help")


# ---- model bundles ----------------------------------------------------------------------
def _edit_json(name, change):
    def edit(d: Path):
        data = json.loads((d / name).read_text(encoding="utf-8"))
        change(data)
        (d / name).write_text(json.dumps(data), encoding="utf-8")

    return edit


def _edit_weights(change):
    def edit(d: Path):
        with np.load(d / "weights.npz") as z:
            w = {k: z[k] for k in z.files}
        change(w)
        np.savez(d / "weights.npz", **w)
        _edit_json("config.json", lambda c: c.pop("files"))(d)  # as an older bundle: no checksums

    return edit


def _truncate(d: Path):
    data = (d / "weights.npz").read_bytes()
    (d / "weights.npz").write_bytes(data[: len(data) // 2])


def _swap_vocab(d: Path):
    v = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    v["tokens"][0], v["tokens"][1] = v["tokens"][1], v["tokens"][0]
    (d / "vocab.json").write_text(json.dumps(v), encoding="utf-8")


def _shrink_vocab(d: Path):
    def change(v):
        v["tokens"], v["counts"] = v["tokens"][:-1], v["counts"][:-1]

    _edit_json("vocab.json", change)(d)
    _edit_json("config.json", lambda c: c.pop("files"))(d)


BUNDLE_CASES = [
    ("no-config", lambda d: (d / "config.json").unlink(), "not a complete model: config.json is missing"),
    ("no-vocab", lambda d: (d / "vocab.json").unlink(), "not a complete model: vocab.json is missing"),
    ("no-weights", lambda d: (d / "weights.npz").unlink(), "not a complete model: weights.npz is missing"),
    ("truncated-weights", _truncate, "does not match the bundle it is in"),
    ("truncated-weights-old-bundle", lambda d: (_truncate(d), _edit_json("config.json", lambda c: c.pop("files"))(d)), "weights.npz is truncated or corrupt"),
    ("empty-weights", lambda d: ((d / "weights.npz").write_bytes(b""), _edit_json("config.json", lambda c: c.pop("files"))(d)), "weights.npz is truncated or corrupt"),
    ("vocab-smaller-than-weights", _shrink_vocab, "vocab.json has 111 words but the weights are for 112"),
    ("vocab-from-elsewhere", _swap_vocab, "vocab.json does not match the bundle it is in"),
    ("weights-of-another-shape", _edit_weights(lambda w: w.update({"lstm/kernel": w["lstm/kernel"][:2]})), "weights.npz: array 'lstm/kernel' has shape (2, 64), not (12, 64)"),
    ("weights-missing-array", _edit_weights(lambda w: w.pop("logits/bias")), "array 'logits/bias' is missing"),
    ("newer-format", _edit_json("config.json", lambda c: c.update(format_version=99)), "format version 99, newer than this story-repl (1); upgrade story-repl"),
    ("newer-vocab-format", lambda d: (_edit_json("vocab.json", lambda v: v.update(format_version=7))(d), _edit_json("config.json", lambda c: c.pop("files"))(d)), "vocab.json has format version 7, newer"),
    ("config-not-json", lambda d: (d / "config.json").write_text("{oops"), "config.json is not valid JSON"),
    ("config-not-a-dict", _edit_json("config.json", lambda c: c.update(config="lstm")), "config.json has no valid configuration"),
    ("config-bad-value", _edit_json("config.json", lambda c: c["config"].update(units=-4)), "units expects an integer >= 1"),
    ("arch-mismatch", _edit_json("config.json", lambda c: c["config"].update(arch="bilstm")), "weights.npz does not match its config (bilstm)"),
    ("vocab-bad-counts", lambda d: (_edit_json("vocab.json", lambda v: v["counts"].__setitem__(0, "many"))(d), _edit_json("config.json", lambda c: c.pop("files"))(d)), "counts are not whole numbers"),
    ("vocab-binary", lambda d: ((d / "vocab.json").write_bytes(b"\xff\xfe\x00"), _edit_json("config.json", lambda c: c.pop("files"))(d)), "vocab.json is unreadable"),
    ("a-file", lambda d: (shutil.rmtree(d), d.write_text("hello")), "is not a model directory"),
]


@pytest.mark.parametrize("name, damage, message", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_broken_bundles_are_refused_and_the_model_stays(repl, trained, tmp_path, name, damage, message):
    bad = tmp_path / "bad bundle"
    shutil.copytree(trained, bad)
    damage(bad)
    with pytest.raises(StoryError) as e:
        load_bundle(bad)
    assert message in str(e.value) and "\n" not in str(e.value)
    before = repl.session.predictor
    err = error_line(repl.run(f":load {bad}"))
    assert message in err
    assert repl.session.bundle.path == trained
    assert_intact(repl, before)


def test_missing_optional_files_still_load(trained, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(trained, d)
    (d / "metrics.json").unlink()
    (d / "model.keras").unlink()
    bundle = load_bundle(d)  # predicting needs neither
    assert Predictor(bundle).predict_text("had a general", 2)["predictions"]
    with pytest.raises(StoryError, match="has no model.keras: it can predict but not resume training"):
        bundle.keras_model()


def test_a_bundle_from_another_corpus_says_so(repl, tmp_path):
    other = tmp_path / "fox.txt"
    other.write_text("the quick brown fox jumps over the lazy dog and the dog sleeps on.\n" * 3)
    path = random_bundle(tmp_path / "fox model", other, units=16, embedding_dim=4)
    out = repl.run(f":load {path}")
    assert "loaded lstm/3 model" in out and "note: it was trained on fox, not on belling_the_cat" in out
    assert repl.session.predictor.vocab.tokens[0] == "the" and "fox" in repl.session.predictor.vocab.tokens
    # a path recorded in a model is never opened on its own: :train keeps the session's text
    assert repl.session.corpus_spec != str(other.resolve()) and ":train still trains belling_the_cat" in out


class _Marker:
    """Unpickling this creates a file: the sign that loading ran code from the bundle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def test_pickled_weights_are_refused_without_running_them(repl, trained, tmp_path):
    bad = tmp_path / "evil"
    shutil.copytree(trained, bad)
    marker = tmp_path / "pwned"
    with np.load(bad / "weights.npz") as z:
        w = {k: z[k] for k in z.files}
    w["embedding"] = np.array([_Marker(marker)], dtype=object)
    np.savez(bad / "weights.npz", **w)
    _edit_json("config.json", lambda c: c.pop("files"))(bad)  # so the arrays are what gets checked
    with pytest.raises(StoryError, match="holds pickled Python objects, which could run code; refusing to load it"):
        load_bundle(bad)
    before = repl.session.predictor
    assert "refusing to load it" in error_line(repl.run(f":load {bad}"))
    assert not marker.exists()
    assert_intact(repl, before)


def test_keras_file_is_loaded_in_safe_mode(trained, tmp_path):
    """A model.keras with a Python lambda inside is refused, and the lambda never runs."""
    import keras

    marker = tmp_path / "ran"
    inp = keras.Input((3,))
    where = str(marker)
    out = keras.layers.Lambda(lambda x: x * float(__import__("pathlib").Path(where).touch() is None))(inp)
    bad = tmp_path / "lambda"
    shutil.copytree(trained, bad)
    keras.Model(inp, out).save(bad / "model.keras")
    marker.unlink(missing_ok=True)  # building the model traced the lambda once
    _edit_json("config.json", lambda c: c.pop("files"))(bad)
    bundle = load_bundle(bad)  # inference does not read model.keras
    with pytest.raises(StoryError, match="model.keras contains Python code .*; refusing to run it"):
        bundle.keras_model()
    assert not marker.exists()
    shutil.copy(trained / "model.keras", bad / "model.keras")
    _edit_json("config.json", lambda c: c.update(files={"model.keras": "0" * 64}))(bad)
    with pytest.raises(StoryError, match="model.keras does not match the rest of the bundle"):
        load_bundle(bad).keras_model()


def test_save_into_a_directory_that_is_not_a_model_is_refused(repl, tmp_path):
    mine = tmp_path / "my documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    err = error_line(repl.run(f":save {mine}"))
    assert "is a directory that is not a story-repl model; choose a new or empty directory" in err
    assert sorted(os.listdir(mine)) == ["thesis.txt"] and (mine / "thesis.txt").read_text() == "precious"
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    (tmp_path / "a file").write_text("x")
    assert "it is a file, not a directory" in error_line(repl.run(f":save {tmp_path / 'a file'}"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "saved to" in repl.run(f":save {empty}")
    assert sorted(os.listdir(empty)) == sorted(f for f in FILES if f != "casing.json")  # a lower-case text has no casing


# ---- fuzzing ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_predictor(tmp_path_factory):
    return Predictor(load_bundle(random_bundle(tmp_path_factory.mktemp("fuzz") / "b", units=8, embedding_dim=4)))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(cmds.COMMANDS) + list(cmds.ALIASES)), rest=st.text(max_size=60))
def test_fuzz_command_arguments(name, rest):
    try:
        c = cmds.parse(f":{name} {rest}")
    except StoryError as e:
        assert "\n" not in str(e)
    else:
        assert c.name in cmds.COMMANDS


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fuzz_tokenizer(text):
    tokens = tokenize(text)
    assert all(isinstance(t, str) and t and not t.isspace() for t in tokens)
    assert tokenize(detokenize(tokens)) == tokens


@settings(max_examples=300, deadline=None)
@given(text=st.text(), k=st.integers(1, 200), prefix=st.text(max_size=5))
def test_fuzz_predictor_input(fuzz_predictor, text, k, prefix):
    p = fuzz_predictor
    ctx, partial = p.split_prefix(text)
    ids, unknown = p.encode(ctx)
    assert all(0 <= i < len(p.vocab) for i in ids)
    top = p.top_k(ids, k, prefix=partial or prefix)
    assert len(top) <= k and all(w != UNK for w, _ in top)
    assert all(0.0 <= prob <= 1.0 for _, prob in top)
    assert p.predict_text(text, k)["predictions"]


@pytest.fixture(scope="module")
def fuzz_session(fuzz_predictor, tmp_path_factory):
    s = Session(str(CAT), fuzz_predictor.config)
    s.set_bundle(fuzz_predictor.bundle)
    s.length = 3
    s.out = lambda *r: rendered(r)
    s.start_model = lambda *a, **kw: None  # no background training from random lines
    return s, tmp_path_factory.mktemp("fuzz-cwd")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.one_of(st.text(), st.text().map(lambda t: ":" + t), st.sampled_from(sorted(cmds.COMMANDS)).flatmap(lambda n: st.text(max_size=40).map(lambda t: f":{n} {t}"))))
def test_fuzz_session_lines(fuzz_session, monkeypatch, line):
    s, cwd = fuzz_session
    monkeypatch.chdir(cwd)  # :save with a random path stays in here
    before = s.predictor
    try:
        s.handle(line)
    except StoryError as e:
        assert "\n" not in str(e)
    assert s.predictor is before or s.predictor.vocab.tokens == before.vocab.tokens
    s.k, s.length = 10, 3

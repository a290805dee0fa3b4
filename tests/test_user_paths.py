"""The training paths a new user walks: what --seed means, a training cut short and resumed,
sample lines only where asked, a new corpus answering at once, the fitting step's progress and
its n-gram kept for the next training, --encoding in the REPL, and the wording of counts."""
from __future__ import annotations

import json
import threading

import pytest

from helpers import CAT, ROOT, Repl, random_bundle, rendered, tiny_config

AESOP = ROOT / "corpora" / "aesops_fables.txt"


@pytest.fixture
def cat_bundle(tmp_path):
    """A model of belling_the_cat with random weights (no TensorFlow)."""
    from model.storage.bundle import load_bundle

    return load_bundle(random_bundle(tmp_path / "cat", CAT, units=8, embedding_dim=4))


def no_training(monkeypatch):
    """Make any training a test failure (a command must use the cached model)."""
    from model.storage import store

    def refuse(*a, **kw):
        raise AssertionError("a model was trained")

    monkeypatch.setattr(store, "train_and_cache", refuse)


# ---- 1. --seed on generate seeds the sampling; it does not pick (or train) a model -------------
def test_generate_seed_seeds_sampling_and_uses_the_cached_model(monkeypatch, capsys):
    from model.config import Config
    from model.storage.store import cache_path
    from repl.cli import main

    random_bundle(cache_path(CAT, Config()), CAT)
    no_training(monkeypatch)

    def tokens(*extra):
        code = main(["generate", "the cat", "--corpus", str(CAT), "--sample", "-n", "12", "--json", *extra])
        cap = capsys.readouterr()
        assert code == 0, cap.err
        return json.loads(cap.out)["tokens"]

    seven = tokens("--seed", "7")
    assert tokens("--seed", "7") == seven
    assert tokens("--seed", "8") != seven


def test_train_seed_selects_the_model_and_predict_refuses_seed(capsys):
    from repl.cli import build_parser, main
    from repl.models import config_from

    assert config_from(build_parser().parse_args(["generate", "x", "--seed", "7"])).seed == 42
    assert config_from(build_parser().parse_args(["generate", "x", "--train-seed", "7"])).seed == 7
    assert config_from(build_parser().parse_args(["predict", "x", "--train-seed", "5"])).seed == 5
    assert config_from(build_parser().parse_args(["train", "x", "--seed", "3"])).seed == 3
    assert main(["predict", "x", "--seed", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--train-seed 7" in err and len(err.splitlines()) == 1


# ---- 2. a training cut short is recorded, said, and resumed ------------------------------------
def stopped_after_first_epoch(epochs: int = 30):
    """A tiny model of belling_the_cat whose training was interrupted in its first epoch."""
    from model.storage import store

    stop = threading.Event()

    def progress(p):
        if p.kind == "batch":
            stop.set()

    bundle, result = store.train_and_cache(str(CAT), tiny_config(units=16, epochs=epochs), on_progress=progress, stop=stop)
    assert result.interrupted
    return bundle


def test_interrupted_training_is_recorded_said_and_resumed():
    bundle = stopped_after_first_epoch()
    assert bundle.metrics["interrupted"] is True
    assert bundle.metrics["epochs"] == 1 and bundle.metrics["planned_epochs"] == 30
    repl = Repl(bundle, corpus_spec=CAT)
    assert "1/30" in repl.session.training_note and ":train --resume" in repl.session.training_note
    info = repl.run(":info")
    assert "interrupted at epoch 1 of 30" in info and ":train --resume" in info
    out = repl.run(":train --resume")
    assert "resuming the training of belling_the_cat after 1 epoch" in out, out
    after = repl.session.bundle
    assert after.path == bundle.path and after.metrics["interrupted"] is False
    assert 1 < after.metrics["epochs"] <= 30 and len(after.metrics["history"]["loss"]) == after.metrics["epochs"]
    assert repl.session.training_note == ""


def test_the_repl_resumes_a_cut_short_training_until_the_user_stops_it():
    bundle = stopped_after_first_epoch()
    repl = Repl(bundle, corpus_spec=CAT)
    repl.session.resume_cut_short(auto=True)  # what opening the REPL does (unless --no-resume)
    assert repl.session.training
    repl.session.stop_event.set()  # :stop
    repl.session.train_thread.join(timeout=300)
    stopped = repl.session.bundle
    assert stopped.metrics["interrupted"] is True and stopped.metrics["auto_resume"] is False
    again = Repl(stopped, corpus_spec=CAT)
    again.session.resume_cut_short(auto=True)  # the user stopped it: only offered now
    assert not again.session.training
    assert ":train --resume continues it" in rendered(again.printed)


@pytest.mark.slow  # the REPL in a pseudo-terminal, training
def test_the_repl_resumes_a_training_cut_short_when_it_opens_it(_private_home, term):
    stopped_after_first_epoch()
    flags = ["--corpus", str(CAT), "--units", "16", "--embedding-dim", "12", "--epochs", "30"]  # its recipe
    t = term(_private_home, *flags, "--no-resume")
    t.expect(r"interrupted\s+at\s+epoch\s+1\s+of\s+30.*?:train\s+--resume\s+continues\s+it", timeout=60)
    t.expect(r"idle", timeout=60)  # the prompt is up: nothing trains
    assert t.quit_with("\x04") == 0
    t = term(_private_home, *flags)
    t.expect(r"resuming\s+the\s+training\s+of\s+belling_the_cat\s+after\s+1\s+epoch", timeout=60)
    t.expect(r"now\s+using", timeout=240)
    t.expect(r"idle", timeout=60)
    assert t.quit_with("\x04") == 0


# ---- 3. sample predictions: labelled, and only where asked -------------------------------------
def test_sample_lines_are_labelled_and_shown_only_when_asked(cat_bundle):
    from rich.console import Console

    from model.training.events import Progress
    from repl.train_progress import TrainingView

    sample = Progress("sample", epoch=1, epochs=2, sample=(["outwit", "their", "common"], ",", "enemy"))
    for verbose in (False, True):
        con = Console(record=True, width=200, color_system=None)
        with TrainingView(con, "training", verbose=verbose) as view:
            view(sample)
        text = con.export_text()
        assert ('sample: "outwit their common" → predicted "," (true "enemy")' in text) is verbose
        assert "] vs [" not in text
    repl = Repl(cat_bundle)
    start = len(repl.printed)
    repl.session._on_progress(sample)
    assert len(repl.printed) == start  # nothing above the prompt
    assert 'sample: "outwit their common" → predicted ","' in repl.run(":history")


# ---- 4. :corpus BOOK completes from the new book's n-gram at once ------------------------------
def test_corpus_switch_answers_from_the_new_ngram_while_training(cat_bundle, monkeypatch):
    from model.errors import StoryError
    from model.storage import store

    entered, release = threading.Event(), threading.Event()

    def slow_training(corpus, config, **kw):
        entered.set()
        release.wait(60)
        raise StoryError("training failed on purpose")

    monkeypatch.setattr(store, "train_and_cache", slow_training)
    repl = Repl(cat_bundle)
    old = repl.session.predictor
    repl.run(f":corpus {AESOP}", wait=False)
    assert entered.wait(60)
    pred = repl.session.predictor
    assert pred is not old and pred.mixture.neural is None
    assert "fox" in pred.vocab.tokens and repl.session.corpus_label() == "aesops_fables"
    release.set()
    repl.session.train_thread.join(60)
    assert repl.session.predictor.mixture.neural is not None  # the failure brought the old model back
    assert repl.session.bundle is cat_bundle
    assert "training failed on purpose" in rendered(repl.printed)


# ---- 5. the fitting step: progress, and the n-gram kept for the next training -----------------
def test_fitting_reports_progress_and_the_ngram_is_reused(monkeypatch, _private_home):
    from model.config import Config, resolve
    from model.prediction import build
    from model.prediction.ngram import KneserNey
    from model.text.corpus import read_corpus

    monkeypatch.setattr(build, "NGRAM_CACHE_TOKENS", 1000)  # the fable book counts as a big text here
    corpus = read_corpus(AESOP)
    cfg = resolve(Config(), corpus.n_tokens)
    seen = []
    first = build.build_components(corpus, cfg, None, None, lambda message, fraction: seen.append((message, fraction)))
    assert ("fitting the n-gram", 0.0) in seen and seen[-1] == ("fitting the mixture weights", 1.0)
    assert [f for _, f in seen] == sorted(f for _, f in seen)
    assert any(m == "fitting the n-gram" and 0 < f < 0.3 for m, f in seen)  # order by order
    kept = list((_private_home / "ngrams").glob("*/ngram.npz"))
    assert len(kept) == 1 and (kept[0].parent / "words.json").is_file()

    def no_fit(self, *a, **kw):
        raise AssertionError("the n-gram was fitted again")

    fit = KneserNey.fit
    monkeypatch.setattr(KneserNey, "fit", no_fit)
    second = build.build_components(corpus, cfg, None, None)
    assert second.ngram.kn.to_arrays()["meta"].tolist() == first.ngram.kn.to_arrays()["meta"].tolist()
    monkeypatch.setattr(KneserNey, "fit", fit)
    kept[0].write_bytes(b"not an array file")  # damaged: fitted again and rewritten
    build.build_components(corpus, cfg, None, None)
    assert kept[0].read_bytes()[:2] == b"PK"


def test_the_toolbar_status_shows_the_fitting_step(cat_bundle):
    from model.training.events import Progress

    repl = Repl(cat_bundle)
    repl.session._on_progress(Progress("fitting", message="fitting the n-gram", fraction=0.4))
    assert repl.session.status == "fitting the n-gram 40%"


# ---- 6. --encoding in :corpus and :train ----------------------------------------------------
def test_corpus_and_train_take_encoding_and_paths_with_spaces():
    from repl.commands import parse

    c = parse(":corpus latin1.txt --encoding latin-1")
    assert (c.arg, c.options) == ("latin1.txt", {"encoding": "latin-1"})
    c = parse(":corpus my  book.txt --encoding=cp1252")
    assert (c.arg, c.options) == ("my  book.txt", {"encoding": "cp1252"})
    c = parse(":train --encoding latin-1 my book.txt --time-limit 10m")
    assert (c.arg, c.options) == ("my book.txt", {"encoding": "latin-1", "time_limit": 600.0})
    assert parse(":train --resume").options == {"resume": True}
    assert parse(":corpus ~/a b.txt").arg.endswith("/a b.txt")


def test_corpus_with_encoding_reads_a_latin1_text(cat_bundle, tmp_path, monkeypatch):
    from model.errors import StoryError
    from model.storage import store

    read = []

    def training(corpus, config, **kw):
        read.append(corpus.words)
        raise StoryError("no training in this test")

    monkeypatch.setattr(store, "train_and_cache", training)
    book = tmp_path / "le livre.txt"
    book.write_bytes("le café de la forêt, un café noir et un café crème.\n".encode("latin-1") * 20)
    repl = Repl(cat_bundle)
    assert "pass --encoding" in repl.run(f":corpus {book}")
    assert "no training in this test" in repl.run(f":corpus {book} --encoding latin-1")
    assert "café" in read[0] and "forêt" in read[0]


# ---- 7. counts, checks before training, the rare-words notice -------------------------------
def test_counts_and_epochs_are_worded(capsys):
    from types import SimpleNamespace

    from model.training.events import counted
    from repl.models import err_console, report_training

    assert counted(1, "epoch") == "1 epoch" and counted(12384, "word") == "12,384 words"
    result = SimpleNamespace(interrupted=False, stop_reason="reached the accuracy ceiling", accuracy=0.5, ceiling=0.9,
                             epochs=1, train_seconds=1.0, history={})
    report_training(err_console(), result, None, False)
    assert "1 epoch in" in capsys.readouterr().err


def test_info_writes_counts_with_thousands_separators(tmp_path):
    from model.storage.bundle import load_bundle

    repl = Repl(load_bundle(random_bundle(tmp_path / "b", AESOP, units=8, embedding_dim=4, context=2)), corpus_spec=AESOP)
    info = repl.run(":info")
    line = next(ln for ln in info.splitlines() if "words completable" in ln)
    assert "," in line.split("words completable")[0] and "," in line.split("LSTM's own:")[1]


def test_a_text_too_short_fails_before_training_starts(cat_bundle, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the mice\n")
    repl = Repl(cat_bundle)
    out = repl.run(f":corpus {short}", wait=False)
    assert "fewer than the context window plus one" in out and "2 training words" in out
    assert repl.session.train_thread is None and "in the background" not in out


def test_rare_words_notice_says_the_ngram_completes_them():
    from model.text.vocab import Vocab

    vocab = Vocab.build("a b a b a c d e f".split(), min_count=2)
    note = vocab.unk_note()
    assert "the network keeps 2 words" in note and "completed from the n-gram" in note
    assert "never predicted" not in note


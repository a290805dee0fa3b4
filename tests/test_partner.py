"""A second network in the mixture (``--partner``): the lstm2 component, on tiny real models."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from model.storage.bundle import load_bundle, save_result
from model.config import Config
from model.text.corpus import read_corpus
from model.errors import StoryError
from model.prediction.components import PARTNER
from model.prediction.scoring import score_stream, text_ids
from model.prediction.predictor import Predictor
from repl.cli import main

from helpers import ANSI, CAT, Repl, error_line, rendered

pytestmark = pytest.mark.usefixtures("fresh_home")  # STORY_REPL_HOME at tmp_path/home for every test

TINY = dict(units=32, embedding_dim=16, epochs=30, min_count=2, valid_fraction=0.25)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The windowed LSTM and the stream LSTM of one text and split, and one of another split."""
    from model.training.train import train

    tmp = tmp_path_factory.mktemp("partner")
    corpus = tmp / "cat.txt"
    shutil.copyfile(CAT, corpus)
    text = read_corpus(corpus)
    main_path = save_result(train(text, Config(**TINY)), tmp / "lstm")
    stream_path = save_result(train(text, Config(**{**TINY, "arch": "stream", "epochs": 20})), tmp / "stream")
    other_split = save_result(train(text, Config(**{**TINY, "valid_fraction": 0.4, "epochs": 5})), tmp / "other")
    return main_path, stream_path, other_split


def test_the_partner_joins_the_mixture_with_refitted_weights(pair):
    main_path, stream_path, _ = pair
    alone = Predictor(load_bundle(main_path))
    both = Predictor(load_bundle(main_path), partner=load_bundle(stream_path))
    assert PARTNER not in alone.components()
    assert both.components() == ["lstm", "ngram", "cache", "ncache", PARTNER]
    w = both.mixture.weights
    assert PARTNER in w.names and w.fitted_on == "validation split"
    assert all(abs(sum(row) - 1) < 1e-9 for row in w.by_bucket)
    assert w.overall[w.names.index(PARTNER)] > 0.01
    # Same vocabulary; a proper distribution over it.
    assert both.vocab.tokens == alone.vocab.tokens
    ids, _ = both.encode(both.tokenize("the mice had a general"))
    p = both.distribution(ids)
    assert p.shape == (len(both.vocab),) and p.sum() == pytest.approx(1.0) and (p > 0).all()
    # EM over a superset of the components fits the held-out text at least as well (up to
    # the weight floor and the per-bucket pull toward the overall weights).
    assert w.perplexity["mixture"] <= alone.mixture.weights.perplexity["mixture"] * 1.02
    # The partner's own distribution is the stream network's, spread over the full vocabulary.
    part = both.mixture.parts(ids)[PARTNER]
    assert part.sum() == pytest.approx(1.0)
    assert not np.allclose(part, both.mixture.parts(ids)["lstm"])


def test_fast_and_full_scoring_agree_for_the_partner(pair):
    main_path, stream_path, _ = pair
    pred = Predictor(load_bundle(main_path), partner=load_bundle(stream_path))
    tokens = pred.tokenize(CAT.read_text(encoding="utf-8"))[-100:] + ["zorblat", "the", "mice"]
    mix = pred.mixture.fresh()
    assert mix.component(PARTNER) is pred.mixture.component(PARTNER)
    ids, known = text_ids(mix, tokens)
    fast = score_stream(mix, ids, known, ranks=False)
    full = score_stream(mix, ids, known, ranks=True)
    np.testing.assert_allclose(fast["probs"][PARTNER], full["probs"][PARTNER], rtol=1e-6, atol=1e-12)


def test_eval_reports_the_partner_and_reproduces_it_alone(pair, capsys):
    main_path, stream_path, _ = pair

    def run(*extra):
        assert main(["eval", "--valid", "--model", str(main_path), "--partner", str(stream_path), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    out = run()
    assert set(out["components"]) == {"lstm", "ngram", "cache", "ncache", PARTNER}
    assert sum(c["weight"] for c in out["components"].values()) == pytest.approx(1.0)
    alone = run("--components", PARTNER)
    assert alone["active"] == [PARTNER]
    assert alone["perplexity"] == pytest.approx(out["components"][PARTNER]["perplexity"], rel=1e-9)


def test_a_partner_of_another_split_or_a_bad_spec_is_a_one_line_error(pair, capsys):
    main_path, _, other_split = pair
    with pytest.raises(StoryError, match="not trained on the same text, split and case"):
        Predictor(load_bundle(main_path), partner=load_bundle(other_split))
    with pytest.raises(StoryError, match="the partner is the model itself"):
        Predictor(load_bundle(main_path), partner=load_bundle(main_path))
    for spec, message in ((str(other_split), "not trained on the same text"), ("nonsense", "--partner expects an arch"),
                          ("stream", "no cached stream model for cat.txt; train it first")):
        assert main(["predict", "the mice", "--model", str(main_path), "--partner", spec]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow  # the REPL in a pseudo-terminal, twice
def test_the_repl_completes_with_the_partner_and_lists_it(pair, tmp_path, term):
    import pexpect

    main_path, stream_path, _ = pair
    t = term(tmp_path / "home", "--model", str(main_path), "--partner", str(stream_path))
    t.expect(r"›", timeout=120)
    t.send(":components\r")
    screen = t.expect(r"mixture\s+lstm\+ngram\+cache\+ncache\+lstm2", timeout=60)
    assert re.search(r"lstm2\s+on\s+0\.\d{3}", screen), screen
    t.send("the mice had a gen")
    screen = t.expect(r"general\s+\d+\.\d%", timeout=60)
    assert "general" in screen
    t.send("\x15")
    # :partner off drops it; :partner DIR adds it again (its weights fitted in the background).
    t.send(":partner off\r")
    t.expect(r"no partner network; predicting with lstm \+ ngram \+ cache \+ ncache", timeout=60)
    t.send(f":partner {stream_path}\r")
    t.expect(r"joins\s+the\s+mixture\s+as\s+lstm2,\s+weight\s+0\.\d{3}", timeout=60)
    t.send(":partner\r")
    t.expect(r"partner lstm2: .* \(weight 0\.\d{3}, on\)", timeout=60)
    assert t.quit_with("\x04") == 0

    bad = term(tmp_path / "home", "--model", str(main_path), "--partner", "nonsense")
    bad.child.expect(pexpect.EOF, timeout=120)
    bad.child.close()
    out = ANSI.sub("", bad.child.before or "") + ANSI.sub("", bad.text)
    assert bad.child.exitstatus != 0
    assert "--partner expects an arch" in out and "Traceback" not in out


def test_the_refitted_weights_are_kept_for_the_next_load(pair, tmp_path, monkeypatch):
    import model.prediction.build as build

    main_path, stream_path, _ = pair
    first = Predictor(load_bundle(main_path), partner=load_bundle(stream_path))
    saved = list((tmp_path / "home" / "partners").glob("*.json"))
    assert len(saved) == 1 and not list(saved[0].parent.glob("*.tmp*"))

    def no_refit(*a, **k):
        raise AssertionError("the weights were refitted instead of read back")

    with monkeypatch.context() as m:
        m.setattr(build, "fit_mixture_weights", no_refit)
        second = Predictor(load_bundle(main_path), partner=load_bundle(stream_path))
    assert second.mixture.weights.to_dict() == first.mixture.weights.to_dict()
    ids, _ = first.encode(first.tokenize("the mice had a general"))
    assert np.array_equal(first.distribution(ids), second.distribution(ids))
    # An unreadable file is refitted and rewritten; the weights come out the same.
    saved[0].write_text("{not json", encoding="utf-8")
    third = Predictor(load_bundle(main_path), partner=load_bundle(stream_path))
    assert third.mixture.weights.to_dict() == first.mixture.weights.to_dict()
    assert json.loads(saved[0].read_text(encoding="utf-8"))["names"][-1] == PARTNER


@pytest.mark.slow  # trains the stream partner in the background for 3 s
def test_partner_command_trains_attaches_shows_and_drops_the_partner(pair):
    """:partner stream trains the stream network of the same text and split in the background
    (here for at most 3 s) and adds it; once cached it is added at once; off drops it."""
    main_path, stream_path, _ = pair
    repl = Repl(load_bundle(main_path))
    repl.session.length = 3
    assert "no partner network" in repl.run(":partner")
    start = len(repl.printed)
    repl.run(":partner stream --time-limit 3s", wait=False)
    # While it trains: the model in use goes on; it cannot be dropped before it has joined.
    assert "the partner network is training; :stop it first" in error_line(repl.run(":partner off", wait=False))
    repl.session.train_thread.join(timeout=300)
    out = rendered(repl.printed[start:])
    # The session's own text (belling_the_cat.txt, the same sha256 as the model's cat.txt) is what it trains on.
    assert "partner (stream) on belling_the_cat.txt: training in the background for at most 3s" in out, out
    assert f"joins the mixture as {PARTNER}" in out and out.count("error") == 1, out  # only the refused :partner off
    pred = repl.session.predictor
    assert pred.components() == ["lstm", "ngram", "cache", "ncache", PARTNER]
    assert pred.mixture.available(PARTNER) and repl.session.partner_spec == "stream"
    assert re.search(rf"partner {PARTNER}: stream \(weight 0\.\d{{3}}, on\)", repl.run(":partner"))
    assert re.search(rf"{PARTNER}\s+on\s+0\.\d{{3}}", repl.run(":components"))
    assert "next word after" in repl.run("the mice had a")

    # Off: the model alone again; the parts the user switched off stay off across the change.
    assert "predicting with lstm + ngram + cache + ncache" in repl.run(":partner off")
    assert not repl.session.predictor.mixture.available(PARTNER)
    repl.run(":components lstm,ngram,cache")
    # Cached now: no training, added at once; ncache stays off, lstm2 comes on.
    out = repl.run(":partner stream")
    assert "training" not in out and f"joins the mixture as {PARTNER}" in out, out
    assert repl.session.predictor.components() == ["lstm", "ngram", "cache", PARTNER]
    # A saved model directory.
    out = repl.run(f":partner {stream_path}")
    assert f"from {stream_path} joins the mixture" in out, out
    # Bad input: one line each, and the partner in use stays.
    for line, message in (
        (":partner nonsense", ":partner expects an arch"),
        (":partner --time-limit 3s", ":partner --time-limit needs the arch to train"),
        (":partner off --time-limit 3s", ":partner off takes no --time-limit"),
        (f":partner {stream_path} --time-limit 3s", "applies to an arch to train"),
        (":partner stream --time-limit soon", ":partner --time-limit expects a duration"),
        (f":partner {main_path}", "the partner is the model itself"),
    ):
        assert message in error_line(repl.run(line)), line
    assert repl.session.predictor.mixture.available(PARTNER)


def test_a_trained_lstm_joins_the_mixture_and_switched_off_parts_stay_off(pair):
    """While a book's LSTM trains the n-gram and the cache answer; when it is trained it comes
    on (with the neural cache), and what the user switched off meanwhile stays off."""
    from model.config import resolve
    from model.prediction.build import ngram_mixture
    from repl.session import Session

    main_path, _, _ = pair
    bundle = load_bundle(main_path)
    corpus = read_corpus(bundle.corpus_path)
    for only, expect in ((None, ["lstm", "ngram", "cache", "ncache"]), ("ngram", ["lstm", "ngram", "ncache"])):
        s = Session(bundle.corpus_path, bundle.config)
        s.out = lambda *r: None
        cfg = resolve(bundle.config, len(corpus.tokens))
        s.set_predictor(Predictor.from_mixture(ngram_mixture(corpus, cfg), cfg), corpus.sha256)
        assert s.predictor.components() == ["ngram", "cache"]
        if only:  # the cache off
            s.run_line(f":components {only}")
        s.set_bundle(bundle)
        assert s.predictor.components() == expect

"""The mixture predictor: LSTM + Kneser-Ney + cache over the full vocabulary, on tiny real models."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from model.storage.bundle import load_bundle, save_result
from model.config import Config
from model.text.corpus import read_corpus
from model.prediction.weights import em_weights, fit_weights
from model.prediction.predictor import Predictor
from model.evaluation import evaluate
from repl.cli import main

from helpers import CAT

COMPONENTS = ("lstm", "ngram", "cache", "ncache")  # a bundle's own, in their order

pytestmark = pytest.mark.usefixtures("fresh_home")  # STORY_REPL_HOME at tmp_path/home, no baseline kept

TINY = dict(units=32, embedding_dim=16, epochs=30)


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A tiny model whose LSTM folds singletons into <unk> and holds out the last quarter."""
    from model.training.train import train

    tmp = tmp_path_factory.mktemp("mixture")
    corpus = tmp / "cat.txt"
    shutil.copyfile(CAT, corpus)
    result = train(read_corpus(corpus), Config(**TINY, min_count=2, valid_fraction=0.25))
    return save_result(result, tmp / "model"), corpus


def test_every_training_word_has_its_own_probability(capped):
    path, corpus = capped
    bundle = load_bundle(path)
    pred = Predictor(bundle)
    train_tokens, _ = evaluate.split_tokens(bundle, read_corpus(corpus))
    assert bundle.vocab.unk_id is not None  # the LSTM's vocabulary is capped
    assert set(pred.vocab.tokens) == set(train_tokens)  # the predictor's is not
    assert "<unk>" not in pred.vocab.tokens
    ids, _ = pred.encode(pred.tokenize("the mice had a general"))
    p = pred.distribution(ids)
    assert p.shape == (len(pred.vocab),) and p.sum() == pytest.approx(1.0) and (p > 0).all()
    # Words the LSTM lacks share its <unk> mass in proportion to the n-gram.
    neural = pred.mixture.neural
    lstm = neural.lstm_probs(ids)
    ng = pred.mixture.ngram.after(ids)
    spread = neural.spread(lstm, ng)
    miss = np.flatnonzero(neural.missing)
    assert len(miss) > 5
    assert spread[miss].sum() == pytest.approx(lstm[bundle.vocab.unk_id])
    ratio = spread[miss] / ng[miss]
    assert np.allclose(ratio, ratio[0])


def test_components_are_saved_as_plain_files_and_load_back_identically(capped):
    path, _ = capped
    for name in ("words.json", "ngram.npz", "mixture.json"):
        assert (path / name).is_file()
    with np.load(path / "ngram.npz", allow_pickle=False) as z:  # plain arrays, no pickle
        assert "base" in z.files
    weights = json.loads((path / "mixture.json").read_text())
    assert weights["names"] == list(COMPONENTS)
    assert weights["fitted_on"] == "validation split"
    assert all(abs(sum(row) - 1) < 1e-9 for row in weights["by_bucket"])
    a = Predictor(load_bundle(path))
    b = Predictor(load_bundle(path))
    ids, _ = a.encode(a.tokenize("some said this , and some said"))
    assert np.array_equal(a.distribution(ids), b.distribution(ids))


def test_an_older_bundle_gets_its_components_rebuilt_in_memory(capped, tmp_path):
    path, _ = capped
    old = tmp_path / "old"
    shutil.copytree(path, old)
    reference = Predictor(load_bundle(path))
    for name in ("words.json", "ngram.npz", "mixture.json"):
        (old / name).unlink()
    rebuilt = Predictor(load_bundle(old))  # its text is a shipped corpus (same sha256)
    assert not (old / "ngram.npz").exists()  # loading never writes into a model directory
    ids, _ = reference.encode(reference.tokenize("the cat"))
    assert np.allclose(rebuilt.distribution(ids), reference.distribution(ids))
    load_bundle(old)  # still a valid bundle, checksums included


def test_a_name_typed_once_is_offered_from_then_on(capped):
    pred = Predictor(load_bundle(capped[0]))
    ctx, _ = pred.encode(pred.tokenize("the mice"))
    assert not [w for w, _ in pred.top_k(ctx, 10, prefix="zo")]
    pred.observe(pred.tokenize("the mice called on zorblat ."))
    assert "zorblat" in pred.vocab.tokens
    offered = [w for w, _ in pred.top_k(ctx, 10, prefix="zo")]
    assert offered[0] == "zorblat"


def test_components_can_be_switched_off(capped):
    pred = Predictor(load_bundle(capped[0]))
    ids, _ = pred.encode(pred.tokenize("the mice had a general"))
    both = pred.distribution(ids)
    pred.components(["ngram"])
    only = pred.distribution(ids)
    assert np.allclose(only, pred.mixture.ngram.after(ids))
    assert not np.allclose(only, both)
    from model.errors import StoryError

    with pytest.raises(StoryError, match="unknown component 'gpt'"):
        pred.components(["gpt"])


def test_em_finds_the_better_component():
    rng = np.random.default_rng(0)
    good = rng.uniform(0.2, 0.9, 500)
    bad = rng.uniform(0.001, 0.01, 500)
    w = em_weights(np.stack([good, bad], axis=1))
    assert w[0] > 0.95 and w.sum() == pytest.approx(1.0)
    # a component that is right where the other is wrong earns a real share
    p = np.stack([np.r_[good, bad], np.r_[bad, good]], axis=1)
    assert em_weights(p)[0] == pytest.approx(0.5, abs=0.05)
    # per bucket: each bucket trusts its own better component
    buckets = np.r_[np.zeros(500, int), np.ones(500, int)]
    fw = fit_weights(p, buckets, ["a", "b"], 2)
    assert fw.by_bucket[0][0] > 0.8 and fw.by_bucket[1][1] > 0.8


def test_eval_reports_each_component_and_reproduces_them_alone(capped, capsys):
    path, _ = capped

    def run(*extra):
        assert main(["eval", "--valid", "--model", str(path), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    out = run()
    assert set(out["components"]) == set(COMPONENTS)
    weights = [c["weight"] for c in out["components"].values()]
    assert sum(weights) == pytest.approx(1.0)
    assert out["unknown_rule"] == "oov-excluded"
    assert out["baseline"]["perplexity"] == pytest.approx(out["components"]["ngram"]["perplexity"])
    for name in COMPONENTS:  # each component alone, reproduced with --components
        alone = run("--components", name)
        assert alone["active"] == [name]
        assert alone["perplexity"] == pytest.approx(out["components"][name]["perplexity"], rel=1e-9)
        assert alone["tokens"] == out["tokens"]


def test_eval_matches_a_position_by_position_computation(capped):
    bundle = load_bundle(capped[0])
    pred = Predictor(bundle)
    text = "the mice had a general council to consider what measures they could take , said the zorblat ."
    tokens = pred.tokenize(text)
    got = evaluate.evaluate_text(bundle, tokens, predictor=pred)
    mix = pred.mixture.fresh()
    nll, n = 0.0, 0
    ids = [mix.word_id(t, add=True) for t in tokens]
    for i in range(1, len(ids)):
        if ids[i] >= mix.corpus_size:
            continue  # OOV: never scored
        nll -= np.log(mix.distribution(ids[:i])[ids[i]])
        n += 1
    assert got["tokens"] == n and got["unknown"] == 1
    assert got["perplexity"] == pytest.approx(np.exp(nll / n), rel=1e-6)


def test_training_stops_at_the_time_limit():
    from model.training.train import train

    result = train(read_corpus(CAT), Config(**TINY), time_limit=1e-9)
    assert result.stop_reason == "time limit"
    assert result.epochs >= 1  # the batch under way finished first


def test_cli_time_limit_is_validated(capsys):
    assert main(["train", "belling_the_cat", "--time-limit", "soon"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--time-limit" in err and "soon" in err


def test_the_fast_scoring_path_gives_the_full_distributions_probabilities(capped):
    """Weight fitting scores only the true word (no full distribution); it must agree."""
    from model.prediction.scoring import score_stream, text_ids

    pred = Predictor(load_bundle(capped[0]))
    tokens = pred.tokenize(CAT.read_text(encoding="utf-8"))[-120:] + ["zorblat", "the", "zorblat", "mice"]
    mix = pred.mixture.fresh()
    ids, known = text_ids(mix, tokens)
    fast = score_stream(mix, ids, known, ranks=False)
    full = score_stream(mix, ids, known, ranks=True)
    assert len(fast["positions"]) == len(full["positions"]) > 80
    for name in COMPONENTS:
        np.testing.assert_allclose(fast["probs"][name], full["probs"][name], rtol=1e-6, atol=1e-12)  # float32 network sums
    assert np.array_equal(fast["buckets"], full["buckets"])


def test_the_neural_cache_reads_a_line_after_the_story_before_it(capped):
    """A line observed after a story gives the neural cache one pair more: the state after the
    story's last words, and the line's first word (what a line start is predicted from)."""
    path, _ = capped
    alone, after = Predictor(load_bundle(path)), Predictor(load_bundle(path))
    story = "the mice had a general council".split()
    line = "to consider what measures they could take".split()
    alone.observe(line)
    after.observe(line, before=story)
    a, b = alone.mixture.component("ncache"), after.mixture.component("ncache")
    assert len(b.targets) == len(a.targets) + 1 == len(line)
    neural = after.mixture.neural
    ids = after.encode(story + line)[0]
    assert list(b.targets) == ids[len(story) :]
    for j, state in enumerate(b.states):  # each word's state reads the story too, as far as the window goes
        np.testing.assert_allclose(state, neural.features(ids[: len(story) + j]), rtol=0, atol=1e-6)
    assert not np.allclose(b.states[0], neural.features(ids[len(story) : len(story)]))  # not the empty window

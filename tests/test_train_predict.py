"""Real training on the seed story: ceiling, confidence, exact regeneration, determinism, round trips."""
from __future__ import annotations

import numpy as np
import pytest

from model.storage.bundle import load_bundle, save_result
from model.config import Config
from model.text.corpus import read_corpus
from model.prediction.predictor import Predictor
from model.training.train import train

from helpers import CAT, tiny_config


def test_default_model_reaches_the_ceiling(default_bundle):
    m = default_bundle.metrics
    assert m["ceiling"] == pytest.approx(199 / 201)
    assert m["accuracy"] == pytest.approx(199 / 201)
    assert "ceiling" in m["stop_reason"]
    cfg = default_bundle.config
    assert (cfg.arch, cfg.context, cfg.units) == ("lstm", 3, 512)
    assert len(default_bundle.vocab) == 112


def test_had_a_general_council(default_bundle):
    out = Predictor(default_bundle).predict_text("had a general", 5)
    assert out["context"] == ["had", "a", "general"]
    assert out["unknown"] == []
    first = out["predictions"][0]
    assert first["word"] == "council" and first["prob"] > 0.9
    assert len(out["predictions"]) == 5
    probs = [p["prob"] for p in out["predictions"]]
    assert probs == sorted(probs, reverse=True)


def test_unknown_words_are_named_and_skipped(default_bundle):
    p = Predictor(default_bundle)
    out = p.predict_text("had a zebra general", 3)
    assert out["unknown"] == ["zebra"]
    assert out["context"] == ["had", "a", "general"]
    assert out["predictions"][0]["word"] == "council"


@pytest.mark.slow  # trains the default model at context 4
def test_context_4_regenerates_the_story_exactly():
    corpus = read_corpus(CAT)
    result = train(corpus, Config(context=4))
    assert result.accuracy == pytest.approx(result.ceiling)
    pred = Predictor(load_bundle(save_result(result, _tmp())))
    toks = corpus.tokens
    start = toks.index("general") + 1
    expected = toks[start : start + 32]
    got = pred.generate(["had", "a", "general"], 32, greedy=True)
    assert got == expected
    assert got[0] == "council" and got[-3:] == ["young", "mouse", "got"]


def _tmp():
    import tempfile

    return tempfile.mkdtemp(prefix="ctx4-") + "/bundle"


@pytest.mark.slow  # trains three models
def test_same_seed_same_vocab_weights_and_text(tmp_path):
    corpus = read_corpus(CAT)
    cfg = tiny_config(epochs=15, seed=7)
    a = train(corpus, cfg)
    b = train(corpus, cfg)
    c = train(corpus, cfg.replace(seed=8))
    assert a.vocab.tokens == b.vocab.tokens
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.model.get_weights(), c.model.get_weights()))
    pa = Predictor(load_bundle(save_result(a, tmp_path / "a")))
    pb = Predictor(load_bundle(save_result(b, tmp_path / "b")))
    ta = pa.generate(["the", "cat"], 20, greedy=False, temperature=1.0, seed=3)
    tb = pb.generate(["the", "cat"], 20, greedy=False, temperature=1.0, seed=3)
    assert ta == tb


def test_save_load_round_trip_identical_predictions(tmp_path):
    corpus = read_corpus(CAT)
    result = train(corpus, tiny_config(epochs=10))
    b1 = load_bundle(save_result(result, tmp_path / "one"))
    from model.storage.bundle import copy_bundle

    b2 = load_bundle(copy_bundle(b1, tmp_path / "two"))
    p1, p2 = Predictor(b1), Predictor(b2)
    for text in ["had a general", "the cat", "", "mice"]:
        ids1, _ = p1.encode(p1.tokenize(text))
        np.testing.assert_array_equal(p1.distribution(ids1), p2.distribution(ids1))
    assert b2.vocab.tokens == b1.vocab.tokens and b2.config == b1.config
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(
        ["model.keras", "weights.npz", "vocab.json", "config.json", "metrics.json", "words.json", "ngram.npz", "mixture.json"]
    )


@pytest.mark.parametrize("arch", ["lstm", "stacked", "bilstm"])
def test_network_shapes(arch):
    from model.training.network import build_network, export_weights

    cfg = Config(arch=arch, units=8, embedding_dim=4, context=5)
    net = build_network(cfg, 30)
    assert net.input_shape == (None, 5)
    assert net.output_shape == ((None, 30) if arch == "bilstm" else (None, 5, 30))
    w = export_weights(net, cfg)
    assert w["embedding"].shape == (31, 4)
    assert w["logits/kernel"].shape == (16 if arch == "bilstm" else 8, 30)


def test_sampling_never_yields_unk_and_respects_seed(tmp_path):
    corpus = read_corpus(CAT)
    result = train(corpus, tiny_config(epochs=5, max_vocab=40))
    p = Predictor(load_bundle(save_result(result, tmp_path / "b")))
    assert p.lstm_vocab.unk_id is not None  # the network folds rare words into <unk> ...
    assert "<unk>" not in p.vocab.tokens  # ... the predictor offers every word instead
    assert len(p.vocab) > len(p.lstm_vocab)
    words = p.generate(["the"], 300, greedy=False, temperature=2.0, seed=1)
    assert "<unk>" not in words
    assert all(w != "<unk>" for w, _ in p.top_k([0], len(p.vocab)))
    assert p.generate(["the"], 30, greedy=False, seed=5) == p.generate(["the"], 30, greedy=False, seed=5)

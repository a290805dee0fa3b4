"""The numpy predictor computes exactly what the Keras network computes.

For each encoder a tiny real model is trained on belling_the_cat, saved as a bundle and
loaded back. The numpy :class:`model.prediction.predictor.Predictor` must give the probabilities of
softmax(Keras logits) on full windows, on contexts shorter than the window (left-padded),
on an empty context and on a context with a word the vocabulary does not know (skipped).
The Keras model re-read from ``model.keras`` must agree too, and saving/loading must not
change a single prediction.
"""
from __future__ import annotations

import numpy as np
import pytest

from model.config import Config

ARCHS = ("lstm", "stacked", "bilstm")
CONTEXT = 4
TOL = 1e-5

# (arch, context): the three encoders on a short (unrolled) window, plus one window longer
# than model.training.network.UNROLL_MAX, where Keras runs its recurrent loop instead of unrolling;
# the stream arch (never unrolled) untied and with tied weights ("stream-tied").
CASES = [(a, CONTEXT) for a in ARCHS] + [("bilstm", 10), ("stream", CONTEXT), ("stream-tied", 10)]
# The quick tier (-m "not slow") checks one windowed and one stream encoder; each case trains a model.
QUICK = {("lstm", CONTEXT), ("stream", CONTEXT)}
PARAMS = [pytest.param(c, id=f"{c[0]}-ctx{c[1]}", marks=() if c in QUICK else pytest.mark.slow) for c in CASES]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STORY_REPL_HOME", str(tmp_path))


@pytest.fixture(scope="module")
def corpus():
    from model.text.corpus import read_corpus

    return read_corpus("corpora/belling_the_cat.txt")


@pytest.fixture(scope="module", params=PARAMS)
def trained(request, corpus, tmp_path_factory):
    """(TrainResult, saved bundle path) of a tiny model trained for a few epochs."""
    from model.storage.bundle import save_result
    from model.training.train import train

    arch, context = request.param
    # Enough epochs that the distributions are far from uniform, so agreement means something.
    if arch.startswith("stream"):  # streams of 8 tokens; the tied output needs embedding_dim == units
        config = Config(arch="stream", units=16, embedding_dim=16, context=context, epochs=40, batch_size=4, bptt=8,
                        tie_weights=arch == "stream-tied")
    else:
        config = Config(arch=arch, units=16, embedding_dim=8, context=context, epochs=40)
    result = train(corpus, config)
    path = save_result(result, tmp_path_factory.mktemp(f"bundle-{arch}-{context}") / "model")
    return result, path


def keras_input(ids: list[int], context: int) -> np.ndarray:
    """Network input built independently of the predictor: last ``context`` ids + 1, left-padded with 0."""
    tail = [i + 1 for i in ids[-context:]] if ids else []
    return np.asarray([[0] * (context - len(tail)) + tail], dtype=np.int32)


def keras_probs(model, rows: np.ndarray) -> np.ndarray:
    """softmax of the Keras logits for the word after the full window, in float64."""
    logits = np.asarray(model(rows, training=False), dtype=np.float64)
    if logits.ndim == 3:  # a prediction after every prefix: the last one is the next word
        logits = logits[:, -1, :]
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def contexts(corpus, predictor) -> dict[str, list[int]]:
    """Named id contexts: full windows, shorter ones, empty, and one with a skipped unknown word."""
    ids, unknown = predictor.encode(corpus.tokens)
    assert not unknown
    c = predictor.context
    out = {f"full@{s}": ids[s : s + c] for s in (0, 17, 60, len(ids) - c)}
    out["longer-than-window"] = ids[30 : 30 + c + 5]  # only the last `context` words count
    for k in range(1, c):
        out[f"short{k}"] = ids[40 : 40 + k]
    out["empty"] = []
    known, unknown = predictor.encode(["the", "zebra", "mice", "had", "xylophone"])
    assert unknown == ["zebra", "xylophone"]
    assert predictor.vocab.decode(known) == ["the", "mice", "had"]
    out["with-unknown"] = known
    return out


def lstm(pred, ids: list[int]) -> np.ndarray:
    """The network's own distribution after ``ids`` (the mixture's LSTM component, before mixing)."""
    assert pred.lstm_vocab.tokens == pred.vocab.tokens[: len(pred.lstm_vocab)]  # every word kept: same ids
    return pred.mixture.neural.lstm_probs(ids)


def test_training_ran(trained):
    result, _ = trained
    assert len(result.vocab) == 112
    assert result.epochs >= 1
    # A trained model, not an initial one: better than always guessing the commonest word on its own text.
    assert result.accuracy > 0.15


def test_numpy_matches_keras(trained, corpus):
    from model.storage.bundle import load_bundle
    from model.prediction.predictor import Predictor

    result, path = trained
    pred = Predictor(load_bundle(path))
    assert pred.context == result.config.context
    for name, ids in contexts(corpus, pred).items():
        ours = lstm(pred, ids)
        ref = keras_probs(result.model, keras_input(ids, pred.context))[0]
        assert ours.shape == ref.shape == (len(pred.vocab),)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL, err_msg=f"context {name}")
        assert abs(ours.sum() - 1.0) < 1e-5
        # Sanity: the distribution is not flat, so agreement is a real check. (An empty context
        # is never trained for the bidirectional encoder, so it may stay near uniform.)
        if name != "empty":
            assert ours.max() > 2.0 / len(pred.vocab), name


def test_numpy_batch_matches_keras(trained, corpus):
    """Many windows at once, through the batched path used for evaluation."""
    from model.storage.bundle import load_bundle
    from model.training.data import windows
    from model.prediction.predictor import Predictor

    result, path = trained
    pred = Predictor(load_bundle(path))
    ids, _ = pred.encode(corpus.tokens)
    x, _ = windows(np.asarray(ids), pred.context)
    ours = pred.probabilities_batch(np.asarray(x), batch=64).astype(np.float64)
    ref = keras_probs(result.model, np.asarray(x, np.int32) + 1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


def test_reloaded_keras_model_agrees(trained, corpus):
    from model.storage.bundle import load_bundle
    from model.prediction.predictor import Predictor

    result, path = trained
    bundle = load_bundle(path)
    reloaded = bundle.keras_model()
    pred = Predictor(bundle)
    named = contexts(corpus, pred)
    rows = np.concatenate([keras_input(ids, pred.context) for ids in named.values()])
    before = keras_probs(result.model, rows)
    after = keras_probs(reloaded, rows)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    ours = np.stack([lstm(pred, ids) for ids in named.values()])
    np.testing.assert_allclose(ours, after, rtol=0, atol=TOL)
    # The reloaded model keeps its optimizer, so training can resume from it.
    assert reloaded.optimizer is not None


def test_round_trip_is_identical(trained, corpus, tmp_path):
    from model.storage.bundle import copy_bundle, load_bundle
    from model.training.network import export_weights
    from model.prediction.numpy_net import Network
    from model.prediction.predictor import Predictor

    result, path = trained
    bundle = load_bundle(path)
    exported = export_weights(result.model, result.config)
    assert sorted(exported) == sorted(bundle.weights)
    for k, v in exported.items():
        assert np.array_equal(np.asarray(v, np.float32), bundle.weights[k]), k
    assert bundle.vocab.tokens == result.vocab.tokens
    assert bundle.config == result.config

    in_memory = Network(result.config, exported)
    loaded = Predictor(bundle)
    copied = Predictor(load_bundle(copy_bundle(bundle, tmp_path / "copy")))
    for name, ids in contexts(corpus, loaded).items():
        row = keras_input(ids, loaded.context)
        a = in_memory.probabilities(row)[0].astype(np.float64)
        b = lstm(loaded, ids)
        c = lstm(copied, ids)
        assert np.array_equal(loaded.distribution(ids), copied.distribution(ids)), name
        assert np.array_equal(a, b), name
        assert np.array_equal(b, c), name
    assert loaded.generate_ids([], 20) is not None
    assert list(loaded.generate_ids([], 20)) == list(copied.generate_ids([], 20))

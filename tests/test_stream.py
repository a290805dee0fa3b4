"""The stream arch: id streams, the carried state, training with it, tied weights, bundles.

Every model here is tiny and real (a few seconds of training on belling_the_cat). The
carried state is checked three ways: the batches of a stream follow each other, the Keras
layers called with a carried state give what one long pass gives, and the numpy network's
:meth:`Network.advance` reproduces the Keras validation loss computed with a carried state.
"""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from model.config import Config, resolve
from model.errors import StoryError

from helpers import CAT

TINY = dict(arch="stream", units=16, embedding_dim=16, context=6, bptt=8, batch_size=4, lr=0.02)


@pytest.fixture(scope="module")
def corpus():
    from model.text.corpus import read_corpus

    return read_corpus(CAT)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny tied stream model trained with a validation split, and its saved bundle."""
    from model.storage.bundle import save_result
    from model.training.train import train

    result = train(corpus, Config(**{**TINY, "batch_size": 2, "lr": 0.05}, tie_weights=True, epochs=12, valid_fraction=0.25))
    return result, save_result(result, tmp_path_factory.mktemp("stream") / "model")


# ---- streams ---------------------------------------------------------------------------
def test_streams_cut_the_text_into_consecutive_batches():
    from model.training.stream import StreamData

    ids = np.arange(1000, dtype=np.int32)
    data = StreamData.cut(ids, streams=4, bptt=35, seed=3)
    assert data.streams == 4 and data.bptt == 35 and data.tokens_per_step == 140
    assert data.data.shape == (4, 250)
    np.testing.assert_array_equal(data.data.ravel(), ids)  # each row is the next stretch of text
    for epoch in range(3):
        batches = list(data.batches(epoch))
        assert len(batches) == data.steps == (250 - 1) // 35 - 1
        for x, y in batches:
            assert x.shape == y.shape == (4, 35)
            np.testing.assert_array_equal(x[:, 1:] - 1, y[:, :-1])  # targets are the next ids
        for (_, y0), (x1, _) in zip(batches, batches[1:]):
            np.testing.assert_array_equal(x1[:, 0] - 1, y0[:, -1])  # the next batch goes on where this one ended
    offsets = [data.offset(e) for e in range(20)]
    assert all(0 <= o < 35 for o in offsets) and len(set(offsets)) > 1  # boundaries move between epochs
    assert offsets == [StreamData.cut(ids, 4, 35, seed=3).offset(e) for e in range(20)]  # seeded


def test_short_texts_get_shorter_steps():
    from model.training.stream import StreamData

    data = StreamData.cut(np.arange(10, dtype=np.int32), streams=8, bptt=35, seed=0)
    assert data.streams == 5 and data.bptt == 1  # 5 streams of 2 ids: one input, one target
    assert [x.tolist() for x, _ in data.batches()] == [[[1], [3], [5], [7], [9]]]
    with pytest.raises(StoryError, match="too few"):
        StreamData.cut(np.arange(1, dtype=np.int32), streams=1, bptt=35, seed=0)


def test_several_replicas_are_refused():
    from model.training.stream import stream_plan

    cfg = resolve(Config(**TINY), 300)
    with pytest.raises(StoryError, match="one device"):
        stream_plan(cfg, np.arange(300, dtype=np.int32) % 20, replicas=2)


# ---- configuration ---------------------------------------------------------------------------
def test_config_fields_and_validation():
    cfg = resolve(Config(arch="stream"), 100_000)
    assert cfg.bptt == 35 and cfg.context == 64 and cfg.objective == "softmax"
    if cfg.tie_weights:
        assert cfg.embedding_dim == cfg.units
    assert resolve(Config(arch="stream", tie_weights=True, units=48), 100_000).embedding_dim == 48
    assert resolve(Config(arch="lstm"), 100_000).bptt is None
    assert resolve(Config(arch="lstm"), 100_000).tie_weights is False
    # A stream config switched to a windowed arch drops the stream-only fields.
    assert resolve(Config(arch="lstm", tie_weights=True, bptt=20), 100_000).tie_weights is False
    with pytest.raises(StoryError, match="embedding-dim equal to --units"):
        Config(arch="stream", tie_weights=True, units=32, embedding_dim=16)
    with pytest.raises(StoryError, match="bptt"):
        Config(arch="stream", bptt=0)
    # A config saved before these fields existed loads with their defaults.
    old = {k: v for k, v in resolve(Config(), 100).to_dict().items() if k not in ("tie_weights", "bptt")}
    assert Config.from_dict(old).tie_weights is None and Config.from_dict(old).bptt is None


def test_cache_keys_of_older_configurations_are_unchanged():
    """The new fields at their defaults leave the key as it was computed before they existed."""
    for cfg in (Config(), Config(arch="stacked", context=5), resolve(Config(), 100)):
        before = {k: v for k, v in cfg.to_dict().items() if k not in ("tie_weights", "bptt")}
        blob = json.dumps({"corpus": "abc", **before}, sort_keys=True)
        assert cfg.key("abc") == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert Config(arch="stream").key("abc") != Config(arch="stream", tie_weights=True).key("abc")


@pytest.mark.parametrize("tie", [False, True])
def test_network_shapes(tie):
    from model.storage.bundle import expected_shapes
    from model.training.network import build_network, export_weights

    cfg = resolve(Config(arch="stream", units=8, embedding_dim=8, tie_weights=tie), 10_000)
    net = build_network(cfg, 30)
    assert net.input_shape == (None, None)  # any length: bptt steps in training, the window at inference
    assert net.output_shape == (None, None, 30)
    w = export_weights(net, cfg)
    assert {k: v.shape for k, v in w.items()} == expected_shapes(cfg, 30)
    assert ("logits/kernel" in w) is not tie
    assert sum(v.size for v in w.values()) == net.count_params()  # every weight exported, none twice


# ---- the carried state ----------------------------------------------------------------------
@pytest.mark.parametrize("tie", [False, True])
def test_keras_carried_state_equals_one_long_pass(tie):
    """Reading a stream in pieces, each from the state the last ended with, is reading it at once."""
    import tensorflow as tf

    from model.training.network import build_network, export_weights
    from model.prediction.numpy_net import Network
    from model.training.stream import StreamNet

    cfg = resolve(Config(**{**TINY, "tie_weights": tie, "dropout": 0.3}), 10_000)
    model = build_network(cfg, 30)
    net = StreamNet(model, cfg)
    x = np.random.default_rng(0).integers(1, 31, size=(3, 20)).astype(np.int32)
    whole = np.asarray(model(x, training=False))  # (3, 20, 30): the functional model, from zero
    states = net.zero_state(3)
    pieces = []
    for a, b in ((0, 7), (7, 8), (8, 20)):
        h, states = net.hidden(tf.constant(x[:, a:b]), states, training=False)
        kernel, bias = net.output_weights()
        pieces.append(np.asarray(h @ kernel + bias))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=0, atol=1e-5)
    # The numpy network, carrying its own state, agrees too.
    numpy_net = Network(cfg, export_weights(model, cfg))
    state = None
    outs = []
    for a, b in ((0, 11), (11, 20)):
        logits, state = numpy_net.advance(x[:, a:b], state)
        outs.append(logits)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), whole, rtol=0, atol=1e-5)
    np.testing.assert_allclose(numpy_net.logits(x), whole[:, -1], rtol=0, atol=1e-5)


def test_validation_loss_is_the_carried_state_cross_entropy(trained, corpus):
    """The validation loss training reports is the mean cross-entropy of the held-out streams,
    read with the state carried: recomputed here with the numpy network, step by step."""
    from model.storage.bundle import load_bundle
    from model.prediction.numpy_net import Network, softmax
    from model.training.stream import StreamNet, stream_loss, validation_data
    from model.training.train import prepare

    result, path = trained
    cfg, _vocab, _train_ids, valid_ids = prepare(corpus, result.config)
    data = validation_data(cfg, valid_ids)
    keras_loss = stream_loss(StreamNet(result.model, cfg), data)
    assert keras_loss == pytest.approx(min(result.history["val_loss"]), abs=1e-5)  # the best weights were put back
    net = Network(cfg, load_bundle(path).weights)
    state, nll, n = None, 0.0, 0
    for x, y in data.batches(0):
        logits, state = net.advance(x, state)
        p = softmax(logits.astype(np.float64))
        nll -= np.log(np.take_along_axis(p, y[..., None], axis=-1)).sum()
        n += y.size
    assert nll / n == pytest.approx(keras_loss, abs=1e-4)


# ---- training ----------------------------------------------------------------------------------
def test_training_learns_and_keeps_the_best_weights(trained, corpus):
    result, _ = trained
    assert result.config.arch == "stream" and result.config.tie_weights
    losses, val = result.history["loss"], result.history["val_loss"]
    assert len(val) == result.epochs >= 2
    assert losses[-1] < losses[0]
    assert min(val) < val[0]
    uniform = math.log(len(result.vocab))
    assert min(val) < uniform - 0.5  # far better than guessing among the words
    assert result.model.optimizer.iterations.numpy() > 0


@pytest.mark.slow  # trains two models
def test_training_is_deterministic(corpus):
    from model.training.train import train

    a = train(corpus, Config(**TINY, epochs=3))
    b = train(corpus, Config(**TINY, epochs=3))
    assert a.history["loss"] == b.history["loss"]
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_time_limit_and_stop_end_a_stream_run(corpus):
    import threading

    from model.training.train import train

    result = train(corpus, Config(**TINY, epochs=50), time_limit=1e-9)
    assert result.stop_reason == "time limit" and result.epochs == 1
    stop = threading.Event()
    stop.set()
    result = train(corpus, Config(**TINY, epochs=50), stop=stop)
    assert result.interrupted and result.epochs == 1


def test_sampled_objective_trains(corpus):
    from model.training.train import train

    result = train(corpus, Config(**TINY, objective="sampled", num_sampled=8, epochs=4))
    assert result.history["loss"][-1] < result.history["loss"][0]


# ---- bundles -----------------------------------------------------------------------------------
def test_tied_bundle_stores_one_matrix_and_predicts(trained, corpus, tmp_path):
    from model.storage.bundle import expected_shapes, load_bundle
    from model.prediction.predictor import Predictor

    result, path = trained
    bundle = load_bundle(path)
    assert "logits/kernel" not in bundle.weights  # the output kernel is the embedding transposed
    assert set(bundle.weights) == set(expected_shapes(bundle.config, len(bundle.vocab)))
    pred = Predictor(bundle)
    assert pred.context == 6
    ids, _ = pred.encode(corpus.tokens[:10])
    probs = pred.distribution(ids)
    assert probs.shape == (len(pred.vocab),) and abs(probs.sum() - 1) < 1e-9
    reloaded = bundle.keras_model()  # model.keras loads in safe mode, the tied layer included
    x = np.asarray([[0, 0, 3, 4, 5, 6]], np.int32)
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(result.model(x)), rtol=0, atol=1e-6)


def test_bundle_with_a_wrong_embedding_is_refused(trained, tmp_path):
    import shutil

    from model.storage.bundle import load_bundle

    _, path = trained
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    with np.load(broken / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["embedding"] = arrays["embedding"][:, :-1]
    np.savez(broken / "weights.npz", **arrays)
    cfg = json.loads((broken / "config.json").read_text())
    cfg.get("files", {}).pop("weights.npz", None)
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StoryError, match="array 'embedding' has shape"):
        load_bundle(broken)


def test_resume_continues_a_stream_model(trained, corpus):
    from model.storage.bundle import load_bundle
    from model.training.train import train

    result, path = trained
    bundle = load_bundle(path)
    before = int(bundle.keras_model().optimizer.iterations.numpy())
    again = train(corpus, bundle.config.replace(epochs=2), resume=bundle)
    assert int(again.model.optimizer.iterations.numpy()) > before
    assert again.vocab.tokens == result.vocab.tokens


def test_stream_states_extend_windows_one_step_at_a_time(trained, corpus):
    """Remembered states give the logits a full zero-state pass gives, for growing windows
    (a line typed word by word), windows that slide, and the empty window."""
    from model.storage.bundle import load_bundle
    from model.prediction.numpy_net import Network, StreamStates

    _, path = trained
    bundle = load_bundle(path)
    net = Network(bundle.config, bundle.weights)
    states = StreamStates(net, size=8)
    ids, _ = bundle.vocab.split_known(corpus.tokens[:40])
    c = bundle.config.context
    windows = [tuple(ids[max(0, i - c) : i]) for i in range(0, 40)]  # grows to `context`, then slides
    for w in windows:
        row = np.zeros((1, c), np.int64)
        if w:
            row[0, -len(w) :] = np.asarray(w) + 1
        np.testing.assert_allclose(states.logits(w), net.logits(row)[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(states.features(w), net.features(row)[0], rtol=0, atol=1e-6)
    assert len(states._states) == 8  # bounded
    p = states.probabilities(windows[-1])
    assert abs(p.sum() - 1) < 1e-5
    with pytest.raises(ValueError):
        StreamStates(Network(Config(arch="lstm", units=4, embedding_dim=4, context=3), {}))


def test_learning_rate_warms_up_then_anneals_to_its_floor():
    import keras

    from model.training.stream import ANNEAL, MIN_LR_FACTOR, WARMUP_STEPS, Schedule

    cfg = Config(arch="stream", lr=0.004)
    opt = keras.optimizers.Adam(learning_rate=cfg.lr)
    steps = 10  # a short epoch: the warm-up lasts it, not WARMUP_STEPS
    assert steps < WARMUP_STEPS
    sched = Schedule(opt, cfg, steps)
    rates = []
    for _ in range(steps + 3):
        sched.before_step()
        rates.append(float(opt.learning_rate.numpy()))
    assert rates[0] == pytest.approx(cfg.lr / steps)
    assert all(a < b for a, b in zip(rates[: steps - 1], rates[1:steps]))  # rising
    assert rates[steps - 1:] == [pytest.approx(cfg.lr)] * 4  # then held
    sched.anneal()
    assert float(opt.learning_rate.numpy()) == pytest.approx(cfg.lr * ANNEAL)
    for _ in range(20):
        sched.anneal()
    assert float(opt.learning_rate.numpy()) == pytest.approx(cfg.lr * MIN_LR_FACTOR)

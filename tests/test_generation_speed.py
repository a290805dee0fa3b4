"""The fast paths of generation give what the plain ones give: the LSTM step, the input
projections kept per word, the windows read one step per word, the stream state carried a word
at a time, the neural cache's stacked states, and the decoding steps that no longer sort the
whole vocabulary (figures: bench/README.md, Generation with a story). No wall-time assertions.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import random_bundle


def _net(arch="lstm", context=6, units=24, embedding_dim=12, vocab=60, scale=0.1, seed=0, **kw):
    from model.config import Config
    from model.prediction.numpy_net import Network
    from model.storage.bundle import expected_shapes

    config = Config(arch=arch, context=context, units=units, embedding_dim=embedding_dim, **kw)
    rng = np.random.default_rng(seed)
    return Network(config, {k: rng.normal(0, scale, s).astype(np.float32) for k, s in expected_shapes(config, vocab).items()})


# ---- the network -------------------------------------------------------------------------------
def _plain_lstm(xs, mask, kernel, recurrent, bias, reverse=False):
    """The LSTM step by step as Keras defines it, one gate at a time (the reference)."""

    def sigmoid(x):
        return 0.5 * (np.tanh(0.5 * x) + 1.0)

    b, t, _ = xs.shape
    u = recurrent.shape[0]
    h = np.zeros((b, u), np.float32)
    c = np.zeros((b, u), np.float32)
    outs = np.zeros((b, t, u), np.float32)
    zx = xs @ kernel + bias
    for s in range(t - 1, -1, -1) if reverse else range(t):
        z = zx[:, s] + h @ recurrent
        i, f, g, o = sigmoid(z[:, :u]), sigmoid(z[:, u : 2 * u]), np.tanh(z[:, 2 * u : 3 * u]), sigmoid(z[:, 3 * u :])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        m = mask[:, s : s + 1]
        c, h = np.where(m, c_new, c), np.where(m, h_new, h)
        outs[:, s] = h
    return outs, h, c


@pytest.mark.parametrize("shape", [(1, 16, 12, 24), (5, 7, 12, 24), (3, 9, 20, 33)])
@pytest.mark.parametrize("reverse", [False, True])
def test_the_lstm_step_is_the_plain_one_bit_for_bit(shape, reverse):
    from model.prediction.numpy_net import lstm_run

    b, t, e, u = shape
    rng = np.random.default_rng(1)
    xs = rng.normal(0, 1, (b, t, e)).astype(np.float32)
    mask = rng.random((b, t)) > 0.2
    kernel, recurrent = rng.normal(0, 0.5, (e, 4 * u)).astype(np.float32), rng.normal(0, 0.5, (u, 4 * u)).astype(np.float32)
    bias = rng.normal(0, 0.5, 4 * u).astype(np.float32)
    for got, want in zip(lstm_run(xs, mask, kernel, recurrent, bias, reverse), _plain_lstm(xs, mask, kernel, recurrent, bias, reverse)):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("rows", [1, 2, 7, 16, 17])
def test_a_few_rows_by_blocks_are_the_product(rows):
    """rows_matmul multiplies a few rows by a large matrix block by block: the same product."""
    from model.prediction.numpy_net import rows_matmul

    rng = np.random.default_rng(8)
    w = rng.normal(0, 1, (384, 1536)).astype(np.float32)  # 2.25 MiB: by blocks
    x = rng.normal(0, 1, (rows, 384)).astype(np.float32)
    np.testing.assert_allclose(rows_matmul(x, w), x @ w, rtol=1e-5, atol=1e-4)


def test_input_projections_are_kept_per_word():
    net = _net()
    ids = np.asarray([3, 7, 3, 0, 59])
    want = net.w["embedding"][ids] @ net.w["lstm/kernel"] + net.w["lstm/bias"]
    np.testing.assert_allclose(net.projection("lstm", ids), want, rtol=0, atol=1e-6)
    assert net._rows["lstm"][1].sum() == 4  # each word computed once
    np.testing.assert_allclose(net.projection("lstm", [7]), want[1:2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch,context", [("lstm", 3), ("lstm", 8), ("stacked", 5), ("stream", 10)])
def test_windows_one_step_per_word_match_the_whole_window(arch, context):
    """Growing windows (a text's start), sliding ones (a generation), a jump elsewhere and back:
    every window read one step after the one before gives what the whole window gives."""
    from model.prediction.numpy_net import WindowStates

    net = _net(arch, context)
    states = WindowStates(net, context, size=8)
    rng = np.random.default_rng(2)
    ids = [int(i) for i in rng.integers(0, 59, 40)]
    windows = [tuple(ids[max(0, i - context) : i]) for i in range(1, 40)]
    windows[20:20] = [tuple(int(i) for i in rng.integers(0, 59, context))]  # a window of another text
    fast = 0
    for w in windows:
        x = np.zeros((1, context), np.int64)
        x[0, -len(w) :] = np.asarray(w) + 1
        got = states.features(w)
        if got is not None:
            fast += 1
            np.testing.assert_allclose(got, net.features(x)[0], rtol=0, atol=1e-6)
    assert fast >= len(windows) - 2  # all but the jump (read on its own) and the window after it
    assert len(states._rows) <= 8
    with pytest.raises(ValueError):
        WindowStates(_net("bilstm", 4), 4)


def test_the_stream_step_is_one_word_of_advance():
    net = _net("stream", 64, units=16, embedding_dim=16)
    _, state = net.advance_features(np.asarray([[4, 9, 2]]))
    for token in (5, 0 + 1, 60):
        want = net.advance_features(np.asarray([[token]]), state)[1]
        got = net.step(token, state)
        for (h, c), (wh, wc) in zip(got, want):
            np.testing.assert_allclose(h, wh, rtol=0, atol=1e-6)
            np.testing.assert_allclose(c, wc, rtol=0, atol=1e-6)
        state = got
    zero = net.step(3, None)
    np.testing.assert_allclose(zero[-1][0], net.advance_features(np.asarray([[3]]))[1][-1][0], rtol=0, atol=1e-6)


# ---- the components ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def book_pred(tmp_path_factory):
    """A predictor whose network lacks some words of the text (capped vocabulary)."""
    from model.prediction.predictor import Predictor
    from model.storage.bundle import load_bundle

    path = random_bundle(tmp_path_factory.mktemp("capped") / "b", units=16, embedding_dim=8, max_vocab=40, context=4)
    return Predictor(load_bundle(path))


def test_windows_along_a_text_and_its_prefixes_are_the_plain_ones(book_pred):
    neural = book_pred.mixture.neural
    rng = np.random.default_rng(3)
    for _ in range(200):
        ids = [int(i) for i in rng.integers(0, neural.size + 3, int(rng.integers(2, 30)))]  # user words included
        start = int(rng.integers(1, len(ids)))
        assert neural._windows_along(ids, start) == [neural.window(ids[:j]) for j in range(start, len(ids))]
        assert neural.lstm_prefixes(ids, start - 1) == [neural.lstm_ids(ids[: j]) for j in range(start - 1, len(ids))]


def test_the_spread_over_the_full_vocabulary_is_the_plain_one(book_pred):
    neural = book_pred.mixture.neural
    assert neural._runs is not None and neural._n_lacking > 0
    rng = np.random.default_rng(4)
    lstm = rng.dirichlet(np.ones(len(book_pred.lstm_vocab)))
    ngram = rng.dirichlet(np.ones(neural.size))
    want = np.zeros(neural.size)
    want[neural.known_full] = lstm[neural.known_lstm]
    share = ngram[neural.missing]
    want[neural.missing] = lstm[neural.unk] * share / share.sum()
    assert np.array_equal(neural.spread(lstm, ngram), want / want.sum())


@pytest.mark.parametrize("runs", [True, False])
@pytest.mark.parametrize("user_words", [0, 3])
def test_the_spread_added_into_the_sum_is_the_weighted_spread(book_pred, runs, user_words):
    """What the network adds into the mixture's sum (a Spread term) is weight × its spread
    distribution, padded for the words the user added; the slice copies and the plain index alike."""
    from model.prediction.components import Spread

    neural = book_pred.mixture.neural
    rng = np.random.default_rng(5)
    lstm = rng.dirichlet(np.ones(len(book_pred.lstm_vocab)))
    ngram = rng.dirichlet(np.ones(neural.size))
    total = neural.size + user_words
    kept_runs = neural._runs
    try:
        neural._runs = kept_runs if runs else None
        start = rng.random(total)
        got = Spread(neural, lstm, ngram, total).add_to(start.copy(), 0.3)
        fresh = Spread(neural, lstm, ngram, total).add_to(None, 0.3)
    finally:
        neural._runs = kept_runs
    want = np.zeros(total)
    want[: neural.size] = neural.spread(lstm, ngram)
    np.testing.assert_allclose(got, start + 0.3 * want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fresh, 0.3 * want, rtol=1e-12, atol=1e-15)


def test_windows_read_on_a_miss_match_the_whole_window():
    """``read=True`` reads a window no kept one leads to, and the next ones continue it; a
    window kept is returned as kept."""
    from model.prediction.numpy_net import WindowStates

    for arch in ("lstm", "stacked"):
        net = _net(arch, 5, units=32)  # 4U = 128: the products go by blocks
        states = WindowStates(net, 5)
        rng = np.random.default_rng(6)
        ids = [int(i) for i in rng.integers(0, 59, 30)]
        for j in range(8, 30):
            window = tuple(ids[j - 5 : j])
            got = states.features(window, read=(j == 8))
            np.testing.assert_allclose(got, net.features(np.asarray([window]) + 1)[0], rtol=0, atol=1e-6)
        assert np.array_equal(states.features(window), got)  # kept: the same state


def test_the_neural_cache_stacks_its_states_once(book_pred):
    from model.prediction.caches import CACHE_FLOOR

    pred = book_pred
    ncache = pred.mixture.component("ncache")
    tokens = pred.vocab.tokens
    for k in range(12):
        pred.observe([tokens[(7 * k + j) % 30] for j in range(9)])
    ids = pred.encode([tokens[j] for j in (3, 1, 4, 1, 5, 9, 2, 6)])[0]
    ctx = pred.mixture.context(ids)
    got = ncache.distribution(ctx)
    # the plain computation: the observed pairs then the context's own, the last `size` of them
    states, targets = ctx.pairs(ncache.neural, 2 * ncache.size)
    states, targets = np.concatenate([ncache.states, states]), np.concatenate([ncache.targets, targets])
    assert states.dtype == np.float32  # kept in float32, compared in float32
    h = ctx.network(ncache.neural)[1].astype(np.float32)
    s = ncache.theta * (states[-ncache.size :] @ h).astype(np.float64)
    e = np.exp(s - s.max())
    t = targets[-ncache.size :]
    want = (1.0 - CACHE_FLOOR) * np.bincount(t, weights=e, minlength=ctx.total) / e.sum() + CACHE_FLOOR / ctx.total
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)


def _pairs_fresh_and_kept(pred, start_ids, words=12):
    """The (state, next word) pairs of each context of a generation: from the mixture that kept
    the last context's pairs, and from one that computes them anew each time."""
    mix = pred.mixture
    ncache = mix.component("ncache")
    ids = list(start_ids)
    grown = 0
    for nxt in list(pred.generate_ids(ids, words, seed=1)):
        ids.append(nxt)
        before = mix._line_pairs.get(ncache.neural.name)
        kept = mix.context(ids).pairs(ncache.neural, 2 * ncache.size)
        grown += mix._line_pairs[ncache.neural.name] is before  # grew by a row in place
        memo = dict(mix._line_pairs)
        mix._line_pairs.clear()
        fresh = mix.context(ids).pairs(ncache.neural, 2 * ncache.size)
        mix._line_pairs.update(memo)
        yield kept, fresh
    assert grown >= words - 2


def test_the_line_pairs_kept_between_contexts_are_the_fresh_ones(book_pred):
    tokens = book_pred.vocab.tokens
    book_pred.observe([tokens[j] for j in range(10)])
    ids = book_pred.encode([tokens[j] for j in (3, 1, 4, 1, 5)])[0]
    grew = 0
    for (ks, kt), (fs, ft) in _pairs_fresh_and_kept(book_pred, ids):
        np.testing.assert_array_equal(kt, ft)
        np.testing.assert_allclose(ks, fs, rtol=0, atol=1e-12)
        grew = max(grew, len(kt))
    assert grew >= 12


def test_the_line_pairs_from_an_empty_context_are_the_fresh_ones(book_pred):
    """A one-word context has no pair yet (its word has no state before it in the line), even
    right after the empty context was asked."""
    mix = book_pred.mixture
    neural = mix.component("ncache").neural
    w = book_pred.encode([book_pred.vocab.tokens[3], book_pred.vocab.tokens[5]])[0]
    mix._line_pairs.clear()
    for k in range(len(w) + 1):
        states, targets = mix.context(w[:k]).pairs(neural, 1000)
        assert list(targets) == w[1:k]
        fresh = neural.pairs(w[:k], 1)[0]
        assert len(states) == len(fresh)
        for got, want in zip(states, fresh):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_the_line_pairs_of_a_stream_story_are_the_fresh_ones(tmp_path):
    from model.prediction.predictor import Predictor
    from model.storage.bundle import load_bundle
    from model.story.context import StoryContext

    bundle = load_bundle(random_bundle(tmp_path / "s", arch="stream", units=16, embedding_dim=16, context=64))
    pred = Predictor(bundle)
    tokens = pred.vocab.tokens
    story = StoryContext()
    story.follow(pred, [(k + 1, tuple(tokens[(5 * k + j) % 50] for j in range(10))) for k in range(4)], "s")
    line = pred.encode([tokens[j] for j in (7, 8, 9)])[0]
    ids = pred.encode(list(story.tokens()))[0] + line
    for (ks, kt), (fs, ft) in _pairs_fresh_and_kept(pred, ids):
        np.testing.assert_array_equal(kt, ft)
        np.testing.assert_allclose(ks, fs, rtol=0, atol=1e-12)


# ---- decoding ----------------------------------------------------------------------------------
def _plain_truncate(logp, k, p, m):
    """Top-k, top-p and min-p over the whole vocabulary sorted (the reference)."""
    out = logp.copy()
    order = np.argsort(-logp, kind="stable")[: int(np.isfinite(logp).sum())]
    if k and k < len(order):
        order = order[:k]
    if p < 1 and len(order) > 1:
        q = np.exp(logp[order])
        cum = np.cumsum(q / q.sum())
        order = order[: max(1, min(int(np.searchsorted(cum, p - 1e-12)) + 1, len(order)))]
    if m > 0:
        order = order[logp[order] >= logp[order[0]] + math.log(m)]
    mask = np.ones(len(out), bool)
    mask[order] = False
    out[mask] = -np.inf
    return out


def _plain_banned(history, n):
    h = np.asarray(history, dtype=np.int64)
    if n <= 0 or len(h) < n:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.unique(h)
    wins = np.lib.stride_tricks.sliding_window_view(h[:-1], n - 1)
    return np.unique(h[np.flatnonzero((wins == h[len(h) - n + 1 :]).all(axis=1)) + n - 1])


def test_truncation_sampling_and_bans_are_the_plain_ones():
    from model.prediction import decoding as D
    from model.prediction import truncation as T

    rng = np.random.default_rng(5)
    for trial in range(400):
        v = int(rng.choice([3, 40, 2000, 5000]))  # above truncation.SORT_ALL: the binned top-p
        g = rng.gamma(float(rng.choice([0.05, 1.0, 20.0])), size=v) + 1e-300  # a Dirichlet draw (rng.dirichlet gives NaN for small ones at this size)
        probs = g / g.sum()
        if trial % 4 == 0:  # ties and zeros
            probs = np.round(probs * 20) / 20 + 0.01
            probs[rng.random(v) < 0.2] = 0.0
            probs /= probs.sum()
        history = [int(i) for i in rng.integers(0, min(v, 6 if trial % 2 else v), int(rng.integers(0, 80)))]
        for n in range(1, 6):
            assert np.array_equal(D.ngram_banned(history, n), _plain_banned(history, n))
        dec = D.Decoding(greedy=False, temperature=float(rng.choice([1.0, 0.7])), top_k=int(rng.choice([0, 1, 5])),
                         top_p=float(rng.choice([1.0, 0.9, 0.5])), min_p=float(rng.choice([0.0, 0.05])))
        logp = D.adjusted_logp(probs, history, None, dec)
        plain = _plain_truncate(logp, dec.top_k, dec.top_p, dec.min_p)
        kept = T.kept(logp, dec)  # None: every id
        assert np.array_equal(np.flatnonzero(np.isfinite(logp)) if kept is None else kept, np.flatnonzero(np.isfinite(plain)))
        w = np.exp(plain / dec.temperature - (plain / dec.temperature).max())
        w /= w.sum()
        for seed in range(3):
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            assert T.draw(logp, dec, a) == int(b.choice(len(w), p=w))
            assert a.random() == b.random()  # the generator moved on alike


# ---- whole generations -------------------------------------------------------------------------
def _generations(pred, ids, seeds=range(4)):
    from model.prediction.decoding import Decoding

    out = []
    for seed in seeds:
        for dec in (Decoding(), Decoding(greedy=False), Decoding(greedy=False, top_k=5, temperature=0.8)):
            pred._cache.clear()
            out.append(list(pred.generate_ids(ids, 24, seed=seed, decoding=dec)))
    return out


def test_generation_with_windows_one_step_per_word_is_the_plain_one(default_bundle):
    """The trained default model: the same words, greedy and sampled with a seed, whether each
    window is read one step after the one before or on its own."""
    from model.prediction.predictor import Predictor

    fast, plain = Predictor(default_bundle), Predictor(default_bundle)
    plain.mixture.neural.windows = None
    assert fast.mixture.neural.windows is not None
    ids = fast.encode(fast.tokenize("the mice had a general council"))[0]
    want = _generations(plain, ids)
    assert _generations(fast, ids) == want
    assert any(len(set(g)) > 3 for g in want)


def test_generation_after_a_story_of_the_stream_arch_is_the_plain_one(tmp_path, monkeypatch):
    """A story followed by a stream network: a generated word read with the projection kept per
    word gives the words that reading it with the whole network pass gives."""
    from model.prediction.numpy_net import Network
    from model.prediction.predictor import Predictor
    from model.storage.bundle import load_bundle
    from model.story.context import StoryContext

    bundle = load_bundle(random_bundle(tmp_path / "s", arch="stream", units=16, embedding_dim=16, context=64))
    tokens = Predictor(bundle).vocab.tokens
    path = [(k + 1, tuple(tokens[(5 * k + j) % 50] for j in range(10))) for k in range(8)]

    def story_generations():
        pred = Predictor(bundle)
        story = StoryContext()
        story.follow(pred, path, "s")
        return _generations(pred, pred.encode(list(story.tokens()))[0], seeds=range(2))

    fast = story_generations()
    monkeypatch.setattr(Network, "step", lambda self, token, state: self.advance_features(np.asarray([[token]]), state)[1])
    assert story_generations() == fast


def test_the_mixture_adds_the_caches_sparse_terms_as_their_dense_distributions(book_pred):
    from model.prediction.weights import mix

    mixture = book_pred.mixture
    tokens = book_pred.vocab.tokens
    book_pred.observe([tokens[(3 * j) % 40] for j in range(30)] + ["zyzzyva"])  # a word the corpus never had
    for words in ([3, 1, 4], [1, 5, 9, 2, 6, 5], [len(tokens) - 1]):
        parts = mixture.parts(words)
        assert {"cache", "ncache"} <= set(parts)
        w = mixture.weight_row(mixture.bucket(words), list(parts))
        want = mix([parts.get(n) for n in mixture.names], w)
        np.testing.assert_allclose(mixture.distribution(words), want / want.sum(), rtol=1e-12, atol=1e-18)


def test_the_neural_cache_reads_only_the_pairs_it_keeps(book_pred):
    """A text longer than the neural cache observed at once (a story's last words when it
    opens) keeps the pairs of its last ``size`` words, read after the words before them."""
    from model.prediction.caches import NeuralCacheComponent

    pred = book_pred
    ncache = NeuralCacheComponent(pred.mixture.neural, size=20)
    rng = np.random.default_rng(12)
    ids = [int(i) for i in rng.integers(0, pred.mixture.neural.size, 75)]
    ncache.observe(ids, before=[3, 1, 4])
    states, targets = pred.mixture.neural.pairs([3, 1, 4] + ids, 3)
    assert np.array_equal(ncache.targets, np.asarray(targets[-20:]))
    np.testing.assert_allclose(ncache.states, np.asarray(states[-20:], np.float32), rtol=0, atol=1e-5)

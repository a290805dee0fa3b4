"""Tests for model.prediction.ngram: interpolated modified Kneser-Ney n-gram model."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from fractions import Fraction as F

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.prediction.ngram import KneserNey, estimate_discounts


# --------------------------------------------------------------------------
# A naive, dictionary-based reference implementation (straight from the
# formulas in Chen & Goodman 1998) used to cross-check the vectorised model.
# --------------------------------------------------------------------------
class NaiveKN:
    def __init__(self, stream: list[int], order: int, V: int) -> None:
        self.n, self.V = order, V
        self.counts: dict[int, Counter] = {}
        for k in range(1, order + 1):
            grams = Counter(tuple(stream[i : i + k]) for i in range(len(stream) - k + 1))
            if k == order:
                self.counts[k] = grams
            else:
                longer = {tuple(stream[i : i + k + 1]) for i in range(len(stream) - k)}
                cont: Counter = Counter(g[1:] for g in longer)
                if len(stream) >= k:
                    cont[tuple(stream[:k])] += 1  # virtual <s> before the stream
                self.counts[k] = cont
        self.D = {}
        self.ctx_total: dict[int, Counter] = {}
        self.ctx_n: dict[int, dict] = {}
        for k, cnt in self.counts.items():
            cc = Counter(cnt.values())
            self.D[k] = estimate_discounts(cc[1], cc[2], cc[3], cc[4])
            tot: Counter = Counter()
            nn: dict = defaultdict(lambda: [0, 0, 0])
            for g, c in cnt.items():
                tot[g[:-1]] += c
                nn[g[:-1]][min(c, 3) - 1] += 1
            self.ctx_total[k], self.ctx_n[k] = tot, nn

    def p(self, k: int, h: tuple, w: int) -> float:
        if k == 0:
            return 1.0 / self.V
        total = self.ctx_total[k].get(h, 0)
        if total == 0:
            return self.p(k - 1, h[1:], w)
        D = self.D[k]
        c = self.counts[k].get(h + (w,), 0)
        d = 0.0 if c == 0 else D[min(c, 3) - 1]
        n1, n2, n3 = self.ctx_n[k][h]
        gamma = (D[0] * n1 + D[1] * n2 + D[2] * n3) / total
        return max(c - d, 0.0) / total + gamma * self.p(k - 1, h[1:], w)

    def prob(self, context: list[int], w: int) -> float:
        h = tuple(context[max(0, len(context) - (self.n - 1)) :]) if self.n > 1 else ()
        return self.p(len(h) + 1, h, w)


def _zipf_stream(rng: np.random.Generator, n: int, V: int) -> np.ndarray:
    p = 1.0 / np.arange(1, V + 1)
    return rng.choice(V, size=n, p=p / p.sum())


# --------------------------------------------------------------------------
# normalisation and consistency
# --------------------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_distribution_sums_to_one(order: int) -> None:
    rng = np.random.default_rng(order)
    V = 60
    ids = _zipf_stream(rng, 3000, V - 3)  # last 3 ids never occur
    m = KneserNey(order, vocab_size=V).fit(ids)
    contexts = [
        [],  # empty context
        list(ids[-1:]),  # the last token: possibly never followed by anything
        list(ids[100:104]),  # seen contexts
        list(ids[500:502]),
        [V - 1, V - 2, V - 3, V - 1],  # unseen context (unseen ids)
        [int(ids[7]), V - 1],  # unseen context ending in an unseen id
        list(rng.integers(0, V - 3, size=6)),  # random, longer than order-1
    ]
    for ctx in contexts:
        p = m.distribution(ctx)
        assert p.shape == (V,) and p.dtype == np.float64
        assert abs(p.sum() - 1.0) < 1e-9
        assert np.all(p > 0), "every id must keep a non-zero probability"


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_prob_agrees_with_distribution(order: int) -> None:
    rng = np.random.default_rng(10 + order)
    V = 40
    ids = _zipf_stream(rng, 2000, V - 1)
    m = KneserNey(order, vocab_size=V).fit(ids)
    for start in (0, 5, 321, 1995):
        ctx = list(ids[max(0, start - 4) : start])
        p = m.distribution(ctx)
        for w in range(V):
            assert m.prob(ctx, w) == pytest.approx(p[w], rel=1e-12, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(
    stream=st.lists(st.integers(0, 4), min_size=0, max_size=60),
    order=st.integers(1, 4),
    ctx=st.lists(st.integers(0, 5), max_size=5),
)
def test_matches_naive_reference(stream: list[int], order: int, ctx: list[int]) -> None:
    V = 6
    m = KneserNey(order, vocab_size=V).fit(stream)
    ref = NaiveKN(stream, order, V)
    p = m.distribution(ctx)
    assert abs(p.sum() - 1.0) < 1e-9
    for w in range(V):
        assert p[w] == pytest.approx(ref.prob(ctx, w), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------
# a bigram model computed by hand
# --------------------------------------------------------------------------
# Corpus (a=0, b=1, c=2, d=3; id 4 = "e" is in the vocabulary but unseen), V=5:
#
#   pos: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
#        a a a a a b b a c b d  b  a  c  c  c  c
#
# Order 2 (raw bigram counts, 16 bigrams):
#   aa 4, ab 1, ac 2, ba 2, bb 1, bd 1, cb 1, cc 3, db 1
#   n1 = 5 (ab bb bd cb db), n2 = 2 (ac ba), n3 = 1 (cc), n4 = 1 (aa)
#   Y   = 5 / (5 + 2*2)       = 5/9
#   D1  = 1 - 2 * 5/9 * 2/5   = 1 - 4/9  = 5/9
#   D2  = 2 - 3 * 5/9 * 1/2   = 2 - 5/6  = 7/6
#   D3+ = 3 - 4 * 5/9 * 1/1   = 3 - 20/9 = 7/9
#
# Order 1 (continuation counts = number of distinct left neighbours; the
# stream is preceded by a virtual <s>, which counts for the first word "a"):
#   N(a) = |{<s>, a, b}| = 3, N(b) = |{a, b, c, d}| = 4, N(c) = |{a, c}| = 2,
#   N(d) = |{b}| = 1, N(e) = 0;  total = 10
#   n1 = n2 = n3 = n4 = 1:  Y = 1/3, D1 = 1 - 2/3 = 1/3,
#   D2 = 2 - 3 * 1/3 * 1 = 1,  D3+ = 3 - 4/3 = 5/3
#   gamma() = (D1*1 + D2*1 + D3+*2) / 10 = (1/3 + 1 + 10/3) / 10 = 7/15
#   uniform share = gamma() / V = 7/15 / 5 = 7/75
#   P1(a) = (3 - 5/3)/10 + 7/75 = 2/15 + 7/75 = 17/75
#   P1(b) = (4 - 5/3)/10 + 7/75 = 7/30 + 7/75 = 49/150
#   P1(c) = (2 - 1)/10   + 7/75 = 1/10 + 7/75 = 29/150
#   P1(d) = (1 - 1/3)/10 + 7/75 = 1/15 + 7/75 = 12/75
#   P1(e) =                7/75
#   (34 + 49 + 29 + 24 + 14) / 150 = 1
#
# Context "a": c(a .) = 7, followers aa 4 (N3+), ab 1 (N1), ac 2 (N2)
#   gamma(a) = (5/9 + 7/6 + 7/9) / 7 = (5/2) / 7 = 5/14
#   P(a|a) = (4 - 7/9)/7 + 5/14 * 17/75  = 29/63 + 17/210 = 341/630
#   P(b|a) = (1 - 5/9)/7 + 5/14 * 49/150 = 4/63  + 7/60   = 227/1260
#   P(c|a) = (2 - 7/6)/7 + 5/14 * 29/150 = 5/42  + 29/420 = 79/420
#   P(d|a) =               5/14 * 12/75                   = 2/35
#   P(e|a) =               5/14 * 7/75                    = 1/30
#   (682 + 227 + 237 + 72 + 42) / 1260 = 1
#
# Context "d": c(d .) = 1, follower db 1 (N1)
#   gamma(d) = 5/9 * 1 / 1 = 5/9
#   P(b|d) = (1 - 5/9)/1 + 5/9 * 49/150 = 4/9 + 49/270 = 169/270
#   P(a|d) =               5/9 * 17/75               = 17/135
#
# Context "e" (never seen) and the empty context back off to P1.
HAND_CORPUS = [0, 0, 0, 0, 0, 1, 1, 0, 2, 1, 3, 1, 0, 2, 2, 2, 2]
P1 = [F(17, 75), F(49, 150), F(29, 150), F(12, 75), F(7, 75)]
P_GIVEN_A = [F(341, 630), F(227, 1260), F(79, 420), F(2, 35), F(1, 30)]


def test_hand_computed_bigram() -> None:
    m = KneserNey(order=2, vocab_size=5).fit(HAND_CORPUS)
    assert m.count_of_counts[1] == (5, 2, 1, 1)
    assert m.count_of_counts[0] == (1, 1, 1, 1)
    assert m.discounts[1] == pytest.approx((5 / 9, 7 / 6, 7 / 9))
    assert m.discounts[0] == pytest.approx((1 / 3, 1.0, 5 / 3))
    assert sum(P1) == 1 and sum(P_GIVEN_A) == 1  # the hand arithmetic is consistent

    np.testing.assert_allclose(m.distribution([]), [float(x) for x in P1], rtol=1e-12)
    np.testing.assert_allclose(m.distribution([4]), [float(x) for x in P1], rtol=1e-12)
    np.testing.assert_allclose(m.distribution([0]), [float(x) for x in P_GIVEN_A], rtol=1e-12)
    # only the last order-1 = 1 word of the context matters
    np.testing.assert_allclose(m.distribution([3, 2, 0]), m.distribution([0]), rtol=0)
    assert m.prob([3], 1) == pytest.approx(169 / 270, rel=1e-12)
    assert m.prob([3], 0) == pytest.approx(17 / 135, rel=1e-12)

    # evaluate() scores positions 1..3 of [a, a, d, b]: P(a|a) P(d|a) P(b|d)
    r = m.evaluate([0, 0, 3, 1])
    nll = -(math.log(341 / 630) + math.log(2 / 35) + math.log(169 / 270))
    assert r["tokens"] == 3
    assert r["nll"] == pytest.approx(nll, rel=1e-12)
    assert r["perplexity"] == pytest.approx(math.exp(nll / 3), rel=1e-12)
    # positions 2..5 of [a, a, d, b, a, a]: the argmax after a is a (true d: miss),
    # after d is b (hit), after b is a (ba 2 > bb 1, bd 1: hit), after a is a (hit)
    r = m.evaluate([0, 0, 3, 1, 0, 0], start=2)
    assert r["tokens"] == 4
    assert r["top1"] == pytest.approx(3 / 4)
    assert r["top5"] == 1.0  # V = 5: everything is in the top 5


def test_hand_top1_detail() -> None:
    m = KneserNey(order=2, vocab_size=5).fit(HAND_CORPUS)
    # after "b" the followers are ba 2, bb 1, bd 1 -> "a" (id 0) is the argmax
    assert int(np.argmax(m.distribution([1]))) == 0
    assert int(np.argmax(m.distribution([0]))) == 0
    assert int(np.argmax(m.distribution([3]))) == 1


# --------------------------------------------------------------------------
# behaviour on synthetic data
# --------------------------------------------------------------------------
def test_strong_pattern_low_perplexity_and_order_helps() -> None:
    # After "0 1" the next id is 2 or 4 depending on the id three back, so a
    # 4-gram model can predict the stream perfectly but a trigram cannot.
    period = [0, 1, 2, 3, 0, 1, 4, 5]
    ids = period * 150
    ppl = {}
    for order in (1, 2, 3, 4, 5):
        r = KneserNey(order).fit(ids).evaluate(ids)
        ppl[order] = r["perplexity"]
        if order >= 4:
            assert r["top1"] > 0.99
            assert r["top5"] == 1.0
            assert r["perplexity"] < 1.1
    assert ppl[1] > ppl[2] > ppl[4] and ppl[1] > ppl[3] > ppl[4]
    assert ppl[5] < 1.1
    # a 50/50 choice at 2 of 8 positions: ideal bigram perplexity 2**(2/8) = 1.19
    assert 1.15 < ppl[2] < 1.4 and 1.15 < ppl[3] < 1.4


def test_uniform_stream_heldout_perplexity_close_to_V() -> None:
    rng = np.random.default_rng(0)
    V = 30
    ids = rng.integers(0, V, size=60_000)
    split = 55_000
    for order in (1, 3):
        m = KneserNey(order, vocab_size=V).fit(ids[:split])
        r = m.evaluate(ids, start=split)
        assert r["tokens"] == len(ids) - split
        assert 0.97 * V < r["perplexity"] < 1.1 * V, (order, r)
        assert r["top1"] < 2.0 / V and r["top5"] < 10.0 / V


def test_exclude_masks_unk_from_ranking() -> None:
    unk = 0
    # unk follows 1 most often, then 2
    ids = [1, unk, 3, 1, unk, 3, 1, unk, 3, 1, 2, 3] * 20
    m = KneserNey(2, vocab_size=5).fit(ids)
    assert int(np.argmax(m.distribution([1]))) == unk
    test = [3, 1, 2, 3, 1, unk]
    plain = m.evaluate(test)
    masked = m.evaluate(test, exclude=unk)
    assert plain["tokens"] == masked["tokens"] == 5
    assert masked["nll"] == pytest.approx(plain["nll"], rel=1e-15)  # still scored
    assert masked["perplexity"] == pytest.approx(plain["perplexity"], rel=1e-15)
    # positions: 1|3 (hit), 2|1 (plain: unk wins -> miss; masked: 2 wins -> hit),
    # 3|2 (hit), 1|3 (hit), unk|1 (plain: hit; masked: never a hit)
    assert plain["top1"] == pytest.approx(4 / 5)
    assert masked["top1"] == pytest.approx(4 / 5)
    only_2 = m.evaluate([1, 2], exclude=unk)
    assert only_2["top1"] == 1.0 and m.evaluate([1, 2])["top1"] == 0.0
    only_unk = m.evaluate([1, unk], exclude=unk)
    assert only_unk["top1"] == 0.0 and only_unk["top5"] == 0.0
    assert m.evaluate([1, unk])["top1"] == 1.0


def test_evaluate_context_and_start() -> None:
    rng = np.random.default_rng(3)
    ids = _zipf_stream(rng, 1500, 25)
    m = KneserNey(3, vocab_size=25).fit(ids[:1200])
    r = m.evaluate(ids, start=1200)
    nll = -sum(math.log(m.prob(list(ids[:i]), int(ids[i]))) for i in range(1200, 1500))
    assert r["tokens"] == 300 and r["nll"] == pytest.approx(nll, rel=1e-10)
    # position 0 is never scored; short histories use a shorter context
    r0 = m.evaluate(ids[:4])
    nll0 = -sum(math.log(m.prob(list(ids[:i]), int(ids[i]))) for i in (1, 2, 3))
    assert r0["tokens"] == 3 and r0["nll"] == pytest.approx(nll0, rel=1e-12)
    assert m.evaluate(ids[:1])["tokens"] == 0


def test_errors_and_edge_cases() -> None:
    with pytest.raises(ValueError):
        KneserNey(0)
    with pytest.raises(RuntimeError):
        KneserNey(2).distribution([])
    with pytest.raises(ValueError):
        KneserNey(2, vocab_size=3).fit([0, 1, 3])
    with pytest.raises(ValueError):
        KneserNey(2).fit([])
    m = KneserNey(3, vocab_size=4).fit([])  # no data: uniform
    np.testing.assert_allclose(m.distribution([1, 2]), 0.25)
    m = KneserNey(2).fit(np.array([2, 0, 2]))
    assert m.vocab_size == 3
    with pytest.raises(ValueError):
        m.prob([0], 3)


def test_speed_sanity() -> None:
    """Realistic sizes run (timings are printed, not asserted)."""
    rng = np.random.default_rng(7)
    V = 11_000
    ids = _zipf_stream(rng, 200_000, V)
    t0 = time.perf_counter()
    m = KneserNey(5, vocab_size=V).fit(ids)
    t1 = time.perf_counter()
    r = m.evaluate(ids[-2_000:])
    t2 = time.perf_counter()
    print(f"fit 200k tokens: {t1 - t0:.2f}s; evaluate 2k tokens: {t2 - t1:.2f}s")
    assert r["tokens"] == 1_999 and math.isfinite(r["perplexity"])
    assert abs(m.distribution(list(ids[-4:])).sum() - 1.0) < 1e-9


def test_saved_arrays_round_trip_and_unsorted_keys_are_refused():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 30, 4000)
    kn = KneserNey(4, vocab_size=30).fit(ids)
    arrays = kn.to_arrays()
    back = KneserNey.from_arrays(arrays)
    for ctx in ([], [3], [3, 7], [1, 2, 3], [29, 29, 29], [5, 99]):
        assert np.array_equal(kn.distribution(ctx), back.distribution(ctx))
    for j in range(1, 4):  # the index is sorted keys: a gram's rank is its key's position
        keys = arrays[f"keys{j}"]
        assert keys.dtype == np.int64 and (np.diff(keys) > 0).all()
    broken = dict(arrays, keys2=arrays["keys2"][::-1].copy())
    with pytest.raises(ValueError, match="not sorted"):
        KneserNey.from_arrays(broken)


@pytest.mark.parametrize("order", [2, 3, 5])
def test_contexts_read_in_order_give_what_each_gives_alone(order: int) -> None:
    """The chains and suffix ranks kept between contexts (a text read or generated word by
    word, then jumps, unseen words and words beyond the vocabulary) change no distribution."""
    rng = np.random.default_rng(11)
    V = 40
    stream = _zipf_stream(rng, 3000, V)
    kn = KneserNey(order=order, vocab_size=V).fit(stream)
    ref = KneserNey.from_arrays(kn.to_arrays())
    text = [int(i) for i in stream[:200]] + [int(i) for i in rng.integers(0, V + 3, 200)]
    for i in range(1, len(text)):
        if i % 37 == 0:
            ctx = [int(x) for x in rng.integers(0, V, int(rng.integers(0, order + 1)))]  # a jump elsewhere
        else:
            ctx = text[max(0, i - 6) : i]
        ref._chains.clear()
        ref._ranks.clear()
        assert np.array_equal(kn.distribution(ctx), ref.distribution(ctx))
        assert kn.matched_order(ctx) == ref.matched_order(ctx)

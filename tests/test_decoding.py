"""Decoding controls: settings and their one-line errors, the step rules on known distributions,
beam search, and the controls on real models (CLI and predictor).

The step rules are checked over plain numpy callbacks (a fixed table of next-word
distributions), which is all model/prediction/decoding.py needs; the end-to-end tests use the default
belling_the_cat model trained once per run by conftest.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model.prediction.decoding import (
    DEFAULT_NO_REPEAT_NGRAM,
    DEFAULT_REPEAT_LAST_N,
    DEFAULT_REPEAT_PENALTY,
    DEFAULT_TOP_P,
    Decoding,
    adjusted_logp,
    beam_search,
    choose_next,
    generate_ids,
    ngram_banned,
    parse_settings,
)
from model.errors import StoryError

from helpers import CAT, story_repl


def fixed(probs):
    """A callback that always returns the same distribution."""
    p = np.asarray(probs, dtype=np.float64)
    return lambda history: p


def table(rows: dict[int, list[float]], default: list[float]):
    """A callback whose distribution depends on the last id only."""
    rows = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    base = np.asarray(default, dtype=np.float64)
    return lambda history: rows.get(history[-1], base) if len(history) else base


def plain(**kw) -> Decoding:
    return Decoding(**({"repeat_penalty": 1.0, "no_repeat_ngram": 0, "top_p": 1.0} | kw))


# ---- settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"top_p": 1.5}, "--top-p expects a number in (0, 1], got 1.5"),
        ({"top_p": 0.0}, "--top-p expects a number in (0, 1], got 0.0"),
        ({"top_k": -1}, "--top-k expects a whole number >= 0 (0 = off), got -1"),
        ({"min_p": 2.0}, "--min-p expects a number in [0, 1], got 2.0"),
        ({"temperature": 0.0}, "--temperature expects a number above 0 (at most 100), got 0.0"),
        ({"temperature": float("nan")}, "--temperature expects a number above 0"),
        ({"repeat_penalty": 0.5}, "--repeat-penalty expects a number from 1 (off) to 100, got 0.5"),
        ({"repeat_last_n": -2}, "--repeat-last-n expects a whole number >= 0, or -1 for the whole history, got -2"),
        ({"no_repeat_ngram": -1}, "--no-repeat-ngram expects a whole number from 1 to 1000, or 0 for off, got -1"),
        ({"beam": 0}, "--beam expects a whole number from 1 (off) to 64, got 0"),
        ({"beam": 2, "greedy": False}, "--beam searches for the most likely continuation and cannot be combined with sampling"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_flag(kw, message):
    with pytest.raises(StoryError) as e:
        Decoding(**kw)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_short_form_and_dict():
    rep = f"rep={DEFAULT_REPEAT_PENALTY:g}"
    assert Decoding().short() == f"greedy {rep} nr={DEFAULT_NO_REPEAT_NGRAM}"
    assert Decoding(greedy=False, temperature=0.8, top_p=0.9, no_repeat_ngram=0).short() == f"sample T=0.8 p=0.9 {rep}"
    assert Decoding(greedy=False, top_k=40, min_p=0.05, top_p=1.0, repeat_penalty=1.0, no_repeat_ngram=0).short() == (
        "sample T=1 k=40 minp=0.05"
    )
    assert Decoding(beam=4, repeat_last_n=-1).short() == f"beam=4 {rep}/all nr={DEFAULT_NO_REPEAT_NGRAM}"
    d = Decoding(greedy=False).to_dict()
    assert d["mode"] == "sample" and "greedy" not in d
    assert set(d) == {"mode", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n", "no_repeat_ngram", "beam"}
    assert Decoding().repeat_last_n == DEFAULT_REPEAT_LAST_N and Decoding().top_p == DEFAULT_TOP_P


def test_parse_settings_for_the_repl():
    d = parse_settings("T=0.8 p=0.9 rep=1.2", Decoding())
    assert (d.mode, d.temperature, d.top_p, d.repeat_penalty) == ("sample", 0.8, 0.9, 1.2)
    assert parse_settings("beam=3", d).mode == "beam"
    assert parse_settings("greedy", d).mode == "greedy"
    off = parse_settings("off", Decoding())
    assert (off.repeat_penalty, off.no_repeat_ngram) == (1.0, 0)
    assert parse_settings("defaults", off) == Decoding()
    with pytest.raises(StoryError, match=r"^top-p expects a number in \(0, 1\], got 1.5$"):
        parse_settings("top-p=1.5", Decoding())
    with pytest.raises(StoryError, match="unknown decoding setting 'zz'"):
        parse_settings("zz=1", Decoding())
    with pytest.raises(StoryError, match="nr expects|no-repeat-ngram expects a whole number, got 'x'"):
        parse_settings("nr=x", Decoding())
    with pytest.raises(StoryError, match="expected key=value"):
        parse_settings("rep", Decoding())


# ---- one step ----------------------------------------------------------------------------
def test_repeat_penalty_is_llama_cpp_rule_on_log_probabilities():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    theta = 1.3
    d = plain(repeat_penalty=theta, repeat_last_n=2)
    history = [3, 0, 0, 1]  # the last two: ids 0 and 1 (each penalised once)
    got = adjusted_logp(p, history, None, d)
    # llama.cpp: a positive logit is divided by the penalty, a negative one multiplied.
    logit = np.log(p)
    llama = logit.copy()
    for i in (0, 1):
        llama[i] = logit[i] / theta if logit[i] > 0 else logit[i] * theta
    want = llama - np.log(np.exp(llama).sum())
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(np.exp(got).sum(), 1.0)
    assert got[2] > np.log(0.15)  # an unpenalised word gains


def test_a_confident_word_survives_any_modest_penalty():
    # p_top >= 0.9 loses its place only if theta > log(0.1) / log(0.9) = 21.85
    p = np.array([0.9, 0.1])
    for theta in (1.1, 2.0, 10.0, 21.8):
        assert choose_next(fixed(p), None, [0], plain(repeat_penalty=theta)) == 0
    assert choose_next(fixed(p), None, [0], plain(repeat_penalty=22.0)) == 1
    assert math.log(0.1) / math.log(0.9) == pytest.approx(21.85, abs=0.01)


def test_no_repeat_ngram_bans_what_would_repeat_and_lifts_when_all_are_banned():
    assert list(ngram_banned([1, 2, 3, 1, 2], 3)) == [3]
    assert list(ngram_banned([1, 2, 3, 1, 2, 4, 1, 2], 3)) == [3, 4]
    assert list(ngram_banned([5, 6], 3)) == []
    assert list(ngram_banned([1, 1, 2], 1)) == [1, 2]
    loop = table(
        {0: [0.05, 0.9, 0.03, 0.02], 1: [0.9, 0.05, 0.03, 0.02], 2: [0.4, 0.3, 0.2, 0.1], 3: [0.1, 0.2, 0.3, 0.4]},
        [0.25, 0.25, 0.25, 0.25],
    )
    bigrams = lambda s: [tuple(s[i : i + 2]) for i in range(len(s) - 1)]  # noqa: E731
    free = [0] + list(generate_ids(loop, None, [0], 6, plain()))
    assert free == [0, 1, 0, 1, 0, 1, 0]
    ctrl = [0] + list(generate_ids(loop, None, [0], 6, plain(no_repeat_ngram=2)))
    assert len(set(bigrams(ctrl))) == len(bigrams(ctrl)) == 6
    d = plain(no_repeat_ngram=2)
    # one word only: the ban would leave nothing, so it is lifted for that step
    assert list(generate_ids(fixed([1.0]), None, [0, 0], 3, d)) == [0, 0, 0]


def test_greedy_takes_the_highest_adjusted_log_probability():
    """most_likely (no log of every word) picks what argmax of adjusted_logp picks: penalised,
    n-gram-banned and banned ids, ties to the lower id, and every id banned by the n-gram."""
    from model.prediction.decoding import adjusted_logp, most_likely

    rng = np.random.default_rng(7)
    for trial in range(400):
        v = int(rng.integers(2, 40))
        probs = rng.dirichlet(np.ones(v) * float(rng.choice([0.1, 1.0])))
        if trial % 5 == 0:
            probs = np.round(probs, 2) + 1e-9  # ties
            probs /= probs.sum()
        history = [int(i) for i in rng.integers(0, v, int(rng.integers(0, 30)))]
        banned = rng.random(v) < 0.1 if trial % 3 == 0 else None
        if banned is not None and banned.all():
            banned[0] = False
        dec = Decoding(repeat_penalty=float(rng.choice([1.0, 1.3, 3.0])), no_repeat_ngram=int(rng.choice([0, 1, 2, 3])))
        want = int(np.argmax(adjusted_logp(probs, history, banned, dec)))
        assert most_likely(probs, history, banned, dec) == want


def test_top_p_from_probabilities_draws_what_the_log_path_draws():
    """Sampling with top-p alone from the adjusted probabilities (draw_from_probs) keeps the same
    words and draws the same id, with the same generator state after, as the log path."""
    from model.prediction.decoding import adjusted_logp, adjusted_probs
    from model.prediction.truncation import draw, draw_from_probs

    rng = np.random.default_rng(9)
    for trial in range(300):
        v = int(rng.choice([5, 50, 3000]))  # 3000: the binned top-p
        probs = rng.dirichlet(np.ones(v) * float(rng.choice([0.05, 1.0])))
        history = [int(i) for i in rng.integers(0, v, int(rng.integers(0, 30)))]
        dec = Decoding(greedy=False, temperature=float(rng.choice([0.7, 1.0, 1.5])), top_p=float(rng.choice([0.5, 0.9, 1.0])))
        a, b = np.random.default_rng(trial), np.random.default_rng(trial)
        want = draw(adjusted_logp(probs, history, None, dec), dec, a)
        assert draw_from_probs(adjusted_probs(probs, history, None, dec), dec, b) == want
        assert a.random() == b.random()


def test_banned_ids_are_never_generated():
    banned = np.array([True, False, False])
    p = [0.98, 0.01, 0.01]
    for mode in (plain(), plain(greedy=False, temperature=5.0)):
        out = list(generate_ids(fixed(p), banned, [], 200, mode, np.random.default_rng(0)))
        assert 0 not in out


@pytest.mark.parametrize(
    ("kw", "allowed"),
    [
        ({"top_k": 2}, {0, 1}),
        ({"top_p": 0.5}, {0, 1}),  # 0.4 < 0.5, 0.4 + 0.3 >= 0.5
        ({"top_p": 0.4}, {0}),
        ({"min_p": 0.5}, {0, 1, 2}),  # p >= 0.5 * 0.4
        ({"top_k": 3, "top_p": 0.8, "min_p": 0.6}, {0, 1}),
        ({}, {0, 1, 2, 3}),
    ],
)
def test_truncation_keeps_exactly_the_allowed_words(kw, allowed):
    p = [0.4, 0.3, 0.2, 0.1]
    d = Decoding(greedy=False, repeat_penalty=1.0, no_repeat_ngram=0, **({"top_p": 1.0} | kw))
    rng = np.random.default_rng(1)
    seen = {choose_next(fixed(p), None, [], d, rng) for _ in range(2000)}
    assert seen == allowed


def test_temperature_sharpens_and_flattens():
    p = [0.6, 0.4]
    counts = {}
    for t in (0.25, 1.0, 4.0):
        rng = np.random.default_rng(7)
        out = [choose_next(fixed(p), None, [], plain(greedy=False, temperature=t), rng) for _ in range(4000)]
        counts[t] = out.count(0) / len(out)
    want = {t: 0.6 ** (1 / t) / (0.6 ** (1 / t) + 0.4 ** (1 / t)) for t in counts}
    for t in counts:
        assert counts[t] == pytest.approx(want[t], abs=0.03)
    assert counts[0.25] > counts[1.0] > counts[4.0]


def test_sampling_is_deterministic_with_a_seed():
    p = np.random.default_rng(3).dirichlet(np.ones(50))
    d = Decoding(greedy=False, top_p=0.9)
    a = list(generate_ids(fixed(p), None, [1, 2], 100, d, np.random.default_rng(11)))
    b = list(generate_ids(fixed(p), None, [1, 2], 100, d, np.random.default_rng(11)))
    c = list(generate_ids(fixed(p), None, [1, 2], 100, d, np.random.default_rng(12)))
    assert a == b and a != c


def test_generation_can_be_stopped_early():
    calls = []

    def dist(history):
        calls.append(len(history))
        return np.array([0.5, 0.5])

    gen = generate_ids(dist, None, [], 1000, plain())
    first = [next(gen) for _ in range(3)]
    gen.close()
    assert len(first) == 3 and len(calls) == 3


# ---- beam search ------------------------------------------------------------------------------
def test_beam_finds_the_more_likely_continuation_greedy_misses():
    # greedy takes 0 (0.6) then at best 0.4; the path through 1 (0.4) continues with 0.95
    dist = table({0: [0.35, 0.25, 0.4], 1: [0.0, 0.05, 0.95], 2: [0.4, 0.3, 0.3]}, [0.6, 0.4, 0.0])
    g = list(generate_ids(dist, None, [], 2, plain()))
    b = beam_search(dist, None, [], 2, plain(beam=2))
    assert g == [0, 2] and b == [1, 2]

    def logp(seq):
        hist, total = [], 0.0
        for i in seq:
            total += math.log(dist(hist)[i])
            hist.append(i)
        return total

    assert logp(b) > logp(g)
    assert beam_search(dist, None, [], 2, plain(beam=1)) == g
    assert list(generate_ids(dist, None, [], 2, plain(beam=2))) == b


def test_beam_applies_the_repetition_controls():
    rest = [0.02] * 6
    loop = table({0: [0.05, 0.83] + rest, 1: [0.83, 0.05] + rest}, [0.4, 0.48] + rest)
    free = beam_search(loop, None, [0], 12, plain(beam=3))
    ctrl = beam_search(loop, None, [0], 12, plain(beam=3, no_repeat_ngram=3))
    grams = lambda s: [tuple(s[i : i + 3]) for i in range(len(s) - 2)]  # noqa: E731
    assert len(set(grams([0] + free))) < len(grams([0] + free))  # loops without the control
    assert len(set(grams([0] + ctrl))) == len(grams([0] + ctrl))


# ---- real models -------------------------------------------------------------------------------
def longest_repeat(seq) -> int:
    best = 0
    for n in range(1, len(seq)):
        grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
        if len(set(grams)) == len(grams):
            break
        best = n
    return best


def test_defaults_stop_the_greedy_loop_of_a_real_model(default_bundle):
    from model.prediction.predictor import Predictor

    pred = Predictor(default_bundle)
    seed = ["the", "cat"]
    looped = pred.generate(seed, 200, decoding=Decoding(repeat_penalty=1.0, no_repeat_ngram=0))
    controlled = pred.generate(seed, 200)  # the defaults
    assert longest_repeat(looped) >= 8  # plain greedy decoding cycles through the story
    assert longest_repeat(controlled) < DEFAULT_NO_REPEAT_NGRAM
    assert pred.generate(seed, 20, decoding=Decoding(beam=3))  # beam search runs on the real model


@pytest.mark.slow  # several story-repl processes
def test_generate_cli_reports_decoding_and_validates_flags(default_home):
    r = story_repl("generate", "had a general", "-n", "8", "--top-p", "0.9", "--repeat-penalty", "1.2", "--seed", "1", "--json",
            home=default_home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["mode"] == "sample" and out["decoding"]["top_p"] == 0.9 and out["decoding"]["repeat_penalty"] == 1.2
    r = story_repl("generate", "had a general", "-n", "8", "--beam", "3", "--no-repeat-ngram", "3", "--json", home=default_home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["mode"] == "beam" and out["decoding"]["beam"] == 3 and len(out["tokens"]) == 8
    for flags, message in [
        (["--top-p", "1.5"], "--top-p expects a number in (0, 1], got 1.5"),
        (["--top-k", "-3"], "--top-k expects a whole number >= 0"),
        (["--min-p", "7"], "--min-p expects a number in [0, 1], got 7.0"),
        (["--repeat-penalty", "0"], "--repeat-penalty expects a number from 1 (off)"),
        (["--no-repeat-ngram", "-1"], "--no-repeat-ngram expects"),
        (["--beam", "2", "--sample"], "--beam searches for the most likely continuation"),
        (["--greedy", "--top-p", "0.5"], "--top-p shapes sampling and does nothing with --greedy"),
    ]:
        r = story_repl("generate", "had a general", *flags, "--corpus", str(CAT), home=default_home)
        assert r.returncode != 0 and message in r.stderr, (flags, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1

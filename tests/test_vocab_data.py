"""Vocabulary ranking, windows, the accuracy ceiling and the validation split."""
from __future__ import annotations

import json

import numpy as np
import pytest

from model.text.corpus import read_corpus
from model.training.data import ceiling, split_paragraphs, unambiguous, windows
from model.errors import StoryError
from model.text.vocab import UNK, Vocab

from helpers import CAT


def test_frequency_rank_ties_by_first_appearance():
    v = Vocab.build("b a c a b d".split())
    assert v.tokens == ["b", "a", "c", "d"]  # b and a twice (b first), then c, d once in order
    assert v.counts == [2, 2, 1, 1]
    assert list(v.encode(["a", "d"])) == [1, 3]
    assert v.decode([0, 2]) == ["b", "c"]


def test_belling_the_cat_vocabulary():
    c = read_corpus(CAT)
    v = Vocab.build(c.tokens)
    assert len(c.tokens) == 204 and len(v) == 112
    assert v.tokens[:3] == [",", "the", "."]
    assert v.unk_id is None


def test_limits_map_rare_words_to_unk():
    toks = "a a a b b c d e".split()
    v = Vocab.build(toks, max_size=3)
    assert UNK in v and len(v) == 3
    assert v.tokens[:2] == ["a", UNK]  # c, d, e count 3 together, ranked by that count
    assert list(v.encode(["zzz"])) == [v.unk_id]
    v2 = Vocab.build(toks, min_count=2)
    assert set(v2.tokens) == {"a", "b", UNK}
    ids, unknown = v2.split_known(["a", "zzz"])
    assert ids == [v2.index["a"], v2.unk_id] and unknown == ["zzz"]


def test_split_known_skips_without_unk():
    v = Vocab.build("x y z".split())
    assert v.split_known(["x", "q", "z"]) == ([0, 2], ["q"])


def test_vocab_json_round_trip_and_version():
    v = Vocab.build("一 二 二 don't".split())
    text = v.to_json()
    assert "二" in text  # UTF-8, not \u escapes
    assert Vocab.from_json(text).tokens == v.tokens
    data = json.loads(text)
    data["format_version"] = 99
    with pytest.raises(StoryError, match="newer"):
        Vocab.from_json(json.dumps(data))
    with pytest.raises(StoryError):
        Vocab.from_json("{not json")


def test_windows_are_views_with_next_ids():
    ids = np.arange(10, dtype=np.int32)
    x, y = windows(ids, 3)
    assert x.shape == (7, 3) and list(x[0]) == [0, 1, 2] and y[0] == 3 and y[-1] == 9
    assert windows(ids[:3], 3)[0].shape == (0, 3)


def test_ceiling_of_belling_the_cat_is_199_of_201():
    c = read_corpus(CAT)
    v = Vocab.build(c.tokens)
    x, y = windows(v.encode(c.tokens), 3)
    acc, floor = ceiling(x, y)
    assert len(y) == 201
    assert acc == pytest.approx(199 / 201)
    assert floor == pytest.approx(4 * np.log(2) / 201)
    amb = ~unambiguous(x, y)
    ambiguous_contexts = {tuple(v.decode(row)) for row in x[amb]}
    assert ambiguous_contexts == {("the", "cat", "."), ("up", "and", "said")}


def test_split_by_paragraphs():
    paras = [["a", "b"], ["c", "d", "e"], ["f"]]
    toks = [t for p in paras for t in p]
    train, valid = split_paragraphs(paras, toks, 0.15)
    assert valid == ["f"] and train == toks[:5]
    train, valid = split_paragraphs([toks], toks, 0.5)  # one paragraph: split by tokens
    assert len(train) == 3 and len(valid) == 3

"""Keystrokes across lines: each line typed as its own REPL line, with the story on and off
(:mod:`model.evaluation.per_line`), and ``eval --keystrokes --per-line``."""
from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

from helpers import BIN, CAT, WordsBySpace
from model.evaluation import per_line as pl
from model.prediction.predictor import Predictor
import numpy as np


class Bigram(WordsBySpace):
    """P(next | last word): ``follow[last]`` gets 0.9; no context: ``first``."""

    def __init__(self, words, follow, first):
        self.tokens, self.index = list(words), {t: i for i, t in enumerate(words)}
        self.follow, self.first = follow, first
        self.vocab = SimpleNamespace(tokens=self.tokens, index=self.index, unk_id=None)


    def ranking(self, ids):
        table = {self.follow[self.tokens[ids[-1]]]: 0.9} if ids else self.first
        probs = np.full(len(self.tokens), (1.0 - sum(table.values())) / max(len(self.tokens) - len(table), 1))
        for w, p in table.items():
            probs[self.index[w]] = p
        return probs, np.argsort(-probs, kind="stable")

    def distribution(self, ids):
        return self.ranking(ids)[0]

# The previous line's last word predicts the next line's first word.
WORDS = ["the", "cat", "sat", "then", "there", "they", "ran", "off"]
FOLLOW = {"the": "cat", "cat": "sat", "sat": "then", "then": "ran", "ran": "off", "off": "the", "there": "the", "they": "the"}
LINES = [["the", "cat", "sat"], ["then", "ran", "off"], ["the", "cat", "sat"], ["then", "ran", "off"]]


def test_the_story_carries_the_previous_line_into_the_next():
    bigram = Bigram(WORDS, follow=FOLLOW, first={"there": 0.5, "they": 0.3})
    res = pl.per_line(bigram, LINES, (1, 5))
    assert res["lines"] == 4 and res["tokens"] == 12
    assert res["story"]["1"] > res["no_story"]["1"]  # "t" Alt-1 gives "then" only after "sat"
    assert res["story"]["5"] >= res["no_story"]["5"]
    # Each line starts empty: nothing of the line before is in the buffer.
    typist = pl.simulate_lines(bigram, LINES, (1,), story=False)[0]
    assert typist.start == 9 and typist.menu.context is None


def test_per_line_with_the_default_model(default_bundle):
    # The corpus's own text, two words a line: each line's first word follows from the line before.
    pred = Predictor(default_bundle)
    words = pred.tokenize(CAT.read_text(encoding="utf-8"))[:120]
    lines = [words[i : i + 2] for i in range(0, len(words), 2)]
    res = pl.per_line(pred, lines, (5,))
    assert res["story"]["5"] >= res["no_story"]["5"]


def test_eval_per_line_json(default_home):
    out = subprocess.run(
        [str(BIN), "eval", str(CAT), "--corpus", str(CAT), "--keystrokes", "--per-line", "--menu", "1,5", "--limit", "200", "--json"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)["keystrokes"]["per_line"]
    assert set(got["story"]) == set(got["no_story"]) == {"1", "5"}
    assert 0 < got["tokens"] <= 200 and got["lines"] >= 1

"""Typing never waits for a completion: a completer stuck in a slow request does not block keys."""
from __future__ import annotations

import threading
import time

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import numpy as np

from model.config import Config
from model.text.vocab import Vocab
from repl.session import Session


class StuckPredictor:
    """Answers only after ``release`` is set; records that a request was in flight. It has the
    interface the menu and the grey continuation ask (a fake predictor for a pure UI test)."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.vocab = Vocab(["council", "general", "mice"], [3, 2, 1])
        self.context = 3

    def tokenize(self, text):
        return text.split()

    def split_prefix(self, text):
        return text.split(), ""

    def encode(self, tokens):
        return [], []

    def _stuck(self):
        self.started.set()
        self.release.wait(timeout=60)
        self.finished.set()

    def ranking(self, ids):
        self._stuck()
        return np.array([0.9, 0.07, 0.03]), np.array([0, 1, 2])

    def distribution(self, ids):
        return self.ranking(ids)[0]

    def top_k(self, ids, k, prefix=""):
        self._stuck()
        return [("council", 0.9)]


def test_typing_goes_on_while_a_completion_is_stuck():
    session = Session("belling_the_cat", Config())
    stuck = StuckPredictor()
    session.predictor = stuck
    with create_pipe_input() as pipe:
        prompt = session.make_prompt(input=pipe, output=DummyOutput())
        result = {}

        def typist():
            pipe.send_text("had a ")
            if not stuck.started.wait(timeout=30):  # a completion request is now stuck
                pipe.send_text("\r")
                return
            pipe.send_text("general council")
            for _ in range(3000):  # the keys reach the buffer while the request is stuck
                if prompt.app.current_buffer.text == "had a general council":
                    result["typed_while_stuck"] = not stuck.finished.is_set()
                    break
                time.sleep(0.01)
            stuck.release.set()
            pipe.send_text("\r")

        t = threading.Thread(target=typist)
        t.start()
        result["line"] = prompt.prompt("› ")
        t.join(timeout=30)
        stuck.release.set()
    assert result.get("typed_while_stuck") is True
    assert result["line"] == "had a general council"

"""What the tests share besides fixtures: the project's paths, a tiny configuration, story-repl
run as a process, a Session driven in-process (:class:`Repl`) and the REPL in a pseudo-terminal
(:class:`Term`; the ``term`` fixture in conftest.py spawns and closes them).

Test files import from here (and fixtures from conftest.py), never from each other:
tests/test_architecture.py checks that. Model and REPL modules are imported inside the
functions, so that importing this module (conftest does, first thing) loads none of them.
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "corpora" / "belling_the_cat.txt"
BIN = Path(sys.executable).with_name("story-repl")

# Terminal escape sequences (and carriage returns), removed from what the REPL prints.
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r")


def tiny_config(**kw):
    from model.config import Config

    base = dict(units=24, embedding_dim=12, epochs=60)
    base.update(kw)
    return Config(**base)


# ---- story-repl as a process --------------------------------------------------------------
def story_repl(*args, home, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run ``story-repl ARGS`` with ``home`` as STORY_REPL_HOME; text output captured."""
    env = dict(os.environ, STORY_REPL_HOME=str(home))
    return subprocess.run([str(BIN), *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# ---- a Session in this process -------------------------------------------------------------
def random_bundle(path, corpus_path=CAT, seed=0, **cfg) -> Path:
    """A valid bundle with random weights for ``corpus_path`` (no TensorFlow, no model.keras)."""
    import numpy as np

    from model.config import Config, resolve
    from model.storage.bundle import expected_shapes, save_bundle
    from model.text.corpus import read_corpus
    from model.text.vocab import Vocab

    corpus = read_corpus(corpus_path)
    config = resolve(Config(**cfg), len(corpus.tokens))
    vocab = Vocab.build(corpus.tokens, max_size=config.max_vocab, min_count=config.min_count)
    rng = np.random.default_rng(seed)
    weights = {k: rng.normal(0, 0.5, s).astype(np.float32) for k, s in expected_shapes(config, len(vocab)).items()}
    info = {"name": corpus.name, "path": str(corpus.path), "sha256": corpus.sha256, "tokens": len(corpus.tokens)}
    return save_bundle(path, model=None, config=config, vocab=vocab, weights=weights, corpus=info, metrics={})


def rendered(renderables) -> str:
    from rich.console import Console

    buf = io.StringIO()
    con = Console(file=buf, width=5000, color_system=None, highlight=False)  # no wrapping of long lines
    for r in renderables:
        con.print(r)
    return buf.getvalue()


class Repl:
    """A Session with a loaded bundle whose output is captured as plain text."""

    def __init__(self, bundle, corpus_spec=None, config=None):
        from repl.session import Session

        self.session = Session(str(corpus_spec or bundle.corpus_path), config or bundle.config)
        self.session.set_bundle(bundle)
        self.printed: list = []
        self.session.out = lambda *r: self.printed.extend(r)

    def run(self, line: str, wait: bool = True) -> str:
        """Run one line as the loop does; return what it printed (waiting for background work)."""
        start = len(self.printed)
        assert self.session.run_line(line) is True
        if wait and self.session.train_thread is not None:
            self.session.train_thread.join(timeout=300)
        return rendered(self.printed[start:])


class WordsBySpace:
    """A fake predictor's text handling: words split at spaces, ids from ``self.vocab.index``
    (for UI and typist tests that need no model)."""

    def tokenize(self, text):
        return text.split()

    def split_prefix(self, text):
        toks = text.split()
        return (toks, "") if not toks or text[-1].isspace() else (toks[:-1], toks[-1])

    def encode(self, tokens):
        index = self.vocab.index
        return [index[t] for t in tokens if t in index], [t for t in tokens if t not in index]


def error_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# ---- the REPL in a pseudo-terminal ---------------------------------------------------------
class Term:
    """A story-repl child process plus everything it has printed (escape codes removed)."""

    def __init__(self, home, *args, timeout=120):
        env = dict(
            os.environ,
            STORY_REPL_HOME=str(home),
            TERM="xterm-256color",
            COLUMNS="110",
            LINES="40",
        )
        self.child = pexpect.spawn(
            str(BIN), list(args), cwd=str(ROOT), env=env, encoding="utf-8", timeout=timeout, dimensions=(40, 110)
        )
        self.text = ""
        self.pos = 0  # where the next expect starts looking

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def expect(self, pattern: str, timeout: float = 30) -> str:
        """Wait for ``pattern`` in output printed since the previous match; return that output."""
        deadline = time.time() + timeout
        eof = False
        while True:
            clean = ANSI.sub("", self.text)
            m = re.search(pattern, clean[self.pos :], re.S)
            if m:
                seen = clean[self.pos : self.pos + m.end()]
                self.pos += m.end()
                return seen
            if time.time() > deadline or eof:
                raise AssertionError(f"never saw {pattern!r}; output since last match:\n{clean[self.pos:][-3000:]}")
            eof = not self._read()

    def printed(self, pattern: str, timeout: float = 30) -> bool:
        """Wait up to ``timeout`` for ``pattern`` anywhere in everything printed (the next
        expect still starts where it did): prompt_toolkit redraws only what changed, so a
        toolbar label may come before or after the line that prompted it."""
        deadline = time.time() + timeout
        eof = False
        while True:
            if re.search(pattern, ANSI.sub("", self.text), re.S):
                return True
            if time.time() > deadline or eof:
                return False
            eof = not self._read()

    def _read(self) -> bool:
        """Add what the child printed in the next 0.2 s to ``text``; False at end of file."""
        try:
            chunk = self.child.read_nonblocking(100000, timeout=0.2)
            if "\x1b[6n" in chunk:  # answer cursor-position requests, as a terminal does
                self.child.send("\x1b[1;1R" * chunk.count("\x1b[6n"))
            self.text += chunk
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            return False
        return True

    def quit_with(self, keys: str) -> int:
        self.child.send(keys)
        self.child.expect(pexpect.EOF, timeout=30)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        self.child.close(force=True)

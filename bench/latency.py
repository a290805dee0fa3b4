"""Interactive latency: REPL start-up, completions as you type, generation, and REPL memory.

1. start-up: ``story-repl`` started in a pseudo-terminal (pexpect) with a cached model, until
   its first prompt "› " appears; median of several starts;
2. completer: ``repl.completer.WordCompleter.get_completions`` on a ``Document`` of every
   prefix of real corpus lines typed character by character, until the completion list is
   materialised; p50/p99 with the predictor's cache cleared before every call (cold), replayed
   with the cache filled (warm), and in typing order (the cache as a user would see it);
   the same with the grey continuation on (``GhostSuggest`` asked after every keystroke, as the
   REPL's auto-suggestion is), timed together with the menu;
3. ``story-repl complete``: the same prefixes sent to one ``complete`` process as JSON lines,
   each answer read before the next buffer is sent: mean, p50 and p99 per buffer (the round
   trip through the pipe included), against a target of 5 ms on average at vocabulary 10,000;
4. generation: 32 words with ``Predictor.generate_ids`` (cold and warm cache);
5. memory: peak RSS (VmHWM) of the REPL process after typing a few lines, and whether its
   address space maps TensorFlow's native library (the REPL must not import TensorFlow);
6. generation with a story (``--story`` runs only this): 32 words proposed at the end of a
   story of 10, 1,000 and 10,000 words, as the REPL proposes them (the story written line by
   line and observed, followed by the predictor through ``StoryContext``, then
   ``Predictor.generate_ids`` with the story's ids and the session's decoding), greedy and
   sampled, for each recipe of ``RECIPES``: bundles of each recipe's shapes with random weights
   and the n-gram of their text (no training, no TensorFlow). Targets: 32 words within 20 ms,
   and the time per word at every story length within 1.2x of the first length's. Beside it,
   the network's own work for 32 words (one step and the output layer per word, nothing else:
   ``network_floor_ms``), measured in the same run: the floor no mixture or decoding can go below.

Models: the default belling_the_cat model (vocabulary 112, context 3), and a tinyshakespeare
model with a vocabulary of 10,000 (context 16 by the corpus recipe) trained for only a few
batches: training quality does not change latency. Both are trained first into a temporary
STORY_REPL_HOME (by a child process, so this process never imports TensorFlow).
Output: JSON lines on stdout.
"""
from __future__ import annotations

from _common import CORPORA, ROOT, emit, logger, machine_info, median, percentile  # first: sets sys.path, BLAS, TF logging

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).with_name("story-repl")
CAT = CORPORA / "belling_the_cat.txt"
SHAKE = CORPORA / "tinyshakespeare.txt"
PROMPT = "›"  # the prompt is "› "; the space may be drawn by a cursor move
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r")

# (name, corpus, Config keyword arguments, matching story-repl flags, batches to train)
MODELS = {
    "belling_the_cat": (CAT, {}, [], None),
    "tinyshakespeare_v10k": (SHAKE, {"epochs": 1, "max_vocab": 10000}, ["--epochs", "1", "--max-vocab", "10000"], 3),
}


# ---- preparing models (child process: imports TensorFlow) --------------------------------------
def prepare_child(home: str, name: str) -> None:
    """Train ``name`` into the cache under ``home`` (stopping after a few batches if asked)."""
    import threading

    os.environ["STORY_REPL_HOME"] = home
    from model.config import Config
    from model.storage.store import train_and_cache

    corpus, kw, _, batches = MODELS[name]
    stop = threading.Event()
    seen = {"n": 0}

    def on_progress(p) -> None:
        if batches is not None and p.kind == "batch":
            seen["n"] += 1
            if seen["n"] >= batches:
                stop.set()

    t = time.perf_counter()
    bundle, result = train_and_cache(str(corpus), Config(**kw), on_progress=on_progress, stop=stop)
    print(json.dumps({
        "path": str(bundle.path),
        "vocab_size": len(bundle.vocab),
        "context": bundle.config.context,
        "units": bundle.config.units,
        "seconds": round(time.perf_counter() - t, 2),
        "stop_reason": result.stop_reason if result is not None else "cached",
    }))


def prepare(home: Path, name: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--prepare-child", str(home), name],
        cwd=str(ROOT), capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"preparing {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the REPL in a pseudo-terminal -------------------------------------------------------------
class Term:
    """story-repl in a pty; answers cursor-position requests as a terminal does."""

    def __init__(self, home: Path, args: list[str]):
        import pexpect

        self.pexpect = pexpect
        env = dict(os.environ, STORY_REPL_HOME=str(home), TERM="xterm-256color", COLUMNS="110", LINES="40")
        self.t0 = time.perf_counter()
        self.child = pexpect.spawn(str(BIN), args, cwd=str(ROOT), env=env, encoding="utf-8", timeout=60, dimensions=(40, 110))
        self.text = ""
        self.pos = 0

    def wait_for(self, needle: str, timeout: float = 60.0) -> float:
        """Seconds since start when ``needle`` first appears in the output after the last match."""
        deadline = time.perf_counter() + timeout
        while True:
            clean = ANSI.sub("", self.text)
            i = clean.find(needle, self.pos)
            if i >= 0:
                self.pos = i + len(needle)
                return time.perf_counter() - self.t0
            if time.perf_counter() > deadline:
                raise RuntimeError(f"never saw {needle!r}; last output: {clean[-500:]!r}")
            try:
                chunk = self.child.read_nonblocking(100000, timeout=0.002)
            except self.pexpect.TIMEOUT:
                continue
            except self.pexpect.EOF:
                raise RuntimeError(f"story-repl exited; last output: {ANSI.sub('', self.text)[-800:]!r}") from None
            if "\x1b[6n" in chunk:
                self.child.send("\x1b[1;1R" * chunk.count("\x1b[6n"))
            self.text += chunk

    def drain(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            try:
                chunk = self.child.read_nonblocking(100000, timeout=0.02)
                if "\x1b[6n" in chunk:
                    self.child.send("\x1b[1;1R" * chunk.count("\x1b[6n"))
                self.text += chunk
            except self.pexpect.TIMEOUT:
                pass

    def quit(self) -> None:
        try:
            self.child.send("\x04")
            self.child.expect(self.pexpect.EOF, timeout=20)
        except Exception:  # noqa: BLE001
            pass
        self.child.close(force=True)


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(val.split()[0])  # kB
    return out


def maps_tensorflow(pid: int) -> bool:
    text = Path(f"/proc/{pid}/maps").read_text(errors="replace")
    return "_pywrap_tensorflow" in text or "libtensorflow" in text


def startup(home: Path, name: str, args: list[str], starts: int) -> dict:
    times = []
    for _ in range(starts):
        term = Term(home, args)
        try:
            times.append(term.wait_for(PROMPT))
        finally:
            term.quit()
    return {
        "bench": "latency", "figure": "startup_to_prompt", "model": name, "starts": starts,
        "median_seconds": round(median(times), 3), "min_seconds": round(min(times), 3),
        "max_seconds": round(max(times), 3), "all_seconds": [round(t, 3) for t in times],
    }


def repl_memory(home: Path, name: str, args: list[str], lines: list[str]) -> dict:
    term = Term(home, args)
    try:
        term.wait_for(PROMPT)
        pid = term.child.pid
        at_prompt = proc_status(pid)
        for line in lines:
            for ch in line:  # typed key by key, so completions are computed as for a person
                term.child.send(ch)
                term.drain(0.01)
            term.child.send("\r")
            term.wait_for(PROMPT, timeout=60)
        term.drain(0.5)
        after = proc_status(pid)
        tf_mapped = maps_tensorflow(pid)
    finally:
        term.quit()
    return {
        "bench": "latency", "figure": "repl_memory", "model": name, "lines_typed": len(lines),
        "rss_at_prompt_mib": round(at_prompt["VmRSS"] / 1024, 1),
        "peak_rss_mib": round(after["VmHWM"] / 1024, 1),
        "rss_after_typing_mib": round(after["VmRSS"] / 1024, 1),
        "tensorflow_imported": tf_mapped,
    }


def python_baseline(repeats: int = 5) -> dict:
    """Interpreter start-up, and importing numpy, for scale."""
    out = {}
    for label, code in (("python", "pass"), ("python_numpy", "import numpy")):
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            ts.append(time.perf_counter() - t)
        out[label] = round(median(ts), 3)
    return {"bench": "latency", "figure": "baseline_startup_seconds", **out}


# ---- completer and generation (in process, numpy only) ---------------------------------------
def typing_prefixes(corpus: Path, limit: int) -> list[str]:
    """Every prefix of real lines typed character by character (sentences for one-line texts)."""
    text = corpus.read_text(encoding="utf-8")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 20:  # one long paragraph: cut it into sentences
        lines = [s.strip() + (" ." if not s.strip().endswith("?") else "") for s in re.split(r"(?<=[.?])\s+", " ".join(lines))]
        lines = [re.sub(r"\s*\.\s*\.$", " .", ln) for ln in lines if ln]
    out: list[str] = []
    for _ in range(1000):  # a short text is typed again until there are ``limit`` prefixes
        for ln in lines:
            for i in range(1, len(ln) + 1):
                out.append(ln[:i])
                if len(out) >= limit:
                    return out
    return out


def clear_caches(pred) -> None:
    """Forget every cached distribution: the predictor's and its network's (when it keeps one)."""
    pred._cache.clear()
    neural = getattr(getattr(pred, "mixture", None), "neural", None)
    if neural is not None and hasattr(neural, "_cache"):
        neural._cache.clear()


def completer_latency(name: str, bundle_path: str, corpus: Path, n_prefixes: int) -> list[dict]:
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from model.storage.bundle import load_bundle
    from model.prediction.predictor import Predictor
    from repl.completer import GhostSuggest, WordCompleter

    bundle = load_bundle(bundle_path)
    pred = Predictor(bundle)
    comp = WordCompleter(lambda: pred, lambda: 10)
    ghost = GhostSuggest(comp)
    prefixes = typing_prefixes(corpus, n_prefixes)
    docs = [Document(p) for p in prefixes]
    event = CompleteEvent()
    clock = time.perf_counter_ns

    def run(clear: bool, with_ghost: bool = False) -> tuple[list[float], int, int]:
        ts = []
        shown = ghosts = 0
        comp.menu.ghost_enabled = with_ghost
        for d in docs:
            if clear:
                clear_caches(pred)
            t = clock()
            items = list(comp.get_completions(d, event))
            if with_ghost:
                ghosts += ghost.get_suggestion(None, d) is not None
            ts.append((clock() - t) / 1e6)
            shown += len(items)
        return ts, shown, ghosts

    run(False)  # warm-up: imports, allocator, first tokenizer calls
    clear_caches(pred)
    typing, shown, _ = run(False)  # as typed: a miss for each new context, hits within a word
    cold, _, _ = run(True)
    run(False)  # fill the cache with every context
    warm, _, _ = run(False)
    clear_caches(pred)
    typing_ghost, _, ghosts = run(False, True)
    cold_ghost, _, _ = run(True, True)
    out = []
    runs = (("cold", cold), ("warm", warm), ("typing", typing), ("typing+ghost", typing_ghost), ("cold+ghost", cold_ghost))
    for mode, ts in runs:
        out.append({
            "bench": "latency", "figure": "completer", "model": name, "mode": mode,
            "vocab_size": len(bundle.vocab), "predictor_vocab": len(pred.vocab), "context": bundle.config.context,
            "units": bundle.config.units, "prefixes": len(ts), "p50_ms": round(percentile(ts, 50), 4),
            "p99_ms": round(percentile(ts, 99), 4), "max_ms": round(max(ts), 3), "mean_ms": round(sum(ts) / len(ts), 4),
            "mean_completions": round(shown / len(docs), 2),
            **({"ghosts_shown": ghosts, "target_p99_ms": 20.0 if len(bundle.vocab) >= 10_000 else 5.0} if "ghost" in mode else {}),
        })
    return out


def complete_latency(home: Path, name: str, bundle_path: str, corpus: Path, n_prefixes: int) -> dict:
    """``story-repl complete`` in a child process: one buffer at a time, each answer read first."""
    env = dict(os.environ, STORY_REPL_HOME=str(home))
    prefixes = typing_prefixes(corpus, n_prefixes)
    proc = subprocess.Popen(
        [str(BIN), "complete", "--model", bundle_path], cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1,
    )
    try:
        def ask(text: str) -> dict:
            proc.stdin.write(json.dumps(text) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"story-repl complete stopped: {proc.stderr.read()[-500:]}")
            return json.loads(line)

        t0 = time.perf_counter()
        ask("")  # start-up and model load are not part of the per-buffer figure
        startup = time.perf_counter() - t0
        ts = []
        entries = 0
        for p in prefixes:
            t = time.perf_counter_ns()
            got = ask(p)
            ts.append((time.perf_counter_ns() - t) / 1e6)
            entries += len(got.get("menu", []))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    return {
        "bench": "latency", "figure": "complete", "model": name, "buffers": len(ts),
        "mean_ms": round(sum(ts) / len(ts), 4), "p50_ms": round(percentile(ts, 50), 4),
        "p99_ms": round(percentile(ts, 99), 4), "max_ms": round(max(ts), 3), "startup_seconds": round(startup, 3),
        "mean_entries": round(entries / len(ts), 2), "target_mean_ms": 5.0,
    }


def generation_latency(name: str, bundle_path: str, corpus: Path, words: int, trials: int) -> list[dict]:
    from model.storage.bundle import load_bundle
    from model.prediction.predictor import Predictor

    pred = Predictor(load_bundle(bundle_path))
    lines = typing_prefixes(corpus, 100_000)
    seeds = [pred.encode(pred.tokenize(s))[0] for s in lines[:: max(1, len(lines) // trials)][:trials]]
    out = []
    for greedy in (True, False):
        for mode in ("cold", "warm"):
            ts = []
            for i, ids in enumerate(seeds):
                if mode == "cold":
                    clear_caches(pred)
                else:
                    list(pred.generate_ids(ids, words, greedy=greedy, seed=i))
                t = time.perf_counter_ns()
                got = list(pred.generate_ids(ids, words, greedy=greedy, seed=i))
                ts.append((time.perf_counter_ns() - t) / 1e6)
                assert len(got) == words
            out.append({
                "bench": "latency", "figure": "generate", "model": name, "words": words,
                "decoding": "greedy" if greedy else "sampled", "cache": mode, "trials": len(ts),
                "median_ms": round(median(ts), 3), "p99_ms": round(percentile(ts, 99), 3),
                "ms_per_word_median": round(median(ts) / words, 4),
            })
    return out


# ---- generation with a story (numpy only; random weights of each recipe's shapes) --------------
# (name, corpus, Config keyword arguments): what `resolve` gives a small story and a book, a
# context-16 windowed model, the stream arch, and the context-16 model of the table above (its
# network's vocabulary capped at 10,000 words instead of the words seen 3 times). The weights'
# values do not change the time.
RECIPES = {
    "small_story": (CAT, {}),
    "book": (SHAKE, {}),
    "window16": (SHAKE, {"context": 16}),
    "stream": (SHAKE, {"arch": "stream"}),
    "window16_v10k": (SHAKE, {"context": 16, "max_vocab": 10000}),
}
STORY_LENGTHS = (10, 1000, 10_000)
LINE_WORDS = 12  # words per node of a bench story
MIX_ROW = {"lstm": 0.5, "ngram": 0.3, "cache": 0.1, "ncache": 0.1}  # every part answers


def recipe_bundle(home: Path, name: str, ngrams: dict) -> Path:
    """A bundle of recipe ``name`` with random weights and its mixture's files (the n-gram of
    its corpus, fitted once per text; fixed weights), as a trained model is saved."""
    import numpy as np

    from model.config import Config, resolve
    from model.prediction.build import extras_of, training_ngram, training_vocabulary
    from model.prediction.components import make_components
    from model.prediction.interface import Ingredients
    from model.prediction.mixture import Mixture
    from model.prediction.weights import Weights
    from model.storage.bundle import expected_shapes, save_bundle
    from model.text.corpus import read_corpus
    from model.text.vocab import Vocab

    corpus_path, kw = RECIPES[name]
    corpus = read_corpus(corpus_path)
    config = resolve(Config(**kw), len(corpus.tokens))
    vocab = Vocab.build(corpus.tokens, max_size=config.max_vocab, min_count=config.min_count)
    rng = np.random.default_rng(0)
    weights = {k: rng.normal(0, 0.3, s).astype(np.float32) for k, s in expected_shapes(config, len(vocab)).items()}
    if corpus.sha256 not in ngrams:
        words, table, train, _ = training_vocabulary(corpus, config.valid_fraction)
        ngrams[corpus.sha256] = (words, training_ngram(corpus, config, words, table, train))
    words, kn = ngrams[corpus.sha256]
    mix = Mixture(words, make_components(Ingredients(words, kn)))
    names = list(MIX_ROW)
    row = [MIX_ROW[n] for n in names]
    mix.weights = Weights(names, [row] * kn.order, row, "bench: fixed weights")
    info = {"name": corpus.name, "path": str(corpus.path), "sha256": corpus.sha256, "tokens": len(corpus.tokens)}
    return save_bundle(home / name, model=None, config=config, vocab=vocab, weights=weights, corpus=info, metrics={},
                       extras=extras_of(mix))


def story_lines(corpus: Path, words: int, keep_case: bool, start: int = 0) -> list[list[str]]:
    """The corpus's tokens from ``start`` (read again from its beginning when it runs out) cut into
    lines of LINE_WORDS tokens, ``words`` tokens in all."""
    from model.text.tokenize import tokenize

    tokens = tokenize(corpus.read_text(encoding="utf-8"), keep_case=keep_case)
    out = []
    for s in range(start, start + words, LINE_WORDS):
        n = min(LINE_WORDS, start + words - s)
        out.append([tokens[(s + j) % len(tokens)] for j in range(n)])
    return out


class StoryEnd:
    """A predictor at the end of a story of ``length`` words, as the REPL holds one: the story
    written line by line (each line observed) and followed (``StoryContext``). Each trial adds
    another last line (a sibling node, observed and followed, as a typed line is) and times the
    proposal after it: ``Predictor.generate_ids`` with the story's ids and the session's decoding."""

    def __init__(self, name: str, bundle, length: int, trials: int):
        from model.prediction.predictor import Predictor
        from model.story.context import StoryContext

        self.bundle = bundle
        self.pred = Predictor(bundle)
        self.length = length
        corpus = Path(RECIPES[name][0])
        keep_case = self.bundle.config.keep_case
        base = story_lines(corpus, max(0, length - LINE_WORDS), keep_case)
        self.story = StoryContext()
        self.story.follow(self.pred, [], None)
        t = time.perf_counter()
        for line in base:
            self.pred.observe(line)
        self.nodes = [(k + 1, tuple(line)) for k, line in enumerate(base)]
        self.story.follow(self.pred, self.nodes, "bench")
        self.written_seconds = time.perf_counter() - t
        self.before = [t for line in base for t in line][-100:]  # what a line continues, as the REPL observes it
        self.lines = story_lines(corpus, 2 * trials * LINE_WORDS, keep_case, start=length + 7919)
        self.follow_ms: list[float] = []

    def trial(self, k: int, decoding, words: int) -> float:
        """Milliseconds to generate ``words`` words after the ``k``-th last line."""
        line = self.lines[k % len(self.lines)]
        t = time.perf_counter_ns()
        self.pred.observe(line, self.before)
        self.story.follow(self.pred, self.nodes + [(100_000 + k, tuple(line))], "bench")
        ids = self.pred.encode(list(self.story.tokens()))[0]
        self.follow_ms.append((time.perf_counter_ns() - t) / 1e6)
        t = time.perf_counter_ns()
        got = list(self.pred.generate_ids(ids, words, seed=k, decoding=decoding))
        elapsed = (time.perf_counter_ns() - t) / 1e6
        assert len(got) == words
        return elapsed


def network_floor_ms(bundle, words: int, trials: int) -> float:
    """The network's own work for ``words`` words, nothing else (the floor of a proposal): per
    word, one step (the suffix rows of a window, or the stream state) and the output layer with
    its softmax, on a window already read. Median milliseconds over ``trials`` runs."""
    import numpy as np

    from model.prediction.numpy_net import Network, WindowStates, softmax

    net = Network(bundle.config, bundle.weights)
    context = int(bundle.config.context)
    tokens = [int(i) for i in np.random.default_rng(1).integers(1, len(bundle.vocab), words * (trials + 1) + context)]
    times = []
    if bundle.config.arch == "stream":
        state = None
        for t in tokens[:context]:
            state = net.step(t + 1, state)
        for k in range(trials):
            start = time.perf_counter_ns()
            for t in tokens[context + k * words : context + (k + 1) * words]:
                state = net.step(t + 1, state)
                softmax(net.output(state[-1][0][0]))
            times.append((time.perf_counter_ns() - start) / 1e6)
        return median(times)
    states = WindowStates(net, context)
    window = tuple(tokens[:context])
    states.features(window, read=True)
    for k in range(trials):
        start = time.perf_counter_ns()
        for t in tokens[context + k * words : context + (k + 1) * words]:
            window = (window + (t,))[-context:]
            softmax(net.output(states.features(window)[None]))
        times.append((time.perf_counter_ns() - start) / 1e6)
    return median(times)


def story_generation(name: str, path: Path, lengths: list[int], words: int, trials: int) -> list[dict]:
    """The proposal's time at the end of a story of each length, greedy and sampled; the trials
    of the lengths and modes interleaved, so that a change of the machine's load falls on all."""
    from model.prediction.decoding import Decoding
    from model.storage.bundle import load_bundle

    bundle = load_bundle(path)  # one copy of the weights for every length
    ends = [StoryEnd(name, bundle, n, trials) for n in lengths]
    modes = {"greedy": Decoding(), "sampled": Decoding(greedy=False)}
    times = {(n, m): [] for n in lengths for m in modes}
    for k in range(trials):
        for end in ends:
            for j, (mode, dec) in enumerate(modes.items()):
                times[end.length, mode].append(end.trial(2 * k + j, dec, words))
    floor = network_floor_ms(bundle, words, trials)
    out = []
    for end in ends:
        config = end.bundle.config
        for mode in modes:
            ts = times[end.length, mode]
            out.append({
                "bench": "latency", "figure": "story_generate", "recipe": name, "arch": config.arch,
                "context": config.context, "units": config.units, "lstm_vocab": len(end.bundle.vocab),
                "predictor_vocab": len(end.pred.vocab), "story_words": end.length, "words": words, "decoding": mode,
                "trials": len(ts), "median_ms": round(median(ts), 3), "min_ms": round(min(ts), 3), "max_ms": round(max(ts), 3),
                "p90_ms": round(percentile(ts, 90), 3), "ms_per_word_median": round(median(ts) / words, 4),
                "target_ms": 20.0, "network_floor_ms": round(floor, 3), "line_follow_median_ms": round(median(end.follow_ms), 3),
                "story_written_seconds": round(end.written_seconds, 2), "history_tokens": len(end.pred.mixture.history),
            })
    return out


def story_generation_all(home: Path, recipes: list[str], lengths: list[int], words: int, trials: int, log) -> list[dict]:
    """Every recipe at every story length; then, per recipe and mode, the time per word at each
    length over the first length's (target: at most 1.2) and the 20 ms target."""
    ngrams: dict = {}
    out = []
    for name in recipes:
        t = time.perf_counter()
        path = recipe_bundle(home, name, ngrams)
        log(f"{name}: bundle in {time.perf_counter() - t:.1f} s")
        recs = story_generation(name, path, lengths, words, trials)
        for mode in ("greedy", "sampled"):
            mine = [r for r in recs if r["decoding"] == mode]
            first = mine[0]
            for r in mine:
                r["per_word_vs_first_length"] = round(r["median_ms"] / first["median_ms"], 3)
                emit(r)
            ratios = [r["per_word_vs_first_length"] for r in mine]
            summary = {
                "bench": "latency", "figure": "story_generate_summary", "recipe": name, "decoding": mode,
                "story_words": [r["story_words"] for r in mine], "median_ms": [r["median_ms"] for r in mine],
                "min_ms": [r["min_ms"] for r in mine], "max_per_word_ratio": max(ratios),
                "max_per_word_ratio_of_min": round(max(r["min_ms"] / first["min_ms"] for r in mine), 3),
                "flat_target": 1.2, "flat": max(ratios) <= 1.2,
                "worst_median_ms": max(r["median_ms"] for r in mine), "target_ms": 20.0,
                "network_floor_ms": first["network_floor_ms"],
                "network_share": round(first["network_floor_ms"] / max(r["median_ms"] for r in mine), 3),
                "within_target": max(r["median_ms"] for r in mine) <= 20.0,
            }
            emit(summary)
            out += mine + [summary]
        log(f"{name}: done")
    return out

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--prepare-child"]:
        prepare_child(argv[1], argv[2])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--starts", type=int, default=5, help="REPL starts to time per model")
    p.add_argument("--prefixes", type=int, default=3000, help="typed prefixes per model")
    p.add_argument("--trials", type=int, default=30, help="generations timed per mode")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--home", help="use (and keep) this STORY_REPL_HOME instead of a temporary one")
    p.add_argument("--quick", action="store_true", help="fewer starts, prefixes and trials")
    p.add_argument("--story", action="store_true", help="only generation with a story (no TensorFlow, a few minutes)")
    p.add_argument("--recipes", default=",".join(RECIPES), help="story generation: comma-separated: " + ", ".join(RECIPES))
    p.add_argument("--story-lengths", default=",".join(map(str, STORY_LENGTHS)), help="story generation: words of story")
    p.add_argument("--story-trials", type=int, default=15, help="story generation: proposals timed per mode and length")
    p.add_argument(
        "--blas-threads",
        type=int,
        help="OPENBLAS_NUM_THREADS/OMP_NUM_THREADS for this process and the REPL (default: the library's own)",
    )
    args = p.parse_args(argv)
    if args.story and args.blas_threads is None:
        args.blas_threads = 1  # as the CLI runs the REPL
    if args.blas_threads is not None:
        if "numpy" in sys.modules:  # pragma: no cover - nothing above imports it
            raise SystemExit("--blas-threads must be set before numpy is imported")
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.blas_threads)
    if args.quick:
        args.starts, args.prefixes, args.trials = 2, 400, 5
    names = [n for n in args.models.split(",") if n]

    emit(machine_info("latency", with_tf=False, blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default")))
    if not args.story:
        emit(python_baseline())
    tmp = None
    home = Path(args.home) if args.home else Path(tmp := tempfile.mkdtemp(prefix="story-repl-latency-"))
    try:
        recipes = [r for r in args.recipes.split(",") if r]
        lengths = [int(n) for n in args.story_lengths.split(",") if n]
        story_generation_all(home, recipes, lengths, 32, args.story_trials, logger("latency"))
        for name in [] if args.story else names:
            corpus, _, flags, _ = MODELS[name]
            info = prepare(home, name)
            emit({"bench": "latency", "figure": "model", "model": name, **info})
            # The default model is what a bare `story-repl` starts with.
            repl_args = [] if name == "belling_the_cat" else ["--corpus", str(corpus), *flags]
            emit(startup(home, name, repl_args, args.starts))
            for rec in completer_latency(name, info["path"], corpus, args.prefixes):
                emit(rec)
            emit(complete_latency(home, name, info["path"], corpus, args.prefixes))
            for rec in generation_latency(name, info["path"], corpus, 32, args.trials):
                emit(rec)
            typed = ["the mice had a general council", "some said this and", "who is to bell the cat ?"]
            emit(repl_memory(home, name, repl_args, typed))
        emit({"bench": "latency", "figure": "bench_process", "tensorflow_imported": "tensorflow" in sys.modules})
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

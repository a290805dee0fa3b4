"""Stories in SQLite: how long one step takes to commit, a story takes to open, and an export or
import takes, beside the naive way of keeping a story (the whole tree rewritten as one JSON file,
synced, at every step) measured in the same run.

- ``commit``: one step (a user line, a model proposal, its acceptance, in turn) from the call
  to its return, committed and synced (WAL, ``synchronous=FULL``, what story-repl uses; NORMAL
  for comparison), on a fresh story and on one of 10,000 words. The baseline writes the same
  tree with ``model.storage.files.atomic_write`` (temporary file, fsync, rename, fsync of the
  folder) after each step. Target: median at most 5 ms.
- ``open``: a new connection, the story found, its head path read and joined into text, for
  stories of 10, 1,000 and 10,000 words (about 15 words a step, a rejected proposal beside every
  accepted one). The baseline reads and parses the JSON file and walks the same path. Target:
  at most 0.5 s.
- ``export`` / ``import``: the 10,000-word story as JSON, Markdown and text, and imported back.

    python bench/story.py [--steps 300] [--reps 15] [--dir DIR]
"""
from __future__ import annotations

from _common import CORPORA, emit, logger, machine_info, median, percentile  # first: sets sys.path

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from model.storage.files import atomic_write
from model.story.db import StoryDB
from model.story.export import export_story, import_story
from model.story.text import join_texts, word_count
from model.text.tokenize import detokenize, tokenize

log = logger("story")
SHA = "0" * 64
STEP_WORDS = 15
SIZES = (10, 1_000, 10_000)


class JsonStory:
    """The naive store: the whole tree in memory, rewritten to one JSON file at every step."""

    def __init__(self, path: Path):
        self.path = path
        self.nodes: list[dict] = []
        self.head: int | None = None

    def add(self, parent, author, text, tokens, kept, logprob=None) -> int:
        self.nodes.append({"id": len(self.nodes) + 1, "parent": parent, "author": author, "text": text,
                           "tokens": tokens, "logprob": logprob, "kept": kept})
        if kept:
            self.head = len(self.nodes)
        self.save()
        return len(self.nodes)

    def accept(self, node: int) -> int:
        self.nodes[node - 1]["kept"] = True
        self.head = node
        self.save()
        return node

    def save(self) -> None:
        atomic_write(self.path, json.dumps({"head": self.head, "nodes": self.nodes}, ensure_ascii=False))

    @staticmethod
    def open_text(path: Path) -> str:
        doc = json.loads(path.read_bytes())
        nodes, node, texts = doc["nodes"], doc["head"], []
        while node is not None:
            texts.append(nodes[node - 1]["text"])
            node = nodes[node - 1]["parent"]
        return join_texts(reversed(texts))


def word_source(seed: int):
    words = tokenize((CORPORA / "belling_the_cat.txt").read_text(encoding="utf-8"))
    rng = random.Random(seed)

    def take(n: int) -> list[str]:
        return [rng.choice(words) for _ in range(n)]

    return take


def session(db_step, n_steps: int, take) -> list[float]:
    """Run ``n_steps`` steps through ``db_step(kind, tokens)``; the seconds each one took."""
    times = []
    for i in range(n_steps):
        kind = ("user", "propose", "accept")[i % 3]
        toks = take(STEP_WORDS)
        t0 = time.perf_counter()
        db_step(kind, toks)
        times.append(time.perf_counter() - t0)
    return times


def sqlite_stepper(db: StoryDB, story: int, head: int | None):
    state = {"cur": head, "proposal": None}

    def step(kind: str, toks: list[str]) -> None:
        if kind == "user":
            state["cur"] = db.add_node(story, state["cur"], "user", detokenize(toks), toks)
        elif kind == "propose":
            state["proposal"] = db.add_node(story, state["cur"], "model", detokenize(toks), toks, logprob=-20.0,
                                            kept=False, model={"digest": SHA}, decoding={"mode": "sample"})
        else:
            state["cur"] = db.accept(state["proposal"])

    return step


def json_stepper(js: JsonStory):
    state = {"proposal": None}

    def step(kind: str, toks: list[str]) -> None:
        if kind == "user":
            js.add(js.head, "user", detokenize(toks), toks, True)
        elif kind == "propose":
            state["proposal"] = js.add(js.head, "model", detokenize(toks), toks, False, -20.0)
        else:
            js.accept(state["proposal"])

    return step


def build(db: StoryDB, js: JsonStory | None, words: int, take, title: str) -> int:
    """A story of about ``words`` words: user and model steps, a rejected proposal beside each model step."""
    story = db.create_story(title, "belling_the_cat", SHA).id
    cur, have, i = None, 0, 0
    while have < words:
        toks = take(min(STEP_WORDS, words - have))
        author = "user" if i % 2 == 0 else "model"
        if author == "model":
            rejected = take(STEP_WORDS)
            db.add_node(story, cur, "model", detokenize(rejected), rejected, logprob=-30.0, kept=False)
        cur = db.add_node(story, cur, author, detokenize(toks), toks, logprob=None if author == "user" else -20.0)
        have += word_count(toks)
        i += 1
    if js is not None:
        js.nodes = [{"id": k, "parent": n.parent, "author": n.author, "text": n.text, "tokens": list(n.tokens),
                     "logprob": n.logprob, "kept": n.kept} for k, n in enumerate(db.tree(story), 1)]
        ids = {n.id: k for k, n in enumerate(db.tree(story), 1)}
        for n in js.nodes:
            n["parent"] = ids.get(n["parent"])
        js.head = ids[cur]
        js.save()
    return story


def commit_figures(folder: Path, steps: int, take) -> None:
    for store in ("sqlite-wal-full", "sqlite-wal-normal", "json-file-fsync"):
        for start_words in (0, 10_000):
            path = folder / f"commit-{store}-{start_words}"
            if store == "json-file-fsync":
                js = JsonStory(path.with_suffix(".json"))
                if start_words:
                    with StoryDB.open(path.with_suffix(".db")) as db:
                        build(db, js, start_words, take, "seed")
                times = session(json_stepper(js), steps, take)
            else:
                with StoryDB.open(path.with_suffix(".db")) as db:
                    if store.endswith("normal"):
                        db.conn.execute("PRAGMA synchronous=NORMAL")
                    story = build(db, None, start_words, take, "seed") if start_words else db.create_story("s", "c", SHA).id
                    times = session(sqlite_stepper(db, story, db.story(story).head), steps, take)
            med = median(times) * 1000
            emit({"bench": "story", "figure": "commit", "store": store, "story_words_at_start": start_words, "steps": steps,
                  "median_ms": round(med, 3), "p99_ms": round(percentile(times, 99) * 1000, 3),
                  "max_ms": round(max(times) * 1000, 3), "target_median_ms": 5.0, "met": med <= 5.0})
            log(f"commit {store} from {start_words} words: median {med:.3f} ms")


def open_figures(folder: Path, reps: int, take) -> Path:
    path = folder / "open.db"
    with StoryDB.open(path) as db:
        for words in SIZES:
            js = JsonStory(folder / f"open-{words}.json")
            story = build(db, js, words, take, f"story of {words}")
            nodes = len(db.tree(story))
            times, json_times = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                with StoryDB.open(path) as fresh:
                    s = fresh.find_story(story)
                    text = join_texts(n.text for n in fresh.path(s.head))
                times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                naive = JsonStory.open_text(js.path)
                json_times.append(time.perf_counter() - t0)
            assert naive == text
            for store, ts in (("sqlite", times), ("json-file", json_times)):
                med = median(ts)
                emit({"bench": "story", "figure": "open", "store": store, "words": word_count(tokenize(text)), "nodes": nodes,
                      "reps": reps, "median_s": round(med, 5), "max_s": round(max(ts), 5), "target_s": 0.5, "met": med <= 0.5})
            log(f"open {words} words: sqlite {median(times) * 1000:.1f} ms, json {median(json_times) * 1000:.1f} ms")
    return path


def export_figures(path: Path, reps: int) -> None:
    with StoryDB.open(path) as db:
        story = db.find_story(f"story of {SIZES[-1]}")
        for fmt in ("json", "md", "txt"):
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                data = export_story(db, story, fmt)
                ts.append(time.perf_counter() - t0)
            emit({"bench": "story", "figure": "export", "format": fmt, "words": SIZES[-1], "bytes": len(data),
                  "median_s": round(median(ts), 5)})
        data = export_story(db, story, "json")
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            again = import_story(db, data)
            ts.append(time.perf_counter() - t0)
        same = export_story(db, again, "json") == data
        emit({"bench": "story", "figure": "import", "words": SIZES[-1], "nodes": len(db.tree(again.id)),
              "median_s": round(median(ts), 5), "reexport_identical": same})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="steps per commit session")
    ap.add_argument("--reps", type=int, default=15, help="repetitions of each open, export and import")
    ap.add_argument("--dir", help="where the files go (default: a temporary folder on the system disk)")
    args = ap.parse_args()
    import sqlite3

    emit(machine_info("story", with_tf=False, sqlite=sqlite3.sqlite_version, steps=args.steps, reps=args.reps))
    take = word_source(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        commit_figures(folder, args.steps, take)
        export_figures(open_figures(folder, args.reps, take), args.reps)


if __name__ == "__main__":
    main()

"""Stories in stories.db: the schema and its failures, the tree (branches, undo/redo/goto, accept
N), two writers at once, export/import byte for byte, the ``stories`` CLI, and kill -9 at any
point of a session leaving the last committed step."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from helpers import ROOT, story_repl
from model.errors import StoryError
from model.story.db import StoryDB, stories_path
from model.story.export import export_story, import_story
from model.story.text import join_texts

SHA = "ab" * 32


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture
def db():
    with StoryDB.open() as d:
        yield d


# ---- the file ----------------------------------------------------------------------------
def test_the_file_lives_in_story_repl_home_in_wal_mode(db, _private_home):
    assert db.file == _private_home / "stories.db" == stories_path()
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_database_from_a_newer_story_repl_is_refused(tmp_path):
    path = tmp_path / "stories.db"
    StoryDB.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoryError) as err:
        StoryDB.open(path)
    msg = one_line(err)
    assert "newer story-repl" in msg and "99" in msg and str(path) in msg


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    path = tmp_path / "stories.db"
    path.write_bytes(b"this is no database at all\n" * 200)
    with pytest.raises(StoryError) as err:
        StoryDB.open(path)
    msg = one_line(err)
    assert str(path) in msg and "damaged" in msg and "move it aside" in msg


def test_a_database_with_damaged_pages_is_one_line(tmp_path):
    path = tmp_path / "stories.db"
    with StoryDB.open(path) as d:
        s = d.create_story("long", "c", SHA)
        node = None
        for i in range(60):
            node = d.add_node(s.id, node, "user", f"word{i} " * 300)
    data = bytearray(path.read_bytes())
    page = 4096
    rng = random.Random(0)
    for start in range(page, len(data), page):  # every page but the header's
        data[start : start + page] = rng.randbytes(min(page, len(data) - start))
    path.write_bytes(bytes(data))
    with pytest.raises(StoryError) as err:
        with StoryDB.open(path) as d:
            d.list_stories()
            d.path(d.story(1).head)
    msg = one_line(err)
    assert str(path) in msg and "damaged" in msg


def test_a_locked_database_waits_then_says_so(tmp_path):
    path = tmp_path / "stories.db"
    with StoryDB.open(path) as d:
        s = d.create_story("t", "c", SHA)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with StoryDB.open(path, timeout=0.2) as d:
            t0 = time.perf_counter()
            with pytest.raises(StoryError) as err:
                d.add_node(s.id, None, "user", "hello")
            assert time.perf_counter() - t0 >= 0.15
            assert d.text(d.story(s.id).head) == ""  # reading never waits
    finally:
        other.execute("ROLLBACK")
        other.close()
    msg = one_line(err)
    assert "locked" in msg and str(path) in msg


# ---- finding stories ---------------------------------------------------------------------
def test_unknown_ids_and_titles_and_ambiguous_titles(db):
    a = db.create_story("Fox", "c", SHA)
    db.create_story("Fox", "c", SHA)
    b = db.create_story("2024", "c", SHA)
    assert db.find_story(a.id).title == "Fox"
    assert db.find_story(str(a.id)).id == a.id
    assert db.find_story("2024").id == b.id  # a number that is no id is a title
    with pytest.raises(StoryError) as err:
        db.find_story("Fox")
    assert "ambiguous" in one_line(err) and "1, 2" in str(err.value)
    with pytest.raises(StoryError) as err:
        db.find_story("Wolf")
    assert "no story 'Wolf'" in one_line(err)
    with pytest.raises(StoryError) as err:
        db.story(77)
    assert "no story 77" in one_line(err)
    with pytest.raises(StoryError):
        db.create_story("bad\x1b[2Jtitle", "c", SHA)


def test_last_story_of_a_corpus_is_the_one_changed_last(db):
    assert db.last_story(SHA) is None
    a = db.create_story("a", "c", SHA)
    b = db.create_story("b", "c", SHA)
    db.create_story("other", "d", "cd" * 32)
    assert db.last_story(SHA).id == b.id
    db.add_node(a.id, None, "user", "again")
    assert db.last_story(SHA).id == a.id


# ---- the tree ----------------------------------------------------------------------------
def test_branches_keep_everything_and_the_head_path_is_the_story(db):
    s = db.create_story("t", "c", SHA)
    a = db.add_node(s.id, None, "user", "The mice")
    b = db.add_node(s.id, a, "model", "held a council", logprob=-4.5)
    c = db.add_node(s.id, b, "user", "to decide")
    assert db.story(s.id).head == c
    assert db.text(c) == "The mice held a council to decide"
    db.goto(s.id, a)
    d = db.add_node(s.id, a, "user", "ran away.")  # writing from an earlier node: a branch
    assert db.story(s.id).head == d
    assert db.text(d) == "The mice ran away."
    assert [n.id for n in db.children(s.id, a)] == [b, d]
    assert [n.id for n in db.tree(s.id)] == [a, b, c, d]
    assert [n.id for n in db.path(c)] == [a, b, c]  # the old branch is still there
    assert [x.words for x in db.list_stories()] == [4]


def test_undo_redo_goto(db):
    s = db.create_story("t", "c", SHA)
    a = db.add_node(s.id, None, "user", "one")
    b = db.add_node(s.id, a, "user", "two")
    assert db.undo(s.id) == a and db.story(s.id).head == a
    assert db.undo(s.id) is None and db.text(db.story(s.id).head) == ""
    with pytest.raises(StoryError) as err:
        db.undo(s.id)
    assert "nothing to undo" in one_line(err)
    assert db.redo(s.id) == a and db.redo(s.id) == b
    with pytest.raises(StoryError) as err:
        db.redo(s.id)
    assert "nothing to redo" in one_line(err)
    db.goto(s.id, a)
    c = db.add_node(s.id, a, "user", "three")
    db.undo(s.id)
    assert db.redo(s.id) == c  # the most recently written kept child
    assert db.undo(s.id, current=b) == a  # the caller's own current node
    p = db.add_node(s.id, a, "model", "proposal", kept=False)
    with pytest.raises(StoryError) as err:
        db.goto(s.id, p)
    assert "proposal" in one_line(err)
    other = db.create_story("u", "c", SHA)
    with pytest.raises(StoryError):
        db.goto(other.id, a)


def test_proposals_accept_and_accept_the_first_n_tokens(db):
    s = db.create_story("t", "c", SHA)
    a = db.add_node(s.id, None, "user", "The mice")
    info = {"digest": "d" * 64, "components": ["lstm", "ngram"]}
    p1 = db.add_node(s.id, a, "model", "held a council .", model=info, decoding={"mode": "greedy"}, logprob=-7.25, kept=False)
    p2 = db.add_node(s.id, a, "model", "ran away", logprob=-3.0, kept=False)  # a retry: a sibling
    assert db.story(s.id).head == a  # a proposal is not the story yet
    assert [n.id for n in db.alternatives(p1)] == [p1, p2]
    with pytest.raises(StoryError) as err:
        db.add_node(s.id, p1, "user", "after a proposal")
    assert "not yet accepted" in one_line(err)
    k = db.accept(p1, 3, logprob=-5.0)
    assert k not in (p1, p2) and db.story(s.id).head == k
    kept, full = db.node(k), db.node(p1)
    assert kept.kept and kept.tokens == ("held", "a", "council") and kept.text == "held a council"
    assert kept.parent == a and kept.model == info and kept.decoding == {"mode": "greedy"} and kept.logprob == -5.0
    assert not full.kept and full.tokens == ("held", "a", "council", ".") and full.logprob == -7.25
    assert db.text(k) == "The mice held a council"
    with pytest.raises(StoryError) as err:
        db.accept(p2, 9)
    assert "accept 1 to 2" in one_line(err)
    assert db.accept(p2) == p2 and db.node(p2).kept and db.text(db.story(s.id).head) == "The mice ran away"
    with pytest.raises(StoryError):
        db.add_node(s.id, a, "user", "x", logprob=-1.0)
    with pytest.raises(StoryError):
        db.add_node(s.id, a, "narrator", "x")


def test_two_connections_write_the_same_story_at_once(tmp_path):
    path = tmp_path / "stories.db"
    with StoryDB.open(path) as d:
        s = d.create_story("shared", "c", SHA)
        root = d.add_node(s.id, None, "user", "Once")
    ends: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        try:
            with StoryDB.open(path) as mine:
                start.wait()
                cur = root  # each writer keeps its own current node
                for i in range(40):
                    cur = mine.add_node(s.id, cur, "user", f"{name}{i}")
                    if i % 7 == 3:
                        prop = mine.add_node(s.id, cur, "model", f"maybe{name}{i}", kept=False, logprob=-1.0)
                        cur = mine.accept(prop)
                ends[name] = cur
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with StoryDB.open(path) as d:
        for name in ("a", "b"):
            texts = [n.text for n in d.path(ends[name])]
            want = ["Once"]
            for i in range(40):
                want.append(f"{name}{i}")
                if i % 7 == 3:
                    want.append(f"maybe{name}{i}")
            assert texts == want
        assert len(d.tree(s.id)) == 1 + 2 * (40 + 6)
        assert d.story(s.id).head in ends.values()
        assert d.integrity_check() == "ok"


# ---- text and files ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "parts, joined",
    [
        (["The mice", "held a council."], "The mice held a council."),
        (["He said,", '"Run!"'], 'He said, "Run!"'),
        (["小猫", "说：", "“你好。”"], "小猫说：“你好。”"),
        (["She said", "."], "She said."),
        (["(the", "mice)"], "(the mice)"),
        (["नमस्ते", "दुनिया"], "नमस्ते दुनिया"),
        (["ends with a space ", "x"], "ends with a space x"),
        (["a line\n", "the next"], "a line\nthe next"),
        (["", "only", ""], "only"),
    ],
)
def test_the_join_rule_follows_the_detokenizer(parts, joined):
    assert join_texts(parts) == joined


def build_story(db: StoryDB, title: str = "Bell the cat · 猫"):
    s = db.create_story(title, "belling_the_cat", SHA)
    a = db.add_node(s.id, None, "user", "The mice held a council")
    p = db.add_node(s.id, a, "model", "to decide what to do .", model={"digest": "e" * 64, "components": ["lstm"]},
                    decoding={"mode": "sample", "temperature": 0.7}, logprob=-12.345678901234567, kept=False)
    k = db.accept(p, 3)
    db.add_node(s.id, k, "user", "小猫说：“你好”\n新的一行")
    db.add_node(s.id, k, "model", "*bold* _not_", logprob=-0.1, kept=False)
    db.goto(s.id, a)
    db.add_node(s.id, a, "user", "A branch — with \"quotes\".")
    db.goto(s.id, k)
    return db.story(s.id)


def test_export_import_export_gives_the_same_bytes(db):
    first = export_story(db, build_story(db), "json")
    doc = json.loads(first)
    assert doc["format"] == "story-repl-story" and doc["version"] == 1
    assert [n["id"] for n in doc["nodes"]] == list(range(1, 7)) and doc["head"] == 3
    again = import_story(db, first)
    second = export_story(db, again, "json")
    assert second == first
    third = export_story(db, import_story(db, second), "json")
    assert third == first
    empty = db.create_story("empty", "c", SHA)
    assert export_story(db, import_story(db, export_story(db, empty, "json")), "json") == export_story(db, empty, "json")


def test_text_and_markdown_exports(db):
    s = build_story(db)
    assert export_story(db, s, "txt").decode() == "The mice held a council to decide what\n"
    db.add_node(s.id, s.head, "model", "*bold*", logprob=-1.0)
    md = export_story(db, db.story(s.id), "md").decode()
    assert md.startswith("# Bell the cat · 猫\n")
    assert md.rstrip().endswith("The mice held a council *to decide what* *\\*bold\\**")


def bad_docs():
    def doc(**change):
        d = {"format": "story-repl-story", "version": 1, "title": "t", "corpus": {"name": "c", "sha256": SHA},
             "created": "2025-01-01T00:00:00.000000Z", "updated": "2025-01-01T00:00:00.000000Z", "head": 1,
             "nodes": [{"id": 1, "parent": None, "author": "user", "text": "hi", "tokens": ["hi"], "model": None,
                        "decoding": None, "logprob": None, "kept": True, "created": "2025-01-01T00:00:00.000000Z"}]}
        node = change.pop("node", {})
        d["nodes"][0].update(node)
        d.update(change)
        return json.dumps(d).encode()

    return [
        (doc(), None),
        (b"\xff\xfe", "not UTF-8"),
        (b"{", "not valid JSON"),
        (doc(version=2), "newer"),
        (doc(format="other"), "format"),
        (doc(node={"parent": 1}), "parent"),
        (doc(node={"id": 5}), "id"),
        (doc(node={"author": "narrator"}), "author"),
        (doc(node={"logprob": -1.0}), "logprob"),
        (doc(node={"tokens": ["a b"]}), "tokens"),
        (doc(node={"text": "\x1b[2J"}), "text"),
        (doc(node={"kept": 1}), "kept"),
        (doc(node={"created": "yesterday"}), "created"),
        (doc(node={"extra": 1}), "unknown keys"),
        (doc(node={"kept": False}), "head"),
        (doc(head=3), "head"),
        (doc(corpus={"name": "c", "sha256": "xyz"}), "sha256"),
        (doc(title=""), "title"),
        (doc(nodes={}), "nodes"),
        (b'{"version": NaN}', "not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ]


@pytest.mark.parametrize("data, problem", bad_docs())
def test_import_checks_the_file_as_untrusted_input(db, data, problem):
    if problem is None:
        assert import_story(db, data).title == "t"
        return
    with pytest.raises(StoryError) as err:
        import_story(db, data, "story.json")
    msg = one_line(err)
    assert "story.json" in msg or "newer" in msg
    assert problem in msg
    assert db.list_stories() == []


# ---- the CLI -----------------------------------------------------------------------------
def test_stories_cli(_private_home, tmp_path):
    r = story_repl("stories", "list", home=_private_home)
    assert r.returncode == 0 and "no stories yet" in r.stdout
    with StoryDB.open() as d:
        s = build_story(d)
        d.create_story("twin", "c", SHA)
        d.create_story("twin", "c", SHA)
    r = story_repl("stories", "list", "--json", home=_private_home)
    listed = json.loads(r.stdout)["stories"]
    assert [x["title"] for x in listed] == ["twin", "twin", s.title]
    assert listed[2]["words"] == 8 and listed[2]["nodes"] == 6
    r = story_repl("stories", "list", home=_private_home)
    assert r.returncode == 0 and "Bell the cat" in r.stdout and "belling_the_cat" in r.stdout
    r = story_repl("stories", "show", str(s.id), home=_private_home)
    assert r.returncode == 0 and "The mice held a council to decide what" in " ".join(r.stdout.split())
    out = tmp_path / "s.json"
    r = story_repl("stories", "export", s.title, "--format", "json", "-o", str(out), home=_private_home)
    assert r.returncode == 0 and r.stdout == ""
    r = story_repl("stories", "import", str(out), home=_private_home)
    assert r.returncode == 0 and "imported story 4" in r.stdout
    r = story_repl("stories", "export", "4", "--format", "json", home=_private_home)
    assert r.stdout.encode() == out.read_bytes()
    r = story_repl("stories", "export", "4", "--format", "txt", home=_private_home)
    assert r.stdout == "The mice held a council to decide what\n"
    for args, problem in ((("show", "twin"), "ambiguous"), (("show", "99"), "no story"), (("import", str(tmp_path)), "not a file")):
        r = story_repl("stories", *args, home=_private_home)
        assert r.returncode != 0 and r.stdout == ""
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("story-repl: error:") and problem in lines[0], r.stderr


# ---- kill -9 -----------------------------------------------------------------------------
def story_state(db, story_id):
    """What a committed step leaves: nodes in the story, the head path's length and a hash of it."""
    path = db.path(db.story(story_id).head)
    digest = hashlib.sha256("\x1e".join(f"{n.author}:{n.text}" for n in path).encode()).hexdigest()[:16]
    return f"{len(db.tree(story_id))} {len(path)} {digest}"


CHILD = '''
import hashlib, random, sys
from model.story.db import StoryDB
from model.text.tokenize import detokenize

WORDS = "the mice held a council to decide what to do about cat 猫 说 。 , .".split()


def say(line):
    """One line in one write (print writes its parts one by one when stdout is unbuffered)."""
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()


def main(path, story, seed):
    rng = random.Random(seed)
    db = StoryDB.open(path)
    nodes = {n.id: n for n in db.tree(story)}
    cur = db.story(story).head

    def path_of(node):
        out = []
        while node is not None:
            out.append(nodes[node])
            node = nodes[node].parent
        return out[::-1]

    def predict(extra_nodes, new_cur_path):
        texts = "\\x1e".join(f"{a}:{t}" for a, t in new_cur_path)
        return f"{len(nodes) + extra_nodes} {len(new_cur_path)} {hashlib.sha256(texts.encode()).hexdigest()[:16]}"

    for step in range(50):
        here = [(n.author, n.text) for n in path_of(cur)]
        proposals = [n for n in nodes.values() if n.parent == cur and not n.kept]
        kept_children = sorted(n.id for n in nodes.values() if n.parent == cur and n.kept)
        ops = ["user", "propose", "propose"] + ["accept", "accept_n"] * bool(proposals)
        ops += ["undo"] * (cur is not None) + ["redo"] * bool(kept_children) + ["branch"] * (len(here) > 1)
        op = rng.choice(ops)
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        if op == "user":
            want, call = predict(1, here + [("user", text)]), lambda: db.add_node(story, cur, "user", text)
        elif op == "propose":
            want = predict(1, here)
            call = lambda: db.add_node(story, cur, "model", text, logprob=-1.5, kept=False, decoding={"step": step})
        elif op == "accept":
            p = rng.choice(proposals)
            want, call = predict(0, here + [("model", p.text)]), lambda: db.accept(p.id)
        elif op == "accept_n":
            p = rng.choice(proposals)
            n = rng.randint(1, len(p.tokens))
            add = 0 if n == len(p.tokens) else 1
            shown = p.text if n == len(p.tokens) else detokenize(list(p.tokens[:n]))
            want, call = predict(add, here + [("model", shown)]), lambda: db.accept(p.id, n)
        elif op == "undo":
            want, call = predict(0, here[:-1]), lambda: db.undo(story, cur)
        elif op == "redo":
            child = nodes[kept_children[-1]]
            want, call = predict(0, here + [(child.author, child.text)]), lambda: db.redo(story, cur)
        else:
            back = rng.randrange(1, len(here))
            target = path_of(cur)[back - 1].id
            want, call = predict(0, here[:back]), lambda: db.goto(story, target)
        say(f"pending {want}")
        result = call()
        if op in ("user", "propose", "accept_n"):
            nodes[result] = db.node(result)
        if op == "accept":
            nodes[result] = db.node(result)
        if op != "propose":
            cur = result
        got = state(db, story)
        if got != want:
            say(f"MISMATCH {op} {got} {want}")
            sys.exit(3)
        say(f"done {got}")


'''


@pytest.mark.slow
def test_kill_9_at_any_point_leaves_the_last_committed_step(tmp_path):
    path = tmp_path / "stories.db"
    script = tmp_path / "session.py"
    script.write_text(
        CHILD + inspect.getsource(story_state).replace("def story_state", "def state")
        + "\nmain(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))\n",
        encoding="utf-8",
    )
    with StoryDB.open(path) as d:
        story = d.create_story("killed", "c", SHA).id
    rng = random.Random(20240607)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    finished = 0
    for run in range(20):
        with StoryDB.open(path) as d:
            last = story_state(d, story)
        child = subprocess.Popen([sys.executable, str(script), str(path), str(story), str(run)], stdout=subprocess.PIPE,
                                 text=True, env=env, cwd=ROOT)
        kill_after = rng.randrange(0, 52)
        lines: list[str] = []
        while sum(line.startswith("done") for line in lines) < kill_after:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line)
        time.sleep(rng.random() * 0.004)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().split("\n")
        lines += rest[:-1]  # the last piece is a line the kill cut short (or nothing)
        rc = child.wait()
        pending = None
        for line in lines:
            line = line.rstrip("\n")
            assert not line.startswith("MISMATCH"), line
            kind, _, state = line.partition(" ")
            if kind == "done":
                last, pending = state, None
            elif kind == "pending":
                pending = state
        finished += rc == 0
        with StoryDB.open(path) as d:
            assert d.integrity_check() == "ok"
            now = story_state(d, story)
        assert now == last or now == pending, (run, now, last, pending)
    assert finished < 20  # the kills really landed inside sessions

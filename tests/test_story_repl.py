"""The REPL writes a story: every line continues it, the model proposes and the user keeps,
retries, undoes, branches; every step is in stories.db before the next prompt, and the next
session reopens it. Session-level tests drive :class:`repl.session.Session` with the default
model; one pseudo-terminal test drives a whole session with its keys."""
from __future__ import annotations

import re

import numpy as np
import pytest

from model.story.db import StoryDB, stories_path
from model.storage.bundle import load_bundle

from helpers import ROOT, Repl, error_line, random_bundle


@pytest.fixture
def repl(default_bundle, home_with_default):
    r = Repl(default_bundle)
    r.session.length = 6
    return r


def first_word(session, text: str = "") -> str:
    """The menu's first entry for the buffer ``text``, as the prompt would show it."""
    session.menu.use(session.predictor)
    return session.menu.entries(text, 10)[0].word


def proposal(repl):
    p = repl.session.story.proposal
    assert p is not None
    return p


def ids_of(repl, tokens) -> list[int]:
    return repl.session.predictor.encode(list(tokens))[0]


def db_state(story_id: int):
    """(head, nodes) of the story as another process reads the file now."""
    with StoryDB.open() as db:
        return db.story(story_id).head, db.tree(story_id)


# ---- the story is the context ---------------------------------------------------------------
def test_the_next_line_follows_the_story_and_story_off_gives_lines_alone(repl):
    from model.prediction.menu import Menu

    s = repl.session
    repl.run("long ago , the mice had a")
    assert first_word(s) == "general"  # "... had a" | "general": the menu reads across the line break
    assert Menu(s.predictor).entries("", 10)[0].word != "general"
    out = repl.run("general")
    assert "next word after “had a general”" in out
    assert re.search(r"^\s*1\s+council\b", out, re.M)

    repl.run(":story off")
    assert first_word(s) == Menu(s.predictor).entries("", 10)[0].word  # the line alone, as before stories
    out = repl.run("general")
    assert "next word after “general”" in out
    head, nodes = db_state(s.story.story.id)
    assert len([n for n in nodes if n.author == "user"]) == 2  # the line typed with the story off is not in it
    repl.run(":story on")
    assert first_word(s) == "council"


def test_a_proposal_reaches_the_caches_only_when_accepted(repl):
    s = repl.session
    mix = s.predictor.mixture
    start = len(mix.history)
    repl.run("had a general")
    line = ids_of(repl, ["had", "a", "general"])
    assert mix.history[start:] == line  # once, though the story was made by this line
    p = proposal(repl)
    before = list(mix.history)
    repl.run(":retry")  # the first proposal is rejected
    q = proposal(repl)
    assert q.tokens != p.tokens
    assert mix.history == before
    repl.run(":accept")
    assert mix.history[-len(q.tokens):] == ids_of(repl, q.tokens)
    assert ids_of(repl, p.tokens) != mix.history[-len(p.tokens):]
    # the context holds the story's words once: the history is not extended with them again
    ctx = mix.context(s.story_ids())
    assert list(ctx.history) == mix.history


def test_accept_n_keeps_the_first_words_and_offers_the_rest(repl):
    s = repl.session
    assert "no proposal to accept" in error_line(repl.run(":accept"))
    repl.run("had a general")
    p = proposal(repl)
    assert "the proposal has 6 words" in error_line(repl.run(":accept 99"))
    out = repl.run(":accept 2")
    assert "kept:" in out and "still proposed:" in out
    assert list(s.story.path[-1].tokens) == p.tokens[:2]
    assert s.story.proposal.tokens == p.tokens[2:]
    repl.run(":accept")
    assert [t for n in s.story.path for t in n.tokens] == ["had", "a", "general", *p.tokens]
    assert s.story.proposal is None


def test_retry_samples_again_or_takes_the_next_beam(repl):
    s = repl.session
    repl.run("had a general")
    greedy = proposal(repl).tokens
    repl.run(":retry")
    second = proposal(repl)
    assert second.tokens != greedy and second.label.startswith("beam")
    repl.run(":retry")
    assert proposal(repl).tokens not in (greedy, second.tokens)
    repl.run(":decode T=5 p=1")
    seen = set()
    for _ in range(3):
        repl.run(":retry")
        p = proposal(repl)
        assert p.label.startswith("sampled") and p.decoding["seed"] is not None
        seen.add(tuple(p.tokens))
    assert len(seen) == 3
    parent = s.story.node
    assert all(n.parent == parent and not n.kept for n in s.story.children() if n.author == "model")


def test_undo_and_redo(repl):
    s = repl.session
    assert "nothing to undo" in error_line(repl.run(":undo"))
    repl.run("had a general")
    user = s.story.node
    repl.run(":accept")
    kept = s.story.node
    assert "back to node" in repl.run(":undo")
    assert s.story.node == user and s.story.proposal is None
    assert first_word(s) == "council"  # the context is the story up to the user's line again
    assert "forward to node" in repl.run(":redo")
    assert s.story.node == kept
    assert db_state(s.story.story.id)[0] == kept
    assert "nothing to redo" in error_line(repl.run(":redo"))


def test_alts_and_take(repl):
    s = repl.session
    assert "no alternatives" in error_line(repl.run(":take 1"))
    repl.run("had a general")
    out = repl.run(":alts 3")
    assert "log p/word" in out and "copied" in out
    alts = s.story.alternatives
    assert len(alts) == 3 and len({tuple(a.tokens) for a in alts}) == 3
    assert all(a.logprob <= 0 and a.copied is not None for a in alts)
    assert re.search(r"^\s*2\s+.*-\d+\.\d\d\s+\d+\s*$", out, re.M)  # a row: number, text, log p/word, copied run
    assert "there are 3 alternatives; :take 1 to 3" in error_line(repl.run(":take 9"))
    assert "no proposal to accept" in error_line(repl.run(":accept"))
    repl.run(":take 2")
    assert list(s.story.path[-1].tokens) == alts[1].tokens and s.story.path[-1].kept
    assert "alternatives" in error_line(repl.run(":alts 10"))


def test_goto_starts_a_branch_and_the_tree_shows_it(repl):
    s = repl.session
    repl.run("had a general")
    first = s.story.node
    repl.run(":accept")
    repl.run("the mice")
    assert "there is no node 999" in error_line(repl.run(":goto 999"))
    proposal_node = s.story.proposal.node
    assert "proposal not yet accepted" in error_line(repl.run(f":goto {proposal_node}"))
    assert "at node" in repl.run(f":goto {first}")
    assert first_word(s) == "council"
    repl.run("council")
    branch = s.story.node
    kids = [n for n in s.story.open_db().children(s.story.story.id, first) if n.kept]
    assert len(kids) == 2 and branch in {n.id for n in kids}
    tree = repl.run(":tree")
    assert re.search(rf"{first} you: had a general", tree)
    assert re.search(rf"{branch} you: council\s+◀ here", tree)
    assert "proposal:" in tree


def test_every_step_is_in_the_database_before_the_next_prompt(repl):
    s = repl.session
    for line in ("had a general", ":accept 3", "", ":retry", ":undo", ":alts 2", ":take 1", "the mice"):
        repl.run(line)
        head, nodes = db_state(s.story.story.id)
        assert head == s.story.node, line
        if s.story.proposal is not None:
            stored = {n.id: n for n in nodes}[s.story.proposal.node]
            assert not stored.kept and list(stored.tokens) == s.story.proposal.tokens
            assert stored.model["components"] and stored.decoding["mode"] == "greedy"
            assert stored.logprob == pytest.approx(s.story.proposal.logprob)


def test_reopening_restores_the_path_and_the_context(default_bundle, home_with_default):
    r = Repl(default_bundle)
    r.run("the mice looked at one another and had a")
    r.run(":accept")
    path = [n.id for n in r.session.story.path]
    words = [t for n in r.session.story.path for t in n.tokens]

    again = Repl(default_bundle)
    again.session.story_start()
    s = again.session
    assert [n.id for n in s.story.path] == path
    assert list(s.story.context.tokens()) == words[-64:]
    assert s.predictor.mixture.history[-len(words):] == ids_of(again, words)  # the caches are primed
    from model.prediction.menu import Menu
    from model.text.tokenize import detokenize

    assert first_word(s) == Menu(s.predictor).entries(detokenize(words) + " ", 10)[0].word

    new = Repl(default_bundle)
    new.session.story.choose("new")
    new.session.story_start()
    assert new.session.story.path == [] and new.session.story.context.tokens() == ()


def test_story_choice_errors_are_one_line(default_bundle, home_with_default):
    r = Repl(default_bundle)
    r.run(":new Twice")
    r.run("had a general")
    r.run(":new Twice")
    r.run("the mice")
    from model.errors import StoryError

    with pytest.raises(StoryError, match="there is no story '99'"):
        Repl(default_bundle).session.story.choose("99")
    with pytest.raises(StoryError, match="ambiguous"):
        Repl(default_bundle).session.story.choose("Twice")
    out = r.run(":stories")
    assert out.count("Twice") == 2 and "◀" in out


def test_a_damaged_stories_file_leaves_the_story_in_memory_with_one_notice(default_bundle, home_with_default):
    stories_path().parent.mkdir(parents=True, exist_ok=True)
    stories_path().write_bytes(b"this is not a database" * 100)
    r = Repl(default_bundle)
    out = r.run("had a general")
    assert out.count("not saved in this session") == 1 and "damaged" in out
    assert "next word after" in out and "Traceback" not in out
    out = r.run(":accept") + r.run("the mice") + r.run(":undo")
    assert "not saved" not in out and "error" not in out
    assert r.session.story.memory and len(r.session.story.path) == 2


def test_a_locked_file_mid_session_moves_the_story_to_memory(default_bundle, home_with_default, monkeypatch):
    import sqlite3

    r = Repl(default_bundle)
    r.run("had a general")
    r.run(":accept")
    words = [t for n in r.session.story.path for t in n.tokens]
    db = r.session.story.db

    def locked(*a, **kw):
        from model.story.schema import sqlite_errors

        with sqlite_errors(db.file, 0.0):
            raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(db, "add_node", locked)
    out = r.run("the mice")
    assert out.count("not saved in this session") == 1 and "locked" in out
    assert [t for n in r.session.story.path for t in n.tokens][: len(words)] == words
    assert r.session.story.path[-1].text == "the mice"


def test_chinese_stories_join_without_spaces(tmp_path):
    b = load_bundle(random_bundle(tmp_path / "zh", corpus_path=ROOT / "corpora" / "xiyouji_ch01-10.txt", units=8, embedding_dim=8, context=3))
    r = Repl(b)
    r.session.length = 5
    r.run("美猴王")
    r.run(":accept")
    r.run("道")
    text = r.session.story.open_db().text(r.session.story.node)
    assert text.startswith("美猴王") and text.endswith("道")
    assert not re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]", text)
    assert text in r.run(":story")


def test_the_stream_network_reads_the_story_once(tmp_path, monkeypatch):
    from model.prediction.numpy_net import Network

    b = load_bundle(random_bundle(tmp_path / "s", arch="stream", units=16, embedding_dim=16))
    r = Repl(b)
    r.session.length = 8
    reads: list[int] = []
    real = Network.advance_features

    def counted(self, ids, state=None):
        reads.append(np.atleast_2d(ids).shape[1])
        return real(self, ids, state)

    real_step = Network.step

    def stepped(self, token, state=None):
        reads.append(1)
        return real_step(self, token, state)

    monkeypatch.setattr(Network, "advance_features", counted)
    monkeypatch.setattr(Network, "step", stepped)
    for line in ("the mice held a general council", ":accept", "", ":accept", "some said this and some said that", ":accept"):
        r.run(line)
    story = [t for n in r.session.story.path for t in n.tokens]
    assert len(story) > 30
    assert max(reads) == 1  # one word at a time: what the story holds is never read again
    lstm = r.session.predictor.mixture.neural
    ids = lstm.lstm_ids(r.session.predictor.encode(story)[0])
    whole, _ = real(lstm.net, np.asarray([ids]) + 1)
    carried = r.session.predictor.mixture.carried("lstm")
    assert np.allclose(carried.state[-1][0][0], whole[0, -1], atol=1e-5)
    ctx = r.session.predictor.mixture.context(r.session.story_ids())
    assert np.allclose(ctx.network(lstm)[1], whole[0, -1], atol=1e-5)


# ---- the real REPL in a pseudo-terminal -------------------------------------------------------
ALT_A, ALT_R, ALT_U = "\x1ba", "\x1br", "\x1bu"


@pytest.mark.slow  # the REPL in a pseudo-terminal, started twice
def test_a_whole_story_session_in_a_terminal(home_with_default, term):
    t = term(home_with_default)
    t.expect(r"idle", timeout=60)
    t.send(":len 6\r")
    t.expect(r"generating 6 words")
    t.send("the mice looked at one another and had a general\r")  # 1) a line
    t.expect(r"next word after .had a general.")
    t.expect(r"\[greedy\].*proposal: Alt-A")  # the proposal, shown as it is written
    t.send(ALT_A)  # 2) keep it
    t.expect(r"kept: council")
    t.send("\r")  # 3) an empty Enter: the next proposal
    t.expect(r"\[greedy\].*proposal")
    t.send(ALT_R)  # 4) another one, then undo
    t.expect(r"\[beam \d+, #\d\].*proposal")
    t.send(ALT_U)
    t.expect(r"back to node 1: .*had a general")
    t.send(":alts 3\r")  # 5) three alternatives; keep the second
    t.expect(r"log p/word.*\n\s*3 .*:take K")
    t.send("\x1bt2")
    t.expect(r"kept: ")
    t.send(":tree\r")  # 6) the branches
    tree = t.expect(r"◀ here.*?›")
    assert len(re.findall(r"\d+ model: ", tree)) >= 2 and "proposal:" in tree
    t.send("long ago , the mice had a general\r")  # the story now ends with these words
    t.expect(r"\[greedy\].*proposal.*›")
    assert t.quit_with("\x04") == 0

    t = term(home_with_default)  # 7) the story is back; the menu follows its last words
    t.expect(r"story 1 .*words; :story shows it", timeout=60)
    t.send(":story\r")
    t.expect(r"had a general.*the mice had a general")
    t.send("c")  # alone, "c" would offer cat or could first; after "had a general", council
    t.expect(r"1 council\s+\d+\.\d%")
    assert t.quit_with("\x15:q\r") == 0

    t = term(home_with_default, "--story", "99")  # an unknown story is one line, before any model loads
    t.expect(r"story-repl: error: there is no story '99'")
    assert t.quit_with("") == 2

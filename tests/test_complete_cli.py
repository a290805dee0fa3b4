"""``story-repl complete``: one JSON answer per buffer, flushed at once, equal to the REPL's menu."""
from __future__ import annotations

import io
import json
import os
import subprocess

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from helpers import BIN, CAT, ROOT
from model.prediction.predictor import Predictor
from repl.complete_protocol import Answerer, serve
from model.prediction.menu import pick_keys
from repl.completer import GhostSuggest, WordCompleter

BUFFERS = ["had a ", "had a g", "had a ge", "had a general ", "had a general c", "The Mice ", "had a\ngeneral  ", "", ":topk 5"]


def repl_menu(completer: WordCompleter, text: str) -> list[tuple[str, str]]:
    """(word, percentage) of each entry the REPL's prompt_toolkit menu shows for ``text``."""
    got = completer.get_completions(Document(text), CompleteEvent(text_inserted=True))
    return [(c.display_text.split(" ", 1)[1].strip(), c.display_meta_text) for c in got]


def start(home, *args):
    env = dict(os.environ, STORY_REPL_HOME=str(home))
    return subprocess.Popen(
        [str(BIN), "complete", "--corpus", str(CAT), *args],
        cwd=str(ROOT), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8", bufsize=1,
    )


def ask(proc, line: str) -> dict:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())  # answered before the next line is sent


def test_complete_agrees_entry_for_entry_with_the_repl_menu(default_home, default_bundle):
    pred = Predictor(default_bundle)
    repl = WordCompleter(lambda: pred, lambda: 10)
    ghosts = GhostSuggest(repl)
    proc = start(default_home)
    try:
        for text in BUFFERS:
            got = ask(proc, json.dumps(text))
            shown = repl_menu(repl, text)
            assert [(e["word"], f"{e['prob'] * 100:.1f}%") for e in got["menu"]] == shown, text
            suggestion = ghosts.get_suggestion(None, Document(text))
            assert got["ghost"] == (suggestion.text if suggestion else "")
            assert [e["keys"] for e in got["menu"]] == [pick_keys(r, len(shown)) for r in range(1, len(shown) + 1)]
        first = ask(proc, json.dumps("had a general "))
        assert first["menu"][0]["word"] == "council" and first["prefix"] == ""
        assert first["ghost"].startswith("council ")
        assert ask(proc, json.dumps("had a general coun"))["prefix"] == "coun"
        err = ask(proc, "had a general")  # not JSON: an error on its line, and the process goes on
        assert "error" in err and "JSON string" in err["error"]
        assert "error" in ask(proc, "[1, 2]")
        assert ask(proc, json.dumps("had a "))["menu"][0]["word"] == "general"
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_complete_options(default_home):
    proc = start(default_home, "-k", "3", "--no-ghost", "--repeat")
    try:
        a = ask(proc, json.dumps("had a "))
        b = ask(proc, json.dumps("had a g"))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert len(a["menu"]) == 3 and a["ghost"] == ""
    assert b["menu"][0]["word"] == "general"  # --repeat: a passed-over word keeps its place


def test_serve_in_process(default_bundle):
    answerer = Answerer(Predictor(default_bundle), k=2)
    out = io.StringIO()
    n = serve(answerer, io.StringIO('"had a "\nnope\n"had a general "\n'), out)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert n == 3 and len(lines) == 3 and "error" in lines[1]
    assert [e["word"] for e in lines[2]["menu"]][:1] == ["council"] and len(lines[0]["menu"]) == 2


def test_complete_bad_arguments(default_home):
    env = dict(os.environ, STORY_REPL_HOME=str(default_home))
    out = subprocess.run([str(BIN), "complete", "--corpus", str(CAT), "-k", "0"], cwd=str(ROOT), env=env,
                         capture_output=True, text=True, input="", timeout=120)
    assert out.returncode == 2 and "-k expects a positive integer" in out.stderr and "Traceback" not in out.stderr

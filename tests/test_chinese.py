"""Chinese end to end: training on 西遊記, completing 美猴 -> 王 in the REPL, UTF-8 JSON, wide-character tables."""
from __future__ import annotations

import io
import json
import os
import subprocess

import pytest
from rich.console import Console

from model.text.tokenize import detokenize, tokenize
from repl import render

from helpers import BIN, ROOT

XIYOUJI = ROOT / "corpora" / "xiyouji_ch01-10.txt"
# A small, quick configuration: enough to learn the book's most frequent names.
FLAGS = ["--context", "3", "--units", "128", "--embedding-dim", "64", "--batch-size", "128", "--epochs", "2",
         "--min-count", "1", "--dropout", "0.3", "--lr", "0.002", "--objective", "softmax"]


@pytest.fixture(scope="module")
def zh_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("zh-home")
    env = dict(os.environ, STORY_REPL_HOME=str(home))
    r = subprocess.run([str(BIN), "train", str(XIYOUJI), *FLAGS, "--json", "--no-chart"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["vocab_size"] > 2000  # single characters and full-width punctuation
    return home


def run(home, *args):
    env = dict(os.environ, STORY_REPL_HOME=str(home))
    return subprocess.run([str(BIN), *args, "--corpus", str(XIYOUJI), *FLAGS], env=env, capture_output=True, timeout=300)


@pytest.mark.slow  # zh_home trains on 西遊記 in a story-repl process
def test_predict_json_is_utf8_and_offers_wang(zh_home):
    r = run(zh_home, "predict", "美猴", "-k", "5", "--json")
    assert r.returncode == 0, r.stderr.decode()
    raw = r.stdout.decode("utf-8")
    assert "\\u" not in raw and "美" in raw
    out = json.loads(raw)
    assert out["context"] == ["美", "猴"]
    assert out["predictions"][0]["word"] == "王"


@pytest.mark.slow  # zh_home trains on 西遊記 in a story-repl process
def test_generate_is_chinese_without_spaces(zh_home):
    r = run(zh_home, "generate", "孫悟空道", "-n", "20", "--json")
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout.decode("utf-8"))
    assert out["seed"] == ["孫", "悟", "空", "道"]
    assert len(out["tokens"]) == 20
    assert " " not in out["text"]
    assert out["text"] == detokenize(out["tokens"])


@pytest.mark.slow  # the REPL in a pseudo-terminal
def test_repl_completes_chinese(zh_home, term):
    t = term(zh_home, "--corpus", str(XIYOUJI), *FLAGS)
    t.expect(r"idle.*xiyouji_ch01-10", timeout=90)
    t.send("美猴")
    t.expect(r"王\s+\d+\.\d%")
    t.send("\t\r\r")  # pick 王, close the menu, submit the line
    t.expect(r"next word after .美猴王.")
    assert t.quit_with(":quit\r") == 0


def test_wide_characters_align_in_tables():
    buf = io.StringIO()
    Console(file=buf, width=60, color_system=None).print(render.topk_table([("王", 0.5), ("council", 0.25), ("「", 0.125)]))
    lines = [ln for ln in buf.getvalue().splitlines() if "%" in ln]
    from rich.cells import cell_len

    ends = {cell_len(ln[: ln.index("%") + 1]) for ln in lines}
    assert len(ends) == 1  # the probability column ends at the same cell for every row


def test_golden_round_trip():
    text = "孫悟空道：「我乃美猴王。」"
    toks = tokenize(text)
    assert toks[:4] == ["孫", "悟", "空", "道"] and "：" in toks and "「" in toks
    assert detokenize(toks) == text

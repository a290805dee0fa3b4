"""The scriptable subcommands, run as a user runs them: real processes, JSON on stdout."""
from __future__ import annotations

import json

import pytest

from helpers import CAT, story_repl


def test_predict_json_from_cached_default(default_home, tmp_path):
    r = story_repl("predict", "had a general", "-k", "5", "--json", home=default_home, cwd=tmp_path)  # any directory
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["context"] == ["had", "a", "general"] and out["unknown"] == []
    assert out["predictions"][0]["word"] == "council" and out["predictions"][0]["prob"] > 0.9
    assert len(out["predictions"]) == 5
    assert "training" not in r.stderr  # the cache was used


def test_generate_json_greedy(default_home):
    r = story_repl("generate", "had a general", "-n", "8", "--greedy", "--json", home=default_home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["seed"] == ["had", "a", "general"]
    assert out["tokens"] == ["council", "to", "consider", "what", "measures", "they", "could", "take"]
    assert out["text"] == "council to consider what measures they could take"


@pytest.mark.slow  # two story-repl processes, each loading the model and sampling
def test_generate_sampled_is_seeded(default_home):
    a = story_repl("generate", "the cat", "--sample", "--temperature", "1.5", "--seed", "3", "--json", home=default_home)
    b = story_repl("generate", "the cat", "--sample", "--temperature", "1.5", "--seed", "3", "--json", home=default_home)
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["tokens"] == json.loads(b.stdout)["tokens"]


@pytest.mark.slow  # trains in a story-repl process, then predicts in another
def test_train_json_and_model_dir(tmp_path):
    out_dir = tmp_path / "saved"
    r = story_repl("train", str(CAT), "--out", str(out_dir), "--units", "32", "--embedding-dim", "8", "--epochs", "5", "--json", "--no-chart", home=tmp_path / "h")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("bundle", "accuracy", "ceiling", "epochs", "train_seconds", "arch", "context", "vocab_size"):
        assert key in out
    assert out["vocab_size"] == 112 and out["arch"] == "lstm" and out["context"] == 3 and out["epochs"] <= 5
    assert out["ceiling"] == pytest.approx(199 / 201)
    assert (out_dir / "weights.npz").is_file()
    r = story_repl("predict", "the cat", "--model", str(out_dir), "--json", home=tmp_path / "h")
    assert r.returncode == 0 and len(json.loads(r.stdout)["predictions"]) == 5


@pytest.mark.slow  # trains in a story-repl process
def test_shipped_corpus_by_name_from_any_directory(tmp_path):
    r = story_repl("train", "belling_the_cat", "--units", "16", "--embedding-dim", "4", "--epochs", "2", "--json", "--no-chart", home=tmp_path / "h", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["vocab_size"] == 112


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "x", "--model", "/nonexistent/model"], "no model at"),
        (["train", "/nonexistent/story.txt"], "corpus not found"),
        (["predict", "x", "-k", "0", "--model", "."], "-k expects a positive integer"),
        (["train", "belling_the_cat", "--context", "0"], "context expects an integer >= 1"),
        (["generate", "x", "--temperature", "-1", "--model", "."], "--temperature expects a positive number"),
        (["train", "belling_the_cat", "--arch", "gru"], "invalid choice"),
    ],
)
def test_errors_are_one_line_on_stderr(tmp_path, args, message):
    r = story_repl(*args, home=tmp_path / "h")
    assert r.returncode != 0
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""

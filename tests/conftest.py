"""Shared fixtures: a private STORY_REPL_HOME for every test, and real (tiny or default) trained models."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAT = ROOT / "corpora" / "belling_the_cat.txt"
BIN = Path(sys.executable).with_name("story-repl")


@pytest.fixture(autouse=True)
def _private_home(tmp_path, monkeypatch):
    """Tests never touch the user's real cache or history."""
    home = tmp_path / "story-home"
    monkeypatch.setenv("STORY_REPL_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def default_home(tmp_path_factory) -> Path:
    """A STORY_REPL_HOME holding the default belling_the_cat model (trained once per test run)."""
    from model.config import Config
    from model.storage.store import train_and_cache

    home = tmp_path_factory.mktemp("default-home")
    old = os.environ.get("STORY_REPL_HOME")
    os.environ["STORY_REPL_HOME"] = str(home)
    try:
        train_and_cache(str(CAT), Config())
    finally:
        if old is None:
            os.environ.pop("STORY_REPL_HOME", None)
        else:
            os.environ["STORY_REPL_HOME"] = old
    return home


@pytest.fixture(scope="session")
def default_bundle(default_home):
    from model.config import Config
    from model.storage.store import cache_path
    from model.storage.bundle import load_bundle

    old = os.environ.get("STORY_REPL_HOME")
    os.environ["STORY_REPL_HOME"] = str(default_home)
    try:
        return load_bundle(cache_path(CAT, Config()))
    finally:
        if old is None:
            os.environ.pop("STORY_REPL_HOME", None)
        else:
            os.environ["STORY_REPL_HOME"] = old


@pytest.fixture
def home_with_default(default_home, tmp_path, monkeypatch) -> Path:
    """A private copy of the default home (so a test may change it freely)."""
    home = tmp_path / "home-copy"
    shutil.copytree(default_home, home)
    monkeypatch.setenv("STORY_REPL_HOME", str(home))
    return home


def tiny_config(**kw):
    from model.config import Config

    base = dict(units=24, embedding_dim=12, epochs=60)
    base.update(kw)
    return Config(**base)

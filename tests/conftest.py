"""Shared fixtures: a private STORY_REPL_HOME for every test, real (tiny or default) trained
models, and the REPL in a pseudo-terminal. Plain helpers (paths, Term, Repl) are in helpers.py."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import CAT, Term


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


@pytest.fixture
def fresh_home(tmp_path, monkeypatch) -> Path:
    """STORY_REPL_HOME at tmp_path/home, and no Kneser-Ney baseline remembered from another test."""
    from model.evaluation.evaluate import BaselineCache

    home = tmp_path / "home"
    monkeypatch.setenv("STORY_REPL_HOME", str(home))
    BaselineCache.clear()
    yield home
    BaselineCache.clear()


@pytest.fixture
def term():
    """``term(home, *args, timeout=120)`` starts story-repl in a pseudo-terminal and returns its
    :class:`helpers.Term`; every terminal started is closed when the test ends, pass or fail."""
    started: list[Term] = []

    def spawn(home, *args, **kw) -> Term:
        t = Term(home, *args, **kw)
        started.append(t)
        return t

    yield spawn
    for t in started:
        t.close()


@pytest.fixture
def model_copy(default_bundle, tmp_path) -> Path:
    """A private copy of the default model (without model.keras: predicting never reads it)."""
    from model.storage.bundle import FILES

    dst = tmp_path / "model"
    dst.mkdir()
    for name in FILES:
        if name != "model.keras" and (default_bundle.path / name).is_file():
            shutil.copyfile(default_bundle.path / name, dst / name)
    return dst

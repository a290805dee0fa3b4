"""Where story-repl keeps its files: models, id caches, history and what the user wrote."""
from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("STORY_REPL_HOME")
    if env:
        return Path(os.path.expanduser(env))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "story-repl"

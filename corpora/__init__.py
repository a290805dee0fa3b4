"""The corpora shipped with story-repl, found by name from any directory."""
from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent


def bundled(name: str) -> Path | None:
    """Path of a shipped corpus named ``name`` (with or without ``.txt``), or None."""
    stem = name[:-4] if name.endswith(".txt") else name
    if not stem or "/" in stem or "\\" in stem:
        return None
    path = DIR / f"{stem}.txt"
    return path if path.is_file() else None


def names() -> list[str]:
    """Names of the shipped corpora, without extension."""
    return sorted(p.stem for p in DIR.glob("*.txt"))

"""The weights of a mixture with a partner network, kept in ``$STORY_REPL_HOME/partners/``.

Refitting every weight when a second network joins takes seconds on a book; the result is
kept under a digest of both networks and of the bundle's saved components, and read back on
the next load.
"""
from __future__ import annotations

from model.prediction.weights import Weights, from_saved, saved_form


def partner_weights_path(bundle, other):
    """Where the weights of ``bundle`` with ``other`` as partner are kept: a digest of both
    networks' weights and of the bundle's n-gram, vocabulary and own weights."""
    import hashlib

    from model.home import home
    from model.storage.files import file_digest

    h = hashlib.sha256()
    for b, names in ((bundle, ("weights.npz", "words.json", "ngram.npz", "mixture.json")), (other, ("weights.npz",))):
        for name in names:
            f = b.path / name
            h.update(f"{name}\0{file_digest(f) if f.is_file() else ''}\0".encode())
    return home() / "partners" / f"{h.hexdigest()[:24]}.json"


def read_weights(path, names: list[str]) -> tuple[Weights, dict] | None:
    """(weights, the components' parameters) kept at ``path`` for exactly the components
    ``names``, or None (no file, unreadable, or for other components)."""
    import json

    try:
        w, params = from_saved(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if w.names != list(names) or any(len(row) != len(names) for row in w.by_bucket):
        return None
    return w, params


def write_weights(path, weights: Weights, params: dict) -> None:
    """Write atomically (a temporary file, then one rename); a cache that cannot be written is skipped."""
    import json
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(saved_form(weights, params), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass

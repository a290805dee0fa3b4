"""The weights of a mixture with a partner network, kept in ``$STORY_REPL_HOME/partners/``.

Refitting every weight when a second network joins takes seconds on a book; the result is
kept under a digest of both networks and of the bundle's saved components, and read back on
the next load.
"""
from __future__ import annotations

from model.errors import StoryError
from model.prediction.weights import Weights, from_saved, saved_form
from model.storage.untrusted import parse_json, read_regular

MAX_BYTES = 2**20  # a few hundred weights; anything larger is not a file of ours


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
    ``names``, or None: no file, or one that is not a plain file, not valid, or for other
    components (the caller refits and rewrites it)."""
    try:
        data = read_regular(path, MAX_BYTES, missing_ok=True)
        if data is None:
            return None
        w, params = from_saved(parse_json(data, path), path)
    except StoryError:
        return None
    return (w, params) if w.names == list(names) else None


def write_weights(path, weights: Weights, params: dict) -> None:
    """Write atomically (a temporary file, then one rename; the temporary file is removed when
    that fails); a cache that cannot be written is skipped."""
    import json

    from model.storage.files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(saved_form(weights, params), ensure_ascii=False))
    except OSError:
        pass

"""Where a model's training text may be read from: only from a place the user vouches for.

A model directory may come from someone else, so the corpus path recorded in its config.json
is a hint, never an instruction: story-repl does not open it on its own. The text is read from
the file the user passes (``--corpus``), from a corpus shipped with story-repl, or, for a model
in story-repl's own cache (made by story-repl from a path the user gave), from the path it
recorded; each only when the file's sha256 is the one the model recorded. Nothing here writes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from model.errors import StoryError
from model.storage.untrusted import visible

SHA256 = re.compile(r"[0-9a-f]{64}")
_SHIPPED: dict[str, Path] = {}  # sha256 -> shipped corpus, filled once


def shipped_with(sha: str) -> Path | None:
    """The corpus shipped with story-repl whose sha256 is ``sha``, or None."""
    import corpora

    from model.storage.files import file_digest

    if not _SHIPPED:
        for name in corpora.names():
            path = corpora.bundled(name)
            try:
                _SHIPPED.setdefault(file_digest(path), path)
            except StoryError:
                continue
    return _SHIPPED.get(sha)


def in_cache(model_dir: Path) -> bool:
    """Whether ``model_dir`` is a model of story-repl's own cache (``$STORY_REPL_HOME/models``)."""
    from model.home import home

    try:
        return model_dir.resolve().parent == (home() / "models").resolve()
    except (OSError, RuntimeError):
        return False


def _digest(path: Path) -> str | None:
    """sha256 of the regular file ``path``; None when it is not one or cannot be read."""
    from model.storage.files import file_digest

    try:
        if not path.is_file():
            return None
        return file_digest(path)
    except (OSError, ValueError, StoryError):
        return None


def wanted(bundle) -> str:
    """The text a model was trained on, as a user can recognise it: its name and sha256 prefix."""
    sha = bundle.corpus_sha256
    return f"{bundle.corpus_name} (sha256 {sha[:12]}…)" if sha else bundle.corpus_name


def check_given(bundle, spec: str) -> Path:
    """The text the user passed for ``bundle`` (``--corpus PATH``), once its sha256 is known to be
    the one the model recorded; a one-line StoryError otherwise."""
    from model.text.corpus import check_regular, resolve_path

    path = resolve_path(spec)
    check_regular(path)
    if not bundle.corpus_sha256:
        raise StoryError(
            f"{visible(bundle.path)} does not record the sha256 of its training text, so no text can be checked against it; retrain the model"
        )
    if _digest(path) != bundle.corpus_sha256:
        raise StoryError(
            f"{visible(path)} is not the text {visible(bundle.path)} was trained on (sha256 differs); it needs {wanted(bundle)}"
        )
    return path


def trusted_spec(bundle) -> str | None:
    """A corpus to retrain this model's text from, found without opening anything the model
    names: the text the user passed, a shipped corpus of the recorded sha256, or the recorded
    path of a model in story-repl's own cache. None when there is none."""
    if bundle.given_text:
        return bundle.given_text
    sha = bundle.corpus_sha256
    shipped = shipped_with(sha) if sha else None
    if shipped is not None:
        return str(shipped)
    recorded = bundle.info.get("corpus", {}).get("path") or ""
    if recorded and os.path.isabs(recorded) and in_cache(bundle.path):
        return recorded
    return None


def text_path(bundle) -> Path | None:
    """The file to read ``bundle``'s training text from (see the module docstring), its sha256
    checked against the recorded one; None when no such file is at hand."""
    sha = bundle.corpus_sha256
    if not sha:
        return None
    candidates = [bundle.given_text, str(shipped_with(sha) or "")]
    recorded = bundle.info.get("corpus", {}).get("path") or ""
    if recorded and os.path.isabs(recorded) and in_cache(bundle.path):
        candidates.append(recorded)
    for spec in candidates:
        if spec and _digest(Path(spec)) == sha:
            return Path(spec)
    return None


def missing_text(bundle, need: str = "") -> StoryError:
    """The one line saying which text ``bundle`` needs (``need``: what for) and how to pass it."""
    where, need = visible(bundle.path), f" {need}" if need else ""
    if not bundle.corpus_sha256:
        return StoryError(f"{where} does not record the sha256 of its training text, so that text cannot be used{need}; retrain the model")
    recorded = bundle.info.get("corpus", {}).get("path") or ""
    if bundle.given_text:
        return StoryError(f"{visible(bundle.given_text)} is not the text {where} was trained on (sha256 differs); it needs {wanted(bundle)}{need}")
    if recorded and in_cache(bundle.path):
        state = "has changed since the model was trained on it (sha256 differs)" if os.path.exists(recorded) else "is not there any more"
        return StoryError(f"{visible(recorded)} {state}; restore it or retrain the model")
    return StoryError(
        f"{where} needs its training text {wanted(bundle)}{need}; pass it with --corpus PATH "
        f"(a path recorded in a model is never opened on its own)"
    )

"""The model cache: one bundle per (corpus, configuration), found without reading the model.

The cache lives in ``$STORY_REPL_HOME`` or the user's cache directory. Its key is the
corpus file's sha256 plus the configuration as given (recipe choices are a function of the
corpus, so they need not be resolved to find a model). Training for a key holds a file
lock, so two processes training the same corpus wait for each other instead of racing.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Callable, Iterator

from model.storage.bundle import Bundle, load_bundle, save_result
from model.config import Config
from model.errors import StoryError
from model.home import home


def file_sha256(path: Path) -> str:
    """sha256 of a corpus file (a regular file); read errors are one-line StoryErrors."""
    from model.text.corpus import check_regular
    from model.storage.files import file_digest

    check_regular(Path(path))
    return file_digest(Path(path))


def cache_path(corpus_path: Path, config: Config, sha: str | None = None) -> Path:
    sha = sha or file_sha256(corpus_path)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in corpus_path.stem)[:40] or "corpus"
    return home() / "models" / f"{safe}-{config.key(sha)}"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (held across processes until the block ends)."""
    lock_file = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_file, "a+")
    except OSError as e:
        raise StoryError(
            f"cannot write to the model cache {path.parent}: {e.strerror or e}; "
            f"set STORY_REPL_HOME to a directory you can write to"
        ) from None
    try:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        yield
    finally:
        fh.close()


def cached(corpus_path: Path, config: Config) -> Bundle | None:
    """The cached bundle for this corpus and configuration, or None if there is none (or it is broken)."""
    path = cache_path(corpus_path, config)
    if not path.exists():
        return None
    try:
        return load_bundle(path)
    except StoryError:
        return None


def train_and_cache(
    corpus_spec: str | os.PathLike,
    config: Config,
    *,
    on_progress: Callable | None = None,
    stop: threading.Event | None = None,
    encoding: str = "utf-8",
    force: bool = False,
    out: str | os.PathLike | None = None,
    logdir: str | None = None,
    strategy: str = "auto",
    on_read: Callable[[int, int], None] | None = None,
    time_limit: float | None = None,
):
    """Train (unless a valid cache exists and not ``force``) and save. Returns (bundle, result or None)."""
    from model.storage.bundle import check_target
    from model.text.corpus import Corpus, read_corpus

    if isinstance(corpus_spec, Corpus):
        corpus = corpus_spec
    else:
        corpus = read_corpus(corpus_spec, encoding=encoding, keep_case=config.keep_case, progress=on_read)
    if out is not None:
        check_target(out)  # refuse a bad --out before spending time on training
    target = cache_path(corpus.path, config, corpus.sha256)
    from model.training.distribute import is_chief

    chief = is_chief()
    # Only the chief of a multi-worker cluster writes; the others take no lock and create nothing.
    with locked(target) if chief else contextlib.nullcontext():
        # Every worker of a cluster must train: none may stop at a cache only it has.
        if not force and out is None and strategy != "multiworker":
            try:
                return load_bundle(target), None
            except StoryError:
                pass
        from model.training.train import train

        result = train(corpus, config, on_progress=on_progress, stop=stop, logdir=logdir, strategy=strategy, time_limit=time_limit)
        if chief:
            save_result(result, target)
            if out is not None:
                save_result(result, out)
        dest = Path(out) if out is not None else target
        bundle = load_bundle(dest) if chief else None
        return bundle, result


def resume_training(
    bundle: Bundle,
    corpus,
    *,
    epochs: int | None = None,
    out: str | os.PathLike | None = None,
    before_save: Callable | None = None,
    **train_args,
):
    """Continue ``bundle``'s training on ``corpus`` (its training text, checked by the caller)
    and save it over itself, or to ``out``: ``epochs`` more, else those an interrupted run had
    left (:func:`model.training.train.resume_config`). ``before_save(result)`` may amend the
    result. Returns (bundle, or None on a worker that is not the chief; result)."""
    from model.storage.origin import in_cache
    from model.training.distribute import is_chief
    from model.training.train import resume_config, train

    target = Path(out) if out is not None else Path(bundle.path)
    chief = is_chief()
    with locked(target) if chief and in_cache(target) else contextlib.nullcontext():
        result = train(corpus, resume_config(bundle, epochs), resume=bundle, **train_args)
        if epochs is None:  # the run's epochs were those left; the recipe keeps its own
            result.config = bundle.config
        if before_save is not None:
            before_save(result)
        if not chief:
            return None, result
        saved = load_bundle(save_result(result, target))
        saved.given_text = bundle.given_text
        return saved, result

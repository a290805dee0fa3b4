"""Streaming a corpus file to int32 token ids in bounded memory, with an on-disk id cache.

The file is decoded in chunks and cut at whitespace into pieces of a few MB, scanned by
:class:`model.text.scanner.Scanner` in worker processes (:mod:`model.text.id_workers`; none below
:data:`POOL_MIN_BYTES`), merged in text order and renumbered so that ids rank tokens by count, ties
by first appearance (the order of :meth:`model.text.vocab.Vocab.build`). Files of at least
:data:`CACHE_MIN_BYTES` are cached atomically under ``<home>/ids/KEY`` (sha256 of the file and the
tokenizer settings; an entry's files are listed in :mod:`model.text.id_cache`). An entry is
verified whenever it is opened and rebuilt with a one-line notice (``Streamed.notice``) if damaged.
"""
from __future__ import annotations

import codecs
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from model.errors import StoryError
from model.storage.files import file_digest, fsync_dir, fsync_file
from model.text.id_arrays import BLOCK
from model.text.id_cache import Unusable, open_entry, remove_entry, write_meta
from model.text.id_workers import Workers
from model.text.scanner import Piece, Scanner

#: Bumped whenever the tokenizer or the scanner could give different ids for the same text.
TOKENIZER_VERSION = 2
#: Files at least this large are tokenized by a pool of worker processes.
POOL_MIN_BYTES = 4 << 20
#: Files at least this large keep their ids in the on-disk cache (smaller ones stay in memory).
CACHE_MIN_BYTES = 1 << 20
#: Worker processes at most (the pool uses every usable core up to this).
MAX_WORKERS = 8

# Where a piece may end: after a non-space character that is followed by whitespace.
_CUT = re.compile(r"\S(?=\s)")


def scan_piece(text: str, keep_case: bool = False) -> Piece:
    """Tokenize ``text`` exactly as :func:`model.text.tokenize.tokenize` does, as ids.

    ``words[i]`` for ``i`` in ``ids`` is ``tokenize(text, keep_case)``; ``breaks`` are the
    token offsets where a blank line (a paragraph break) stands in the text."""
    return Scanner(keep_case).scan(text.encode("utf-8", "surrogatepass"))


# ---- the result ---------------------------------------------------------------------------


@dataclass
class Streamed:
    """A corpus as ids: ``words[ids[i]]`` is the i-th token of the text."""

    ids: np.ndarray  # int32, np.memmap when cached
    words: list[str]  # distinct tokens, by count (descending), ties by first appearance
    counts: np.ndarray  # int64, count of each word
    first: np.ndarray  # int64, rank of each word's first appearance
    paragraph_starts: np.ndarray  # int64, sorted token offsets; 0 first when there are tokens
    sha256: str
    cache_dir: Path | None = None
    notice: str = ""  # one line when a damaged cache entry was rebuilt, for the caller to show


def codec_name(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise StoryError(f"unknown encoding {encoding!r}; try utf-8, latin-1, gb18030 or big5") from None


def cache_key(sha256: str, encoding: str, keep_case: bool) -> str:
    settings = f"{sha256}|{codec_name(encoding)}|keep_case={bool(keep_case)}|tokenizer={TOKENIZER_VERSION}"
    return hashlib.sha256(settings.encode()).hexdigest()[:32]


def cache_root() -> Path:
    from model.home import home

    return home() / "ids"


def stream_ids(
    path: Path,
    encoding: str = "utf-8",
    keep_case: bool = False,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 1 << 22,
    use_cache: bool | None = None,
    workers: int | None = None,
) -> Streamed:
    """The ids of ``path``: from the cache when present, else streamed (and cached when large).

    ``progress(done_bytes, total_bytes)`` is called after each chunk while tokenizing a file
    larger than one chunk. ``workers`` (default: the usable cores, for files of at least
    :data:`POOL_MIN_BYTES`) sets the process pool; 1 scans in this process. A cache entry that
    fails verification is rebuilt, and the result's ``notice`` says which and why."""
    codec_name(encoding)  # an unknown encoding fails before anything is read
    size = path.stat().st_size
    sha = file_digest(path)
    cache = use_cache if use_cache is not None else size >= CACHE_MIN_BYTES
    if workers is None:
        workers = usable_cpus() if size >= POOL_MIN_BYTES else 1
    if not cache:
        return _build(path, encoding, keep_case, progress, chunk, workers, sha, None)
    final = cache_root() / cache_key(sha, encoding, keep_case)
    try:
        return _open_cached(final, sha, encoding, keep_case)
    except Unusable as e:
        notice = "" if e.missing else f"the id cache {final} {e}; rebuilt it from {path.name}"
    hit = _cache_build(path, encoding, keep_case, progress, chunk, workers, sha, final)
    hit.notice = notice
    return hit


def _cache_build(path: Path, encoding: str, keep_case: bool, progress, chunk: int, workers: int,
                 sha: str, final: Path) -> Streamed:
    """Tokenize ``path`` into a temporary directory beside ``final`` and rename it into place
    (whatever stood at ``final`` is removed first: a damaged entry, or a file)."""
    root = final.parent
    try:
        remove_entry(final)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    except OSError as e:
        raise StoryError(
            f"cannot write to the id cache {root}: {e.strerror or e}; set STORY_REPL_HOME to a directory you can write to"
        ) from None
    try:
        _build(path, encoding, keep_case, progress, chunk, workers, sha, tmp)
        _write_meta(tmp, sha, encoding, keep_case, path.stat().st_size)
        fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same cache first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(root)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoryError(
            f"cannot write to the id cache {root}: {e.strerror or e}; free some disk space or set STORY_REPL_HOME elsewhere"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        hit = _open_cached(final, sha, encoding, keep_case)
    except Unusable as e:  # pragma: no cover - the directory just written is unreadable
        raise StoryError(f"the id cache {final} {e} just after it was written; remove it and try again") from None
    _remove_stale(root)
    return hit


def usable_cpus() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, n))


# ---- reading and scanning -----------------------------------------------------------------


def _pieces(path: Path, encoding: str, chunk: int) -> Iterator[tuple[str, int]]:
    """(text piece, bytes read so far) in order; every piece ends just before whitespace.

    The first reads are smaller (a quarter of ``chunk``, then doubling), so that on a text of
    a few pieces every worker has work at once. Decoding errors and NUL bytes are one-line
    StoryErrors naming the offset."""
    step = max(1, chunk // 4)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    nul_matters = encoding.lower().replace("-", "") in ("utf8", "latin1", "ascii", "gb18030", "big5")
    pending = ""
    done = 0
    first = True
    try:
        with open(path, "rb") as fh:
            while True:
                data = fh.read(step)
                step = min(chunk, 2 * step)
                final = not data
                if data and nul_matters and b"\x00" in data:
                    raise StoryError(f"{path} looks like a binary file (it contains NUL bytes); give a text file")
                try:
                    text = decoder.decode(data, final=final)
                except UnicodeDecodeError as e:
                    offset = done + e.start
                    bad = data[e.start : e.start + 1].hex() if data else "end of file"
                    raise StoryError(
                        f"{path} is not valid {encoding}: byte 0x{bad} at offset {offset} ({e.reason}); "
                        f"pass --encoding (e.g. latin-1, gb18030, big5)"
                    ) from None
                done += len(data)
                if first and text:
                    first = False
                    if text.startswith("\ufeff"):
                        text = text[1:]
                pending += text
                if final:
                    yield pending, done
                    return
                cut = _last_cut(pending)
                if cut > 0:
                    yield pending[:cut], done
                    pending = pending[cut:]
    except OSError as e:
        raise StoryError(f"cannot read {path}: {e.strerror or e}; check that the file is there and readable") from None


def _last_cut(text: str) -> int:
    """The last position p with text[p-1] not whitespace and text[p] whitespace (0: none)."""
    p = text.rfind("\n")
    if p > 0 and not text[p - 1].isspace():
        return p
    window = 1 << 16
    while True:
        start = max(0, len(text) - window)
        tail = deque(_CUT.finditer(text, start), maxlen=1)  # the last match only
        if tail:
            return tail[0].start() + 1
        if start == 0:
            return 0
        window *= 16


class _Merger:
    """Merges scanned pieces in text order: provisional id = rank of first appearance.

    Each source (a scanner, in a worker or here) numbers its words its own way; ``luts[k]``
    maps source k's numbers to provisional ids. A source's new words come in order of first
    appearance within their piece, and a word new to the merger is new to its source, so
    taking them in that order keeps the provisional ids in order of first appearance."""

    def __init__(self, sink, sources: int = 1) -> None:
        self.index: dict[str, int] = {}
        self.counts = np.zeros(1 << 16, np.int64)
        self.luts = [np.zeros(0, np.int32) for _ in range(sources)]
        self.breaks: list[np.ndarray] = []
        self.n_tokens = 0
        self.sink = sink

    def add(self, source: int, piece: Piece) -> None:
        index = self.index
        found = [index.setdefault(w, len(index)) for w in piece.words]
        lut = self.luts[source]
        if found:
            lut = self.luts[source] = np.concatenate([lut, np.asarray(found, np.int32)])
        if len(index) > len(self.counts):
            grown = np.zeros(max(len(index), 2 * len(self.counts)), np.int64)
            grown[: len(self.counts)] = self.counts
            self.counts = grown
        if len(lut):  # a source's numbers map to distinct ids: a plain indexed add
            self.counts[lut] += np.bincount(piece.ids, minlength=len(lut))
        if len(piece.breaks):
            self.breaks.append(piece.breaks + self.n_tokens)
        self.sink(lut[piece.ids])
        self.n_tokens += len(piece.ids)


def _scan_all(pieces: Iterator[tuple[str, int]], keep_case: bool, workers: int, merger: _Merger,
              progress: Callable[[int, int], None] | None, size: int, chunk: int) -> bool:
    """Scan every piece (in a pool when ``workers`` > 1) into ``merger``; True if any
    non-whitespace character was seen."""
    seen_text = False

    def report(done: int) -> None:
        if progress is not None and size > chunk:
            progress(done, size)

    if workers <= 1:
        scanner = Scanner(keep_case)
        for text, done in pieces:
            seen_text = seen_text or not text.isspace() and bool(text)
            merger.add(0, scanner.scan(text.encode("utf-8", "surrogatepass")))
            report(done)
        return seen_text
    pool = Workers(workers)
    sent: deque[tuple[int, int]] = deque()  # (worker, bytes read) of the pieces in flight
    try:
        k = 0
        for text, done in pieces:
            seen_text = seen_text or not text.isspace() and bool(text)
            if len(sent) == workers:  # every worker busy: take the oldest result first
                w, d = sent.popleft()
                p = pool.receive(w)
                pool.send(w, text, keep_case)
                sent.append((w, done))
                merger.add(w, p)
                report(d)
            else:
                pool.send(k, text, keep_case)
                sent.append((k, done))
                k += 1
            del text
        while sent:
            w, d = sent.popleft()
            p = pool.receive(w)
            merger.add(w, p)
            report(d)
    finally:
        pool.close()
    return seen_text


def _build(path: Path, encoding: str, keep_case: bool, progress, chunk: int, workers: int,
           sha: str, out_dir: Path | None) -> Streamed:
    size = path.stat().st_size
    parts: list[np.ndarray] = []
    fh = open(out_dir / "ids.int32", "wb") if out_dir is not None else None
    try:
        merger = _Merger(fh.write if fh is not None else parts.append, max(1, workers))
        seen_text = _scan_all(_pieces(path, encoding, chunk), keep_case, workers, merger, progress, size, chunk)
        if fh is not None:
            fh.flush()
    finally:
        if fh is not None:
            fh.close()
    if not seen_text:
        raise StoryError(f"{path} is empty; give a text with some words")
    if merger.n_tokens == 0:
        raise StoryError(f"{path} has no words to learn from")
    words_first = list(merger.index)
    counts_first = merger.counts[: len(words_first)]
    order = np.argsort(-counts_first, kind="stable")  # rank -> provisional id
    final_of = np.empty(len(order), np.int32)
    final_of[order] = np.arange(len(order), dtype=np.int32)
    words = [words_first[i] for i in order]
    counts = counts_first[order]
    first = order.astype(np.int64)
    # paragraph starts: 0 and every break offset (in order already), without repeats or the end
    starts = np.concatenate([np.zeros(1, np.int64), *merger.breaks])
    starts = starts[np.r_[True, starts[1:] != starts[:-1]]]
    starts = starts[starts < merger.n_tokens]
    if out_dir is None:
        ids = final_of[np.concatenate(parts)] if parts else np.zeros(0, np.int32)
        return Streamed(ids, words, counts, first, starts, sha)
    _remap_file(out_dir / "ids.int32", final_of)
    (out_dir / "words.txt").write_text("\n".join(words), encoding="utf-8")
    for name, arr in (("counts.int64", counts), ("first.int64", first), ("paragraphs.int64", starts)):
        arr.astype("<i8").tofile(out_dir / name)
    for name in ("words.txt", "counts.int64", "first.int64", "paragraphs.int64"):
        fsync_file(out_dir / name)
    return Streamed(np.zeros(0, np.int32), words, counts, first, starts, sha, out_dir)


def _remap_file(path: Path, table: np.ndarray) -> None:
    """Rewrite the raw int32 ids at ``path`` in place through ``table``, block by block (read
    and written with plain I/O, so the pages never count in this process's memory)."""
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        step = BLOCK * 4
        for off in range(0, size, step):
            block = np.frombuffer(os.pread(fd, min(step, size - off), off), np.int32)
            os.pwrite(fd, table[block].tobytes(), off)
        os.fsync(fd)
    finally:
        os.close(fd)


def _settings(sha: str, encoding: str | None, keep_case: bool | None) -> dict:
    """What an entry's meta.json records and must still say when it is opened."""
    out: dict = {"tokenizer_version": TOKENIZER_VERSION, "sha256": sha}
    if encoding is not None:
        out["encoding"] = codec_name(encoding)
    if keep_case is not None:
        out["keep_case"] = bool(keep_case)
    return out


def _write_meta(out_dir: Path, sha: str, encoding: str, keep_case: bool, size: int) -> None:
    write_meta(out_dir, {**_settings(sha, encoding, keep_case), "bytes": size})


def load_cached(path: Path, sha: str, encoding: str | None = None, keep_case: bool | None = None) -> Streamed | None:
    """The cached ids in ``path``, or None when missing, from another version, or damaged
    (``encoding`` and ``keep_case``, when given, must be the entry's too)."""
    try:
        return _open_cached(path, sha, encoding, keep_case)
    except Unusable:
        return None


def _open_cached(entry: Path, sha: str, encoding: str | None, keep_case: bool | None) -> Streamed:
    """The verified entry (see :func:`model.text.id_cache.open_entry`), or :class:`Unusable`."""
    ids, words, counts, first, starts = open_entry(entry, _settings(sha, encoding, keep_case))
    return Streamed(ids, words, counts, first, starts, sha, entry)


def _remove_stale(root: Path, age: float = 86400.0) -> None:
    """Remove temporary directories left by processes that died while writing (a day old)."""
    now = time.time()
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for p in entries:
        if p.name.startswith(".tmp-"):
            try:
                if now - p.stat().st_mtime > age:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass


"""An entry of the on-disk id cache (see :mod:`model.text.ids`): its meta.json with the digest
of its files, and the verification it passes each time it is opened.

An entry is a directory ``KEY/`` holding ``ids.int32``, ``words.txt``, ``counts.int64``,
``first.int64``, ``paragraphs.int64`` and ``meta.json``. Anything in it may have been damaged
or edited since it was written, so it is read as untrusted: plain files only, bounded sizes,
and a failure is :class:`Unusable` with the reason, never an exception from numpy later on.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import numpy as np

from model.errors import StoryError
from model.storage.files import atomic_write
from model.storage.untrusted import read_regular
from model.text.id_arrays import id_stats

#: Layout of an entry (2: meta.json holds a digest of the entry's files).
FORMAT_VERSION = 2
#: The files meta.json's digest covers (ids.int32 is checked by a pass over its ids instead).
DIGESTED = ("words.txt", "counts.int64", "first.int64", "paragraphs.int64")
META_MAX_BYTES = 1 << 20


class Unusable(Exception):
    """Why an entry cannot be used (the message completes "the id cache KEY ...");
    ``missing`` when there is no entry at all, which is no damage."""

    def __init__(self, reason: str, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


def digest(meta: dict, blobs: dict[str, bytes]) -> str:
    """sha256 of meta.json's other fields and of the files in :data:`DIGESTED`."""
    fields = {k: v for k, v in meta.items() if k != "digest"}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    for name in DIGESTED:
        h.update(f"\0{name}\0{len(blobs[name])}\0".encode())
        h.update(blobs[name])
    return h.hexdigest()


def write_meta(out_dir: Path, settings: dict) -> None:
    """meta.json of a freshly written entry: ``settings`` (what the entry must match when it is
    opened), the sizes, and the digest that :func:`open_entry` checks."""
    meta = {
        "format_version": FORMAT_VERSION,
        **settings,
        "byteorder": sys.byteorder,
        "n_tokens": os.path.getsize(out_dir / "ids.int32") // 4,
        "n_words": os.path.getsize(out_dir / "counts.int64") // 8,
        "n_paragraphs": os.path.getsize(out_dir / "paragraphs.int64") // 8,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta["digest"] = digest(meta, {name: (out_dir / name).read_bytes() for name in DIGESTED})
    atomic_write(out_dir / "meta.json", json.dumps(meta, indent=1))


def remove_entry(entry: Path) -> None:
    """Remove whatever stands at an entry's path: a directory's tree, or a file or link itself."""
    try:
        st = os.lstat(entry)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _read(entry: Path, name: str, limit: int) -> bytes:
    try:
        data = read_regular(entry / name, limit, missing_ok=True)
    except StoryError:
        raise Unusable(f"has a {name} that is not a plain file of at most {limit:,} bytes") from None
    if data is None:
        raise Unusable(f"has no {name}")
    return data


def _read_meta(entry: Path, expect: dict) -> dict:
    try:
        st = os.lstat(entry)
    except FileNotFoundError:
        raise Unusable("is missing", missing=True) from None
    except OSError as e:
        raise Unusable(f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise Unusable("is not a directory")
    try:
        meta = json.loads(_read(entry, "meta.json", META_MAX_BYTES).decode("utf-8"))
    except ValueError:
        raise Unusable("has a meta.json that is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise Unusable("was written by another version of story-repl")
    for key, value in {**expect, "byteorder": sys.byteorder}.items():
        if meta.get(key) != value:
            raise Unusable(f"has another {key} in its meta.json")
    return meta


def open_entry(entry: Path, expect: dict) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(ids memory-mapped, words, counts, first, paragraph starts) of the verified entry, or
    :class:`Unusable` saying what is wrong; ``expect`` holds settings meta.json must have.

    Verified: meta.json's settings, the digest of meta.json and of every file but ids.int32,
    the sizes, and one sequential pass over ids.int32 in blocks: every id in [0, n_words) and
    their sum equal to the one ``counts`` implies. That pass reads the ids at disk speed and
    costs a small part of the sha256 of the text that every open computes anyway, where a
    digest of ids.int32 would cost about as much again. It catches any id out of range and any
    change that alters the sum (zeroed, overwritten, shifted); ids swapped among themselves pass."""
    meta = _read_meta(entry, expect)
    try:
        n_tokens, n_words = int(meta["n_tokens"]), int(meta["n_words"])
        limit = 8 * int(meta["bytes"]) + (1 << 20)
        blobs = {name: _read(entry, name, limit) for name in DIGESTED}
        if meta.get("digest") != digest(meta, blobs):
            raise Unusable(f"does not match the digest in its meta.json (one of {', '.join(DIGESTED)} or meta.json changed)")
        words = blobs["words.txt"].decode("utf-8").split("\n")
        counts, first, starts = (np.frombuffer(blobs[name], "<i8").astype(np.int64) for name in DIGESTED[1:])
    except (KeyError, TypeError, ValueError):
        raise Unusable("has a meta.json or word list that does not fit together") from None
    if not (len(words) == len(counts) == len(first) == n_words > 0) or int(counts.sum()) != n_tokens or counts.min() < 1:
        raise Unusable("has word counts that do not fit together")
    try:
        st = os.lstat(entry / "ids.int32")
    except OSError:
        raise Unusable("has no ids.int32") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size != 4 * n_tokens:
        raise Unusable(f"has an ids.int32 that is not a plain file of {4 * n_tokens:,} bytes")
    try:
        ids = np.memmap(entry / "ids.int32", dtype=np.int32, mode="r", shape=(n_tokens,))
        low, high, total = id_stats(ids)
    except (OSError, ValueError):
        raise Unusable("has an ids.int32 that cannot be read") from None
    if low < 0 or high >= n_words:
        raise Unusable(f"has ids outside its {n_words:,} words in ids.int32")
    if total != int(counts @ np.arange(n_words, dtype=np.int64)):
        raise Unusable("has an ids.int32 that does not match its word counts")
    return ids, words, counts, first, starts

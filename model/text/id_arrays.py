"""Passes over large id arrays (memory-mapped id caches) in blocks, without mapping their pages
into this process: iterate, count, check (range and sum), and map through a table."""
from __future__ import annotations

import tempfile
from typing import Iterator

import numpy as np

from model.errors import StoryError

#: Block size (ids) of the passes that rewrite or read an id file.
BLOCK = 1 << 22


def iter_blocks(ids: np.ndarray, start: int = 0, stop: int | None = None, block: int = BLOCK) -> Iterator[np.ndarray]:
    """Blocks of ``ids[start:stop]``. A memory-mapped array is read with plain I/O, so a pass
    over a huge id file does not make its pages part of this process's memory."""
    stop = len(ids) if stop is None else stop
    if stop <= start:
        return
    base = _memmap_origin(ids)
    if base is None:
        for off in range(start, stop, block):
            yield np.asarray(ids[off : min(stop, off + block)])
        return
    filename, offset = base
    with open(filename, "rb") as fh:
        for off in range(start, stop, block):
            n = min(stop, off + block) - off
            fh.seek(offset + 4 * off)
            yield np.fromfile(fh, np.int32, n)


#: Mapped id arrays longer than this are written to a temporary memory-mapped file.
SPILL_MIN_IDS = 1 << 24


def count_ids(ids: np.ndarray, n_words: int) -> np.ndarray:
    """(n_words,) int64: how often each id occurs in ``ids`` (read block by block)."""
    counts = np.zeros(n_words, np.int64)
    for block in iter_blocks(ids):
        counts += np.bincount(block, minlength=n_words)[:n_words]
    return counts


def id_stats(ids: np.ndarray) -> tuple[int, int, int]:
    """(smallest id, largest id, sum of the ids) in one pass of blocks: what verifying an id
    cache needs to know about ``ids.int32`` without hashing or mapping it."""
    low, high, total = np.iinfo(np.int32).max, np.iinfo(np.int32).min, 0
    for block in iter_blocks(ids):
        if len(block):
            low, high = min(low, int(block.min())), max(high, int(block.max()))
            total += int(block.sum(dtype=np.int64))
    return low, high, total


def map_ids(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[ids]`` without the entries that map to -1, as int32.

    A result of more than :data:`SPILL_MIN_IDS` ids is written block by block to an unlinked
    temporary file in the id cache and returned memory-mapped, so mapping a corpus of
    gigabytes to model ids needs no second copy in memory."""
    table = np.asarray(table, dtype=np.int32)
    if len(ids) <= SPILL_MIN_IDS:
        out = table[np.asarray(ids)]
        return out[out >= 0] if (out < 0).any() else out
    from model.home import home

    root = home() / "ids"  # beside the id cache
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = tempfile.TemporaryFile(dir=root, prefix=".model-ids-")
    except OSError as e:
        raise StoryError(f"cannot write to the id cache {root}: {e.strerror or e}; set STORY_REPL_HOME to a directory you can write to") from None
    with fh:
        n = 0
        try:
            for block in iter_blocks(ids):
                mapped = table[block]
                if (mapped < 0).any():
                    mapped = mapped[mapped >= 0]
                fh.write(mapped.tobytes())
                n += len(mapped)
            fh.flush()
        except OSError as e:
            raise StoryError(f"cannot write to the id cache {root}: {e.strerror or e}; free some disk space") from None
        if n == 0:
            return np.zeros(0, np.int32)
        return np.memmap(fh, dtype=np.int32, mode="r", shape=(n,))


def _memmap_origin(ids: np.ndarray) -> tuple[str, int] | None:
    """(file name, byte offset of ids[0]) for a contiguous int32 view of an np.memmap."""
    if not isinstance(ids, np.memmap) or ids.dtype != np.int32 or not ids.flags.c_contiguous or ids.size == 0:
        return None
    mm, filename = getattr(ids, "_mmap", None), getattr(ids, "filename", None)
    if mm is None or not filename:
        return None
    import mmap

    try:
        mapped = np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
    except (TypeError, ValueError):
        return None
    here = ids.__array_interface__["data"][0]
    offset = int(ids.offset)
    return str(filename), offset - offset % mmap.ALLOCATIONGRANULARITY + (here - mapped)



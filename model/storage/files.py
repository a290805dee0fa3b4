"""Durable file primitives shared by the bundle, the id cache and the evaluation caches:
a file's sha256, syncing a file or a directory, replacing a file atomically, and swapping two
directories atomically."""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
from pathlib import Path

from model.errors import StoryError

BLOCK = 1 << 22  # bytes read at a time when hashing a file
_RENAME_EXCHANGE = 2


def file_digest(path: Path) -> str:
    """Hex sha256 of the file, read in blocks; read errors are one-line StoryErrors."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while True:
                block = fh.read(BLOCK)
                if not block:
                    break
                h.update(block)
    except PermissionError:
        raise StoryError(f"cannot read {path}: permission denied; check its permissions or copy it somewhere readable") from None
    except OSError as e:
        raise StoryError(f"cannot read {path}: {e.strerror or e}; check that the file is there and readable") from None
    return h.hexdigest()


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk before returning."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_file(path: Path) -> None:
    """Flush a file already written (by another writer, e.g. a library) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable; file systems that cannot
    sync a directory are left as they are."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` so that readers, and a crash, see the old file or the new
    one, never a part: a synced temporary sibling, one rename, then the directory synced."""
    path = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else data
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        write_synced(tmp, raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def exchange_dirs(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2). False where unsupported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE)
    return rc == 0

"""Reading files that may be hostile: a model directory someone sent, a damaged cache.

Every reader here opens regular files only (a named pipe would block forever), refuses
symbolic links inside a model directory (they could point anywhere), bounds what it reads,
and turns every failure into one :class:`StoryError` line naming the file and the problem.
Arrays are read from their headers first, so a declared shape never allocates more than the
file holds, and no pickled object is ever loaded.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import stat
import tokenize  # numpy reads a damaged array header with it, and lets its errors through
import unicodedata
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from model.errors import StoryError

MAX_JSON_BYTES = 256 * 2**20  # a vocabulary of millions of words still fits
MAX_JSON_DEPTH = 64


def visible(text: object) -> str:
    """``text`` with its control and format characters written out (``\\x1b``, ``\\u202e``), so a
    string from a file can never move the cursor, retitle the terminal or reorder what is shown."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() or ch == " " else _escaped(ch) for ch in s)


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control or format character (which no token ever has)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def read_regular(path: Path, max_bytes: int, missing_ok: bool = False) -> bytes | None:
    """The bytes of the regular file ``path``. A pipe, device, directory or symbolic link is
    refused with one line; a missing file is None when ``missing_ok``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise StoryError(f"{visible(path)} is missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise StoryError(f"{visible(path)} is a symbolic link; a model directory holds plain files only") from None
        raise StoryError(f"cannot read {visible(path)}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoryError(f"{visible(path)} is not a regular file ({_kind(st.st_mode)}); a model directory holds plain files only")
        if st.st_size > max_bytes:
            raise StoryError(f"{visible(path)} is {st.st_size:,} bytes, more than a file of its kind can be ({max_bytes:,})")
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1  # the file object closes it now
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise StoryError(f"cannot read {visible(path)}: {e.strerror or e}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise StoryError(f"{visible(path)} grew past {max_bytes:,} bytes while it was read")
    return data


def check_plain(path: Path) -> bool:
    """Whether ``path`` exists, as a regular file; a link, pipe, device or directory there is
    refused with one line (without opening it: a named pipe would block)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StoryError(f"cannot read {visible(path)}: {e.strerror or e}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StoryError(f"{visible(path)} is a symbolic link; a model directory holds plain files only")
    if not stat.S_ISREG(st.st_mode):
        raise StoryError(f"{visible(path)} is not a regular file ({_kind(st.st_mode)}); a model directory holds plain files only")
    return True


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a plain file"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(data: bytes, path: Path) -> Any:
    """JSON from a file: UTF-8 (a BOM tolerated), no NaN or Infinity, nesting bounded."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise StoryError(f"{visible(path)} is not UTF-8 text (byte {e.start}); restore it or retrain the model") from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise StoryError(f"{visible(path)} nests deeper than {MAX_JSON_DEPTH} levels; it is not a story-repl file")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise StoryError(f"{visible(path)} is not valid JSON ({visible(detail)}); restore it or retrain the model") from None


def _depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES, missing_ok: bool = False) -> Any:
    data = read_regular(path, max_bytes, missing_ok=missing_ok)
    return None if data is None else parse_json(data, path)


# ---- arrays -------------------------------------------------------------------------------
def read_npz(data: bytes, path: Path, kinds: str = "fiu") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, each checked from its header before it is read: a dtype
    of one of ``kinds`` (numpy kind letters), and a declared size the file really holds."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, NotImplementedError):  # NotImplementedError: an unknown zip version
        raise StoryError(f"{visible(path)} is truncated or corrupt (not an array file); restore it or retrain the model") from None
    out: dict[str, np.ndarray] = {}
    with z:
        for member in z.infolist():
            if member.compress_type != zipfile.ZIP_STORED:  # a few bytes could unpack to gigabytes
                raise StoryError(f"{visible(path)}: array {visible(member.filename)!r} is compressed; a story-repl file stores plain arrays")
            name = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
            out[name] = _read_member(z, member, path, name, kinds)
    return out


def _read_member(z: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path, name: str, kinds: str) -> np.ndarray:
    where = f"{visible(path)}: array {visible(name)!r}"
    try:
        with z.open(member) as fh:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(fh)
            if dtype.hasobject:
                raise StoryError(f"{where} holds pickled Python objects, which could run code; refusing to load it (a story-repl file has only plain arrays)")
            if dtype.kind not in kinds:
                raise StoryError(f"{where} has type {dtype}, which a story-repl model never holds; restore it or retrain the model")
            count = math.prod(shape)
            body = member.file_size - fh.tell()
            if count * dtype.itemsize != body:
                raise StoryError(f"{where} declares shape {shape} but the file holds {body:,} bytes of it; restore it or retrain the model")
            raw = fh.read(body)
    except StoryError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, KeyError, SyntaxError, tokenize.TokenError,
            RuntimeError) as e:  # RuntimeError: a member marked encrypted
        raise StoryError(f"{where} is truncated or corrupt ({type(e).__name__}); restore it or retrain the model") from None
    if len(raw) != body:
        raise StoryError(f"{where} is truncated; restore it or retrain the model")
    arr = np.frombuffer(raw, dtype=dtype)
    return (arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)).copy()


def check_finite(arrays: Iterable[tuple[str, np.ndarray]], path: Path) -> None:
    """Every float array finite."""
    for name, a in arrays:
        if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
            bad = a[~np.isfinite(a)].ravel()[0]
            raise StoryError(f"{visible(path)}: array {visible(name)!r} holds {bad} where a finite number is needed; restore it or retrain the model")


def number(value: Any, where: str, lo: float = -math.inf, hi: float = math.inf, integer: bool = False) -> float:
    """A finite number from a parsed file, within [lo, hi]; one line naming ``where`` otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, int) or float(value).is_integer()
    if not ok or not math.isfinite(value) or not lo <= value <= hi:
        kind = "a whole number" if integer else "a number"
        span = "" if (lo, hi) == (-math.inf, math.inf) else f" from {lo:g} to {hi:g}"
        raise StoryError(f"{where} is {visible(repr(value))[:60]}; expected {kind}{span}")
    return int(value) if integer else float(value)

"""Tokenizer worker processes: large texts are scanned in parallel, one piece per worker at a time."""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np

from model.errors import StoryError
from model.text.scanner import Piece, Scanner

# A worker is ``python -m model.text.id_workers --worker``: it reads pieces from stdin and writes scanned
# pieces to stdout, one framed message each (a header of lengths, then UTF-8 and raw arrays).
# Plain subprocesses, in their own session: they import nothing of the caller's program, a
# Ctrl-C at the terminal does not reach them, and they end when their stdin closes.

_HEADER = struct.Struct("<4q")  # a flag, or a count of words (-1: an error); then three byte lengths


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def _worker_main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    scanner: Scanner | None = None  # one per file: a pool reads one file
    while True:
        try:
            keep_case, n, _, _ = _HEADER.unpack(_read_exact(inp, _HEADER.size))
            data = _read_exact(inp, n)
        except EOFError:
            return
        try:
            if scanner is None or scanner.keep_case != bool(keep_case):
                scanner = Scanner(bool(keep_case))
            piece = scanner.scan(data)
            words = "\n".join(piece.words).encode("utf-8", "surrogatepass")
            ids = memoryview(np.ascontiguousarray(piece.ids, "<i4")).cast("B")  # written without a copy
            breaks = piece.breaks.astype("<i8").tobytes()
            out.write(_HEADER.pack(len(piece.words), len(words), len(ids), len(breaks)) + words)
            out.write(ids)
            out.write(breaks)
        except Exception as e:  # noqa: BLE001 - reported by the parent as one line
            msg = f"{type(e).__name__}: {e}".encode("utf-8", "replace")
            out.write(_HEADER.pack(-1, len(msg), 0, 0) + msg)
        out.flush()
        del data


class Workers:
    """N worker processes, each with at most one piece in flight; results come back in the
    order the pieces were sent (round robin)."""

    def __init__(self, n: int) -> None:
        import subprocess

        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.procs = []
        try:
            for _ in range(n):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "model.text.id_workers", "--worker"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        env=env,
                        start_new_session=True,
                    )
                )
        except OSError as e:
            self.close()
            raise StoryError(f"cannot start a tokenizer process: {e.strerror or e}") from None

    def send(self, k: int, text: str, keep_case: bool) -> None:
        data = text.encode("utf-8", "surrogatepass")
        proc = self.procs[k]
        try:
            proc.stdin.write(_HEADER.pack(int(keep_case), len(data), 0, 0))
            proc.stdin.write(data)
            proc.stdin.flush()
        except OSError:
            raise StoryError(self._died(k)) from None

    def receive(self, k: int) -> Piece:
        proc = self.procs[k]
        try:
            n_words, a, b, c = _HEADER.unpack(_read_exact(proc.stdout, _HEADER.size))
            body = _read_exact(proc.stdout, a + b + c)
        except (EOFError, OSError):
            raise StoryError(self._died(k)) from None
        if n_words < 0:
            raise StoryError(f"tokenizing failed in a worker process: {body.decode('utf-8', 'replace')}")
        words = body[:a].decode("utf-8", "surrogatepass").split("\n") if n_words else []
        ids = np.frombuffer(body, "<i4", b // 4, a).astype(np.int32, copy=False)
        breaks = np.frombuffer(body, "<i8", c // 8, a + b).astype(np.int64, copy=False)
        return Piece(words, ids, breaks)

    def _died(self, k: int) -> str:
        code = self.procs[k].poll()
        how = "was killed" if code is not None and code < 0 else f"exited with status {code}" if code is not None else "stopped answering"
        return f"a tokenizer worker process {how} (out of memory?); try again, or free some memory"

    def close(self) -> None:
        for proc in self.procs:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - a stuck worker is killed
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


if __name__ == "__main__":  # a tokenizer worker process (see Workers)
    if sys.argv[1:] == ["--worker"]:
        _worker_main()

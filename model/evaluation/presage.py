"""Presage, the predictive text engine packaged in Debian, as a :class:`model.prediction.menu.Source`.

It is trained on the model's training text with ``text2ngram`` and queried through
``presage_bridge.cc``, a small C++ program against ``libpresage`` compiled with g++ under
``$STORY_REPL_HOME/presage`` on first use, so that the keystroke typist
(:mod:`model.evaluation.keystrokes`) reads Presage's words through the same Menu as the model's.
"""
from __future__ import annotations

import hashlib
import os
import select
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Sequence

from model.errors import StoryError
from model.storage.files import atomic_write

PRESAGE_DELTAS = "0.01 0.1 0.89"
PRESAGE_PARTIAL = 60  # Presage's default MAX_PARTIAL_PREDICTION_SIZE: candidates its predictor weighs

BRIDGE_SOURCE = Path(__file__).with_name("presage_bridge.cc")  # shipped as package data (pyproject.toml)


def presage_missing() -> str | None:
    """Why Presage cannot run here (None when it can)."""
    for tool in ("text2ngram", "g++"):
        if shutil.which(tool) is None:
            return f"Presage is not available: {tool} was not found (install the presage and libpresage-dev packages and g++)"
    if not any(Path(d, "presage.h").is_file() for d in ("/usr/include", "/usr/local/include")):
        return "Presage is not available: presage.h was not found (install libpresage-dev)"
    return None


def presage_dir() -> Path:
    from model.home import home

    return home() / "presage"


def bridge_path(workdir: Path) -> Path:
    """Where the compiled bridge of the shipped source lives (keyed by the source's sha256)."""
    return workdir / f"presage_bridge-{hashlib.sha256(BRIDGE_SOURCE.read_bytes()).hexdigest()[:12]}"


def compile_bridge(exe: Path) -> None:
    """Compile ``presage_bridge.cc`` with g++ into ``exe`` (a temporary name, then one rename)."""
    tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
    cmd = ["g++", "-O2", "-std=c++17", "-o", str(tmp), str(BRIDGE_SOURCE), "-lpresage"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise StoryError(f"Presage is not available: g++ cannot be run ({e.strerror or e}); install g++") from None
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (out.stderr.strip().splitlines() or ["no output"])[0][:200]
        raise StoryError(f"Presage is not available: compiling {BRIDGE_SOURCE.name} failed ({first})")
    os.replace(tmp, exe)


def build_bridge(workdir: Path | None = None, rebuild: bool = False) -> Path:
    """The compiled bridge program: compiled with g++ on first use, or again when ``rebuild``
    (a bridge that failed to start is thrown away and compiled once more)."""
    why = presage_missing()
    if why:
        raise StoryError(why)
    workdir = workdir or presage_dir()
    exe = bridge_path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        if rebuild or os.path.lexists(exe) and not (exe.is_file() and os.access(exe, os.X_OK)):
            if exe.is_dir() and not exe.is_symlink():
                shutil.rmtree(exe)
            else:
                exe.unlink(missing_ok=True)
    except OSError as e:
        raise StoryError(f"Presage is not available: cannot write {exe}: {e.strerror or e}; set STORY_REPL_HOME to a directory you can write to") from None
    if not os.path.lexists(exe):
        compile_bridge(exe)
    return exe


def build_database(train_tokens: Sequence[str], workdir: Path, order: int = 3) -> Path:
    """A Presage n-gram database of ``train_tokens`` (written as text, one line per 20 tokens)."""
    text = "\n".join(" ".join(train_tokens[i : i + 20]) for i in range(0, len(train_tokens), 20)) + "\n"
    digest = hashlib.sha256(f"{order}\0{text}".encode("utf-8")).hexdigest()[:16]
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"ngram-{digest}.db"
    if db.is_file():
        return db
    tmp = workdir / f"ngram-{digest}.tmp{os.getpid()}"
    txt = tmp.with_suffix(".txt")
    txt.write_text(text, encoding="utf-8")
    try:
        for n in range(1, order + 1):
            out = subprocess.run(
                ["text2ngram", "-n", str(n), "-l", "-f", "sqlite", "-o", str(tmp), str(txt)],
                capture_output=True, text=True, check=False,
            )
            if out.returncode != 0:
                raise StoryError(f"Presage is not available: text2ngram failed ({(out.stderr.strip() or 'no output')[:200]})")
        os.replace(tmp, db)
    finally:
        txt.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return db


PRESAGE_XML = """<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<Presage>
  <PredictorRegistry><LOGGER>ERROR</LOGGER><PREDICTORS>TrainingTextNgramPredictor</PREDICTORS></PredictorRegistry>
  <ContextTracker>
    <LOGGER>ERROR</LOGGER><SLIDING_WINDOW_SIZE>80</SLIDING_WINDOW_SIZE>
    <LOWERCASE_MODE>yes</LOWERCASE_MODE><ONLINE_LEARNING>no</ONLINE_LEARNING>
  </ContextTracker>
  <Selector>
    <LOGGER>ERROR</LOGGER><SUGGESTIONS>{suggestions}</SUGGESTIONS>
    <REPEAT_SUGGESTIONS>yes</REPEAT_SUGGESTIONS><GREEDY_SUGGESTION_THRESHOLD>0</GREEDY_SUGGESTION_THRESHOLD>
  </Selector>
  <PredictorActivator>
    <LOGGER>ERROR</LOGGER><PREDICT_TIME>10000</PREDICT_TIME>
    <MAX_PARTIAL_PREDICTION_SIZE>{partial}</MAX_PARTIAL_PREDICTION_SIZE><COMBINATION_POLICY>Meritocracy</COMBINATION_POLICY>
  </PredictorActivator>
  <ProfileManager><LOGGER>ERROR</LOGGER><AUTOPERSIST>false</AUTOPERSIST></ProfileManager>
  <Predictors>
    <TrainingTextNgramPredictor>
      <PREDICTOR>SmoothedNgramPredictor</PREDICTOR><LOGGER>ERROR</LOGGER>
      <DBFILENAME>{db}</DBFILENAME><DELTAS>{deltas}</DELTAS><LEARN>false</LEARN>
      <DatabaseConnector><LOGGER>ERROR</LOGGER></DatabaseConnector>
    </TrainingTextNgramPredictor>
  </Predictors>
</Presage>
"""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


#: Seconds the bridge may take to answer its first query (Presage opens its database then).
START_TIMEOUT = 120.0


class BridgeFailed(Exception):
    """Why the bridge program did not start and answer; ``presage`` when Presage itself said why."""

    def __init__(self, reason: str, presage: bool = False) -> None:
        super().__init__(reason)
        self.presage = presage


def parse_answer(line: str) -> list[tuple[str, float]] | None:
    """The bridge's answer line as (word, probability) pairs, or None when it is not one."""
    line = line.rstrip("\n")
    parts = line.split("\t") if line else []
    if len(parts) % 2:
        return None
    try:
        return [(parts[i], float(parts[i + 1])) for i in range(0, len(parts), 2)]
    except ValueError:
        return None


def launch_bridge(exe: Path, config: Path, timeout: float = START_TIMEOUT) -> subprocess.Popen:
    """Start the bridge and check that it answers one query (an empty buffer); BridgeFailed if not."""
    try:
        proc = subprocess.Popen(
            [str(exe), str(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
    except OSError as e:  # not a program (Exec format error), not executable, missing
        raise BridgeFailed(f"cannot be run ({e.strerror or e})") from None
    try:
        proc.stdin.write("1\t\n")
        proc.stdin.flush()
        line = proc.stdout.readline() if select.select([proc.stdout], [], [], timeout)[0] else None
    except OSError:  # BrokenPipeError: it exited before reading
        line = ""
    if line and (line.startswith("!") or parse_answer(line) is not None):
        return proc
    if line is None:
        stop_bridge(proc)
        raise BridgeFailed(f"did not answer within {timeout:g} s")
    ended = _ended(proc)
    if line:
        raise BridgeFailed(f"answered {line.strip()[:60]!r}, which is not a list of predictions ({ended})")
    raise BridgeFailed(f"exited at once ({ended})", presage=ended.split(": ", 1)[-1].startswith("presage: "))


def stop_bridge(proc: subprocess.Popen) -> None:
    """End the bridge: close its input and wait, killing it if it does not exit."""
    try:
        proc.stdin.close()
    except OSError:  # its end of the pipe is gone already
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ended(proc: subprocess.Popen) -> str:
    """How the bridge ended, for a message: its exit status and the first line it wrote on stderr."""
    if proc.poll() is None:
        proc.kill()
    status = proc.wait()
    try:
        err = (proc.stderr.read(4000).strip().splitlines() or [""])[0][:200]
    except (OSError, ValueError):
        err = ""
    return f"exit status {status}" + (f": {err}" if err else "")


class PresageSource:
    """A :class:`model.prediction.menu.Source` over Presage: the bridge program asked for every buffer.

    ``split`` uses the model's tokenizer (``splitter``: an object with ``split_prefix``), so
    the word positions and prefixes are the REPL's; Presage is given the buffer itself and
    its predictions that start with the prefix are the candidates, in Presage's order.
    Answers are cached per buffer.
    """

    def __init__(self, train_tokens: Sequence[str], splitter: Any, suggestions: int, workdir: Path | None = None):
        workdir = workdir or presage_dir()
        exe = build_bridge(workdir)
        db = build_database(train_tokens, workdir)
        self.suggestions = int(suggestions)
        xml = PRESAGE_XML.format(suggestions=self.suggestions, partial=max(PRESAGE_PARTIAL, self.suggestions), db=db, deltas=PRESAGE_DELTAS)
        self.config = workdir / f"presage-{hashlib.sha256(xml.encode()).hexdigest()[:12]}.xml"
        if not self.config.is_file():
            atomic_write(self.config, xml)
        self.splitter = splitter
        self.proc = self._start(exe, workdir)
        self._cache: dict[str, list[tuple[str, float]]] = {}
        self._lock = threading.Lock()
        self.queries = 0

    def _start(self, exe: Path, workdir: Path) -> subprocess.Popen:
        """The bridge process, answering a first query; a bridge that fails is compiled again
        once, and if that fails too the StoryError says why (the evaluation goes on without it)."""
        try:
            return launch_bridge(exe, self.config)
        except BridgeFailed as e:
            if e.presage:  # the bridge runs; Presage itself refused the configuration
                raise StoryError(f"Presage is not available: the bridge {exe} {e}; check the presage package") from None
            before = str(e)
        try:
            exe = build_bridge(workdir, rebuild=True)
        except StoryError as e:
            raise StoryError(f"{e}, compiling again the bridge that {before}") from None
        try:
            return launch_bridge(exe, self.config)
        except BridgeFailed as e:
            raise StoryError(
                f"Presage is not available: the bridge {exe} {e} even after it was compiled again "
                f"(the first one {before}); check the presage and libpresage-dev packages"
            ) from None

    def close(self) -> None:
        stop_bridge(self.proc)

    def __enter__(self) -> "PresageSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def predict(self, text: str) -> list[tuple[str, float]]:
        """Presage's predictions for the buffer ``text``, most likely first."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                return hit
            try:
                self.proc.stdin.write(f"{self.suggestions}\t{_escape(text)}\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except (OSError, ValueError):  # the pipe is broken or closed: the bridge is gone
                line = ""
            if not line:
                raise StoryError(f"Presage stopped answering ({_ended(self.proc)})")
            self.queries += 1
            if line.startswith("!"):
                raise StoryError(f"Presage failed: {line[1:].strip()[:200]}")
            out = parse_answer(line)
            if out is None:
                raise StoryError(f"Presage's bridge answered {line.strip()[:80]!r}, which is not a list of predictions")
            self._cache[text] = out
            return out

    def split(self, text: str) -> tuple[list[str], str]:
        context, prefix = self.splitter.split_prefix(text)
        return list(context), prefix

    def candidates(self, context: Sequence[str], prefix: str, m: int, text: str) -> list[tuple[str, float]]:
        words = self.predict(text)
        return [(w, p) for w, p in words if w.startswith(prefix)][:m]

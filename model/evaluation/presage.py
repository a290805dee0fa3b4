"""Presage, the predictive text engine packaged in Debian, as a :class:`model.prediction.menu.Source`.

It is trained on the model's training text with ``text2ngram -n 1/2/3 -l -f sqlite`` and
queried through a small C++ program against ``libpresage`` (``presage_bridge.cc``, shipped
beside this module and compiled with g++ into the model cache on first use). The program is
used rather than ``presage_simulator`` because the simulator counts keys its own way (one key
per suggestion taken, its own menu); through the library the keystroke typist
(:mod:`model.evaluation.keystrokes`) reads Presage's words through the same Menu as the
model's. ``presage.xml`` enables only the smoothed trigram predictor over that database
(deltas 0.01 0.1 0.89 and 60 candidates weighed per prediction, Presage's defaults), with
online learning off and repeated suggestions allowed (the Menu applies the no-repeat rule for
every predictor alike).
"""
from __future__ import annotations

import hashlib
import os
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
    from model.storage import store

    return store.home() / "presage"


def build_bridge(workdir: Path | None = None) -> Path:
    """The compiled bridge program (compiled with g++ on first use; keyed by its source)."""
    why = presage_missing()
    if why:
        raise StoryError(why)
    source = BRIDGE_SOURCE.read_bytes()
    workdir = workdir or presage_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    exe = workdir / f"presage_bridge-{hashlib.sha256(source).hexdigest()[:12]}"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
    cmd = ["g++", "-O2", "-std=c++17", "-o", str(tmp), str(BRIDGE_SOURCE), "-lpresage"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (out.stderr.strip().splitlines() or ["no output"])[0][:200]
        raise StoryError(f"Presage is not available: compiling {BRIDGE_SOURCE.name} failed ({first})")
    os.replace(tmp, exe)
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
        self.proc = subprocess.Popen(
            [str(exe), str(self.config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", bufsize=1,
        )
        self._cache: dict[str, list[tuple[str, float]]] = {}
        self._lock = threading.Lock()
        self.queries = 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

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
            self.proc.stdin.write(f"{self.suggestions}\t{_escape(text)}\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()[:200].strip()
                raise StoryError(f"Presage stopped answering ({err or 'no message'})")
            self.queries += 1
            line = line.rstrip("\n")
            if line.startswith("!"):
                raise StoryError(f"Presage failed: {line[1:][:200]}")
            parts = line.split("\t") if line else []
            out = [(parts[i], float(parts[i + 1])) for i in range(0, len(parts) - 1, 2)]
            self._cache[text] = out
            return out

    def split(self, text: str) -> tuple[list[str], str]:
        context, prefix = self.splitter.split_prefix(text)
        return list(context), prefix

    def candidates(self, context: Sequence[str], prefix: str, m: int, text: str) -> list[tuple[str, float]]:
        words = self.predict(text)
        return [(w, p) for w, p in words if w.startswith(prefix)][:m]

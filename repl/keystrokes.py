"""Keystroke savings: how many keys a typist saves entering a text through the REPL's completer.

``story-repl eval FILE --keystrokes [--menu 1,3,5,10]`` (or ``--valid``) simulates a typist
entering the text through :class:`repl.completer.Menu`, the object the REPL's menu, its grey
continuation and Alt-1 … Alt-9 use, and reports the *keystroke saving rate*::

    KSR = 1 - keys used / keys without prediction

Keys without prediction are the text's characters plus one space per token (none after a CJK
character): the typist enters each token followed by a space.

The typist
----------
The typist's buffer is what it has entered so far, up to the last ``WINDOW`` to
``WINDOW + LINE`` tokens (every predictor's context here is shorter); the tokens that leave
it are given to the predictor's cache of the user's text (``observe``), as the REPL does with
each line entered, so the cache sees everything typed. Before every
character, the first included, it reads the first N entries of the menu for the buffer, and
for each token it takes the cheapest way to enter it at the REPL's key costs (see
:mod:`repl.completer`): typing it out with its space; or typing ``j`` characters (any ``j``,
0 included) and picking it from the menu, 1 key with Alt-1 … Alt-9, or the Tab/Shift-Tab
presses of prompt_toolkit's menu; or, right after a completed word, accepting the grey
continuation when it is what comes next: → takes all of it (several tokens for 1 key), Alt-F
its next word (1 key). It follows what the REPL shows: a Tab selection opens no menu and no
continuation for the next word, so after one the next menu is read only after the first
character is typed; the empty prompt shows none either. It asks the same :class:`Menu` the
REPL does, in the order the user would (so the memory of passed-over words is the REPL's).

Predictors
----------
* ``model``: the loaded model (any object with :class:`model.prediction.predictor.Predictor`'s interface);
* ``baseline``: interpolated modified Kneser-Ney of order 5 (:class:`KneserNeyPredictor`)
  estimated from the training part of the model's corpus with every word of it kept, whatever
  the model's vocabulary;
* ``presage``: Presage, the predictive text engine packaged in Debian, trained on the same
  training text with ``text2ngram -n 1/2/3 -l -f sqlite`` and queried through a small C++
  program against ``libpresage`` (``repl/presage_bridge.cc``, compiled with g++ into the
  model cache on first use). The program is used rather than ``presage_simulator`` because
  the simulator counts keys its own way (one key per suggestion taken, its own menu);
  through the library the same typist reads Presage's words through the same :class:`Menu`.
  Its ``presage.xml`` enables only the smoothed trigram predictor over that database
  (deltas 0.01 0.1 0.89 and 60 candidates weighed per prediction, Presage's defaults), with
  online learning off, five times the largest menu in suggestions, and repeated suggestions
  allowed (the Menu applies the no-repeat rule for every predictor alike).
  Presage drops punctuation and splits at apostrophes, so those tokens are typed. Without
  g++, ``libpresage-dev`` or ``text2ngram`` the Presage row is ``None`` with the reason.

Feature switches (:class:`Features`) turn direct picks, the continuation and the no-repeat
rule on or off, so the bench can measure each alone against the REPL before they existed.
"""
from __future__ import annotations

import hashlib
import heapq
import os
import shutil
import subprocess
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from model.errors import StoryError
from model.prediction.predictor import split_prefix
from model.text.tokenize import tokenize
from repl.completer import DIRECT_PICKS, Menu, ghost_fill, separator

DEFAULT_MENUS = (1, 3, 5, 10)
MAX_MENU = 50
WINDOW = 64  # tokens of the typist's buffer kept before the word being typed
LINE = 16  # tokens that leave the buffer at a time (a line entered)
BASELINE_ORDER = 5
PRESAGE_DELTAS = "0.01 0.1 0.89"
PRESAGE_PARTIAL = 60  # Presage's default MAX_PARTIAL_PREDICTION_SIZE: candidates its predictor weighs
PREDICTORS = ("model", "baseline", "presage")


@dataclass(frozen=True)
class Features:
    """What the simulated REPL offers: Alt-1 … Alt-9 picks, the grey continuation, the no-repeat rule."""

    direct: bool = True
    ghost: bool = True
    repeat: bool = False  # True: passed-over words are shown again (the no-repeat rule off)
    backward: bool = True  # False: entries are reached with Tab presses only (entry r costs r)
    name: str = "repl"


NOW = Features(name="repl")
BEFORE = Features(direct=False, ghost=False, repeat=True, name="before")
TAB_ONLY = Features(direct=False, ghost=False, repeat=True, backward=False, name="before, Tab presses only")
ALONE = (
    Features(direct=True, ghost=False, repeat=True, name="direct pick alone"),
    Features(direct=False, ghost=True, repeat=True, name="continuation alone"),
    Features(direct=False, ghost=False, repeat=False, name="no-repeat alone"),
)


# ---- the Kneser-Ney typist's predictor -------------------------------------------------------
class KneserNeyPredictor:
    """:class:`model.prediction.ngram.KneserNey` behind the public interface of :class:`model.prediction.predictor.Predictor`.

    Its vocabulary is every word of ``train_tokens`` (min count 1, no ``<unk>``); a word the
    training text never had breaks the context (:meth:`encode`), as in the mixture's n-gram.
    """

    CACHE_SIZE = 8192

    def __init__(self, train_tokens: Sequence[str], order: int = BASELINE_ORDER, keep_case: bool = False):
        from model.prediction.ngram import KneserNey
        from model.text.vocab import Vocab

        if not train_tokens:
            raise StoryError("the training text has no words; cannot estimate the Kneser-Ney baseline")
        self.vocab = Vocab.build(list(train_tokens), min_count=1)
        self.order = int(order)
        self.context = max(self.order - 1, 0)
        self.keep_case = bool(keep_case)
        self.kn = KneserNey(self.order, vocab_size=len(self.vocab)).fit(self.vocab.encode(train_tokens))
        self._cache: OrderedDict[tuple[int, ...], tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, keep_case=self.keep_case)

    def encode(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        """Ids of ``tokens``, and the words the training text never had. Such a word becomes
        the id ``len(vocab)``, which no n-gram context holds, so the context breaks there and
        the model backs off, as the mixture's n-gram does at a word it never saw (and as
        ``eval`` scores it), rather than bridging over the word."""
        index, gap = self.vocab.index, len(self.vocab)
        ids = [index.get(t, gap) for t in tokens]
        return ids, [t for t, i in zip(tokens, ids) if i == gap]

    def split_prefix(self, text: str) -> tuple[list[str], str]:
        return split_prefix(self.tokenize(text), text)

    def _key(self, ids: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(i) for i in list(ids)[len(ids) - self.context :]) if self.context else ()

    def distribution(self, ids: Sequence[int]) -> np.ndarray:
        return self.ranking(ids)[0]

    def ranking(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        key = self._key(ids)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        probs = self.kn.distribution(list(key))
        entry = (probs, np.argsort(-probs, kind="stable"))
        with self._lock:
            self._cache[key] = entry
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return entry

    def top_k(self, ids: Sequence[int], k: int, prefix: str = "") -> list[tuple[str, float]]:
        probs, order = self.ranking(ids)
        tokens = self.vocab.tokens
        chosen = [i for i in order if tokens[i].startswith(prefix)][:k] if prefix else order[:k]
        return [(tokens[int(i)], float(probs[int(i)])) for i in chosen]


# ---- Presage ----------------------------------------------------------------------------------
BRIDGE_SOURCE = Path(__file__).with_name("presage_bridge.cc")


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
    """A :class:`repl.completer.Source` over Presage: the bridge program asked for every buffer.

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
            tmp = self.config.with_name(self.config.name + f".tmp{os.getpid()}")
            tmp.write_text(xml, encoding="utf-8")
            os.replace(tmp, self.config)
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


# ---- the typist --------------------------------------------------------------------------------
def fork(predictor: Any) -> Any:
    """A predictor of its own for one typist: the same model with an empty cache of the user's
    text, when the predictor has one (``observe``); else ``predictor`` itself."""
    mixture = getattr(predictor, "mixture", None)
    if not callable(getattr(predictor, "observe", None)) or not callable(getattr(mixture, "fresh", None)):
        return predictor
    cls = type(predictor)
    if getattr(predictor, "bundle", None) is None:
        return cls.from_mixture(mixture.fresh(), predictor.config)
    return cls(predictor.bundle, mixture=mixture.fresh())


@dataclass
class Typist:
    """One simulated typist: a menu size, the REPL's features, and the running count of keys.

    The buffer is the tokens from ``start`` on; when it holds more than ``window + LINE``
    tokens, the first ``LINE`` leave it and, if the predictor keeps a cache of what the user
    wrote (``observe``), are given to it, as the REPL does with each line entered."""

    menu: Menu
    tokens: Sequence[str]
    n: int
    features: Features
    window: int = WINDOW
    observer: Any = None
    t: int = 0
    start: int = 0
    keys: int = 0
    fresh: bool = False  # is a menu (and continuation) showing for the empty next word?
    moves: dict[str, int] = field(default_factory=lambda: {"typed": 0, "alt": 0, "tab": 0, "ghost_all": 0, "ghost_word": 0})
    latency_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.canon = [w + separator(w) for w in self.tokens]
        self.menu.repeat = self.features.repeat
        self.menu.ghost_enabled = self.features.ghost
        self.menu.direct = self.features.direct
        self.menu.backward = self.features.backward
        self.menu.forget()

    @property
    def done(self) -> bool:
        return self.t >= len(self.tokens)

    def _timed(self, fn, *args):
        t0 = time.perf_counter_ns()
        out = fn(*args)
        self.latency_ms.append((time.perf_counter_ns() - t0) / 1e6)
        return out

    def buffer(self) -> str:
        if self.t - self.start > self.window + LINE:
            if self.observer is not None:
                self.observer.observe(list(self.tokens[self.start : self.start + LINE]))
            self.start += LINE
        return "".join(self.canon[self.start : self.t])

    def step(self) -> None:
        """Enter the next token (or several, through the continuation)."""
        buf = self.buffer()
        if self.features.ghost and self.fresh and buf and self._accept_ghost(buf):
            return
        w = self.tokens[self.t]
        best, best_fresh, how = len(self.canon[self.t]), True, "typed"
        for j in range(len(w) + 1):
            if j >= best:
                break
            if j == 0 and not self.fresh:
                continue
            prefix, entries = self._timed(self.menu.lookup, buf + w[:j], self.n)
            if prefix != w[:j]:
                continue
            for rank, e in enumerate(entries, start=1):
                if e.word == w:
                    alt = self.features.direct and rank <= DIRECT_PICKS
                    cost = j + e.keys
                    if cost < best or (cost == best and alt and not best_fresh):
                        best, best_fresh, how = cost, alt, "alt" if alt else "tab"
                    break
        self.keys += best
        self.moves[how] += 1
        self.fresh = best_fresh
        self.t += 1

    def _accept_ghost(self, buf: str) -> bool:
        ghost = self._timed(self.menu.ghost, buf)
        if not ghost:
            return False
        ends: dict[int, int] = {}
        total = 0
        for i, piece in enumerate(self.canon[self.t : self.t + 2 * self.menu.ghost_words + 2], start=1):
            total += len(piece)
            ends[total] = i
        rest = "".join(self.canon[self.t : self.t + 2 * self.menu.ghost_words + 2])
        for taken, how in ((ghost, "ghost_all"), (ghost_fill(ghost), "ghost_word")):
            if taken and rest.startswith(taken) and len(taken) in ends:
                self.keys += 1
                self.moves[how] += 1
                self.t += ends[len(taken)]
                self.fresh = True
                return True
        return False

    def result(self) -> dict[str, Any]:
        without = sum(len(s) for s in self.canon)
        return {
            "menu": self.n,
            "features": self.features.name,
            "keys": self.keys,
            "keys_without": without,
            "ksr": 1.0 - self.keys / without if without else float("nan"),
            "tokens": len(self.tokens),
            "moves": dict(self.moves),
            "calls": len(self.latency_ms),
        }


def run_typists(typists: Iterable[Typist]) -> None:
    """Run typists to the end, always stepping the one furthest behind, so that typists over the
    same predictor ask for the same contexts close together and the predictor's cache serves them."""
    heap = [(ty.t, i, ty) for i, ty in enumerate(typists)]
    heapq.heapify(heap)
    while heap:
        _, i, ty = heapq.heappop(heap)
        if ty.done:
            continue
        ty.step()
        if not ty.done:
            heapq.heappush(heap, (ty.t, i, ty))


def simulate(
    source: Any, tokens: Sequence[str], menus: Sequence[int] = DEFAULT_MENUS, features: Features = NOW, *, predictor: bool = True
) -> list[Typist]:
    """Typists for each menu size over one predictor (``predictor=False``: ``source`` is a Source).
    Each typist over a predictor with a cache of the user's text gets its own (:func:`fork`)."""
    out = []
    for n in menus:
        if predictor:
            own = fork(source)
            menu = Menu(own)
            observer = own if own is not source else None
        else:
            menu, observer = Menu(source=source), None
        out.append(Typist(menu, list(tokens), int(n), features, observer=observer))
    run_typists(out)
    return out


def check_menus(menus: Iterable[Any]) -> tuple[int, ...]:
    out = []
    for m in menus:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= int(m) <= MAX_MENU:
            raise StoryError(f"--menu expects menu sizes from 1 to {MAX_MENU}, got {m!r}")
        out.append(int(m))
    if not out:
        raise StoryError("--menu expects at least one menu size, e.g. 1,3,5,10")
    return tuple(sorted(set(out)))


def parse_menus(text: str) -> tuple[int, ...]:
    """``"1,3,5,10"`` -> (1, 3, 5, 10), or a one-line StoryError."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise StoryError(f"--menu expects comma-separated menu sizes such as 1,3,5,10, got {text!r}") from None
    return check_menus(values)


def latency_summary(typists: Iterable[Typist]) -> dict[str, float]:
    ts = np.asarray([x for ty in typists for x in ty.latency_ms], dtype=np.float64)
    if ts.size == 0:
        return {"calls": 0}
    return {
        "calls": int(ts.size),
        "mean_ms": round(float(ts.mean()), 4),
        "p50_ms": round(float(np.percentile(ts, 50)), 4),
        "p99_ms": round(float(np.percentile(ts, 99)), 4),
        "max_ms": round(float(ts.max()), 3),
    }


def training_tokens(bundle, encoding: str = "utf-8") -> list[str]:
    """The training part of the model's corpus, as training split it."""
    from repl.texts import split_tokens, training_corpus

    return list(split_tokens(bundle, training_corpus(bundle, encoding))[0])


@dataclass
class Contenders:
    """The predictors one keystroke run compares: name -> (predictor or Source, is a predictor)."""

    runs: dict[str, tuple[Any, bool]]
    presage_note: str | None = None
    presage: PresageSource | None = None

    def close(self) -> None:
        if self.presage is not None:
            self.presage.close()

    def __enter__(self) -> "Contenders":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def contenders(
    bundle: Any,
    predictor: Any,
    which: Sequence[str] = PREDICTORS,
    menus: Sequence[int] = DEFAULT_MENUS,
    train_tokens: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> Contenders:
    """The model, the Kneser-Ney baseline over every training word, and Presage (if it runs here)."""
    runs: dict[str, tuple[Any, bool]] = {"model": (predictor, True)}
    train = None
    if "baseline" in which or "presage" in which:
        train = list(train_tokens) if train_tokens is not None else training_tokens(bundle, encoding)
    if "baseline" in which:
        runs["baseline"] = (KneserNeyPredictor(train, BASELINE_ORDER, keep_case=bool(bundle.config.keep_case)), True)
    out = Contenders(runs)
    if "presage" in which:
        out.presage_note = presage_missing()
        if out.presage_note is None:
            try:
                out.presage = PresageSource(train, predictor, suggestions=5 * max(menus))
                runs["presage"] = (out.presage, False)
                out.presage_note = "Presage smoothed trigram through libpresage (repl/presage_bridge.cc)"
            except StoryError as e:
                out.presage_note = str(e)
    return out


def run(found: Contenders, tokens: Sequence[str], menus: Sequence[int] = DEFAULT_MENUS, features: Features = NOW) -> dict[str, Any]:
    """KSR by menu size for every contender, the same typist for each."""
    menus = check_menus(menus)
    tokens = list(tokens)
    if not tokens:
        raise StoryError("the text has no words to type")
    out: dict[str, Any] = {"menus": list(menus), "features": features.name, "tokens": len(tokens)}
    out.update({name: None for name in PREDICTORS})
    out["presage_note"] = found.presage_note
    details: dict[str, Any] = {}
    latency: dict[str, Any] = {}
    for name, (src, is_pred) in found.runs.items():
        typists = simulate(src, tokens, menus, features, predictor=is_pred)
        out[name] = {str(ty.n): ty.result()["ksr"] for ty in typists}
        details[name] = [ty.result() for ty in typists]
        latency[name] = latency_summary(typists)
        out["keys_without"] = typists[0].result()["keys_without"]
    out["details"] = details
    out["latency"] = latency
    return out


def keystrokes(
    bundle: Any,
    tokens: Sequence[str],
    menus: Sequence[int] = DEFAULT_MENUS,
    *,
    predictor: Any = None,
    features: Features = NOW,
    which: Sequence[str] = PREDICTORS,
    encoding: str = "utf-8",
    train_tokens: Sequence[str] | None = None,
) -> dict[str, Any]:
    """KSR of the model, the Kneser-Ney baseline and Presage on ``tokens`` (see the module docstring).

    Returns ``{"menus", "model": {"1": ksr, ...}, "baseline": {...}, "presage": {...} | None,
    "presage_note", "keys_without", "tokens", "features", "details", "latency"}``.
    """
    from model.prediction.predictor import Predictor

    menus = check_menus(menus)
    if not list(tokens):
        raise StoryError("the text has no words to type")
    pred = predictor if predictor is not None else Predictor(bundle)
    with contenders(bundle, pred, which, menus, train_tokens, encoding) as found:
        return run(found, tokens, menus, features)


def with_features(features: Features, **kw: Any) -> Features:
    return replace(features, **kw)


def from_args(bundle: Any, tokens: Sequence[str], args: Any, predictor: Any = None, source: str = "") -> dict[str, Any]:
    """``eval --keystrokes [--menu 1,3,5,10] [--limit N]`` on ``tokens`` (the text eval scores)."""
    menus = parse_menus(getattr(args, "menu", None) or ",".join(map(str, DEFAULT_MENUS)))
    limit = getattr(args, "limit", None)
    if limit is not None:
        if limit < 1:
            raise StoryError(f"--limit expects a positive number of tokens, got {limit}")
        tokens = list(tokens)[:limit]
    out = keystrokes(bundle, tokens, menus, predictor=predictor, encoding=getattr(args, "encoding", None) or "utf-8")
    if source:
        out["source"] = source + (f", first {len(tokens):,} tokens" if limit is not None else "")
    return out


REPL_LIMIT = 3000  # tokens :eval --keystrokes types (the REPL waits for it)


def repl_keystrokes(session: Any, bundle: Any, predictor: Any, tokens: Sequence[str], source: str):
    """``:eval --keystrokes [FILE]``: the keystroke table for the first ``REPL_LIMIT`` tokens."""
    from repl.render import notice

    tokens = list(tokens)
    session.out(notice("simulating a typist over the model, Kneser-Ney and Presage; this takes a minute (Ctrl-C stops it)", "dim"))
    if len(tokens) > REPL_LIMIT:
        session.out(notice(f"typing the first {REPL_LIMIT:,} of {len(tokens):,} tokens (story-repl eval --keystrokes types them all)", "dim"))
        source += f", first {REPL_LIMIT:,} tokens"
        tokens = tokens[:REPL_LIMIT]
    result = keystrokes(bundle, tokens, predictor=predictor)
    result["source"] = source
    return report(result)


# ---- rendering ----------------------------------------------------------------------------------
LABELS = {"model": "model", "baseline": f"Kneser-Ney {BASELINE_ORDER}-gram", "presage": "Presage 3-gram"}


def report(result: dict[str, Any], title: str = ""):
    """A rich table of KSR by menu size for the three predictors, and a small bar chart."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from repl.render import bar

    names = [n for n in PREDICTORS if result.get(n)]
    table = Table(title=title or None, title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("menu", justify="right")
    for n in names:
        table.add_column(LABELS[n], justify="right")
    for m in result["menus"]:
        table.add_row(str(m), *[f"{result[n][str(m)]:.1%}" for n in names])
    chart = Text()
    styles = {"model": "green", "baseline": "cyan", "presage": "magenta"}
    for m in result["menus"]:
        for n in names:
            v = result[n][str(m)]
            chart.append(f"  menu {m:>2} {LABELS[n]:<18}", style="dim")
            chart.append(bar(max(v, 0.0), 30), style=styles[n])
            chart.append(f" {v:.1%}\n")
    parts: list[Any] = []
    if result.get("source"):
        parts.append(Text(f"keystrokes: {result['source']}", style="bold"))
    parts += [table, chart]
    facts = (
        f"KSR = 1 - keys used / keys without prediction; {result['tokens']:,} tokens, "
        f"{result['keys_without']:,} keys without prediction (characters plus a space per token). "
        "Keys: a character 1; Alt-1…9 1; Tab/Shift-Tab per step; → the whole continuation 1; Alt-F a word 1."
    )
    parts.append(Text(facts, style="dim"))
    if result.get("presage") is None and result.get("presage_note"):
        parts.append(Text(f"Presage: {result['presage_note']}", style="yellow"))
    return Group(*parts)

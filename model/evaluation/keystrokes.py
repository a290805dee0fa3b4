"""Keystroke savings: how many keys a typist saves entering a text through the REPL's completer.

``story-repl eval --keystrokes`` runs a simulated typist (:class:`Typist`) that asks the same
:class:`model.prediction.menu.Menu` as the REPL before every character and enters each token the
cheapest way at the REPL's key costs: ``KSR = 1 - keys used / keys without prediction``
(characters plus one space per token, none after a CJK character): the case-folded count;
:mod:`model.evaluation.exact` types the text itself, case and spacing exact. It types with the model, with
an order-5 Kneser-Ney over every training word (:class:`KneserNeyPredictor`) and with Presage
(:mod:`model.evaluation.presage`); :class:`Features` turns the REPL's aids on or off one by one.
"""
from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

import numpy as np

from model.errors import StoryError
from model.evaluation.presage import PresageSource, presage_missing
from model.evaluation.texts import training_tokens
from model.lru import LRU
from model.prediction.menu import DIRECT_PICKS, Menu, ghost_fill, separator
from model.prediction.predictor import split_prefix
from model.text.tokenize import tokenize

DEFAULT_MENUS = (1, 3, 5, 10)
MAX_MENU = 50
WINDOW = 64  # tokens of the typist's buffer kept before the word being typed
LINE = 16  # tokens that leave the buffer at a time (a line entered)
BASELINE_ORDER = 5
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
        self.casing = None  # how its words are written (the model's, for the case-exact typist)
        self.kn = KneserNey(self.order, vocab_size=len(self.vocab)).fit(self.vocab.encode(train_tokens))
        self._cache: LRU[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = LRU(self.CACHE_SIZE)
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
            return hit
        probs = self.kn.distribution(list(key))
        entry = (probs, np.argsort(-probs, kind="stable"))
        with self._lock:
            self._cache.put(key, entry)
        return entry

    def top_k(self, ids: Sequence[int], k: int, prefix: str = "") -> list[tuple[str, float]]:
        probs, order = self.ranking(ids)
        tokens = self.vocab.tokens
        chosen = [i for i in order if tokens[i].startswith(prefix)][:k] if prefix else order[:k]
        return [(tokens[int(i)], float(probs[int(i)])) for i in chosen]


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


def typist_menu(source: Any, predictor: bool = True) -> tuple[Menu, Any, Any]:
    """(the menu a typist reads, the predictor it tells what it typed or None, its predictor or
    None): over its own :func:`fork` of ``source``; ``predictor=False``: ``source`` is a Source."""
    if not predictor:
        return Menu(source=source), None, None
    own = fork(source)
    return Menu(own), (own if own is not source else None), own


def set_up(menu: Menu, features: Features) -> None:
    """The menu as a typist with ``features`` uses it, with nothing remembered yet."""
    menu.repeat = features.repeat
    menu.ghost_enabled = features.ghost
    menu.direct = features.direct
    menu.backward = features.backward
    menu.forget()


def timed(latency_ms: list[float], fn, *args):
    """``fn(*args)``, its wall time appended to ``latency_ms``."""
    t0 = time.perf_counter_ns()
    out = fn(*args)
    latency_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return out


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
        set_up(self.menu, self.features)

    @property
    def done(self) -> bool:
        return self.t >= len(self.tokens)

    def _timed(self, fn, *args):
        return timed(self.latency_ms, fn, *args)

    def buffer(self) -> str:
        if self.t - self.start > self.window + LINE:
            if self.observer is not None:
                self.observer.observe(list(self.tokens[self.start : self.start + LINE]), self.tokens[max(0, self.start - LINE) : self.start])
            self.start += LINE
        return "".join(self.canon[self.start : self.t])

    def step(self) -> None:
        """Enter the next token (or several, through the continuation)."""
        buf = self.buffer()
        if self.features.ghost and self.fresh and self._accept_ghost(buf):  # (an empty buffer is fresh only after a story)
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
        menu, observer, _ = typist_menu(source, predictor)
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
        kn = KneserNeyPredictor(train, BASELINE_ORDER, keep_case=bool(bundle.config.keep_case))
        kn.casing = getattr(predictor, "casing", None)
        runs["baseline"] = (kn, True)
    out = Contenders(runs)
    if "presage" in which:
        out.presage_note = presage_missing()
        if out.presage_note is None:
            try:
                out.presage = PresageSource(train, predictor, suggestions=5 * max(menus))
                out.presage.casing = getattr(predictor, "casing", None)
                runs["presage"] = (out.presage, False)
                out.presage_note = "Presage smoothed trigram through libpresage (model/evaluation/presage_bridge.cc)"
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
        try:
            typists = simulate(src, tokens, menus, features, predictor=is_pred)
        except StoryError as e:
            if src is not found.presage:
                raise
            out["presage_note"] = str(e)  # Presage failed midway: its row says why, the others stand
            continue
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

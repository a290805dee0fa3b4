"""Decoding: how the next word is chosen from a next-word distribution, whatever the predictor.

Everything works over one callback, ``next_distribution(history_ids) -> (V,) probabilities``, and
a ``banned`` mask (``<unk>``). The settings (:class:`Decoding`) apply at every step in llama.cpp's
sampler-chain order: (1) repeat penalty (``p ← p**θ`` for the ids in the window), (2) no-repeat
n-gram, then, when sampling, (3) top-k, top-p and min-p truncation and (4) temperature. Greedy
takes the most likely id after steps 1-2 (the lowest on a tie); beam search keeps the ``beam``
best continuations by summed log-probability. Steps 3-4 are in :mod:`model.prediction.truncation`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np

from model.errors import StoryError
from model.prediction.truncation import draw, draw_from_probs

__all__ = [
    "DEFAULT",
    "DEFAULT_NO_REPEAT_NGRAM",
    "DEFAULT_REPEAT_LAST_N",
    "DEFAULT_REPEAT_PENALTY",
    "DEFAULT_TOP_P",
    "Decoding",
    "DecodingError",
    "NextDistribution",
    "adjusted_logp",
    "adjusted_probs",
    "beam_candidates",
    "beam_search",
    "choose_next",
    "generate_ids",
    "most_likely",
    "ngram_banned",
    "parse_settings",
]

NextDistribution = Callable[[Sequence[int]], np.ndarray]

#: Defaults chosen with bench/generation.py on the book models (figures: bench/README.md,
#: Generation). No repeated 4-gram: greedy decoding otherwise loops, and 3 would also forbid
#: ", and the" twice in a page. Penalty 1.3: runs copied from the training text stay near the
#: held-out text's own, and it never overturns a word the model gives 0.9 or more (that needs
#: a penalty above 21.8). Nucleus 0.9 for sampling.
DEFAULT_REPEAT_PENALTY = 1.3
DEFAULT_REPEAT_LAST_N = 64
DEFAULT_NO_REPEAT_NGRAM = 4
DEFAULT_TOP_P = 0.9

MAX_TEMPERATURE = 100.0
MAX_PENALTY = 100.0
MAX_BEAM = 64
MAX_NGRAM = 1000


class DecodingError(StoryError):
    """A decoding setting out of range; ``field`` names it, ``detail`` says what is wrong."""

    def __init__(self, field: str, detail: str, prefix: str = "--"):
        self.field = field
        self.detail = detail
        super().__init__(f"{prefix}{_FLAG[field]} {detail}")


# The command-line spelling of each setting (the REPL's :decode keys are the same).
_FLAG = {
    "temperature": "temperature",
    "top_k": "top-k",
    "top_p": "top-p",
    "min_p": "min-p",
    "repeat_penalty": "repeat-penalty",
    "repeat_last_n": "repeat-last-n",
    "no_repeat_ngram": "no-repeat-ngram",
    "beam": "beam",
    "greedy": "greedy",
}


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Decoding:
    """Decoding settings; every value is checked when the object is made (DecodingError)."""

    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = DEFAULT_TOP_P  # 1 = off
    min_p: float = 0.0  # 0 = off
    repeat_penalty: float = DEFAULT_REPEAT_PENALTY  # 1 = off
    repeat_last_n: int = DEFAULT_REPEAT_LAST_N  # 0 = off, -1 = whole history
    no_repeat_ngram: int = DEFAULT_NO_REPEAT_NGRAM  # 0 = off
    beam: int = 1  # 1 = no beam search

    def __post_init__(self) -> None:
        t = self.temperature
        if not _finite(t) or not 0 < t <= MAX_TEMPERATURE:
            raise DecodingError("temperature", f"expects a number above 0 (at most {MAX_TEMPERATURE:g}), got {t}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise DecodingError("top_k", f"expects a whole number >= 0 (0 = off), got {self.top_k}")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise DecodingError("top_p", f"expects a number in (0, 1], got {self.top_p}")
        if not _finite(self.min_p) or not 0 <= self.min_p <= 1:
            raise DecodingError("min_p", f"expects a number in [0, 1], got {self.min_p}")
        r = self.repeat_penalty
        if not _finite(r) or not 1 <= r <= MAX_PENALTY:
            raise DecodingError("repeat_penalty", f"expects a number from 1 (off) to {MAX_PENALTY:g}, got {r}")
        if not _is_int(self.repeat_last_n) or self.repeat_last_n < -1:
            raise DecodingError("repeat_last_n", f"expects a whole number >= 0, or -1 for the whole history, got {self.repeat_last_n}")
        if not _is_int(self.no_repeat_ngram) or not (self.no_repeat_ngram == 0 or 1 <= self.no_repeat_ngram <= MAX_NGRAM):
            raise DecodingError("no_repeat_ngram", f"expects a whole number from 1 to {MAX_NGRAM}, or 0 for off, got {self.no_repeat_ngram}")
        if not _is_int(self.beam) or not 1 <= self.beam <= MAX_BEAM:
            raise DecodingError("beam", f"expects a whole number from 1 (off) to {MAX_BEAM}, got {self.beam}")
        if self.beam > 1 and not self.greedy:
            raise DecodingError("beam", "searches for the most likely continuation and cannot be combined with sampling")

    # ---- derived ----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``"beam"``, ``"greedy"`` or ``"sample"``."""
        if self.beam > 1:
            return "beam"
        return "greedy" if self.greedy else "sample"

    @classmethod
    def legacy(cls, greedy: bool = True, temperature: float = 1.0) -> "Decoding":
        """The settings the old ``greedy``/``temperature`` keywords meant, with default repetition controls."""
        if greedy or not temperature or temperature <= 0:
            return cls(greedy=True)
        return cls(greedy=False, temperature=float(temperature))

    def with_(self, **changes: object) -> "Decoding":
        """A copy with some settings changed (checked like a new one)."""
        return replace(self, **changes)

    def short(self) -> str:
        """The settings in a few characters, for the toolbar: ``sample T=0.8 p=0.9 rep=1.1``."""
        if self.mode == "beam":
            parts = [f"beam={self.beam}"]
        elif self.greedy:
            parts = ["greedy"]
        else:
            parts = ["sample", f"T={self.temperature:g}"]
            if self.top_k:
                parts.append(f"k={self.top_k}")
            if self.top_p < 1:
                parts.append(f"p={self.top_p:g}")
            if self.min_p > 0:
                parts.append(f"minp={self.min_p:g}")
        if self.repeat_penalty != 1 and self.repeat_last_n != 0:
            rep = f"rep={self.repeat_penalty:g}"
            if self.repeat_last_n != DEFAULT_REPEAT_LAST_N:
                rep += f"/{'all' if self.repeat_last_n < 0 else self.repeat_last_n}"
            parts.append(rep)
        if self.no_repeat_ngram:
            parts.append(f"nr={self.no_repeat_ngram}")
        return " ".join(parts)

    def label(self) -> str:
        """How a continuation was made, in words: "greedy", "sampled, T=0.8", "beam 4", plus
        the settings changed from that mode's defaults ("greedy (nr off)")."""
        base = {"greedy": "greedy", "beam": f"beam {self.beam}"}.get(self.mode, f"sampled, T={self.temperature:g}")
        usual = set(Decoding(greedy=self.greedy, temperature=self.temperature, beam=self.beam).short().split())
        mine = self.short().split()
        changed = [part for part in mine[1:] if part not in usual]
        keys = {part.split("=")[0] for part in mine}
        changed += [f"{key} off" for key in ("p", "rep", "nr") if key not in keys and any(u.startswith(key + "=") for u in usual)]
        return f"{base} ({' '.join(changed)})" if changed else base

    def to_dict(self) -> dict[str, object]:
        """Every setting plus ``mode``, for ``--json`` output."""
        d: dict[str, object] = {"mode": self.mode}
        d.update(asdict(self))
        del d["greedy"]
        return d


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


#: REPL ``:decode`` keys and their fields (flag spellings, underscores and short forms).
_KEYS = {
    "t": "temperature", "temp": "temperature", "temperature": "temperature",
    "k": "top_k", "top-k": "top_k", "topk": "top_k", "top_k": "top_k",
    "p": "top_p", "top-p": "top_p", "topp": "top_p", "top_p": "top_p",
    "minp": "min_p", "min-p": "min_p", "min_p": "min_p",
    "rep": "repeat_penalty", "repeat-penalty": "repeat_penalty", "repeat_penalty": "repeat_penalty",
    "last-n": "repeat_last_n", "repeat-last-n": "repeat_last_n", "repeat_last_n": "repeat_last_n", "lastn": "repeat_last_n",
    "nr": "no_repeat_ngram", "no-repeat-ngram": "no_repeat_ngram", "no_repeat_ngram": "no_repeat_ngram", "ngram": "no_repeat_ngram",
    "beam": "beam",
}
_INT_FIELDS = {"top_k", "repeat_last_n", "no_repeat_ngram", "beam"}


def parse_settings(text: str, base: Decoding) -> Decoding:
    """``key=value ...`` (e.g. ``T=0.8 p=0.9 rep=1.1``, ``greedy``, ``sample``, ``defaults``) applied to ``base``.

    Raises a one-line StoryError naming the bad key or value (``top-p expects a number in
    (0, 1], got 1.5``).
    """
    changes: dict[str, object] = {}
    for item in text.split():
        word = item.lower()
        if word in ("greedy", "sample"):
            changes["greedy"] = word == "greedy"
            if word == "sample":
                changes.setdefault("beam", 1)
            continue
        if word in ("defaults", "default", "reset"):
            changes = {f: getattr(Decoding(), f) for f in _FLAG if f != "greedy"}
            continue
        if word in ("off", "norep"):
            changes.update(repeat_penalty=1.0, no_repeat_ngram=0)
            continue
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise StoryError(f"expected key=value (e.g. T=0.8 p=0.9 rep=1.1 nr=4), got {item!r}")
        fld = _KEYS.get(key.lower())
        if fld is None:
            raise StoryError(f"unknown decoding setting {key!r}; use T, k, p, minp, rep, last-n, nr, beam, greedy or sample")
        try:
            num: object = int(value) if fld in _INT_FIELDS else float(value)
        except ValueError:
            kind = "a whole number" if fld in _INT_FIELDS else "a number"
            raise StoryError(f"{_FLAG[fld]} expects {kind}, got {value!r}") from None
        changes[fld] = num
        if fld in ("temperature", "top_k", "top_p", "min_p") and "greedy" not in changes:
            changes["greedy"] = False
            changes.setdefault("beam", 1)
        if fld == "beam" and num != 1:
            changes["greedy"] = True
    try:
        return replace(base, **changes)
    except DecodingError as e:
        raise StoryError(f"{_FLAG[e.field]} {e.detail}") from None


# ---- one step --------------------------------------------------------------------------
def ngram_banned(history: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Ids that would complete an ``n``-gram already present in ``history`` (sorted, unique)."""
    h = np.asarray(history, dtype=np.int64)
    if n <= 0 or len(h) < n:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.unique(h)
    suffix = h[len(h) - n + 1 :]
    # starts 0 .. len(h) - n of the n-1 ids that match the suffix, narrowed one id at a time
    hit = np.flatnonzero(h[: len(h) - n + 1] == suffix[0])
    for j in range(1, n - 1):
        hit = hit[h[hit + j] == suffix[j]]
    return np.unique(h[hit + n - 1])


def _penalised(history: Sequence[int], decoding: Decoding) -> np.ndarray:
    if decoding.repeat_penalty == 1 or decoding.repeat_last_n == 0 or not len(history):
        return np.zeros(0, np.int64)
    tail = history if decoding.repeat_last_n < 0 else history[-decoding.repeat_last_n :]
    return np.asarray(tail, dtype=np.int64)  # an id twice is penalised once: logp[pen] *= r reads each before writing


def _controlled(history: Sequence[int], decoding: Decoding, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the penalised ids, the n-gram-banned ids) of steps 1-2 within a vocabulary of ``size``
    (an id penalised twice is penalised once: ``x[pen] *= θ`` reads each before writing)."""
    pen = _penalised(history, decoding)
    pen = pen[(pen >= 0) & (pen < size)]
    ban = ngram_banned(history, decoding.no_repeat_ngram) if decoding.no_repeat_ngram else pen[:0]
    return pen, ban[(ban >= 0) & (ban < size)]


def adjusted_logp(
    probs: np.ndarray, history: Sequence[int], banned: np.ndarray | None, decoding: Decoding, normalise: bool = True
) -> np.ndarray:
    """Log-probabilities (float64, -inf for excluded ids, normalised) after steps 1-2;
    ``normalise`` False: up to a constant (enough to take the most likely).

    ``probs`` is not modified.
    """
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray(probs, dtype=np.float64))
    if banned is not None and banned.any():
        logp[banned] = -np.inf
    pen, ban = _controlled(history, decoding, len(logp))
    if len(pen):
        logp[pen] *= decoding.repeat_penalty  # -inf stays -inf
    if len(ban):
        kept = logp[ban]
        logp[ban] = -np.inf
        if logp.max() == -np.inf:
            logp[ban] = kept  # every id banned: lift the n-gram ban for this step
    top = logp.max()
    if not np.isfinite(top):
        raise StoryError("the model gives no probability to any word it may generate")
    if normalise:
        logp -= top + math.log(np.exp(logp - top).sum())
    return logp


def most_likely(probs: np.ndarray, history: Sequence[int], banned: np.ndarray | None, decoding: Decoding) -> int:
    """The id of the highest :func:`adjusted_logp` (the lowest on a tie), from the
    probabilities themselves (:func:`adjusted_probs`). The steps only lower some ids, so the
    most likely id stands when none touches it."""
    controlled = _controlled(history, decoding, len(probs))
    best = int(np.argmax(probs))
    touched = any((ids == best).any() for ids in controlled) or (banned is not None and bool(banned[best]))
    if not touched and probs[best] > 0:
        return best
    return int(np.argmax(adjusted_probs(probs, history, banned, decoding, controlled)))


def adjusted_probs(
    probs: np.ndarray,
    history: Sequence[int],
    banned: np.ndarray | None,
    decoding: Decoding,
    controlled: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The probabilities after steps 1-2, up to a constant (a copy): ``p ** θ`` at the
    penalised ids and 0 at the excluded ones, i.e. :func:`adjusted_logp` without a log of every
    word. ``controlled``: :func:`_controlled`'s ids, when already known."""
    q = np.array(probs, dtype=np.float64)
    pen, ban = _controlled(history, decoding, len(q)) if controlled is None else controlled
    if banned is not None and banned.any():
        q[banned] = 0.0
    if len(pen):
        q[pen] **= decoding.repeat_penalty
    if len(ban):
        kept = q[ban]
        q[ban] = 0.0
        if not q.max() > 0:
            q[ban] = kept  # every id banned: lift the n-gram ban for this step
    if not q.max() > 0:
        raise StoryError("the model gives no probability to any word it may generate")
    return q


def choose_next(
    next_distribution: NextDistribution,
    banned: np.ndarray | None,
    history: Sequence[int],
    decoding: Decoding,
    rng: np.random.Generator | None = None,
) -> int:
    """The next id after ``history``: greedy (and beam, one step) or sampled with ``rng``."""
    if decoding.greedy:
        return most_likely(next_distribution(history), history, banned, decoding)
    if rng is None:
        raise ValueError("sampling needs a random generator")
    if not decoding.top_k and decoding.min_p <= 0:
        return draw_from_probs(adjusted_probs(next_distribution(history), history, banned, decoding), decoding, rng)
    return draw(adjusted_logp(next_distribution(history), history, banned, decoding), decoding, rng)


# ---- whole continuations -----------------------------------------------------------------
def generate_ids(
    next_distribution: NextDistribution,
    banned: np.ndarray | None,
    start_ids: Sequence[int],
    n: int,
    decoding: Decoding,
    rng: np.random.Generator | None = None,
) -> Iterator[int]:
    """Yield ``n`` ids after ``start_ids``, one at a time (so a caller can stop early).

    With ``beam > 1`` the ids are those of :func:`beam_search`, yielded as soon as every beam
    agrees on them.
    """
    if decoding.beam > 1:
        yield from _beam(next_distribution, banned, start_ids, n, decoding)
        return
    if not decoding.greedy and rng is None:
        rng = np.random.default_rng()
    hist = [int(i) for i in start_ids]
    for _ in range(int(n)):
        nxt = choose_next(next_distribution, banned, hist, decoding, rng)
        yield nxt
        hist.append(nxt)


def beam_search(
    next_distribution: NextDistribution,
    banned: np.ndarray | None,
    start_ids: Sequence[int],
    n: int,
    decoding: Decoding,
) -> list[int]:
    """The most likely ``n`` ids after ``start_ids`` found by a beam of ``decoding.beam``.

    Scores are sums of the log-probabilities after the repetition controls, each beam with
    its own history. ``beam=1`` is greedy decoding.
    """
    return list(_beam(next_distribution, banned, start_ids, n, decoding))


def beam_candidates(
    next_distribution: NextDistribution,
    banned: np.ndarray | None,
    start_ids: Sequence[int],
    n: int,
    decoding: Decoding,
    width: int,
) -> list[tuple[float, list[int]]]:
    """Every beam left after a search of ``width`` beams for ``n`` ids, best first: (summed
    log-probability after the repetition controls, ids). The first is :func:`beam_search`'s."""
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    for step in _beam_steps(next_distribution, banned, start_ids, n, decoding, width):
        beams = step
    return beams


def _beam(
    next_distribution: NextDistribution,
    banned: np.ndarray | None,
    start_ids: Sequence[int],
    n: int,
    decoding: Decoding,
) -> Iterator[int]:
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    done = 0  # ids already yielded (common to every beam)
    for beams in _beam_steps(next_distribution, banned, start_ids, n, decoding, decoding.beam):
        common = _common_prefix([g for _, g in beams])
        while done < common:
            yield beams[0][1][done]
            done += 1
    best = beams[0][1]
    while done < len(best):
        yield best[done]
        done += 1


def _beam_steps(
    next_distribution: NextDistribution,
    banned: np.ndarray | None,
    start_ids: Sequence[int],
    n: int,
    decoding: Decoding,
    width: int,
) -> Iterator[list[tuple[float, list[int]]]]:
    """The beams, best first, after each of ``n`` steps."""
    width = max(1, int(width))
    start = [int(i) for i in start_ids]
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    for _ in range(int(n)):
        cand_scores: list[np.ndarray] = []
        cand_ids: list[np.ndarray] = []
        cand_parent: list[np.ndarray] = []
        for b, (score, gen) in enumerate(beams):
            hist = start + gen
            logp = adjusted_logp(next_distribution(hist), hist, banned, decoding)
            finite = int(np.isfinite(logp).sum())
            take = min(width, finite)
            if take < len(logp):
                top = np.argpartition(-logp, take - 1)[:take]
            else:
                top = np.arange(len(logp))
            top = top[np.isfinite(logp[top])]
            cand_scores.append(score + logp[top])
            cand_ids.append(top)
            cand_parent.append(np.full(len(top), b))
        scores = np.concatenate(cand_scores)
        ids = np.concatenate(cand_ids)
        parents = np.concatenate(cand_parent)
        # best first; ties go to the earlier beam, then the lower id (deterministic)
        order = np.lexsort((ids, parents, -scores))[:width]
        beams = [(float(scores[j]), beams[int(parents[j])][1] + [int(ids[j])]) for j in order]
        yield beams


def _common_prefix(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        x = first[i]
        if any(s[i] != x for s in seqs[1:]):
            return i
    return n


DEFAULT = Decoding()

"""The case-exact typist: entering a held-out text exactly, with its case and spacing.

The case-folded typist (:class:`model.evaluation.keystrokes.Typist`) counts a pick when the
menu's word is the next token. :class:`ExactTypist` types the text itself (its lines, blank
lines between paragraphs, whitespace collapsed) with the same buffer of tokens, read after
the text of their paragraph when the words are written: a pick, Tab or the grey continuation
counts only when the text it writes (:func:`model.text.writing.write`) is the text's own next
characters. A pick that leaves a space before a closing mark to come is fine (the mark's pick
takes it back; a closing mark typed goes before it: :func:`repl.keys.add_punctuation_keys`);
a quote or dash typed after it is written as its pick would be when that takes the space
(:func:`model.text.writing.taken_space`: ``proud `` + ``-`` → ``proud-``), else it stays there
and the next word's pick may space it again (``proud -`` + ``minded`` → ``proud-minded``);
typing anything else after it costs a Backspace.
As in the REPL, every typed character shows the menu (Alt-N picks the next word right after a
mark typed with no space after it: ``'`` then ``tis``). A line or paragraph break is entered as the
case-folded typist, which has no lines, enters a space: one key typed, none after a pick (whose
space ends the line; the grey text may go on past it, a space standing for the break); the
next line continues the same text. Every pick of the right word
that writes other characters is a refusal, by line: the share of lines without one is the
share the picks reproduce exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from model.evaluation.keystrokes import LINE, NOW, WINDOW, Features, latency_summary, run_typists, set_up, timed, typist_menu
from model.prediction.menu import DIRECT_PICKS, Menu, ghost_fill
from model.text.casing import fold
from model.text.tokenize import clean, tokenize
from model.text.writing import ATTACHING, TAKING, Edit, Writer, taken_space

MAX_BACK = 400  # tokens a buffer reaches back for the start of its paragraph, at most
EXAMPLES = 12


@dataclass
class Target:
    """A text to type: ``text``, its cased ``tokens`` at ``spans`` in it, their folded
    ``words`` (the model's tokens) and the ``line`` each is on."""

    text: str
    tokens: list[str]
    words: list[str]
    spans: list[tuple[int, int]]
    line: list[int]
    paragraph: list[int]  # token index of the first token of each token's paragraph
    lines: list[str]

    @classmethod
    def of_lines(cls, paragraphs: Sequence[Sequence[str]]) -> "Target":
        """The text of ``paragraphs`` (lists of lines): lines cleaned as the tokenizer reads
        them, whitespace collapsed, joined by line breaks, paragraphs by a blank line."""
        out = cls("", [], [], [], [], [], [])
        parts: list[str] = []
        at = 0
        for para in paragraphs:
            first = len(out.tokens)
            for raw in para:
                line = " ".join(clean(raw).split())
                if not line:
                    continue
                if parts:
                    sep = "\n\n" if first == len(out.tokens) else "\n"
                    parts.append(sep)
                    at += len(sep)
                out._add_line(line, at, first)
                parts.append(line)
                at += len(line)
        out.text = "".join(parts)
        return out

    def _add_line(self, line: str, at: int, first: int) -> None:
        cased = tokenize(line, keep_case=True)
        folded = tokenize(line)
        words = folded if len(folded) == len(cased) else [fold(t) for t in cased]
        pos = 0
        for tok, word in zip(cased, words):
            start = line.find(tok, pos)
            if start < 0:  # pragma: no cover - tokens are pieces of the cleaned line
                continue
            pos = start + len(tok)
            self.tokens.append(tok)
            self.words.append(word)
            self.spans.append((at + start, at + pos))
            self.line.append(len(self.lines))
            self.paragraph.append(first)
        self.lines.append(line)


def held_out_target(bundle, n_tokens: int, encoding: str = "utf-8") -> Target:
    """The first lines of the model's held-out part holding at least ``n_tokens`` tokens, as
    written (from the first line that starts in it)."""
    from model.evaluation.texts import training_corpus

    corpus = training_corpus(bundle, encoding)
    cut = corpus.split_point(float(bundle.config.valid_fraction or 0.0))
    paragraphs: list[list[str]] = []
    seen = taken = 0
    for block in re.split(r"\n[^\S\n]*\n", corpus.text):
        lines: list[str] = []
        for line in block.splitlines():
            count = len(tokenize(line))
            if seen >= cut and count and taken < n_tokens:
                lines.append(line)
                taken += count
            seen += count
        if lines:
            paragraphs.append(lines)
        if taken >= n_tokens:
            break
    return Target.of_lines(paragraphs)


def _keys(text: str) -> int:
    """Keys to type ``text``: one a character, one a line or paragraph break."""
    return len(_BREAKS.sub(" ", text))


_BREAKS = re.compile(r"[^\S\n]*\n\s*")  # a line or paragraph break, with the spaces around it


@dataclass
class ExactTypist:
    """One case-exact typist (see the module docstring); the same menus and keys as
    :class:`model.evaluation.keystrokes.Typist`."""

    menu: Menu
    target: Target
    n: int
    features: Features = NOW
    window: int = WINDOW
    observer: Any = None
    t: int = 0
    start: int = 0  # first token of the buffer, as the case-folded typist keeps it
    pend: bool = False  # a space stands after the text entered that the text has not (yet)
    keys: int = 0
    fresh: bool = False
    moves: dict[str, int] = field(default_factory=lambda: {"typed": 0, "alt": 0, "tab": 0, "ghost_all": 0, "ghost_word": 0, "backspace": 0})
    refused: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)  # line -> (reason, wanted, written)
    latency_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        set_up(self.menu, self.features)

    @property
    def done(self) -> bool:
        return self.t >= len(self.target.tokens)

    def _timed(self, fn, *args):
        return timed(self.latency_ms, fn, *args)

    # ---- the buffer ----------------------------------------------------------------------------
    def _window(self) -> tuple[int, int]:
        """(where the buffer starts: the model reads the tokens from there, as the case-folded
        typist's; where the text the words are written after starts: its paragraph's start)."""
        if self.t - self.start > self.window + LINE:
            if self.observer is not None:
                words = self.target.words
                self.observer.observe(list(words[self.start : self.start + LINE]), words[max(0, self.start - LINE) : self.start])
            self.start += LINE
        para = self.target.paragraph[self.start]
        first = para if self.start - para <= MAX_BACK else self.start
        return self.target.spans[self.start][0], self.target.spans[first][0]

    def _end(self, k: int) -> tuple[int, str]:
        """(where token k ends, the text between it and the next token)."""
        spans = self.target.spans
        e = spans[k][1]
        nxt = spans[k + 1][0] if k + 1 < len(spans) else len(self.target.text)
        return e, self.target.text[e:nxt]

    def _landing(self, begin: int, new: str, k: int) -> tuple[int, bool] | None:
        """(keys still to type, a space now stands before a closing mark) when the buffer
        became ``new`` and should now end with token k and what follows it; None when ``new``
        is not that text. A line break is entered as a space is (see the module docstring)."""
        e, gap = self._end(k)
        head = _BREAKS.sub(" ", self.target.text[begin:e])
        new, gap = _BREAKS.sub(" ", new), _BREAKS.sub(" ", gap)
        if not new.startswith(head):
            return None
        rest = new[len(head) :]
        if gap.startswith(rest):
            return len(gap) - len(rest), False
        if rest == " " and not gap:
            return 0, True
        return None

    # ---- one step ----------------------------------------------------------------------------
    def step(self) -> None:
        """Enter the next token (or several, through the continuation)."""
        begin, para = self._window()
        before = self.target.text[para:begin]
        s, e = self.target.spans[self.t]
        entered = self.target.text[begin:s]
        buf = entered + (" " if self.pend else "")
        if self.features.ghost and self.fresh and buf.strip() and self._accept_ghost(begin, before, buf):
            return
        _, gap = self._end(self.t)
        # (keys, menu showing after, how, space owed after, Backspaces)
        word, tok = self.target.words[self.t], self.target.tokens[self.t]
        # a quote or dash typed is written as its pick would be when that takes the space
        taken = taken_space(before + buf, tok, self.menu.casing(), len(before)) if self.pend and tok in TAKING else None
        landed_mark = None if taken is None else self._landing(begin, taken.apply(before + buf)[len(before) :], self.t)
        if self.pend and tok in ATTACHING:  # typed, the mark goes before the space
            best = (1 + max(_keys(gap) - 1, 0), True, "typed", gap == "", 0)
        elif landed_mark is not None:
            best = (1 + landed_mark[0], True, "typed", landed_mark[1], 0)
        else:  # a Backspace first when a space stands that the text has not
            best = (int(self.pend) + (e - s) + _keys(gap), gap != "", "typed", False, int(self.pend))
        for j in range(len(tok) + 1):
            extra = int(self.pend) if j > 0 else 0  # a Backspace before typing after the space
            if extra + j >= best[0]:
                break
            if j == 0 and not self.fresh:
                continue
            text = buf if j == 0 else entered + tok[:j]
            prefix, entries = self._timed(self.menu.lookup, text, self.n, before)
            if prefix not in (fold(tok[:j]), tok[:j]):
                continue
            for rank, entry in enumerate(entries, start=1):
                if entry.word != word:
                    continue
                landed = self._landing(begin, Edit(entry.delete, entry.text).apply(text), self.t)
                if landed is None:
                    self._refuse(begin, Edit(entry.delete, entry.text).apply(text), s, e, gap)
                    break
                alt = self.features.direct and rank <= DIRECT_PICKS
                cost = extra + j + entry.keys + landed[0]
                if cost < best[0] or (cost == best[0] and alt and not best[1]):
                    best = (cost, alt or landed[0] > 0, "alt" if alt else "tab", landed[1], extra)
                break
        if self.pend and tok in TAKING and taken is None and self._respaced_by_next(begin, before, buf + tok, best[0]):
            return
        self.keys += best[0]
        self.moves[best[2]] += 1
        self.moves["backspace"] += best[4]
        # a typed character shows the menu: after a mark typed with no space after it ('tis,
        # proud-minded) Alt-N picks the next word; after a word the menu completes that word
        self.fresh, self.pend = best[1] or best[2] == "typed", best[3]
        self.t += 1

    def _respaced_by_next(self, begin: int, before: str, typed: str, alone: int) -> bool:
        """A quote or dash typed after a pick's space, left there: picking the next word after
        it spaces it again (:meth:`model.text.writing.Writer.edit`: ``proud -`` + ``minded`` →
        ``proud-minded``). Taken (both tokens entered) when that pick, after ``j`` characters of
        the word, writes the text: it saves the mark's Backspace, the menus being those of the
        same tokens; ``typed``: the buffer with the mark, ``alone``: the keys of the mark alone."""
        k = self.t + 1
        if k >= len(self.target.tokens) or alone <= 1:  # the mark alone costs one key: nothing to save
            return False
        word, tok = self.target.words[k], self.target.tokens[k]
        for j in range(len(tok)):
            text = typed + tok[:j]
            prefix, entries = self._timed(self.menu.lookup, text, self.n, before)
            rank, entry = next(((r, x) for r, x in enumerate(entries, start=1) if x.word == word), (0, None))
            if prefix not in (fold(tok[:j]), tok[:j]) or entry is None:
                continue
            landed = self._landing(begin, Edit(entry.delete, entry.text).apply(text), k)
            if landed is None:
                return False
            alt = self.features.direct and rank <= DIRECT_PICKS
            self.keys += 1 + j + entry.keys + landed[0]
            self.moves["typed"] += 1
            self.moves["alt" if alt else "tab"] += 1
            self.fresh, self.pend = alt or landed[0] > 0, landed[1]
            self.t = k + 1
            return True
        return False

    def _accept_ghost(self, begin: int, before: str, buf: str) -> bool:
        edit = self._timed(self.menu.ghost_edit, buf, before)
        if not edit.text:
            return False
        for taken, how in ((edit, "ghost_all"), (Edit(edit.delete, ghost_fill(edit.text)), "ghost_word")):
            if not taken.text:
                continue
            new = taken.apply(buf)
            for k in range(min(len(self.target.tokens), self.t + 2 * self.menu.ghost_words + 2) - 1, self.t - 1, -1):
                landed = self._landing(begin, new, k)
                if landed is None:
                    continue
                self.keys += 1 + landed[0]
                self.moves[how] += 1
                self.pend, self.fresh = landed[1], True
                self.t = k + 1
                return True
        word = self.target.words[self.t]
        if tokenize(edit.text)[:1] == [word]:  # its first word: is it written right?
            first = Writer(before + buf, "", self.menu.casing(), floor=len(before)).edit(word).apply(before + buf)[len(before) :]
            if self._landing(begin, first, self.t) is None:
                s, e = self.target.spans[self.t]
                self._refuse(begin, first, s, e, self._end(self.t)[1])
        return False

    def _refuse(self, begin: int, new: str, s: int, e: int, gap: str) -> None:
        """Note a pick of the right word that wrote other characters, on the token's line."""
        wanted = self.target.text[s:e] + gap[:1].replace("\n", "")
        cut = min(s - begin, len(new)) - 1  # from the character before the token
        written = new[max(cut, 0) :][: len(wanted) + 2]
        wanted = self.target.text[begin + max(cut, 0) : s] + wanted
        same = fold(written.replace(" ", "")) == fold(wanted.replace(" ", ""))
        reason = "case" if same and written.replace(" ", "") != wanted.replace(" ", "") else "spacing"
        self.refused.setdefault(self.target.line[self.t], []).append((reason, wanted, written))

    def result(self) -> dict[str, Any]:
        without = _keys(self.target.text)
        lines = len(self.target.lines)
        reasons: dict[str, int] = {}
        for found in self.refused.values():
            for reason, _, _ in found:
                reasons[reason] = reasons.get(reason, 0) + 1
        examples = [
            {"line": self.target.lines[i], "reason": r, "wanted": w, "written": got}
            for i, found in sorted(self.refused.items())[:EXAMPLES]
            for r, w, got in found[:1]
        ]
        return {
            "menu": self.n,
            "features": self.features.name,
            "mode": "exact",
            "keys": self.keys,
            "keys_without": without,
            "ksr": 1.0 - self.keys / without if without else float("nan"),
            "tokens": len(self.target.tokens),
            "moves": dict(self.moves),
            "calls": len(self.latency_ms),
            "lines": lines,
            "lines_exact": (lines - len(self.refused)) / lines if lines else float("nan"),
            "refusals": reasons,
            "examples": examples,
        }


def simulate_exact(source: Any, target: Target, menus: Sequence[int], features: Features = NOW, *, predictor: bool = True) -> list[ExactTypist]:
    """Case-exact typists for each menu size over one predictor (as :func:`keystrokes.simulate`)."""
    out = []
    for n in menus:
        menu, observer, _ = typist_menu(source, predictor)
        out.append(ExactTypist(menu, target, int(n), features, observer=observer))
    run_typists(out)
    return out


def run_exact(runs: dict[str, tuple[Any, bool]], target: Target, menus: Sequence[int], features: Features = NOW) -> dict[str, Any]:
    """Case-exact KSR by menu size for each contender (name -> (predictor or Source, is a predictor))."""
    out: dict[str, Any] = {"menus": list(menus), "features": features.name, "mode": "exact", "tokens": len(target.tokens)}
    details: dict[str, Any] = {}
    for name, (src, is_pred) in runs.items():
        typists = simulate_exact(src, target, menus, features, predictor=is_pred)
        out[name] = {str(ty.n): ty.result()["ksr"] for ty in typists}
        details[name] = [ty.result() for ty in typists]
        out["latency_" + name] = latency_summary(typists)
        out["keys_without"] = typists[0].result()["keys_without"]
    out["details"] = details
    return out

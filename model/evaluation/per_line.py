"""Keystrokes across lines: the held-out text typed one REPL line at a time.

The continuous typist (:class:`model.evaluation.keystrokes.Typist`) types a text as one stream.
:class:`LineTypist` types each line as its own REPL line: the buffer starts empty at every line,
as the REPL's prompt does, each line entered is given to the predictor's cache of the user's
text (``observe``), and with the story on the lines before are the story the predictor follows
(:class:`model.story.context.StoryContext`, the menu's ``context``), as the REPL does; with the
story off every line stands alone (what users got before stories). As in the REPL, the empty
prompt shows the menu and the grey continuation for the line's first word when a story stands
before it (:meth:`model.prediction.menu.Menu.offers_first_word`), and neither with the story off
or empty (as at the continuous typist's start); the continuation never runs past the line's end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from model.errors import StoryError
from model.evaluation.keystrokes import NOW, Features, Typist, check_menus, run_typists, typist_menu
from model.story.context import StoryContext

MODES = ("story", "no_story")


@dataclass
class LineTypist(Typist):
    """A :class:`Typist` whose buffer is the current line only; ``story``: the lines before are
    the story the predictor follows."""

    line_of: Sequence[int] = ()  # the line index of each token
    story: bool = True
    predictor: Any = None
    line: int = -1
    lines: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    ctx: StoryContext = field(default_factory=StoryContext)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ctx.on = self.story
        if self.story:
            self.menu.context = self.ctx.tokens

    def buffer(self) -> str:
        if self.line_of[self.t] != self.line:
            self._new_line()
        return "".join(self.canon[self.start : self.t])

    def _new_line(self) -> None:
        """The REPL's Enter: the line typed joins the user's text and the story; the next starts empty."""
        if self.start < self.t:
            words = tuple(self.tokens[self.start : self.t])
            if self.observer is not None:
                self.observer.observe(list(words), self.ctx.tokens())  # the story before the line, as the REPL
            self.lines.append((len(self.lines) + 1, words))
        if self.story:
            self.ctx.follow(self.predictor, self.lines, "held-out")
        self.line, self.start = self.line_of[self.t], self.t
        self.menu.forget()
        self.fresh = self.menu.offers_first_word()  # the empty prompt's menu: only after a story

    def _accept_ghost(self, buf: str) -> bool:
        end = self.t
        while end < len(self.tokens) and self.line_of[end] == self.line:
            end += 1
        full, self.canon = self.canon, self.canon[:end]
        try:
            return super()._accept_ghost(buf)
        finally:
            self.canon = full


def lines_tokens(lines: Sequence[Sequence[str]]) -> tuple[list[str], list[int]]:
    """The tokens of ``lines`` and the line each is on (empty lines left out)."""
    tokens: list[str] = []
    line_of: list[int] = []
    for i, line in enumerate(x for x in lines if x):
        tokens += list(line)
        line_of += [i] * len(line)
    return tokens, line_of


def simulate_lines(
    source: Any, lines: Sequence[Sequence[str]], menus: Sequence[int], story: bool, features: Features = NOW, *, predictor: bool = True
) -> list[LineTypist]:
    """Line typists for each menu size, each over its own predictor (:func:`fork`)."""
    tokens, line_of = lines_tokens(lines)
    if not tokens:
        raise StoryError("the text has no words to type")
    out = []
    for n in check_menus(menus):
        menu, observer, pred = typist_menu(source, predictor)
        out.append(LineTypist(menu, tokens, int(n), features, observer=observer, line_of=line_of, story=story, predictor=pred))
    run_typists(out)
    return out


def per_line(source: Any, lines: Sequence[Sequence[str]], menus: Sequence[int], *, predictor: bool = True) -> dict[str, Any]:
    """``{"story": {menu: ksr}, "no_story": {...}, "lines", "tokens", "keys_without", "details"}``."""
    out: dict[str, Any] = {"details": {}}
    for mode in MODES:
        typists = simulate_lines(source, lines, menus, mode == "story", predictor=predictor)
        results = [ty.result() for ty in typists]
        out[mode] = {str(r["menu"]): r["ksr"] for r in results}
        out["details"][mode] = results
        out["tokens"], out["keys_without"] = results[0]["tokens"], results[0]["keys_without"]
    out["lines"] = sum(1 for x in lines if x)
    return out


def first_tokens(lines: Sequence[Sequence[str]], limit: int) -> list[list[str]]:
    """The lines holding the first ``limit`` tokens (the last one cut there)."""
    out: list[list[str]] = []
    left = int(limit)
    for line in lines:
        if left <= 0:
            break
        out.append(list(line)[:left])
        left -= len(out[-1])
    return out


def target_lines(target: Any, keep_case: bool = False) -> list[list[str]]:
    """The tokens of each line of an :class:`model.evaluation.exact.Target` (the model's tokens)."""
    words = target.tokens if keep_case else target.words
    out: list[list[str]] = [[] for _ in target.lines]
    for w, i in zip(words, target.line):
        out[i].append(w)
    return out

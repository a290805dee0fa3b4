"""What is offered and generated: ``:topk``, ``:greedy``, ``:sample``, ``:mode``, ``:beam``,
``:decode``, ``:len``, ``:seed``, ``:ghost``, ``:repeat``."""
from __future__ import annotations

import numpy as np

from model.errors import StoryError
from model.prediction.decoding import Decoding, parse_settings
from repl import render

MAX_LEN = 10_000


def _decoding_line(d: Decoding) -> str:
    """Every decoding setting, spelled as :decode takes it."""
    return (f"T={d.temperature:g} k={d.top_k} p={d.top_p:g} minp={d.min_p:g} rep={d.repeat_penalty:g} "
            f"last-n={d.repeat_last_n} nr={d.no_repeat_ngram} beam={d.beam}")


def _on_off(arg, current: bool, what: str) -> bool:
    """``on``/``off`` (also yes/no, true/false, 1/0); no argument toggles."""
    if arg is None or not str(arg).strip():
        return not current
    word = str(arg).strip().lower()
    if word in ("on", "yes", "true", "1"):
        return True
    if word in ("off", "no", "false", "0"):
        return False
    raise StoryError(f"{what} expects on or off, got {str(arg).strip()[:40]!r}")


class DecodingCommands:
    def do_topk(self, arg) -> None:
        if arg < 1:
            raise StoryError(f":topk expects a positive integer, got {arg}")
        vocab = len(self.predictor.vocab) if self.predictor else arg
        if arg > vocab:
            self.out(render.notice(f":topk {arg} is more than the vocabulary; using {vocab}"))
            arg = vocab
        self.k = int(arg)
        self.out(render.notice(f"showing the top {self.k} words", "green"))

    @property
    def greedy(self) -> bool:
        """True unless generation samples (beam search is greedy too)."""
        return self.decoding.greedy

    @property
    def temperature(self) -> float:
        return self.decoding.temperature

    def _set_decoding(self, decoding: Decoding) -> None:
        self.decoding = decoding
        what = {"greedy": "greedy decoding", "beam": f"beam search of width {decoding.beam}"}.get(
            decoding.mode, f"sampled decoding at temperature {decoding.temperature:g}"
        )
        self.out(render.notice(f"{what} ({decoding.short()})", "green"))

    def do_greedy(self, arg) -> None:
        self._set_decoding(self.decoding.with_(greedy=True, beam=1))

    def do_sample(self, arg) -> None:
        t = self.temperature if arg is None else float(arg)
        if not (0 < t <= 100):
            raise StoryError(f":sample expects a temperature above 0 (at most 100), got {arg}")
        self._set_decoding(self.decoding.with_(greedy=False, beam=1, temperature=t))

    def do_mode(self, arg) -> None:
        sampling = self.decoding.mode == "sample"
        self._set_decoding(self.decoding.with_(greedy=sampling, beam=1))

    def do_beam(self, arg) -> None:
        if not (1 <= arg <= 64):
            raise StoryError(f":beam expects a whole number from 1 (off) to 64, got {arg}")
        self._set_decoding(self.decoding.with_(greedy=True, beam=int(arg)))

    def do_decode(self, arg) -> None:
        if not arg:
            self.out(render.notice(f"decoding: {self.decoding.short()}  ({_decoding_line(self.decoding)})"))
            return
        self._set_decoding(parse_settings(arg, self.decoding))

    def do_len(self, arg) -> None:
        if not (1 <= arg <= MAX_LEN):
            raise StoryError(f":len expects a whole number from 1 to {MAX_LEN}, got {arg}")
        self.length = int(arg)
        self.out(render.notice(f"generating {self.length} words", "green"))

    def do_seed(self, arg) -> None:
        if not (0 <= arg < 2**63):
            raise StoryError(f":seed expects a whole number from 0 to 2^63-1, got {arg}")
        self.seed = int(arg)
        self.rng = np.random.default_rng(self.seed)
        self.config = self.config.replace(seed=self.seed)
        self.out(render.notice(f"seed {self.seed} (sampling now; the next training too)", "green"))

    def do_ghost(self, arg) -> None:
        self.menu.ghost_enabled = _on_off(arg, self.menu.ghost_enabled, ":ghost")
        self.out(render.notice("grey continuation " + ("on: → accepts it, Alt-F one word" if self.menu.ghost_enabled else "off"), "green"))

    def do_repeat(self, arg) -> None:
        self.menu.repeat = _on_off(arg, self.menu.repeat, ":repeat")
        self.menu.forget()
        self.out(
            render.notice(
                "passed-over words are offered again while you type"
                if self.menu.repeat
                else "a word the menu showed and you passed over makes room for others while you type the same word",
                "green",
            )
        )

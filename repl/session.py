"""The interactive loop: prompt, live completions, commands, background training.

:class:`Session` holds the state and runs the loop; the model and its training
(:mod:`repl.lifecycle`) and the ``:command`` handlers (:mod:`repl.handlers`) are mixins, and the
prompt is built in :mod:`repl.layout`. Starting with a cached model imports no TensorFlow. Ctrl-C
clears the line (on an empty line it stops training after the current batch), Ctrl-D leaves, and
no exception inside the loop is fatal (a traceback only with ``--debug``).
"""
from __future__ import annotations

import io
import re
import shutil
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from model.config import Config
from model.errors import StoryError
from model.prediction.decoding import Decoding
from model.prediction.predictor import Predictor
from model.storage.bundle import Bundle, load_bundle
from model.text.tokenize import detokenize
from model.text.writing import continuation, line_tail
from repl import commands as cmds
from repl import render
from repl.handlers.components import ComponentCommands
from repl.handlers.decoding import DecodingCommands
from repl.handlers.general import GeneralCommands
from repl.handlers.inspect import InspectCommands
from repl.handlers.story import StoryCommands
from repl.handlers.training import ModelCommands
from repl.journal import Journal
from repl.lifecycle import ModelLifecycle

MAX_LINE = 20_000  # characters of a typed line that are read; the rest is ignored (and said so)
DEFAULT_K = 10


_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]P^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")


def _clean(line: str) -> str:
    """Terminal escape sequences are dropped; other control characters (pasted newlines) become spaces."""
    line = _ESCAPE.sub(" ", line)
    return "".join(" " if (ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0) else ch for ch in line)


def _generation_label(d: Decoding) -> str:
    """How a continuation was made: "greedy", "sampled, T=0.8", "beam 4", plus settings changed from the defaults."""
    return d.label()


def _short(word: str, limit: int = 40) -> str:
    return word if len(word) <= limit else word[: limit - 1] + "…"


class Session(GeneralCommands, DecodingCommands, ModelCommands, ComponentCommands, InspectCommands, StoryCommands, ModelLifecycle):
    def __init__(self, corpus_spec: str, config: Config, debug: bool = False):
        self.corpus_spec = corpus_spec
        self.config = config
        self.debug = debug
        self.encoding = "utf-8"  # of corpus files read for training (--encoding)
        self.bundle: Bundle | None = None
        self.predictor: Predictor | None = None
        self.k = DEFAULT_K
        from model.prediction.menu import Menu

        self.menu = Menu()  # the word menu and the grey continuation (:ghost, :repeat)
        from repl.story_state import StoryState

        self.story = StoryState(lambda message: self.out(render.notice(message)))  # the story written (repl/handlers/story.py)
        self.menu.context = self.story.context.tokens  # the menu reads the story before the line
        self.menu.text_before = self.story.text_before_line  # and writes the line's words after its text
        self.pending_text = ""  # the line a story key left, put back on the next prompt
        self.completer = None  # the prompt's WordCompleter, once make_prompt has run
        self.decoding = Decoding()  # how generation picks words (:greedy, :sample, :beam, :decode)
        self.length = 32
        self.seed = config.seed
        self.rng = np.random.default_rng(self.seed)
        self.status = ""  # "loading TensorFlow…", "training …"
        self.progress = None  # last progress record of a background training run
        self.train_thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.last_history: dict = {}
        self.tty = sys.stdout.isatty()
        self._lock = threading.Lock()
        self.journal = Journal(lambda message: self.out(render.notice(message)))  # what the user wrote with this corpus (the cache's text)
        self.partner_spec: str | None = None  # --partner / :partner: a second network for the mixture
        self.partner_training = False  # :partner ARCH is training that network in the background

    # ---- output ---------------------------------------------------------------------
    def console(self, file=None) -> Console:
        width = shutil.get_terminal_size((100, 24)).columns
        return Console(
            file=file or io.StringIO(),
            force_terminal=self.tty,
            color_system="standard" if self.tty else None,
            width=max(8, width),  # the terminal's own width: rich wraps at spaces, never the terminal mid-word
            highlight=False,
            soft_wrap=False,
        )

    def out(self, *renderables: Any) -> None:
        """Print renderables; safe while a prompt is active (goes above it)."""
        buf = io.StringIO()
        con = self.console(buf)
        for r in renderables:
            con.print(r)
        with self._lock:
            sys.stdout.write(buf.getvalue())
            sys.stdout.flush()

    def error(self, message: str) -> None:
        self.out(render.error(message))

    # ---- lines ------------------------------------------------------------------------
    def run_line(self, line: str) -> bool:
        """Handle one line as the loop does: every error is one printed line. False means quit."""
        try:
            return self.handle(line)
        except StoryError as e:
            self.error(str(e))
        except KeyboardInterrupt:
            self.out(render.notice("interrupted; the current model is still loaded"))
        except Exception as e:  # noqa: BLE001 - the loop never dies
            if self.debug:
                self.out(traceback.format_exc())
            first = str(e).splitlines()[0][:200] if str(e) else ""
            self.error(f"{type(e).__name__}: {first} (the current model is still loaded; --debug shows details)")
        return True

    def handle(self, line: str) -> bool:
        """Handle one input line. False means quit."""
        if len(line) > MAX_LINE:
            if cmds.is_command(line):
                raise StoryError(f"the command has {len(line)} characters, more than {MAX_LINE}; shorten it")
            self.out(render.notice(f"the line has {len(line)} characters; reading only the last {MAX_LINE}"))
            line = line[-MAX_LINE:]
        line = _clean(line)
        self.story_sync()
        if not line.strip():
            self.story_empty_line()
            return True
        if cmds.is_command(line):
            return self.command(cmds.parse(line))
        if self.story.on:
            self.story_line(line)
        else:
            self.complete_text(line)
        return True

    def complete_text(self, line: str) -> None:
        pred = self.predictor
        if pred is None:
            raise StoryError("no model is loaded yet; wait for training or :load a model")
        tokens = pred.tokenize(line)
        ids, unknown = pred.encode(tokens)
        if unknown:
            shown = ", ".join(_short(w) for w in unknown[:8]) + ("…" if len(unknown) > 8 else "")
            from repl.hanzi import script_hint

            hint = script_hint(unknown, lambda w: w in pred.vocab.index)  # simplified typed against a traditional text
            self.out(render.notice(f"unknown to this model: {shown}; predicting from the known context (remembered: offered from now on)" + (f"; {hint}" if hint else "")))
        ctx = pred.vocab.decode(ids[-pred.context :])
        preds = pred.top_k(ids, min(self.k, len(pred.vocab)))
        title = f"next word after “{detokenize(ctx)}”" if ctx else "first word"
        self.out(render.topk_table(preds, title=title))
        gen: list[int] = []
        stopped = False
        try:
            for i in pred.generate_ids(ids, self.length, seed=int(self.rng.integers(2**31)), decoding=self.decoding):
                gen.append(i)
        except KeyboardInterrupt:
            stopped = True
        words = pred.vocab.decode(gen)
        mode = _generation_label(self.decoding)
        if stopped:
            mode += f"; stopped after {len(words)} words"
        copied = self.copied_run(words)
        kept, written = continuation(line, words, pred.casing)
        self.out(render.generation(line_tail(kept), written, mode, copied, joined=True))
        self.remember_line(line, tokens)

    def copied_run(self, words: list[str]) -> int | None:
        """Longest run of ``words`` found verbatim in the training text (None if unknown)."""
        from model.evaluation.memorize import longest_copied_run

        if self.bundle is None:
            return None
        return longest_copied_run(self.bundle, words)

    def remember_line(self, line: str, tokens: list[str]) -> None:
        """The cache learns the line (a new name is offered from now on); it is kept for next time."""
        pred = self.predictor
        if pred is None or not tokens:
            return
        pred.observe(tokens, self.story.context.tokens())  # the story before the line (none when off)
        self.journal.keep(line, tokens)

    # ---- commands ---------------------------------------------------------------------
    def command(self, c: cmds.Command) -> bool:
        """Run a parsed command: ``:name`` dispatches to ``do_name`` (one per row of
        :data:`repl.commands.COMMANDS`, in :mod:`repl.handlers`). False means quit."""
        handler = getattr(self, f"do_{c.name}", None)
        if handler is None:  # pragma: no cover - every command in the table has a method
            raise StoryError(f":{c.name} is not available")
        return handler(c.arg, **c.options) is not False

    # ---- loop -------------------------------------------------------------------------
    def make_prompt(self, **io):
        """The PromptSession for this session (see :func:`repl.layout.make_prompt`)."""
        from repl.layout import make_prompt

        return make_prompt(self, **io)

    def loop(self) -> int:
        from prompt_toolkit.patch_stdout import patch_stdout

        from repl.layout import PROMPT, first_word
        from repl.toolbar import welcome_line

        session = self.make_prompt()
        opened = first_word(self)  # the empty line after a story: the menu for its first word
        self.out(render.notice(welcome_line(self), "dim"))
        self.story_start()
        with patch_stdout(raw=True):
            while True:
                try:
                    line = session.prompt(PROMPT, default=self.take_pending_text(), pre_run=opened)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not self.run_line(line):
                    break
        if self.training:
            self.leaving = True
            self.stop_event.set()
            self.out(render.notice("finishing the current batch and saving before leaving…"))
            self.train_thread.join()
        return 0


INSTANT_BYTES = 64 * 1024  # corpora above this size open the prompt before their LSTM is trained


def instant_start(path: Path) -> bool:
    try:
        return path.stat().st_size > INSTANT_BYTES
    except OSError:
        return False


def run_session(args) -> int:
    from model.storage import store
    from repl.models import DEFAULT_CORPUS, config_from, train_with_view

    if not sys.stdin.isatty():
        raise StoryError("the REPL needs a terminal; use story-repl predict/generate for scripts")
    config = config_from(args)
    session = Session(args.corpus or DEFAULT_CORPUS, config, debug=args.debug)
    session.encoding = getattr(args, "encoding", None) or "utf-8"
    session.partner_spec = getattr(args, "partner", None)
    session.story.choose(getattr(args, "story", None))  # --story: an unknown id or title is one line
    resume = not getattr(args, "no_resume", False)  # a training cut short goes on in the background
    if args.model:
        bundle = load_bundle(args.model)
        if args.corpus:  # the model's training text, taken only if its sha256 is the recorded one
            bundle.use_text(args.corpus)
        session.config = bundle.config
        session.corpus_spec = bundle.text_spec() or session.corpus_spec  # never a path the model names on its own
    else:
        from model.text.corpus import resolve_path

        path = resolve_path(session.corpus_spec)
        session.corpus_spec = str(path)
        bundle = store.cached(path, config)
        if bundle is None and instant_start(path):  # a book: the prompt now, the LSTM in the background
            session.start_model(str(path), config, force=False, what="first model")
            return session.loop()
        if bundle is None:
            resume = False  # trained just now: a run the user stopped here is only offered
            con = Console(highlight=False)
            bundle, result = train_with_view(str(path), config, con, encoding=session.encoding)
            note = result.vocab.unk_note() if result is not None else None
            if note:
                con.print(render.notice(note, "dim"))
    session.set_bundle(bundle, strict=True)
    session.resume_cut_short(auto=resume)
    return session.loop()

"""The interactive loop: prompt, live completions, commands, background training.

Starting with a cached model imports no TensorFlow: completion and generation run on the
numpy predictor. Training started from the prompt runs in a background thread while the
previous model stays usable; its progress shows in the bottom toolbar and as lines printed
above the prompt. Ctrl-C clears the line (or, on an empty line, stops training after the
current batch); Ctrl-D leaves. No exception inside the loop is fatal or shows a traceback.
"""
from __future__ import annotations

import io
import math
import os
import re
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from model.storage.bundle import Bundle, copy_bundle, load_bundle
from model.config import ARCHS, Config
from model.prediction.decoding import Decoding, parse_settings
from model.errors import StoryError
from model.prediction.mixture import ALL, PARTNER
from model.prediction.predictor import Predictor
from model.text.tokenize import detokenize
from repl import commands as cmds
from repl import render
from repl.train_progress import status_line

MAX_LINE = 20_000  # characters of a typed line that are read; the rest is ignored (and said so)
MAX_LEN = 10_000
DIRECT_PICKS = 9  # Alt-1 … Alt-9
DEFAULT_K = 10


_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]P^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")


def _clean(line: str) -> str:
    """Terminal escape sequences are dropped; other control characters (pasted newlines) become spaces."""
    line = _ESCAPE.sub(" ", line)
    return "".join(" " if (ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0) else ch for ch in line)


def _decoding_line(d: Decoding) -> str:
    """Every decoding setting, spelled as :decode takes it."""
    return (f"T={d.temperature:g} k={d.top_k} p={d.top_p:g} minp={d.min_p:g} rep={d.repeat_penalty:g} "
            f"last-n={d.repeat_last_n} nr={d.no_repeat_ngram} beam={d.beam}")


KEYS_HELP = (
    "Type words to see the next word. Alt-1 … Alt-9 insert menu entry 1 … 9 with its space; Tab or the arrows "
    "select in the menu. After a word, the likely next words show in grey: → or Ctrl-E accepts them all, "
    "Alt-F one word (:ghost on|off). Ctrl-C clears the line, Ctrl-D quits."
)


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


def _generation_label(d: Decoding) -> str:
    """How a continuation was made: "greedy", "sampled, T=0.8", "beam 4", plus settings changed from the defaults."""
    base = {"greedy": "greedy", "beam": f"beam {d.beam}"}.get(d.mode, f"sampled, T={d.temperature:g}")
    usual = set(Decoding(greedy=d.greedy, temperature=d.temperature, beam=d.beam).short().split())
    mine = d.short().split()
    changed = [part for part in mine[1:] if part not in usual]
    keys = {part.split("=")[0] for part in mine}
    changed += [f"{key} off" for key in ("p", "rep", "nr") if key not in keys and any(u.startswith(key + "=") for u in usual)]
    return f"{base} ({' '.join(changed)})" if changed else base


def _short(word: str, limit: int = 40) -> str:
    return word if len(word) <= limit else word[: limit - 1] + "…"


class Session:
    def __init__(self, corpus_spec: str, config: Config, debug: bool = False):
        self.corpus_spec = corpus_spec
        self.config = config
        self.debug = debug
        self.encoding = "utf-8"  # of corpus files read for training (--encoding)
        self.bundle: Bundle | None = None
        self.predictor: Predictor | None = None
        self.k = DEFAULT_K
        from repl.completer import Menu

        self.menu = Menu()  # the word menu and the grey continuation (:ghost, :repeat)
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
        self.writing: list[str] = []  # tokens the user wrote with this corpus (the cache's text)
        self.writing_sha = ""
        self.partner_spec: str | None = None  # --partner / :partner: a second network for the mixture
        self.partner_training = False  # :partner ARCH is training that network in the background

    # ---- output ---------------------------------------------------------------------
    def console(self, file=None) -> Console:
        width = shutil.get_terminal_size((100, 24)).columns
        return Console(
            file=file or io.StringIO(),
            force_terminal=self.tty,
            color_system="standard" if self.tty else None,
            width=max(40, width),
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

    # ---- model ------------------------------------------------------------------------
    def set_bundle(self, bundle: Bundle, strict: bool = False) -> None:
        """Use ``bundle``'s predictor (with the ``--partner`` network when one is cached for it;
        without ``strict``, a missing partner is a notice and the model is used alone)."""
        from repl.models import partner_bundle

        try:
            pred = Predictor(bundle, partner=partner_bundle(bundle, self.partner_spec))
        except StoryError as e:
            if strict or self.partner_spec is None:
                raise
            self.out(render.notice(f"without the partner network: {e}", "yellow"))
            pred = Predictor(bundle)
        self.set_predictor(pred, bundle.corpus_sha256)
        self.bundle = bundle
        self.last_history = dict(bundle.metrics.get("history") or {})

    def set_predictor(self, pred: Predictor, corpus_sha256: str) -> None:
        """Use ``pred`` from now on; its cache starts with what the user wrote with this corpus
        (the writing file of earlier sessions, then this session's lines)."""
        self._keep_switched_off(pred)
        self.writing_sha = corpus_sha256
        if corpus_sha256 != getattr(self, "_writing_loaded_for", None):
            self.writing = self.read_writing(corpus_sha256, pred)
            self._writing_loaded_for = corpus_sha256
        pred.observe(self.writing)
        self.predictor = pred

    def _keep_switched_off(self, pred: Predictor) -> None:
        """The parts the user switched off with :components stay off in ``pred``; parts the
        old predictor did not have (the LSTM of a book that was training, a partner) come on."""
        old = self.predictor
        mix = getattr(old, "mixture", None)
        if mix is None or not hasattr(pred, "components"):
            return
        off = {n for n in ALL if mix.available(n) and n not in old.components()}
        keep = [n for n in pred.components() if n not in off]
        if keep and keep != pred.components():
            pred.components(keep)

    # ---- what the user wrote (the cache) --------------------------------------------------
    def writing_file(self, corpus_sha256: str) -> Path | None:
        from model.storage import store

        return store.home() / "writing" / f"{corpus_sha256[:16]}.txt" if corpus_sha256 else None

    def read_writing(self, corpus_sha256: str, pred: Predictor) -> list[str]:
        """The last tokens written in earlier sessions with this corpus ([] if none)."""
        from model.prediction.mixture import CACHE_TOKENS

        f = self.writing_file(corpus_sha256)
        try:
            with open(f, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * CACHE_TOKENS))
                text = fh.read().decode("utf-8", errors="ignore")
        except (OSError, TypeError):
            return []
        return pred.tokenize(text)[-CACHE_TOKENS:]

    def remember_line(self, line: str, tokens: list[str]) -> None:
        """The cache learns the line (a new name is offered from now on); it is kept for next time."""
        pred = self.predictor
        if pred is None or not tokens:
            return
        pred.observe(tokens)
        self.writing.extend(tokens)
        f = self.writing_file(getattr(self, "writing_sha", ""))
        if f is None:
            return
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "a", encoding="utf-8") as fh:
                fh.write(line.strip() + "\n")
        except OSError:
            pass  # the cache still has it for this session

    def corpus_label(self) -> str:
        if self.bundle is not None:
            return self.bundle.corpus_name
        return Path(self.corpus_spec).stem

    @property
    def training(self) -> bool:
        return self.train_thread is not None and self.train_thread.is_alive()

    def start_model(
        self, corpus_spec: str, config: Config, force: bool, what: str, time_limit: float | None = None, partner: bool = False
    ) -> None:
        """Load the cached model for (corpus, config), or train it in the background. With
        ``partner``, the model trained joins the current one's mixture as ``lstm2`` instead of
        replacing it."""
        from model.storage import store
        from model.text.corpus import resolve_path

        if self.training:
            raise StoryError("training is already under way; wait for it or :stop it first")
        path = resolve_path(corpus_spec)
        if path.is_dir():
            raise StoryError(f"{path} is a directory; give a text file")
        if not force and not partner:
            hit = store.cached(path, config)
            if hit is not None:
                self.set_bundle(hit)
                self.corpus_spec, self.config = str(path), config
                self.out(render.notice(f"loaded the cached {config.label()} model for {path.stem} from {hit.path}", "green"))
                return
        self.stop_event = threading.Event()
        self.progress = None
        self.status = "starting"
        self.train_thread = threading.Thread(
            target=self._train_worker, args=(str(path), config, force, what, time_limit, partner), name="story-repl-train", daemon=True
        )
        self.train_thread.start()

    def _on_progress(self, p) -> None:
        if p.kind in ("batch", "epoch"):
            self.progress = p
            self.status = "training " + status_line(p)
        elif p.kind == "sample" and p.sample is not None:
            now = time.monotonic()
            if now - getattr(self, "_last_sample", 0.0) >= 2.0:
                self._last_sample = now
                self.out(render.Text("  ") + render.sample_line(*p.sample) + render.Text(f"  {status_line(self.progress)}", style="dim"))
        elif p.kind == "start":
            self.out(render.notice(f"training: {p.message}", "dim"))

    def start_ngram(self, corpus, config: Config) -> None:
        """Complete from the n-gram and the cache while the LSTM of a new corpus trains."""
        from model.config import resolve
        from model.prediction.mixture import ngram_mixture

        self.status = "counting n-grams"
        cfg = resolve(config, len(corpus.tokens))
        self.set_predictor(Predictor.from_mixture(ngram_mixture(corpus, cfg), cfg), corpus.sha256)
        self.out(render.notice("completing from the n-gram and what you write; the LSTM joins when it is trained", "cyan"))

    def _train_worker(
        self, path: str, config: Config, force: bool, what: str, time_limit: float | None = None, partner: bool = False
    ) -> None:
        from model.storage import store

        main = self.bundle
        try:
            self.status = "reading corpus"
            from model.text.corpus import read_corpus

            from repl.train_progress import ReadingClock

            on_read = ReadingClock(lambda line: setattr(self, "status", line))
            corpus = read_corpus(path, encoding=self.encoding, keep_case=config.keep_case, progress=on_read)  # fail fast
            if self.predictor is None:  # nothing to complete with yet: the n-gram first, in seconds
                self.start_ngram(corpus, config)
            if "tensorflow" not in sys.modules:
                self.status = "loading TensorFlow…"
            import model.training.train  # noqa: F401  (imports TensorFlow)

            self.status = "training"
            budget = f" for at most {time_limit:g}s" if time_limit else ""
            self.out(render.notice(f"{what} on {Path(path).name}: training in the background{budget} (Ctrl-C on an empty line or :stop ends it)", "cyan"))
            bundle, result = store.train_and_cache(
                corpus, config, on_progress=self._on_progress, stop=self.stop_event, force=force, time_limit=time_limit
            )
            if partner:
                self.partner_training = False
                self.status = "fitting the mixture's weights"
                now = self._attach_partner(main, bundle, config.arch)
            else:
                self.set_bundle(bundle)
                self.corpus_spec, self.config = path, config
                now = f"now using {bundle.path}"
            if result is not None:
                style = "yellow" if result.interrupted else "green"
                self.out(
                    render.notice(
                        f"{result.stop_reason}: accuracy {result.accuracy:.3f} (ceiling {result.ceiling:.3f}), "
                        f"{result.epochs} epochs in {result.train_seconds:.1f}s; {now}",
                        style,
                    )
                )
                note = result.vocab.unk_note()
                if note:
                    self.out(render.notice(note, "dim"))
                if len(result.history.get("loss", [])) > 1:
                    self.out(render.history_charts(result.history))
            elif partner:
                self.out(render.notice(now, "green"))
        except StoryError as e:
            self.error(str(e))
        except Exception as e:  # noqa: BLE001
            if self.debug:
                self.out(traceback.format_exc())
            self.error(f"training failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        finally:
            self.status = ""
            self.progress = None
            self.partner_training = False

    # ---- toolbar --------------------------------------------------------------------
    def toolbar(self):
        cfg = self.bundle.config if self.bundle is not None else self.config
        mode = self.decoding.short()
        parts = [
            ("class:toolbar.key", " corpus "),
            ("class:toolbar", f"{self.corpus_label()} "),
            ("class:toolbar.key", " model "),
            ("class:toolbar", f"{cfg.arch}/{cfg.context} "),
            ("class:toolbar.key", " k "),
            ("class:toolbar", f"{self.k} "),
            ("class:toolbar.key", " len "),
            ("class:toolbar", f"{self.length} "),
            ("class:toolbar.key", " parts "),
            ("class:toolbar", f"{self.parts_label()} "),
        ]
        if self.status:
            parts.append(("class:toolbar.busy", f" {self.status} "))
        else:
            parts.append(("class:toolbar", " idle "))
        # after the status, so a narrow terminal cuts the decoding settings, never what is under way
        parts += [("class:toolbar.key", " mode "), ("class:toolbar", f"{mode} ")]
        parts.append(("class:toolbar.key", " keys "))
        parts.append(("class:toolbar", " Alt-1…9 pick  " + ("→ grey text  Alt-F a word " if self.menu.ghost_enabled else "grey text off ")))
        return parts

    def parts_label(self) -> str:
        pred = self.predictor
        if pred is None or not hasattr(pred, "components"):
            return "-"
        label = "+".join(pred.components())
        if self.training and pred.mixture.neural is None:
            return label + " (lstm training)"
        return label + (f" ({PARTNER} training)" if self.training and self.partner_training else "")

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
        if not line.strip():
            return True
        if cmds.is_command(line):
            return self.command(cmds.parse(line))
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
            self.out(render.notice(f"unknown to this model: {shown}; predicting from the known context (remembered: offered from now on)"))
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
        self.out(render.generation(detokenize([_short(t) for t in tokens[-12:]]), detokenize(words), mode, copied))
        self.remember_line(line, tokens)

    def copied_run(self, words: list[str]) -> int | None:
        """Longest run of ``words`` found verbatim in the training text (None if unknown)."""
        from repl.memorize import longest_copied_run

        if self.bundle is None:
            return None
        return longest_copied_run(self.bundle, words)

    # ---- commands ---------------------------------------------------------------------
    def command(self, c: cmds.Command) -> bool:
        """Run a parsed command: ``:name`` dispatches to ``do_name``. False means quit."""
        handler = getattr(self, f"do_{c.name}", None)
        if handler is None:  # pragma: no cover - every command in the table has a method
            raise StoryError(f":{c.name} is not available")
        return handler(c.arg, **c.options) is not False

    # One method per row of repl.commands.COMMANDS; each gets the parsed argument.
    def do_quit(self, arg) -> bool:
        return False

    def do_help(self, arg) -> None:
        self.out(render.help_table(cmds.help_rows()))
        self.out(render.notice(KEYS_HELP, "dim"))

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

    def do_stop(self, arg) -> None:
        if not self.training:
            raise StoryError("no training is under way")
        self.stop_event.set()
        self.out(render.notice("stopping after this batch; the best weights so far are kept"))

    def do_train(self, arg, time_limit: float | None = None) -> None:
        spec = arg if arg is not None else self.corpus_spec
        self.start_model(spec, self.config, force=True, what="retraining", time_limit=time_limit)

    def do_corpus(self, arg) -> None:
        self.start_model(arg, self.config, force=False, what="switching corpus")

    def do_arch(self, arg) -> None:
        if arg not in ARCHS:
            raise StoryError(f":arch expects one of {', '.join(ARCHS)}, got {arg!r}")
        self.start_model(self.corpus_spec, self.config.replace(arch=arg), force=False, what=f"arch {arg}")

    def do_context(self, arg) -> None:
        if not (1 <= arg <= 512):
            raise StoryError(f":context expects a whole number from 1 to 512, got {arg}")
        self.start_model(self.corpus_spec, self.config.replace(context=int(arg)), force=False, what=f"context {arg}")

    def do_save(self, arg) -> None:
        if self.bundle is None:
            raise StoryError("no model to save yet")
        dest = copy_bundle(self.bundle, arg)
        self.out(render.notice(f"saved to {dest}", "green"))

    def do_load(self, arg) -> None:
        if self.training:
            raise StoryError("training is under way; :stop it before loading another model")
        bundle = load_bundle(arg)
        old = self.bundle
        self.set_bundle(bundle)
        self.config = bundle.config
        if bundle.corpus_path:
            self.corpus_spec = bundle.corpus_path
        msg = f"loaded {bundle.config.label()} model from {bundle.path} (corpus {bundle.corpus_name})"
        if old is not None and old.corpus_sha256 and bundle.corpus_sha256 != old.corpus_sha256:
            msg += f"; note: it was trained on {bundle.corpus_name}, not on {old.corpus_name}"
        self.out(render.notice(msg, "green"))

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

    def do_components(self, arg) -> None:
        pred = self.predictor
        if pred is None:
            raise StoryError("no model is loaded yet; wait for training or :load a model")
        if arg:
            from repl.models import parse_components

            pred.components(parse_components(str(arg)))
            self.out(render.notice(f"predicting with {' + '.join(pred.components())}", "green"))
        self.out(render.components_table(component_rows(pred)))

    def do_partner(self, arg, time_limit: float | None = None) -> None:
        """``:partner [ARCH|DIR|off] [--time-limit D]``: a second network as the ``lstm2`` component."""
        from repl.models import partner_bundle, partner_config

        if arg is None:
            if time_limit is not None:
                raise StoryError(":partner --time-limit needs the arch to train, e.g. :partner stream --time-limit 10m")
            self.out(render.notice(self.partner_line(), "green"))
            return
        spec = str(arg).strip()
        if spec.lower() == "off":
            if time_limit is not None:
                raise StoryError(":partner off takes no --time-limit")
            if self.partner_training and self.training:
                raise StoryError("the partner network is training; :stop it first (it joins with its best weights), then :partner off")
            had = self.predictor is not None and getattr(self.predictor.mixture, "partner", None) is not None
            self.partner_spec = None
            if had and self.bundle is not None:
                self.set_bundle(self.bundle, strict=True)
            self.out(render.notice("no partner network" + (f"; predicting with {' + '.join(self.predictor.components())}" if had else ""), "green"))
            return
        if self.bundle is None or self.predictor is None or self.predictor.mixture.neural is None:
            raise StoryError("no trained model is loaded yet; wait for training or :load a model")
        if self.training:
            raise StoryError("training is under way; wait for it or :stop it first")
        if spec in ARCHS:
            from model.storage import store

            corpus, config = partner_config(self.bundle, spec)
            other = store.cached(corpus, config)
            if other is None:
                if not corpus.is_file():
                    raise StoryError(f"cannot train the {spec} partner: the corpus {corpus} is not there any more")
                self.partner_training = True
                self.start_model(str(corpus), config, force=False, what=f"partner ({spec})", time_limit=time_limit, partner=True)
                return
        elif time_limit is not None:
            raise StoryError(":partner --time-limit applies to an arch to train (e.g. :partner stream --time-limit 10m), not to a saved model")
        else:
            other = partner_bundle(self.bundle, spec, ":partner")  # a saved model, or a one-line error
        main = self.bundle
        self.status = "fitting the mixture's weights"

        def attach() -> None:
            try:
                self.out(render.notice(self._attach_partner(main, other, spec), "green"))
            except StoryError as e:
                self.error(str(e))
            except Exception as e:  # noqa: BLE001 - the loop never dies
                self.error(f"the partner could not join: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            finally:
                self.status = ""

        if not self.tty:  # scripts and tests: at once
            attach()
            return
        threading.Thread(target=attach, name="story-repl-partner", daemon=True).start()

    def _attach_partner(self, main: Bundle | None, other: Bundle, spec: str) -> str:
        """``main``'s predictor with ``other``'s network as ``lstm2`` (refitting every weight can
        take seconds on a book, once); used if ``main`` is still the model in use. The line to say."""
        if main is None:
            raise StoryError("no model to add the partner to")
        pred = Predictor(main, partner=other)
        if self.bundle is not main:
            return f"the {spec} network was not added: the model changed meanwhile (:partner {spec} adds it to this one)"
        self.partner_spec = spec
        self.set_predictor(pred, main.corpus_sha256)
        w = pred.mixture.weights
        share = f", weight {w.overall[w.names.index(PARTNER)]:.3f}" if w is not None and PARTNER in w.names else ""
        return f"{other.config.arch} network from {other.path} joins the mixture as {PARTNER}{share}; predicting with {' + '.join(pred.components())}"

    def partner_line(self) -> str:
        pred = self.predictor
        part = getattr(getattr(pred, "mixture", None), "partner", None)
        if part is None:
            busy = " (training it now)" if self.partner_training and self.training else ""
            return f"no partner network{busy}; :partner stream adds the stream-arch network of this text (trained in the background if there is none)"
        w = pred.mixture.weights
        share = f"weight {w.overall[w.names.index(PARTNER)]:.3f}, " if w is not None and PARTNER in w.names else ""
        state = "on" if PARTNER in pred.components() else "off (:components)"
        return f"partner {PARTNER}: {self.partner_spec} ({share}{state}); :partner off drops it"

    def do_info(self, arg) -> None:
        self.show_info()

    def do_history(self, arg) -> None:
        self.out(render.history_charts(self.last_history))

    def do_eval(self, arg) -> None:
        from repl.analysis import run_command

        run_command(self, "eval", arg)

    def do_score(self, arg) -> None:
        from repl.analysis import run_command

        run_command(self, "score", arg)

    def do_vocab(self, arg) -> None:
        from repl.analysis import run_command

        run_command(self, "vocab", arg)

    def show_info(self) -> None:
        b = self.bundle
        if b is None:
            raise StoryError("no model is loaded yet")
        pred_words = self.predictor.mixture.corpus_size if self.predictor is not None else len(b.vocab)
        m = b.metrics
        acc = m.get("accuracy")
        ceil = m.get("ceiling")
        cfg = b.config
        rows = [
            ("corpus", f"{b.corpus_name} ({b.info.get('corpus', {}).get('tokens', '?')} tokens, sha256 {b.corpus_sha256[:12]})"),
            ("vocabulary", f"{pred_words} words completable (every training word); the LSTM's own: {len(b.vocab)}"),
            ("components", components_line(self.predictor)),
            ("model", f"{cfg.arch}, context {cfg.context}, {cfg.units} units, embedding {cfg.embedding_dim}, dropout {cfg.dropout}"),
            ("parameters", f"{b.parameter_count():,}"),
            ("training", f"{cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size or 'whole text'}, {m.get('epochs', '?')} epochs, {m.get('stop_reason', '')}"),
            ("accuracy", "?" if acc is None else f"{acc:.4f} (ceiling {ceil:.4f})" if ceil is not None else f"{acc:.4f}"),
            ("where", str(b.path)),
        ]
        if m.get("val_loss") is not None:
            rows.insert(6, ("validation", f"loss {m['val_loss']:.4f}, perplexity {math.exp(m['val_loss']):.1f}"))
        self.out(render.info_panel(rows))

    # ---- loop -------------------------------------------------------------------------
    def key_bindings(self):
        from prompt_toolkit.filters import completion_is_selected, has_completions
        from prompt_toolkit.key_binding import KeyBindings

        kb = KeyBindings()

        @kb.add("c-c")
        def _(event):
            buf = event.app.current_buffer
            if not buf.text and self.training:
                self.stop_event.set()
                self.out(render.notice("stopping training after this batch; the best weights so far are kept"))
            buf.reset()

        @kb.add("c-d")
        def _(event):
            event.app.exit(exception=EOFError)

        @kb.add("enter", filter=has_completions & completion_is_selected)
        def _(event):
            event.app.current_buffer.complete_state = None

        for n in range(1, DIRECT_PICKS + 1):
            kb.add("escape", str(n))(self._picker(n))
        return kb

    def _picker(self, n: int):
        """The Alt-n key: insert menu entry n (and its space) in one key."""
        from repl.completer import pick

        def handler(event) -> None:
            if self.completer is not None:
                pick(event.app.current_buffer, self.completer, n)

        return handler

    def make_prompt(self, **io):
        """The PromptSession: threaded completer, toolbar, key bindings, persistent history.
        ``io`` may pass ``input``/``output`` (tests use a pipe)."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import ThreadedCompleter
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.styles import Style

        from model.storage import store
        from prompt_toolkit.auto_suggest import ThreadedAutoSuggest

        from repl.completer import GhostSuggest, WordCompleter

        try:
            store.home().mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(store.home() / "history"))
        except OSError:
            history = InMemoryHistory()
        style = Style.from_dict(
            {
                "toolbar": "bg:#303030 #d0d0d0",
                "toolbar.key": "bg:#505050 #ffffff bold",
                "toolbar.busy": "bg:#875f00 #ffffff bold",
                "bottom-toolbar": "noreverse",
            }
        )
        completer = WordCompleter(lambda: self.predictor, lambda: self.k, self.menu)
        self.completer = completer
        return PromptSession(
            history=history,
            completer=ThreadedCompleter(completer),  # completions never block typing
            auto_suggest=ThreadedAutoSuggest(GhostSuggest(completer)),  # the grey continuation
            complete_while_typing=True,
            bottom_toolbar=self.toolbar,
            refresh_interval=0.5,
            key_bindings=self.key_bindings(),
            style=style,
            enable_history_search=False,
            **io,
        )

    def loop(self) -> int:
        from prompt_toolkit.patch_stdout import patch_stdout

        session = self.make_prompt()
        self.out(render.notice(f"story-repl: {self.corpus_label()} ({self.bundle.config.label() if self.bundle else '-'}). Type words; :help lists commands.", "dim"))
        with patch_stdout(raw=True):
            while True:
                try:
                    line = session.prompt("› ")
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if not self.run_line(line):
                    break
        if self.training:
            self.stop_event.set()
            self.out(render.notice("finishing the current batch and saving before leaving…"))
            self.train_thread.join()
        return 0


def _ppl(value: float) -> str:
    return f"{value:,.1f}" if value < 1e6 else f"{value:.2e}"


def components_line(pred: Predictor | None) -> str:
    """One line: each active component's weight, and the held-out perplexities."""
    if pred is None:
        return "-"
    rows = component_rows(pred)
    parts = [f"{n} {w or '-'}" if st == "on" else f"{n} {st}" for n, st, w, _ in rows if n != "mixture"]
    w = pred.mixture.weights
    line = " · ".join(parts)
    if w is not None and w.perplexity:
        ppl = ", ".join(f"{k} {_ppl(v)}" for k, v in w.perplexity.items())
        line += f" (weights fitted on the {w.fitted_on}; perplexity there: {ppl})"
    return line


def component_rows(pred: Predictor) -> list[tuple[str, str, str, str]]:
    """(component, state, weight, held-out perplexity) rows for :components and :info."""
    from model.prediction.mixture import ALL, PARTNER

    mix = pred.mixture
    w = mix.weights
    rows = []
    for k, name in enumerate(ALL):
        if name == PARTNER and not mix.available(name):
            continue  # only with --partner
        if not mix.available(name):
            state = "training" if name == "lstm" else "not available"
            rows.append((name, state, "", ""))
            continue
        state = "on" if name in mix.active else "off"
        weight = f"{w.overall[w.names.index(name)]:.3f}" if w is not None and name in w.names else ""
        ppl = _ppl(w.perplexity[name]) if w is not None and name in w.perplexity else ""
        rows.append((name, state, weight, ppl))
    if w is not None and "mixture" in w.perplexity:
        rows.append(("mixture", "+".join(mix.active), "", _ppl(w.perplexity["mixture"])))
    return rows


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
    if args.model:
        bundle = load_bundle(args.model)
        session.config = bundle.config
        session.corpus_spec = bundle.corpus_path or bundle.corpus_name
    else:
        from model.text.corpus import resolve_path

        path = resolve_path(session.corpus_spec)
        session.corpus_spec = str(path)
        bundle = store.cached(path, config)
        if bundle is None and instant_start(path):  # a book: the prompt now, the LSTM in the background
            session.start_model(str(path), config, force=False, what="first model")
            return session.loop()
        if bundle is None:
            con = Console(highlight=False)
            bundle, result = train_with_view(str(path), config, con, encoding=session.encoding)
            note = result.vocab.unk_note() if result is not None else None
            if note:
                con.print(render.notice(note, "dim"))
    session.set_bundle(bundle, strict=True)
    return session.loop()

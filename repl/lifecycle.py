"""The model in use and training in the background, as a mixin of :class:`repl.session.Session`.

Loading a cached model is immediate; otherwise a thread trains one while the previous model
(or, for a first model, the n-gram and the cache) keeps answering, and swaps it in when done.
"""
from __future__ import annotations

import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import Config
from model.errors import StoryError
from model.prediction.components import registered_names
from model.prediction.predictor import Predictor
from model.storage.bundle import Bundle
from repl import render
from repl.models import interrupted_note
from repl.train_progress import fitting_line, status_line

QUICK_BYTES = 64 * 1024  # a text up to this size is read and checked before training starts
SAMPLES_KEPT = 5  # the last sample predictions of a run, for :history


@dataclass(frozen=True)
class Job:
    """A background training run: the text, its recipe and how it was asked for."""

    path: str
    config: Config
    force: bool
    what: str
    time_limit: float | None = None
    partner: bool = False
    encoding: str = "utf-8"
    switch: bool = False  # a new text: its n-gram answers while the LSTM trains
    corpus: Any = None  # the text, when it was read before the run started


class ModelLifecycle:
    """Which predictor answers, and the training thread that replaces it."""

    training_note = ""  # the toolbar's word on the model in use: its training was cut short
    last_samples: list = []  # the last runs' sample predictions, for :history
    leaving = False  # the REPL is closing: a run it stops is not one the user stopped

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
        self.training_note = training_note(bundle)
        self.live_corpus = None  # the trained model answers now
        from model.prediction.build import missing_parts_note

        note = missing_parts_note(bundle, pred.mixture)
        if note:
            self.out(render.notice(note, "yellow"))
        history = bundle.metrics.get("history") if isinstance(bundle.metrics, dict) else None
        self.last_history = dict(history) if isinstance(history, dict) else {}

    def set_predictor(self, pred: Predictor, corpus_sha256: str) -> None:
        """Use ``pred`` from now on; its cache starts with what the user wrote with this corpus
        (the writing file of earlier sessions, then this session's lines)."""
        self._keep_switched_off(pred)
        pred.observe(self.journal.use(corpus_sha256, pred.tokenize))
        self.story_prime(pred, corpus_sha256)  # and the story being written, before it answers
        self.predictor = pred

    def _keep_switched_off(self, pred: Predictor) -> None:
        """The parts the user switched off with :components stay off in ``pred``; parts the
        old predictor did not have (the LSTM of a book that was training, a partner) come on."""
        old = self.predictor
        mix = getattr(old, "mixture", None)
        if mix is None or not hasattr(pred, "components"):
            return
        off = {n for n in registered_names() if mix.available(n) and n not in old.components()}
        keep = [n for n in pred.components() if n not in off]
        if keep and keep != pred.components():
            pred.components(keep)

    def corpus_label(self) -> str:
        if self.bundle is not None:
            return self.bundle.corpus_name
        return Path(self.corpus_spec).stem

    @property
    def training(self) -> bool:
        return self.train_thread is not None and self.train_thread.is_alive()

    def start_model(
        self, corpus_spec: str, config: Config, force: bool, what: str, time_limit: float | None = None, partner: bool = False,
        encoding: str | None = None, switch: bool = False,
    ) -> None:
        """Load the cached model for (corpus, config), or train it in the background. With
        ``partner``, the model trained joins the current one's mixture as ``lstm2`` instead of
        replacing it; with ``switch`` (a new text), the new text's n-gram and cache answer while
        its LSTM trains. A small text is read and checked here, so that one too short to train
        on is an error before anything starts."""
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
                self.encoding = encoding or self.encoding
                self.out(render.notice(f"loaded the cached {config.label()} model for {path.stem} from {hit.path}", "green"))
                return
        corpus = self._read_small(path, config, encoding or self.encoding)
        self.stop_event = threading.Event()
        self.progress = None
        self.status = "starting"
        job = Job(str(path), config, force, what, time_limit, partner, encoding or self.encoding, switch, corpus)
        self.train_thread = threading.Thread(target=self._train_worker, args=(job,), name="story-repl-train", daemon=True)
        self.train_thread.start()

    def _read_small(self, path: Path, config: Config, encoding: str):
        """A text small enough to read at once, read and checked for training; None for a larger one."""
        from model.text.corpus import read_corpus
        from model.training.train import check_trainable

        try:
            small = path.stat().st_size <= QUICK_BYTES
        except OSError:
            small = True  # read_corpus says what is wrong
        if not small:
            return None
        corpus = read_corpus(path, encoding=encoding, keep_case=config.keep_case)
        check_trainable(corpus, config)
        return corpus

    def _on_progress(self, p) -> None:
        if p.kind in ("batch", "epoch"):
            self.progress = p
            self.status = "training " + status_line(p)
        elif p.kind == "fitting":
            self.progress = None
            self.status = fitting_line(p)
        elif p.kind == "sample" and p.sample is not None:  # shown by :history, not above the prompt
            self.last_samples = (list(self.last_samples) + [p.sample])[-SAMPLES_KEPT:]
        elif p.kind == "start":
            self.last_samples = []
            self.out(render.notice(f"training: {p.message}", "dim"))

    def start_ngram(self, corpus, config: Config) -> None:
        """Complete from the n-gram and the cache while the LSTM of a new corpus trains."""
        from model.config import resolve
        from model.prediction.build import ngram_mixture

        self.status = "counting n-grams"
        cfg = resolve(config, len(corpus.tokens))
        self.live_corpus = corpus  # what :eval, :score, :vocab and :info read until the LSTM is in
        mix = ngram_mixture(corpus, cfg, lambda message, fraction: setattr(self, "status", f"{message} {fraction:.0%}"))
        self.set_predictor(Predictor.from_mixture(mix, cfg), corpus.sha256)
        self.out(render.notice(f"completing from the n-gram of {corpus.path.name} and what you write; the LSTM joins when it is trained", "cyan"))

    def _read_job(self, job: "Job"):
        """The job's text, read (unless it was already) and checked; the new text's n-gram takes
        over when nothing answers yet or the job switches texts. Returns (corpus, what to restore
        if training fails: the previous (bundle, corpus_spec, config), or None)."""
        from model.text.corpus import read_corpus
        from model.training.train import check_trainable
        from repl.train_progress import ReadingClock

        corpus = job.corpus
        if corpus is None:
            self.status = "reading corpus"
            on_read = ReadingClock(lambda line: setattr(self, "status", line))
            corpus = read_corpus(job.path, encoding=job.encoding, keep_case=job.config.keep_case, progress=on_read)
            check_trainable(corpus, job.config)
        if corpus.notice:
            self.out(render.notice(corpus.notice))
        previous = None
        other_text = self.bundle is None or corpus.sha256 != self.bundle.corpus_sha256
        if self.predictor is None or (job.switch and other_text):  # the n-gram first, in seconds
            previous = (self.bundle, self.corpus_spec, self.config) if self.bundle is not None else None
            self.bundle, self.training_note = None, ""
            self.corpus_spec, self.config, self.encoding = job.path, job.config, job.encoding
            try:
                self.start_ngram(corpus, job.config)
            except Exception:
                if previous is not None:
                    self._restore(previous)
                raise
        return corpus, previous

    def _train_worker(self, job: "Job") -> None:
        from model.storage import store

        main, previous = self.bundle, None
        try:
            corpus, previous = self._read_job(job)
            if "tensorflow" not in sys.modules:
                self.status = "loading TensorFlow…"
            budget = f" for at most {job.time_limit:g}s" if job.time_limit else ""
            self.out(render.notice(f"{job.what} on {Path(job.path).name}: training in the background{budget} (Ctrl-C on an empty line or :stop ends it)", "cyan"))
            bundle, result = store.train_and_cache(
                corpus, job.config, on_progress=self._on_progress, stop=self.stop_event, force=job.force, time_limit=job.time_limit
            )
            if job.partner:
                self.partner_training = False
                self.status = "fitting the mixture's weights"
                now = self._attach_partner(main, bundle, job.config.arch)
            else:
                self.set_bundle(bundle)
                self.corpus_spec, self.config, self.encoding = job.path, job.config, job.encoding
                now = f"now using {bundle.path}"
            previous = None
            if result is not None:
                self._report_training(result, now)
            elif job.partner:
                self.out(render.notice(now, "green"))
        except Exception as e:  # noqa: BLE001
            self._training_failed(e, previous)
        finally:
            self.status = ""
            self.progress = None
            self.partner_training = False

    def _training_failed(self, e: Exception, previous) -> None:
        """One line for a run that failed; the model used before a switch of texts comes back."""
        if isinstance(e, StoryError):
            self.error(str(e))
        else:
            if self.debug:
                self.out(traceback.format_exc())
            self.error(f"training failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if previous is not None:
            self._restore(previous)

    def _restore(self, previous) -> None:
        """Use again the model in use before a switch of texts: (bundle, corpus_spec, config)."""
        bundle, self.corpus_spec, self.config = previous
        self.set_bundle(bundle)
        self.out(render.notice(f"back to {bundle.corpus_name}", "yellow"))

    def _report_training(self, result, now: str) -> None:
        """How a finished run ended, what it reached, its curves; ``now``: which model is in use."""
        from model.training.events import counted

        style = "yellow" if result.interrupted else "green"
        self.out(
            render.notice(
                f"{result.stop_reason}: accuracy {result.accuracy:.3f} (ceiling {result.ceiling:.3f}), "
                f"{counted(result.epochs, 'epoch')} in {result.train_seconds:.1f}s; {now}",
                style,
            )
        )
        if result.interrupted:
            self.out(render.notice(":train --resume continues it", "dim"))
        note = result.vocab.unk_note()
        if note:
            self.out(render.notice(note, "dim"))
        if len(result.history.get("loss", [])) > 1:
            self.out(render.history_charts(result.history))

    # ---- a training cut short -------------------------------------------------------------
    def resume_cut_short(self, auto: bool) -> None:
        """When the model in use had its training interrupted: resume it in the background with
        ``auto`` (a model of the cache whose resumed run the user has not stopped), else say how."""
        from model.storage.origin import in_cache

        b = self.bundle
        if b is None or not b.metrics.get("interrupted"):
            return
        if auto and b.metrics.get("auto_resume", True) and in_cache(b.path):
            try:
                self.start_resume(auto=True)
                return
            except StoryError as e:
                self.out(render.notice(f"its training cannot go on: {e}", "yellow"))
                return
        self.out(render.notice(interrupted_note(b, ":train --resume continues it"), "yellow"))

    def start_resume(self, time_limit: float | None = None, encoding: str | None = None, auto: bool = False) -> None:
        """Continue the training of the model in use in the background (``:train --resume``):
        the epochs an interrupted run had left, else its recipe's epochs again."""
        from model.storage.origin import missing_text
        from model.storage.untrusted import visible

        if self.training:
            raise StoryError("training is already under way; wait for it or :stop it first")
        b = self.bundle
        if b is None:
            raise StoryError("no trained model to resume yet; :train trains one")
        if not (b.path / "model.keras").is_file():
            raise StoryError(f"{visible(b.path)} has no model.keras (the network with its optimizer state), so its training cannot go on; :train retrains it")
        if b.training_text() is None:
            raise missing_text(b, "to resume training")
        self.stop_event = threading.Event()
        self.progress = None
        self.status = "starting"
        self.training_note = ""  # the status says it: training
        args = (b, time_limit, encoding or self.encoding, auto)
        self.train_thread = threading.Thread(target=self._resume_worker, args=args, name="story-repl-train", daemon=True)
        self.train_thread.start()

    def _resume_worker(self, bundle: Bundle, time_limit: float | None, encoding: str, auto: bool) -> None:
        from model.storage import store
        from model.training.events import counted

        def before_save(result) -> None:  # a resumed run the user stopped is not resumed again on its own
            stopped = auto and result.interrupted and not self.leaving
            result.auto_resume = bool(bundle.metrics.get("auto_resume", True)) and not stopped

        try:
            self.status = "reading corpus"
            corpus = bundle.training_corpus(encoding, need="to resume training")
            done = int(bundle.metrics.get("epochs") or 0)
            after = f" after {counted(done, 'epoch')}" if done else ""
            skip = "; --no-resume skips this at start" if auto else ""
            self.out(render.notice(f"resuming the training of {bundle.corpus_name}{after} in the background (Ctrl-C on an empty line or :stop ends it{skip})", "cyan"))
            new, result = store.resume_training(
                bundle, corpus, on_progress=self._on_progress, stop=self.stop_event, time_limit=time_limit, before_save=before_save
            )
            self.set_bundle(new)
            self._report_training(result, f"now using {new.path}")
        except Exception as e:  # noqa: BLE001
            self._training_failed(e, None)
        finally:
            self.status = ""
            self.progress = None
            if self.bundle is bundle:  # still the model cut short
                self.training_note = training_note(bundle)


def training_note(bundle: Bundle | None) -> str:
    """The toolbar's word on a model whose training was cut short (empty otherwise)."""
    m = bundle.metrics if bundle is not None and isinstance(bundle.metrics, dict) else {}
    if not m.get("interrupted"):
        return ""
    done, planned = m.get("epochs"), m.get("planned_epochs") or bundle.config.epochs
    at = f" at epoch {done}/{planned}" if done is not None and planned else ""
    return f"training stopped{at}: :train --resume"

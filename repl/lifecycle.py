"""The model in use and training in the background, as a mixin of :class:`repl.session.Session`.

Loading a cached model is immediate; otherwise a thread trains one while the previous model
(or, for a first model, the n-gram and the cache) keeps answering, and swaps it in when done.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from pathlib import Path

from model.config import Config
from model.errors import StoryError
from model.prediction.components import registered_names
from model.prediction.predictor import Predictor
from model.storage.bundle import Bundle
from repl import render
from repl.train_progress import status_line


class ModelLifecycle:
    """Which predictor answers, and the training thread that replaces it."""

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
        from model.prediction.build import ngram_mixture

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
            if corpus.notice:
                self.out(render.notice(corpus.notice))
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
                self._report_training(result, now)
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

    def _report_training(self, result, now: str) -> None:
        """How a finished run ended, what it reached, its curves; ``now``: which model is in use."""
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

"""The model and its training: ``:train``, ``:stop``, ``:corpus``, ``:arch``, ``:context``, ``:save``, ``:load``."""
from __future__ import annotations

from pathlib import Path

from model.config import ARCHS
from model.errors import StoryError
from model.storage.bundle import copy_bundle, load_bundle
from repl import render


class ModelCommands:
    def do_stop(self, arg) -> None:
        if not self.training:
            raise StoryError("no training is under way")
        self.stop_event.set()
        self.out(render.notice("stopping after this batch; the best weights so far are kept"))

    def do_train(self, arg, time_limit: float | None = None, encoding: str | None = None, resume: bool = False) -> None:
        if resume:
            if arg is not None:
                raise StoryError(":train --resume continues the current model on its own text; give no PATH")
            self.start_resume(time_limit=time_limit, encoding=encoding)
            return
        spec = arg if arg is not None else self.corpus_spec
        self.start_model(spec, self.config, force=True, what="retraining", time_limit=time_limit, encoding=encoding)

    def do_corpus(self, arg, encoding: str | None = None) -> None:
        self.start_model(arg, self.config, force=False, what="switching corpus", encoding=encoding, switch=True)

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
        if old is not None and old.corpus_sha256 and bundle.corpus_sha256 == old.corpus_sha256:
            bundle.given_text = self.corpus_spec  # the session's text; used only if its sha256 matches
        self.set_bundle(bundle)  # a bundle that cannot be used raises here, and the old one stays
        self.config = bundle.config
        spec = bundle.text_spec()  # never a path the model names on its own
        msg = f"loaded {bundle.config.label()} model from {bundle.path} (corpus {bundle.corpus_name})"
        if old is not None and old.corpus_sha256 and bundle.corpus_sha256 != old.corpus_sha256:
            msg += f"; note: it was trained on {bundle.corpus_name}, not on {old.corpus_name}"
        if spec:
            self.corpus_spec = spec
        elif bundle.corpus_sha256 != getattr(old, "corpus_sha256", None):
            msg += f"; its training text is not at hand, so :train still trains {Path(self.corpus_spec).stem}"
        self.out(render.notice(msg, "green"))

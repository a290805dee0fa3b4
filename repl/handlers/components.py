"""The predictor's parts: ``:components`` and ``:partner`` (a second network as ``lstm2``)."""
from __future__ import annotations

import threading

from model.config import ARCHS
from model.errors import StoryError
from model.prediction.components import PARTNER, registered_names
from model.prediction.predictor import Predictor
from model.storage.bundle import Bundle
from repl import render


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
        line += f" (weights fitted on the {render.measured_on(w.fitted_on)}; perplexity there: {ppl})"
    return line


def component_rows(pred: Predictor) -> list[tuple[str, str, str, str]]:
    """(component, state, weight, perplexity where the weights were fitted) rows for :components and :info."""
    mix = pred.mixture
    w = mix.weights
    rows = []
    for name in registered_names():
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


class ComponentCommands:
    def do_components(self, arg) -> None:
        pred = self.predictor
        if pred is None:
            raise StoryError("no model is loaded yet; wait for training or :load a model")
        if arg:
            from repl.models import parse_components

            pred.components(parse_components(str(arg)))
            self.out(render.notice(f"predicting with {' + '.join(pred.components())}", "green"))
        w = pred.mixture.weights
        self.out(render.components_table(component_rows(pred), w.fitted_on if w is not None else ""))

    def do_partner(self, arg, time_limit: float | None = None) -> None:
        """``:partner [ARCH|DIR|off] [--time-limit D]``: a second network as the ``lstm2`` component."""
        from repl.models import cached_partner, partner_bundle, partner_config, partner_recipe

        if arg is None:
            if time_limit is not None:
                raise StoryError(":partner --time-limit needs the arch to train, e.g. :partner stream --time-limit 10m")
            self.out(render.notice(self.partner_line(), "green"))
            return
        spec = str(arg).strip()
        if spec.lower() == "off":
            self._partner_off(time_limit)
            return
        if self.bundle is None or self.predictor is None or self.predictor.mixture.neural is None:
            raise StoryError("no trained model is loaded yet; wait for training or :load a model")
        if self.training:
            raise StoryError("training is under way; wait for it or :stop it first")
        if spec in ARCHS:
            other = cached_partner(self.bundle, partner_recipe(self.bundle, spec))
            if other is None:
                corpus, config = partner_config(self.bundle, spec)  # its training text, checked by sha256
                if not corpus.is_file():
                    raise StoryError(f"cannot train the {spec} partner: the corpus {corpus} is not there any more")
                self.partner_training = True
                self.start_model(str(corpus), config, force=False, what=f"partner ({spec})", time_limit=time_limit, partner=True)
                return
        elif time_limit is not None:
            raise StoryError(":partner --time-limit applies to an arch to train (e.g. :partner stream --time-limit 10m), not to a saved model")
        else:
            other = partner_bundle(self.bundle, spec, ":partner")  # a saved model, or a one-line error
        self._join_partner(other, spec)

    def _partner_off(self, time_limit: float | None) -> None:
        """``:partner off``: the model alone again."""
        if time_limit is not None:
            raise StoryError(":partner off takes no --time-limit")
        if self.partner_training and self.training:
            raise StoryError("the partner network is training; :stop it first (it joins with its best weights), then :partner off")
        had = self.predictor is not None and self.predictor.mixture.available(PARTNER)
        self.partner_spec = None
        if had and self.bundle is not None:
            self.set_bundle(self.bundle, strict=True)
        self.out(render.notice("no partner network" + (f"; predicting with {' + '.join(self.predictor.components())}" if had else ""), "green"))

    def _join_partner(self, other: Bundle, spec: str) -> None:
        """Add ``other`` to the current model: at once in scripts, in a thread at the terminal."""
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
        part = getattr(pred, "mixture", None) and pred.mixture.component(PARTNER)
        if part is None:
            busy = " (training it now)" if self.partner_training and self.training else ""
            return f"no partner network{busy}; :partner stream adds the stream-arch network of this text (trained in the background if there is none)"
        w = pred.mixture.weights
        share = f"weight {w.overall[w.names.index(PARTNER)]:.3f}, " if w is not None and PARTNER in w.names else ""
        state = "on" if PARTNER in pred.components() else "off (:components)"
        return f"partner {PARTNER}: {self.partner_spec} ({share}{state}); :partner off drops it"

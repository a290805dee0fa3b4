"""Looking at the model: ``:info``, ``:history``, ``:eval``, ``:score``, ``:vocab``."""
from __future__ import annotations

import math

from repl import render
from repl.handlers.components import components_line
from repl.models import interrupted_note


class InspectCommands:
    def do_info(self, arg) -> None:
        self.show_info()

    def do_history(self, arg) -> None:
        samples = [render.sample_line(*sample) for sample in getattr(self, "last_samples", [])]
        self.out(render.history_charts(self.last_history), *samples)

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
            self._live_info()
            return
        pred_words = self.predictor.mixture.corpus_size if self.predictor is not None else len(b.vocab)
        m = _dict(b.metrics)
        cfg = b.config
        tokens = render.formatted(_dict(_dict(b.info).get("corpus")).get("tokens"), "{:,}")
        stop = m.get("stop_reason")
        rows = [
            ("corpus", f"{b.corpus_name} ({tokens} tokens, sha256 {str(b.corpus_sha256)[:12]})"),
            ("vocabulary", f"{pred_words:,} words completable (every training word); the LSTM's own: {len(b.vocab):,}"),
            ("components", components_line(self.predictor)),
            ("model", f"{cfg.arch}, context {cfg.context}, {cfg.units} units, embedding {cfg.embedding_dim}, dropout {cfg.dropout}"),
            ("parameters", f"{b.parameter_count():,}"),
            ("training", f"{cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size or 'whole text'}, "
                         f"{_epochs(m.get('epochs'))}" + (f", {stop}" if isinstance(stop, str) and stop else "")),
            ("accuracy", _accuracy(m)),
            ("where", str(b.path)),
        ]
        loss = m.get("val_loss")
        if render.formatted(loss, "{}", "") and loss < 700:
            rows.insert(6, ("validation", f"loss {loss:.4f}, perplexity {math.exp(loss):.1f}"))
        note = interrupted_note(b, "it is resuming now" if self.training else ":train --resume continues it")
        if note:
            rows.insert(6, ("note", note))
        self.out(render.info_panel(rows))

    def _live_info(self) -> None:
        """``:info`` while a new text's first LSTM trains: the n-gram and the cache answer."""
        from repl.analysis import answered_by, model_in_use

        live, pred = model_in_use(self)  # a one-line error while nothing answers yet
        cfg = live.config
        tokens = render.formatted(live.info["corpus"]["tokens"], "{:,}")
        rows = [
            ("corpus", f"{live.corpus_name} ({tokens} tokens, sha256 {str(live.corpus_sha256)[:12]})"),
            ("vocabulary", f"{pred.mixture.corpus_size:,} words completable (every training word)"),
            ("components", components_line(pred)),
            ("model", f"{cfg.arch}, context {cfg.context}, {cfg.units} units, embedding {cfg.embedding_dim}, dropout {cfg.dropout}: training"),
            ("training", self.status or "under way"),
            ("where", live.path),
        ]
        self.out(render.notice(answered_by(pred), "cyan"), render.info_panel(rows))


def _epochs(value) -> str:
    from model.training.events import counted

    return counted(value, "epoch") if isinstance(value, int) and not isinstance(value, bool) else f"{render.formatted(value, '{:g}')} epochs"


def _dict(value) -> dict:
    """``value`` if it is a dict, else an empty one (a model's files may hold anything)."""
    return value if isinstance(value, dict) else {}


def _accuracy(metrics: dict) -> str:
    acc = render.formatted(metrics.get("accuracy"))
    ceiling = render.formatted(metrics.get("ceiling"), missing="")
    return f"{acc} (ceiling {ceiling})" if ceiling and acc != "?" else acc
